"""FID's Inception-v3 in MXNet Gluon, from a local Gluon model-zoo weights file only (no download).

The file is what vision.inception_v3().save_parameters() writes (the model zoo's
inception_v3-*.params). Features are the 2048-d average-pooled activations of net.features (before
the classifier, dropout inactive outside autograd.record), for images resized to 299x299
(bilinear, align_corners=False as in torch) and fed in [-1, 1]. The distance itself is numpy
(common/gan/quality.py). FIDs are comparable only when computed with the same weights.
"""

from __future__ import annotations

import os

import mxnet as mx
import numpy as np
from mxnet.gluon import nn
from mxnet.gluon.model_zoo import vision

from ...common.errors import GanparityError

INCEPTION_SUFFIXES = (".params",)


def load_inception(path: str | os.PathLike) -> nn.HybridBlock:
    """The model zoo's inception_v3 with the given weights (its classifier is not used)."""
    net = vision.inception_v3()
    try:
        net.load_parameters(str(path), ctx=mx.cpu())
    except Exception as e:  # noqa: BLE001 - any unreadable or foreign file is the user's bad input
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GanparityError(f"--fid-weights {str(path)!r} is not a Gluon inception_v3 .params file: {first}") from None
    return net


def inception_features(images: np.ndarray, net: nn.HybridBlock, batch: int = 32) -> np.ndarray:
    """(N, C, H, W) images in [-1, 1] -> (N, 2048) float64 features."""
    feats = []
    for i in range(0, len(images), batch):
        x = mx.nd.array(np.asarray(images[i:i + batch], np.float32))
        if x.shape[1] == 1:
            x = mx.nd.tile(x, (1, 3, 1, 1))
        x = mx.nd.contrib.BilinearResize2D(x, height=299, width=299, align_corners=False)
        feats.append(net.features(x).reshape((x.shape[0], -1)).asnumpy().astype(np.float64))
    return np.concatenate(feats)
