"""The search-space protocol: what every space offers, and the registry that finds spaces.

A search space describes a set of architectures in four ways, each used by a different
part of jnas without knowing which space it is:

* **decisions** (``spec``, a :class:`~jnas.spaces.discrete.DecisionSpec`): the flat int32
  encoding a discrete strategy samples, mutates and learns over (random search, evolution,
  the REINFORCE controller); ``encode`` / ``decode`` map it to and from the space's own
  architecture object;
* **text** (``to_text`` / ``parse``): the form a user reads, writes in a config and finds in
  a workdir; ``parse(to_text(a)) == a``, and malformed text raises the space's named
  :class:`~jnas.spaces.discrete.ArchitectureError` subclass;
* **a network** (``network(arch, num_classes=..., fidelity=...)``): the Flax module of one
  fixed architecture, and ``train_child``: that network trained and scored at a
  :class:`Fidelity` (steps or epochs, data fraction, width, resolution) on in-memory
  arrays; ``check_fidelity`` raises :class:`FidelityError` for one it cannot apply;
* optionally **a table** (``load_table``, spaces of tabular benchmarks) and **a supernet**
  (one-shot spaces: ``supernet``, ``init_alpha``, ``derive``; see
  :class:`OneShotSpace`), or **a supergraph** (shared-weight spaces searched ENAS-style:
  ``supergraph``; see :class:`SharedWeightSpace`).

A space is a frozen dataclass whose fields are its options (``config.space.<field>``), and
registers itself by name::

    @SPACES.register("my_space")
    @dataclasses.dataclass(frozen=True)
    class MySpace(SearchSpace): ...

``make_space(config.space)`` then builds it from a config section ``{name, **options}``.
Nothing in the runners, experiments or benchmarks names a space.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import numpy as np

from jnas.errors import JnasError
from jnas.registry import Registry
from jnas.spaces import discrete
from jnas.spaces.discrete import DecisionSpec

SPACES = Registry("search space", package="jnas.spaces")


class FidelityError(ValueError, JnasError):
    """A fidelity that is out of range, or that a space (its child training, its table)
    cannot apply, or multi-fidelity options out of range (eta <= 1, a minimum budget above
    the maximum); raised on the host before anything is trained. One class for spaces and
    strategies: ``jnas.strategies.base.FidelityError`` is this one."""


# The fields of a Fidelity the generic child training applies (jnas.spaces.child), and the
# one a space's ``network`` applies where the space lists it in ``FIDELITIES``.
TRAINING_FIDELITIES = frozenset({"num_steps", "epochs", "data_fraction", "resolution"})


@dataclasses.dataclass(frozen=True)
class Fidelity:
    """How cheaply a child is judged: shorter training, less data, a narrower network,
    smaller images.

    Attributes:
      num_steps: optimizer steps of the child's training (None: the space's default).
      data_fraction: the fraction of the training images it trains on, in (0, 1].
      width: a multiplier of the network's channel counts (1.0: as the space says).
      epochs: the training length in passes over the (``data_fraction`` of the) training
        images: a trained child trains ``epochs * ceil(n / batch)`` steps (not with
        ``num_steps``); for spaces read from a table, the training length whose results are
        looked up (NAS-Bench-201: 12 or 200). None: the training config's ``num_steps``.
      resolution: the images' shorter side, in pixels, that the child trains and is scored
        at (images are resized, aspect kept; None: as they are). At most the images' own.

    Raises:
      FidelityError: a value out of range (named), or both ``num_steps`` and ``epochs``.
    """

    num_steps: int | None = None
    data_fraction: float = 1.0
    width: float = 1.0
    epochs: int | None = None
    resolution: int | None = None

    def __post_init__(self):
        for name in ("num_steps", "epochs", "resolution"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or int(value) != value or int(value) < 1
            ):
                raise FidelityError(f"fidelity {name} must be an integer >= 1, got {value!r}")
        if self.num_steps is not None and self.epochs is not None:
            raise FidelityError(
                f"a fidelity gives the training length once: num_steps = {self.num_steps} or "
                f"epochs = {self.epochs}, not both"
            )
        if not 0.0 < float(self.data_fraction) <= 1.0:
            raise FidelityError(
                f"fidelity data_fraction must be in (0, 1], got {self.data_fraction}"
            )
        if not float(self.width) > 0.0:
            raise FidelityError(f"fidelity width must be > 0, got {self.width}")

    def changes(self) -> dict:
        """The fields that differ from the full fidelity ``Fidelity()`` (JSON-able)."""
        full = Fidelity()
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(full, f.name)
        }


class SearchSpace(abc.ABC):
    """The interface of every search space (see the module docstring).

    Subclasses are frozen dataclasses (hashable: usable as static arguments of ``jax.jit``)
    and implement the abstract methods; ``train_child`` has a generic default that trains
    ``network(arch)``.
    """

    name: ClassVar[str] = ""
    # The Fidelity fields this space's children can be judged at: the generic training's
    # and ``width``, which ``network`` applies (a space whose network cannot scale its
    # channels leaves it out).
    FIDELITIES: ClassVar[frozenset[str]] = TRAINING_FIDELITIES | {"width"}

    @property
    @abc.abstractmethod
    def spec(self) -> DecisionSpec:
        """The decisions that describe an architecture (its int32 vector encoding)."""

    @abc.abstractmethod
    def encode(self, obj: Any) -> np.ndarray:
        """The space's architecture object -> int32 vector ``[spec.length]``."""

    @abc.abstractmethod
    def decode(self, arch) -> Any:
        """int32 vector -> the space's architecture object (hashable)."""

    @abc.abstractmethod
    def to_text(self, arch) -> str:
        """int32 vector -> the text form."""

    @abc.abstractmethod
    def parse(self, text: str) -> np.ndarray:
        """Text form -> int32 vector; raises an ``ArchitectureError`` naming the problem."""

    @abc.abstractmethod
    def network(self, arch, *, num_classes: int, fidelity: Fidelity | None = None):
        """The Flax module of the fixed architecture ``arch`` (vector or decoded object)."""

    def train_child(
        self, arch, train_arrays, val_arrays, *, fidelity=None, config=None, key, monitor=None
    ):
        """Trains ``network(arch)`` at ``fidelity`` and returns its validation accuracy.

        Args:
          arch: an int32 vector of this space (or its decoded object).
          train_arrays, val_arrays: ``(images, labels)`` in memory (uint8 NHWC, int labels).
          fidelity: a :class:`Fidelity`, or None for the training config's own budget.
          config: a :class:`jnas.spaces.child.ChildTrainConfig` (or a mapping of its fields).
          key: a PRNG key (initialisation and batch order).
          monitor: None, or ``monitor(curve, planned_epochs) -> bool`` called after every
            epoch (True stops the child); the call then returns a
            :class:`jnas.spaces.child.ChildResult` (accuracy, epochs trained, curve).

        Raises:
          FidelityError: a fidelity this space cannot apply (before anything compiles).
        """
        from jnas.spaces import child  # the generic trainer (imports optax)

        return child.train_space_child(
            self,
            arch,
            train_arrays,
            val_arrays,
            fidelity=fidelity,
            config=config,
            key=key,
            monitor=monitor,
        )

    def check_fidelity(self, fidelity, image_shape=None) -> Fidelity:
        """``fidelity`` (None: ``Fidelity()``) if this space's child training can apply it.

        Args:
          fidelity: a :class:`Fidelity` or None.
          image_shape: ``[H, W, C]`` of the images (checks ``resolution`` against it).

        Raises:
          TypeError: not a Fidelity.
          FidelityError: a field set away from full fidelity that the space does not list
            in ``FIDELITIES``, or a resolution above the images'.
        """
        if fidelity is None:
            return Fidelity()
        if not isinstance(fidelity, Fidelity):
            raise TypeError(f"fidelity must be a jnas.spaces.base.Fidelity, got {fidelity!r}")
        cannot = sorted(set(fidelity.changes()) - set(self.FIDELITIES))
        if cannot:
            raise FidelityError(
                f"search space {self.name or type(self).__name__!r} cannot apply the fidelity "
                f"{cannot} ({fidelity}); it applies {sorted(self.FIDELITIES)}"
            )
        if fidelity.resolution is not None and image_shape is not None:
            side = min(int(image_shape[0]), int(image_shape[1]))
            if fidelity.resolution > side:
                raise FidelityError(
                    f"fidelity resolution = {fidelity.resolution} is above the images' "
                    f"{side} pixels (shape {tuple(image_shape)}): a fidelity can only lower it"
                )
        return fidelity

    def options(self) -> dict:
        """The space's options as a JSON-able dict, with its registered ``name``."""
        fields = dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}
        return {"name": self.name, **fields}

    def to_code(self, arch):
        """The architecture's index in ``[0, spec.size)`` (mixed radix; jit-compatible)."""
        return discrete.to_code(self.spec, arch)

    def from_code(self, code):
        """The inverse of :meth:`to_code` (jit-compatible)."""
        return discrete.from_code(self.spec, code)

    @property
    def has_table(self) -> bool:
        """Whether the space is a tabular benchmark (it then implements ``load_table``)."""
        return callable(getattr(self, "load_table", None))

    @property
    def is_one_shot(self) -> bool:
        """Whether the space has a supernet (it then implements :class:`OneShotSpace`)."""
        return isinstance(self, OneShotSpace)

    @property
    def is_shared_weight(self) -> bool:
        """Whether the space has a shared-weight supergraph (:class:`SharedWeightSpace`)."""
        return isinstance(self, SharedWeightSpace)


