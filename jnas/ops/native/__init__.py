"""Native CPU kernels (XLA FFI custom calls), compiled on first use.

XLA's CPU backend emits slow code for the per-tap loops of depthwise convolutions (the weight
gradient above all: a column reduction per tap, 5-10x below memory bandwidth), for batch
norm's per-channel broadcasts and reductions (about a fifth of memory bandwidth) and for the
weight gradient of 1x1 convolutions (a transposing copy, then Eigen). The kernels in
``depthwise.cc``, ``batchnorm.cc`` and ``pointwise.cc`` read each input once per pass. They
are C++ built against the XLA FFI headers that ship with jaxlib, on first use, with the
machine's C++ compiler (``g++ -O3 -march=native``), and cached under ``$JNAS_NATIVE_CACHE``
(default ``~/.cache/jnas/native``), keyed by the source, the compiler, jaxlib and the CPU's
feature flags. Where no compiler is found, the build fails, or the ``native`` switch of
:mod:`jnas.ops.settings` is off (``config.runtime.native=False``, ``JNAS_NATIVE=0``),
:func:`available` is False and callers use their pure-XLA path (same results to float
rounding; slower).

Depthwise targets (CPU, float32, NHWC; ``xd`` is the input zero-padded by (top, left) =
(pt, pl) attributes, read in place, and as far below and right as the output's size needs):

* ``jnas_dw_conv``:  ``y[b,o,p,c] = sum_{i,j} xd[b, o*s+i*d, p*s+j*d, c] * w[i,j,c]``
* ``jnas_dw_wgrad``: ``dw[i,j,c] = sum_{b,o,p} xd[b, o*s+i*d, p*s+j*d, c] * dy[b,o,p,c]``

Batch-norm targets (CPU, float32, channels last; per-channel means over all other axes of one
instance, see :mod:`jnas.ops.batchnorm`):

* ``jnas_bn_stats``: ``x -> (E x, E x^2)``
* ``jnas_bn_dsums``: ``(u, x) -> (E u, E u*x)``
* ``jnas_bn_affine``: ``(x, a, b) -> a*x + b``
* ``jnas_bn_affine2``: ``(u, v, p, q, r) -> p*u + q*v + r``

Pointwise (1x1) convolution target (``pointwise.cc``; float32, channels last):

* ``jnas_pw_wgrad``: ``(x [..., ci], dy [..., co]) -> dw[i, o] = sum_m x[m, i] dy[m, o]``
  over all leading positions ``m`` (``max(x, 0)`` with ``relu``)
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

__all__ = [
    "available",
    "build",
    "bn_affine",
    "bn_affine2",
    "bn_dsums",
    "bn_stats",
    "build_error",
    "dw_conv",
    "dw_wgrad",
    "pw_wgrad",
]

_SRCS = tuple(Path(__file__).with_name(f) for f in ("depthwise.cc", "batchnorm.cc", "pointwise.cc"))
_HEADERS = (Path(__file__).with_name("parallel.h"),)
_TARGETS = {
    "jnas_dw_conv": "JnasDwConv",
    "jnas_dw_wgrad": "JnasDwWgrad",
    "jnas_bn_stats": "JnasBnStats",
    "jnas_bn_dsums": "JnasBnDsums",
    "jnas_bn_affine": "JnasBnAffine",
    "jnas_bn_affine2": "JnasBnAffine2",
    "jnas_pw_wgrad": "JnasPwWgrad",
}
_error: str | None = None  # why available() last said False
_build_error: str | None = None  # why build() failed


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
        "\0".join(
            [
                *(src.read_text() for src in _SRCS + _HEADERS),
                version,
                jaxlib.__version__,
                _cpu_flags(),
            ]
        ).encode()
    ).hexdigest()[:16]
    cache = Path(os.environ.get("JNAS_NATIVE_CACHE", Path.home() / ".cache" / "jnas" / "native"))
    lib = cache / f"jnas_native_{key}.so"
    if lib.exists():
        return lib
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        out = Path(tmp) / lib.name
        cmd = [cxx, "-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w"]
        cmd += ["-I", jax.ffi.include_dir(), *map(str, _SRCS), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            errors = [ln for ln in proc.stderr.splitlines() if "error" in ln] or [proc.stderr]
            raise RuntimeError(f"{' '.join(cmd)} failed:\n" + "\n".join(errors)[:2000])
        os.replace(out, lib)  # atomic: concurrent builders leave one complete file
    return lib


@functools.cache
def build() -> bool:
    """Build (or load from the cache) and register the kernels once per process; whether
    that worked (CPU backend only). :func:`available` is what callers ask."""
    global _build_error
    cxx = _compiler()
    if cxx is None:
        _build_error = "no C++ compiler found (set CXX, or install g++)"
        return False
    try:
        lib = ctypes.cdll.LoadLibrary(str(_build(cxx)))
        for target, symbol in _TARGETS.items():
            jax.ffi.register_ffi_target(
                target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu"
            )
    except Exception as e:  # noqa: BLE001 - any failure means: use the XLA path
        _build_error = f"{type(e).__name__}: {e}"
        logging.warning("jnas: native CPU kernels unavailable, using XLA's (%s)", _build_error)
        return False
    _build_error = None
    return True


def available() -> bool:
    """Whether the native kernels are switched on (:mod:`jnas.ops.settings`) and built."""
    global _error
    from jnas.ops import settings

    req = settings.requested()
    if req.native is False:
        _error = f"turned off by {req.where('native')}"
        return False
    ok = build()
    _error = None if ok else _build_error
    return ok


def build_error() -> str | None:
    """Why :func:`available` is False (None when it is True or not yet asked)."""
    return _error


def dw_conv(
    x: jax.Array,
    w: jax.Array,
    stride: int,
    dilation: int,
    pad: tuple[int, int] = (0, 0),
    out_hw: tuple[int, int] | None = None,
    relu: bool = False,
) -> jax.Array:
    """Strided, dilated depthwise correlation of ``x`` zero-padded by ``pad`` = (top, left).

    ``out_hw`` (default: no padding below and right) sets the output's size and so the
    bottom and right padding; negative padding crops. ``relu``: correlate ``max(x, 0)``.
    """
    b, h, wd, c = x.shape
    kh, kw, _ = w.shape
    if out_hw is None:
        out_hw = (
            (h + pad[0] - dilation * (kh - 1) - 1) // stride + 1,
            (wd + pad[1] - dilation * (kw - 1) - 1) // stride + 1,
        )
    call = jax.ffi.ffi_call(
        "jnas_dw_conv",
        jax.ShapeDtypeStruct((b, *out_hw, c), x.dtype),
        vmap_method="sequential",
    )
    return call(
        x,
        w,
        stride=np.int64(stride),
        dilation=np.int64(dilation),
        pad_top=np.int64(pad[0]),
        pad_left=np.int64(pad[1]),
        relu=np.int64(relu),
    )


def dw_wgrad(
    x: jax.Array,
    dy: jax.Array,
    kh: int,
    kw: int,
    stride: int,
    dilation: int,
    pad: tuple[int, int] = (0, 0),
    relu: bool = False,
) -> jax.Array:
    """``dw[i,j,c] = sum_{b,o,p} xp[b, o*s+i*d, p*s+j*d, c] * dy[b,o,p,c]``, ``xp`` = ``x``
    (``max(x, 0)`` with ``relu``) zero-padded by ``pad`` = (top, left)."""
    call = jax.ffi.ffi_call(
        "jnas_dw_wgrad",
        jax.ShapeDtypeStruct((kh, kw, x.shape[-1]), x.dtype),
        vmap_method="sequential",
    )
    return call(
        x,
        dy,
        stride=np.int64(stride),
        dilation=np.int64(dilation),
        pad_top=np.int64(pad[0]),
        pad_left=np.int64(pad[1]),
        relu=np.int64(relu),
    )


def _per_channel(x: jax.Array, n: int = 1):
    shape = jax.ShapeDtypeStruct(x.shape[-1:], x.dtype)
    return shape if n == 1 else (shape,) * n


# The kernels treat axes before the instance's ``rank`` trailing axes (added by vmap) as
# independent groups, so a vmapped call is one kernel call over all groups ("broadcast_all":
# every operand gets the batch axis).


def bn_stats(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-channel ``(mean(x), mean(x**2))`` over all axes but the last."""
    call = jax.ffi.ffi_call("jnas_bn_stats", _per_channel(x, 2), vmap_method="broadcast_all")
    return call(x, rank=np.int64(x.ndim))


