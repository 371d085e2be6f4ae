"""The NAS-RL chain-CNN space (Zoph & Le, ICLR 2017, Sec. 3.1-3.3 and 4.1) and its child network.

Each of `num_layers` convolution layers is described by the decisions

    L{i}/filter_height in {1,3,5,7}, L{i}/filter_width in {1,3,5,7},
    L{i}/stride in {1,2,3} (only when `predict_stride`), L{i}/num_filters in {24,36,48,64},
    L{i}/anchor: one bit per earlier layer j < i, "layer j feeds layer i" (when `skip_connections`)

in that order, layer after layer. The child network follows the paper: every layer is a
convolution followed by batch normalization and ReLU; a layer with several inputs concatenates
them in depth, zero-padding the smaller feature maps to the largest; a layer with no input
(no anchor bit set) reads the image; at the end, all layer outputs that no later layer reads are
concatenated and sent to the classifier (here global average pooling and one dense layer).
Without skip connections the layers form a plain chain.

The text form lists the layers, `;`-separated, as `{h}x{w}/s{stride}/f{filters}` followed by
`<-j,k` when the layer reads earlier layers, e.g. `3x3/s1/f36; 5x7/s1/f48<-0; 1x3/s1/f24<-0,1`.

The space registers as ``"nasrl"`` (:data:`jnas.spaces.base.SPACES`); ``network`` builds
the child network (a fidelity's ``width`` scales every layer's filter count), and
``train_child`` (:mod:`jnas.spaces.child`) trains it briefly on in-memory arrays and returns
its validation accuracy, the reward of the NAS-RL controller.
"""

from __future__ import annotations

import dataclasses
import re
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jnas.spaces.base import SPACES, Fidelity, SearchSpace
from jnas.spaces.discrete import (
    Anchor,
    ArchitectureRangeError,
    ArchitectureSyntaxError,
    ArchitectureTypeError,
    Categorical,
    DecisionSpec,
    UnknownChoiceError,
)
from jnas.spaces.text import ASCII_SPACE, check_text, echo, parse_int


@dataclasses.dataclass(frozen=True)
class ConvLayer:
    """One decoded layer; `inputs` are the indices of the earlier layers it reads (() = image)."""

    filter_height: int
    filter_width: int
    stride: int
    num_filters: int
    inputs: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class NasRLArch:
    """A decoded NAS-RL architecture: the layers in order (hashable, a static module field)."""

    layers: tuple[ConvLayer, ...]