class OneShotSpace(SearchSpace):
    """A space with a weight-sharing supernet that gradient (one-shot) strategies search.

    Architecture parameters ``alpha`` are a pytree separate from the supernet's weights; a
    strategy turns them into the per-edge weights the supernet mixes with, and ``derive``
    turns op weights back into a fixed architecture of this space, on the host in float64.
    """

    @abc.abstractmethod
    def init_alpha(self, key, scale: float = 1e-3):
        """The architecture parameters, ``scale * N(0, 1)``."""

    @abc.abstractmethod
    def supernet(self, *, num_classes: int, **options):
        """The Flax supernet, called ``apply(vars, images, arch_weights, train=...)``."""

    @abc.abstractmethod
    def derive(self, weights, **options):
        """Op weights (e.g. ``softmax(alpha)``, host arrays) -> the fixed architecture."""


class SharedWeightSpace(SearchSpace):
    """A space whose every architecture is a subgraph of one supergraph (ENAS, Pham et al.
    2018): one parameter set holds every op at every position, and a step computes only the
    sampled child.

    ``supergraph(num_classes=...)`` is a Flax module called
    ``apply(variables, images, arch, train=...)`` where ``arch`` is the int32 vector
    ``[spec.length]`` of :attr:`spec` (a traced value: one compiled program serves every
    architecture). Its parameters do not depend on ``arch``; two architectures that choose
    the same op at the same position use (and update) the same parameters.
    """

    @abc.abstractmethod
    def supergraph(self, *, num_classes: int, **options):
        """The Flax shared-weight supergraph (see the class docstring)."""


def space_class(name: str) -> type:
    """The space class registered as ``name``."""
    return SPACES.get(name)


def make_space(section) -> SearchSpace:
    """A space from a config section ``{"name": ..., **options}`` (a mapping or ConfigDict).

    Raises:
      UnknownNameError: no space is registered under ``name``.
      ValueError: an option the space does not have (the message lists its options).
    """
    options = dict(section.items())
    name = options.pop("name", None)
    cls = space_class(name)
    if dataclasses.is_dataclass(cls):
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown} for search space {name!r}; known: {sorted(fields)}"
            )
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    return cls(**options)
