"""Regularized (aging) evolution (Real et al., AAAI 2019, Algorithm 1).

The population is a queue of the P most recent architectures. The first P proposals are drawn
uniformly; after that each proposal mutates one decision of the fittest of S individuals sampled
from the population (with replacement, as NAS-Bench-201's `R_EA.py`), and each reward pushes the
new individual in and the oldest out, whatever its fitness: "aging".

Here the queue is a ring buffer of P slots: the k-th told individual goes to slot k mod P, which
is the slot of the oldest once the population is full. NAS-Bench-201's setting is P=10, S=3.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from jnas.spaces import discrete
from jnas.spaces.discrete import DecisionSpec


@dataclasses.dataclass(frozen=True)
class EvolutionConfig:
    """Attributes: `population_size` (P) and `sample_size` (S, the tournament size)."""

    population_size: int = 10
    sample_size: int = 3

    @classmethod
    def make(cls, config=None) -> EvolutionConfig:
        """From None, an `EvolutionConfig`, or a mapping / `ConfigDict` of some of the fields."""
        if config is None or isinstance(config, cls):
            return config or cls()
        cfg = cls(**{f.name: config[f.name] for f in dataclasses.fields(cls) if f.name in config})
        if cfg.population_size < 1 or cfg.sample_size < 1:
            raise ValueError(f"population and sample sizes must be >= 1, got {cfg}")
        return cfg


class EvolutionState(struct.PyTreeNode):
    """Attributes:
    population: int32 `[P, length]`, the ring buffer of architectures.
    fitness: float32 `[P]`, their rewards.
    birth: int32 `[P]`, when each was told (-1 for an empty slot): the oldest has the smallest.
    num_told: int32, rewards received so far.
    spec, config: static.
    """

    population: jax.Array
    fitness: jax.Array
    birth: jax.Array
    num_told: jax.Array
    spec: DecisionSpec = struct.field(pytree_node=False)
    config: EvolutionConfig = struct.field(pytree_node=False)


def init(key: jax.Array, spec: DecisionSpec, config=None) -> EvolutionState:
    """The initial (empty) population.

    Args:
      key: a PRNG key (unused: the first P proposals are drawn in `ask`).
      spec: the space.
      config: `EvolutionConfig`, or a mapping / `ConfigDict` with `population_size`,
        `sample_size`, or None for NAS-Bench-201's P=10, S=3.

    Returns:
      An `EvolutionState`.
    """
    del key
    cfg = EvolutionConfig.make(config)
    p = cfg.population_size
    return EvolutionState(
        population=jnp.zeros((p, spec.length), jnp.int32),
        fitness=jnp.full((p,), -jnp.inf, jnp.float32),
        birth=jnp.full((p,), -1, jnp.int32),
        num_told=jnp.zeros((), jnp.int32),
        spec=spec,
        config=cfg,
    )


def ask(state: EvolutionState, key: jax.Array) -> tuple[EvolutionState, jax.Array]:
    """Proposes a random architecture while the population fills, then a mutated parent.

    Returns:
      `(state, arch)`, the state unchanged and an int32 `[length]` architecture.
    """
    cfg = state.config
    k_random, k_sample, k_mutate = jax.random.split(key, 3)
    random_arch = discrete.sample_uniform(state.spec, k_random)
    sample = jax.random.randint(k_sample, (cfg.sample_size,), 0, cfg.population_size)
    parent = sample[jnp.argmax(state.fitness[sample])]
    child = discrete.mutate(state.spec, k_mutate, state.population[parent])
    filling = state.num_told < cfg.population_size
    return state, jnp.where(filling, random_arch, child)


def tell(state: EvolutionState, arch: jax.Array, reward: jax.Array) -> EvolutionState:
    """Adds the architecture to the population and drops the oldest when it is full.

    A non-finite reward leaves the state unchanged (check rewards on the host first, with
    `jnas.strategies.discrete_registry.check_reward`, to get an error instead).
    """
    slot = state.num_told % state.config.population_size
    new = state.replace(
        population=state.population.at[slot].set(jnp.asarray(arch, jnp.int32)),
        fitness=state.fitness.at[slot].set(jnp.asarray(reward, jnp.float32)),
        birth=state.birth.at[slot].set(state.num_told),
        num_told=state.num_told + 1,
    )
    ok = jnp.isfinite(reward)
    return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, state)
