"""`ganparity compare` and compare_models(): any PyTorch module against any Gluon block.

What a porting user gets: torchvision's resnet18 against the Gluon model zoo's resnet18_v1,
auto-mapped, agreeing in forward, gradients and one SGD step; the project's own specs, built
natively by each backend, paired tensor for tensor; deliberately wrong ports, each caught at its
layer with the difference that explains it; bad input as one line and exit 2; and the pytest API
used from a project outside this package.

The user's models live in MODELS, a module written to disk as a user would have it, so that the
CLI loads them by path or module name exactly as it loads anyone's.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ganparity
from ganparity.common.cli import main
from ganparity.common.compare import load_mapping, parse_optimizer, parse_shape
from ganparity.common.errors import GanparityError
from ganparity.common.spec.model import Semantics
from ganparity.common.spec.registry import GAN_SPECS, get_spec

from .conftest import SMALL, need

MODELS = '''
"""A user's port: small PyTorch models and their Gluon ports, right and wrong."""
from mxnet.gluon import nn as gnn
from mxnet.gluon import HybridBlock
import torch
from torch import nn


def torch_generator(output_padding=1):
    return nn.Sequential(
        nn.ConvTranspose2d(8, 16, 4, 1, 0, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.ConvTranspose2d(16, 8, 4, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.ConvTranspose2d(8, 3, 3, 2, 1, output_padding=output_padding), nn.Tanh())


def gluon_generator(momentum=0.9, output_padding=1):
    net = gnn.HybridSequential()
    net.add(gnn.Conv2DTranspose(16, 4, 1, 0, use_bias=False, in_channels=8), gnn.BatchNorm(momentum=momentum),
            gnn.Activation("relu"),
            gnn.Conv2DTranspose(8, 4, 2, 1, use_bias=False, in_channels=16), gnn.BatchNorm(momentum=momentum),
            gnn.Activation("relu"),
            gnn.Conv2DTranspose(3, 3, 2, 1, output_padding=output_padding), gnn.Activation("tanh"))
    return net  # not initialized: compare initializes it, then copies torch's weights


def torch_discriminator(eps=1e-3, slope=0.2, p=0.3, flatten=True):
    return nn.Sequential(
        nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(8, 16, 4, 2, 1, bias=False), nn.BatchNorm2d(16, eps=eps),
        nn.LeakyReLU() if slope is None else nn.LeakyReLU(slope), nn.Dropout(p),
        *([nn.Flatten()] if flatten else []), nn.Linear(16 * 4 * 4, 1))


def gluon_discriminator(eps=1e-3, rate=0.3, global_stats=False, width=16):
    net = gnn.HybridSequential()
    net.add(gnn.Conv2D(8, 4, 2, 1), gnn.LeakyReLU(0.2),
            gnn.Conv2D(width, 4, 2, 1, use_bias=False), gnn.BatchNorm(epsilon=eps, use_global_stats=global_stats),
            gnn.LeakyReLU(0.2), gnn.Dropout(rate), gnn.Dense(1))
    net.initialize()
    return net


def torch_pooled(count_include_pad=False):
    return nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), nn.AvgPool2d(3, 2, 1, count_include_pad=count_include_pad),
                         nn.Flatten(), nn.Linear(4 * 8 * 8, 5))


def gluon_pooled(count_include_pad=False):
    net = gnn.HybridSequential()
    net.add(gnn.Conv2D(4, 3, 1, 1), gnn.AvgPool2D(3, 2, 1, count_include_pad=count_include_pad), gnn.Dense(5))
    return net


