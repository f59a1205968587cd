"""`ganparity port`: resnet18_v1 and the DCGAN G and D of seed 002 ported to PyTorch, the written
code run without ganparity, its own test_port.py run, both semantics proved (every row judged:
agree / differ / cannot tell here), and every bad input refused with one line, exit 2 and nothing
written. The wrong ports the proof must catch are in tests/test_port_mutations.py."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("mxnet")

from ganparity.common.cli.main import main  # noqa: E402
from ganparity.common.errors import GanparityError  # noqa: E402
from ganparity.common.port import port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = str(Path(__file__).with_name("port_models.py"))
ADAM = "adam:lr=2e-4,beta1=0.5"
DCGAN = {"netG": (4, 16, 1, 1), "netD": (4, 3, 64, 64)}


def _env() -> dict:
    return os.environ | {"PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def ported(tmp_path_factory):
    """Each port once: resnet18 (SGD, 1 step) and G and D (Adam, 3 steps) under both semantics."""
    base = tmp_path_factory.mktemp("ports")
    out = {"resnet18": port(f"{MODELS}:resnet18", (2, 3, 64, 64), base / "resnet18", optimizer="sgd:lr=0.1")}
    for name, shape in DCGAN.items():
        for sem in ("torch", "mxnet"):
            out[f"{name}-{sem}"] = port(f"{MODELS}:{name}", shape, base / f"{name}-{sem}", semantics=sem,
                                        optimizer=ADAM, steps=3)
    return out


def _rel(result, check: str) -> float:
    return result.proof.row(check).max_rel


@pytest.mark.parametrize("name", ["resnet18", "netG-torch", "netD-torch"])
def test_torch_semantics_every_row_agrees(ported, name):
    """Under semantics 'torch' the Gluon side follows PyTorch's Adam and BatchNorm statistics, so
    every row is judged: the weights, forward, gradients, each step's update and statistics, and
    every hyperparameter is seen by some row."""
    r = ported[name]
    assert r.proof.verdict == "agree", r.proof.failures()
    assert r.proof.row("weights").max_rel == 0.0
    checks = [row.check for row in r.proof.rows]
    assert {"step 1 parameters", "step 1 BatchNorm statistics", "optimizer step 2", "hyperparameters seen"} <= set(
        checks)
    assert all(rows for rows in r.proof.coverage.values()), r.proof.coverage
    md = (r.out / "PORT.md").read_text()
    assert "**Verdict: agree.**" in md and "| step 1 BatchNorm statistics | agree |" in md and "bn-momentum" in md


def test_resnet18_is_readable_and_mapped(ported):
    """The written model reads as a person would write it (issue 27): one class per repeated Gluon
    block (BasicBlockV1, its downsample a flag), Sequential where Gluon had one, Gluon's attribute
    names and no generated ones, a short forward; the state-dict keys are Gluon's structural names."""
    r = ported["resnet18"]
    assert len(r.port.tensor_map) == 102  # 62 parameters and 40 running statistics
    assert r.port.tensor_map["features.4.0.body.0.weight"] == "features.4.0.body.0.weight"
    assert r.port.tensor_map["features.1.weight"] == "features.1.gamma"
    src = (r.out / "model.py").read_text()
    assert re.findall(r"^class (\w+)\(", src, re.M) == ["BasicBlockV1", "ResNetV1"]
    assert "def __init__(self, channels, stride, in_channels, downsample=False):" in src
    assert ") if downsample else None" in src and "self.downsample(x) if self.downsample is not None else x" in src
    assert "BasicBlockV1(channels=128, stride=2, in_channels=64, downsample=True)" in src
    assert "nn.Conv2d(in_channels, channels, kernel_size=3, stride=stride, padding=1, bias=False)" in src
    assert "x = self.output(torch.flatten(x, 1))" in src  # Gluon Dense's flatten, made explicit
    assert not re.search(r"stage\d|activation\d|features_\d|resnetv1", src)  # no Gluon-generated names
    forward = src.split("class ResNetV1", 1)[1].split("def forward", 1)[1].split("\n\n", 1)[0]
    assert len([ln for ln in forward.splitlines()[1:] if ln.strip()]) <= 20
    assert len(src.splitlines()) <= 300
    # torchvision's residual sum and ReLU: in place, into the BatchNorm's new tensor, never into the block's input
    assert "x = self.body(x)\n        x += downsample\n        x = F.relu(x, inplace=True)\n        return x" in src
    assert r.proof.row("weights").agrees and r.proof.row("forward eval").agrees
    assert {p.name for p in r.out.iterdir()} >= {"model.py", "weights.pt", "weights.npz", "test_port.py", "PORT.md",
                                                  "port.json", "proof.json", "source.params", "mapping.json"}


