"""Random search: every architecture is drawn uniformly from the space (Li & Talwalkar, 2019).

Config options: none (no static options, empty params). The search keeps no memory beyond a
counter: the best architecture is picked from the history by whoever keeps it (the host loop,
or the scan of :func:`jnas.tabular.run_search`).

Example:
  >>> strategy, params = RandomSearch.from_config(space.spec, population_size=4)
  >>> state = strategy.init(jax.random.key(0), params)
  >>> archs, state = strategy.ask(jax.random.key(1), state, params)     # int32 [4, length]
  >>> state, metrics = strategy.tell(state, archs, rewards, params)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from jnas.spaces import discrete
from jnas.spaces.discrete import DecisionSpec
from jnas.strategies.base import (
    STRATEGIES,
    DiscreteStrategy,
    NoParams,
    keep_if_finite,
    member_keys,
)


class RandomSearchState(struct.PyTreeNode):
    """Attributes: ``num_told``, the rewards received so far (int32)."""

    num_told: jax.Array


@STRATEGIES.register("random", kind="discrete")
@dataclasses.dataclass(frozen=True)
class RandomSearch(DiscreteStrategy):
    """Uniform sampling of every decision; member ``i`` from ``fold_in(key, i)``.

    Attributes:
      spec: the decisions of the space (static).
      population_size: architectures per ``ask`` (static).
    """

    spec: DecisionSpec
    population_size: int = 1

    @property
    def default_params(self) -> NoParams:
        return NoParams()

    def init(self, key: jax.Array, params=None) -> RandomSearchState:
        del key, params
        return RandomSearchState(num_told=jnp.zeros((), jnp.int32))

    def ask(self, key: jax.Array, state: RandomSearchState, params=None):
        del params
        keys = member_keys(key, self.population_size)
        return jax.vmap(lambda k: discrete.sample_uniform(self.spec, k))(keys), state

    def tell(self, state: RandomSearchState, archs: jax.Array, rewards: jax.Array, params=None):
        """Counts the rewards; a non-finite reward leaves the state unchanged."""
        del archs, params
        rewards = jnp.asarray(rewards, jnp.float32)
        new = state.replace(num_told=state.num_told + rewards.shape[0])
        state = keep_if_finite(rewards, new, state)
        return state, {"num_told": state.num_told}
