"""Speed of the discrete strategies on a tabular benchmark, and of one ask/tell loop.

  JNAS_NB201_PATH=/path/to/nb201.csv.gz python benchmarks/discrete_search.py [--json=rows.json]

1. For each strategy of the config (``--config``, default ``experiments/configs/nb201.py``:
   its space, strategies, their options and population size), 100 seeds x 1000 queries on the
   table's first data set (a query budget): one jit-compiled ``lax.scan`` per search,
   ``vmap``ped over the seeds. ``compile_s`` is the first call minus the best later call
   (tracing + XLA compilation), ``wall_s`` the best of ``--repeats`` calls.
2. One search alone (no vmap), ``--loop_strategies`` on the spaces of ``--loop_spaces``
   (default: NAS-Bench-201 with m = 1 architecture per tell, as the tabular config, and the
   paper's 15-layer NAS-RL space with strides and anchors, m = 8 as Zoph & Le's replicas): a
   ``lax.scan`` of ask / toy reward / tell; architectures and tells per second.

Strategies and spaces are found through their registries (``jnas.strategies.base``,
``jnas.spaces.base``). ``--json=PATH`` writes the strategy rows as a JSON list of objects with
the keys ``strategy``, ``seeds``, ``queries``, ``wall_s``, ``compile_s``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import time

import jax
import jax.numpy as jnp

from jnas import runtime, tabular
from jnas.spaces.base import make_space
from jnas.strategies.base import make_strategy

REPO = pathlib.Path(__file__).resolve().parents[1]
LOOP_SPACES = json.dumps(
    [
        {"name": "nb201", "m": 1},
        {"name": "nasrl", "num_layers": 15, "predict_stride": True, "m": 8},
    ]
)


def _load_config(path: str):
    spec = importlib.util.spec_from_file_location("benchmark_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


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


def bench_strategies(config, names, seeds: int, queries: int, repeats: int) -> list[dict]:
    space = make_space(config.space)
    table = space.load_table(config.benchmark_path)
    objective = table.objective(table.datasets[0])
    budget = tabular.make_budget(objective, queries, unit="queries")
    m = int(config.get("population_size", 1))
    rows = []
    for name in names:
        strategy, params = make_strategy(name, space.spec, m, config.get(name))
        run = lambda: tabular.run_search(
            strategy, space, objective, budget, jax.random.key(0), params=params,
            num_seeds=seeds,
        )  # fmt: skip
        compile_s, wall_s = _timed(run, repeats)
        rows.append(
            dict(strategy=name, seeds=seeds, queries=queries, wall_s=wall_s, compile_s=compile_s)
        )
    return rows


def bench_loop(config, name: str, space, m: int, rounds: int, repeats: int) -> dict:
    """Architectures and tells per second of one search on a toy reward (no vmap)."""
    strategy, params = make_strategy(name, space.spec, m, config.get(name))
    state = strategy.init(jax.random.key(0), params)

    @jax.jit
    def loop(state, key):
        def step(state, k):
            archs, state = strategy.ask(k, state, params)
            rewards = jnp.mean(archs == 0, axis=1).astype(jnp.float32)
            return strategy.tell(state, archs, rewards, params)[0], None

        return jax.lax.scan(step, state, jax.random.split(key, rounds))[0]

    compile_s, wall_s = _timed(lambda: loop(state, jax.random.key(1)), repeats)
    return dict(
        length=space.spec.length,
        m=m,
        archs_per_s=rounds * m / wall_s,
        tells_per_s=rounds / wall_s,
        compile_s=compile_s,
    )


def main():
    runtime.tune_malloc()  # before JAX starts its CPU backend (JNAS_MALLOC=0: leave it)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "experiments/configs/nb201.py"))
    parser.add_argument("--benchmark_path", default=os.environ.get(tabular.ENV_VAR))
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--strategies", default=None, help="comma-separated; default: config's")
    parser.add_argument("--loop_strategies", default="reinforce")
    parser.add_argument("--loop_spaces", default=LOOP_SPACES, help="JSON list of space configs")
    parser.add_argument("--loop_rounds", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the strategy rows here")
    args = parser.parse_args()

    config = _load_config(args.config)
    config.benchmark_path = args.benchmark_path
    names = args.strategies.split(",") if args.strategies else list(config.strategies)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores")
    rows = bench_strategies(config, names, args.seeds, args.queries, args.repeats)
    print("\n| strategy | seeds | queries | compile_s | wall_s | queries/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        rate = r["seeds"] * r["queries"] / r["wall_s"]
        print(
            f"| {r['strategy']} | {r['seeds']} | {r['queries']} | {r['compile_s']:.1f} "
            f"| {r['wall_s']:.2f} | {rate:,.0f} |"
        )

    print("\n| strategy | space | positions | m | archs/s | tells/s | compile_s |")
    print("|---|---|---|---|---|---|---|")
    for section in json.loads(args.loop_spaces):
        section = dict(section)
        m = int(section.pop("m", 1))
        space = make_space(section)
        for name in args.loop_strategies.split(","):
            c = bench_loop(config, name, space, m, args.loop_rounds, args.repeats)
            print(
                f"| {name} | {section['name']} | {c['length']} | {m} | {c['archs_per_s']:,.0f} "
                f"| {c['tells_per_s']:,.0f} | {c['compile_s']:.1f} |"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    runtime.relaunch()  # jnas's malloc settings from the start (JNAS_MALLOC=0: leave it)
    main()
