r"""Where a step's time goes: trace a few steps and sum the device time per HLO op and per
Flax module.

  python benchmarks/profile_step.py --step=train --out=/tmp/prof          # DARTS_V2, 8 cells
  python benchmarks/profile_step.py --step=search --method=gdas --out=/tmp/prof
  python benchmarks/profile_step.py --step=train --layers=20 --batch=96 --compute_dtype=bfloat16

Sized for a few minutes of accelerator time: one compilation of a small network (the
retraining network has ``--layers`` cells, 8 by default against the paper's 20), two
untimed steps, then ``--steps`` steps under ``jax.profiler.trace``. The trace's op events (GPU:
the kernels, named by their HLO op; CPU: XLA's thunks) are matched to the compiled module's
instructions, whose ``op_name`` metadata is the Flax module path that emitted them. Printed
and written to ``--out``: ``summary.json`` and ``summary.txt`` (time per step by HLO op, by
op kind, by Flax module down to ``--depth`` path components), the compiled HLO text and the
raw trace (open it in Perfetto or TensorBoard).

On the CPU, events of the two threads overlap, so the sums exceed the step's wall time; on a
GPU with one stream they add up to the busy time of the device. Ops inside a control-flow
region (a ``while`` body, a ``conditional`` branch) count under their own names, and the
region's own event counts once more under the ``while`` / ``conditional`` instruction.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import time

_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*\S.*?\s([\w\-]+)\(")
_OP_NAME = re.compile(r'op_name="([^"]*)"')


def hlo_index(hlo_text: str) -> dict[str, tuple[str, str]]:
    """Instruction name -> (opcode, op_name metadata) of every instruction of a module."""
    index = {}
    for line in hlo_text.splitlines():
        m = _INSTR.match(line)
        if not m:
            continue
        op = _OP_NAME.search(line)
        index[m.group(1)] = (m.group(2), op.group(1) if op else "")
    return index


def module_path(op_name: str, depth: int) -> str:
    """The Flax module part of an ``op_name`` (``jit(step)/while/body/.../cell_3/.../add``):
    its components after the transformations, down to ``depth`` of them."""
    parts = [p for p in op_name.split("/") if p]
    keep = []
    for p in parts[:-1]:  # the last component is the primitive
        if (
            re.match(
                r"^(jit|jvp|transpose|vmap|pjit|remat|checkpoint|cond|while|body|closed_call|"
                r"branch_\d+_fun|scan|rematted_computation)\b",
                p,
            )
            or "(" in p
        ):
            continue
        keep.append(p)
    return "/".join(keep[:depth]) or "(outside modules)"


def op_kind(name: str, opcode: str) -> str:
    """``fusion.123`` -> ``fusion``; a custom call keeps its opcode's name."""
    return re.sub(r"[._]\d+$", "", re.sub(r"\.\d+(?=\.)", "", name)) or opcode


def device_pids(events) -> set | None:
    """The trace's accelerator processes (``/device:GPU:0``, ...), or None when it has none
    (the CPU backend, whose op events are XLA's thunks on host threads)."""
    pids = {
        e["pid"]
        for e in events
        if e.get("ph") == "M"
        and e.get("name") == "process_name"
        and "/device:" in str((e.get("args") or {}).get("name", ""))
    }
    return pids or None


