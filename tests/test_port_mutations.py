"""A proof that no wrong port passes: one-edit wrong ports of a written model.py, the slips a person
makes by hand (a weight, a forward constant, a BatchNorm setting, a skip connection, every optimizer
hyperparameter under both semantics and both trainers, gluon_step's rescale, dropout), on three
models: a hand-written BatchNorm/LeakyReLU block with a skip connection and dropout, seed 002's
DCGAN generator, and mobilenet_v2_1_0 of the Gluon model zoo.

Every mutant must get 'differ' or 'cannot tell here' from the proof, never 'agree', and its own
test_port.py (run with pytest) must fail; every unmodified port must get 'agree' (or an honest
'cannot tell here' with its reason) at three seeds, and its test_port.py must pass. Each mutation
checks that it changed the file: a mutant equal to the port would test nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("mxnet")

from ganparity.common.port import port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = str(Path(__file__).with_name("port_models.py"))
SGD, ADAM = "sgd:lr=0.01,momentum=0.9", "adam:lr=0.001,beta1=0.5"
SEEDS = (0, 1, 2)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # a fixture's setup counts in its first test's time


def _sub(pattern: str, repl: str, count: int = 1):
    """A mutation: the first `count` matches of a regex replaced (the text must change)."""
    def edit(text: str, mapping: dict) -> str:
        new, n = re.subn(pattern, repl, text, count=count)
        assert n and new != text, f"mutation {pattern!r} matched nothing"
        return new
    return edit


def _in_load(statement: str):
    """A mutation of load(): one statement on the loaded state before it is returned. `{w}`, `{b}`,
    `{mean}`, `{var}`: the first conv/linear weight, a bias, a BatchNorm's running statistics."""
    def edit(text: str, mapping: dict) -> str:
        names = list(mapping["tensors"])
        pick = {"w": next(n for n in names if n.endswith(".weight")),
                "b": next((n for n in names if n.endswith(".bias")), None),
                "mean": next((n for n in names if n.endswith("running_mean")), None)}
        pick["var"] = pick["mean"] and pick["mean"].replace("running_mean", "running_var")
        line = statement.format(**pick)
        old = "    return net\n"
        i = text.index(old, text.index("def load("))
        return text[:i] + f"    with torch.no_grad():\n        {line}\n" + text[i:]
    return edit


