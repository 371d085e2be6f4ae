"""Achieved FLOP/s of a compiled step, shared by the step benchmarks."""

from __future__ import annotations


def compiled_flops(compiled) -> float | None:
    """The compiled program's FLOPs by XLA's cost model (None where the backend gives none).
    Custom calls are not counted: on the CPU the native kernels' work is missing, so the
    figure is for accelerators."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list):  # older jax: one dict per program
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def flops_fields(flops: float | None, step_s: float, peak_tflops: float | None) -> dict:
    """A row's ``step_gflop``, ``tflops_per_s`` and ``peak_pct`` (the achieved rate as a
    percentage of ``peak_tflops``, the device's data-sheet peak at the step's dtype)."""
    rate = None if flops is None else flops / step_s / 1e12
    return {
        "step_gflop": None if flops is None else round(flops / 1e9, 1),
        "tflops_per_s": None if rate is None else round(rate, 3),
        "peak_pct": None if rate is None or not peak_tflops else round(100 * rate / peak_tflops, 1),
    }


def describe(row: dict) -> str:
    """``", 12.3 TFLOP/s (45.6 % of peak)"`` for a printed row, or ``""``."""
    if row.get("tflops_per_s") is None:
        return ""
    pct = f" ({row['peak_pct']:.1f} % of peak)" if row.get("peak_pct") is not None else ""
    return f", {row['tflops_per_s']:.3g} TFLOP/s{pct}"
