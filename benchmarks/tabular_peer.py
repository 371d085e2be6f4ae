"""jnas's Hyperband and BOHB beside optuna's on the NAS-Bench-201 table: accuracy and wall time.

  pip install 'jnas[peer]'   # optuna: an optional extra, used only here
  JNAS_NB201_PATH=/path/to/nb201.csv.gz python benchmarks/tabular_peer.py [--seeds=100]

Same table, fidelities and budget for both sides (CIFAR-10, the only data set of the table
with two fidelities and training times): a candidate is judged at 12 epochs
(``c10_valid_acc_12``) or 200 epochs (``c10_valid_acc``); each search gets 100 x the mean
200-epoch training time in simulated seconds (``jnas.tabular.make_budget``); an evaluation
that would exceed the remaining time is not counted and ends the search; the final choice is
the best 200-epoch validation accuracy, and its 200-epoch test accuracy (``c10_test_acc``) is
reported. Seed s of optuna is ``sampler seed = s``; ours are ``run_search``'s ``num_seeds``.

* **jnas** (``experiments/configs/nb201_multi_fidelity.py``'s options): ``hyperband`` and
  ``bohb`` on the ladder (12, 200), eta 3, all seeds as one vmapped scan. Each evaluation
  trains from scratch at its budget (HpBandSter's model): a promoted candidate costs 12 +
  200 epochs.
* **optuna** (Akiba et al., KDD 2019): ``HyperbandPruner(min_resource=12, max_resource=200,
  reduction_factor=3)`` (its brackets are asynchronous successive halving with rungs at 12 x
  3^s epochs; only the 12-epoch rung falls before 200, so trials of the bracket s = 0 are
  pruned there unless in the top third), with ``RandomSampler`` ("optuna Hyperband") or
  ``TPESampler`` with its defaults ("optuna TPE + Hyperband", the BOHB-like pairing the
  optuna documentation recommends). Each trial suggests the six edges as categorical
  parameters, reports the 12-epoch accuracy at step 12, is pruned or continues, and reports
  the 200-epoch accuracy at step 200. A trial that continues is charged 200 epochs in all
  (optuna prunes running trials: its 12 epochs are part of the 200), one that is pruned 12.
  That cost model is the peer's natural one and favours it slightly.

Prints one Markdown table: per method, mean ± std test accuracy over seeds, the mean number
of 200-epoch evaluations, and the wall time of all seeds (ours: the first call, compilation
included, and a second, compiled call; optuna: one process, one seed after another).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

from jnas import runtime, tabular
from jnas.spaces.base import make_space
from jnas.strategies.base import make_strategy

LADDER = dict(budgets=(12.0, 200.0), eta=3.0)
OPS = 5  # NAS-Bench-201: five ops per edge


def _ours(name, space, objective, budget, seeds):
    strategy, params = make_strategy(name, space.spec, 1, LADDER)

    def run():
        result = tabular.run_search(
            strategy, space, objective, budget, jax.random.key(0), params=params, num_seeds=seeds
        )
        return jax.block_until_ready(result)

    t0 = time.perf_counter()
    result = run()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    run()
    again = time.perf_counter() - t0
    full = np.asarray(result.trace["full"] & result.trace["counted"]).sum(1)
    return np.asarray(result.best_test, np.float64), full, first, again


def _optuna_search(optuna, sampler, valid, seconds, test, budget_s):
    """One optuna study on the table; returns (test accuracy of the choice, 200-epoch evals)."""
    state = dict(spent=0.0, best_valid=-np.inf, best_test=np.nan, full=0, done=False)

    def objective(trial):
        if state["done"]:
            raise optuna.TrialPruned()
        ops = [trial.suggest_categorical(f"e{i}", list(range(OPS))) for i in range(6)]
        code = int(np.dot(ops, OPS ** np.arange(5, -1, -1)))  # nb201.to_code: base 5
        low, high = seconds[0, code], seconds[1, code]
        if state["spent"] + low > budget_s:
            state["done"] = True
            trial.study.stop()
            raise optuna.TrialPruned()
        state["spent"] += low
        trial.report(float(valid[0, code]), 12)
        if trial.should_prune():
            raise optuna.TrialPruned()
        more = high - low  # continued to 200 epochs
        if state["spent"] + more > budget_s:
            state["done"] = True
            trial.study.stop()
            raise optuna.TrialPruned()
        state["spent"] += more
        state["full"] += 1
        value = float(valid[1, code])
        if value > state["best_valid"]:
            state["best_valid"], state["best_test"] = value, float(test[code])
        return value

    pruner = optuna.pruners.HyperbandPruner(min_resource=12, max_resource=200, reduction_factor=3)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    study.optimize(objective, n_trials=100_000)
    return state["best_test"], state["full"]


def _theirs(kind, objective, budget, seeds):
    try:
        import optuna
    except ImportError as e:  # the optional extra
        raise SystemExit("benchmarks/tabular_peer.py needs optuna: pip install 'jnas[peer]'") from e
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    valid = np.asarray(objective.fidelity_valid, np.float64)
    seconds = np.asarray(objective.fidelity_seconds, np.float64)
    test = np.asarray(objective.test, np.float64)
    tests, fulls = [], []
    t0 = time.perf_counter()
    for s in range(seeds):
        if kind == "tpe":
            sampler = optuna.samplers.TPESampler(seed=s)
        else:
            sampler = optuna.samplers.RandomSampler(seed=s)
        t, f = _optuna_search(optuna, sampler, valid, seconds, test, budget.value)
        tests.append(t)
        fulls.append(f)
    return np.asarray(tests), np.asarray(fulls), time.perf_counter() - t0, optuna.__version__


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--budget", type=int, default=100, help="x the mean 200-epoch time")
    parser.add_argument("--path", default=os.environ.get("JNAS_NB201_PATH"))
    parser.add_argument("--methods", default="hyperband,bohb,optuna_hyperband,optuna_tpe")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    runtime.tune_malloc()

    space = make_space({"name": "nb201"})
    table = space.load_table(args.path)
    objective = table.objective("cifar10")
    budget = tabular.make_budget(objective, args.budget)
    rows = []
    for method in args.methods.split(","):
        if method in ("hyperband", "bohb"):
            test, full, first, again = _ours(method, space, objective, budget, args.seeds)
            wall = f"{first:.1f} s ({again:.1f} s compiled)"
            who = "jnas"
        elif method in ("optuna_hyperband", "optuna_tpe"):
            kind = "tpe" if method == "optuna_tpe" else "random"
            test, full, first, version = _theirs(kind, objective, budget, args.seeds)
            wall, who = f"{first:.1f} s", f"optuna {version}"
        else:
            raise SystemExit(f"unknown method {method!r}")
        rows.append(
            dict(
                dataset="cifar10",
                method=method,
                library=who,
                seeds=args.seeds,
                mean_test_acc=float(test.mean()),
                std_test_acc=float(test.std(ddof=1)) if test.size > 1 else 0.0,
                mean_full_evals=float(full.mean()),
                wall=wall,
                wall_s=float(first),
            )
        )
        print(f"{method}: {rows[-1]['mean_test_acc']:.2f} ± {rows[-1]['std_test_acc']:.2f}, {wall}")
    print()
    print(f"budget {budget.value:,.0f} simulated s (= {args.budget} mean 200-epoch trainings)")
    header = "| dataset | method | library | seeds | test acc % (mean ± std) | 200-epoch evals |"
    print(header + " wall time |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['dataset']} | {r['method']} | {r['library']} | {r['seeds']} "
            f"| {r['mean_test_acc']:.2f} ± {r['std_test_acc']:.2f} | {r['mean_full_evals']:.1f} "
            f"| {r['wall']} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
