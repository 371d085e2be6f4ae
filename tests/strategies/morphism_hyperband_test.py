"""Hyperband and successive halving over morphisms (jnas.strategies.morphism_hyperband): the
rungs against the paper's table, promotion against a brute force, the model budget by hand,
the edit texts' parser, and bad input named before anything runs."""

import itertools

import numpy as np
import pytest

from experiments.configs import morphism_bohb_tiny
from jnas.config import with_overrides
from jnas.errors import ConfigError
from jnas.spaces import morphism
from jnas.spaces.base import FidelityError
from jnas.spaces.graph import GraphSpace
from jnas.strategies import morphism_hyperband as mh
from jnas.strategies.multi_fidelity import hyperband_brackets
from jnas.validate import check_search_config

# Li et al., JMLR 2018, Table 1 (R = 81, eta = 3): per bracket s = 4..0, the n_i of its rungs.
PAPER = [[81, 27, 9, 3, 1], [34, 11, 3, 1], [15, 5, 1], [8, 2], [5]]


def _hyperband(**kw):
    return mh.MorphismSchedule.from_config("hyperband", dict(min_budget=1, max_budget=81, **kw))


def test_hyperband_rungs_are_the_papers_table():
    s = _hyperband(eta=3)
    assert s.budgets == (1.0, 3.0, 9.0, 27.0, 81.0)
    assert [[n for n, _ in b] for b in s.brackets()] == PAPER
    # One round per rung, in bracket order; bracket s starts at ladder index 4 - s.
    got = [(r.bracket, r.s, r.rung, r.level, r.size) for r in s.rungs]
    assert got == [(b, 4 - b, i, b + i, n) for b, ns in enumerate(PAPER) for i, n in enumerate(ns)]
    assert s.period == 15
    assert [r.new for r in s.rungs] == [r.rung == 0 for r in s.rungs]
    # Rounds cycle through the rungs; the bracket number counts on across cycles.
    assert s.rung_of(1) == (0, s.rungs[0]) and s.rung_of(15) == (4, s.rungs[14])
    assert s.rung_of(16) == (5, s.rungs[0]) and s.rung_of(21) == (6, s.rungs[5])
    with pytest.raises(ValueError, match="round 0"):
        s.rung_of(0)
    # m copies of each bracket share their rungs: n_0 doubles, later rungs floor(2 n_0 eta^-i).
    m2 = mh.MorphismSchedule("hyperband", s.budgets, 3.0, children_per_round=2)
    assert [r.size for r in m2.rungs][:5] == [162, 54, 18, 6, 2]
    assert [r.size for r in m2.rungs][5:9] == [68, 22, 7, 2]


def test_successive_halving_is_the_most_aggressive_bracket():
    s = mh.MorphismSchedule.from_config(
        "successive_halving", dict(min_budget=1, max_budget=9, eta=3)
    )
    assert s.brackets() == [hyperband_brackets(3, 3.0)[0]] == [[(9, 0), (3, 1), (1, 2)]]
    assert [(r.bracket, r.s, r.rung, r.level, r.size) for r in s.rungs] == [
        (0, 2, 0, 0, 9),
        (0, 2, 1, 1, 3),
        (0, 2, 2, 2, 1),
    ]
    assert s.rung_of(4) == (1, s.rungs[0])  # the bracket again
    n = mh.MorphismSchedule.from_config(
        "successive_halving", dict(min_budget=1, max_budget=9, eta=3, num_configs=20)
    )
    assert [r.size for r in n.rungs] == [20, 6, 2]


def test_promotion_keeps_exactly_the_top_fraction():
    s = _hyperband(eta=3)
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 8, 9, 10, 27):
        rewards = rng.choice([0.1, 0.2, 0.3, 0.5], size=n)  # ties on purpose
        rows = [{"id": 100 + i, "reward": float(r)} for i, r in enumerate(rewards)]
        rng.shuffle(rows)
        for size in (1, 3, 100):
            got = s.promote(rows, size)
            keep = min(size, max(1, n // 3))
            # brute force: the subsets of that size with the largest total reward, the
            # earliest ids among ties; best first.
            ranked = sorted(rows, key=lambda x: (-x["reward"], x["id"]))
            assert [x["id"] for x in got] == [x["id"] for x in ranked[:keep]]
            if n <= 10:
                best = max(
                    itertools.combinations(rows, keep),
                    key=lambda c: (sum(x["reward"] for x in c), -sum(x["id"] for x in c)),
                )
                assert sorted(x["id"] for x in got) == sorted(x["id"] for x in best)
    assert s.promote([], 3) == []


def test_the_model_budget_is_the_largest_with_enough_evaluations():
    budgets = (1.0, 2.0, 4.0)
    rows = [{"id": i, "budget": b} for i, b in enumerate([4.0, 1, 1, 1, 2, 2, 1, 4.0])]
    ids = lambda rs: [r["id"] for r in rs]
    assert ids(mh.model_rows(rows, budgets, 3)) == [1, 2, 3, 6]  # 4: two rows, 2: two
    assert ids(mh.model_rows(rows, budgets, 2)) == [0, 7]
    assert ids(mh.model_rows(rows, budgets, 5)) == [0, 7]  # none has 5: the largest with any
    assert ids(mh.model_rows(rows[1:4], budgets, 5)) == [1, 2, 3]
    assert mh.model_rows([], budgets, 3) == []


def test_edit_texts_parse_back():
    space = GraphSpace(max_layers=12, max_params=100_000)
    graph = space.start_graph()
    edits = morphism.possible_edits(space, graph)
    graph2 = morphism.apply_edit(space, graph, next(e for e in edits if e.kind == "deeper"))
    edits += morphism.possible_edits(space, graph2)
    assert {e.kind for e in edits} == set(morphism.Edit.KINDS)
    for e in edits:
        assert mh.parse_edit(str(e)) == e
    for bad in ("deeper(c0", "wider(c0)", "skip_add(c0, c1)", "shallower(c0)"):
        with pytest.raises(ValueError, match="not the text of a morphism edit"):
            mh.parse_edit(bad)


@pytest.mark.parametrize(
    "section, match",
    [
        (dict(eta=1.0), "eta must be > 1"),
        (dict(min_budget=8.0, max_budget=2.0), "min_budget 8.0 is above max_budget 2.0"),
        (dict(budget_resource="width"), "cannot judge a morphism search"),
        (dict(budget_resource="resolution"), "unknown budget_resource"),
        (dict(min_budget=1.0, max_budget=1.5, eta=1.1), "whole numbers >= 1"),
        (dict(min_points_in_model=0), "min_points_in_model must be an integer >= 1"),
        (dict(bogus=1), r"unknown option\(s\) \['bogus'\]"),
    ],
)
def test_bad_schedule_is_named(section, match):
    config = morphism_bohb_tiny.get_config()
    base = dict(config.hyperband.items())
    with pytest.raises((FidelityError, ValueError), match=match):
        mh.MorphismSchedule.from_config("hyperband", {**base, **section})
    # The config check names the section before anything is written or compiled.
    with config.unlocked():
        for k, v in section.items():
            config.hyperband[k] = v
    with pytest.raises(ConfigError, match=r"hyperband: .*" + match.split(" ")[0]):
        check_search_config(config)


def test_unknown_schedule_is_named():
    config = with_overrides(morphism_bohb_tiny.get_config(), {"search.schedule": "hyperbnd"})
    with pytest.raises(ConfigError, match="search.schedule.*'hyperbnd' is not None or one of"):
        check_search_config(config)
    assert mh.schedule_problems(with_overrides(config, {"search.schedule": None})) == []
