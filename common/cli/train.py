"""`ganparity train` and `ganparity sample` over the GAN application (common/gan).
Framework-free at import: the backend is imported when a command runs."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..backend import BACKENDS
from ..errors import GanparityError
from ..gan.data import DATASETS
from ..gan.distributed import engine, is_rank0
from ..spec.registry import GAN_SPECS, get_spec, parse_knobs
from . import distributed


def cmd_train(a) -> None:
    from ..gan.loop import TrainConfig, describe_quality, train

    if a.nproc is not None:  # data parallel: N workers through the backend's launcher
        return distributed.launch(a)
    distributed.worker_env(a)

    cfg = TrainConfig(spec=a.spec, backend=a.backend, knobs=parse_knobs(a.set), data=a.data, dataset=a.dataset,
                      n_data=a.n_data, cache_dir=a.cache_dir, epochs=a.epochs, batch_size=a.batch_size,
                      device=a.device, seed=a.seed, out=a.out, resume=a.resume, eval_samples=a.eval_samples,
                      sample_every=a.sample_every, gif=not a.no_gif, fid_weights=a.fid_weights,
                      progress={"auto": None, "bar": True, "lines": False}[a.progress])
    res = train(cfg)
    if res.interrupted:
        raise SystemExit(130)
    if engine() is not None and not is_rank0():
        return
    print(f"{res.run_dir}: {res.epochs_done} epochs, {res.step} steps in {res.seconds:.1f} s ({cfg.backend})")
    if res.quality:
        print(describe_quality(res.quality))


def cmd_sample(a) -> None:
    from .. import weights as W
    from ..backend import get_backend
    from ..gan.plots import save_grid, save_scatter
    from ..gan.run import CHECKPOINT, load_checkpoint, read_run
    from ..gan.sample import generate, is_points, walks
    from ..inputs import gaussian

    run_dir = Path(a.run)
    run = read_run(run_dir)
    if a.n < 1:
        raise GanparityError(f"--n must be positive, got {a.n}")
    meta, arrays, _, _ = load_checkpoint(run_dir / CHECKPOINT)
    spec = get_spec(meta["spec"], kind="gan", **meta["params"])
    backend = a.backend or meta["backend"]
    be = get_backend(backend)
    G = be.build(spec.G, device=a.device, semantics=spec.recipe.semantics)
    be.set_arrays(G, spec.G, W.validate(W.split(arrays, "G"), spec, ("G",), what=f"{run_dir / CHECKPOINT}"))
    rng = np.random.default_rng(a.seed)
    latent = tuple(spec.latent_shape)
    points = is_points(spec)
    if a.interpolate:
        if points:
            raise GanparityError("--interpolate draws rows of images; gan-gaussian makes 2-D points")
        z = walks(rng, max(1, a.n // 8), latent)
    else:
        z = rng.standard_normal((a.n, *latent)).astype(np.float32)
    fake = generate(be, G, spec, z)
    out = Path(a.out) if a.out else run_dir / ("interpolation.png" if a.interpolate else "samples.png")
    if points:
        save_scatter(out, gaussian(len(fake), np.random.default_rng(a.seed + 1)), fake,
                     f"{spec.name}: {len(fake)} samples at step {meta['step']}")
    else:
        save_grid(out, fake, nrow=8, scale=max(1, 64 // spec.D.input_shape[-1]))
    print(f"wrote {out}: {len(fake)} samples of {spec.name} from {run_dir} (step {meta['step']}, "
          f"epoch {meta['epoch']}, trained with {run.get('backend')}; drawn with {backend})")


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("train", help="train a GAN spec on real data with either backend; resumable",
                       description="Train a GAN spec with one backend. Writes a run directory: metrics.jsonl, "
                       "per-epoch sample pictures, loss.png, progress.gif, quality.json and an atomic "
                       "checkpoint.npz that either backend can resume.")
    s.add_argument("--spec", metavar="NAME", help=f"one of: {', '.join(GAN_SPECS)} (required unless --resume)")
    s.add_argument("--backend", metavar="NAME",
                   help=f"one of: {', '.join(BACKENDS)} (default torch; on --resume the run's own, or the "
                   "other one to hand the run over)")
    s.add_argument("--data", metavar="PATH", help="an image folder: class subfolders (ImageFolder, CelebA, LFW, "
                   "Pokemon) or flat; decoded once into a memory-mapped cache")
    s.add_argument("--dataset", metavar="NAME", help=f"a built-in dataset: {', '.join(DATASETS)} (default: gaussian "
                   "for gan-gaussian, discs for image specs; no download)")
    s.add_argument("--n-data", type=int, metavar="N", help="size of a built-in dataset (default: 1000 points, "
                   "4096 disc images)")
    s.add_argument("--cache-dir", metavar="DIR", help="where decoded image caches go (default: "
                   "<data parent>/.ganparity-cache, else ~/.cache/ganparity)")
    s.add_argument("--epochs", type=int, metavar="N", help="epochs in all (default: the spec's recipe; on "
                   "--resume a larger N trains further)")
    s.add_argument("--batch-size", type=int, metavar="N", help="batch size (default: the spec's recipe)")
    s.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to train (default cpu)")
    s.add_argument("--seed", type=int, default=0, help="numpy seed for the initial weights, shuffling and "
                   "noise (default 0)")
    s.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/<spec>-<backend>-<time>)")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override a width knob, e.g. --set ngf=16 --set image_size=32 (repeatable)")
    s.add_argument("--eval-samples", type=int, default=512, metavar="N",
                   help="generated and reference images for the final SWD (default 512)")
    s.add_argument("--fid-weights", metavar="FILE", help="a local torchvision Inception-v3 state dict: adds FID "
                   "(on generated vs held-out images) to quality.json; nothing is downloaded")
    s.add_argument("--sample-every", type=int, default=1, metavar="N",
                   help="draw the fixed-noise picture every N epochs (default 1; the last epoch always)")
    s.add_argument("--no-gif", action="store_true", help="skip progress.gif")
    s.add_argument("--progress", default="auto", choices=("auto", "bar", "lines"),
                   help="auto: a tqdm bar on a terminal, one line per epoch otherwise")
    distributed.add_arguments(s)
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("sample", help="draw samples (or latent interpolations) from a run's checkpoint")
    s.add_argument("--run", required=True, metavar="RUN_DIR", help="a run directory written by ganparity train")
    s.add_argument("--n", type=int, default=64, help="how many samples (default 64; --interpolate: rows of 8)")
    s.add_argument("--out", metavar="FILE.png", help="where to write (default RUN_DIR/samples.png)")
    s.add_argument("--interpolate", action="store_true", help="rows walking between two latents (slerp)")
    s.add_argument("--backend", metavar="NAME", help="draw with this backend (default: the run's)")
    s.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to run G (default cpu)")
    s.add_argument("--seed", type=int, default=0, help="numpy seed of the latents (default 0)")
    s.set_defaults(fn=cmd_sample)
