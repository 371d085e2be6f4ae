"""Speed of the discrete strategies on NAS-Bench-201, and of the REINFORCE controller.

  JNAS_NB201_PATH=/path/to/nb201.csv.gz python benchmarks/discrete_search.py [--json=rows.json]

1. For each strategy, 100 seeds x 1000 queries on the CIFAR-10 table (a query budget): one
   jit-compiled `lax.scan` per search, `vmap`ped over the seeds. `compile_s` is the first call
   minus the best later call (tracing + XLA compilation), `wall_s` the best of `--repeats` calls.
2. The controller alone: samples and REINFORCE updates per second for one search (no vmap), on
   the NAS-Bench-201 space (m = 1 architecture per update, as the tabular config) and on the
   paper's 15-layer NAS-RL space with strides and anchors (m = 8, as Zoph & Le's replicas).

`--json=PATH` writes the strategy rows as a JSON list of objects with the keys `strategy`,
`seeds`, `queries`, `wall_s`, `compile_s`.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp

from jnas import tabular
from jnas.spaces import nb201
from jnas.spaces.nasrl import NasRLSpace
from jnas.strategies import reinforce

# The strategies' settings of experiments/configs/nb201.py.
CONFIGS = {
    "random": None,
    "evolution": {"population_size": 10, "sample_size": 3},
    "reinforce": {"learning_rate": 0.01, "baseline_decay": 0.9, "batch_size": 1},
}


def _timed(fn, repeats: int) -> tuple[float, float]:
    """(compile_s, wall_s) of a function whose first call compiles."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        walls.append(time.perf_counter() - t0)
    return max(first - min(walls), 0.0), min(walls)


def bench_strategies(table, names, seeds: int, queries: int, repeats: int) -> list[dict]:
    objective = table.objective("cifar10")
    budget = tabular.make_budget(objective, queries, unit="queries")
    rows = []
    for name in names:
        run = lambda: tabular.run_search(
            name, nb201.SPEC, objective, budget, jax.random.key(0),
            config=CONFIGS[name], num_seeds=seeds,
        )  # fmt: skip
        compile_s, wall_s = _timed(run, repeats)
        rows.append(
            dict(strategy=name, seeds=seeds, queries=queries, wall_s=wall_s, compile_s=compile_s)
        )
    return rows


def bench_controller(spec, batch_size: int, updates: int, repeats: int) -> dict:
    """Samples and updates per second of REINFORCE's controller on a toy reward."""
    state = reinforce.init(jax.random.key(0), spec, {"batch_size": batch_size})

    @jax.jit
    def loop(state, key):
        def step(state, k):
            keys = jax.random.split(k, batch_size)
            _, actions = jax.vmap(reinforce.ask, in_axes=(None, 0))(state, keys)
            rewards = jnp.mean(actions == 0, axis=1).astype(jnp.float32)
            return reinforce.update(state, actions, rewards), None

        return jax.lax.scan(step, state, jax.random.split(key, updates))[0]

    compile_s, wall_s = _timed(lambda: loop(state, jax.random.key(1)), repeats)
    return dict(
        length=spec.length,
        batch_size=batch_size,
        samples_per_s=updates * batch_size / wall_s,
        updates_per_s=updates / wall_s,
        compile_s=compile_s,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark_path", default=os.environ.get(tabular.ENV_VAR))
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--strategies", default="random,evolution,reinforce")
    parser.add_argument("--controller_updates", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the strategy rows here")
    args = parser.parse_args()

    table = tabular.load_table(args.benchmark_path)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores")
    rows = bench_strategies(
        table, args.strategies.split(","), args.seeds, args.queries, args.repeats
    )
    print("\n| strategy | seeds | queries | compile_s | wall_s | queries/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        rate = r["seeds"] * r["queries"] / r["wall_s"]
        print(
            f"| {r['strategy']} | {r['seeds']} | {r['queries']} | {r['compile_s']:.1f} "
            f"| {r['wall_s']:.2f} | {rate:,.0f} |"
        )

    print("\n| controller space | positions | m | samples/s | updates/s | compile_s |")
    print("|---|---|---|---|---|---|")
    nasrl = NasRLSpace(num_layers=15, predict_stride=True).spec
    for label, spec, m in [("NAS-Bench-201", nb201.SPEC, 1), ("NAS-RL 15 layers", nasrl, 8)]:
        c = bench_controller(spec, m, args.controller_updates, args.repeats)
        print(
            f"| {label} | {c['length']} | {m} | {c['samples_per_s']:,.0f} "
            f"| {c['updates_per_s']:,.0f} | {c['compile_s']:.1f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
