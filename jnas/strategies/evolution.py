"""Regularized (aging) evolution (Real et al., AAAI 2019, Algorithm 1).

The pool is a queue of the P most recent architectures. While it fills, proposals are drawn
uniformly; after that each proposal mutates one decision of the fittest of S individuals
sampled from the pool (with replacement, as NAS-Bench-201's ``R_EA.py``), and each reward
pushes the new individual in and the oldest out, whatever its fitness: "aging".

A population of m members is m proposals from the same pool (member ``i`` from
``fold_in(key, i)``), told in order: member 0 is pushed first. With m = 1 this is Real et
al.'s one-at-a-time loop. The queue is a ring buffer of P slots: the k-th told individual goes
to slot k mod P, which is the slot of the oldest once the pool is full.

Config options (``Evolution.from_config(spec, m, section)``): ``pool_size`` (P) and
``sample_size`` (S, the tournament size) are static (they fix shapes); there are no traced
params. NAS-Bench-201's setting is P = 10, S = 3.
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


class EvolutionState(struct.PyTreeNode):
    """Attributes:
    pool: int32 ``[P, length]``, the ring buffer of architectures.
    fitness: float32 ``[P]``, their rewards.
    birth: int32 ``[P]``, when each was told (-1 for an empty slot): the oldest has the smallest.
    num_told: int32, rewards received so far.
    """

    pool: jax.Array
    fitness: jax.Array
    birth: jax.Array
    num_told: jax.Array


@STRATEGIES.register("evolution", kind="discrete")
@dataclasses.dataclass(frozen=True)
class Evolution(DiscreteStrategy):
    """Aging evolution (see the module docstring).

    Attributes:
      spec: the decisions of the space (static).
      population_size: proposals per ``ask`` (static).
      pool_size: P, the aging population (static).
      sample_size: S, the tournament size (static).
    """

    spec: DecisionSpec
    population_size: int = 1
    pool_size: int = 10
    sample_size: int = 3
    STATIC = ("pool_size", "sample_size")

    def __post_init__(self):
        if self.population_size < 1 or self.pool_size < 1 or self.sample_size < 1:
            raise ValueError(
                "population_size, pool_size and sample_size must be >= 1, got "
                f"{self.population_size}, {self.pool_size}, {self.sample_size}"
            )

    @property
    def default_params(self) -> NoParams:
        return NoParams()

    def init(self, key: jax.Array, params=None) -> EvolutionState:
        """The empty pool (``key`` is unused: the first P proposals are drawn in ``ask``)."""
        del key, params
        p = self.pool_size
        return EvolutionState(
            pool=jnp.zeros((p, self.spec.length), jnp.int32),
            fitness=jnp.full((p,), -jnp.inf, jnp.float32),
            birth=jnp.full((p,), -1, jnp.int32),
            num_told=jnp.zeros((), jnp.int32),
        )

    def _propose(self, state: EvolutionState, key: jax.Array) -> jax.Array:
        k_random, k_sample, k_mutate = jax.random.split(key, 3)
        random_arch = discrete.sample_uniform(self.spec, k_random)
        sample = jax.random.randint(k_sample, (self.sample_size,), 0, self.pool_size)
        parent = sample[jnp.argmax(state.fitness[sample])]
        child = discrete.mutate(self.spec, k_mutate, state.pool[parent])
        return jnp.where(state.num_told < self.pool_size, random_arch, child)

    def ask(self, key: jax.Array, state: EvolutionState, params=None):
        """A random architecture per member while the pool fills, then mutated parents.

        Returns:
          ``(archs int32 [population_size, length], state)``, the state unchanged.
        """
        del params
        keys = member_keys(key, self.population_size)
        return jax.vmap(lambda k: self._propose(state, k))(keys), state

    def tell(self, state: EvolutionState, archs: jax.Array, rewards: jax.Array, params=None):
        """Pushes the members in order, each dropping the oldest once the pool is full.

        A non-finite reward leaves the state unchanged (check rewards on the host first, with
        :func:`jnas.strategies.base.check_reward`, to get an error instead).

        Returns:
          ``(state, metrics)``; metrics: ``num_told`` and ``best_in_pool`` (the pool's best
          fitness, -inf while it is empty).
        """
        del params
        rewards = jnp.asarray(rewards, jnp.float32)

        def push(s, member):
            arch, reward = member
            slot = s.num_told % self.pool_size
            return s.replace(
                pool=s.pool.at[slot].set(jnp.asarray(arch, jnp.int32)),
                fitness=s.fitness.at[slot].set(reward),
                birth=s.birth.at[slot].set(s.num_told),
                num_told=s.num_told + 1,
            ), None

        members = (jnp.asarray(archs, jnp.int32), rewards)
        if rewards.shape[0] == 1:  # no loop of one step (cheaper inside a tabular scan)
            new, _ = push(state, jax.tree.map(lambda x: x[0], members))
        else:
            new, _ = jax.lax.scan(push, state, members)
        state = keep_if_finite(rewards, new, state)
        return state, {"num_told": state.num_told, "best_in_pool": jnp.max(state.fitness)}
