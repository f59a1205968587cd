"""Seed 000's Kaggle dog-breed data, reorganised as the seed lays it out (issue: dog-breed fine-tune).

    DIR/train/<breed>/<id>.jpg, DIR/valid/<breed>/..., DIR/train_valid/<breed>/..., DIR/test/unknown/...

The seed copies every training image three times (shutil.copy); here each entry is a hard link to
the original (a symlink where the file system refuses hard links), so the image bytes exist once.
The split is reproducible: ids are sorted, then shuffled with random.Random(seed). Running it
again with the same settings changes nothing; other settings on the same DIR are refused.
"""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path

import numpy as np

from .errors import GanparityError

MANIFEST = "reorganize.json"


def read_labels(path: Path) -> dict[str, str]:
    """labels.csv: a header, then id,breed per row."""
    if not path.is_file():
        raise GanparityError(f"{str(path)!r} not found: a Kaggle dog-breed folder has labels.csv, train/ and test/")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0][:2]] != ["id", "breed"]:
        raise GanparityError(f"{str(path)!r} must start with the header 'id,breed'")
    return {r[0].strip(): r[1].strip() for r in rows[1:] if len(r) >= 2}


def _link(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        if dst.resolve() == src.resolve() or os.path.samefile(dst, src):
            return
        raise GanparityError(f"{str(dst)!r} exists and is not a link to {str(src)!r}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        dst.symlink_to(src.resolve())


def reorganize(data: str | os.PathLike, out: str | os.PathLike, valid_ratio: float = 0.1,
               seed: int = 0) -> dict[str, int]:
    """Lay out train / valid / train_valid / test/unknown under `out`; return the counts."""
    data, out = Path(data), Path(out)
    if not 0 <= valid_ratio < 1:
        raise GanparityError(f"--valid-ratio must be in [0, 1), got {valid_ratio}")
    labels = read_labels(data / "labels.csv")
    train_dir, test_dir = data / "train", data / "test"
    for d in (train_dir, test_dir):
        if not d.is_dir():
            raise GanparityError(f"{str(d)!r} is not a folder: a Kaggle dog-breed folder has labels.csv, train/, test/")
    train_files = sorted(p for p in train_dir.iterdir() if p.is_file())
    missing = [p.stem for p in train_files if p.stem not in labels]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise GanparityError(f"{len(missing)} image(s) in {str(train_dir)!r} have no row in labels.csv: {shown}")
    settings = {"data": str(data.resolve()), "valid_ratio": valid_ratio, "seed": seed}
    manifest = out / MANIFEST
    if manifest.is_file():
        before = json.loads(manifest.read_text())
        if before != settings:
            raise GanparityError(f"{str(out)!r} was reorganised with other settings {before}; "
                                 "use a new --out or delete it")
    random.Random(seed).shuffle(train_files)
    n_valid = int(len(train_files) * valid_ratio)
    counts = {"train": 0, "valid": 0, "train_valid": 0, "test": 0}
    for i, f in enumerate(train_files):
        breed = labels[f.stem]
        split = "valid" if i < n_valid else "train"
        _link(f, out / split / breed / f.name)
        _link(f, out / "train_valid" / breed / f.name)
        counts[split] += 1
        counts["train_valid"] += 1
    for f in sorted(p for p in test_dir.iterdir() if p.is_file()):
        _link(f, out / "test" / "unknown" / f.name)
        counts["test"] += 1
    out.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(settings, indent=1))
    return counts


def cmd_reorganize(a) -> None:
    counts = reorganize(a.data, a.out, a.valid_ratio, a.seed)
    print(f"reorganised {a.data} -> {a.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
          + " images (hard links or symlinks, no copies)")


def cmd_train(a) -> None:
    from .finetune import parse_settings, train

    knobs, recipe = parse_settings(a.set)
    if a.epochs is not None:
        recipe["epochs"] = a.epochs
    if a.batch_size is not None:
        recipe["batch_size"] = a.batch_size
    meta = train(a.backend, a.data, a.out, a.full, a.weights, knobs, recipe, a.seed, a.device)
    print(f"wrote {a.out}/weights.npz and run.json ({a.backend}, {len(meta['classes'])} classes, "
          f"{meta['recipe']['epochs']} epochs on {'train_valid' if a.full else 'train'})")


def cmd_predict(a) -> None:
    from .finetune import predict

    rows = predict(a.backend, a.data, a.run, a.out, a.batch_size, a.device)
    print(f"wrote {a.out}: {rows} test images, softmax over the run's classes")


def cmd_convert(a) -> None:
    from . import pretrained as P
    from .finetune import classifier_backend, parse_settings
    from .parity import compare
    from .registry import get_classifier

    knobs, _ = parse_settings(a.set)
    spec = get_classifier("resnet34-finetune", **knobs)
    src, dst = classifier_backend(a.src), classifier_backend(a.dst)
    arrays = src.load_pretrained(a.input, spec)
    dst.save_pretrained(a.output, arrays, spec)
    back = dst.load_pretrained(a.output, spec)
    # Verify: the written file, loaded by the target framework, gives the source's eval logits.
    head = P.init_head(spec, np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    nets = []
    for be, w in ((src, arrays), (dst, back)):
        net = be.build_classifier(spec)
        be.set_arrays(net, spec, {k: v for k, v in w.items() if k.startswith("backbone.")} | head)
        nets.append(be.forward(net, x, "eval"))
    diff = compare({"logits": nets[0]}, {"logits": nets[1]})[0]
    if not diff.ok:
        raise GanparityError(f"conversion check failed: eval logits differ by {diff.max_rel:.2e} (relative)")
    extra = " with the ImageNet fc" if "fc.weight" in arrays else ""
    print(f"wrote {a.output} ({a.dst}{extra}); verified: eval forward agrees, max relative error {diff.max_rel:.1e}")


SET_HELP = ("spec knob (num_classes, image_size, width, blocks, hidden) or recipe field (lr, momentum, "
            "weight_decay, lr_period, lr_decay, epochs, batch_size, freeze_backbone, bn_frozen_eval), "
            "e.g. --set image_size=64 --set bn_frozen_eval=true (repeatable)")


def register(sub) -> None:
    p = sub.add_parser("dogs", help="seed 000's Kaggle dog-breed task: reorganize, train, predict, convert")
    dsub = p.add_subparsers(dest="dogs_command", required=True, metavar="STEP")
    r = dsub.add_parser("reorganize", help="lay out train/valid/train_valid/test as seed 000 does, with links")
    r.add_argument("--data", required=True, metavar="KAGGLE_DIR", help="folder with labels.csv, train/, test/")
    r.add_argument("--out", required=True, metavar="DIR", help="where to lay out the splits")
    r.add_argument("--valid-ratio", type=float, default=0.1, help="share of train/ held out (default 0.1)")
    r.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    r.set_defaults(fn=cmd_reorganize)

    t = dsub.add_parser("train", help="fine-tune resnet34-finetune (frozen backbone, SGD head) on a reorganised folder")
    t.add_argument("--backend", required=True, help="torch or mxnet")
    t.add_argument("--data", required=True, metavar="DIR", help="the output of `ganparity dogs reorganize`")
    t.add_argument("--full", action="store_true", help="train on train_valid, no validation (the seed's second run)")
    t.add_argument("--weights", metavar="PATH", help="pretrained backbone: .pth (torchvision resnet34 state_dict), "
                   ".params (Gluon model zoo resnet34_v1) or .npz (neutral); default: random init")
    t.add_argument("--epochs", type=int, help="default 20")
    t.add_argument("--batch-size", type=int, help="default 128")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VAL", help=SET_HELP)
    t.add_argument("--seed", type=int, default=0, help="numpy seed for init, shuffling and augmentation (default 0)")
    t.add_argument("--device", default="cpu", help="cpu or cuda")
    t.add_argument("--out", default="runs/dogs", metavar="RUN_DIR", help="where run.json and weights.npz go")
    t.set_defaults(fn=cmd_train)

    q = dsub.add_parser("predict", help="write the Kaggle submission.csv from a run: id + softmax per breed")
    q.add_argument("--backend", required=True, help="torch or mxnet (either can predict from either's run)")
    q.add_argument("--data", required=True, metavar="DIR", help="the reorganised folder (reads test/unknown)")
    q.add_argument("--run", required=True, metavar="RUN_DIR", help="a `ganparity dogs train` output folder")
    q.add_argument("--out", default="submission.csv", metavar="CSV", help="default submission.csv")
    q.add_argument("--batch-size", type=int, default=128, help="default 128")
    q.add_argument("--device", default="cpu", help="cpu or cuda")
    q.set_defaults(fn=cmd_predict)

    c = dsub.add_parser("convert", help="pretrained ResNet file: torchvision state_dict (.pth) <-> Gluon model zoo "
                        "resnet34_v1 .params, verified by an eval forward in both frameworks")
    c.add_argument("--from", dest="src", required=True, help="torch (torchvision layout) or mxnet (Gluon layout)")
    c.add_argument("--to", dest="dst", required=True, help="torch or mxnet")
    c.add_argument("input", metavar="IN", help="the source file")
    c.add_argument("output", metavar="OUT", help="where to write the converted file")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VAL", help="spec knobs for a non-standard width")
    c.set_defaults(fn=cmd_convert)
