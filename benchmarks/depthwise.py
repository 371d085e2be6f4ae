"""Benchmark `jnas.ops.depthwise.depthwise_conv2d`: impl="lax" vs impl="shift" (or "native").

For each (shape, kernel, stride, dilation) it prints the median wall time of the jitted forward
and forward+backward (input and weight gradients) and the compile seconds of each program, for
both implementations. Optionally (``--second-order``) it also times
``jax.grad`` of a function of the gradient, as in second-order DARTS, and (``--edges E``) runs
everything under ``jax.vmap`` over a leading edge axis of size E.

    python benchmarks/depthwise.py                      # default table, ~1-2 min on 2 CPU cores
    python benchmarks/depthwise.py --batch 16 --second-order
    python benchmarks/depthwise.py --shapes 32x16 --configs 3,1,1 5,1,2 --edges 4
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from jnas import runtime
from jnas.ops.depthwise import depthwise_conv2d, output_size

DEFAULT_SHAPES = ["32x16", "16x32", "8x64"]  # HxW (square) x C
DEFAULT_CONFIGS = ["3,1,1", "5,1,1", "5,1,2", "3,2,1", "5,2,1"]  # kernel,stride,dilation


def _timed(fn, args, reps: int, warmup: int, stat: str = "median"):
    """(compile seconds, median or min milliseconds) of jax.jit(fn)(*args)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return compile_s, 1e3 * (min(times) if stat == "min" else statistics.median(times))


def _programs(impl: str, k: int, stride: int, dilation: int, edges: int):
    pad = dilation * (k - 1) // 2

    def conv(x, w):
        return depthwise_conv2d(x, w, stride=stride, dilation=dilation, padding=pad, impl=impl)

    if edges:
        conv = jax.vmap(conv)

    def fwd(x, w, g):
        return conv(x, w)

    def fwd_bwd(x, w, g):
        y, vjp = jax.vjp(conv, x, w)
        return y, *vjp(g)

    def second_order(x, w, g):
        # d/dw of a function of d(loss)/dx and d(loss)/dw, as in a DARTS unrolled step.
        def loss(x, w):
            return jnp.sum(jnp.tanh(conv(x, w)) * g)

        def outer(x, w):
            gx, gw = jax.grad(loss, argnums=(0, 1))(x, w)
            return jnp.sum(gx * gx) + jnp.sum(gw * gw)

        return jax.grad(outer, argnums=(0, 1))(x, w)

    return fwd, fwd_bwd, second_order


def main(argv=None):
    runtime.tune_malloc()  # before JAX starts its CPU backend (JNAS_MALLOC=0: leave it)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES, help="HxC, e.g. 32x16")
    ap.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help="k,stride,dilation")
    ap.add_argument(
        "--impls", nargs="+", default=["lax", "shift"], choices=["lax", "shift", "native"]
    )
    ap.add_argument("--reps", type=int, default=7, help="timed runs (median is reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument(
        "--stat", default="median", choices=["median", "min"], help="min is steadier on a busy host"
    )
    ap.add_argument(
        "--edges", type=int, default=0, help="vmap over a leading edge axis of this size"
    )
    ap.add_argument("--second-order", action="store_true", help="also time grad-of-grad")
    args = ap.parse_args(argv)

    print(f"backend={jax.default_backend()} devices={jax.devices()} batch={args.batch}", end="")
    print(f" edges={args.edges or '-'} reps={args.reps} ({args.stat} ms; compile s of the program)")
    cols = ["fwd ms", "fwd comp s", "f+b ms", "f+b comp s"] + (
        ["2nd ms", "2nd comp s"] if args.second_order else []
    )
    head = f"{'shape':>10} {'k':>2} {'s':>2} {'d':>2} | " + " | ".join(
        " ".join(f"{impl + ' ' + c:>{max(12, len(impl + c) + 1)}}" for c in cols)
        for impl in args.impls
    )
    if set(args.impls) == {"lax", "shift"}:
        head += " | fwd x  f+b x"
    print(head)
    print("-" * len(head))

    key = jax.random.PRNGKey(0)
    for shape in args.shapes:
        h, c = (int(v) for v in shape.split("x"))
        for cfg in args.configs:
            k, stride, dilation = (int(v) for v in cfg.split(","))
            ho = output_size(h, k, stride, dilation)
            lead = (args.edges,) if args.edges else ()
            kx, kw, kg = jax.random.split(jax.random.fold_in(key, h * 1000 + k), 3)
            x = jax.random.normal(kx, (*lead, args.batch, h, h, c), jnp.float32)
            w = jax.random.normal(kw, (*lead, k, k, c), jnp.float32) / k
            g = jax.random.normal(kg, (*lead, args.batch, ho, ho, c), jnp.float32)
            row = f"{shape:>10} {k:>2} {stride:>2} {dilation:>2} | "
            cells, res = [], {}
            for impl in args.impls:
                fwd, fwd_bwd, second = _programs(impl, k, stride, dilation, args.edges)
                c_f, t_f = _timed(fwd, (x, w, g), args.reps, args.warmup, args.stat)
                c_fb, t_fb = _timed(fwd_bwd, (x, w, g), args.reps, args.warmup, args.stat)
                vals = [t_f, c_f, t_fb, c_fb]
                if args.second_order:
                    c_2, t_2 = _timed(second, (x, w, g), args.reps, args.warmup, args.stat)
                    vals += [t_2, c_2]
                res[impl] = vals
                cells.append(
                    " ".join(f"{v:>{max(12, len(impl + cn) + 1)}.2f}" for v, cn in zip(vals, cols))
                )
            row += " | ".join(cells)
            if set(args.impls) == {"lax", "shift"}:
                sp_f = res["lax"][0] / res["shift"][0]
                sp_fb = res["lax"][2] / res["shift"][2]
                row += f" | {sp_f:5.1f} {sp_fb:6.1f}"
            print(row, flush=True)


if __name__ == "__main__":
    runtime.relaunch()  # jnas's malloc settings from the start (JNAS_MALLOC=0: leave it)
    main()
