"""Training data for the GAN specs as numpy arrays (numpy, Pillow and the standard library only).

gan-gaussian: source 003's 1000 points (common.inputs.gaussian). Image specs: an image folder,
decoded once into a memory-mapped uint8 cache, or the embedded procedural discs
(common.inputs.discs), so training works on a fresh machine with no download.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import GanparityError, choose
from ..files import atomic_write, write_json
from ..inputs import discs, gaussian
from ..readers import read_json, read_npy
from ..spec.model import GANSpec

# -- datasets for training: one numpy array (memory-mapped for image folders) ----------------------

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"})
GAUSSIAN_POINTS = 1000  # source 003: data = X·A + b for 1000 points
DISCS_IMAGES = 4096


@dataclass
class Dataset:
    """Training data as one array: uint8 images (N, C, S, S), scaled to [-1, 1] per batch, or float32
    points (N, 2). `rows` picks the training rows of `array` (None: all of them), so a memory-mapped
    cache is never copied into memory. `holdout` is data kept out of training for the quality
    measures (None: compare with the training data, and say so)."""

    name: str
    array: np.ndarray
    holdout: np.ndarray | None = None
    skipped: int = 0
    description: str = ""
    rows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.array) if self.rows is None else len(self.rows)

    def batch(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index)
        return to_float(self.array[index if self.rows is None else self.rows[index]])

    def reference(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """Up to n samples to judge G against: held-out data when there is some."""
        if self.holdout is not None and len(self.holdout):
            idx = rng.choice(len(self.holdout), min(n, len(self.holdout)), replace=False)
            return to_float(self.holdout[np.sort(idx)]), "held-out"
        idx = np.sort(rng.choice(len(self), min(n, len(self)), replace=False))
        return self.batch(idx), "training"


def to_float(a: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1] (ToTensor + Normalize(0.5, 0.5)); floats pass through."""
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 127.5 - 1.0
    return np.asarray(a, np.float32)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> uint8 [0, 255], clipped."""
    return np.clip(np.rint((np.asarray(x, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def gaussian_dataset(n: int = GAUSSIAN_POINTS, seed: int = 0) -> Dataset:
    """Source 003's 1000 points; its true mean b and covariance AᵀA are the reference, not held-out data."""
    return Dataset("gaussian", gaussian(n, np.random.default_rng(seed)),
                   description=f"2-D Gaussian X·A+b, {n} points (source 003)")


def discs_dataset(n: int, size: int, channels: int, seed: int = 0, holdout: int = 512) -> Dataset:
    """The embedded default: n procedural disc images, plus `holdout` more drawn from the same
    process with another seed, all stored as uint8 (4096 images at 64 px take 50 MB)."""
    def make(count: int, s: int) -> np.ndarray:
        chunks = [to_uint8(discs(min(1024, count - i), size, channels, seed=s * 100_003 + i))
                  for i in range(0, count, 1024)]
        return np.concatenate(chunks) if chunks else np.zeros((0, channels, size, size), np.uint8)

    return Dataset("discs", make(n, seed + 1), make(holdout, seed + 2),
                   description=f"embedded procedural discs, {n} images of {size}x{size}x{channels}")


