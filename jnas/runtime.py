"""Process-level settings for JAX's CPU backend: keep freed memory instead of unmapping it.

XLA's CPU runtime allocates each step's temporary buffers (one slab; about 1 GB for the
8-cell DARTS evaluation network at batch 32) with ``posix_memalign`` from its worker
threads. glibc serves allocations that large from a worker thread with a fresh ``mmap`` and
returns them with ``munmap`` when the step ends, so every step page-faults its whole working
set back in, zero-filled by the kernel: 250,000 page faults and a quarter of the step's CPU
time in the kernel (profiled in BUILD.md). :func:`tune_malloc` therefore tells glibc (via
``mallopt``) to serve every thread from the main heap, never to ``mmap`` large blocks, and
never to give the heap's top back: a freed slab is reused by the next step. This is what
PyTorch's and TensorFlow's caching allocators do; the process keeps its peak memory.

Importing :mod:`jnas` changes nothing: the entry points (``experiments.search``,
``experiments.train``, ``experiments.evaluate``, ``experiments.compare``,
``experiments.tabular`` and the scripts in ``benchmarks/``) call :func:`tune_malloc` first
thing in their ``main``. A library user gets the same by calling
``jnas.runtime.tune_malloc()`` before running any JAX computation: ``mallopt`` must run
before JAX starts its CPU backend (its threads pick their malloc arena on their first
allocation); a later call applies the settings but reports ``"late: ..."``.

Nothing is changed where the C library is not glibc, where ``GLIBC_TUNABLES`` already sets
malloc parameters, or with ``JNAS_MALLOC=0`` (the opt-out, honoured by every entry point).
The same effect for any process, from its start: ``GLIBC_TUNABLES=glibc.malloc.arena_max=1:
glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=18446744073709551615``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys

__all__ = ["malloc_status", "tune_malloc"]

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

_status = "not attempted"


def _jax_backend_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # noqa: BLE001 - a JAX without this private helper: assume not started
        return False


def tune_malloc() -> str:
    """Apply the settings above once; returns (and remembers) what happened: ``"on"``,
    ``"off: <why>"`` or ``"late: <why>"``."""
    global _status
    if _status != "not attempted":
        return _status
    if os.environ.get("JNAS_MALLOC", "1") == "0":
        _status = "off: JNAS_MALLOC=0"
    elif platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        _status = "off: not glibc"
    elif "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        _status = "off: GLIBC_TUNABLES sets malloc parameters"
    else:
        try:
            libc = ctypes.CDLL(None)
            ok = (
                libc.mallopt(_M_ARENA_MAX, 1) == 1
                and libc.mallopt(_M_MMAP_MAX, 0) == 1
                and libc.mallopt(_M_TRIM_THRESHOLD, -1) == 1  # -1: never trim
            )
        except (OSError, AttributeError) as e:
            ok, err = False, e
        else:
            err = "mallopt returned an error"
        if not ok:
            _status = f"off: {err}"
        elif _jax_backend_started():
            _status = "late: JAX's backend had started (call tune_malloc before running JAX)"
            logging.info("jnas: %s; steps may page-fault their temporaries back in", _status)
        else:
            _status = "on"
    return _status


def malloc_status() -> str:
    """``"on"``, why the malloc settings are off or came too late, or ``"not attempted"``
    (nothing called :func:`tune_malloc` in this process)."""
    return _status
