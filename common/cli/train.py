"""`ganparity train` and `ganparity sample` over the GAN application (common/gan).
Framework-free at import: the backend is imported when a command runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..backend import BACKENDS
from ..errors import GanparityError
from ..files import writing
from ..gan.data import DATASETS
from ..gan.distributed import end_worker, engine, is_rank0
from ..gan.feed import DEPTH
from ..spec.registry import GAN_SPECS, parse_knobs
from . import distributed
from .args import DEVICES, backend_name, int_at_least, nonnegative_int, output_dir, output_file, positive_int, seed


def train_config(a):
    """The TrainConfig of `ganparity train`'s arguments."""
    from ..gan.loop import TrainConfig

    return TrainConfig(spec=a.spec, backend=a.backend, knobs=parse_knobs(a.set), data=a.data, dataset=a.dataset,
                       n_data=a.n_data, cache_dir=a.cache_dir, epochs=a.epochs, batch_size=a.batch_size,
                       device=a.device, seed=a.seed, out=a.out, resume=a.resume, eval_samples=a.eval_samples,
                       sample_every=a.sample_every, gif=a.gif, fid_weights=a.fid_weights,
                       progress={"auto": None, "bar": True, "lines": False}[a.progress], log_every=a.log_every,
                       prefetch=a.prefetch)


def cmd_train(a) -> None:
    from ..gan.loop import describe_quality, train

    if a.nproc is not None:  # data parallel: N workers through the backend's launcher
        return distributed.launch(a, train_config)
    distributed.worker_env(a)

    res = train(train_config(a))
    if res.interrupted:
        raise SystemExit(130)
    if engine() is None or is_rank0():
        print(f"{res.run_dir}: {res.epochs_done} epochs, {res.step} steps in {res.seconds:.1f} s ({res.backend})")
        if res.quality:
            print(describe_quality(res.quality))
    end_worker()


def _warn(msg: str) -> None:
    print(f"ganparity: {msg}", file=sys.stderr, flush=True)