def list_images(root: Path) -> list[Path]:
    """Every image file under root (ImageFolder class subfolders, nested trees or a flat folder),
    sorted, hidden files and folders left out."""
    return sorted(p for p in root.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def load_image(path: Path, size: int, channels: int = 3) -> np.ndarray:
    """One image as uint8 (C, size, size): shorter side resized to size (bilinear, antialiased),
    then centre-cropped, as torchvision's Resize(size) + CenterCrop(size). Grayscale, palette and
    RGBA images are converted to RGB (or to L when channels == 1)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGBA") if im.mode in ("P", "LA") else im
        if im.mode == "RGBA":  # composite on black, what a dataset of RGBA sprites usually means
            bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
            im = Image.alpha_composite(bg, im)
        im = im.convert("L" if channels == 1 else "RGB")
        w, h = im.size
        if w < h:
            nw, nh = size, int(size * h / w)
        else:
            nw, nh = int(size * w / h), size
        im = im.resize((nw, nh), Image.BILINEAR, reducing_gap=None)
        top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
        im = im.crop((left, top, left + size, top + size))
        a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def default_cache_dir(root: Path) -> Path:
    """Beside the data folder (<parent>/.ganparity-cache) when that is writable, else ~/.cache/ganparity."""
    parent = root.resolve().parent
    if os.access(parent, os.W_OK):
        return parent / ".ganparity-cache"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ganparity"


def _cache_key(root: Path, files: list[Path], size: int, channels: int) -> str:
    h = hashlib.sha256(f"v1 {size} {channels}\n".encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _decode(root: Path, files: list[Path], size: int, channels: int, npy: Path) -> dict:
    """Decode every file into the .npy cache at `npy` (written atomically); unreadable files are
    skipped and listed in the returned meta."""
    from PIL import UnidentifiedImageError

    meta = {"root": str(root.resolve()), "files": len(files), "images": 0, "skipped": []}

    def write(tmp: str) -> None:
        shape = (len(files), channels, size, size)
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        n = 0
        for p in files:
            try:
                out[n] = load_image(p, size, channels)
                n += 1
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
                meta["skipped"].append(f"{p.relative_to(root).as_posix()} ({type(e).__name__})")
        out.flush()
        del out
        if n < len(files):  # rewrite without the unused tail, in chunks (the cache may be large)
            full = np.load(tmp, mmap_mode="r")
            cut = np.lib.format.open_memmap(tmp + ".cut.npy", mode="w+", dtype=np.uint8, shape=(n, *shape[1:]))
            for i in range(0, n, 4096):
                cut[i:i + 4096] = full[i:min(i + 4096, n)]
            cut.flush()
            del full, cut
            os.replace(tmp + ".cut.npy", tmp)
        meta["images"] = n

    atomic_write(npy, write)
    return meta


def _cached(npy: Path, meta_path: Path, n_files: int) -> tuple[dict | None, np.ndarray | None]:
    """A cache written by _decode, or (None, None) when it is missing or does not read back whole."""
    if not (npy.is_file() and meta_path.is_file()):
        return None, None
    try:
        meta = read_json(meta_path, "image cache record")
        array = read_npy(npy, "image cache", mmap=True)
    except GanparityError as e:
        warnings.warn(f"decoding again: {e}", stacklevel=3)
        return None, None
    if meta.get("files") != n_files or len(array) != meta.get("images"):
        return None, None
    return meta, array


def image_folder(root: str | os.PathLike, size: int, channels: int = 3, cache_dir: str | os.PathLike | None = None,
                 holdout: float = 0.1, max_holdout: int = 512, min_for_holdout: int = 50) -> Dataset:
    """An image folder as a uint8 array (N, C, size, size), decoded once into a memory-mapped .npy
    cache keyed by a hash of the sorted file list (with sizes and mtimes), the size and channels.

    Unreadable files are skipped, counted, and reported with a warning. With at least
    `min_for_holdout` images, a fixed `holdout` fraction (at most `max_holdout`) is kept out of
    training for the quality measures.
    """
    root = Path(root)
    if not root.is_dir():
        raise GanparityError(f"data folder {str(root)!r} does not exist or is not a folder")
    if channels not in (1, 3):
        raise GanparityError(f"image folders load as 1 or 3 channels; the spec has nc={channels}")
    files = list_images(root)
    if not files:
        raise GanparityError(f"data folder {str(root)!r} holds no image files "
                             f"({', '.join(sorted(IMAGE_EXTENSIONS))}), in it or in its subfolders")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(root)
    stem = f"{root.resolve().name or 'data'}-{_cache_key(root, files, size, channels)}-{size}px{channels}c"
    npy, meta_path = cache / f"{stem}.npy", cache / f"{stem}.json"
    meta, array = _cached(npy, meta_path, len(files))
    if array is None:  # no cache yet, or a damaged one: decode (again)
        meta = _decode(root, files, size, channels, npy)
        write_json(meta_path, meta)
        array = np.load(npy, mmap_mode="r")
    bad = meta["skipped"]
    if bad:
        warnings.warn(f"{len(bad)} of {meta['files']} files in {str(root)!r} could not be read and were "
                      f"skipped: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}", stacklevel=2)
    if len(array) == 0:
        raise GanparityError(f"data folder {str(root)!r}: none of its {meta['files']} image files could be read")
    held, rows = None, None
    if len(array) >= min_for_holdout and holdout > 0:
        k = min(max_holdout, int(len(array) * holdout))
        order = np.random.default_rng(12345).permutation(len(array))
        held, rows = np.asarray(array[np.sort(order[:k])]), np.sort(order[k:])
    n_train = len(array) if rows is None else len(rows)
    return Dataset(root.resolve().name, array, held, len(bad),
                   f"image folder {str(root)!r}: {n_train} training images"
                   + (f", {len(held)} held out" if held is not None else "")
                   + (f", {len(bad)} unreadable skipped" if bad else "") + f", {size}x{size}x{channels}",
                   rows)


def _source(spec: GANSpec, data: str | os.PathLike | None, dataset: str | None) -> str:
    """'folder', 'gaussian' or 'discs': what a spec trains on, a mismatch refused."""
    shape = tuple(spec.D.input_shape)
    if data is not None and dataset is not None:
        raise GanparityError("give --data PATH or --dataset NAME, not both")
    if data is not None:
        if shape == (2,):
            raise GanparityError(f"{spec.name} takes 2-D points; it trains on --dataset gaussian, not an image folder")
        return "folder"
    name = choose("dataset", dataset or ("gaussian" if shape == (2,) else "discs"), DATASETS)
    if (name == "gaussian") != (shape == (2,)):
        raise GanparityError(f"dataset {name!r} does not fit {spec.name}, whose D takes {shape}")
    return name


def dataset_for(spec: GANSpec, data: str | os.PathLike | None = None, dataset: str | None = None,
                cache_dir: str | os.PathLike | None = None, n: int | None = None, seed: int = 0) -> Dataset:
    """The training data for a spec: a folder path, or a named dataset (default: gaussian for 2-D
    specs, discs for image specs)."""
    shape = tuple(spec.D.input_shape)
    source = _source(spec, data, dataset)
    if source == "folder":
        return image_folder(data, shape[1], shape[0], cache_dir)
    if source == "gaussian":
        return gaussian_dataset(GAUSSIAN_POINTS if n is None else n, seed)
    return discs_dataset(DISCS_IMAGES if n is None else n, shape[1], shape[0], seed)


def dataset_rows(spec: GANSpec, data: str | os.PathLike | None = None, dataset: str | None = None,
                 cache_dir: str | os.PathLike | None = None, n: int | None = None) -> int:
    """len(dataset_for(...)), without drawing a built-in dataset (the --nproc launcher's check, before
    any worker starts). An image folder is decoded into its cache, which the workers then read."""
    source = _source(spec, data, dataset)
    if source == "folder":
        return len(dataset_for(spec, data, None, cache_dir, n))
    return (GAUSSIAN_POINTS if source == "gaussian" else DISCS_IMAGES) if n is None else n


DATASETS = ("gaussian", "discs")