class TorchBranches(nn.Module):
    """A stem, two same-shaped branches concatenated, BatchNorm, global pooling, a classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 1, 1)
        self.a = nn.Conv2d(8, 4, 3, 1, 1)
        self.b = nn.Conv2d(8, 4, 3, 1, 1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = torch.relu(self.bn(torch.cat([self.a(h), self.b(h)], 1)))
        return self.fc(h.mean((2, 3)))


class GluonBranches(HybridBlock):
    """The same model; swap=True runs branch b before branch a (the concatenation keeps a, b)."""

    def __init__(self, swap=False):
        super().__init__()
        self.swap = swap
        with self.name_scope():
            self.stem = gnn.Conv2D(8, 3, 1, 1)
            self.a = gnn.Conv2D(4, 3, 1, 1)
            self.b = gnn.Conv2D(4, 3, 1, 1)
            self.bn = gnn.BatchNorm()
            self.fc = gnn.Dense(3)

    def hybrid_forward(self, F, x):
        h = F.relu(self.stem(x))
        if self.swap:
            b = self.b(h)
            a = self.a(h)
        else:
            a, b = self.a(h), self.b(h)
        h = F.relu(self.bn(F.concat(a, b, dim=1)))
        return self.fc(F.mean(h, axis=(2, 3)))


def gluon_branches():
    return GluonBranches()


def gluon_branches_swapped():
    return GluonBranches(swap=True)


def gluon_generator_momentum_unconverted():
    return gluon_generator(momentum=0.1)  # torch's 0.1, passed to Gluon as it is


def gluon_discriminator_wide():
    return gluon_discriminator(width=32)


def torch_tagger():
    """(batch, time, features) -> per-step scores: nn.Linear acts on the last axis."""
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def gluon_tagger(flatten=False):
    net = gnn.HybridSequential()
    net.add(gnn.Dense(8, flatten=flatten), gnn.Activation("tanh"), gnn.Dense(3, flatten=flatten))
    return net


def gluon_tagger_default_flatten():
    return gluon_tagger(flatten=True)  # Gluon's default: (4, 5, 6) becomes (4, 30)


def torch_with_stamp():
    """A torch model that carries an extra buffer its Gluon port has no use for."""
    net = torch_pooled()
    net.register_buffer("stamp", torch.zeros(2))
    return net


def torch_fused():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


def gluon_fused():
    """Conv2D(activation='relu'), initialized with deferred shapes and hybridized, as users do."""
    net = gnn.HybridSequential()
    net.add(gnn.Conv2D(4, 3, activation="relu"), gnn.Dense(2))
    net.initialize()
    net.hybridize()
    return net


def broken():
    raise RuntimeError("CUDA out of memory\\nTried to allocate 2.00 GiB")
'''


@pytest.fixture(scope="module")
def models_file(tmp_path_factory) -> Path:
    need("torch")
    need("mxnet")
    path = tmp_path_factory.mktemp("user") / "port_models.py"
    path.write_text(MODELS)
    return path


@pytest.fixture(scope="module")
def user(models_file):
    """The user's module, imported once for the in-process tests."""
    spec = importlib.util.spec_from_file_location("port_models_for_tests", models_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def resnet18():
    torchvision = pytest.importorskip("torchvision")
    need("mxnet")
    from mxnet.gluon.model_zoo import vision

    return torchvision.models.resnet18(weights=None), vision.resnet18_v1(pretrained=False)


# -- the done criteria: resnet18 and the project's specs ---------------------------------------------


def test_resnet18_torchvision_against_gluon_model_zoo_agrees(resnet18):
    """Random init, no download; auto-mapped; forward (train and eval), gradients, one SGD step."""
    tv, zoo = resnet18
    report = ganparity.compare_models(tv, zoo, (2, 3, 64, 64), optimizer="sgd:lr=0.1,momentum=0.9,wd=1e-4")
    assert report.assert_close() is report
    assert [c.name for c in report.checks] == ["forward train", "forward eval", "gradients", "step 1"]
    owners = [p for p in report.pairs if p.tensors]
    assert len(owners) == 20 + 20 + 1 and all(p.source == "auto" for p in owners)  # convs, BatchNorms, fc
    mapping = {tn: mn for p in report.pairs for _, tn, mn in p.tensors}
    torch_names = {n for n in tv.state_dict() if not n.endswith("num_batches_tracked")}
    assert set(mapping) == torch_names and len(set(mapping.values())) == len(mapping) == 102
    assert mapping["layer2.0.downsample.0.weight"] == "features.5.0.downsample.0.weight"  # the branch
    assert mapping["layer3.1.bn2.running_var"] == "features.6.1.body.4.running_var"
    assert mapping["bn1.weight"] == "features.1.gamma" and mapping["fc.weight"] == "output.weight"
    assert report.fp64 == "run"
    by_check = {c.name: c for c in report.checks}
    compared = [p for p in report.pairs if p.torch.out_shape is not None]
    for mode in ("train", "eval"):  # every paired layer's output, and the model's output
        assert len(by_check[f"forward {mode}"].tensors) == len(compared) + 1
    assert len(by_check["gradients"].tensors) == 62  # every parameter: 20 convs, 20 x 2 BatchNorm, fc x 2
    assert len(by_check["step 1"].tensors) == 102  # the parameters and the 40 BatchNorm statistics
    tensors = [t for c in report.checks for t in c.tensors]
    # The fp32 gaps are rounding: with both models in float64 they all but vanish (the step's
    # 2.4e-7 is MXNet's BatchNorm momentum held as float32, 0.9 -> 0.89999998).
    assert max(t.fp64_rel for t in tensors) < 1e-6
    assert report.checks[1].max_rel < 1e-5  # eval forward: no BatchNorm over a tiny batch


def test_resnet18_wrong_eps_inside_a_residual_block_is_named(resnet18):
    from mxnet.gluon.model_zoo import vision

    tv, _ = resnet18
    zoo = vision.resnet18_v1(pretrained=False)
    zoo.features[5][0].body[1]._kwargs["eps"] = 1e-2  # layer2.0.bn1, ported with the wrong epsilon
    report = ganparity.compare_models(tv, zoo, (2, 3, 64, 64), steps=0)
    d = report.first_divergence
    assert not report.ok
    assert (d.check, d.torch_layer, d.mxnet_layer) == ("forward train", "layer2.0.bn1", "features.5.0.body.1")
    assert d.keys[0] == "bn-eps" and "mxnet epsilon=0.01" in d.hints[0].text


def _native(name: str, net: str):
    if name == "resnet34-finetune":
        spec = get_spec(name, image_size=32, width=8)  # all 16 residual blocks, narrow
    else:
        spec = get_spec(name, **({} if name == "gan-gaussian" else SMALL))
    model = spec.nets[net]
    T, M = need("torch"), need("mxnet")
    return model, T.build(model, semantics=Semantics.of("torch")), M.build(model, semantics=Semantics.of("mxnet"))


@pytest.mark.parametrize("name, net", [(s, n) for s in GAN_SPECS for n in ("G", "D")]
                         + [("resnet34-finetune", "head"), ("resnet34-finetune", "backbone")])
def test_project_specs_built_natively_agree_and_pair_by_name(name, net):
    """Each backend's own build of a spec (native BatchNorm statistics on both sides): the
    auto-mapping pairs exactly the tensors that carry one neutral name."""
    model, tnet, mnet = _native(name, net)
    shape = (4, *model.input_shape)
    report = ganparity.compare_models(tnet, mnet, shape, optimizer="adam:lr=2e-4,beta1=0.5")
    report.assert_close()
    mapping = {tn: mn for p in report.pairs for _, tn, mn in p.tensors}
    neutral = {mn: mn.replace(".gamma", ".weight").replace(".beta", ".bias") for mn in mapping.values()}
    assert all(neutral[mn] == tn for tn, mn in mapping.items())
    from ganparity.backends.torch.build import _tensors

    live = dict(tnet.named_parameters()) | dict(tnet.named_buffers())
    assert {id(live[tn]) for tn in mapping} == {id(t) for t in _tensors(tnet, model).values()}


# -- wrong ports: each caught at its layer, with its difference -----------------------------------------


WRONG = {  # difference -> (torch factory and kwargs, gluon factory and kwargs, input, compare kwargs,
    #                    the check that fails first, torch layer, mxnet layer)
    "bn-momentum": (("torch_generator", {}), ("gluon_generator", {"momentum": 0.1}), (4, 8, 1, 1), {},
                    "step 1", "1", "1"),
    "bn-eps": (("torch_discriminator", {"eps": 1e-5}), ("gluon_discriminator", {}), (4, 3, 16, 16), {},
               "forward train", "3", "3"),
    "leaky-slope": (("torch_discriminator", {"slope": None}), ("gluon_discriminator", {}), (4, 3, 16, 16), {},
                    "forward train", "4", "4"),
    "convtranspose-padding": (("torch_generator", {}), ("gluon_generator", {"output_padding": 0}), (4, 8, 1, 1),
                              {}, "forward train", "6", "6"),
    "pool-count-include-pad": (("torch_pooled", {}), ("gluon_pooled", {"count_include_pad": True}),
                               (4, 3, 16, 16), {}, "forward train", "1", "1"),
    "dropout": (("torch_discriminator", {}), ("gluon_discriminator", {"rate": 0.5}), (4, 3, 16, 16), {},
                "dropout rates", "5", "5"),
    "train-eval": (("torch_discriminator", {}), ("gluon_discriminator", {"global_stats": True}), (4, 3, 16, 16),
                   {}, "forward train", "3", "3"),
}


@pytest.mark.parametrize("key", list(WRONG))
def test_a_wrong_port_is_caught_with_its_layer_and_hint(user, key):
    (tf, tkw), (mf, mkw), shape, kwargs, check, t_layer, m_layer = WRONG[key]
    report = ganparity.compare_models(getattr(user, tf)(**tkw), getattr(user, mf)(**mkw), shape, **kwargs)
    d = report.first_divergence
    assert not report.ok and d is not None
    assert (d.check, d.torch_layer, d.mxnet_layer, d.keys[0]) == (check, t_layer, m_layer, key)
    with pytest.raises(AssertionError, match=rf"first divergence at torch '{t_layer}'.*\n  hint \[{key}\]"):
        report.assert_close()


def test_right_ports_agree_with_optimizers_translated(user):
    """The right versions of the same models, through Adam (each framework's eps placement),
    SGD with momentum and weight decay, several steps, eval-mode gradients and other losses."""
    runs = [
        (user.torch_generator(), user.gluon_generator(), (4, 8, 1, 1), dict(optimizer="adam:lr=2e-4,beta1=0.5",
                                                                              steps=3)),
        (user.torch_generator(), user.gluon_generator(), (4, 8, 1, 1),
         dict(optimizer="adam:lr=1e-2,beta1=0.5,wd=1e-2,follow=mxnet", steps=2)),
        (user.torch_discriminator(), user.gluon_discriminator(), (4, 3, 16, 16),
         dict(optimizer="sgd:lr=0.1,momentum=0.9,wd=1e-2", steps=3, loss="mse")),
        (user.torch_discriminator(), user.gluon_discriminator(), (4, 3, 16, 16), dict(mode="eval", loss="mean")),
        (user.torch_pooled(), user.gluon_pooled(), (4, 3, 16, 16), dict(loss="cross-entropy")),
        (user.TorchBranches(), user.gluon_branches(), (4, 3, 8, 8), {}),
    ]
    for tnet, mnet, shape, kwargs in runs:
        report = ganparity.compare_models(tnet, mnet, shape, **kwargs)
        report.assert_close()
        assert len(report.checks) == 3 + kwargs.get("steps", 1) + ("p=" in repr(tnet))  # + dropout rates


def test_crossed_branches_need_a_mapping_file(user, tmp_path):
    """Two same-shaped branches run in the other order in Gluon: auto-pairing follows execution
    order and crosses them, the concatenation shows it; a mapping file pairs them by name."""
    crossed = ganparity.compare_models(user.TorchBranches(), user.gluon_branches_swapped(), (4, 3, 8, 8))
    d = crossed.first_divergence
    assert (d.check, d.torch_layer, d.keys[0]) == ("forward train", "bn", "unexplained")
    assert "crossed" in d.hints[0].text
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps({"layers": {"a": "a", "b": "b"}}))
    fixed = ganparity.compare_models(user.TorchBranches(), user.gluon_branches_swapped(), (4, 3, 8, 8),
                                     mapping=path)
    fixed.assert_close()
    assert {p.torch.path: p.source for p in fixed.pairs}["a"] == "mapping"
    with pytest.raises(GanparityError, match=r"no mxnet layer 'c' ran in the forward"):
        ganparity.compare_models(user.TorchBranches(), user.gluon_branches(), (4, 3, 8, 8),
                                 mapping={"layers": {"a": "c"}})


