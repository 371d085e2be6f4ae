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
  reward leaves the state unchanged inside jit (the whole ``tell``: the state comes back
  as it was); host loops check rewards first with :func:`check_reward`. Host loops and
  tabular scans take any object of this shape, registered or not.

  A config section holds a strategy's options; :meth:`DiscreteStrategy.from_config` (or
  :func:`make_strategy`, which also takes a registered name) splits them into the static
  constructor options the class lists in ``STATIC`` and the fields of its params::

      strategy, params = make_strategy("reinforce", spec, population_size=8,
                                       section={"learning_rate": 6e-4, "hidden_size": 35})
  **Multi-fidelity** (successive halving, Hyperband, BOHB): a discrete strategy may also
  say at which budget each candidate of its last ``ask`` is to be judged. It then has a
  static attribute ``budgets`` (a strictly increasing tuple of positive floats, the budget
  values it may ask for, e.g. epochs ``(12.0, 200.0)``; ``budgets[-1]`` is its full
  fidelity) and a pure method ``fidelities(state) -> int32 [population_size]``: the index
  into ``budgets`` of each member of the last ``ask`` (read between ``ask`` and ``tell``;
  ``tell`` then receives the rewards measured at those budgets). What a budget value means
  (epochs, steps, a data fraction) is the strategy's ``budget_resource``; a host loop maps
  it to a :class:`jnas.spaces.base.Fidelity` and a table to its columns, raising
  :class:`FidelityError` before anything runs where one cannot be applied. A strategy
  without ``budgets`` judges every candidate at the space's full fidelity: use
  :func:`budgets_of` and :func:`fidelities_of`, which handle both. Optionally, a strategy
  whose budgets follow a fixed cycle says so with ``fidelity_schedule`` (a static tuple:
  the ladder index of each round of one cycle); a tabular scan uses it to bound its length.
* **gradient** (one-shot: DARTS, GDAS, ...): see :mod:`jnas.strategies.oneshot`.

A strategy module registers itself::

    @STRATEGIES.register("my_strategy", kind="discrete")
    class MyStrategy(DiscreteStrategy): ...
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jnas.registry import Registry
from jnas.spaces.base import FidelityError  # noqa: F401  (one class: spaces and strategies)
from jnas.spaces.discrete import DecisionSpec

STRATEGIES = Registry("strategy", package="jnas.strategies")
KINDS = ("discrete", "gradient", "shared", "morphism")
# shared: ENAS-style (jnas.strategies.enas); morphism: network morphisms over the graph space
# (jnas.strategies.morphism_bo)


def kind_of(name: str) -> str:
    """``"discrete"``, ``"gradient"``, ``"shared"`` or ``"morphism"`` for a strategy name
    (registered, or ``"pkg.module:attr"``: then the object's ``KIND`` attribute says)."""
    kind = STRATEGIES.info(name).get("kind") or getattr(STRATEGIES.get(name), "KIND", None)
    if kind not in KINDS:
        raise ValueError(
            f"strategy {name!r} does not say its kind: register it with kind= one of {KINDS}, "
            "or give it a KIND attribute"
        )
    return kind


class DiscreteStrategy(abc.ABC):
    """The evosax-shaped interface of a discrete strategy (see the module docstring).

    Attributes:
      spec: the decisions of the space searched (static).
      population_size: architectures per ``ask`` / ``tell`` (static).
    """

    KIND: ClassVar[str] = "discrete"
    spec: DecisionSpec
    population_size: int
    STATIC: ClassVar[tuple[str, ...]] = ()  # constructor options a config section may set

    @classmethod
    def from_config(cls, spec: DecisionSpec, population_size: int, section=None):
        """``(strategy, params)`` from a config section (a mapping, ``ConfigDict`` or None).

        The section's keys named in ``cls.STATIC`` go to the constructor (they fix shapes);
        the others replace fields of ``default_params`` (traced values).

        Raises:
          ValueError: a key that is neither (the message lists both kinds), or
            ``population_size`` in the section (the caller sets it: members per ``ask``).
        """
        options = dict(section.items()) if section is not None else {}
        if "population_size" in options:
            raise ValueError(
                "population_size is not a strategy option: the runner sets it (members per "
                f"ask); the options of {cls.__name__} are {sorted(cls.STATIC)} (static) and "
                "its params"
            )
        static = {k: options.pop(k) for k in cls.STATIC if k in options}
        strategy = cls(spec, population_size=int(population_size), **static)
        defaults = strategy.default_params
        names = {f.name for f in dataclasses.fields(defaults)} if options else set()
        unknown = sorted(set(options) - names)
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown} for {cls.__name__}; static: "
                f"{sorted(cls.STATIC)}, params: {sorted(names)}"
            )
        options = {
            k: jnp.asarray(v, jnp.result_type(getattr(defaults, k))) for k, v in options.items()
        }
        params = params_from(defaults, options)
        strategy.check_params(params)
        return strategy, params

    def check_params(self, params) -> None:
        """Raises ``ValueError`` for params out of range (on the host; none by default)."""
        del params

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


