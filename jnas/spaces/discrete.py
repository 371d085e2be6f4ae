"""A search space as a sequence of discrete decisions.

A discrete space describes its architectures by a frozen `DecisionSpec`: an ordered tuple of
decisions, each either a `Categorical` choice (one softmax) or an `Anchor` (NAS-RL's skip
connections, Zoph & Le 2017, Sec. 3.3: at layer i one sigmoid per earlier layer j). An
*architecture* is a flat int32 vector with one entry per *position*: a categorical decision takes
one position (the index of the chosen label), an anchor over i earlier layers takes i positions
(one 0/1 bit per earlier layer j < i, in order j = 0..i-1).

Every space (`jnas.spaces.base.SearchSpace`: `jnas.spaces.nb201`, `jnas.spaces.nasrl`, ...)
describes its decisions by a `DecisionSpec` (its `spec`) and maps the vectors to and from its
own architecture objects and text form.

`sample_uniform` and `mutate` are pure functions of an explicit PRNG key and work under
`jax.jit`, `jax.vmap` and `lax.scan` (the spec is static).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jnas.errors import JnasError, clip


class ArchitectureError(ValueError, JnasError):
    """An architecture (vector or text) that is not a member of its space."""


class ArchitectureSyntaxError(ArchitectureError):
    """A text that does not have its space's form: the layout, characters after the end, a
    field given twice, an empty text or one longer than any valid one."""


class NonAsciiTextError(ArchitectureSyntaxError):
    """A text with a character outside ASCII, e.g. a Unicode digit (``'٣'``, ``'０'``): the
    parsers read ASCII digits only, never what ``int()`` would also accept."""


class ArchitectureTypeError(ArchitectureError):
    """A value of the wrong type: an index that is not an int (``1.5``, ``True``, ``'1'``), a
    concat that is not a list of ints, a set of edges (no order), a text that is not a str."""


class ArchitectureRangeError(ArchitectureError):
    """A well-formed value outside the space: an index out of range, a wrong number of
    nodes, edges or layers, a choice the space does not have."""


class UnknownChoiceError(ArchitectureRangeError):
    """An op (or other choice label) that is not one of the space's."""


@dataclasses.dataclass(frozen=True)
class Categorical:
    """One categorical decision.

    Attributes:
      name: the decision's name, e.g. `"1<-0"` or `"L3/filter_height"`.
      choices: the labels of the choices; the architecture vector holds the index.
    """

    name: str
    choices: tuple

    @property
    def num_choices(self) -> int:
        return len(self.choices)

    @property
    def width(self) -> int:
        return 1


@dataclasses.dataclass(frozen=True)
class Anchor:
    """A NAS-RL anchor point: one 0/1 bit per earlier layer j < i, "j feeds layer i".

    The controller scores bit j with P(j feeds i) = sigmoid(v^T tanh(W_prev h_j + W_curr h_i))
    (Zoph & Le 2017, Sec. 3.3), where h_j is the controller's hidden state at layer j's anchor.
    An anchor with `num_sources == 0` (the first layer) has no bits but still gives the
    controller a step whose hidden state later anchors attend to.

    Attributes:
      name: e.g. `"L3/anchor"`.
      num_sources: i, the number of earlier layers (anchor points) it can connect from.
    """

    name: str
    num_sources: int

    @property
    def width(self) -> int:
        return self.num_sources


Decision = Categorical | Anchor


