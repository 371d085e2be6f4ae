"""Tests for jnas.data.sources: tfds (mocked), IDX files, registry and error messages."""

import dataclasses
import gzip
import os
import socket
import struct
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jnas.data import sources
from jnas.data.sources import (
    DATASETS,
    DataFormatError,
    DatasetNotFoundError,
    get_dataset_info,
    load_arrays,
    read_idx,
)

DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"


# ----------------------------------------------------------------------------------------------
# Helpers


def _idx_bytes(array: np.ndarray) -> bytes:
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def _write_idx(path, array: np.ndarray, compress: bool = True) -> None:
    data = _idx_bytes(array)
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if compress else data)


def _write_idx_split(directory, split: str, n: int, seed: int = 0, compress: bool = True):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, (n,), dtype=np.uint8)
    prefix = "train" if split == "train" else "t10k"
    suffix = ".gz" if compress else ""
    _write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte{suffix}"), images, compress)
    _write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte{suffix}"), labels, compress)
    return images, labels


@pytest.fixture
def no_fashion_defaults(monkeypatch, tmp_path):
    """Hides the environment variable and Debian directory for Fashion-MNIST."""
    monkeypatch.delenv("JNAS_FASHION_MNIST_DIR", raising=False)
    info = dataclasses.replace(
        DATASETS["fashion_mnist"], idx_default_dir=str(tmp_path / "no-debian-here")
    )
    monkeypatch.setitem(DATASETS, "fashion_mnist", info)
    return info


@pytest.fixture
def offline(monkeypatch):
    """Makes every network connection attempt fail immediately."""

    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "network disabled by test")

    for var in sources._PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", fail)
    monkeypatch.setattr(socket, "create_connection", fail)


# ----------------------------------------------------------------------------------------------
# Registry


def test_registry_metadata():
    assert set(DATASETS) == {"cifar10", "cifar100", "svhn", "mnist", "fashion_mnist"}
    for name, info in DATASETS.items():
        assert info.name == name
        channels = info.image_shape[-1]
        assert len(info.mean) == len(info.std) == channels
        assert all(0 < m < 1 for m in info.mean) and all(0 < s < 1 for s in info.std)
    assert DATASETS["cifar10"].mean == (0.49139968, 0.48215827, 0.44653124)
    assert DATASETS["cifar10"].std == (0.24703233, 0.24348505, 0.26158768)
    assert DATASETS["cifar100"].num_classes == 100
    assert DATASETS["svhn"].tfds_name == "svhn_cropped"
    assert DATASETS["mnist"].image_shape == (28, 28, 1)
    assert DATASETS["cifar10"].flip and DATASETS["fashion_mnist"].flip
    assert not DATASETS["svhn"].flip and not DATASETS["mnist"].flip


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(ValueError, match="cifar10.*svhn.*fashion_mnist"):
        get_dataset_info("imagenet")
    with pytest.raises(ValueError, match="Unknown data set 'imagenet'"):
        load_arrays("imagenet", "train")


def test_alias_and_bad_arguments():
    assert get_dataset_info("svhn_cropped") is DATASETS["svhn"]
    with pytest.raises(ValueError, match="split"):
        load_arrays("cifar10", "validation")
    with pytest.raises(ValueError, match="source"):
        load_arrays("cifar10", "train", source="hdf5")
    with pytest.raises(ValueError, match="idx"):
        load_arrays("cifar10", "train", source="idx")


# ----------------------------------------------------------------------------------------------
# tfds (mocked)