# kind -> (mutation, which ports it applies to: a predicate of (model, semantics, optimizer))
ANY = lambda m, s, o: True  # noqa: E731
TWO = lambda m, s, o: (s, o) in (("torch", SGD), ("mxnet", ADAM))  # noqa: E731 - forward kinds: either semantics once
MUTANTS = {
    "weight scaled by 1.01 in load()": (_in_load("net.state_dict()['{w}'].mul_(1.01)"), TWO),
    "a bias shifted by 0.01 in load()": (_in_load("net.state_dict()['{b}'].add_(0.01)"),
                                         lambda m, s, o: m != "mobilenet" and TWO(m, s, o)),
    "BatchNorm statistics swapped in load()": (_in_load(
        "s = net.state_dict(); m = s['{mean}'].clone(); s['{mean}'].copy_(s['{var}']); s['{var}'].copy_(m)"), TWO),
    "LeakyReLU slope 0.2 -> 0.02": (_sub(r"LeakyReLU\(0\.2\)", "LeakyReLU(0.02)"),
                                    lambda m, s, o: m == "block" and TWO(m, s, o)),
    "LeakyReLU at torch's default slope": (_sub(r"LeakyReLU\(0\.2\)", "LeakyReLU()"),
                                           lambda m, s, o: m == "block" and TWO(m, s, o)),
    "BatchNorm eps 1e-5 -> 1e-3": (_sub(r"(BatchNorm\w*\(\w+, eps=)1e-05", r"\g<1>0.001"), TWO),
    "BatchNorm momentum left in Gluon's convention": (
        _sub(r"(BatchNorm\w*\(\w+, eps=[^,]+, momentum=)0\.1\)", r"\g<1>0.9)"), ANY),
    "BatchNorm momentum 0.1 -> 0.11": (
        _sub(r"(BatchNorm\w*\(\w+, eps=[^,]+, momentum=)0\.1\)", r"\g<1>0.11)", count=100), ANY),
    "ReLU6 ported as ReLU": (_sub(r"nn\.ReLU6\((inplace=True)?\)", r"nn.ReLU(\1)"), lambda m, s, o: m == "mobilenet"),
    "Tanh ported as Hardtanh": (_sub(r"nn\.Tanh\(\)", "nn.Hardtanh()"), lambda m, s, o: m == "netG"),
    "skip connection dropped": (_sub(r"(\w+) = (\w+) \+ (\w+)\n", r"\1 = \3\n"),
                                lambda m, s, o: m == "block" and TWO(m, s, o)),
    "skip connection doubled": (_sub(r"(\w+) = (\w+) \+ (\w+)\n", r"\1 = 2 * \2 + \3\n"),
                                lambda m, s, o: m == "block" and TWO(m, s, o)),
    "average pooling counts its padding": (_sub(r", count_include_pad=False", ""),
                                           lambda m, s, o: m == "block" and TWO(m, s, o)),
    "dropout rate 0.3 -> 0.5": (_sub(r"nn\.Dropout\(p=0\.3\)", "nn.Dropout(p=0.5)"),
                                lambda m, s, o: m == "block" and TWO(m, s, o)),
    "dropout left out": (_sub(r"nn\.Dropout\(p=0\.3\)", "nn.Identity()"),
                         lambda m, s, o: m == "block" and TWO(m, s, o)),
    "lr +1%": (_sub(r"\(params, lr=([0-9.e-]+)", lambda mt: f"(params, lr={float(mt.group(1)) * 1.01!r}"), ANY),
    "lr x100": (_sub(r"\(params, lr=([0-9.e-]+)", lambda mt: f"(params, lr={float(mt.group(1)) * 100!r}"), ANY),
    "weight decay 1e-4 added": (_sub(r"weight_decay=0\.0\)", "weight_decay=0.0001)"), ANY),
    "SGD momentum 0.9 -> 0.8": (_sub(r"momentum=0\.9, weight_decay", "momentum=0.8, weight_decay"),
                                lambda m, s, o: o == SGD),
    "SGD with Nesterov momentum": (_sub(r"weight_decay=0\.0\)", "weight_decay=0.0, nesterov=True)"),
                                   lambda m, s, o: o == SGD),
    "Adam beta1 0.5 -> 0.9": (_sub(r"betas=\(0\.5, 0\.999\)", "betas=(0.9, 0.999)"), lambda m, s, o: o == ADAM),
    "Adam beta2 0.999 -> 0.99": (_sub(r"betas=\(0\.5, 0\.999\)", "betas=(0.5, 0.99)"), lambda m, s, o: o == ADAM),
    "Adam eps 1e-8 -> 1e-6": (_sub(r"eps=1e-08, weight_decay", "eps=1e-06, weight_decay"), lambda m, s, o: o == ADAM),
    "gluon_step without the 1 / batch_size rescale": (_sub(r"p\.grad\.div_\(batch_size\)", "p.grad.div_(1)"), ANY),
    "gluon_step divides by batch_size - 1": (_sub(r"p\.grad\.div_\(batch_size\)", "p.grad.div_(batch_size - 1)"),
                                             ANY),
    "PyTorch's Adam where MXNet's was ported": (_sub(r"return MXNetAdam\(", "return torch.optim.Adam("),
                                                lambda m, s, o: s == "mxnet" and o == ADAM),
    "PyTorch's BatchNorm statistics where MXNet's were ported": (
        _sub(r"MXNetBatchNorm\((\w+), eps", r"nn.BatchNorm2d(\1, eps", count=100), lambda m, s, o: s == "mxnet"),
    "MXNet's BatchNorm without the biased variance": (_sub(r"var \* \(\(n - 1\) / n\)", "var"),
                                                      lambda m, s, o: s == "mxnet"),
}
# the ports each mutant is made from: model -> (factory, input shape, combinations of semantics and optimizer)
PORTS = {
    "block": ("bn_leaky_block", (4, 3, 16, 16), [("torch", SGD), ("torch", ADAM), ("mxnet", SGD), ("mxnet", ADAM)]),
    "netG": ("netG", (4, 16, 1, 1), [("torch", ADAM), ("mxnet", ADAM)]),
    "mobilenet": ("mobilenet_trained_scale", (4, 3, 32, 32), [("torch", SGD), ("mxnet", ADAM)]),
}
SEEDS_OF = {("mobilenet", "mxnet", ADAM): (0,)}  # each mobilenet proof costs seconds: one combination at 3 seeds
# the kinds run on mobilenet (each of its proofs costs seconds): those a model zoo port can get wrong
MOBILENET_KINDS = {  # kind -> the combination it runs under
    "weight scaled by 1.01 in load()": ("torch", SGD), "BatchNorm statistics swapped in load()": ("mxnet", ADAM),
    "BatchNorm eps 1e-5 -> 1e-3": ("torch", SGD), "BatchNorm momentum left in Gluon's convention": ("mxnet", ADAM),
    "ReLU6 ported as ReLU": ("torch", SGD), "lr +1%": ("mxnet", ADAM), "weight decay 1e-4 added": ("torch", SGD),
    "SGD momentum 0.9 -> 0.8": ("torch", SGD), "Adam eps 1e-8 -> 1e-6": ("mxnet", ADAM),
    "gluon_step without the 1 / batch_size rescale": ("torch", SGD),
    "PyTorch's BatchNorm statistics where MXNet's were ported": ("mxnet", ADAM)}


