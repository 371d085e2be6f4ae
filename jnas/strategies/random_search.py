"""Random search: every architecture is drawn uniformly from the space (Li & Talwalkar, 2019).

Pure `init / ask / tell` over a state pytree, like the other discrete strategies
(`jnas.strategies.discrete_registry`); the search keeps no memory beyond a counter, because the
best architecture is picked from the history by whoever keeps it (the host loop, or the scan of
`jnas.tabular.run_search`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jnas.spaces import discrete
from jnas.spaces.discrete import DecisionSpec


class RandomSearchState(struct.PyTreeNode):
    """Attributes: `num_told` (rewards received so far) and the static `spec`."""

    num_told: jax.Array
    spec: DecisionSpec = struct.field(pytree_node=False)


def init(key: jax.Array, spec: DecisionSpec, config=None) -> RandomSearchState:
    """The initial state. Random search has no hyper-parameters; `key` and `config` are unused.

    Args:
      key: a PRNG key (unused; the interface is shared by all strategies).
      spec: the space.
      config: ignored.

    Returns:
      A `RandomSearchState`.
    """
    del key, config
    return RandomSearchState(num_told=jnp.zeros((), jnp.int32), spec=spec)


def ask(state: RandomSearchState, key: jax.Array) -> tuple[RandomSearchState, jax.Array]:
    """Proposes an architecture drawn uniformly: `(state, arch int32[length])`."""
    return state, discrete.sample_uniform(state.spec, key)


def tell(state: RandomSearchState, arch: jax.Array, reward: jax.Array) -> RandomSearchState:
    """Records a reward; a non-finite reward leaves the state unchanged."""
    del arch
    ok = jnp.isfinite(reward)
    return state.replace(num_told=state.num_told + ok.astype(jnp.int32))
