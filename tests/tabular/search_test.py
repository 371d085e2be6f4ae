"""Tests of `jnas.tabular.run_search` on a toy space with a table (no benchmark file needed)."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jnas import tabular
from jnas.spaces import discrete
from jnas.spaces.base import SearchSpace
from jnas.spaces.discrete import Categorical, DecisionSpec
from jnas.strategies.base import DiscreteStrategy, NoParams, make_strategy

TARGET = np.array([3, 1, 0, 2, 3, 1, 2, 0])


@dataclasses.dataclass(frozen=True)
class ToySpace(SearchSpace):
    """8 decisions of 4 values (65,536 architectures) scored by how many match TARGET."""

    name = "toy"

    @property
    def spec(self) -> DecisionSpec:
        return DecisionSpec(tuple(Categorical(f"d{i}", tuple(range(4))) for i in range(8)))

    def encode(self, obj):
        return self.spec.validate(obj)

    def decode(self, arch):
        return tuple(self.spec.validate(arch).tolist())

    def to_text(self, arch):
        return "".join(str(x) for x in self.decode(arch))

    def parse(self, text):
        return self.spec.validate([int(c) for c in text])

    def network(self, arch, *, num_classes, fidelity=None):
        raise NotImplementedError("a toy table has no networks")

    def load_table(self, path=None):
        del path
        archs = np.asarray(jax.vmap(lambda c: discrete.from_code(self.spec, c))(
            jnp.arange(self.spec.size)))  # fmt: skip
        matches = (archs == TARGET).sum(axis=1)
        valid = 100.0 * matches / 8
        return tabular.Objective(
            valid=jnp.asarray(valid, jnp.float32),
            test=jnp.asarray(valid - 1.0, jnp.float32),
            seconds=jnp.asarray(1.0 + matches, jnp.float32),
            dataset="toy",
            valid_column="matches",
            test_column="matches - 1",
        )


@dataclasses.dataclass(frozen=True)
class NoTableSpace(ToySpace):
    load_table = None  # a space without a table


SPACE = ToySpace()
OBJECTIVE = SPACE.load_table()


def test_a_space_without_a_table_is_rejected():
    assert SPACE.has_table and not NoTableSpace().has_table
    budget = tabular.make_budget(OBJECTIVE, 5, "queries")
    with pytest.raises(ValueError, match="NoTableSpace has no table"):
        tabular.run_search("random", NoTableSpace(), OBJECTIVE, budget, jax.random.key(0))
    short = OBJECTIVE.replace(valid=OBJECTIVE.valid[:10])
    with pytest.raises(ValueError, match="10 rows but the space 65536"):
        tabular.run_search("random", SPACE, short, budget, jax.random.key(0))


def test_local_search_beats_random_search_on_a_unimodal_table():
    """One improving neighbour per wrong decision: local search climbs, random search guesses.

    With 60 queries random search's best matches about 5 of 8 (P(>= 6) = 0.004 per draw);
    first-improvement local search needs about 24 (1/7 + ... + 1/2) = 38 queries from a typical
    start to reach all 8, and about 20 more to the neighbours of the optimum.
    """
    budget = tabular.make_budget(OBJECTIVE, 60, "queries")
    runs = {
        name: tabular.run_search(name, SPACE, OBJECTIVE, budget, jax.random.key(0), num_seeds=32)
        for name in ("random", "local_search")
    }
    rs, ls = (np.asarray(runs[n].best_valid) / 12.5 for n in ("random", "local_search"))
    assert 4.0 <= rs.mean() <= 6.0 and rs.max() <= 7
    assert ls.mean() >= 7.5 and np.mean(ls == 8) >= 0.75
    assert ls.mean() > rs.mean() + 2
    # The test column is reported for the best-validation choice.
    np.testing.assert_allclose(runs["local_search"].best_test, runs["local_search"].best_valid - 1)


@struct.dataclass
class SweepState:
    arch: jax.Array


@dataclasses.dataclass(frozen=True)
class CoordinateSweep(DiscreteStrategy):
    """An unregistered strategy: keep the best value of one decision at a time, in order."""

    spec: DecisionSpec
    population_size: int = 4

    @property
    def default_params(self):
        return NoParams()

    def init(self, key, params=None):
        del key, params
        return SweepState(arch=jnp.zeros((self.spec.length,), jnp.int32)), jnp.int32(0)

    def ask(self, key, state, params=None):
        del key, params
        sweep, pos = state
        archs = jnp.tile(sweep.arch, (4, 1)).at[:, pos % self.spec.length].set(jnp.arange(4))
        return archs, state

    def tell(self, state, archs, rewards, params=None):
        del params
        sweep, pos = state
        return (SweepState(arch=archs[jnp.argmax(rewards)]), pos + 1), {}


def test_an_unregistered_strategy_object_runs_and_params_may_differ_per_seed():
    budget = tabular.make_budget(OBJECTIVE, 32, "queries")
    result = tabular.run_search(CoordinateSweep(SPACE.spec), SPACE, OBJECTIVE, budget,
                                jax.random.key(0))  # fmt: skip
    assert float(result.best_valid) == 100.0  # 8 sweeps of 4 find the target
    # Per-seed params: each seed's search equals a separate run with that seed's key.
    strategy, params = make_strategy("reinforce", SPACE.spec, 2, {"hidden_size": 6})
    lrs = jnp.array([0.002, 0.2], jnp.float32)
    key, budget = jax.random.key(1), tabular.make_budget(OBJECTIVE, 10)
    both = tabular.run_search(strategy, SPACE, OBJECTIVE, budget, key,
                              params=params.replace(learning_rate=lrs), num_seeds=2)  # fmt: skip
    assert budget.unit == "seconds"
    for s, seed_key in enumerate(jax.random.split(key, 2)):
        one = tabular.run_search(strategy, SPACE, OBJECTIVE, budget, seed_key,
                                 params=params.replace(learning_rate=lrs[s]))  # fmt: skip
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[s], both), one, rtol=1e-5)
    shared = tabular.run_search(strategy, SPACE, OBJECTIVE, budget, key, params=params,
                                num_seeds=2)  # fmt: skip
    assert not np.array_equal(shared.trace["codes"][1], both.trace["codes"][1])
    with pytest.raises(ValueError, match=r"neither shared.*num_seeds = 3"):
        tabular.run_search(strategy, SPACE, OBJECTIVE, budget, key,
                           params=params.replace(learning_rate=lrs), num_seeds=3)  # fmt: skip