def test_dense_flatten_dropped_in_the_torch_port_is_named(user):
    with pytest.raises(GanparityError) as e:
        ganparity.compare_models(user.torch_discriminator(flatten=False), user.gluon_discriminator(), (4, 3, 16, 16))
    text = str(e.value)
    assert "the torch model rejects input shape (4, 3, 16, 16): at '6' (Linear, input (4, 16, 4, 4))" in text
    assert "its mxnet counterpart is '6' (Dense)" in text
    assert "hint [dense-flatten] mxnet Dense(flatten=True) flattens its (4, 16, 4, 4) input to (4, 256)" in text


def test_dense_flatten_left_at_gluons_default_is_named(models_file, capsys):
    """A per-step Linear on (batch, time, features): the Gluon port that keeps Dense's default
    flatten=True grows a (8, 30) weight; the tensors do not pair, and the hint says why."""
    assert main(_cli(models_file, "torch_tagger", "gluon_tagger", "4,5,6")) == 0
    assert "AGREE" in capsys.readouterr().out
    assert main(_cli(models_file, "torch_tagger", "gluon_tagger_default_flatten", "4,5,6")) == 2
    err = capsys.readouterr().err
    assert err.startswith("ganparity: error: the models' tensors do not pair") and err.count("\n") == 1
    assert "unmatched torch: 0.weight (8, 6) in '0' (Linear)" in err
    assert "unmatched mxnet: 0.weight (8, 30) in '0' (Dense)" in err
    assert ("hint [dense-flatten] mxnet Dense(flatten=True) flattens its (4, 5, 6) input to (4, 30); torch "
            "nn.Linear acts on the last axis of (4, 5, 6)") in err


