"""The layers show in the folders, and these tests keep the rules (read from the source, no import):

    core         common/*.py, common/spec/       numpy and the standard library only
    apps         common/gan/, common/finetune/,  the core (+ Pillow, matplotlib, tqdm); not each other, except
                 common/compare/, common/port/,  where APP_USES says so (port proves with compare; the
                 common/report/                  report's data-parallel parity runs the GAN application)
    cli          common/cli/                     anything but a backend module (get_backend only), matplotlib;
                                                 the only place in common/ that names benchmarks
    backends     backends/torch, backends/mxnet  the core and their own package; the frameworks
    benchmarks   benchmarks/                     the core and the applications they measure
    root         ganparity/                      the import name: the CLI

and nowhere a top-level `common`, `backends` or `benchmarks` import (the one import name is
`ganparity`), nor a framework (torch, torchvision, mxnet) outside backends/.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from .conftest import parse_source

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"common": "ganparity.common", "backends": "ganparity.backends", "benchmarks": "ganparity.benchmarks",
           "ganparity": "ganparity"}
FRAMEWORKS = {"torch", "torchvision", "mxnet"}
APPS = ("ganparity.common.gan", "ganparity.common.finetune", "ganparity.common.compare", "ganparity.common.port",
        "ganparity.common.report")
APP_USES = {"ganparity.common.port": {"ganparity.common.compare"},  # an application built on another
            "ganparity.common.report": {"ganparity.common.gan"}}
CLI = "ganparity.common.cli"
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
ZOOS = {"gluoncv", "gluonnlp", "onnx", "onnx2torch"}  # the zoo extra: MXNet's model zoos (--zoo), the ONNX road
THIRD_PARTY = {"core": {"numpy"}, "apps": {"numpy", "PIL", "matplotlib", "tqdm"}, "cli": {"numpy", "matplotlib"},
               "backends": {"numpy"} | FRAMEWORKS | ZOOS, "benchmarks": {"numpy", "matplotlib"}, "root": set()}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [FOLDERS[rel.parts[0]], *rel.parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    if module.startswith(CLI):
        return "cli"
    if module.startswith(APPS):
        return "apps"
    if module.startswith("ganparity.common"):
        return "core"
    if module.startswith("ganparity.backends"):
        return "backends"
    if module.startswith("ganparity.benchmarks"):
        return "benchmarks"
    return "root"


def package_files() -> list[Path]:
    return [p for folder in FOLDERS for p in sorted((ROOT / folder).rglob("*.py")) if not p.name.startswith("test_")]


def imports(path: Path, module: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, lazy ones inside functions included."""
    module = module or module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(parse_source(path)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            out.append((node.lineno, target))
            # `from . import x` imports the submodule x
            out += [(node.lineno, f"{target}.{a.name}") for a in node.names if node.module is None]
    return out


def _is_module(name: str) -> bool:
    """A ganparity name that is a module or package of this tree (not a class imported from one)."""
    rel = name.split(".")[1:]
    folder = {"common": "common", "backends": "backends", "benchmarks": "benchmarks"}.get(rel[0] if rel else "")
    if folder is None:
        return name == "ganparity"
    path = ROOT / folder / Path(*rel[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def violations(path: Path, module: str | None = None) -> list[str]:
    module, out = module or module_name(path), []
    mine = layer(module)
    for line, target in imports(path, module):
        where = f"{module}:{line} imports {target}"
        top = target.split(".")[0]
        if top in ("common", "backends", "benchmarks"):
            out.append(f"{where}: use the one import name, ganparity.{target}")
            continue
        if top != "ganparity":
            if top not in STDLIB and top not in THIRD_PARTY[mine]:
                out.append(f"{where}: {mine} may not import {top}")
            continue
        if not _is_module(target):
            continue
        theirs = layer(target)
        if mine == "core" and theirs != "core":
            out.append(f"{where}: the core imports no {theirs}")
        same_package = target.split(".")[:3] == module.split(".")[:3]  # ganparity.common.gan, ganparity.backends.torch
        uses = APP_USES.get(".".join(module.split(".")[:3]), set())
        if mine == "apps" and not (theirs == "core" or (theirs == "apps" and (same_package or any(
                target == u or target.startswith(u + ".") for u in uses)))):
            out.append(f"{where}: an application imports only the core and itself")
        if mine == "backends" and not (theirs == "core" or (theirs == "backends" and same_package)):
            out.append(f"{where}: a backend imports only the core and itself")
        if mine == "benchmarks" and theirs not in ("core", "apps", "benchmarks"):
            out.append(f"{where}: the benchmarks import only the core and the applications they measure")
        if mine == "cli" and theirs == "backends":
            out.append(f"{where}: the CLI reaches a backend through get_backend")
    return out


def test_layers_import_rules():
    files = package_files()
    assert len(files) > 50
    bad = [v for f in files for v in violations(f)]
    assert not bad, "\n".join(bad)


def test_the_rules_catch_a_broken_import(tmp_path):
    """The checker itself: a core module importing an application, a framework and a top-level name;
    a backend importing the other backend."""
    fake = tmp_path / "probe.py"
    fake.write_text("from .gan import loop\nimport torch\nfrom common import shapes\n")
    bad = violations(fake, "ganparity.common.probe")
    assert len(bad) == 3, bad
    assert "the core imports no apps" in bad[0] and "may not import torch" in bad[1] and "ganparity.common" in bad[2]
    fake.write_text("from ..mxnet import build\n")
    assert "a backend imports only the core and itself" in violations(fake, "ganparity.backends.torch.probe")[0]


def test_only_the_cli_names_the_benchmarks():
    for f in package_files():
        if layer(module_name(f)) in ("core", "apps"):
            assert not any(t.startswith("ganparity.benchmarks") for _, t in imports(f)), f


def test_every_package_folder_is_installed():
    """pyproject.toml lists the packages by hand (the package-dir mapping needs it): none forgotten."""
    text = (ROOT / "pyproject.toml").read_text()
    listed = set(re.findall(r'"(ganparity(?:\.[a-z_]+)*)"', text.split("packages = [", 1)[1].split("]", 1)[0]))
    found = {module_name(p) for p in package_files() if p.name == "__init__.py"}
    assert listed == found


@pytest.mark.parametrize("name", ["common", "backends", "benchmarks"])
def test_no_top_level_import_anywhere(name):
    """tests/ too: the suite imports what a user imports."""
    tests = [*sorted((ROOT / "tests").glob("*.py")), *sorted((ROOT / "benchmarks").glob("test_*.py"))]
    for f in [*package_files(), *tests]:
        for node in ast.walk(parse_source(f)):
            if isinstance(node, ast.ImportFrom) and not node.level:
                assert (node.module or "").split(".")[0] != name, f"{f}: from {node.module}"
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] != name for a in node.names), f


def _public_defs(path: Path) -> list[str]:
    """Its public functions and classes, less the MXNet ops written in PyTorch for the porter's
    model.py (emulations.py's PORT_OPS: the Gluon side has the op itself)."""
    tree = parse_source(path)
    own = {name for n in tree.body if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "PORT_OPS"
                                                                         for t in n.targets)
           for name in ast.literal_eval(n.value)}
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef) and not n.name.startswith("_")
            and n.name not in own]


