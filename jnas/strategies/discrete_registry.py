"""The discrete (black-box and RL) search strategies by name, and host-side reward checks.

Each strategy is a module with pure functions over a state pytree (a `flax.struct` dataclass
whose spec and hyper-parameters are static fields):

    state = strategy.init(key, spec, config)         # config: that strategy's options or None
    state, arch = strategy.ask(state, key)           # arch: int32 [spec.length]
    state = strategy.tell(state, arch, reward)       # reward: a finite float

so that a whole search over a tabular benchmark is one `lax.scan` and many seeds one `vmap`
(`jnas.tabular.run_search`). Inside jit a non-finite reward cannot raise, so `tell` then leaves
the state unchanged; a host loop should call `tell_checked`, which raises a `ValueError` naming
the reward before anything is changed.

Example (a host loop, as for real child-network training):
  >>> strategy = get("evolution")
  >>> state = strategy.init(jax.random.key(0), nb201.SPEC, {"population_size": 10})
  >>> for t in range(20):
  ...     state, arch = strategy.ask(state, jax.random.fold_in(jax.random.key(1), t))
  ...     state = tell_checked(strategy, state, arch, evaluate(arch))
"""

from __future__ import annotations

import math
from types import ModuleType

import jax
import numpy as np

from jnas.strategies import evolution, random_search, reinforce

STRATEGIES: dict[str, ModuleType] = {
    "random": random_search,
    "evolution": evolution,
    "reinforce": reinforce,
}


def get(name: str) -> ModuleType:
    """The strategy module registered under `name` (`random`, `evolution`, `reinforce`)."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(
            f"unknown discrete strategy {name!r}; known: {sorted(STRATEGIES)}"
        ) from None


def check_reward(reward) -> float:
    """Returns the reward as a float, or raises `ValueError` if it is not one finite number."""
    r = np.asarray(reward)
    if r.size != 1 or not (np.issubdtype(r.dtype, np.number) or r.dtype == bool):
        raise ValueError(f"reward {reward!r} is not a single number")
    value = float(r.reshape(()))
    if not math.isfinite(value):
        raise ValueError(
            f"reward is {value}: a search needs a finite reward (did the child network "
            "diverge?); the strategy's state and history were left unchanged"
        )
    return value


def tell_checked(strategy: ModuleType, state, arch: jax.Array, reward):
    """`strategy.tell(state, arch, reward)`, jit-compiled, after `check_reward` on the host."""
    return jax.jit(strategy.tell)(state, arch, check_reward(reward))


def name_of(strategy: ModuleType) -> str:
    """The registered name of a strategy module."""
    for name, module in STRATEGIES.items():
        if module is strategy:
            return name
    raise ValueError(f"{strategy!r} is not a registered discrete strategy")
