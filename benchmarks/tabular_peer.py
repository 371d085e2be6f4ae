"""jnas's Hyperband and BOHB beside optuna's and syne-tune's on the NAS-Bench-201 table.

  pip install 'jnas[peer]'   # optuna (and syne-tune's requirements): an optional extra
  pip install --no-deps syne-tune==0.14.2   # only for the syne_tune_* methods (see below)
  JNAS_NB201_PATH=/path/to/nb201.csv.gz python benchmarks/tabular_peer.py [--seeds=100]
      [--methods=hyperband,bohb,bohb_unit,optuna_hyperband,optuna_tpe,syne_tune_hyperband,...]

Same table, fidelities and budget for both sides (CIFAR-10, the only data set of the table
with two fidelities and training times): a candidate is judged at 12 epochs
(``c10_valid_acc_12``) or 200 epochs (``c10_valid_acc``); each search gets 100 x the mean
200-epoch training time in simulated seconds (``jnas.tabular.make_budget``); an evaluation
that would exceed the remaining time is not counted and ends the search; the final choice is
the best 200-epoch validation accuracy, and its 200-epoch test accuracy (``c10_test_acc``) is
reported. Seed s of optuna is ``sampler seed = s``; ours are ``run_search``'s ``num_seeds``.

* **jnas** (``experiments/configs/nb201_multi_fidelity.py``'s options): ``hyperband`` and
  ``bohb`` on the ladder (12, 200), eta 3, all seeds as one vmapped scan; ``bohb_unit``:
  BOHB with syne-tune's two choices (bandwidths on index / c, no repeated proposal;
  ``codes="unit", exclude_observed=True``). Each evaluation trains from scratch at its
  budget (HpBandSter's model): a promoted candidate costs 12 + 200 epochs.
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
* **syne-tune** (Salinas et al., AutoML 2022), 0.14.2, the last release with its synchronous
  Hyperband family (0.15 removed it; 0.14.2 pins numpy<1.27 but runs on numpy 2 here, so it is
  installed with ``--no-deps``): ``SynchronousHyperbandScheduler``, the class of
  ``SyncHyperband`` (``searcher="random"``) and ``SyncBOHB`` (``searcher="kde"``: syne-tune's
  port of HpBandSter's multi-fidelity KDE), with the rung systems given
  (``SYNE_TUNE_RUNGS``: jnas's brackets; ``SyncHyperband(grace_period=12,
  reduction_factor=3, max_resource_level=200)`` would put rungs at 12, 36, 108 and 200
  epochs, which the table does not have). An ask/tell loop with one worker
  (``_syne_tune_search``): no simulator backend, whose blackbox and ``Tuner`` would add a
  results store and a time-based stopping rule without changing a decision; the loop applies
  the budget rule above exactly. Seed s is ``random_seed = s``; ``points_to_evaluate=[]``
  (syne-tune's default would start every seed at one "midpoint" architecture).
  ``syne_tune_hyperband`` / ``syne_tune_bohb`` charge a promoted trial as optuna's (it
  resumes from its 12-epoch checkpoint, as syne-tune's simulator backend does: 200 epochs in
  all); ``syne_tune_hyperband_scratch`` / ``syne_tune_bohb_scratch`` as jnas's (12 + 200).

Prints one Markdown table: per method, mean ± std test accuracy over seeds, the mean number
of 200-epoch evaluations, and the wall time of all seeds (ours: the first call, compilation
included, and a second, compiled call; optuna, syne-tune: one process, one seed after another).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

import jax
import numpy as np

from jnas import runtime, tabular
from jnas.spaces.base import make_space
from jnas.strategies.base import make_strategy

LADDER = dict(budgets=(12.0, 200.0), eta=3.0)
OPS = 5  # NAS-Bench-201: five ops per edge


# jnas's methods: the strategy and its options beside the ladder. ``bohb_unit``: BOHB with
# syne-tune's encoding of categorical values (bandwidths on index / c) and no repeated proposal.
OURS = {
    "hyperband": ("hyperband", {}),
    "bohb": ("bohb", {}),
    "bohb_unit": ("bohb", dict(codes="unit", exclude_observed=True)),
}


def _ours(method, space, objective, budget, seeds):
    name, options = OURS[method]
    strategy, params = make_strategy(name, space.spec, 1, dict(LADDER, **options))

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


# syne-tune's synchronous Hyperband on the table's two fidelities: the rung systems that
# ``SynchronousHyperbandRungSystem.geometric`` gives for s_max = 1 and eta = 3 (bracket 0:
# 3 at 12 epochs -> best 1 at 200; bracket 1: 2 at 200), which are jnas's brackets for
# budgets (12, 200) and eta 3. ``SyncHyperband`` / ``SyncBOHB`` build their rungs with that
# factory from (grace_period, reduction_factor, max_resource_level) only, which puts rungs at
# 12, 36, 108 and 200 epochs for (12, 3, 200); a fixed ladder needs their base class,
# ``SynchronousHyperbandScheduler``, with ``bracket_rungs`` given (and the same ``searcher``).
SYNE_TUNE_RUNGS = [[(3, 12), (1, 200)], [(2, 200)]]
SYNE_TUNE_VERSION = "0.14.2"  # the last release with SyncHyperband / SyncBOHB
# method -> (searcher, cost model): "random" is SyncHyperband's searcher, "kde" SyncBOHB's
SYNE_TUNE_METHODS = {
    "syne_tune_hyperband": ("random", "resume"),
    "syne_tune_bohb": ("kde", "resume"),
    "syne_tune_hyperband_scratch": ("random", "scratch"),
    "syne_tune_bohb_scratch": ("kde", "scratch"),
}


def _import_syne_tune():
    try:
        import syne_tune
        from syne_tune.optimizer.schedulers.synchronous import SynchronousHyperbandScheduler
    except ImportError as e:  # the optional extra, or a release without the synchronous family
        raise SystemExit(
            "benchmarks/tabular_peer.py's syne_tune methods need syne-tune's synchronous "
            f"Hyperband (removed after {SYNE_TUNE_VERSION}): pip install 'jnas[peer]' && "
            f"pip install --no-deps syne-tune=={SYNE_TUNE_VERSION}"
        ) from e
    for name in ("syne_tune", "syne_tune.optimizer"):  # its per-trial INFO lines
        logging.getLogger(name).setLevel(logging.WARNING)
    return syne_tune, SynchronousHyperbandScheduler


def _syne_tune_search(
    scheduler_cls, searcher, seed, valid, seconds, test, budget_s, cost, trace=None, options=None
):
    """One syne-tune tuning on the table, an ask/tell loop with one worker.

    ``scheduler.suggest`` gives a new trial (its config has the rung level in ``epochs``) or a
    paused trial to resume at the next level; the loop looks the level up and reports it with
    ``on_trial_result`` (the scheduler answers PAUSE at every rung level, the last included, so
    ``on_trial_complete``, which would hand the searcher the same result again, is not called:
    syne-tune's own ``Tuner`` does not call it for a paused trial either). ``cost`` is
    "resume" (a promoted trial continues from its 12-epoch checkpoint: 200 epochs in all, as
    optuna's and as syne-tune's simulator backend charges) or "scratch" (12 + 200, jnas's and
    HpBandSter's model). Returns (test accuracy of the choice, number of 200-epoch
    evaluations, number of distinct architectures evaluated at 200 epochs); ``trace``, a list,
    receives (trial id, architecture code, epochs, simulated seconds charged) per evaluation;
    ``options`` go to the searcher (``search_options``: e.g. the KDE's ``min_bandwidth``),
    except ``"bandwidth_on_codes": true``: the KDE's bandwidths as HpBandSter's, the normal
    reference rule on category indices 0..4 (syne-tune's encoding is index / 5, which makes
    them 5 times smaller), for measuring what that difference does.
    """
    from datetime import datetime

    from syne_tune.backend.trial_status import Trial
    from syne_tune.config_space import choice

    options = dict(options or {})
    on_codes = options.pop("bandwidth_on_codes", False)
    config_space = {f"e{i}": choice(list(range(OPS))) for i in range(6)}
    config_space["epochs"] = LADDER["budgets"][-1]
    scheduler = scheduler_cls(
        config_space,
        bracket_rungs=SYNE_TUNE_RUNGS,
        searcher=searcher,
        search_options={"debug_log": False, **options},
        metric="valid",
        mode="max",
        resource_attr="epoch",
        max_resource_attr="epochs",
        random_seed=seed,
        points_to_evaluate=[],  # None would start every seed at the same "midpoint" config
    )
    if on_codes:
        searcher_ = scheduler.searcher
        fit = searcher_._train_kde

        def fit_on_codes(data, targets):  # statsmodels' normal reference rule on the codes
            models = fit(data, targets)
            for kde in models or ():
                n, k = kde.data.shape
                bw = 1.06 * np.std(kde.data * OPS, axis=0) * n ** (-1.0 / (4 + k))
                # statsmodels bounds an unordered bandwidth at 1, syne-tune at min_bandwidth
                kde.bw = np.clip(np.minimum(bw, 1.0), searcher_.min_bandwidth, None)
            return models

        searcher_._train_kde = fit_on_codes
    level_index = {int(b): i for i, b in enumerate(LADDER["budgets"])}
    trials, trained = {}, {}
    spent, best_valid, best_test, full, distinct = 0.0, -np.inf, np.nan, 0, set()
    while True:
        suggestion = scheduler.suggest(len(trials))
        if suggestion is None:  # not reached on this space (15,625 configs)
            break
        if suggestion.spawn_new_trial_id:
            trial = Trial(len(trials), suggestion.config, datetime.now())
            trials[trial.trial_id] = trial
            scheduler.on_trial_add(trial)
        else:
            trial = trials[suggestion.checkpoint_trial_id]
        config = suggestion.config or trial.config
        level = int(config["epochs"])
        code = int(np.dot([config[f"e{i}"] for i in range(6)], OPS ** np.arange(5, -1, -1)))
        at = level_index[level]
        charge = seconds[at, code]
        if cost == "resume" and trial.trial_id in trained:
            charge -= seconds[level_index[trained[trial.trial_id]], code]
        if spent + charge > budget_s:  # not counted; the search ends
            break
        spent += charge
        trained[trial.trial_id] = level
        if trace is not None:
            trace.append((trial.trial_id, code, level, charge))
        value = float(valid[at, code])
        scheduler.on_trial_result(trial, {"valid": value, "epoch": level})
        if at == len(level_index) - 1:
            full += 1
            distinct.add(code)
            if value > best_valid:
                best_valid, best_test = value, float(test[code])
    return best_test, full, len(distinct)


def _syne_tune(searcher, objective, budget, seeds, cost, options=None):
    syne_tune, scheduler_cls = _import_syne_tune()
    valid = np.asarray(objective.fidelity_valid, np.float64)
    seconds = np.asarray(objective.fidelity_seconds, np.float64)
    test = np.asarray(objective.test, np.float64)
    tests, fulls = [], []
    t0 = time.perf_counter()
    for s in range(seeds):
        t, f, _ = _syne_tune_search(
            scheduler_cls, searcher, s, valid, seconds, test, budget.value, cost, options=options
        )
        tests.append(t)
        fulls.append(f)
    return np.asarray(tests), np.asarray(fulls), time.perf_counter() - t0, syne_tune.__version__


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--budget", type=int, default=100, help="x the mean 200-epoch time")
    parser.add_argument("--path", default=os.environ.get("JNAS_NB201_PATH"))
    parser.add_argument(
        "--methods",
        default="hyperband,bohb,bohb_unit,optuna_hyperband,optuna_tpe",
        help="comma-separated; also " + ", ".join(SYNE_TUNE_METHODS),
    )
    parser.add_argument("--json", default=None, help="also write the rows here")
    parser.add_argument(
        "--syne_tune_options",
        type=json.loads,
        default=None,
        help="JSON, passed to syne-tune's searcher, e.g. '{\"min_bandwidth\": 0.001}'",
    )
    args = parser.parse_args()
    runtime.tune_malloc()

    space = make_space({"name": "nb201"})
    table = space.load_table(args.path)
    objective = table.objective("cifar10")
    budget = tabular.make_budget(objective, args.budget)
    rows = []
    for method in args.methods.split(","):
        if method in OURS:
            test, full, first, again = _ours(method, space, objective, budget, args.seeds)
            wall = f"{first:.1f} s ({again:.1f} s compiled)"
            who = "jnas"
        elif method in ("optuna_hyperband", "optuna_tpe"):
            kind = "tpe" if method == "optuna_tpe" else "random"
            test, full, first, version = _theirs(kind, objective, budget, args.seeds)
            wall, who = f"{first:.1f} s", f"optuna {version}"
        elif method in SYNE_TUNE_METHODS:
            searcher, cost = SYNE_TUNE_METHODS[method]
            test, full, first, version = _syne_tune(
                searcher, objective, budget, args.seeds, cost, args.syne_tune_options
            )
            wall, who = f"{first:.1f} s", f"syne-tune {version}"
            if args.syne_tune_options:
                who += f" {json.dumps(args.syne_tune_options)}"
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
    runtime.relaunch()  # jnas's malloc settings from the start (JNAS_MALLOC=0: leave it)
    main()