@pytest.mark.parametrize("name", ["cifar10", "svhn", "cifar100", "mnist", "fashion_mnist"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_tfds_mock(name, split, tmp_path):
    info = DATASETS[name]
    with tfds.testing.mock_data(num_examples=7):
        images, labels = load_arrays(name, split, data_dir=str(tmp_path), source="tfds")
    assert images.shape == (7, *info.image_shape)
    assert images.dtype == np.uint8
    assert labels.shape == (7,)
    assert labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < info.num_classes
    assert images.std() > 0  # Not all zeros: examples really were read.


def test_tfds_mock_auto_uses_tfds_for_cifar(tmp_path):
    with tfds.testing.mock_data(num_examples=3):
        images, labels = load_arrays("cifar10", "train", data_dir=tmp_path)
    assert images.shape == (3, 32, 32, 3) and labels.shape == (3,)


# ----------------------------------------------------------------------------------------------
# IDX


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_roundtrip(tmp_path, compress):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    _write_idx(path, array, compress=compress)
    out = read_idx(path)
    np.testing.assert_array_equal(out, array)
    assert out.dtype == np.uint8


def test_read_idx_big_endian_int32(tmp_path):
    array = np.array([[1, -2], [70000, 3]], dtype=">i4")
    data = bytes([0, 0, 0x0C, 2]) + struct.pack(">2I", 2, 2) + array.tobytes()
    (tmp_path / "x.idx").write_bytes(data)
    out = read_idx(tmp_path / "x.idx")
    np.testing.assert_array_equal(out, array.astype(np.int32))


def test_read_idx_corrupt_files(tmp_path):
    good = _idx_bytes(np.zeros((2, 4, 4), np.uint8))
    cases = {
        "bad_magic": b"\x12\x34" + good[2:],
        "bad_type": good[:2] + b"\x07" + good[3:],
        "truncated": good[:-5],
        "too_long": good + b"\x00",
        "tiny": b"\x00\x00",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(gzip.compress(data))
        with pytest.raises(DataFormatError, match="Corrupt IDX"):
            read_idx(tmp_path / name)
    (tmp_path / "bad_gzip").write_bytes(gzip.compress(good)[:30])
    with pytest.raises(DataFormatError, match="decompress"):
        read_idx(tmp_path / "bad_gzip")


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_idx_from_data_dir(tmp_path, split):
    images, labels = _write_idx_split(tmp_path, split, n=5)
    out_images, out_labels = load_arrays("fashion_mnist", split, data_dir=tmp_path, source="idx")
    assert out_images.shape == (5, 28, 28, 1) and out_images.dtype == np.uint8
    assert out_labels.dtype == np.int32
    np.testing.assert_array_equal(out_images[..., 0], images)
    np.testing.assert_array_equal(out_labels, labels)


def test_load_idx_uncompressed_and_mnist(tmp_path):
    images, labels = _write_idx_split(tmp_path, "test", n=4, compress=False)
    out_images, out_labels = load_arrays("mnist", "test", data_dir=tmp_path, source="idx")
    np.testing.assert_array_equal(out_images[..., 0], images)
    np.testing.assert_array_equal(out_labels, labels)


def test_idx_env_var(tmp_path, monkeypatch, no_fashion_defaults):
    images, _ = _write_idx_split(tmp_path, "train", n=3)
    monkeypatch.setenv("JNAS_FASHION_MNIST_DIR", str(tmp_path))
    out_images, _ = load_arrays("fashion_mnist", "train", source="idx")
    np.testing.assert_array_equal(out_images[..., 0], images)


def test_auto_prefers_idx_for_fashion_mnist(tmp_path, no_fashion_defaults):
    images, _ = _write_idx_split(tmp_path, "train", n=6)
    with tfds.testing.mock_data(num_examples=2):
        out_images, _ = load_arrays("fashion_mnist", "train", data_dir=tmp_path)
    assert len(out_images) == 6  # From the IDX files, not the 2 mocked tfds examples.
    np.testing.assert_array_equal(out_images[..., 0], images)


def test_auto_falls_back_to_tfds_for_fashion_mnist(tmp_path, no_fashion_defaults):
    with tfds.testing.mock_data(num_examples=2):
        images, labels = load_arrays("fashion_mnist", "test", data_dir=tmp_path)
    assert images.shape == (2, 28, 28, 1) and labels.shape == (2,)


def test_idx_mismatched_files(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros((4,), np.uint8))
    with pytest.raises(DataFormatError, match="3 images but 4 labels"):
        load_arrays("fashion_mnist", "train", data_dir=tmp_path, source="idx")
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((4, 32, 32), np.uint8))
    with pytest.raises(DataFormatError, match="expected"):
        load_arrays("fashion_mnist", "train", data_dir=tmp_path, source="idx")
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((4, 28, 28), np.uint8))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full((4,), 10, np.uint8))
    with pytest.raises(DataFormatError, match="out of range"):
        load_arrays("fashion_mnist", "train", data_dir=tmp_path, source="idx")


@pytest.mark.skipif(
    not os.path.isfile(os.path.join(DEBIAN_FASHION_DIR, "train-images-idx3-ubyte.gz")),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_real_debian_fashion_mnist():
    info = DATASETS["fashion_mnist"]
    for split, n in (("train", 60000), ("test", 10000)):
        images, labels = load_arrays("fashion_mnist", split, source="idx")
        assert images.shape == (n, 28, 28, 1) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int32
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, n // 10))
        if split == "train":
            x = images.astype(np.float64) / 255.0
            assert abs(x.mean() - info.mean[0]) < 1e-3
            assert abs(x.std() - info.std[0]) < 1e-3


# ----------------------------------------------------------------------------------------------
# Missing data


def test_missing_tfds_no_download(tmp_path):
    start = time.monotonic()
    with pytest.raises(DatasetNotFoundError) as excinfo:
        load_arrays("cifar10", "train", data_dir=tmp_path, download=False)
    assert time.monotonic() - start < 30
    assert isinstance(excinfo.value, FileNotFoundError)
    message = str(excinfo.value)
    for fragment in ("'cifar10'", "'train'", str(tmp_path), "internet", "--config.data.data_dir"):
        assert fragment in message


def test_missing_tfds_offline_fails_fast(tmp_path, offline):
    start = time.monotonic()
    with pytest.raises(DatasetNotFoundError) as excinfo:
        load_arrays("svhn", "test", data_dir=tmp_path)
    assert time.monotonic() - start < 30
    message = str(excinfo.value)
    for fragment in ("'svhn'", "svhn_cropped", "'test'", str(tmp_path), "no network"):
        assert fragment in message


def test_failed_download_is_wrapped(tmp_path, monkeypatch):
    def broken_download(self, *args, **kwargs):
        raise ConnectionError("simulated download failure")

    monkeypatch.setattr(sources, "_can_connect", lambda host, port, timeout: (True, "ok"))
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", broken_download)
    with pytest.raises(DatasetNotFoundError, match="simulated download failure") as excinfo:
        load_arrays("cifar100", "train", data_dir=tmp_path)
    assert isinstance(excinfo.value.__cause__, ConnectionError)


def test_missing_fashion_mnist_mentions_apt(tmp_path, no_fashion_defaults, offline):
    with pytest.raises(DatasetNotFoundError) as excinfo:
        load_arrays("fashion_mnist", "train", data_dir=tmp_path)
    message = str(excinfo.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(tmp_path) in message and no_fashion_defaults.idx_default_dir in message
    assert "train-images-idx3-ubyte.gz" in message


def test_missing_idx_explicit_source(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="looked in: " + str(tmp_path)):
        load_arrays("fashion_mnist", "test", data_dir=tmp_path, source="idx")
