"""Loading the small image-classification data sets fully into memory.

Every data set used by the DARTS-style search and evaluation (CIFAR-10, CIFAR-100, SVHN, MNIST,
Fashion-MNIST) fits in host memory (at most ~200 MB as uint8), so this module simply returns two
numpy arrays, ``images`` (uint8, ``[N, H, W, C]``) and ``labels`` (int32, ``[N]``). Shuffling,
batching and augmentation happen later (:mod:`jnas.data.pipeline`, :mod:`jnas.data.augment`).

Sources
-------
``"tfds"``
    ``tfds.data_source`` (random-access ArrayRecord files; works without TensorFlow and under
    ``tfds.testing.mock_data``). Examples are read one index at a time because the batched
    ``__getitems__`` is broken for mocked data sources; decoding dominates the cost anyway. The
    order of the examples is the (fixed, deterministic) order of the prepared tfds split, which
    is *not* the order of the original archives (tfds shuffles by key hash when preparing).
``"idx"``
    Gzipped (or plain) IDX files as distributed by the MNIST and Fashion-MNIST authors, e.g.
    Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist/``). The
    example order is the original file order.
``"auto"``
    IDX if the files for the requested split are found (MNIST and Fashion-MNIST only), else tfds.

Offline behaviour
-----------------
If the tfds data are not prepared, tfds would try to download them; without network its
downloader retries for minutes (measured: ~200 s for CIFAR-10) before failing. To fail fast we
first try to open the prepared data without downloading; only if that fails and ``download`` is
true do we probe the data set's download host with a short TCP connect (skipped when a proxy is
configured through ``HTTP(S)_PROXY``/``ALL_PROXY``) and only then let tfds download. Every failure
is raised as :class:`DatasetNotFoundError` naming the data set and split, where we looked, and how
to provide the data.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import socket
import threading
import urllib.parse
import zlib
from collections.abc import Sequence

import numpy as np

from jnas.errors import EXIT_DATA, JnasError

__all__ = [
    "DATASETS",
    "SPLITS",
    "DataFormatError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "get_dataset_info",
    "load_arrays",
    "load_idx_dir",
    "read_idx",
]

SPLITS = ("train", "test")
SOURCES = ("auto", "tfds", "idx")

_DATA_DIR_FLAG = "--config.data.data_dir"
_TFDS_INTERNET_HINT = (
    "run on a machine with internet access so that tfds can download and prepare it into "
    "~/tensorflow_datasets (or $TFDS_DATA_DIR), e.g. with `load_arrays('{name}', '{split}')`, "
    f"then copy that directory here and pass {_DATA_DIR_FLAG}=DIR (or set TFDS_DATA_DIR)"
)


class DatasetNotFoundError(FileNotFoundError, JnasError):
    """A data set (or one of its splits) is not available locally and could not be fetched."""

    exit_status = EXIT_DATA


class DataFormatError(ValueError, JnasError):
    """A data file exists but is corrupt or does not have the expected format or shape."""

    exit_status = EXIT_DATA


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static metadata of one supported data set.

    Attributes:
      name: Our name for the data set (key of :data:`DATASETS`).
      tfds_name: Name of the tfds builder.
      num_classes: Number of label classes; labels are in ``[0, num_classes)``.
      image_shape: ``(H, W, C)`` of one image.
      mean: Per-channel mean of the train split in ``[0, 1]`` pixel units.
      std: Per-channel standard deviation of the train split in ``[0, 1]`` pixel units.
      flip: Whether random horizontal flips are a label-preserving augmentation.
      crop_padding: Default zero padding for the random-crop augmentation.
      num_examples: Sizes of the real ``train`` and ``test`` splits (informational).
      download_url: One URL tfds downloads from; used only for the fast offline check.
      idx_env_var: Environment variable naming a directory with IDX files, if supported.
      idx_default_dir: Default directory with IDX files (a distribution package), if any.
      install_hint: Extra advice for the "not found" error message.
    """

    name: str
    tfds_name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool
    crop_padding: int
    num_examples: dict[str, int]
    download_url: str
    idx_env_var: str | None = None
    idx_default_dir: str | None = None
    install_hint: str = ""

    @property
    def supports_idx(self) -> bool:
        """Whether the ``"idx"`` source can read this data set."""
        return self.idx_env_var is not None


