r"""Time one search step of the paper's search network, per method, order and batch.

  python benchmarks/search_step.py                       # DARTS, orders 1 and 2, batch 16, 64
  python benchmarks/search_step.py --order=1 --batch=64  # one row
  python benchmarks/search_step.py --method=gdas --order=1 --batch=64 --json=out.json
  python benchmarks/search_step.py --method=darts,gdas,pcdarts,pdarts --order=1 --batch=64
  python benchmarks/search_step.py --method=darts,enas --order=1 --batch=64   # ENAS beside DARTS
  python benchmarks/search_step.py --order=1 --batch=16 --compilation_cache=/tmp/c  # twice

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
the first run of the step, ``step_s_median`` the median of ``--steps`` runs after ``--warmup``
untimed ones,
``peak_mem_mb`` the device's peak bytes in use where the backend reports it (GPU/TPU),
else the process's peak resident memory (CPU, compilation included), ``xla_mem_mb`` the
buffers of the compiled step as XLA plans them (arguments, outputs and temporaries, less
donated ones; the comparable figure on a CPU). Order 2 is the paper's finite-difference
second order (``--hypergradient=exact`` for the autodiff variant). With
``--compilation_cache=DIR`` the rows use JAX's persistent compilation cache as the entry points
do (``cache``: ``miss`` compiled and written, ``hit`` loaded): run the command twice, and the
second run's rows are what a resumed or repeated search pays (``compile_s`` tracing and
loading, ``peak_mem_mb`` the loader's memory instead of the compiler's). The step is compiled
ahead of time and then called with the same shapes, so it cannot recompile (a call that
would recompile fails). ``--cost`` lowers the step without compiling it and prints XLA's
cost model of it instead (StableHLO ops, flops, bytes accessed): seconds per row, and the
same three figures for two versions of the code mean the same compiled step.

``--method=enas`` (a shared-weight strategy, :mod:`jnas.strategies.enas`) times the ENAS micro
supergraph's shared-weight step (``EnasSearch.train_step``: one sampled child's forward and
backward, a fresh architecture every call, one compiled program) with ``--C`` channels and
``--layers`` cells on the same batch, first order only; its row adds the controller's
``ctrl_samples_per_s`` (one architecture per call) and ``ctrl_updates_per_s`` (one REINFORCE
update of ``num_aggregate`` architectures, rewards given). Issue 19's target: at most 0.25x
the first-order DARTS step of the same run.

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
    "edges",
    "step_s_median",
    "steps",
    "warmup",
    "compile_s",
    "peak_mem_mb",
    "xla_mem_mb",
    "cache",
    "backend",
    "compute_dtype",
    "step_gflop",
    "tflops_per_s",
    "peak_pct",
)


def _xla_mib(mem) -> float | None:
    """XLA's buffers of a compiled step (arguments, outputs and temporaries, less what the
    outputs alias), in MiB; None where the backend does not say."""
    if mem is None:
        return None
    size = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
    return (size - mem.alias_size_in_bytes) / 2**20


def _peak_mib() -> float:
    """The device's peak memory in MiB where it reports one (GPU), else the process's peak
    RSS (CPU: compilation included)."""
    import jax

    dev = jax.devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _step_row(args, order, times, compile_s, xla_mem, metrics) -> dict:
    """The JSON row's keys every method has: step time, compile time, memory, loss, and
    whether the step came from the persistent compilation cache."""
    import jax

    return {
        "cache": _cache_state(args),
        "method": args.method,
        "order": order,
        "batch": args.batch,
        "step_s_median": round(statistics.median(times), 4),
        "steps": len(times),
        "warmup": args.warmup,
        "compile_s": round(compile_s, 2),
        "peak_mem_mb": round(_peak_mib(), 1),
        "xla_mem_mb": None if xla_mem is None else round(xla_mem, 1),
        "backend": jax.default_backend(),
        "loss": float(metrics["train_loss"]),
        "compute_dtype": args.compute_dtype,
    }


_CACHE_HITS = []


def _cache_state(args) -> str:
    """``"hit"`` (the step was loaded from ``--compilation_cache``), ``"miss"`` (compiled, and
    written there) or ``"off"`` (no cache)."""
    if not args.compilation_cache:
        return "off"
    return "hit" if _CACHE_HITS else "miss"


def _row(args) -> dict:
    from jnas.runner import setup_jax, use_runtime
    from jnas.strategies.base import kind_of

    if args.compilation_cache:
        import jax

        setup_jax(args.compilation_cache)
        jax.monitoring.register_event_listener(
            lambda event, **_: (
                event == "/jax/compilation_cache/cache_hits" and _CACHE_HITS.append(event)
            )
        )
    if kind_of(args.method) == "shared":
        return _shared_row(args)
    strategy, config = search_config(args.method, args.C, args.layers, args.compute_dtype)
    config.search.batch_size = args.batch
    config.search.hypergradient = "first" if args.order == 1 else args.hypergradient
    if args.remat:
        config.model.remat = True
    if args.edges != "config":
        config.model.vmap_edges = args.edges == "vmapped"
        config.model.scan_edges = args.edges == "scanned"
    with use_runtime(config) as (config, runtime):  # config.runtime: native kernels, XLA
        return _measure(args, strategy, config, runtime)


def _measure(args, strategy, config, runtime) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks.flops import compiled_flops, flops_fields

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
    step = jax.jit(searcher.step, donate_argnums=0, compiler_options=runtime.search_xla_options)
    step = step.lower(state, tb, vb).compile()
    state, m = step(state, tb, vb)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t
    xla_mem = _xla_mib(step.memory_analysis())
    flops = compiled_flops(step)
    times = []
    for i in range(args.warmup + args.steps):
        tb, vb = batch(), batch()
        t = time.perf_counter()
        state, m = step(state, tb, vb)
        jax.block_until_ready(m)
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    net = searcher.model
    edges = "scanned" if net.scan_edges else "vmapped" if net.vmap_edges else "looped"
    row = _step_row(args, args.order, times, compile_s, xla_mem, m)
    row.update(flops_fields(flops, row["step_s_median"], args.peak_tflops), edges=edges)
    return row


# ENAS rows also have the controller's speed (samples and updates of num_aggregate per second)
SHARED_KEYS = ("ctrl_samples_per_s", "ctrl_updates_per_s", "num_aggregate")


def _shared_row(args) -> dict:
    """A shared-weight (ENAS) row: its config's supergraph at the DARTS row's size (``--C``,
    ``--layers`` cells, ``--size``) and batch; the timed step is the shared-weight step
    (``EnasSearch.train_step``) with a fresh architecture on every call (one compiled
    program). Also the controller: samples per second (one ``sample`` call each) and
    updates per second (``controller_update`` of ``num_aggregate`` sampled architectures,
    the child's rewards given)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jnas.runner import use_runtime
    from jnas.strategies.enas import shared_strategy

    strategy = shared_strategy(args.method)
    config = _load_config(args.method)
    if "C" in config.space:
        config.space.C, config.space.layers = args.C, args.layers
    config.search.batch_size = args.batch
    with use_runtime(config) as (config, runtime):
        searcher = strategy(config, num_classes=10, steps_per_epoch=100, axis_name=None)
        rng = np.random.default_rng(0)

        def batch():
            x = rng.normal(size=(args.batch, args.size, args.size, 3))
            y = rng.integers(0, 10, args.batch)
            return {"image": jnp.asarray(x, jnp.float32), "label": jnp.asarray(y, jnp.int32)}

        tb = batch()
        state = searcher.init(jax.random.PRNGKey(0), tb["image"][:2])
        sample = jax.jit(searcher.sample_with_entropy)
        params = jax.tree.map(jnp.copy, state.controller.params)  # the step donates the state
        arch, _ = sample(params, jax.random.key(0))
        if args.cost:
            return _cost(
                args, jax.jit(searcher.train_step, donate_argnums=0).lower(state, arch, tb)
            )
        t = time.perf_counter()
        step = jax.jit(searcher.train_step, donate_argnums=0, compiler_options=runtime.xla_options)
        step = step.lower(state, arch, tb).compile()
        state, m = step(state, arch, tb)
        jax.block_until_ready(m)
        compile_s = time.perf_counter() - t
        mem = step.memory_analysis()
        times = []
        for i in range(args.warmup + args.steps):
            arch, _ = sample(state.controller.params, jax.random.key(i + 1))
            tb = batch()
            jax.block_until_ready(arch)
            t = time.perf_counter()
            state, m = step(state, arch, tb)
            jax.block_until_ready(m)
            if i >= args.warmup:
                times.append(time.perf_counter() - t)
        # the controller alone
        n = max(20, args.steps)
        t = time.perf_counter()
        drawn = [sample(params, jax.random.key(100 + i)) for i in range(n)]
        jax.block_until_ready(drawn)
        samples_per_s = n / (time.perf_counter() - t)
        a = searcher.num_aggregate
        archs = jnp.stack([d[0] for d in drawn[:a]] * (a // len(drawn[:a]) or 1))[:a]
        ents = jnp.stack([d[1] for d in drawn[:a]] * (a // len(drawn[:a]) or 1))[:a]
        accs = jnp.asarray(rng.uniform(size=a), jnp.float32)
        update = jax.jit(searcher.controller_update)
        ctrl, _ = update(state.controller, archs, accs, ents)  # the state is not used again
        jax.block_until_ready(ctrl)
        t = time.perf_counter()
        for _ in range(n // 4):
            ctrl, cm = update(ctrl, archs, accs, ents)
        jax.block_until_ready(ctrl)
        updates_per_s = (n // 4) / (time.perf_counter() - t)
    return {
        **_step_row(args, 1, times, compile_s, _xla_mib(mem), m),
        "ctrl_samples_per_s": round(samples_per_s, 1),
        "ctrl_updates_per_s": round(updates_per_s, 2),
        "num_aggregate": a,
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


def search_config(method: str, C: int, layers: int, compute_dtype: str = "float32"):
    """``(strategy, config)``: the gradient strategy ``method`` and its first stage's config
    (:func:`_load_config`) with a ``C``-channel, ``layers``-cell supernet computing in
    ``compute_dtype``, and no warm-up (every step a full one)."""
    from jnas.strategies.oneshot import gradient_strategy

    strategy = gradient_strategy(method)
    config = strategy.stage_configs(_load_config(method))[0]
    config.model.C, config.model.layers = C, layers
    config.model.compute_dtype = compute_dtype
    config.search.arch_start_epoch = 0
    return strategy, config


def _load_config(method: str):
    """The config a strategy's registration names: CIFAR-10's, else its first."""
    import importlib

    from jnas.strategies.base import STRATEGIES

    configs = STRATEGIES.get(method).configs
    if not configs:
        raise ValueError(f"strategy {method!r} names no config")
    name = configs.get("cifar10", next(iter(configs.values())))
    return importlib.import_module(f"experiments.configs.{name}").get_config()


def _methods() -> tuple[str, ...]:
    from jnas.strategies.base import STRATEGIES

    return STRATEGIES.names(kind="gradient") + STRATEGIES.names(kind="shared")


def _second_order(method: str) -> bool:
    from jnas.strategies.base import STRATEGIES

    return STRATEGIES.get(method).second_order


def main(argv=None):
    from benchmarks.flops import describe
    from jnas import runtime

    runtime.tune_malloc()  # before JAX starts its CPU backend (JNAS_MALLOC=0: leave it)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--method",
        default="darts",
        help="a registered gradient strategy (darts, gdas, ...) or enas, a list of them, or all",
    )
    p.add_argument("--order", type=int, choices=(1, 2), help="one order only (default both)")
    p.add_argument("--batch", type=int, help="one batch size only (default 16 and 64)")
    p.add_argument("--hypergradient", default="fd", choices=("fd", "exact"), help="order 2 kind")
    p.add_argument("--steps", type=int, default=10, help="timed steps per row")
    p.add_argument(
        "--warmup",
        type=int,
        default=10,
        help="untimed steps before the timed ones (after the first): the heap reaches its "
        "steady size, and a sampling method (GDAS, ENAS) runs each edge's ops once or more",
    )
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--remat", action="store_true", help="rematerialise cells (less memory)")
    p.add_argument(
        "--compute_dtype",
        default="float32",
        choices=("float32", "bfloat16"),
        help="the dtype the supernet computes in (config.model.compute_dtype; bfloat16: mixed "
        "precision, weights and optimizer states float32)",
    )
    p.add_argument(
        "--edges",
        default="config",
        choices=("config", "looped", "vmapped", "scanned"),
        help="how the supernet runs a cell's edges (default: as the method's config says)",
    )
    p.add_argument(
        "--cost",
        action="store_true",
        help="lower the step without compiling it; print its StableHLO op count, flops and bytes",
    )
    p.add_argument(
        "--compilation_cache",
        help="JAX's persistent compilation cache directory (as the entry points use one): run "
        "the command twice and the second run loads each step from it, so its compile_s is "
        "tracing and loading and its peak_MB the loader's memory, not the compiler's",
    )
    p.add_argument(
        "--peak_tflops",
        type=float,
        help="the device's peak TFLOP/s at --compute_dtype (data sheet): rows then give the "
        "step's achieved FLOP/s (XLA's count) as a percentage of it",
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
        print(
            header + f"{'edges':>8} {'step_s':>8} {'compile_s':>9} {'peak_MB':>9} {'XLA_MB':>9}"
            f" {'cache':>5}  backend"
        )
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
                    f"--warmup={args.warmup}",
                    f"--hypergradient={args.hypergradient}",
                    f"--C={args.C}",
                    f"--layers={args.layers}",
                    f"--size={args.size}",
                    f"--edges={args.edges}",
                    f"--compute_dtype={args.compute_dtype}",
                ]
                if args.peak_tflops:
                    cmd.append(f"--peak_tflops={args.peak_tflops}")
                cmd += ["--remat"] if args.remat else []
                if args.compilation_cache:
                    cmd.append(f"--compilation_cache={os.path.abspath(args.compilation_cache)}")
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
                    f"{method:8} {order:>5} {batch:>5} {row.get('edges', '-'):>8} "
                    f"{row['step_s_median']:>8.3f} "
                    f"{row['compile_s']:>9.1f} {row['peak_mem_mb']:>9.0f} {xla:>9} "
                    f"{row['cache']:>5}  "
                    f"{row['backend']}{describe(row)}"
                    + (
                        f"  controller: {row['ctrl_samples_per_s']:.1f} samples/s, "
                        f"{row['ctrl_updates_per_s']:.2f} updates/s of {row['num_aggregate']}"
                        if "ctrl_samples_per_s" in row
                        else ""
                    ),
                    flush=True,
                )
    if args.json:
        with open(args.json, "w") as f:
            keys = COST_KEYS if args.cost else KEYS
            keys = (*keys, *SHARED_KEYS)  # the ENAS rows' controller figures
            json.dump([{k: r[k] for k in keys if k in r} for r in rows], f, indent=2)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from jnas import runtime

    runtime.relaunch()  # jnas's malloc settings from the start (JNAS_MALLOC=0: leave it)
    main()