@SPACES.register("nasrl")
@dataclasses.dataclass(frozen=True)
class NasRLSpace(SearchSpace):
    """The NAS-RL space (a :class:`~jnas.spaces.base.SearchSpace`).

    Attributes:
      num_layers: number of convolution layers (the paper grows it from 6 to 15).
      filter_sizes: choices of filter height and of filter width.
      strides: choices of stride (the same stride in both directions), if `predict_stride`.
      num_filters: choices of the number of filters.
      predict_stride: whether the stride is a decision (else every stride is 1).
      skip_connections: whether each layer has an anchor point (else a plain chain).
    """

    num_layers: int = 6
    filter_sizes: tuple[int, ...] = (1, 3, 5, 7)
    strides: tuple[int, ...] = (1, 2, 3)
    num_filters: tuple[int, ...] = (24, 36, 48, 64)
    predict_stride: bool = False
    skip_connections: bool = True

    name: ClassVar[str] = "nasrl"

    def __post_init__(self):
        if isinstance(self.num_layers, bool) or not (
            isinstance(self.num_layers, int) and self.num_layers >= 1
        ):
            raise ValueError(f"NAS-RL's num_layers must be an int >= 1, got {self.num_layers!r}")
        for field in ("filter_sizes", "strides", "num_filters"):
            choices = tuple(getattr(self, field))
            if not choices or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in choices
            ):
                raise ValueError(f"NAS-RL's {field} must be ints >= 1, got {choices!r}")
            if len(set(choices)) != len(choices):
                raise ValueError(f"NAS-RL's {field} has a choice twice: {choices!r}")
            object.__setattr__(self, field, choices)

    @property
    def spec(self) -> DecisionSpec:
        decisions = []
        for i in range(self.num_layers):
            decisions.append(Categorical(f"L{i}/filter_height", self.filter_sizes))
            decisions.append(Categorical(f"L{i}/filter_width", self.filter_sizes))
            if self.predict_stride:
                decisions.append(Categorical(f"L{i}/stride", self.strides))
            decisions.append(Categorical(f"L{i}/num_filters", self.num_filters))
            if self.skip_connections:
                decisions.append(Anchor(f"L{i}/anchor", i))
        return DecisionSpec(tuple(decisions))

    def decode(self, arch) -> NasRLArch:
        """int vector -> `NasRLArch`."""
        a = iter(self.spec.validate(arch).tolist())
        layers = []
        for i in range(self.num_layers):
            fh, fw = self.filter_sizes[next(a)], self.filter_sizes[next(a)]
            stride = self.strides[next(a)] if self.predict_stride else 1
            nf = self.num_filters[next(a)]
            if self.skip_connections:
                inputs = tuple(j for j in range(i) if next(a))
            else:
                inputs = (i - 1,) if i else ()
            layers.append(ConvLayer(fh, fw, stride, nf, inputs))
        return NasRLArch(tuple(layers))

    def encode(self, arch: NasRLArch) -> np.ndarray:
        """`NasRLArch` -> int vector; raises `ArchitectureError` for a value not in the space."""
        if not isinstance(arch, NasRLArch):
            raise ArchitectureTypeError(f"expected a NasRLArch, got {type(arch).__name__}")
        if len(arch.layers) != self.num_layers:
            raise ArchitectureRangeError(
                f"architecture has {len(arch.layers)} layers, this space has {self.num_layers}"
            )
        out = []
        for i, layer in enumerate(arch.layers):
            out.append(_index(self.filter_sizes, layer.filter_height, f"L{i}/filter_height"))
            out.append(_index(self.filter_sizes, layer.filter_width, f"L{i}/filter_width"))
            if self.predict_stride:
                out.append(_index(self.strides, layer.stride, f"L{i}/stride"))
            elif layer.stride != 1:
                raise ArchitectureRangeError(f"L{i} has stride {layer.stride}; this space fixes 1")
            out.append(_index(self.num_filters, layer.num_filters, f"L{i}/num_filters"))
            inputs = tuple(layer.inputs)
            if not all(_is_int(j) for j in inputs):
                raise ArchitectureTypeError(f"L{i} reads layers {echo(inputs)}; expected ints")
            if any(j < 0 or j >= i for j in inputs) or len(set(inputs)) != len(inputs):
                raise ArchitectureRangeError(
                    f"L{i} reads layers {inputs}; expected distinct j < {i}"
                )
            if self.skip_connections:
                out.extend(int(j in inputs) for j in range(i))
            elif inputs != ((i - 1,) if i else ()):
                raise ArchitectureRangeError(f"L{i} reads {inputs}; this space is a plain chain")
        return np.asarray(out, np.int32)

    def to_text(self, arch) -> str:
        """int vector -> text form, e.g. `3x3/s1/f36; 5x7/s1/f48<-0`."""
        return "; ".join(
            f"{x.filter_height}x{x.filter_width}/s{x.stride}/f{x.num_filters}"
            + ("<-" + ",".join(map(str, x.inputs)) if x.inputs else "")
            for x in self.decode(arch).layers
        )

    def parse(self, text: str) -> np.ndarray:
        """Text form -> int vector; raises an ``ArchitectureError`` naming the offending layer.

        Strict: ASCII only; the layers ``;``-separated (white space around a layer ignored),
        each exactly ``{h}x{w}/s{stride}/f{filters}[<-j,k,...]`` with numbers in ASCII
        decimal digits without sign or leading zeros; the inputs of a layer distinct (any
        order: they are a set of earlier layers).

        Raises:
          ArchitectureSyntaxError: a layer not of that form (``NonAsciiTextError`` for a
            Unicode digit or any other non-ASCII character), an empty or absurdly long text.
          ArchitectureTypeError: ``text`` is not a ``str``.
          ArchitectureRangeError: a value the space does not have (``UnknownChoiceError``),
            the wrong number of layers, an input that is not an earlier layer or is repeated.
        """
        what = "a NAS-RL architecture string"
        text = check_text(text, what)
        parts = [p.strip(ASCII_SPACE) for p in text.split(";")]
        layers = []
        for i, part in enumerate(parts):
            m = _LAYER_RE.fullmatch(part)
            if m is None:
                raise ArchitectureSyntaxError(
                    f"cannot parse NAS-RL layer {i} {echo(part)} of {echo(text)}: expected "
                    "{h}x{w}/s{stride}/f{filters}[<-j,k,...]"
                )
            fh, fw, s, nf = (
                parse_int(g, f"L{i}/{name}")
                for g, name in zip(m.groups()[:4], _FIELDS, strict=True)
            )
            ins = m.group(5)
            inputs = tuple(parse_int(j, f"an input of L{i}") for j in ins.split(",")) if ins else ()
            layers.append(ConvLayer(fh, fw, s, nf, inputs))
        return self.encode(NasRLArch(tuple(layers)))

    def network(self, arch, *, num_classes: int, fidelity: Fidelity | None = None) -> ChildNet:
        """The child CNN of ``arch`` (an int vector or a `NasRLArch`).

        A fidelity's ``width`` multiplies every layer's filter count (rounded, at least 1).
        """
        decoded = self.decode(self.encode(arch) if isinstance(arch, NasRLArch) else arch)
        width = 1.0 if fidelity is None else float(fidelity.width)
        if width != 1.0:
            decoded = NasRLArch(
                tuple(
                    dataclasses.replace(x, num_filters=max(1, int(round(x.num_filters * width))))
                    for x in decoded.layers
                )
            )
        return ChildNet(decoded, int(num_classes))