@pytest.mark.parametrize("name", ["netG", "netD"])
def test_mxnet_semantics_three_adam_steps_agree(ported, name):
    r = ported[f"{name}-mxnet"]
    assert r.proof.verdict == "agree", r.proof.failures()
    for k in (1, 2, 3):
        assert r.proof.row(f"step {k} parameters").agrees
        assert r.proof.row(f"step {k} BatchNorm statistics").agrees
    assert r.proof.row("optimizer step 1, gradients near eps").agrees  # eps, its placement and the rescale: seen
    src = (r.out / "model.py").read_text()
    assert "class MXNetBatchNorm(" in src and "class MXNetAdam(" in src and "import ganparity" not in src


BLOCKED = """
import importlib.abc, importlib.util, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ganparity", "mxnet"):
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, Block())
spec = importlib.util.spec_from_file_location("model", sys.argv[1])
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
import torch
net = m.load(); net.train()
out = net(torch.randn(*map(int, sys.argv[2].split(","))))
out.sum().backward(); opt = m.make_optimizer(net); m.gluon_step(opt, 4)
print("ran", tuple(out.shape), sorted(k for k in sys.modules if k.split(".")[0] in ("ganparity", "mxnet")))
"""


@pytest.mark.parametrize("name", ["resnet18", "netG-torch", "netD-mxnet"])
def test_written_code_runs_with_torch_alone(ported, name):
    r = ported[name]
    shape = {"resnet18": "2,3,64,64", "netG-torch": "4,16,1,1", "netD-mxnet": "4,3,64,64"}[name]
    done = subprocess.run([sys.executable, "-I", "-c", BLOCKED, str(r.out / "model.py"), shape],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("[]"), done.stdout


def test_its_own_test_passes(ported):
    r = ported["netD-torch"]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(r.out / "test_port.py")],
                          capture_output=True, text=True, env=_env(), cwd=r.out, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    assert f"{len(r.proof.rows) + 1} passed" in done.stdout, done.stdout[-500:]


# -- bad input: one line, exit 2, nothing written --------------------------------------------------