def test_a_mapping_file_ignores_what_one_side_alone_has(models_file, tmp_path, capsys):
    assert main(_cli(models_file, "torch_with_stamp", "gluon_pooled", "4,3,16,16")) == 2
    assert "unmatched torch: stamp (2,) in '(root)' (Sequential)" in capsys.readouterr().err
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps({"ignore": {"torch": ["stamp"]}}))
    assert main(_cli(models_file, "torch_with_stamp", "gluon_pooled", "4,3,16,16", "--mapping", str(path))) == 0
    path.write_text(json.dumps({"ignore": {"torch": ["stmp"]}}))
    assert main(_cli(models_file, "torch_with_stamp", "gluon_pooled", "4,3,16,16", "--mapping", str(path))) == 2
    assert "ignore lists 'stmp', which the torch model does not have" in capsys.readouterr().err


# -- the command: reports, exit codes, one-line errors ---------------------------------------------------


def _cli(models_file: Path, torch_factory: str, mxnet_factory: str, shape: str, *extra: str) -> list[str]:
    return ["compare", "--torch", f"{models_file}:{torch_factory}", "--mxnet", f"{models_file}:{mxnet_factory}",
            "--input-shape", shape, *extra]


def test_cli_agreement_writes_markdown_and_json(models_file, tmp_path, capsys):
    out = tmp_path / "report"
    args = _cli(models_file, "torch_generator", "gluon_generator", "4,8,1,1", "--optimizer",
                "adam:lr=2e-4,beta1=0.5", "--steps", "2", "--out", str(out))
    assert main(args) == 0
    assert "AGREE (8 layers paired, 12 tensors" in capsys.readouterr().out
    data = json.loads((out / "report.json").read_text())
    assert data["ok"] and data["first_divergence"] is None
    assert [c["name"] for c in data["checks"]] == ["forward train", "forward eval", "gradients", "step 1", "step 2"]
    assert data["pairs"][1]["tensors"][0] == {"role": "weight", "torch": "1.weight", "mxnet": "1.gamma"}
    md = (out / "report.md").read_text()
    assert md.startswith("# ganparity compare: agree")
    assert "| 1 | `1` BatchNorm2d | `1` BatchNorm | batchnorm | auto | weight, bias, running_mean, running_var |" in md