# ASCII digits only ([0-9], never \\d, which matches every Unicode digit); parse_int then
# rejects leading zeros and overlong numbers.
_FIELDS = ("filter_height", "filter_width", "stride", "num_filters")
_LAYER_RE = re.compile(r"([0-9]+)x([0-9]+)/s([0-9]+)/f([0-9]+)(?:<-([0-9]+(?:,[0-9]+)*))?")


def _is_int(x) -> bool:
    """A Python or numpy int (never a bool, a float or a str)."""
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _index(choices: tuple, value, name: str) -> int:
    if not _is_int(value):
        raise ArchitectureTypeError(f"{name} must be an int, got {echo(value)}")
    if value not in choices:
        raise UnknownChoiceError(f"{name} = {value!r} is not one of {list(choices)}")
    return choices.index(value)


def concat_padded(features: list[jax.Array]) -> jax.Array:
    """Concatenates NHWC feature maps in depth, zero-padding smaller ones (bottom/right).

    Zoph & Le, Sec. 3.3: "if input layers do not have the same size, we pad the small layers
    with zeros so that the concatenated layers have the same sizes".
    """
    height = max(f.shape[1] for f in features)
    width = max(f.shape[2] for f in features)
    padded = [
        jnp.pad(f, ((0, 0), (0, height - f.shape[1]), (0, width - f.shape[2]), (0, 0)))
        for f in features
    ]
    return jnp.concatenate(padded, axis=-1)


class ChildNet(nn.Module):
    """The child CNN of a decoded NAS-RL architecture.

    Attributes:
      arch: the decoded architecture (static).
      num_classes: outputs of the classifier.
    """

    arch: NasRLArch
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """NHWC float images -> logits `[N, num_classes]`."""
        outputs, consumed = [], set()
        for layer in self.arch.layers:
            h = concat_padded([outputs[j] for j in layer.inputs]) if layer.inputs else x
            consumed.update(layer.inputs)
            h = nn.Conv(
                layer.num_filters,
                (layer.filter_height, layer.filter_width),
                strides=(layer.stride, layer.stride),
                padding="SAME",
                use_bias=False,
            )(h)
            h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
            outputs.append(nn.relu(h))
        final = [o for i, o in enumerate(outputs) if i not in consumed]
        h = concat_padded(final) if final else x
        return nn.Dense(self.num_classes)(jnp.mean(h, axis=(1, 2)))