# Normalisation constants (train split, pixels scaled to [0, 1], population std over all pixels):
# * CIFAR-10: the values hard-coded in the DARTS code (quark0/darts, cnn/utils.py).
# * CIFAR-100: the values commonly used for CIFAR-100 (e.g. in many DARTS follow-ups).
# * SVHN (train split, 73257 images): the widely used (0.4377, 0.4438, 0.4728) /
#   (0.1980, 0.2010, 0.1970), e.g. in DeepCore (PatrickZH/DeepCore, datasets/svhn.py).
# * MNIST: 0.1307 / 0.3081, the PyTorch MNIST example values.
# * Fashion-MNIST: 0.2860 / 0.3530, recomputed here from Debian's train-images-idx3-ubyte.gz
#   (0.28604 / 0.35302).
# Horizontal flips: yes for CIFAR (DARTS recipe) and Fashion-MNIST (clothes are roughly mirror
# symmetric; flips are part of common Fashion-MNIST recipes, e.g. Random Erasing, Zhong et al.
# 2020); no for the digit data sets SVHN and MNIST, where mirroring changes the glyph (2, 5, 7).
# Crop padding: 4 as in DARTS for 32x32 images, 2 for 28x28 images (a similar relative shift).
DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(
        name="cifar10",
        tfds_name="cifar10",
        num_classes=10,
        image_shape=(32, 32, 3),
        mean=(0.49139968, 0.48215827, 0.44653124),
        std=(0.24703233, 0.24348505, 0.26158768),
        flip=True,
        crop_padding=4,
        num_examples={"train": 50000, "test": 10000},
        download_url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    ),
    "cifar100": DatasetInfo(
        name="cifar100",
        tfds_name="cifar100",
        num_classes=100,
        image_shape=(32, 32, 3),
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        flip=True,
        crop_padding=4,
        num_examples={"train": 50000, "test": 10000},
        download_url="https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
    ),
    "svhn": DatasetInfo(
        name="svhn",
        tfds_name="svhn_cropped",
        num_classes=10,
        image_shape=(32, 32, 3),
        mean=(0.4377, 0.4438, 0.4728),
        std=(0.1980, 0.2010, 0.1970),
        flip=False,
        crop_padding=4,
        num_examples={"train": 73257, "test": 26032},
        download_url="http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
    ),
    "mnist": DatasetInfo(
        name="mnist",
        tfds_name="mnist",
        num_classes=10,
        image_shape=(28, 28, 1),
        mean=(0.1307,),
        std=(0.3081,),
        flip=False,
        crop_padding=2,
        num_examples={"train": 60000, "test": 10000},
        download_url="https://storage.googleapis.com/cvdf-datasets/mnist/train-images-idx3-ubyte.gz",
        idx_env_var="JNAS_MNIST_DIR",
        install_hint=(
            "or put the four MNIST IDX files (train-images-idx3-ubyte.gz, ...) into a directory "
            "and set JNAS_MNIST_DIR to it"
        ),
    ),
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist",
        tfds_name="fashion_mnist",
        num_classes=10,
        image_shape=(28, 28, 1),
        mean=(0.2860,),
        std=(0.3530,),
        flip=True,
        crop_padding=2,
        num_examples={"train": 60000, "test": 10000},
        download_url=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz"
        ),
        idx_env_var="JNAS_FASHION_MNIST_DIR",
        idx_default_dir="/usr/share/datasets/fashion-mnist",
        install_hint=(
            "or `apt-get install dataset-fashion-mnist` (Debian/Ubuntu; installs the IDX files "
            "into /usr/share/datasets/fashion-mnist), or set JNAS_FASHION_MNIST_DIR to a "
            "directory with the four IDX files (train-images-idx3-ubyte.gz, ...)"
        ),
    ),
}

_ALIASES = {
    "svhn_cropped": "svhn",
    "fashion-mnist": "fashion_mnist",
    "fashionmnist": "fashion_mnist",
}

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# IDX type codes (third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def get_dataset_info(name: str) -> DatasetInfo:
    """Returns the metadata of a data set.

    Args:
      name: A key of :data:`DATASETS` (aliases such as ``"svhn_cropped"`` are accepted).

    Returns:
      The :class:`DatasetInfo`.

    Raises:
      ValueError: For an unknown name; the message lists the known ones.
    """
    key = _ALIASES.get(name, name)
    if key not in DATASETS:
        raise ValueError(f"Unknown data set {name!r}; known data sets: {', '.join(DATASETS)}.")
    return DATASETS[key]