def test_cli_eval_mode_other_loss_and_sgd_with_momentum(models_file, tmp_path, capsys):
    args = _cli(models_file, "torch_discriminator", "gluon_discriminator", "4,3,16,16", "--mode", "eval", "--loss",
                "mean", "--optimizer", "sgd:lr=0.1,momentum=0.9,wd=1e-4", "--steps", "2", "--out", str(tmp_path))
    assert main(args) == 0
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["ok"] and data["options"]["mode"] == "eval" and data["options"]["loss"] == "mean"
    assert [c["name"] for c in data["checks"]] == ["forward train", "forward eval", "dropout rates", "gradients",
                                                   "step 1", "step 2"]
    assert data["options"]["torch_optimizer"].startswith("torch.optim.SGD(params, lr=0.1, momentum=0.9")
    assert "SGD(learning_rate=0.1, momentum=0.9, wd=0.0001)" in data["options"]["mxnet_optimizer"]
    assert "bn-eval-backward" in " ".join(data["notes"])


def test_cli_a_hybridized_gluon_block_with_fused_activation_and_no_fp64(models_file, tmp_path, capsys):
    """Gluon infers deferred shapes symbolically, through the same hooks: those calls are not
    layers. The fused Conv2D(activation='relu') pairs with Conv2d then ReLU."""
    assert main(_cli(models_file, "torch_fused", "gluon_fused", "2,3,8,8", "--no-fp64", "--out", str(tmp_path))) == 0
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["fp64"] == "not asked for"
    assert [(p["torch"], p["mxnet"], p["kind"]) for p in data["pairs"]] == [
        ("0", "0", "conv"), ("1", "0.act", "relu"), ("3", "1", "linear")]
    assert any("un-hybridized" in n for n in data["notes"])
    assert "without the fp64 control, rows are judged on fp32 alone" in (tmp_path / "report.md").read_text()


