r"""Time one search step of the paper's search network, per method, order and batch.

  python benchmarks/search_step.py                       # DARTS, orders 1 and 2, batch 16, 64
  python benchmarks/search_step.py --order=1 --batch=64  # one row
  python benchmarks/search_step.py --method=gdas --order=1 --batch=64 --json=out.json
  python benchmarks/search_step.py --method=darts,gdas,pcdarts,pdarts --order=1 --batch=64

``--method`` is a registered gradient strategy (``darts``, ``gdas``, ``pcdarts``, ``pdarts``:
its first stage, 8 ops, ``snas``, ... any module that registers one), a comma-separated list
of them, or ``all``; each method runs with the config its registration names (its CIFAR-10
config when it has one, else its first: GDAS's sampled edges, PC-DARTS's K=4 and edge
normalization, P-DARTS's skip dropout) on the same network, batch and order, and every JSON
row names its ``method``. The timed step is always a full one: warm-ups (PC-DARTS, P-DARTS)
are turned off. Strategies without a second order (GDAS, SNAS) get first-order rows only.

The network is the DARTS CIFAR-10 search network (C=16, 8 cells, 4 nodes, 32x32x3 inputs,
10 classes) unless --C/--layers/--size say otherwise. Each row runs in a fresh subprocess, so
that its compile time and peak memory are its own: ``compile_s`` is tracing, compiling and
the first run of the step, ``step_s_median`` the median of ``--steps`` further runs,
``peak_mem_mb`` the device's peak bytes in use where the backend reports it (GPU/TPU),
else the process's peak resident memory (CPU, compilation included), ``xla_mem_mb`` the
buffers of the compiled step as XLA plans them (arguments, outputs and temporaries, less
donated ones; the comparable figure on a CPU). Order 2 is the paper's finite-difference
second order (``--hypergradient=exact`` for the autodiff variant). The step is compiled
ahead of time and then called with the same shapes, so it cannot recompile (a call that
would recompile fails). ``--cost`` lowers the step without compiling it and prints XLA's
cost model of it instead (StableHLO ops, flops, bytes accessed): seconds per row, and the
same three figures for two versions of the code mean the same compiled step.

Reference (PERF.md; official PyTorch DARTS on this 2-core CPU): 27.7 s (order 1) and 58.6 s
(order 2) per step at batch 64; 6.1 s / 19.5 s at batch 16. Target: at most half.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

KEYS = (
    "method",
    "order",
    "batch",
    "step_s_median",
    "compile_s",
    "peak_mem_mb",
    "xla_mem_mb",
    "backend",
)


def _row(args) -> dict:
    from jnas.runner import use_runtime
    from jnas.strategies.oneshot import gradient_strategy

    strategy = gradient_strategy(args.method)
    config = strategy.stage_configs(_load_config(args.method))[0]
    config.model.C, config.model.layers = args.C, args.layers
    config.search.batch_size = args.batch
    config.search.hypergradient = "first" if args.order == 1 else args.hypergradient
    config.search.arch_start_epoch = 0  # time the full step, not a warm-up one
    if args.remat:
        config.model.remat = True
    with use_runtime(config) as (config, runtime):  # config.runtime: native kernels, XLA
        return _measure(args, strategy, config, runtime)


def _measure(args, strategy, config, runtime) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    searcher = strategy(config, num_classes=10, steps_per_epoch=100, axis_name=None)
    rng = np.random.default_rng(0)

    def batch():
        return {
            "image": jnp.asarray(
                rng.normal(size=(args.batch, args.size, args.size, 3)), jnp.float32
            ),
            "label": jnp.asarray(rng.integers(0, 10, args.batch), jnp.int32),
        }

    state = searcher.init(jax.random.PRNGKey(0), batch()["image"][:2])  # un-jitted: fast
    tb, vb = batch(), batch()
    if args.cost:
        return _cost(args, jax.jit(searcher.step, donate_argnums=0).lower(state, tb, vb))
    t = time.perf_counter()
    step = jax.jit(searcher.step, donate_argnums=0, compiler_options=runtime.xla_options)
    step = step.lower(state, tb, vb).compile()
    state, m = step(state, tb, vb)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t
    mem = step.memory_analysis()
    xla_mem = None
    if mem is not None:
        xla_mem = (
            mem.argument_size_in_bytes
            + mem.output_size_in_bytes
            + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes
        ) / 2**20
    times = []
    for _ in range(args.steps):
        tb, vb = batch(), batch()
        t = time.perf_counter()
        state, m = step(state, tb, vb)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
    dev = jax.devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        peak = stats["peak_bytes_in_use"] / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "method": args.method,
        "order": args.order,
        "batch": args.batch,
        "step_s_median": round(statistics.median(times), 4),
        "compile_s": round(compile_s, 2),
        "peak_mem_mb": round(peak, 1),
        "xla_mem_mb": None if xla_mem is None else round(xla_mem, 1),
        "backend": jax.default_backend(),
        "loss": float(m["train_loss"]),
    }


COST_KEYS = ("method", "order", "batch", "hlo_ops", "flops", "bytes_accessed", "backend")


def _cost(args, lowered) -> dict:
    """What XLA's cost model says of the lowered step (no compilation): StableHLO ops, flops
    and bytes accessed. Two versions of the code that give the same three figures compile
    the same step."""
    import re

    import jax

    cost = lowered.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {
        "method": args.method,
        "order": args.order,
        "batch": args.batch,
        "hlo_ops": len(re.findall(r"stablehlo\.\w+", lowered.as_text())),
        "flops": int(cost["flops"]),
        "bytes_accessed": int(cost["bytes accessed"]),
        "backend": jax.default_backend(),
    }


def _load_config(method: str):
    """The config a strategy's registration names: CIFAR-10's, else its first."""
    import importlib

    from jnas.strategies.oneshot import gradient_strategy

    configs = gradient_strategy(method).configs
    if not configs:
        raise ValueError(f"strategy {method!r} names no config")
    name = configs.get("cifar10", next(iter(configs.values())))
    return importlib.import_module(f"experiments.configs.{name}").get_config()


def _methods() -> tuple[str, ...]:
    from jnas.strategies.base import STRATEGIES

    return STRATEGIES.names(kind="gradient")


def _second_order(method: str) -> bool:
    from jnas.strategies.oneshot import gradient_strategy

    return gradient_strategy(method).second_order


def main(argv=None):
    from jnas import runtime

    runtime.tune_malloc()  # before JAX starts its CPU backend (JNAS_MALLOC=0: leave it)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--method",
        default="darts",
        help="a registered gradient strategy (darts, gdas, ...), a list of them, or all",
    )
    p.add_argument("--order", type=int, choices=(1, 2), help="one order only (default both)")
    p.add_argument("--batch", type=int, help="one batch size only (default 16 and 64)")
    p.add_argument("--hypergradient", default="fd", choices=("fd", "exact"), help="order 2 kind")
    p.add_argument("--steps", type=int, default=5, help="timed steps per row")
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--remat", action="store_true", help="rematerialise cells (less memory)")
    p.add_argument(
        "--cost",
        action="store_true",
        help="lower the step without compiling it; print its StableHLO op count, flops and bytes",
    )
    p.add_argument("--json", help="also write the rows as a JSON list to this path")
    p.add_argument("--row", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.row:
        print("ROW " + json.dumps(_row(args)), flush=True)
        return
    known = _methods()
    methods = list(known) if args.method == "all" else [m.strip() for m in args.method.split(",")]
    unknown = [m for m in methods if m not in known]
    if unknown:
        p.error(f"unknown --method {', '.join(unknown)}; choose from {', '.join(known)} or all")
    orders = [args.order] if args.order else [1, 2]
    batches = [args.batch] if args.batch else [16, 64]
    rows = []
    header = f"{'method':8} {'order':>5} {'batch':>5} "
    if args.cost:
        print(header + f"{'hlo_ops':>9} {'flops':>16} {'bytes':>16}  backend")
    else:
        print(header + f"{'step_s':>8} {'compile_s':>9} {'peak_MB':>9} {'XLA_MB':>9}  backend")
    for method in methods:
        for order in orders:
            if order == 2 and not _second_order(method):
                print(f"{method:8} {order:>5}  skipped: {method} has first-order steps only")
                continue
            for batch in batches:
                cmd = [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--row",
                    f"--method={method}",
                    f"--order={order}",
                    f"--batch={batch}",
                    f"--steps={args.steps}",
                    f"--hypergradient={args.hypergradient}",
                    f"--C={args.C}",
                    f"--layers={args.layers}",
                    f"--size={args.size}",
                ]
                cmd += ["--remat"] if args.remat else []
                cmd += ["--cost"] if args.cost else []
                out = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                )
                lines = [ln for ln in out.stdout.splitlines() if ln.startswith("ROW ")]
                if out.returncode or not lines:
                    print(f"{method:8} {order:>5} {batch:>5}  FAILED: {out.stderr[-800:]}")
                    continue
                row = json.loads(lines[-1][4:])
                rows.append(row)
                if args.cost:
                    print(
                        f"{method:8} {order:>5} {batch:>5} {row['hlo_ops']:>9,} "
                        f"{row['flops']:>16,} {row['bytes_accessed']:>16,}  {row['backend']}",
                        flush=True,
                    )
                    continue
                xla = "n/a" if row["xla_mem_mb"] is None else f"{row['xla_mem_mb']:.0f}"
                print(
                    f"{method:8} {order:>5} {batch:>5} {row['step_s_median']:>8.3f} "
                    f"{row['compile_s']:>9.1f} {row['peak_mem_mb']:>9.0f} {xla:>9}  "
                    f"{row['backend']}",
                    flush=True,
                )
    if args.json:
        with open(args.json, "w") as f:
            keys = COST_KEYS if args.cost else KEYS
            json.dump([{k: r[k] for k in keys} for r in rows], f, indent=2)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
