"""Source 000's image pipeline in numpy and Pillow, shared by both backends (no torchvision).

train (transform_train): RandomResizedCrop(S, scale=(0.08, 1), ratio=(3/4, 4/3)),
    RandomHorizontalFlip(), ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4),
    ToTensor(), Normalize(ImageNet mean, std)
test (transform_test): Resize(S * 256 / 224) of the short side, CenterCrop(S), ToTensor(), Normalize

S is the spec's image_size (224 in the source). RandomResizedCrop follows torchvision's algorithm
(10 tries of area/log-ratio, then a centre crop clamped to the ratio range). ColorJitter applies
the three factors, each ~ U(0.6, 1.4), in a random order, with Pillow's ImageEnhance (Brightness,
Contrast, Color), which are torchvision's formulas on PIL images up to uint8 rounding. All
randomness comes from a numpy Generator, so a (seed, epoch) fixes every batch for both backends.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import GanparityError

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class ClassFolder:
    """torchvision.datasets.ImageFolder's listing: classes are the sorted sub-folder names, samples
    the sorted files of each class, labels the class index."""

    root: Path
    classes: tuple[str, ...]
    files: tuple[Path, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.files)


def class_folder(root: str | os.PathLike) -> ClassFolder:
    root = Path(root)
    if not root.is_dir():
        raise GanparityError(f"{str(root)!r} is not a folder (run `ganparity finetune reorganize` first)")
    classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir()))
    files, labels = [], []
    for i, c in enumerate(classes):
        for f in sorted((root / c).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
                labels.append(i)
    if not files:
        raise GanparityError(f"{str(root)!r} holds no images in class sub-folders "
                             "(run `ganparity finetune reorganize` first)")
    return ClassFolder(root, classes, tuple(files), tuple(labels))


def _open(path: Path):
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except OSError as e:
        raise GanparityError(f"cannot read image {str(path)!r}: {e}") from None


def _to_array(im) -> np.ndarray:
    """ToTensor + Normalize: (3, H, W) float32."""
    a = np.asarray(im, np.float32) / 255.0
    return ((a - MEAN) / STD).transpose(2, 0, 1)


def random_resized_crop_box(w: int, h: int, rng: np.random.Generator, scale=(0.08, 1.0),
                            ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(left, top, width, height), torchvision's RandomResizedCrop.get_params."""
    area = w * h
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ar = math.exp(rng.uniform(*log_ratio))
        cw, ch = int(round(math.sqrt(target * ar))), int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1)), cw, ch
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (w - cw) // 2, (h - ch) // 2, cw, ch


def train_transform(path: Path, size: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image, ImageEnhance

    im = _open(path)
    left, top, cw, ch = random_resized_crop_box(*im.size, rng)
    im = im.resize((size, size), Image.BILINEAR, box=(left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    enhancers = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
    for k in rng.permutation(3):
        im = enhancers[k](im).enhance(rng.uniform(0.6, 1.4))
    return _to_array(im)


def eval_transform(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    im = _open(path)
    w, h = im.size
    short = round(size * 256 / 224)
    nw, nh = (short, max(1, int(short * h / w))) if w <= h else (max(1, int(short * w / h)), short)
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
    return _to_array(im.crop((left, top, left + size, top + size)))


def batches(folder: ClassFolder, size: int, batch_size: int, train: bool, rng: np.random.Generator | None = None):
    """(x, y, files) batches: shuffled and augmented when train (DataLoader(shuffle=True)), in
    listing order with the test transform otherwise. The last batch may be smaller."""
    order = rng.permutation(len(folder)) if train else np.arange(len(folder))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        if train:
            x = np.stack([train_transform(folder.files[i], size, rng) for i in idx])
        else:
            x = np.stack([eval_transform(folder.files[i], size) for i in idx])
        yield x, np.array([folder.labels[i] for i in idx], np.int64), [folder.files[i] for i in idx]