def test_cli_disagreement_exits_1_and_names_the_layer(models_file, tmp_path, capsys):
    out = tmp_path / "report"
    with pytest.raises(SystemExit) as e:
        main(_cli(models_file, "torch_generator", "gluon_generator_momentum_unconverted", "4,8,1,1", "--out", str(out)))
    assert e.value.code == 1
    printed = capsys.readouterr().out
    assert "step 1: first divergence at torch '1' <-> mxnet '1', tensor '1.running_mean'" in printed
    assert "hint [bn-momentum] torch momentum=0.1 is Gluon momentum=0.9" in printed
    data = json.loads((out / "report.json").read_text())
    assert not data["ok"] and data["first_divergence"]["torch_layer"] == "1"
    assert "**step 1: first divergence at torch '1'" in (out / "report.md").read_text()


@pytest.mark.parametrize("torch_factory, mxnet_factory, shape, message", [
    ("no_such_module.models:make_net", None, "4,3,16,16",
     "--torch 'no_such_module.models:make_net': cannot import 'no_such_module.models': ModuleNotFoundError: "
     "No module named 'no_such_module'"),
    ("{file}:torch_discriminatr", None, "4,3,16,16", "has no attribute 'torch_discriminatr'; did you mean "
                                                     "torch_discriminator?"),
    ("{file}:broken", None, "4,3,16,16", "the factory failed: RuntimeError: CUDA out of memory"),
    ("{file}:torch_discriminator", "{file}:gluon_discriminator_wide", "4,3,16,16",
     "the models' tensors do not pair (torch 9 tensors, 2,761 values; mxnet 9, 5,129); unmatched torch: "
     "2.weight (16, 8, 4, 4) in '2' (Conv2d), 3.weight (16,) in '3' (BatchNorm2d)"),
    ("{file}:torch_discriminator", None, "4,3,32,32",
     "the torch model rejects input shape (4, 3, 32, 32): at '7' (Linear, input (4, 1024)): RuntimeError: "
     "mat1 and mat2 shapes cannot be multiplied (4x1024 and 256x1); its mxnet counterpart is '6' (Dense)"),
    ("{file}:torch_discriminator", None, "4,3,x", "input shape '4,3,x': expected integers like 4,3,64,64"),
])
def test_cli_bad_input_is_one_line_and_exit_2(models_file, capsys, torch_factory, mxnet_factory, shape, message):
    fill = lambda ref: ref.format(file=models_file)
    args = ["compare", "--torch", fill(torch_factory), "--mxnet", fill(mxnet_factory or "{file}:gluon_discriminator"),
            "--input-shape", shape]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("ganparity: error: ") and err.count("\n") == 1, err
    assert message in err


