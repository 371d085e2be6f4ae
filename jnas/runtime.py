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

One more setting needs the process's start: glibc's per-thread cache (tcache) off. XLA asks
for its slab with 64-byte alignment; glibc 2.36's ``memalign`` takes the slab plus the
alignment's worth from the heap and frees the spare bytes at its end. When that spare chunk
lands in the worker thread's tcache, it stays allocated between the slab and the heap's
free top, so the freed slab cannot merge with the top, and the next step's request (again
the slab plus the alignment's worth) does not fit in it: the heap grows by a whole slab,
resident from then on (the 3-cell search step at batch 64: 4.1 -> 6.6 GB in the first 16
steps; ``tests/scripts/memalign_reuse.py`` shows it in a few lines). ``mallopt`` cannot turn
the tcache off, only the ``GLIBC_TUNABLES`` environment variable read at start-up can, so
:func:`relaunch` (called by :func:`jnas.cli.run` for every ``experiments/*.py`` command
and by the scripts in ``benchmarks/``) executes the same command line again, in the same
process (``os.execve``), with :data:`TUNABLES`. It costs about a tenth more compile time
(small allocations lose their per-thread cache) and no step time (BUILD.md).

Nothing is changed where the C library is not glibc, where ``GLIBC_TUNABLES`` already sets
malloc parameters, or with ``JNAS_MALLOC=0`` (the opt-out, honoured by every entry point).
The same effect for any process, from its start: ``GLIBC_TUNABLES=`` :data:`TUNABLES`.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys

__all__ = ["TUNABLES", "malloc_status", "relaunch", "tune_malloc"]

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

_status = "not attempted"

#: :func:`tune_malloc`'s settings plus the tcache off, as glibc tunables read at start-up.
TUNABLES = (
    "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:"
    "glibc.malloc.trim_threshold=18446744073709551615:glibc.malloc.tcache_count=0"
)
_RELAUNCHED = "JNAS_MALLOC_RELAUNCHED"  # set for the relaunched process: never twice


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
    off = _off_reason()
    if off:
        _status = f"off: {off}"
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


def _off_reason() -> str:
    """Why jnas leaves malloc alone in this process ('' where it does not)."""
    if os.environ.get("JNAS_MALLOC", "1") == "0":
        return "JNAS_MALLOC=0"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "not glibc"
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "malloc" in tunables and TUNABLES not in tunables:
        return "GLIBC_TUNABLES sets malloc parameters"
    return ""


def relaunch() -> None:
    """Execute this process's command line again with :data:`TUNABLES` added to
    ``GLIBC_TUNABLES`` (``os.execve``: same process id, stdin and stdout). For a program's
    ``__main__``, first thing, before JAX runs: whatever the process did before is lost.

    Returns without doing anything where :func:`tune_malloc` would change nothing (see the
    module docstring), where ``GLIBC_TUNABLES`` already holds the settings, in the
    relaunched process itself, where JAX's backend has started, or where the command line
    cannot run again (an interactive interpreter, a program read from stdin)."""
    if os.environ.pop(_RELAUNCHED, None):  # popped: the process's own children may relaunch
        return
    if _off_reason() or TUNABLES in os.environ.get("GLIBC_TUNABLES", "") or _jax_backend_started():
        return
    argv = list(getattr(sys, "orig_argv", []) or [])
    if not argv or not sys.executable or sys.argv[:1] in ([], [""], ["-"]):
        return  # no command line, or a program read from stdin (consumed) or interactive
    env = dict(os.environ, **{_RELAUNCHED: "1"})
    env["GLIBC_TUNABLES"] = ":".join(t for t in (env.get("GLIBC_TUNABLES"), TUNABLES) if t)
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    os.execve(sys.executable, argv, env)


def malloc_status() -> str:
    """``"on"``, why the malloc settings are off or came too late, or ``"not attempted"``
    (nothing called :func:`tune_malloc` in this process)."""
    return _status
