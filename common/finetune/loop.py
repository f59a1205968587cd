"""Source 000's fine-tune, driven from numpy for either backend: `ganparity finetune train / predict`.

One loop for both frameworks (images.py makes every batch in numpy/Pillow from one seeded
Generator, the backend's FinetuneTrainer does the step). A run folder holds:

    run.json      backend, spec knobs, recipe, the class names (ImageFolder order), per-epoch log
    weights.npz   the neutral arrays of backbone and head (the backbone's running statistics move
                  during training unless bn_frozen_eval, so the whole net is saved)
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import time
from pathlib import Path

import numpy as np

from .. import weights as W
from ..backend import Backend, build_nets, get_backend
from ..errors import GanparityError, choose
from ..files import atomic_write, write_json
from ..readers import read_json, read_npz
from ..spec.finetune import FinetuneRecipe, FinetuneSpec
from ..spec.registry import get_spec
from . import images

SPEC = "resnet34-finetune"
RUN_JSON = "run.json"  # the manifest of a run folder: a folder without it is never written into
SPEC_KNOBS = ("num_classes", "image_size", "width", "blocks", "hidden", "semantics")
# recipe fields --set can change (semantics is a spec knob: it sets every difference at once)
RECIPE_FIELDS = {f.name: f.type for f in dataclasses.fields(FinetuneRecipe) if f.name != "semantics"}
PRETRAINED = {".pth": "torch", ".pt": "torch", ".params": "mxnet"}  # backends' PRETRAINED_SUFFIX
# The least value of each number --set can change (None: no rule); 0 is refused where it makes no sense.
LEAST = {"num_classes": 1, "image_size": 1, "width": 1, "blocks": 1, "hidden": 1, "epochs": 1, "batch_size": 1,
         "lr_period": 1, "lr": 0.0, "momentum": 0.0, "weight_decay": 0.0, "lr_decay": 0.0}
POSITIVE = ("lr", "lr_decay")  # must be more than their LEAST, not equal
# The ranges of the float settings, as the refusals name them (every float must also be finite).
RANGES = {"lr": "(0, inf)", "momentum": "[0, 1)", "weight_decay": "[0, inf)", "lr_decay": "(0, 1]"}
MOST = {"momentum": (1.0, False), "lr_decay": (1.0, True)}  # the top of a range: (value, included)


def _range(key: str) -> str:
    return f" (valid: {RANGES[key]})" if key in RANGES else ""


def parse_settings(pairs: list[str] | None) -> tuple[dict, dict]:
    """['width=16', 'lr=0.01', 'bn_frozen_eval=true'] -> (spec knobs, recipe overrides)."""
    knobs, recipe = {}, {}
    for pair in pairs or ():
        key, sep, value = (s.strip() for s in pair.partition("="))
        if not sep:
            raise GanparityError(f"--set takes KEY=VALUE, got {pair!r}")
        choose("setting", key, (*SPEC_KNOBS, *RECIPE_FIELDS))
        kind = ("str" if key == "semantics" else "int") if key in SPEC_KNOBS else RECIPE_FIELDS[key]
        try:
            if kind == "str":
                knobs[key] = value
            elif kind == "bool":
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                recipe[key] = value.lower() in ("true", "1")
            elif kind == "float":
                recipe[key] = float(value)
            else:
                (knobs if key in SPEC_KNOBS else recipe)[key] = int(value)
        except ValueError:
            raise GanparityError(f"--set {key}: {value!r} is not a valid {kind}") from None
        got = knobs.get(key, recipe.get(key))
        if kind == "float" and not math.isfinite(got):
            raise GanparityError(f"--set {key}: must be a finite number in {RANGES.get(key, '(-inf, inf)')}, "
                                 f"got {value!r}")
        least = LEAST.get(key)
        if least is not None and (got < least or (key in POSITIVE and got <= least)):
            rule = f"more than {least:g}" if key in POSITIVE else f"at least {least:g}"
            raise GanparityError(f"--set {key}: must be {rule}{_range(key)}, got {value!r}")
        top, included = MOST.get(key, (math.inf, True))
        if got > top or (got == top and not included):
            rule = f"at most {top:g}" if included else f"less than {top:g}"
            raise GanparityError(f"--set {key}: must be {rule}{_range(key)}, got {value!r}")
    return knobs, recipe


def load_weights_file(path: str | os.PathLike, spec: FinetuneSpec) -> dict[str, np.ndarray]:
    """A pretrained backbone by suffix: .pth (torchvision layout), .params (Gluon model zoo
    layout) or .npz (neutral names). The ImageNet fc.* is dropped: source 000 replaces it."""
    suffix = Path(path).suffix
    if suffix == ".npz":
        back = {k: v for k, v in read_npz(path, "--weights").items() if k.startswith("backbone.")}
        return W.validate(back, spec, ("backbone",), what=f"--weights {str(path)!r}")
    if suffix not in PRETRAINED:
        raise GanparityError(f"--weights {str(path)!r}: expected .pth/.pt (torchvision), .params (Gluon) or .npz")
    arrays = get_backend(PRETRAINED[suffix]).load_pretrained(path, spec)
    return {k: v for k, v in arrays.items() if k.startswith("backbone.")}


def _spec(knobs: dict) -> FinetuneSpec:
    return get_spec(SPEC, kind="finetune", **knobs)


def train(backend: str, data: str | os.PathLike, out: str | os.PathLike, full: bool = False,
          weights: str | None = None, knobs: dict | None = None, recipe: dict | None = None,
          seed: int = 0, device: str = "cpu", log=print) -> dict:
    data, out = Path(data), Path(out)
    if out.exists() and not out.is_dir():
        raise GanparityError(f"--out {str(out)!r} is a file, expected a run folder")
    folder = images.class_folder(data / ("train_valid" if full else "train"))
    valid = None if full or not (data / "valid").is_dir() else images.class_folder(data / "valid")
    knobs = dict(knobs or {})
    knobs.setdefault("num_classes", len(folder.classes))
    if knobs["num_classes"] != len(folder.classes):
        raise GanparityError(f"num_classes={knobs['num_classes']} but {folder.root} has {len(folder.classes)} classes")
    spec = _spec(knobs)
    r = dataclasses.replace(spec.recipe, **(recipe or {}))
    be = get_backend(backend)
    nets = build_nets(be, spec, device=device)
    arrays = W.init_arrays(spec, seed)
    if weights:
        arrays |= load_weights_file(weights, spec)
    else:
        log("note: no --weights; the backbone is randomly initialised, not source 000's ImageNet ResNet-34")
    for net, model in spec.nets.items():
        be.set_arrays(nets[net], model, W.split(arrays, net))
    trainer = be.FinetuneTrainer(spec, nets["backbone"], nets["head"], r)
    history = []
    for epoch in range(r.epochs):
        start = time.perf_counter()
        lr = r.lr_at(epoch)
        if lr != trainer.lr:
            trainer.set_lr(lr)
        rng = np.random.default_rng([seed, epoch])
        loss_sum, n = 0.0, 0
        for x, y, _ in images.batches(folder, spec.image_size, r.batch_size, True, rng):
            loss = trainer.step(x, y)
            if not np.isfinite(loss):
                raise GanparityError(f"epoch {epoch + 1}: the loss is {loss}; training diverged")
            loss_sum += loss * len(y)
            n += len(y)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / n, "lr": lr}
        if valid is not None:
            row |= evaluate(be, nets, spec, valid, r.batch_size)
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        log(", ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    out.mkdir(parents=True, exist_ok=True)
    W.save(out / "weights.npz", {k: v for n, m in spec.nets.items() for k, v in be.get_arrays(nets[n], m).items()})
    meta = {"spec": SPEC, "backend": backend, "knobs": {k: list(v) if isinstance(v, tuple) else v
                                                        for k, v in spec.params.items()},
            "recipe": dataclasses.asdict(r), "classes": list(folder.classes), "full": full,
            "weights": str(weights) if weights else None, "seed": seed, "history": history}
    write_json(out / RUN_JSON, meta)
    return meta


def evaluate(be: Backend, nets: dict, spec: FinetuneSpec, folder: images.ClassFolder, batch_size: int) -> dict:
    loss_sum, correct, n = 0.0, 0, 0
    for x, y, _ in images.batches(folder, spec.image_size, batch_size, False):
        logp = log_softmax(be.logits(nets["backbone"], nets["head"], x, "eval"))
        loss_sum += float(-logp[np.arange(len(y)), y].sum())
        correct += int((logp.argmax(1) == y).sum())
        n += len(y)
    return {"valid_loss": loss_sum / n, "valid_acc": correct / n}


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def load_run(run: str | os.PathLike) -> tuple[dict, FinetuneSpec, dict[str, np.ndarray]]:
    run = Path(run)
    if not (run / "run.json").is_file():
        raise GanparityError(f"{str(run)!r} is not a run folder (no run.json; see `ganparity finetune train`)")
    meta = read_json(run / "run.json", "run record", "the run.json that `ganparity finetune train` writes")
    lacking = [k for k in ("knobs", "classes") if k not in meta]
    if lacking or not isinstance(meta.get("knobs"), dict):
        raise GanparityError(f"run record {str(run / 'run.json')!r} has no {', '.join(lacking or ['knobs'])}")
    knobs = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["knobs"].items()}
    spec = _spec(knobs)
    weights = read_npz(run / "weights.npz", "run weights")
    return meta, spec, W.validate(weights, spec, what=f"weights {str(run / 'weights.npz')!r}")


def predict(backend: str, data: str | os.PathLike, run: str | os.PathLike, out: str | os.PathLike,
            batch_size: int = 128, device: str = "cpu") -> int:
    """Source 000's submission: 'id,<breed>,...' with softmax rows, ids in sorted file order."""
    meta, spec, arrays = load_run(run)
    be = get_backend(backend)
    nets = build_nets(be, spec, device=device)
    for net, model in spec.nets.items():
        be.set_arrays(nets[net], model, W.split(arrays, net))
    test = images.class_folder(Path(data) / "test")
    rows = 0

    def write(tmp: str) -> None:
        nonlocal rows
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["id", *meta["classes"]])
            for x, _, files in images.batches(test, spec.image_size, batch_size, False):
                probs = np.exp(log_softmax(be.logits(nets["backbone"], nets["head"], x, "eval")))
                for path, p in zip(files, probs):
                    w.writerow([path.stem, *(repr(float(v)) for v in p)])
                    rows += 1

    atomic_write(out, write)
    return rows