def test_the_parameter_mismatch_lists_every_side_and_the_likely_cause(models_file, capsys):
    assert main(_cli(models_file, "torch_discriminator", "gluon_discriminator_wide", "4,3,16,16")) == 2
    err = capsys.readouterr().err
    assert "unmatched mxnet: 2.weight (32, 8, 4, 4) in '2' (Conv2D), 3.gamma (32,) in '3' (BatchNorm)" in err
    assert "hint [conv-config] out_channels: torch 16, mxnet 32 (torch '2' (Conv2d), mxnet '2' (Conv2D))" in err


def _user_env() -> dict[str, str]:
    """A user's process: ganparity found where it is installed (here: the folder that holds the
    package, a checkout or site-packages), nothing of this test session's own path or pytest state."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(Path(ganparity.__file__).resolve().parents[1])
    return env


def test_the_command_in_a_real_process_imports_from_the_current_directory(models_file):
    """The console script, run where the user's module is: MODULE:FUNCTION resolves from '.', and a
    rejected input shape is one line on stderr, exit 2, no traceback."""
    out = subprocess.run([sys.executable, "-m", "ganparity", "compare", "--torch", "port_models:torch_pooled",
                          "--mxnet", "port_models:gluon_pooled", "--input-shape", "2,3,12,12"],
                         cwd=models_file.parent, capture_output=True, text=True, env=_user_env())
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1
    assert out.stderr.startswith("ganparity: error: the torch model rejects input shape (2, 3, 12, 12): at '3' "
                                 "(Linear, input (2, 144))")


def test_the_pytest_api_from_a_project_outside_the_package(models_file, tmp_path):
    """A user's own test module, in its own folder, importing only ganparity (and its models)."""
    (tmp_path / "port_models.py").write_text(models_file.read_text())
    (tmp_path / "test_my_port.py").write_text(textwrap.dedent('''
        import numpy as np
        import pytest

        import ganparity
        from port_models import gluon_generator, torch_generator


        def test_my_port_agrees():
            x = np.random.default_rng(0).standard_normal((4, 8, 1, 1)).astype(np.float32)
            ganparity.compare_models(torch_generator(), gluon_generator(), x).assert_close()


        def test_a_wrong_port_fails_with_the_hint():
            report = ganparity.compare_models(torch_generator(), gluon_generator(momentum=0.1), (4, 8, 1, 1))
            with pytest.raises(AssertionError, match=r"hint \\[bn-momentum\\]"):
                report.assert_close()
        '''))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_port.py"],
                         cwd=tmp_path, capture_output=True, text=True, env=_user_env())
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "2 passed" in out.stdout


# -- the small parsers (no framework) -------------------------------------------------------------------


def test_compare_models_is_part_of_the_lazy_api():
    from ganparity.common.compare import compare_models

    assert "compare_models" in ganparity.__all__ and ganparity.compare_models is compare_models


def test_parsers_refuse_bad_values_in_one_line(tmp_path):
    assert parse_shape("4,3,64,64") == (4, 3, 64, 64) == parse_shape("4x3x64x64")
    for bad in ("", "4,,3", "4,0,3", "four"):
        with pytest.raises(GanparityError, match="input shape"):
            parse_shape(bad)
    assert parse_optimizer("adam:lr=2e-4,beta1=0.5") == {"name": "adam", "lr": 2e-4, "beta1": 0.5, "beta2": 0.999,
                                                         "eps": 1e-8, "wd": 0.0, "follow": "torch"}
    with pytest.raises(GanparityError, match="unknown optimizer 'rmsprop'; valid: sgd, adam"):
        parse_optimizer("rmsprop:lr=1")
    with pytest.raises(GanparityError, match="unknown sgd setting 'beta1'; valid: lr, momentum, wd"):
        parse_optimizer("sgd:beta1=0.5")
    with pytest.raises(GanparityError, match="lr='fast' is not a number"):
        parse_optimizer("sgd:lr=fast")
    bad = tmp_path / "m.json"
    bad.write_text("{not json")
    with pytest.raises(GanparityError, match=r"mapping file .*m.json': not JSON"):
        load_mapping(bad)
    with pytest.raises(GanparityError, match="unknown mapping 'a dict' key 'pairs'; valid: layers, tensors, ignore"):
        load_mapping({"pairs": {}})
