"""Shared test set-up: a persistent XLA compilation cache, so identical programs (the same
tiny supernet compiled by several tests and subprocesses) compile once per session."""

import os
import tempfile

import pytest

CACHE_DIR = os.environ.setdefault(
    "JNAS_COMPILATION_CACHE", os.path.join(tempfile.gettempdir(), "jnas-test-xla-cache")
)

from jnas.runner import setup_jax  # noqa: E402

setup_jax(CACHE_DIR)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The directories whose files cost the most (whole tiny searches, kills, subprocesses), run
# first: with two xdist workers taking whole files in this order (scripts/test.sh), the long
# files start early and the short ones fill in at the end.
FIRST = ("tests/runner/", "tests/strategies/", "notebooks/", "tests/spaces/", "tests/ops/")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return next((i for i, p in enumerate(FIRST) if path.startswith(p)), len(FIRST))

    items.sort(key=rank)  # stable: the order within a directory stays pytest's


@pytest.fixture
def repo_root() -> str:
    return REPO


SCRIPTS = os.path.join(REPO, "tests", "scripts")


@pytest.fixture
def run_script(repo_root):
    """``run_script(name, *args, devices=None, env=None, timeout=300)``: run the script
    ``tests/scripts/<name>`` with ``args`` in a fresh process (with ``devices`` host CPU
    devices), from the repository root, and return the JSON it printed after ``RESULT``; a
    failing script fails the test with its stderr."""
    import json
    import subprocess
    import sys

    def run(name: str, *args, devices=None, env: dict | None = None, timeout: int = 300):
        full_env = dict(os.environ, **(env or {}))
        if devices is not None:
            full_env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        path = os.path.join(SCRIPTS, name)
        assert os.path.isfile(path), f"no test script {path}"
        proc = subprocess.run(
            [sys.executable, path, *map(str, args)],
            cwd=repo_root,
            env=dict(full_env, PYTHONPATH=repo_root),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.split("RESULT", 1)[1])

    return run


def write_idx_dataset(directory: str, n_train: int = 512, n_test: int = 256, seed: int = 0):
    """Write a small, learnable Fashion-MNIST look-alike as gzipped IDX files.

    Class k is a bright 8x8 square at one of 10 positions, plus noise.
    """
    import gzip

    import numpy as np

    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            r, c = 2 + 4 * (k // 5) * 3, 2 + 5 * (k % 5)
            images[i, r : r + 8, c : c + 8] = 220
        with gzip.open(os.path.join(directory, f"{split}-images-idx3-ubyte.gz"), "wb") as f:
            f.write(np.array([0x803, n, 28, 28], ">i4").tobytes() + images.tobytes())
        with gzip.open(os.path.join(directory, f"{split}-labels-idx1-ubyte.gz"), "wb") as f:
            f.write(np.array([0x801, n], ">i4").tobytes() + labels.tobytes())
    return directory


@pytest.fixture(scope="session")
def fake_fmnist_dir(tmp_path_factory) -> str:
    return write_idx_dataset(str(tmp_path_factory.mktemp("fmnist")))