# emulations.py holds the other framework's semantics, named after it: the one place names differ
MIRROR_NAMES = {"emulations.py": {"MXNetBatchNorm": "TorchBatchNorm", "mxnet_adam_lr_eps": "torch_adam_eps",
                                  "MXNetAdam": "TorchAdam"},
                # the model the proof runs on a detector's raw heads: the port's forward up to them (torch), the
                # Gluon block's graph up to them (mxnet)
                "port.py": {"heads_model": "graph_block"}}


def test_backends_mirror_each_other():
    """Same files, and in each file the same public functions and classes in the same order, so that
    `diff -r backends/torch backends/mxnet` reads as a porting guide (MIRROR_NAMES: the emulations
    say whose semantics they are)."""
    torch_dir, mx_dir = ROOT / "backends" / "torch", ROOT / "backends" / "mxnet"
    files = sorted(p.name for p in torch_dir.glob("*.py"))
    assert files == sorted(p.name for p in mx_dir.glob("*.py"))
    for name in files:
        renamed = MIRROR_NAMES.get(name, {})
        assert [renamed.get(d, d) for d in _public_defs(torch_dir / name)] == _public_defs(mx_dir / name), name


def test_the_wheel_installs_one_import_name(tmp_path):
    """`pip install .` puts ganparity/ (and its dist-info) into site-packages, and nothing named
    common, backends or benchmarks: a user's own `common` package keeps working."""
    import importlib.util
    import subprocess
    import zipfile

    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("building the wheel without isolation needs setuptools in this environment")
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("ganparity-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"ganparity", f"{wheel.name.split('-py')[0]}.dist-info"}, tops
    assert "ganparity/common/spec/registry.py" in names and "ganparity/backends/mxnet/build.py" in names
    assert "ganparity/benchmarks/harness.py" in names and not any("/tests/" in n for n in names)


def test_a_checkout_runs_without_an_install(tmp_path):
    """The GPU machine runs the copied tree with `PYTHONPATH=. python3 -m ganparity ...`: ganparity/
    adds the checkout to its package path, so ganparity.common is the checkout's common/."""
    import os
    import shutil
    import subprocess

    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    code = ("import ganparity.common.spec.registry as r, ganparity.backends.torch.layers as t\n"
            "print(r.__file__); print(t.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(tmp_path / "common" / "spec" / "registry.py"),
                                  str(tmp_path / "backends" / "torch" / "layers.py")]
    out = subprocess.run([sys.executable, "-m", "ganparity", "specs", "gan-gaussian"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0 and "## gan-gaussian" in out.stdout, out.stderr