def bn_dsums(u: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-channel ``(mean(u), mean(u * x))`` over all axes but the last."""
    call = jax.ffi.ffi_call("jnas_bn_dsums", _per_channel(u, 2), vmap_method="broadcast_all")
    return call(u, x, rank=np.int64(u.ndim))


def bn_affine(x: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    """``a * x + b`` with per-channel ``a`` and ``b`` (shape ``[C]``)."""
    call = jax.ffi.ffi_call(
        "jnas_bn_affine", jax.ShapeDtypeStruct(x.shape, x.dtype), vmap_method="broadcast_all"
    )
    return call(x, a, b, rank=np.int64(x.ndim))


def bn_affine2(u, v, p, q, r) -> jax.Array:
    """``p * u + q * v + r`` with per-channel ``p``, ``q`` and ``r`` (shape ``[C]``)."""
    call = jax.ffi.ffi_call(
        "jnas_bn_affine2", jax.ShapeDtypeStruct(u.shape, u.dtype), vmap_method="broadcast_all"
    )
    return call(u, v, p, q, r, rank=np.int64(u.ndim))


def pw_wgrad(x: jax.Array, dy: jax.Array, relu: bool = False) -> jax.Array:
    """``dw[i, o] = sum_m xr[m, i] * dy[m, o]`` over all leading positions ``m`` of ``x``
    ``[..., ci]`` and ``dy`` ``[..., co]``; ``xr`` = ``x`` (``max(x, 0)`` with ``relu``)."""
    call = jax.ffi.ffi_call(
        "jnas_pw_wgrad",
        jax.ShapeDtypeStruct((x.shape[-1], dy.shape[-1]), x.dtype),
        vmap_method="broadcast_all",  # one call over all vmapped instances (groups)
    )
    return call(x, dy, rank=np.int64(x.ndim), relu=np.int64(relu))
