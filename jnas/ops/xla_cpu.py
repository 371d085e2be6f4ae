"""XLA compiler options that make the jnas supernets and networks faster on the CPU backend.

``jax.jit(fn, compiler_options=compiler_options())`` applies them to one function; on other
backends, and where the installed XLA does not know an option, :func:`compiler_options`
returns None (XLA's defaults). The ``xla_cpu_options`` switch of :mod:`jnas.ops.settings`
(``config.runtime.xla_cpu_options``, ``JNAS_XLA_CPU_OPTIONS``) turns them off.

* ``xla_cpu_experimental_ynn_fusion_type``: XLA's default hands single dots, single
  convolutions and reductions to the YNNPACK library. Also fusing a dot with its elementwise
  producers and consumers (``DOT`` instead of ``INDIVIDUAL_DOT``) saves a pass over memory per
  1x1 convolution: measured on the 2-core CPU (``benchmarks/train_step.py``, DARTS_V2, C=36,
  8 cells, batch 32), 1.29 s -> 1.06 s per step; and on the DARTS search step (C=16, 5 cells,
  batch 16, native depthwise kernels) 1.62 s -> 1.39 s. Adding elementwise fusions
  (``ELTWISE``) was 1.8x slower; dropping the reductions 3x slower.

The supernet steps of the one-shot searches take one more (:func:`search_options`):

* ``xla_backend_optimization_level=1``: LLVM optimises XLA's generated kernels at ``-O1``
  instead of ``-O2``. In these steps the time is in YNNPACK and the native kernels, not in
  XLA's own loops, so the step keeps its speed while XLA compiles it faster
  (``benchmarks/options_ab.py``: the step traced once, compiled both ways in one process,
  the two timed in turn; 2-core CPU, 2026-12-07; C=16, batch 16):

  ======================================  =====================  ======================
  step                                    XLA compile            step (median)
  ======================================  =====================  ======================
  DARTS first order, 8 cells              203.0 -> 181.6 s       2.124 -> 2.162 s
  GDAS, 8 cells                           182.3 -> 169.8 s       1.021 -> 1.031 s
  DARTS first order, 3 cells (3 each)     56-60 -> 41-53 s
  ======================================  =====================  ======================

  The fastest DARTS steps were 2.024 s and 1.992 s; GDAS's steps vary with the sampled
  architecture (fastest 0.687 s and 0.706 s; timed after one untimed round, before GDAS's
  steps reach their steady speed). The retraining step gains nothing from it
  (``--step=train --layers=20 --C=36 --batch=32``: XLA compile 48.4 -> 51.0 s, step 1.818 ->
  1.847 s), so its steps keep ``-O2``.
"""

from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp

from jnas.ops import settings

__all__ = ["compiler_options", "cpu_options", "options_known", "search_options"]

_CPU_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": ",".join(
        "LIBRARY_FUSION_TYPE_" + t for t in ("DOT", "REDUCE", "INDIVIDUAL_CONVOLUTION")
    ),
}


_SEARCH_OPTIONS = {"xla_backend_optimization_level": 1}


def options_known(options: dict, what: str) -> bool:
    """Whether the installed XLA compiles a program with ``options`` (on the default
    backend); logs ``what`` as not applied where it does not."""
    return _options_known(tuple(sorted(options.items())), what)


@functools.cache
def _options_known(items: tuple, what: str) -> bool:
    try:
        jax.jit(lambda x: x @ x, compiler_options=dict(items)).lower(jnp.ones((2, 2))).compile()
    except Exception as e:  # noqa: BLE001 - an XLA that does not know the option
        logging.warning("jnas: %s not applied (%s)", what, e)
        return False
    return True


def cpu_options() -> dict[str, str] | None:
    """The options, where the installed XLA knows them (None otherwise), whatever the switch
    and the backend."""
    return dict(_CPU_OPTIONS) if options_known(_CPU_OPTIONS, "XLA CPU options") else None


def search_options() -> dict | None:
    """:func:`cpu_options` with the supernet steps' one (None where XLA does not know them)."""
    options = cpu_options()
    if options is None or not options_known(_SEARCH_OPTIONS, "XLA CPU search options"):
        return options
    return {**options, **_SEARCH_OPTIONS}


def compiler_options() -> dict[str, str] | None:
    """The options for ``jax.jit(..., compiler_options=...)`` on this backend, or None."""
    if settings.requested().xla_cpu_options is False or jax.default_backend() != "cpu":
        return None
    return cpu_options()