def cmd_sample(a) -> None:
    from ..backend import get_backend
    from ..gan.plots import save_grid, save_scatter
    from ..gan.run import load_best, read_run, spec_of
    from ..gan.sample import generate, is_points, walks
    from ..inputs import gaussian

    run_dir = Path(a.run)
    run = read_run(run_dir)
    spec = spec_of(run)
    if a.interpolate and is_points(spec):
        raise GanparityError("--interpolate draws rows of images; gan-gaussian makes 2-D points")
    meta, arrays, _, _, _ = load_best(run_dir, run, spec, _warn, doing="drawing")
    backend = a.backend or meta["backend"]
    be = get_backend(backend)
    G = be.build(spec.G, device=a.device, semantics=spec.recipe.semantics)
    be.set_arrays(G, spec.G, {k: v for k, v in arrays.items() if k.startswith("G.")})
    rng = np.random.default_rng(a.seed)
    latent = tuple(spec.latent_shape)
    points = is_points(spec)
    if a.interpolate:
        z = walks(rng, -(-a.n // 8), latent)
    else:
        z = rng.standard_normal((a.n, *latent)).astype(np.float32)
    fake = generate(be, G, spec, z)
    out = Path(a.out) if a.out else run_dir / ("interpolation.png" if a.interpolate else "samples.png")
    with writing(out) as target:
        if points:
            save_scatter(target, gaussian(len(fake), np.random.default_rng(a.seed + 1)), fake,
                         f"{spec.name}: {len(fake)} samples at step {meta['step']}")
        else:
            save_grid(target, fake, nrow=8, scale=max(1, 64 // spec.D.input_shape[-1]))
    print(f"wrote {out}: {len(fake)} samples of {spec.name} from {run_dir} (step {meta['step']}, "
          f"epoch {meta['epoch']}, trained with {run.get('backend')}; drawn with {backend})")


RESUME_HELP = ("continue the run in --out from its checkpoint (the previous one if the latest is corrupt). "
               "It keeps the run's spec, widths, batch size, seed, data, --eval-samples, --sample-every, "
               "--no-gif and --fid-weights: given again, each must match. Overrides: --epochs (train "
               "further), --backend (hand over), --device, --data (the same folder at a new path), --cache-dir")


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("train", help="train a GAN spec on real data with either backend; resumable",
                       description="Train a GAN spec with one backend. Writes a run directory: metrics.jsonl, "
                       "per-epoch sample pictures, loss.png, progress.gif, quality.json and an atomic "
                       "checkpoint.npz (and the one before it, checkpoint.prev.npz; their sha256 in run.json) "
                       "that either backend can resume. One writer per run directory (run.lock).")
    s.add_argument("--spec", metavar="NAME", help=f"one of: {', '.join(GAN_SPECS)} (required unless --resume)")
    s.add_argument("--backend", metavar="NAME", type=backend_name,
                   help=f"one of: {', '.join(BACKENDS)} (default torch; on --resume the run's own, or the "
                   "other one to hand the run over: an override)")
    s.add_argument("--data", metavar="PATH", help="an image folder: class subfolders (ImageFolder, CelebA, LFW, "
                   "Pokemon) or flat; decoded once into a memory-mapped cache (on --resume, an override: the "
                   "run's folder at a new path)")
    s.add_argument("--dataset", metavar="NAME", help=f"a built-in dataset: {', '.join(DATASETS)} (default: gaussian "
                   "for gan-gaussian, discs for image specs; no download)")
    s.add_argument("--n-data", type=positive_int, metavar="N", help="size of a built-in dataset (default: 1000 "
                   "points, 4096 disc images)")
    s.add_argument("--cache-dir", metavar="DIR", help="where decoded image caches go (default: "
                   "<data parent>/.ganparity-cache, else ~/.cache/ganparity; an override on --resume)")
    s.add_argument("--epochs", type=positive_int, metavar="N", help="epochs in all (default: the spec's recipe; "
                   "on --resume an override: a larger N trains further)")
    s.add_argument("--batch-size", type=positive_int, metavar="N", help="batch size (default: the spec's recipe)")
    s.add_argument("--device", default="cpu", choices=DEVICES, help="where to train (default cpu; an override "
                   "on --resume)")
    s.add_argument("--seed", type=seed, default=None, help="numpy seed for the initial weights, shuffling and "
                   "noise (default 0)")
    s.add_argument("--out", metavar="RUN_DIR", type=output_dir,
                   help="run directory (default runs/<spec>-<backend>-<time>)")
    s.add_argument("--resume", action="store_true", help=RESUME_HELP)
    s.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override a width knob, e.g. --set ngf=16 --set image_size=32 (repeatable)")
    s.add_argument("--eval-samples", type=int_at_least(2), default=None, metavar="N",
                   help="generated and reference images for the final SWD (default 512)")
    s.add_argument("--fid-weights", metavar="FILE", help="a local torchvision Inception-v3 state dict: adds FID "
                   "(on generated vs held-out images) to quality.json; nothing is downloaded")
    s.add_argument("--sample-every", type=positive_int, default=None, metavar="N",
                   help="draw the fixed-noise picture every N epochs (default 1; the last epoch always)")
    s.add_argument("--no-gif", dest="gif", action="store_const", const=False, default=None,
                   help="skip progress.gif")
    s.add_argument("--progress", default="auto", choices=("auto", "bar", "lines"),
                   help="auto: a tqdm bar on a terminal, one line per epoch otherwise")
    s.add_argument("--log-every", type=positive_int, default=None, metavar="N",
                   help="read the steps' losses every N steps, in one copy (default 1 on cpu; on cuda 50, the "
                        "PyTorch DCGAN tutorial's print interval: in between the host never waits for the GPU). "
                        "metrics.jsonl still gets one line per step")
    s.add_argument("--prefetch", type=nonnegative_int, default=DEPTH, metavar="N",
                   help="batches made ahead on a background thread while the step runs (on cuda also pinned "
                        "and copied on a stream of their own); 0 makes each batch when its step needs it")
    distributed.add_arguments(s)
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("sample", help="draw samples (or latent interpolations) from a run's checkpoint")
    s.add_argument("--run", required=True, metavar="RUN_DIR", help="a run directory written by ganparity train")
    s.add_argument("--n", type=positive_int, default=64,
                   help="how many samples (default 64; --interpolate: rows of 8, N/8 rounded up)")
    s.add_argument("--out", metavar="FILE.png", type=output_file, help="where to write (default RUN_DIR/samples.png)")
    s.add_argument("--interpolate", action="store_true", help="rows walking between two latents (slerp)")
    s.add_argument("--backend", metavar="NAME", type=backend_name, help="draw with this backend (default: the run's)")
    s.add_argument("--device", default="cpu", choices=DEVICES, help="where to run G (default cpu)")
    s.add_argument("--seed", type=seed, default=0, help="numpy seed of the latents (default 0)")
    s.set_defaults(fn=cmd_sample)
