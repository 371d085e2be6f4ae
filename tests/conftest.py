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


@pytest.fixture
def repo_root() -> str:
    return REPO