def summarize(events, index, steps: int, depth: int) -> dict:
    """Per-step microseconds by HLO op, op kind and Flax module, from complete trace events
    (``{"name", "dur", "args"}``) matched to ``index`` (:func:`hlo_index`). Where the trace has
    accelerator processes only their events count (the kernels; the host's launches of the
    same ops would count them twice)."""
    by_op, by_kind, by_module = (collections.Counter() for _ in range(3))
    counts = collections.Counter()
    matched = unmatched = 0.0
    devices = device_pids(events)
    for e in events:
        if e.get("ph") != "X" or (devices is not None and e.get("pid") not in devices):
            continue
        args = e.get("args") or {}
        name = args.get("hlo_op") or e.get("name", "")
        dur = float(e.get("dur", 0.0))
        if name not in index:
            unmatched += dur
            continue
        opcode, op_name = index[name]
        matched += dur
        by_op[name] += dur
        counts[name] += 1
        by_kind[op_kind(name, opcode)] += dur
        by_module[module_path(op_name, depth)] += dur

    def per_step(counter, n=40):
        return [[k, round(v / steps, 1)] for k, v in counter.most_common(n)]

    return {
        "steps": steps,
        "matched_us_per_step": round(matched / steps, 1),
        "unmatched_us_per_step": round(unmatched / steps, 1),
        "by_op": [[k, t, counts[k] // steps] for k, t in per_step(by_op)],
        "by_kind": per_step(by_kind),
        "by_module": per_step(by_module, 60),
    }


def _trace_events(directory: str) -> list:
    paths = glob.glob(os.path.join(directory, "**", "*perfetto_trace.json.gz"), recursive=True)
    if not paths:
        raise FileNotFoundError(f"no perfetto trace under {directory}")
    with gzip.open(max(paths, key=os.path.getmtime)) as f:
        trace = json.load(f)
    return trace["traceEvents"] if isinstance(trace, dict) else trace


def build_step(args):
    """``(step_fn, state, step_args)`` of the step to profile (``args``: this script's flags,
    also used by ``benchmarks/options_ab.py``)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)

    def batch():
        x = rng.normal(size=(args.batch, args.size, args.size, 3))
        y = rng.integers(0, 10, args.batch)
        return {"image": jnp.asarray(x, jnp.float32), "label": jnp.asarray(y, jnp.int32)}

    if args.step == "train":
        from experiments.configs import eval_cifar10
        from jnas.runner.train import build_trainer
        from jnas.spaces.published import get_genotype

        config = eval_cifar10.get_config()
        config.model.C, config.model.layers = args.C or 36, args.layers
        config.model.compute_dtype = args.compute_dtype
        trainer = build_trainer(
            config, get_genotype(args.genotype), num_classes=10, steps_per_epoch=100
        )
        data = batch()
        state = trainer.init(jax.random.PRNGKey(0), data["image"][:2])
        return trainer.step, state, (data, jax.random.PRNGKey(1))
    from benchmarks.search_step import search_config

    strategy, config = search_config(args.method, args.C or 16, args.layers, args.compute_dtype)
    config.search.hypergradient = args.hypergradient
    searcher = strategy(config, num_classes=10, steps_per_epoch=100)
    train, val = batch(), batch()
    state = searcher.init(jax.random.PRNGKey(0), train["image"][:2])
    return searcher.step, state, (train, val)


def profile(args) -> dict:
    import jax

    from jnas.ops import settings

    with settings.use(None) as runtime:
        fn, state, step_args = build_step(args)
        t = time.perf_counter()
        options = runtime.search_xla_options if args.step == "search" else runtime.xla_options
        step = jax.jit(fn, donate_argnums=0, compiler_options=options)
        step = step.lower(state, *step_args).compile()
        compile_s = time.perf_counter() - t
        for _ in range(2):
            state, metrics = step(state, *step_args)
        jax.block_until_ready(metrics)
        os.makedirs(args.out, exist_ok=True)
        trace_dir = os.path.join(args.out, "trace")
        t = time.perf_counter()
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for _ in range(args.steps):
                state, metrics = step(state, *step_args)
            jax.block_until_ready(metrics)
        wall = (time.perf_counter() - t) / args.steps
        hlo = step.as_text()
    with open(os.path.join(args.out, "step.hlo.txt"), "w") as f:
        f.write(hlo)
    summary = summarize(_trace_events(trace_dir), hlo_index(hlo), args.steps, args.depth)
    summary.update(
        step=args.step,
        method=args.method if args.step == "search" else None,
        batch=args.batch,
        layers=args.layers,
        compute_dtype=args.compute_dtype,
        backend=jax.default_backend(),
        device=jax.devices()[0].device_kind,
        compile_s=round(compile_s, 1),
        wall_us_per_step=round(wall * 1e6, 1),
    )
    return summary


def report(summary: dict) -> str:
    """The summary as text tables (milliseconds per step)."""
    lines = [
        f"{summary['step']} step ({summary['method'] or 'retraining'}), batch {summary['batch']}, "
        f"{summary['layers']} cells, {summary['compute_dtype']}, {summary['backend']} "
        f"({summary['device']}): wall {summary['wall_us_per_step'] / 1e3:.2f} ms per step, "
        f"ops matched {summary['matched_us_per_step'] / 1e3:.2f} ms, other events "
        f"{summary['unmatched_us_per_step'] / 1e3:.2f} ms; compile {summary['compile_s']} s"
    ]
    for key, title in (("by_kind", "op kind"), ("by_module", "Flax module")):
        lines += ["", f"ms per step by {title}:"]
        lines += [f"{t / 1e3:10.3f}  {k}" for k, t in summary[key][:25]]
    lines += ["", "ms per step by HLO op (calls per step):"]
    lines += [f"{t / 1e3:10.3f}  {n:5d}  {k}" for k, t, n in summary["by_op"][:25]]
    return "\n".join(lines)


def add_step_args(p: argparse.ArgumentParser) -> None:
    """The flags that say which step :func:`build_step` builds."""
    p.add_argument("--step", choices=("train", "search"), default="train")
    p.add_argument("--method", default="darts", help="the search step's gradient strategy")
    p.add_argument(
        "--hypergradient",
        default="first",
        choices=("first", "fd", "exact"),
        help="the search step's order (fd: the paper's second order)",
    )
    p.add_argument("--genotype", default="DARTS_V2", help="the retrained cell")
    p.add_argument("--batch", type=int, default=96)
    p.add_argument("--layers", type=int, default=8, help="cells (paper: 20 retraining, 8 search)")
    p.add_argument("--C", type=int, help="initial channels (default 36 retraining, 16 search)")
    p.add_argument("--size", type=int, default=32, help="image side")
    p.add_argument("--compute_dtype", default="float32", choices=("float32", "bfloat16"))


def step_parser(description: str) -> argparse.ArgumentParser:
    """A parser with :func:`add_step_args`'s flags for a script that builds the step; first
    sets the entry points' malloc settings (before JAX starts its CPU backend)."""
    from jnas import runtime

    runtime.tune_malloc()
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawTextHelpFormatter
    )
    add_step_args(p)
    return p


def main(argv=None):
    p = step_parser(__doc__)
    p.add_argument("--steps", type=int, default=3, help="traced steps")
    p.add_argument("--depth", type=int, default=3, help="Flax module path components kept")
    p.add_argument("--out", default="profile_step", help="directory for the summary and trace")
    args = p.parse_args(argv)
    summary = profile(args)
    text = report(summary)
    print(text, flush=True)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(args.out, "summary.txt"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from jnas import runtime

    runtime.relaunch()  # jnas's malloc settings from the start (JNAS_MALLOC=0: leave it)
    main()
