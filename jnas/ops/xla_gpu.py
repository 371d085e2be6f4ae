"""XLA GPU compiler options that the jnas steps need on the GPU backend.

``xla_gpu_enable_triton_gemm=false``: XLA's GPU compiler (jax 0.11.2 on an H100) aborted
compiling the DARTS search step in its Triton GEMM emitter
(``triton_tiling_propagation.cc: Check failed: subdim_size_accumulator == dim_size``);
without Triton GEMMs XLA calls cuBLAS for the matrix products and the step compiles. jnas
passes the option to the ``jax.jit`` of its steps (``Resolved.xla_options``), so a run needs
no ``XLA_FLAGS``. The ``xla_gpu_options`` switch of :mod:`jnas.ops.settings`
(``config.runtime.xla_gpu_options``, ``JNAS_XLA_GPU_OPTIONS``) turns it off, e.g. to measure
whether a newer XLA still needs it.
"""

from __future__ import annotations

from jnas.ops.xla_cpu import options_known

__all__ = ["gpu_options"]

_GPU_OPTIONS = {"xla_gpu_enable_triton_gemm": False}


def gpu_options() -> dict[str, bool] | None:
    """The options, where the installed XLA knows them (None otherwise), whatever the switch
    and the backend."""
    return dict(_GPU_OPTIONS) if options_known(_GPU_OPTIONS, "XLA GPU options") else None
