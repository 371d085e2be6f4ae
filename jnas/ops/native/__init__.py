"""Native CPU kernels (XLA FFI custom calls), compiled on first use.

XLA's CPU backend emits slow code for the per-tap loops of depthwise convolutions (the weight
gradient above all: a column reduction per tap, 5-10x below memory bandwidth). The kernels in
``depthwise.cc`` read each input once. They are C++ built against the XLA FFI headers that ship
with jaxlib, on first use, with the machine's C++ compiler (``g++ -O3 -march=native``), and
cached under ``$JNAS_NATIVE_CACHE`` (default ``~/.cache/jnas/native``), keyed by the source,
the compiler, jaxlib and the CPU's feature flags. Where no compiler is found, the build fails,
or ``JNAS_NATIVE=0`` is set, :func:`available` is False and callers use their pure-XLA path
(same results to float rounding; slower).

Targets (CPU, float32, NHWC; the input already padded by the caller):

* ``jnas_dw_conv``:  ``y[b,o,p,c] = sum_{i,j} xd[b, o*s+i*d, p*s+j*d, c] * w[i,j,c]``
* ``jnas_dw_wgrad``: ``dw[i,j,c] = sum_{b,o,p} xd[b, o*s+i*d, p*s+j*d, c] * dy[b,o,p,c]``
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax
import numpy as np

__all__ = ["available", "build_error", "dw_conv", "dw_wgrad"]

_SRC = Path(__file__).with_name("depthwise.cc")
_TARGETS = {"jnas_dw_conv": "JnasDwConv", "jnas_dw_wgrad": "JnasDwWgrad"}
_error: str | None = None


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _build(cxx: str) -> Path:
    import jaxlib

    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(
        "\0".join([_SRC.read_text(), version, jaxlib.__version__, _cpu_flags()]).encode()
    ).hexdigest()[:16]
    cache = Path(os.environ.get("JNAS_NATIVE_CACHE", Path.home() / ".cache" / "jnas" / "native"))
    lib = cache / f"jnas_depthwise_{key}.so"
    if lib.exists():
        return lib
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        out = Path(tmp) / lib.name
        cmd = [cxx, "-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w"]
        cmd += ["-I", jax.ffi.include_dir(), str(_SRC), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            errors = [ln for ln in proc.stderr.splitlines() if "error" in ln] or [proc.stderr]
            raise RuntimeError(f"{' '.join(cmd)} failed:\n" + "\n".join(errors)[:2000])
        os.replace(out, lib)  # atomic: concurrent builders leave one complete file
    return lib


@functools.cache
def available() -> bool:
    """Whether the native kernels are built and registered (CPU backend only)."""
    global _error
    if os.environ.get("JNAS_NATIVE", "1") == "0":
        _error = "disabled by JNAS_NATIVE=0"
        return False
    cxx = _compiler()
    if cxx is None:
        _error = "no C++ compiler found (set CXX, or install g++)"
        return False
    try:
        lib = ctypes.cdll.LoadLibrary(str(_build(cxx)))
        for target, symbol in _TARGETS.items():
            jax.ffi.register_ffi_target(
                target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu"
            )
    except Exception as e:  # noqa: BLE001 - any failure means: use the XLA path
        _error = f"{type(e).__name__}: {e}"
        logging.warning("jnas: native CPU kernels unavailable, using XLA's (%s)", _error)
        return False
    return True


def build_error() -> str | None:
    """Why :func:`available` is False (None when it is True or not yet asked)."""
    return _error


def dw_conv(xd: jax.Array, w: jax.Array, stride: int, dilation: int) -> jax.Array:
    """Valid, strided, dilated depthwise correlation of the padded input ``xd`` with ``w``."""
    b, hd, wd, c = xd.shape
    kh, kw, _ = w.shape
    ho = (hd - dilation * (kh - 1) - 1) // stride + 1
    wo = (wd - dilation * (kw - 1) - 1) // stride + 1
    call = jax.ffi.ffi_call(
        "jnas_dw_conv",
        jax.ShapeDtypeStruct((b, ho, wo, c), xd.dtype),
        vmap_method="sequential",
    )
    return call(xd, w, stride=np.int64(stride), dilation=np.int64(dilation))


def dw_wgrad(
    xd: jax.Array, dy: jax.Array, kh: int, kw: int, stride: int, dilation: int
) -> jax.Array:
    """``dw[i,j,c] = sum_{b,o,p} xd[b, o*s+i*d, p*s+j*d, c] * dy[b,o,p,c]``."""
    call = jax.ffi.ffi_call(
        "jnas_dw_wgrad",
        jax.ShapeDtypeStruct((kh, kw, xd.shape[-1]), xd.dtype),
        vmap_method="sequential",
    )
    return call(xd, dy, stride=np.int64(stride), dilation=np.int64(dilation))
