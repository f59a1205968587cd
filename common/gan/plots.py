"""Pictures of a run: sample grids (Pillow), the loss curve and the Gaussian scatter (matplotlib,
Agg backend, imported only when drawn), and a GIF of the grids."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..files import atomic_write
from .data import to_uint8


def grid(images: np.ndarray, nrow: int = 8, padding: int = 2, normalize: bool = True) -> np.ndarray:
    """(N, C, H, W) floats -> one (H', W', 3) uint8 picture, as torchvision's make_grid(padding=2,
    normalize=True): each grid is min-max scaled over the whole batch."""
    x = np.asarray(images, np.float32)
    if normalize:
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / max(hi - lo, 1e-5) * 2 - 1
    u8 = to_uint8(x)
    if u8.shape[1] == 1:
        u8 = np.repeat(u8, 3, axis=1)
    n, _, h, w = u8.shape
    ncol = min(nrow, n)
    rows = -(-n // ncol)
    out = np.zeros((rows * (h + padding) + padding, ncol * (w + padding) + padding, 3), np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        y, x0 = padding + r * (h + padding), padding + c * (w + padding)
        out[y:y + h, x0:x0 + w] = u8[i].transpose(1, 2, 0)
    return out


def save_grid(path: str | os.PathLike, images: np.ndarray, nrow: int = 8, scale: int = 1) -> Path:
    from PIL import Image

    im = Image.fromarray(grid(images, nrow))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    return atomic_write(Path(path), lambda tmp: im.save(tmp, format="PNG"))


def _figure(figsize):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def save_loss_curve(path: str | os.PathLike, loss_g: list[float], loss_d: list[float], title: str = "") -> Path:
    """Source 001's plot: 'Generator and Discriminator Loss During Training', per iteration."""
    fig = _figure((10, 5))
    ax = fig.subplots()
    ax.set_title("Generator and Discriminator Loss During Training" + (f"\n{title}" if title else ""))
    ax.plot(loss_g, label="G", linewidth=0.8)
    ax.plot(loss_d, label="D", linewidth=0.8)
    ax.set_xlabel("iterations")
    ax.set_ylabel("Loss")
    ax.legend()
    return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=80))


def save_scatter(path: str | os.PathLike, real: np.ndarray, fake: np.ndarray, title: str = "") -> Path:
    """Source 003's picture: real points in blue, generated in orange."""
    fig = _figure((5, 5))
    ax = fig.subplots()
    ax.scatter(real[:, 0], real[:, 1], s=6, color="tab:blue", label="real")
    ax.scatter(fake[:, 0], fake[:, 1], s=6, color="tab:orange", label="generated")
    ax.set_title(title)
    ax.legend(loc="upper left")
    return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=80))


def save_gif(path: str | os.PathLike, frames: list[Path], ms: int = 600) -> Path | None:
    """The grids as an animation (the tutorial's ArtistAnimation, as a file)."""
    from PIL import Image

    if not frames:
        return None
    ims = [Image.open(f).convert("RGB") for f in frames]
    return atomic_write(Path(path), lambda tmp: ims[0].save(tmp, format="GIF", save_all=True,
                                                       append_images=ims[1:], duration=ms, loop=0))
