"""`ganparity finetune ...`: source 000's Kaggle dog-breed fine-tune (common/finetune) from the
command line: reorganize, train, predict, convert."""

from __future__ import annotations

import numpy as np

from .. import weights as W
from ..backend import BACKENDS, build_nets, get_backend
from ..errors import GanparityError
from ..files import writing
from .args import DEVICES, backend_name, fraction, output_dir, output_file, positive_int, seed


def cmd_reorganize(a) -> None:
    from ..finetune.layout import MANIFEST, reorganize

    with writing(a.out, kind="dir", manifest=MANIFEST) as out:
        counts = reorganize(a.data, out, a.valid_ratio, a.seed)
    print(f"reorganised {a.data} -> {a.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
          + " images (hard links or symlinks, no copies)")


def cmd_train(a) -> None:
    from ..finetune.loop import RUN_JSON, parse_settings, train

    knobs, recipe = parse_settings(a.set)
    if a.epochs is not None:
        recipe["epochs"] = a.epochs
    if a.batch_size is not None:
        recipe["batch_size"] = a.batch_size
    with writing(a.out, kind="dir", manifest=RUN_JSON) as out:  # a finetune run folder, or a new one
        meta = train(a.backend, a.data, out, a.full, a.weights, knobs, recipe, a.seed, a.device)
    print(f"wrote {a.out}/weights.npz and run.json ({a.backend}, {len(meta['classes'])} classes, "
          f"{meta['recipe']['epochs']} epochs on {'train_valid' if a.full else 'train'})")


def cmd_predict(a) -> None:
    from ..finetune.loop import predict

    with writing(a.out) as out:
        rows = predict(a.backend, a.data, a.run, out, a.batch_size, a.device)
    print(f"wrote {a.out}: {rows} test images, softmax over the run's classes")


def cmd_convert(a) -> None:
    from ..finetune.loop import SPEC, parse_settings
    from ..parity import compare
    from ..spec.registry import get_spec

    knobs, _ = parse_settings(a.set)
    spec = get_spec(SPEC, kind="finetune", **knobs)
    src, dst = get_backend(a.src), get_backend(a.dst)
    arrays = src.load_pretrained(a.input, spec)
    with writing(a.output, what="OUT") as out:
        dst.save_pretrained(out, arrays, spec)
    back = dst.load_pretrained(out, spec)
    # Verify: the written file, loaded by the target framework, gives the source's eval logits.
    head = W.split(W.init_arrays(spec, 0), "head")
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    outs = []
    for be, w in ((src, arrays), (dst, back)):
        nets = build_nets(be, spec)
        be.set_arrays(nets["backbone"], spec.backbone, W.split(w, "backbone"))
        be.set_arrays(nets["head"], spec.head, head)
        outs.append(be.logits(nets["backbone"], nets["head"], x, "eval"))
    diff = compare({"logits": outs[0]}, {"logits": outs[1]})[0]
    if not diff.ok:
        raise GanparityError(f"conversion check failed: eval logits differ by {diff.max_rel:.2e} (relative)")
    extra = " with the ImageNet fc" if "fc.weight" in arrays else ""
    print(f"wrote {a.output} ({a.dst}{extra}); verified: eval forward agrees, max relative error {diff.max_rel:.1e}")


SET_HELP = ("spec knob (num_classes, image_size, width, blocks, hidden) or recipe field (lr, momentum, "
            "weight_decay, lr_period, lr_decay, epochs, batch_size, freeze_backbone, bn_frozen_eval), "
            "e.g. --set image_size=64 --set bn_frozen_eval=true (repeatable)")


def register(sub) -> None:
    p = sub.add_parser("finetune", help="source 000's Kaggle dog-breed fine-tune: reorganize, train, predict, convert")
    fsub = p.add_subparsers(dest="finetune_command", required=True, metavar="STEP")
    r = fsub.add_parser("reorganize", help="lay out train/valid/train_valid/test as source 000 does, with links")
    r.add_argument("--data", required=True, metavar="KAGGLE_DIR", help="folder with labels.csv, train/, test/")
    r.add_argument("--out", required=True, metavar="DIR", type=output_dir, help="where to lay out the splits")
    r.add_argument("--valid-ratio", type=fraction, default=0.1, help="share of train/ held out, in [0, 1) "
                   "(default 0.1)")
    r.add_argument("--seed", type=seed, default=0, help="shuffle seed (default 0)")
    r.set_defaults(fn=cmd_reorganize)

    t = fsub.add_parser("train", help="fine-tune resnet34-finetune (frozen backbone, SGD head) on a reorganised folder")
    t.add_argument("--backend", required=True, type=backend_name, help=f"one of: {', '.join(BACKENDS)}")
    t.add_argument("--data", required=True, metavar="DIR", help="the output of `ganparity finetune reorganize`")
    t.add_argument("--full", action="store_true", help="train on train_valid, no validation (the source's second run)")
    t.add_argument("--weights", metavar="PATH", help="pretrained backbone: .pth (torchvision resnet34 state_dict), "
                   ".params (Gluon model zoo resnet34_v1) or .npz (neutral); default: random init")
    t.add_argument("--epochs", type=positive_int, help="default 20")
    t.add_argument("--batch-size", type=positive_int, help="default 128")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VAL", help=SET_HELP)
    t.add_argument("--seed", type=seed, default=0, help="numpy seed for init, shuffling and augmentation (default 0)")
    t.add_argument("--device", default="cpu", choices=DEVICES, help="cpu or cuda")
    t.add_argument("--out", default="runs/finetune", metavar="RUN_DIR", type=output_dir,
                   help="where run.json and weights.npz go")
    t.set_defaults(fn=cmd_train)

    q = fsub.add_parser("predict", help="write the Kaggle submission.csv from a run: id + softmax per breed")
    q.add_argument("--backend", required=True, type=backend_name,
                   help=f"one of: {', '.join(BACKENDS)} (either predicts from either's run)")
    q.add_argument("--data", required=True, metavar="DIR", help="the reorganised folder (reads test/unknown)")
    q.add_argument("--run", required=True, metavar="RUN_DIR", help="a `ganparity finetune train` output folder")
    q.add_argument("--out", default="submission.csv", metavar="CSV", type=output_file, help="default submission.csv")
    q.add_argument("--batch-size", type=positive_int, default=128, help="default 128")
    q.add_argument("--device", default="cpu", choices=DEVICES, help="cpu or cuda")
    q.set_defaults(fn=cmd_predict)

    c = fsub.add_parser("convert", help="pretrained ResNet file: torchvision state_dict (.pth) <-> Gluon model zoo "
                        "resnet34_v1 .params, verified by an eval forward in both frameworks")
    c.add_argument("--from", dest="src", required=True, type=backend_name,
                   help="torch (torchvision layout) or mxnet (Gluon layout)")
    c.add_argument("--to", dest="dst", required=True, type=backend_name, help="torch or mxnet")
    c.add_argument("input", metavar="IN", help="the source file")
    c.add_argument("output", metavar="OUT", type=output_file, help="where to write the converted file")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VAL", help="spec knobs for a non-standard width")
    c.set_defaults(fn=cmd_convert)