def load_arrays(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Loads a whole split of a data set into memory.

    Args:
      name: Data set name, a key of :data:`DATASETS`.
      split: ``"train"`` or ``"test"``.
      data_dir: For tfds, the tfds data directory (default: ``$TFDS_DATA_DIR`` or
        ``~/tensorflow_datasets``). For IDX, the directory holding the IDX files (default:
        ``$JNAS_FASHION_MNIST_DIR`` / ``$JNAS_MNIST_DIR``, then the distribution package path).
        With ``source="auto"`` it is tried as an IDX directory first, then as tfds data dir.
      source: ``"auto"``, ``"tfds"`` or ``"idx"`` (see the module docstring).
      download: Whether tfds may download and prepare missing data (needs internet).

    Returns:
      ``(images, labels)``: uint8 ``[N, H, W, C]`` (``C == 1`` for the MNISTs) and int32 ``[N]``.

    Raises:
      ValueError: Unknown data set, split or source, or ``"idx"`` for a data set without IDX.
      DatasetNotFoundError: The data are missing locally and could not be downloaded.
      DataFormatError: The data files are corrupt or have unexpected shapes or labels.
    """
    info = get_dataset_info(name)
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r} for {info.name}; expected one of {SPLITS}.")
    if source not in SOURCES:
        raise ValueError(f"Unknown source {source!r}; expected one of {SOURCES}.")
    if source == "idx" and not info.supports_idx:
        raise ValueError(
            f"source='idx' is not available for {info.name}; IDX files exist only for "
            f"{', '.join(n for n, i in DATASETS.items() if i.supports_idx)}. Use 'tfds' or 'auto'."
        )

    idx_dirs: list[str] = []
    if info.supports_idx and source in ("idx", "auto"):
        idx_dirs = _idx_candidate_dirs(info, data_dir, explicit=source == "idx")
        found = _find_idx_dir(idx_dirs, split)
        if found is not None:
            return load_idx_dir(found, split, info=info)
        if source == "idx":
            raise DatasetNotFoundError(_idx_missing_message(info, split, idx_dirs))
    return _load_tfds(info, split, data_dir=data_dir, download=download, idx_dirs=idx_dirs)


# ----------------------------------------------------------------------------------------------
# IDX


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file (gzip-compressed or plain).

    Args:
      path: File path. Compression is detected from the content, not the name.

    Returns:
      The array with the shape and dtype stored in the file (native byte order).

    Raises:
      DataFormatError: Bad gzip stream, bad magic number or a size that does not match the
        header.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise DataFormatError(f"Corrupt IDX file {path}: cannot decompress ({e}).") from e
    if len(data) < 4:
        raise DataFormatError(f"Corrupt IDX file {path}: only {len(data)} bytes.")
    zero0, zero1, type_code, ndim = data[:4]
    if zero0 != 0 or zero1 != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise DataFormatError(
            f"Corrupt IDX file {path}: bad magic number 0x{data[:4].hex()} (expected "
            "0x0000TTDD with type TT in 08,09,0b,0c,0d,0e and DD dimensions)."
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(f"Corrupt IDX file {path}: truncated header.")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = header + math.prod(dims) * dtype.itemsize
    if len(data) != expected:
        raise DataFormatError(
            f"Corrupt IDX file {path}: header says shape {dims} ({expected} bytes) but the file "
            f"has {len(data)} bytes (truncated or wrong file?)."
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def load_idx_dir(
    directory: str | os.PathLike, split: str, *, info: DatasetInfo | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Reads the images and labels of one split from a directory of IDX files.

    Args:
      directory: Directory with ``train-images-idx3-ubyte.gz`` etc. (the ``.gz`` suffix may be
        missing for uncompressed files).
      split: ``"train"`` or ``"test"``.
      info: If given, the image size and label range are checked against it.

    Returns:
      uint8 images ``[N, H, W, 1]`` and int32 labels ``[N]``.

    Raises:
      DatasetNotFoundError: A file is missing.
      DataFormatError: A file is corrupt or the files do not fit together.
    """
    directory = os.fspath(directory)
    paths = [_existing_idx_path(directory, f) for f in _IDX_FILES[split]]
    if None in paths:
        name = info.name if info else "IDX data"
        raise DatasetNotFoundError(
            f"{name} split {split!r}: missing {', '.join(_IDX_FILES[split])} in {directory}."
        )
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataFormatError(
            f"{paths[0]}: expected uint8 images [N, H, W], got {images.dtype} {images.shape}."
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataFormatError(f"{paths[1]}: expected uint8 labels [N], got {labels.shape}.")
    if len(images) != len(labels):
        raise DataFormatError(
            f"{directory}: {len(images)} images but {len(labels)} labels for split {split!r}."
        )
    if info is not None:
        if images.shape[1:] != info.image_shape[:2]:
            raise DataFormatError(
                f"{paths[0]}: images are {images.shape[1:]}, expected {info.image_shape[:2]}."
            )
        if labels.size and labels.max() >= info.num_classes:
            raise DataFormatError(
                f"{paths[1]}: label {labels.max()} out of range [0, {info.num_classes})."
            )
    return images[..., None], labels.astype(np.int32)


def _existing_idx_path(directory: str, filename: str) -> str | None:
    for candidate in (filename, filename.removesuffix(".gz")):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    return None


def _idx_candidate_dirs(info: DatasetInfo, data_dir, *, explicit: bool) -> list[str]:
    if data_dir is not None:
        dirs = [os.fspath(data_dir)]
        if explicit:
            return dirs
    else:
        dirs = []
    env = os.environ.get(info.idx_env_var or "")
    if env:
        dirs.append(env)
    if info.idx_default_dir:
        dirs.append(info.idx_default_dir)
    return dirs


def _find_idx_dir(dirs: Sequence[str], split: str) -> str | None:
    for d in dirs:
        if all(_existing_idx_path(d, f) for f in _IDX_FILES[split]):
            return d
    return None


def _idx_missing_message(info: DatasetInfo, split: str, dirs: Sequence[str]) -> str:
    looked = ", ".join(dirs) if dirs else "(no directory given)"
    return (
        f"Data set {info.name!r}, split {split!r}: IDX files {' and '.join(_IDX_FILES[split])} "
        f"not found; looked in: {looked}. To provide them, pass {_DATA_DIR_FLAG}=DIR with the "
        f"files, {info.install_hint}, or use source='tfds'."
    )


# ----------------------------------------------------------------------------------------------
# tfds


def _tfds_dir(data_dir) -> str:
    if data_dir is not None:
        return os.fspath(data_dir)
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def _load_tfds(
    info: DatasetInfo, split: str, *, data_dir, download: bool, idx_dirs: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow_datasets as tfds  # Imported lazily: slow, and not needed for IDX.

    kwargs = {"split": split, "data_dir": None if data_dir is None else os.fspath(data_dir)}
    try:
        # Prepared data (or tfds.testing.mock_data): never touches the network.
        ds = tfds.data_source(info.tfds_name, download=False, **kwargs)
    except Exception as first_error:
        if not download:
            raise DatasetNotFoundError(
                _tfds_missing_message(info, split, data_dir, idx_dirs, first_error, download)
            ) from first_error
        reachable, why = _download_host_reachable(info.download_url)
        if not reachable:
            raise DatasetNotFoundError(
                _tfds_missing_message(info, split, data_dir, idx_dirs, OSError(why), download)
            ) from first_error
        try:
            ds = tfds.data_source(info.tfds_name, download=True, **kwargs)
        except Exception as e:
            raise DatasetNotFoundError(
                _tfds_missing_message(info, split, data_dir, idx_dirs, e, download)
            ) from e

    n = len(ds)
    images = np.empty((n, *info.image_shape), np.uint8)
    labels = np.empty((n,), np.int32)
    # Index by index: ds.__getitems__ is broken for mocked data sources.
    for i in range(n):
        example = ds[i]
        image = np.asarray(example["image"])
        if image.shape != info.image_shape:
            raise DataFormatError(
                f"tfds {info.tfds_name}/{split} example {i}: image shape {image.shape}, "
                f"expected {info.image_shape}."
            )
        images[i] = image
        labels[i] = int(example["label"])
    if n and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise DataFormatError(
            f"tfds {info.tfds_name}/{split}: labels outside [0, {info.num_classes})."
        )
    return images, labels


def _tfds_missing_message(
    info: DatasetInfo, split: str, data_dir, idx_dirs: Sequence[str], error, download: bool
) -> str:
    cause = f"{type(error).__name__}: {error}".strip()
    if len(cause) > 600:
        cause = cause[:600] + " ..."
    parts = [
        f"Data set {info.name!r} (tfds name {info.tfds_name!r}), split {split!r} is not "
        f"available: it is not prepared in the tfds data directory {_tfds_dir(data_dir)!r}"
        + (" and could not be downloaded." if download else " and download=False.")
    ]
    if idx_dirs:
        parts.append(
            f"No IDX files ({', '.join(_IDX_FILES[split])}) were found in: {', '.join(idx_dirs)}."
        )
    hint = "To provide it, " + _TFDS_INTERNET_HINT.format(name=info.name, split=split)
    if info.install_hint:
        hint += f"; {info.install_hint}"
    parts.append(hint + ".")
    parts.append(f"(Underlying error: {cause})")
    return " ".join(parts)


_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _download_host_reachable(url: str, timeout: float = 10.0) -> tuple[bool, str]:
    """Quick TCP connect to the download host, so an offline machine fails in seconds.

    Args:
      url: A URL the tfds builder downloads from.
      timeout: Seconds allowed for name resolution plus connecting.

    Returns:
      ``(reachable, reason)``; always reachable when a proxy is configured (we cannot tell).
    """
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return True, "proxy configured"
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return _can_connect(host, port, timeout)


def _can_connect(host: str, port: int, timeout: float) -> tuple[bool, str]:
    result: list[tuple[bool, str]] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append((True, "connected"))
        except OSError as e:
            result.append((False, f"no network: cannot connect to {host}:{port} ({e})"))

    # getaddrinfo has no timeout of its own; a daemon thread bounds the whole attempt.
    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    if not result:
        return False, f"no network: connecting to {host}:{port} timed out after {timeout:.0f} s"
    return result[0]
