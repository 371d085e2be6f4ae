"""benchmarks/tabular_peer.py's syne-tune peer: its brackets are jnas's, and its ask/tell loop
runs syne-tune's synchronous Hyperband with the cost model and budget rule of the others.

The loop tests need the optional extra (syne-tune 0.14.2, see the script's docstring), which CI
does not install: they are marked ``slow`` (the default suite runs ``-m 'not slow'``) and fail,
not skip, where syne-tune is missing. ``python -m pytest -q -m slow tests/tabular/peer_test.py``.
"""

import importlib.util
import os

import numpy as np
import pytest

from jnas.strategies.multi_fidelity import hyperband_brackets

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _peer():
    path = os.path.join(REPO, "benchmarks", "tabular_peer.py")
    spec = importlib.util.spec_from_file_location("tabular_peer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_syne_tune_rungs_are_jnas_brackets():
    peer = _peer()
    budgets = peer.LADDER["budgets"]
    ours = hyperband_brackets(len(budgets), peer.LADDER["eta"])
    # (members, ladder index) -> (members, epochs): syne-tune's RungSystemsPerBracket
    assert peer.SYNE_TUNE_RUNGS == [[(n, int(budgets[i])) for n, i in b] for b in ours]
    # Li et al. by hand, s_max = 1, eta = 3: s = 1 asks ceil(2/2 * 3) = 3 at 12 epochs and
    # promotes floor(3/3) = 1 to 200; s = 0 asks ceil(2/1) = 2 at 200
    assert peer.SYNE_TUNE_RUNGS == [[(3, 12), (1, 200)], [(2, 200)]]


def _cycle_reference(budget_s, cost):
    """The evaluations that fit in ``budget_s`` on a table where every architecture costs 12 s
    at 12 epochs and 200 s at 200 epochs: the brackets repeat (3 at 12, the best 1 at 200, 2
    at 200), a promotion costs 188 s ("resume") or 200 s ("scratch"), and the first
    evaluation that does not fit ends the search. Returns (levels, charges)."""
    cycle = [(12, 12.0)] * 3 + [(200, 188.0 if cost == "resume" else 200.0)] + [(200, 200.0)] * 2
    levels, charges, spent = [], [], 0.0
    while True:
        for level, charge in cycle:
            if spent + charge > budget_s:
                return levels, charges
            spent += charge
            levels.append(level)
            charges.append(charge)


@pytest.mark.peer  # needs the optional extra and syne-tune (BUILD.md), which CI does not install
@pytest.mark.parametrize(
    "searcher,cost,budget_s",
    [("random", "resume", 2100.0), ("random", "scratch", 2100.0), ("kde", "resume", 12000.0)],
)
def test_syne_tune_loop_follows_the_brackets_and_the_budget(searcher, cost, budget_s):
    peer = _peer()
    _, scheduler_cls = peer._import_syne_tune()
    n = peer.OPS**6
    rng = np.random.default_rng(0)
    valid = np.stack([rng.uniform(10, 80, n), rng.uniform(50, 95, n)])
    seconds = np.stack([np.full(n, 12.0), np.full(n, 200.0)])
    test = rng.uniform(50, 95, n)
    trace = []
    best_test, full, distinct = peer._syne_tune_search(
        scheduler_cls, searcher, 3, valid, seconds, test, budget_s, cost, trace=trace
    )
    levels, charges = _cycle_reference(budget_s, cost)
    assert [t[2] for t in trace] == levels
    assert [t[3] for t in trace] == charges
    assert full == levels.count(200)
    # each promotion is the best of its bracket's three 12-epoch evaluations
    for start in range(0, len(trace) - 3, 6):
        rung = trace[start : start + 3]
        promoted = trace[start + 3]
        assert promoted[0] == max(rung, key=lambda t: valid[0, t[1]])[0]
        assert promoted[1] == max(rung, key=lambda t: valid[0, t[1]])[1]
    # the choice: the best 200-epoch validation accuracy; its test accuracy is reported
    evaluated = [t[1] for t in trace if t[2] == 200]
    assert best_test == test[max(evaluated, key=lambda c: valid[1, c])]
    # new trials never repeat an architecture (syne-tune's searchers filter duplicates)
    new = [t[1] for i, t in enumerate(trace) if i % 6 != 3]  # all but the promotions
    assert len(set(new)) == len(new) and distinct == len(set(evaluated))