def make_strategy(strategy, spec: DecisionSpec, population_size: int, section=None):
    """``(strategy, params)`` from a registered name or a strategy class, and a config section.

    Args:
      strategy: a name registered with ``kind="discrete"`` (or ``"pkg.module:Class"``), or a
        :class:`DiscreteStrategy` subclass.
      spec: the decisions of the space searched.
      population_size: architectures per ``ask`` / ``tell``.
      section: the strategy's options (see :meth:`DiscreteStrategy.from_config`) or None.

    Raises:
      UnknownNameError: no strategy of that name.
      ValueError: a gradient strategy's name, or an unknown option.
    """
    if isinstance(strategy, str):
        name, strategy = strategy, STRATEGIES.get(strategy)
        kind = kind_of(name)
        if kind != "discrete":
            raise ValueError(f"strategy {name!r} is a {kind} strategy, not a discrete one")
    if not (isinstance(strategy, type) and issubclass(strategy, DiscreteStrategy)):
        raise TypeError(f"{strategy!r} is not a DiscreteStrategy class")
    return strategy.from_config(spec, population_size, section)


BUDGET_RESOURCES = ("epochs", "num_steps", "data_fraction", "width")


def budgets_of(strategy) -> tuple[float, ...] | None:
    """A multi-fidelity strategy's budget values (see the module docstring); None for a
    strategy that judges every candidate at full fidelity."""
    budgets = getattr(strategy, "budgets", None)
    if budgets is None or not callable(getattr(strategy, "fidelities", None)):
        return None
    return tuple(float(b) for b in budgets)


def fidelities_of(strategy, state) -> jax.Array | None:
    """int32 ``[population_size]``: the budget index of each member of the last ``ask``, or
    None for a single-fidelity strategy. Pure: works inside jit and scans."""
    if budgets_of(strategy) is None:
        return None
    return jnp.asarray(strategy.fidelities(state), jnp.int32)


def to_fidelity(full, resource: str, budget: float, max_budget: float):
    """The :class:`jnas.spaces.base.Fidelity` at which a budget judges a child (host side).

    ``epochs`` / ``num_steps`` set that field to the budget (and clear the other: a fidelity
    gives the training length once); ``data_fraction`` / ``width``
    scale the full fidelity's value by ``budget / max_budget``.

    Raises:
      FidelityError: an unknown resource, or a budget outside (0, max_budget].
    """
    if resource not in BUDGET_RESOURCES:
        raise FidelityError(f"unknown budget_resource {resource!r}; known: {BUDGET_RESOURCES}")
    if not 0 < float(budget) <= float(max_budget):
        raise FidelityError(f"budget {budget} is outside (0, max_budget={max_budget}]")
    if resource in ("epochs", "num_steps"):  # the budget is the training length: one of them
        other = "num_steps" if resource == "epochs" else "epochs"
        return dataclasses.replace(full, **{resource: int(round(float(budget))), other: None})
    scaled = getattr(full, resource) * float(budget) / float(max_budget)
    return dataclasses.replace(full, **{resource: scaled})


def member_keys(key: jax.Array, n: int) -> jax.Array:
    """The keys of a population's members: ``fold_in(key, i)`` for ``i < n``."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))


def keep_if_finite(rewards: jax.Array, new, old):
    """``new`` if every reward is finite, else ``old`` (a pytree select; works under jit)."""
    ok = jnp.all(jnp.isfinite(rewards))
    return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


def check_reward(reward) -> float:
    """The reward as a float; ``ValueError`` if it is not one finite number (host side)."""
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


def check_rewards(rewards, population_size: int) -> np.ndarray:
    """A population's rewards as float32 ``[population_size]``, each checked by ``check_reward``."""
    values = [check_reward(r) for r in np.asarray(rewards, dtype=object).reshape(-1)]
    if len(values) != population_size:
        raise ValueError(f"got {len(values)} rewards for a population of {population_size}")
    return np.asarray(values, np.float32)


@struct.dataclass
class NoParams:
    """The params of a strategy without traced hyper-parameters (an empty pytree)."""


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