@dataclasses.dataclass(frozen=True)
class DecisionSpec:
    """A frozen, hashable description of a discrete space (usable as a static jit argument).

    Attributes:
      decisions: the decisions in the order a controller emits them.
    """

    decisions: tuple[Decision, ...]

    def __post_init__(self):
        seen = set()
        for d in self.decisions:
            if d.name in seen:
                raise ValueError(f"duplicate decision name {d.name!r}")
            seen.add(d.name)
            if isinstance(d, Categorical) and d.num_choices < 1:
                raise ValueError(f"decision {d.name!r} has no choices")
            if isinstance(d, Anchor) and d.num_sources < 0:
                raise ValueError(f"anchor {d.name!r} has a negative number of sources")

    @property
    def length(self) -> int:
        """The number of positions in an architecture vector."""
        return sum(d.width for d in self.decisions)

    @property
    def offsets(self) -> tuple[int, ...]:
        """The first position of each decision."""
        out, pos = [], 0
        for d in self.decisions:
            out.append(pos)
            pos += d.width
        return tuple(out)

    @property
    def names(self) -> tuple[str, ...]:
        """One name per position; an anchor's bits are named `"<anchor>/<-j"`."""
        out = []
        for d in self.decisions:
            if isinstance(d, Categorical):
                out.append(d.name)
            else:
                out.extend(f"{d.name}<-{j}" for j in range(d.num_sources))
        return tuple(out)

    @property
    def num_choices(self) -> tuple[int, ...]:
        """The number of values of each position (2 for an anchor bit)."""
        out = []
        for d in self.decisions:
            out.extend([d.num_choices] if isinstance(d, Categorical) else [2] * d.num_sources)
        return tuple(out)

    @property
    def has_anchors(self) -> bool:
        return any(isinstance(d, Anchor) for d in self.decisions)

    @property
    def size(self) -> int:
        """The number of distinct architectures (product of `num_choices`)."""
        return int(np.prod(np.asarray(self.num_choices, dtype=object)))

    def validate(self, arch) -> np.ndarray:
        """Checks an architecture vector on the host.

        Args:
          arch: an int array-like of shape `[length]`: an integer numpy or JAX array, or a
            list of Python ints. Floats (even integral ones) and bools are not indices.

        Returns:
          The architecture as an int32 numpy array.

        Raises:
          ArchitectureTypeError: not an integer vector.
          ArchitectureRangeError: the wrong length, or a value out of range (naming the
            position and the value).
        """
        try:
            a = np.asarray(arch)
        except (ValueError, TypeError, OverflowError) as e:
            raise ArchitectureTypeError(
                f"architecture {clip(arch)} is not an integer vector ({e})"
            ) from e
        if a.size and (a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer)):
            raise ArchitectureTypeError(
                f"architecture {clip(arch)} is not an integer vector (dtype {a.dtype}); "
                "its entries must be ints, not floats, bools or strings"
            )
        if a.shape != (self.length,):
            raise ArchitectureRangeError(
                f"architecture has shape {a.shape}, expected ({self.length},) for this space"
            )
        a = a.astype(np.int64)
        n = np.asarray(self.num_choices)
        bad = np.flatnonzero((a < 0) | (a >= n))
        if bad.size:
            k = int(bad[0])
            raise ArchitectureRangeError(
                f"decision {self.names[k]!r} has value {int(a[k])}, expected 0..{int(n[k]) - 1}"
            )
        return a.astype(np.int32)


def sample_uniform(spec: DecisionSpec, key: jax.Array) -> jax.Array:
    """Samples an architecture uniformly: every position independently and uniformly.

    Args:
      spec: the space (static).
      key: a PRNG key.

    Returns:
      An int32 vector of shape `[spec.length]`.
    """
    n = jnp.asarray(spec.num_choices, dtype=jnp.int32)
    return jax.random.randint(key, (spec.length,), 0, n, dtype=jnp.int32)


def mutate(spec: DecisionSpec, key: jax.Array, arch: jax.Array) -> jax.Array:
    """Changes exactly one decision to a different value (Real et al. 2019's mutation).

    A position is drawn uniformly among those with at least two values, and its new value
    uniformly among the other values (as NAS-Bench-201's `mutate_arch_func`).

    Args:
      spec: the space (static); at least one position must have two or more values.
      key: a PRNG key.
      arch: an int32 vector of shape `[spec.length]`.

    Returns:
      The mutated architecture (same shape and dtype).
    """
    n = np.asarray(spec.num_choices, dtype=np.int32)
    mutable = n > 1
    if not mutable.any():
        raise ValueError("no decision of this space has two or more values: nothing to mutate")
    k_pos, k_val = jax.random.split(key)
    pos = jax.random.choice(k_pos, spec.length, p=jnp.asarray(mutable / mutable.sum()))
    n_pos = jnp.asarray(n)[pos]
    # A shift in 1..n-1 modulo n reaches every other value exactly once.
    shift = jax.random.randint(k_val, (), 1, jnp.maximum(n_pos, 2), dtype=jnp.int32)
    return arch.at[pos].set((arch[pos] + shift) % n_pos)


def to_code(spec: DecisionSpec, arch: jax.Array) -> jax.Array:
    """The mixed-radix index of an architecture, in `[0, spec.size)` (position 0 most significant).

    For NAS-Bench-201 this is the table's 6-digit `op_code` read in base 5. Works under jit.
    """
    return jnp.sum(jnp.asarray(arch, jnp.int32) * jnp.asarray(_radix_weights(spec)))


def from_code(spec: DecisionSpec, code: jax.Array) -> jax.Array:
    """The inverse of `to_code`."""
    n = jnp.asarray(spec.num_choices, jnp.int32)
    code = jnp.asarray(code, jnp.int32)
    return ((code // jnp.asarray(_radix_weights(spec))) % n).astype(jnp.int32)


def _radix_weights(spec: DecisionSpec) -> np.ndarray:
    if spec.size >= 2**31:
        raise ValueError(f"space has {spec.size} architectures: too many for an int32 code")
    n = np.asarray(spec.num_choices, dtype=np.int64)
    return np.append(np.cumprod(n[::-1])[::-1][1:], 1).astype(np.int32)
