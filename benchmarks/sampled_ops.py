r"""What a sampling search step (GDAS) costs per op: the step with every edge forced to one op.

  python benchmarks/sampled_ops.py                        # GDAS, the paper's network, batch 16
  python benchmarks/sampled_ops.py --layers=3 --reps=5    # a 3-cell network, faster

GDAS computes one sampled op per edge, so its step costs what the network costs without its
edges' ops (the stem, the cells' preprocessing and outputs, the classifier, the optimizer, the
switches themselves) plus the sampled ops. This script separates the two. The step is
``benchmarks/profile_step.py``'s search step (same flags; ``--method`` a strategy whose edges
run the op its ``alpha`` samples), compiled once. Each row calls it on the initial state with
``alpha`` set to ``--strength`` on one op and 0 elsewhere, on every edge of both cell types,
so that every sample (``argmax(alpha + Gumbel noise)``) picks that op. The row of ``none`` (the
zero op) is the floor; ``op - none`` is the op's cost on all edges at once, forward and
backward, in both of the step's phases. The first row is the initial ``alpha`` (one fixed
sample); ``expected`` is the floor plus the mean over the ops, what a step of uniform ``alpha``
costs on average; ``every op`` the floor plus every op's cost, about what a step that runs every
op (DARTS) costs. Rows are timed in turn, ``--reps`` rounds after one untimed round.
"""

from __future__ import annotations

import os
import statistics
import sys
import time


def force(alpha, k: int, strength: float):
    """``alpha`` with ``strength`` on op ``k`` and 0 on the others, on every edge: Gumbel-max
    samples of it pick op ``k`` (unless the noise gap exceeds ``strength``)."""
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda a: jnp.zeros_like(a).at[..., k].set(strength), alpha)


def measure(args) -> dict:
    import jax

    from benchmarks.profile_step import build_step
    from jnas.ops import settings

    with settings.use(None) as runtime:
        fn, state, step_args = build_step(args)
        primitives = list(fn.__self__.model.primitives)
        t = time.perf_counter()
        step = jax.jit(fn, compiler_options=runtime.search_xla_options)
        step = step.lower(state, *step_args).compile()
        compile_s = time.perf_counter() - t

        states = {
            "initial alpha": state,
            **{
                p: state.replace(alpha=force(state.alpha, k, args.strength))
                for k, p in enumerate(primitives)
            },
        }
        times = {name: [] for name in states}
        for r in range(args.reps + 1):
            for name, s in states.items():
                t = time.perf_counter()
                jax.block_until_ready(step(s, *step_args))
                if r:
                    times[name].append(time.perf_counter() - t)
    rows = {name: round(statistics.median(ts), 4) for name, ts in times.items()}
    floor = rows.get("none")
    mean_op = statistics.mean(rows[p] for p in primitives)
    return {
        "method": args.method,
        "layers": args.layers,
        "batch": args.batch,
        "backend": jax.default_backend(),
        "compile_s": round(compile_s, 1),
        "step_s_median": rows,
        "expected_s": round(mean_op, 4),
        "floor_s": floor,
    }


def report(r: dict) -> str:
    lines = [
        f"{r['method']} search step, {r['layers']} cells, batch {r['batch']}, {r['backend']} "
        f"(compiled in {r['compile_s']} s): every edge forced to one op",
        f"{'op':16} {'step_s':>8} {'op - none':>10}",
    ]
    floor = r["floor_s"]
    for name, s in r["step_s_median"].items():
        extra = "" if floor is None or name == "initial alpha" else f"{s - floor:>10.4f}"
        lines.append(f"{name:16} {s:>8.4f} {extra}")
    lines.append(f"{'expected':16} {r['expected_s']:>8.4f}  (floor + the ops' mean)")
    if floor is not None:
        ops = [s for name, s in r["step_s_median"].items() if name != "initial alpha"]
        every = floor + sum(s - floor for s in ops)
        lines.append(f"{'every op':16} {every:>8.4f}  (floor + all ops: about a DARTS step)")
    return "\n".join(lines)


def main(argv=None):
    from benchmarks.profile_step import step_parser

    p = step_parser(__doc__)
    p.set_defaults(step="search", method="gdas", batch=16)
    p.add_argument("--reps", type=int, default=4, help="timed rounds")
    p.add_argument("--strength", type=float, default=50.0, help="alpha on the forced op")
    args = p.parse_args(argv)
    if args.step != "search":
        p.error("--step must be search")
    print(report(measure(args)), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from jnas import runtime

    runtime.relaunch()  # jnas's malloc settings from the start (JNAS_MALLOC=0: leave it)
    main()
