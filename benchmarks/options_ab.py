r"""Whether XLA compiler options pay for a step: compile it with two sets in one process, time
the two executables in turn.

  python benchmarks/options_ab.py --step=search --batch=16                 # DARTS, 8 cells
  python benchmarks/options_ab.py --step=search --method=gdas --layers=3 --batch=16
  python benchmarks/options_ab.py --step=train --layers=20 --batch=32 --compiles=2
  python benchmarks/options_ab.py --step=search --options='{"xla_backend_optimization_level": 0}'

The step is ``benchmarks/profile_step.py``'s (same flags: ``--step``, ``--method``,
``--hypergradient``, ``--layers``, ``--C``, ``--batch``, ...). A compiles with the general
options of ``config.runtime`` (``Resolved.xla_options``: what the retraining step uses); B with
``--options`` (a JSON object of XLA debug options) added to them, or by default with the
one-shot search steps' options (``Resolved.search_xla_options``). The step is traced and lowered
once; each of ``--compiles`` rounds then compiles it with A and with B (XLA's part alone, so
neither is charged for tracing), and ``--rounds`` rounds call A then B, each on the state its
last call returned (both start from the same state and see the same batches, so a GDAS search
samples the same architectures in both), after ``--warmup`` untimed rounds. Two programs timed
in turn on one machine see the same load, which separate processes an hour apart do not (steps
on the 2-core CPU vary by 10-20 % from hour to hour). Also printed: the largest difference
between A's and B's outputs.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time


def compare(args) -> dict:
    import jax
    import numpy as np

    from benchmarks.profile_step import build_step
    from jnas.ops import settings

    with settings.use(None) as runtime:
        options = {"A": dict(runtime.xla_options or {})}
        extra = json.loads(args.options) if args.options else None
        options["B"] = (
            {**options["A"], **extra} if extra else dict(runtime.search_xla_options or {})
        )
        if options["A"] == options["B"]:
            raise SystemExit(f"B's options are A's ({options['A']}): nothing to compare")
        fn, state, step_args = build_step(args)
        t = time.perf_counter()
        lowered = jax.jit(fn).lower(state, *step_args)
        lower_s = time.perf_counter() - t
        compile_s = {"A": [], "B": []}
        compiled = {}
        for _ in range(args.compiles):
            for name in compile_s:
                jax.clear_caches()  # else a second round gets JAX's executable of the first
                t = time.perf_counter()
                compiled[name] = lowered.compile(compiler_options=options[name])
                compile_s[name].append(round(time.perf_counter() - t, 1))
        step_s = {"A": [], "B": []}
        outs = {name: (state, None) for name in step_s}
        for r in range(args.warmup + args.rounds):
            for name in step_s:
                t = time.perf_counter()
                # Each carries its own state on from the same start (a search samples anew).
                outs[name] = jax.block_until_ready(compiled[name](outs[name][0], *step_args))
                if r >= args.warmup:
                    step_s[name].append(time.perf_counter() - t)
    pairs = zip(jax.tree.leaves(outs["A"]), jax.tree.leaves(outs["B"]))
    diff = max(
        (
            float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
            for a, b in pairs
            if a.dtype.kind == "f"
        ),
        default=0.0,
    )
    rows = {
        name: {
            "options": options[name],
            "compile_s": compile_s[name],
            "step_s_median": round(statistics.median(step_s[name]), 4),
            "step_s_min": round(min(step_s[name]), 4),
        }
        for name in ("A", "B")
    }
    return {
        "step": args.step,
        "method": args.method if args.step == "search" else args.genotype,
        "layers": args.layers,
        "batch": args.batch,
        "trace_and_lower_s": round(lower_s, 1),
        "backend": jax.default_backend(),
        "max_abs_diff": diff,
        **rows,
    }


def report(r: dict) -> str:
    lines = [
        f"{r['step']} step ({r['method']}, {r['layers']} cells, batch {r['batch']}, "
        f"{r['backend']}): traced and lowered once in {r['trace_and_lower_s']} s",
        f"{'':3} {'compile_s (XLA)':>24} {'step_s median':>14} {'step_s min':>11}  options",
    ]
    for name in ("A", "B"):
        row = r[name]
        compile_s = ", ".join(f"{c:.1f}" for c in row["compile_s"])
        lines.append(
            f"{name:3} {compile_s:>24} {row['step_s_median']:>14.4f} {row['step_s_min']:>11.4f}"
            f"  {json.dumps(row['options'])}"
        )
    a, b = r["A"], r["B"]
    ratio_c = statistics.median(b["compile_s"]) / statistics.median(a["compile_s"])
    ratio_s = b["step_s_median"] / a["step_s_median"]
    lines.append(f"B/A {ratio_c:>24.3f} {ratio_s:>14.3f}")
    lines.append(f"largest |A - B| over the outputs: {r['max_abs_diff']:.3g}")
    return "\n".join(lines)


def main(argv=None):
    from benchmarks.profile_step import step_parser

    p = step_parser(__doc__)
    p.add_argument("--options", help="B's extra XLA options, a JSON object (default: search's)")
    p.add_argument("--compiles", type=int, default=1, help="compilations of each, alternately")
    p.add_argument("--rounds", type=int, default=10, help="timed calls of each, alternately")
    p.add_argument(
        "--warmup", type=int, default=10, help="untimed rounds first (search_step.py's --warmup)"
    )
    p.add_argument("--json", help="also write the result to this path")
    args = p.parse_args(argv)
    result = compare(args)
    print(report(result), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from jnas import runtime

    runtime.relaunch()  # jnas's malloc settings from the start (JNAS_MALLOC=0: leave it)
    main()
