"""`ganparity port` on the model zoos' own classes at small widths (tests/port_zoo_models.py): a
GluonNLP BERT and Transformer encoder (several integer inputs, a valid length), a GluonCV YOLOv3
detector (anchors, box decoding, NMS) and a Fast-SCNN segmenter (pyramid pooling, resizes, two
branches fused). Each ports, agrees with its Gluon block through the whole proof (or says why it
cannot tell), and a one-edit wrong port of each is caught. Needs the zoo extra (gluoncv, gluonnlp);
skips without it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from .conftest import need

for _module in ("gluoncv", "gluonnlp"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} is not installed (pip install 'ganparity[zoo]')", allow_module_level=True)
need("torch")
need("mxnet")

from ganparity.common.port import port, prove_port  # noqa: E402

MODELS = str(Path(__file__).resolve().parent / "port_zoo_models.py")
TOKENS = ["2,8:int", "2,8:int:0..1", "2:int:1..8"]  # token ids, token types, valid length


def _edit(folder: Path, old: str, new: str) -> None:
    """One edit of the written model.py, as a person makes a slip by hand."""
    model = folder / "model.py"
    text = model.read_text()
    assert text.count(old) >= 1, old
    model.write_text(text.replace(old, new, 1))


def _agrees(proof, rows=("weights", "forward train", "forward eval", "gradients")) -> None:
    assert proof.verdict != "differ", proof.failures()
    for name in rows:
        assert proof.row(name).verdict == "agree", (name, proof.row(name).reason)


@pytest.mark.slow
def test_bert_ports_and_a_mask_off_by_one_is_caught(tmp_path):
    """GluonNLP's BERTModel (2 layers, width 32): three integer inputs, two outputs, the attention
    masked by each sequence's valid length. The port agrees; masking one step too many differs."""
    r = port(f"{MODELS}:bert_small", TOKENS, tmp_path / "bert")
    _agrees(r.proof)
    assert "def forward(self, inputs, token_types, valid_length)" in (r.out / "model.py").read_text()
    _edit(r.out, "keep = steps < length.unsqueeze(dim)", "keep = steps <= length.unsqueeze(dim)")
    assert prove_port(r.out).verdict == "differ"


@pytest.mark.slow
def test_transformer_encoder_ports(tmp_path):
    """GluonNLP's TransformerEncoder (sinusoidal positions, 2 layers, 4 heads) over an embedding."""
    r = port(f"{MODELS}:transformer_encoder_small", ["2,8:int", "2:int:1..8"], tmp_path / "enc")
    _agrees(r.proof)


@pytest.mark.slow
def test_yolo3_ports_through_its_nms_and_swapped_anchors_are_caught(tmp_path):
    """GluonCV's YOLOV3 on a small backbone: the final outputs after box_nms agree, the proof's rows
    run on the raw heads before it; anchors with width and height swapped differ."""
    r = port(f"{MODELS}:yolo3_small", (1, 3, 64, 64), tmp_path / "yolo", optimizer="sgd:lr=0.0001")
    _agrees(r.proof, ("weights", "forward train", "forward eval", "forward eval, final outputs (after "
                                                                      "_contrib_box_nms)", "gradients"))
    assert "torchvision.ops.nms" in (r.out / "model.py").read_text()
    _edit(r.out, "out = out * self.anchors", "out = out * self.anchors.flip(-1)")
    assert prove_port(r.out).verdict == "differ"


@pytest.mark.slow
def test_fastscnn_ports_and_a_resize_without_align_corners_is_caught(tmp_path):
    """GluonCV's Fast-SCNN (4 classes, its auxiliary head) at 64x64: its two resolutions fused (the
    port runs the branches in another order than Gluon: the proof pairs their layers all the
    same), pyramid pooling, bilinear resizes with MXNet's align_corners=True."""
    r = port(f"{MODELS}:fastscnn_small", (2, 3, 64, 64), tmp_path / "fastscnn", steps=1)
    _agrees(r.proof)
    _edit(r.out, "size=8, mode='bilinear', align_corners=True", "size=8, mode='bilinear', align_corners=False")
    assert prove_port(r.out).verdict == "differ"


def test_a_zoo_model_without_a_base_network_builds():
    """--zoo passes pretrained_base=False to the models that have a base network; one that refuses
    the argument in its own words (GluonCV's DarknetV3: "should only accept kwargs", not a TypeError)
    is built without it, and a model name that does not exist is one line naming close ones."""
    from ganparity.backends.mxnet.port import _zoo_block
    from ganparity.common.errors import GanparityError

    assert type(_zoo_block("gluoncv:darknet53")).__name__ == "DarknetV3"
    with pytest.raises(GanparityError, match="no such model in gluoncv; close: darknet53"):
        _zoo_block("gluoncv:darknet54")


def test_onednns_unreadable_batchnorm_statistics_are_named_with_the_way_out():
    """GluonCV's R(2+1)D: in one training step MXNet 1.9.1's oneDNN fails to update bn1's running
    mean (Check failed: !is_view, raised at the next read), and the port's proof said 'the mxnet
    model rejects input shape'. The read now says what happened and the way out
    (MXNET_MKLDNN_ENABLED=0). Where this machine's oneDNN does not fail so, nothing is said."""
    import mxnet as mx
    import numpy as np
    from mxnet import autograd

    from ganparity.backends.mxnet.compare import get_state
    from ganparity.common.errors import GanparityError
    from ganparity.common.port.checks import input_specs, port_backend

    M = port_backend("mxnet")

    def stepped():
        block = M.load({"zoo": "gluoncv:r2plus1d_resnet18_kinetics400"}, None)
        M.read(block, input_specs((1, 3, 8, 32, 32)), None, 0)
        with autograd.record():
            y = block(mx.nd.array(np.random.default_rng(0).standard_normal((1, 3, 8, 32, 32))))
        y.backward()
        return block

    stepped()
    try:  # the failure, raised once at the first wait after it
        mx.nd.waitall()
        fails = False
    except mx.base.MXNetError as e:
        assert "is_view" in str(e) or "IsDefaultData" in str(e), str(e)
        fails = True
    block = stepped()
    if fails:
        with pytest.raises(GanparityError, match=r"oneDNN failed on a tensor layout .* MXNET_MKLDNN_ENABLED=0"):
            get_state(block)
    else:
        assert "bn1.running_mean" in get_state(block)