def _refused(capsys, tmp_path, *args, out: Path | None = None) -> str:
    out = out or tmp_path / "ported"
    before = sorted(p.name for p in tmp_path.iterdir())
    shape = [] if "--input-shape" in args else ["--input-shape", "4,3,64,64"]  # repeatable: one per input
    assert main(["port", *shape, "--out", str(out), *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    # progress lines ("ganparity: port: reading ...") may come first; the error is one line, the last
    progress, err = lines[:-1], lines[-1]
    assert err.startswith("ganparity: error: ") and all(x.startswith("ganparity: port: ") for x in progress), lines
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no folder, no temporary left
    return err


def test_bad_factory(capsys, tmp_path):
    assert "has no attribute 'netE'" in _refused(capsys, tmp_path, "--mxnet", f"{MODELS}:netE")
    assert "the factory failed: RuntimeError: no GPU here" in _refused(capsys, tmp_path, "--mxnet", f"{MODELS}:raising")


def test_params_not_matching(capsys, tmp_path):
    import mxnet as mx

    sys.path.insert(0, str(Path(MODELS).parent))
    from port_models import netG

    g = netG()
    g.initialize()
    g(mx.nd.zeros((1, 16, 1, 1)))
    params = tmp_path / "g.params"
    g.save_parameters(str(params))
    err = _refused(capsys, tmp_path, "--mxnet", f"{MODELS}:netD", "--params", str(params))
    assert "--params" in err and "does not match the block" in err


def test_shape_rejected(capsys, tmp_path):
    err = _refused(capsys, tmp_path, "--mxnet", f"{MODELS}:netD", "--input-shape", "4,3,8")
    assert "the block rejects input shape (4, 3, 8)" in err


def test_out_not_empty(capsys, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    err = _refused(capsys, tmp_path, "--mxnet", f"{MODELS}:netD", out=out)
    assert "holds 'mine.txt' and no PORT.md" in err
    err = _refused(capsys, tmp_path, "--mxnet", f"{MODELS}:netD", "--force", out=out)  # --force replaces ports only
    assert "holds 'mine.txt'" in err
    assert (out / "mine.txt").read_text() == "keep me"


def test_out_is_never_the_current_folder(capsys, tmp_path, monkeypatch):
    (tmp_path / "gm.py").write_text("keep me")
    monkeypatch.chdir(tmp_path)
    err = _refused(capsys, tmp_path, "--mxnet", f"{MODELS}:netD", "--force", out=Path("."))
    assert "is the current folder" in err and (tmp_path / "gm.py").read_text() == "keep me"


@pytest.mark.parametrize("optimizer, message", [
    ("sgd:lr=nan", "lr=nan is out of range; expected 0 < lr (finite)"),
    ("adam:lr=0.01,beta1=1.5", "beta1=1.5 is out of range; expected 0 <= beta1 < 1"),
    ("sgd:momentum=-0.1", "momentum=-0.1 is out of range"),
    ("adam:eps=0", "eps=0 is out of range"),
])
def test_every_optimizer_value_is_checked_before_anything_runs(capsys, tmp_path, optimizer, message):
    assert message in _refused(capsys, tmp_path, "--mxnet", f"{MODELS}:netD", "--optimizer", optimizer)


def test_a_factory_that_exits_is_named(capsys, tmp_path):
    assert "the factory called sys.exit(3)" in _refused(capsys, tmp_path, "--mxnet", f"{MODELS}:exiting")


def test_a_nan_weight_is_named(capsys, tmp_path):
    err = _refused(capsys, tmp_path, "--mxnet", f"{MODELS}:with_nan_weight", "--input-shape", "2,6")
    assert "the Gluon block holds non-finite values: '0.weight' (1 NaN of 24 values)" in err


def test_force_replaces_an_earlier_port_and_the_deprecated_flag_still_works(capsys, tmp_path):
    out = tmp_path / "p"
    args = ["port", "--mxnet", f"{MODELS}:dense_residual_mlp", "--input-shape", "4,12", "--out", str(out)]
    assert main(args) == 0
    assert main(args) == 2 and "(use --force" not in capsys.readouterr().err  # refused: already a port there
    assert main([*args, "--force", "--trainer", "sgd:lr=0.02"]) == 0
    captured = capsys.readouterr()
    assert "--trainer is deprecated; use --optimizer" in captured.err
    assert json.loads((out / "port.json").read_text())["optimizer"].startswith("sgd:lr=0.02")


def test_unsupported_op_names_it(capsys, tmp_path):
    err = _refused(capsys, tmp_path, "--mxnet", f"{MODELS}:with_arctan", "--input-shape", "2,6")
    assert "unsupported: the op arctan" in err and "nearest supported form" in err


def test_mapping_json_pairs_every_tensor(ported):
    m = json.loads((ported["netD-torch"].out / "mapping.json").read_text())
    assert m["tensors"]["0.weight"] == "0.weight" and m["tensors"]["3.running_var"] == "3.running_var"


BRANCHES = {"residual_projection": (2, 3, 16, 16), "concat_branches": (2, 3, 8, 8), "upsampler": (2, 4, 8, 8),
            "tiny_unet": (2, 3, 16, 16), "dense_residual_mlp": (4, 12)}


@pytest.mark.parametrize("name", list(BRANCHES))
def test_user_blocks_with_branches_port_and_prove(tmp_path, name):
    """Residual with projection, concat, upsampling, a U-Net skip, a residual MLP: written, run, and
    proved under mxnet semantics (K Adam steps agree) and torch semantics (forward and gradients)."""
    for sem in ("mxnet", "torch"):
        r = port(f"{MODELS}:{name}", BRANCHES[name], tmp_path / sem, semantics=sem, optimizer=ADAM, steps=2)
        for check in ("weights", "forward train", "forward eval", "gradients"):
            assert r.proof.row(check).agrees, (sem, check, r.proof.summary)
        assert r.proof.verdict == "agree", (sem, r.proof.failures())
        assert (r.out / "model.py").is_file() and (r.out / "weights.pt").is_file()
        if name == "residual_projection":  # the sum in place into a BatchNorm's output, MXNetBatchNorm's too
            assert "+= " in (r.out / "model.py").read_text(), sem


SPEC_NETS = ["gan_gaussian_G", "gan_gaussian_D", "dcgan_G", "dcgan_D", "dcgan_gluon_G", "dcgan_gluon_D",
             "dcgan_d2l_G", "dcgan_d2l_D", "resnet34_finetune_backbone", "resnet34_finetune_head"]


def test_embedding_ports_with_mxnets_index_rule(tmp_path):
    """nn.Embedding: MXNet truncates a float index toward zero and clips it into [0, input_dim-1]
    (checked: -1.7, -0.5, 0.6 -> 0; 1.9 -> 1; 4.5, 7.2 -> 4 of 5); the port does the same, so the
    proof's normal-random inputs (many negative) give the same rows."""
    for sem in ("torch", "mxnet"):
        r = port(f"{MODELS}:embedding_bag", (4, 6), tmp_path / sem, semantics=sem, optimizer=ADAM, steps=2)
        assert r.proof.verdict == "agree", r.proof.failures()
        assert ".long().clamp(0, 6)" in (r.out / "model.py").read_text()
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("ported_embedding", r.out / "model.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    net = m.load()
    [embed] = [mod for mod in net.modules() if isinstance(mod, torch.nn.Embedding)]
    [fc] = [mod for mod in net.modules() if isinstance(mod, torch.nn.Linear)]
    with torch.no_grad():
        expected = fc(embed(torch.tensor([[0, 0, 0, 1, 6, 6]])).reshape(1, -1))
        out = net(torch.tensor([[-1.7, -0.5, 0.6, 1.9, 6.5, 9.2]]))
    assert torch.equal(out, expected)


@pytest.mark.parametrize("name", SPEC_NETS)
def test_the_projects_specs_built_natively_in_gluon_port_and_prove(tmp_path, name):
    """Every net of the five specs, as the mxnet backend builds it, ported under mxnet semantics:
    forward, gradients and one Adam step agree with the Gluon block."""
    sys.path.insert(0, str(Path(MODELS).parent))
    try:
        from port_models import SPEC_NETS as NETS
    finally:
        sys.path.pop(0)
    assert set(NETS) == set(SPEC_NETS)
    r = port(f"{MODELS}:{name}", NETS[name][3], tmp_path / "out", semantics="mxnet", optimizer=ADAM)
    for check in ("weights", "forward train", "forward eval", "gradients", "optimizer step 1", "optimizer step 2",
                  "hyperparameters seen"):
        assert r.proof.row(check).agrees, (check, r.proof.summary)
    # ResNet-34 at 32 px ends in 1x1 maps: its last BatchNorm layers normalise over the batch alone
    # (4 values per channel), and the end-to-end steps are chaos there: an honest 'cannot tell here'
    for row in r.proof.rows:
        assert row.agrees or (row.verdict == "cannot tell here" and "values per channel" in row.suggestion), row


def _written(folder: Path):
    spec = importlib.util.spec_from_file_location(f"written_{abs(hash(str(folder)))}", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_written_model_follows_its_input_size(ported):
    """Shapes come from the input, never from the proof's: the written resnet18 at 64 px and at 96 px
    against the Gluon block at each (eval mode, float64)."""
    import mxnet as mx
    import numpy as np
    import torch

    r = ported["resnet18"]
    net = _written(r.out).load().double().eval()
    sys.path.insert(0, str(Path(MODELS).parent))
    from port_models import resnet18

    block = resnet18()
    block.load_parameters(str(r.out / "source.params"))
    block.cast("float64")
    for size in (64, 96):
        x = np.random.default_rng(size).standard_normal((2, 3, size, size))
        with torch.no_grad():
            ours = net(torch.from_numpy(x)).numpy()
        theirs = block(mx.nd.array(x, dtype="float64")).asnumpy()
        assert np.abs(ours - theirs).max() <= 1e-9 * np.abs(theirs).max(), size


def test_the_written_model_compiles_exports_scripts_and_runs_in_bf16(ported):
    """The structured code is plain PyTorch: torch.jit.script and trace, torch.export, torch.compile
    with fullgraph=True (dynamo's capture; the eager backend, so no minutes of codegen here) and bf16
    autocast all take it, and give its outputs."""
    import torch

    net = _written(ported["resnet18"].out).load().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = net(x)
        for other in (torch.jit.script(net), torch.jit.trace(net, x), torch.export.export(net, (x,)).module(),
                      torch.compile(net, fullgraph=True, backend="eager")):
            assert torch.allclose(other(x), want, rtol=1e-5, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x)
    assert low.dtype == torch.bfloat16 and (low.float() - want).abs().max() <= 0.05 * want.abs().max()


def test_a_sum_writes_in_place_only_into_a_value_nothing_else_reads(tmp_path, monkeypatch):
    """The residual sum goes in place (resnet18 above) only where its operand is read by nothing
    else: here the BatchNorm's output is read again after the sum, which stays out of place while
    the ReLU after it (the sum's own new tensor) goes in place; the proof agrees. With that rule
    taken out of the emitter, the written sum overwrites the value the product reads: the proof
    differs."""
    from ganparity.common.port import structure

    r = port(f"{MODELS}:shared_sum", (2, 4, 8, 8), tmp_path / "ok", optimizer="sgd:lr=0.1")
    src = (r.out / "model.py").read_text()
    assert "+=" not in src and "F.relu(" in src and "inplace=True)" in src, src
    for check in ("weights", "forward train", "forward eval", "gradients"):
        assert r.proof.row(check).agrees, (check, r.proof.summary)
    monkeypatch.setattr(structure.Structured, "_mutable", lambda self, ref, node, readers, c, makers=structure.FRESH:
                        self.nodes[ref[0]]["op"] in makers)
    wrong = port(f"{MODELS}:shared_sum", (2, 4, 8, 8), tmp_path / "wrong", optimizer="sgd:lr=0.1")
    assert "+=" in (wrong.out / "model.py").read_text()
    assert wrong.proof.row("forward eval").verdict == "differ", wrong.proof.failures()


REPEATED = "tests/port_models.py:repeated_units"


def test_a_users_block_with_a_repeated_sub_block_is_one_class(tmp_path):
    """A hand-written Gluon model with a repeated custom sub-block (ConvUnit, with and without a
    projection): one class for it, its channels and stride as arguments, its optional projection a
    flag, the model's forward short, and the port proved."""
    r = port(REPEATED, (4, 3, 16, 16), tmp_path / "p", optimizer="sgd:lr=0.05,momentum=0.9")
    src = (r.out / "model.py").read_text()
    assert re.findall(r"^class (\w+)\(", src, re.M) == ["ConvUnit", "UnitNet"], src
    assert "ConvUnit(channels=16, stride=2, in_channels=8, proj=True)" in src
    assert "ConvUnit(channels=8, stride=1, in_channels=8)" in src  # a flag left at its default
    assert "self.proj(x) if self.proj is not None else x" in src
    assert r.proof.verdict == "agree", r.proof.failures()


def test_a_block_class_nested_in_itself_ports(tmp_path):
    """A HybridConcurrent inside a branch of another (Inception v3's InceptionE; the zoo's
    inception_v3 crashed with KeyError 'HybridConcurrent#9'): the class is decided level by level,
    the inner one first, each its own class, and the port proved."""
    r = port(f"{MODELS}:nested_concurrent", (2, 3, 8, 8), tmp_path / "p")
    src = (r.out / "model.py").read_text()
    assert re.findall(r"^class (\w+)\(", src, re.M) == ["HybridConcurrent", "HybridConcurrent2", "Net"], src
    assert r.proof.verdict == "agree", r.proof.failures()


def test_one_activation_block_called_everywhere_ports(tmp_path):
    """A block that calls one `self.relu` three times (GluonCV's Xception crashed with KeyError
    (10, 0): each call's graph node has the same name, and every call was read as the last one's):
    the forward calls it three times, in order, and the port is proved."""
    r = port(f"{MODELS}:shared_activation", (2, 3, 8, 8), tmp_path / "p")
    src = (r.out / "model.py").read_text()
    assert src.count("self.relu(") == 3, src
    assert r.proof.verdict == "agree", r.proof.failures()


def test_a_block_whose_forward_takes_varargs_is_called_with_all_of_them(tmp_path):
    """GluonCV's Faster R-CNN was refused: its RPN's hybrid_forward(F, img, *x) was written as
    forward(self, img), and the call passing the image and a feature map failed (TypeError). The
    written forward now takes the *args numbered (img, x0), and the port is proved."""
    r = port(f"{MODELS}:varargs_call", (2, 3, 8, 8), tmp_path / "p")
    src = (r.out / "model.py").read_text()
    assert "def forward(self, img, x0):" in src, src
    assert r.proof.verdict == "agree", r.proof.failures()


def test_a_symbol_batchnorm_keeps_its_gamma_fixed_at_1(tmp_path):
    """GluonCV's SSD differed at its gradients on a correct port: its feature expander's
    mx.sym.BatchNorm leaves fix_gamma out of the graph, and the op's default is True (gamma fixed
    at 1, gradient 0); the port read the absent flag as False and trained gamma. Now it is frozen,
    and the proof agrees."""
    from ganparity.common.port.write import prove_port

    r = port(f"{MODELS}:symbol_batchnorm", (2, 3, 6, 6), tmp_path / "p")
    src = (r.out / "model.py").read_text()
    frozen = re.search(r"\n *self\.bn0\w*\.weight\.requires_grad_\(False\)[^\n]*", src)
    assert frozen, src
    assert r.proof.verdict == "agree", r.proof.failures()
    (r.out / "model.py").write_text(src.replace(frozen.group(0), ""))  # the one-edit slip: gamma trained
    assert prove_port(r.out).row("gradients").verdict == "differ"


def test_the_proof_ignores_only_the_unused_constants_its_block_holds():
    """A detector's proof runs the Gluon block's inference graph, which holds only what its forward
    reads: Faster R-CNN's proof stopped at 'ignore lists ... which the mxnet model does not have' for
    its box encoder's means. The block holds the constant, its graph does not."""
    from ganparity.common.port.checks import _held, port_backend

    M = port_backend("mxnet")
    block = M.load(f"{MODELS}:unused_constant", None)
    M.read(block, (2, 4), None, 0)
    ignore = {"mxnet": ["means"]}
    assert _held(M, block, ignore) == ignore
    assert _held(M, M.graph_block(block, 1), ignore) == {"mxnet": []}


def test_a_fixed_gamma_other_than_1_is_refused(tmp_path):
    with pytest.raises(GanparityError, match=r"fix_gamma=True\) holding a gamma other than 1"):
        port(f"{MODELS}:symbol_batchnorm_gamma_2", (2, 3, 6, 6), tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_resizes_computed_in_float32_by_mxnet_agree_and_a_wrong_one_differs(tmp_path):
    """MXNet's BilinearResize2D computes its sample weights in float32 in a float64 run: three resizes
    put a correct port's float64 forward 4e-6 from the Gluon block's, and the forward rows said
    'differ' (Fast-SCNN's port did, at 1.0e-6). The floor now runs the port's float64 resizes MXNet's
    way (round_constants), and they agree; one resize ported with the other align_corners differs."""
    from ganparity.common.port.write import prove_port

    r = port(f"{MODELS}:resize_chain", (2, 3, 40, 40), tmp_path / "p")
    assert r.proof.verdict == "agree", r.proof.failures()
    assert r.proof.row("forward eval").fp64_gap > 1e-6  # beyond the fixed fp64 allowance: the floor carries it
    src = (tmp_path / "p" / "model.py").read_text()
    assert src.count("align_corners=False") == 1, src
    (tmp_path / "p" / "model.py").write_text(src.replace("align_corners=False", "align_corners=True"))
    assert prove_port(tmp_path / "p").row("forward eval").verdict == "differ"


def test_a_constant_the_forward_never_reads_is_left_out_and_said(tmp_path):
    """Faster R-CNN holds its box encoder's means and stds as constants its forward never reads:
    the port was refused for them; now they are left out (mapping.json's ignore), PORT.md says so,
    and the proof runs without them."""
    r = port(f"{MODELS}:unused_constant", (2, 4), tmp_path / "p")
    assert json.loads((r.out / "mapping.json").read_text())["ignore"] == {"mxnet": ["means"]}
    assert "Not ported: means" in (r.out / "PORT.md").read_text()
    assert r.proof.verdict == "agree", r.proof.failures()


def test_a_batchnorm_subclass_moves_its_statistics_as_pytorch_under_torch_semantics(tmp_path):
    """GluonCV's BatchNormCudnnOff (a subclass of nn.BatchNorm): under --semantics torch the Gluon
    side of the proof moves its running statistics by PyTorch's rule, as for nn.BatchNorm (it moved
    them by Gluon's: GluonCV's simple_pose_resnet18_v1b 'differed' at its BatchNorm statistics rows)."""
    r = port(f"{MODELS}:batchnorm_subclass", (4, 3, 8, 8), tmp_path / "p", semantics="torch")
    assert r.proof.row("step 1 BatchNorm statistics").verdict == "agree", r.proof.failures()
    assert r.proof.verdict == "agree", r.proof.failures()