def _cases():
    for model, (_, _, combos) in PORTS.items():
        for sem, opt in combos:
            for kind, (_, applies) in MUTANTS.items():
                if applies(model, sem, opt) and (model != "mobilenet" or MOBILENET_KINDS.get(kind) == (sem,
                                                                                                         opt)):
                    yield model, sem, opt, kind


CASES = [c for c in _cases()]


@pytest.fixture(scope="module")
def base_ports(tmp_path_factory):
    """Every unmodified port, at seed 0 (the mutants' base) and at seeds 1 and 2."""
    root = tmp_path_factory.mktemp("ports")
    out = {}
    for model, (factory, shape, combos) in PORTS.items():
        for sem, opt in combos:
            for seed in SEEDS_OF.get((model, sem, opt), SEEDS):
                name = f"{model}-{sem}-{opt.split(':')[0]}-{seed}"
                out[(model, sem, opt, seed)] = port(f"{MODELS}:{factory}", shape, root / name, semantics=sem,
                                                   optimizer=opt, seed=seed)
    return out


def _honest(proof) -> bool:
    return proof.verdict == "agree" or (proof.verdict == "cannot tell here" and all(
        r.reason and r.suggestion for r in proof.rows if r.verdict == "cannot tell here"))


def test_every_unmodified_port_agrees_or_says_why_not(base_ports):
    bad = {key: r.proof.failures() for key, r in base_ports.items() if not _honest(r.proof)}
    assert not bad, bad
    # the hand-written block and the DCGAN generator are proved outright, at every seed
    assert all(r.proof.verdict == "agree" for (m, *_), r in base_ports.items() if m in ("block", "netG")), \
        {k: r.proof.failures() for k, r in base_ports.items() if r.proof.verdict != "agree"}


RECORDER = """
import json, os, ganparity

_prove = ganparity.prove_port


def recorded(folder, *args, **kwargs):  # what each test_port.py's own proof said, for the mutation test
    proof = _prove(folder, *args, **kwargs)
    with open(os.path.join(str(folder), "verdict.json"), "w") as f:
        json.dump({"verdict": proof.verdict, "failures": proof.failures()}, f)
    return proof


ganparity.prove_port = recorded
"""


