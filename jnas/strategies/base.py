"""The strategy shapes and the registry that finds strategies by name.

Two kinds of strategy, both registered in :data:`STRATEGIES` with their ``kind``:

* **discrete** (black-box and RL: random search, evolution, REINFORCE, ...): an object in
  the shape of evosax, built for one space's decisions and a population size::

      strategy = STRATEGIES.get("evolution")(spec, population_size=8, **static_options)
      params = strategy.default_params            # hyper-parameters: a pytree (vmappable)
      state = strategy.init(key, params)
      archs, state = strategy.ask(key, state, params)           # int32 [population, length]
      state, metrics = strategy.tell(state, archs, rewards, params)   # metrics: dict of scalars

  Everything is pure and jit-compatible; ``params`` values are traced (a sweep over them
  neither recompiles nor needs a new object), shapes (population, hidden sizes) are static
  attributes. Member ``i`` of a population is drawn with ``fold_in(key, i)``. A non-finite
  reward leaves the state unchanged inside jit; host loops check rewards first. Host loops
  and tabular scans take any object of this shape, registered or not.
* **gradient** (one-shot: DARTS, GDAS, ...): see :mod:`jnas.strategies.oneshot`.

A strategy module registers itself::

    @STRATEGIES.register("my_strategy", kind="discrete")
    class MyStrategy(DiscreteStrategy): ...
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import jax

from jnas.registry import Registry
from jnas.spaces.discrete import DecisionSpec

STRATEGIES = Registry("strategy", package="jnas.strategies")
KINDS = ("discrete", "gradient")


def kind_of(name: str) -> str:
    """``"discrete"`` or ``"gradient"`` for a registered strategy name."""
    return STRATEGIES.info(name).get("kind", "discrete")


class DiscreteStrategy(abc.ABC):
    """The evosax-shaped interface of a discrete strategy (see the module docstring).

    Attributes:
      spec: the decisions of the space searched (static).
      population_size: architectures per ``ask`` / ``tell`` (static).
    """

    spec: DecisionSpec
    population_size: int

    @property
    @abc.abstractmethod
    def default_params(self) -> Any:
        """The hyper-parameters as a pytree of arrays (or an empty pytree)."""

    @abc.abstractmethod
    def init(self, key: jax.Array, params: Any) -> Any:
        """The initial state pytree."""

    @abc.abstractmethod
    def ask(self, key: jax.Array, state: Any, params: Any) -> tuple[jax.Array, Any]:
        """``(archs int32 [population_size, spec.length], state)``."""

    @abc.abstractmethod
    def tell(self, state: Any, archs: jax.Array, rewards: jax.Array, params: Any):
        """``(state, metrics)`` after the population's rewards ``float32 [population_size]``."""


def params_from(defaults, overrides) -> Any:
    """``defaults`` (a dataclass pytree of hyper-parameters) with some fields replaced."""
    overrides = dict(overrides or {})
    if not overrides:
        return defaults
    names = {f.name for f in dataclasses.fields(defaults)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown strategy parameter(s) {unknown}; known: {sorted(names)}")
    return dataclasses.replace(defaults, **overrides)
