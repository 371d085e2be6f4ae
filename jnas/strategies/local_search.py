"""Local search (White, Nolen & Savani, UAI 2021, "Exploring the loss landscape in NAS").

Start from a random architecture; evaluate its neighbours (every architecture that differs in
exactly one decision) in a random order and move to the first one that is better; when none
of them is better (a local optimum), restart from a random architecture. White et al. find
this simple method competitive with far more complex ones on NAS-Bench-201.

A population of m members is the next m neighbours of the order (member ``i`` is neighbour
``ptr + i``); members past the last neighbour, and every member while there is no current
architecture (at the start, after a local optimum), are drawn uniformly from
``fold_in(key, i)`` and are the candidates of the restart, which starts from the best of them.
The order of the neighbours is drawn from ``fold_in(key, population_size)`` each time the
search moves. ``tell`` takes the first better neighbour in member order (so with m = 1 this is
the sequential algorithm exactly).

Config options (``LocalSearch.from_config(spec, m, section)``): none; no traced params.

This module is the worked example of a new discrete strategy: one class in the evosax shape,
registered by name, and it runs in the tabular scan (``experiments/configs/nb201_local_search.py``)
and in the runner with real child training (``--config.strategy=local_search``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
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


class LocalSearchState(struct.PyTreeNode):
    """Attributes:
    current: int32 ``[length]``, the architecture the search stands on.
    fitness: float32, its reward.
    has_current: bool, False at the start and after a local optimum (the next ask restarts).
    order: int32 ``[N]``, the order in which the current architecture's N neighbours are asked.
    ptr: int32, how many of them have been told.
    num_told: int32, rewards received so far.
    num_restarts: int32, local optima reached.
    """

    current: jax.Array
    fitness: jax.Array
    has_current: jax.Array
    order: jax.Array
    ptr: jax.Array
    num_told: jax.Array
    num_restarts: jax.Array


@STRATEGIES.register("local_search", kind="discrete")
@dataclasses.dataclass(frozen=True)
class LocalSearch(DiscreteStrategy):
    """First-improvement local search with random restarts (see the module docstring).

    Attributes:
      spec: the decisions of the space (static).
      population_size: architectures per ``ask`` (static).
    """

    spec: DecisionSpec
    population_size: int = 1

    def __post_init__(self):
        if self.population_size < 1:
            raise ValueError(f"population_size must be >= 1, got {self.population_size}")
        if self.num_neighbours == 0:
            raise ValueError("no decision of this space has two or more values: no neighbours")

    @property
    def _moves(self) -> tuple[np.ndarray, np.ndarray]:
        """Neighbour k changes position ``pos[k]`` by ``shift[k]`` (mod its number of values)."""
        pairs = [(p, s) for p, n in enumerate(self.spec.num_choices) for s in range(1, n)]
        pos, shift = np.asarray(pairs, np.int32).reshape(-1, 2).T
        return pos, shift

    @property
    def num_neighbours(self) -> int:
        """N = sum over positions of (values - 1)."""
        return sum(n - 1 for n in self.spec.num_choices)

    @property
    def default_params(self) -> NoParams:
        return NoParams()

    def init(self, key: jax.Array, params=None) -> LocalSearchState:
        del key, params
        zero = jnp.zeros((), jnp.int32)
        return LocalSearchState(
            current=jnp.zeros((self.spec.length,), jnp.int32),
            fitness=jnp.full((), -jnp.inf, jnp.float32),
            has_current=jnp.zeros((), bool),
            order=jnp.arange(self.num_neighbours, dtype=jnp.int32),
            ptr=zero,
            num_told=zero,
            num_restarts=zero,
        )

    def neighbour(self, arch: jax.Array, k: jax.Array) -> jax.Array:
        """The k-th neighbour of ``arch`` (``0 <= k < num_neighbours``)."""
        pos, shift = (jnp.asarray(x)[k] for x in self._moves)
        n = jnp.asarray(self.spec.num_choices, jnp.int32)[pos]
        return arch.at[pos].set((arch[pos] + shift) % n)

    def _is_neighbour(self, state: LocalSearchState) -> jax.Array:
        j = state.ptr + jnp.arange(self.population_size)
        return state.has_current & (j < self.num_neighbours)

    def ask(self, key: jax.Array, state: LocalSearchState, params=None):
        """The next neighbours in the order, or random architectures (see the module doc)."""
        del params
        n = self.num_neighbours
        fresh = jax.random.permutation(jax.random.fold_in(key, self.population_size), n)
        order = jnp.where(state.ptr == 0, fresh.astype(jnp.int32), state.order)
        state = state.replace(order=order)
        keys = member_keys(key, self.population_size)
        randoms = jax.vmap(lambda k: discrete.sample_uniform(self.spec, k))(keys)
        j = jnp.minimum(state.ptr + jnp.arange(self.population_size), n - 1)
        neighbours = jax.vmap(lambda k: self.neighbour(state.current, k))(order[j])
        archs = jnp.where(self._is_neighbour(state)[:, None], neighbours, randoms)
        return archs, state

    def tell(self, state: LocalSearchState, archs: jax.Array, rewards: jax.Array, params=None):
        """Moves to the first better neighbour, or restarts after a local optimum.

        A non-finite reward leaves the state unchanged.

        Returns:
          ``(state, metrics)``; metrics: ``fitness`` (of the current architecture),
          ``num_restarts``, ``num_told``.
        """
        del params
        archs = jnp.asarray(archs, jnp.int32)
        rewards = jnp.asarray(rewards, jnp.float32)
        is_nb = self._is_neighbour(state)
        better = is_nb & (rewards > state.fitness)
        first = jnp.argmax(better)
        exhausted = state.has_current & (state.ptr + jnp.sum(is_nb) >= self.num_neighbours)
        restart = ~jnp.any(better) & (~state.has_current | exhausted)
        is_rand = ~is_nb
        best_rand = jnp.argmax(jnp.where(is_rand, rewards, -jnp.inf))
        has_rand = jnp.any(is_rand)
        move = jnp.any(better) | (restart & has_rand)
        pick = jnp.where(jnp.any(better), first, best_rand)
        zero = jnp.zeros((), jnp.int32)
        new = state.replace(
            current=jnp.where(move, archs[pick], state.current),
            fitness=jnp.where(move, rewards[pick], state.fitness),
            has_current=move | (state.has_current & ~restart),
            ptr=jnp.where(move | restart, zero, state.ptr + jnp.sum(is_nb).astype(jnp.int32)),
            num_told=state.num_told + rewards.shape[0],
            num_restarts=state.num_restarts + exhausted.astype(jnp.int32) * restart,
        )
        state = keep_if_finite(rewards, new, state)
        metrics = {
            "fitness": state.fitness,
            "num_restarts": state.num_restarts,
            "num_told": state.num_told,
        }
        return state, metrics