@pytest.fixture(scope="module")
def mutants(base_ports, tmp_path_factory):
    """Each mutant: a seed-0 port copied, one edit made; then every unmodified port's and every
    mutant's own test_port.py run with pytest in one process (a conftest.py beside them records
    the verdict of the proof each test_port.py ran). {key: (folder, verdict, failures, passed)}."""
    root = tmp_path_factory.mktemp("mutants")
    folders = {}
    for i, (model, sem, opt, kind) in enumerate(CASES):
        folder = root / f"m{i:03d}"
        shutil.copytree(base_ports[(model, sem, opt, 0)].out, folder)
        mapping = json.loads((folder / "mapping.json").read_text())
        text = (folder / "model.py").read_text()
        (folder / "model.py").write_text(MUTANTS[kind][0](text, mapping))
        folders[(model, sem, opt, kind)] = folder
    bases = root / "bases"
    for r in base_ports.values():
        shutil.copytree(r.out, bases / r.out.name)
    (root / "conftest.py").write_text(RECORDER)
    passed = _pytest(root, [*folders.values(), *sorted(bases.iterdir())])
    out = {}
    for key, folder in [*folders.items(), *((("base",) + k, bases / r.out.name) for k, r in base_ports.items())]:
        record = folder / "verdict.json"
        verdict = json.loads(record.read_text()) if record.is_file() else {"verdict": "error: no proof ran",
                                                                             "failures": ""}
        out[key] = (folder, verdict["verdict"], verdict["failures"], passed[folder])
    return out


def test_at_least_25_kinds_on_three_models():
    kinds = {kind for _, _, _, kind in CASES}
    assert len(kinds) >= 25 and {m for m, *_ in CASES} == {"block", "netG", "mobilenet"}
    for kind in kinds:  # every optimizer kind under both semantics
        sems = {s for m, s, o, k in CASES if k == kind}
        if kind.startswith(("lr", "weight decay", "SGD", "Adam", "gluon_step")):
            assert sems == {"torch", "mxnet"}, kind


def test_no_mutant_agrees(mutants):
    agreed = sorted(f"{' '.join(map(str, key))} ({where.name})" for key, (where, verdict, _, _) in mutants.items()
                    if key[0] != "base" and verdict == "agree")
    assert not agreed, "\n".join(agreed)
    errors = {key: v for key, (_, v, _, _) in mutants.items() if v.startswith("error")}
    assert not errors, errors  # every mutant runs: the proof, not a crash, must catch it


def _pytest(root: Path, folders: list[Path]) -> dict[Path, bool]:
    """Run every folder's own test_port.py with pytest, in one process (each file imported on its
    own: --import-mode=importlib), and say for each folder whether all its tests passed."""
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                           "--import-mode=importlib", "--rootdir", str(root), "-o", "timeout=0",
                           *[str(f / "test_port.py") for f in folders]], capture_output=True, text=True, env=env,
                          cwd=root, timeout=3000)
    status: dict[Path, bool] = {}
    for line in done.stdout.splitlines():
        m = re.match(r"(PASSED|FAILED|ERROR|SKIPPED) (?:\[\d+\] )?(\S+?)/test_port\.py", line)
        if m:
            folder = root / m.group(2)
            status[folder] = status.get(folder, True) and m.group(1) in ("PASSED", "SKIPPED")
    missing = [f for f in folders if f not in status]
    assert not missing, f"no result for {missing[:3]}: {done.stdout[-2000:]}"
    return status


def test_the_written_test_passes_every_unmodified_port_and_fails_every_mutant(mutants):
    bases = {k: v for k, v in mutants.items() if k[0] == "base"}
    assert all(ok for _, _, _, ok in bases.values()), [str(f) for f, _, _, ok in bases.values() if not ok]
    passed = sorted(f"{' '.join(map(str, key))} ({folder.name})" for key, (folder, _, _, ok) in mutants.items()
                    if key[0] != "base" and ok)
    assert not passed, "\n".join(passed)
