"""The ENAS macro search space (Pham et al., ICML 2018, Sec. 2.3) and its shared-weight supergraph.

A network is a chain of ``num_layers`` (L) layers after a stem. Layer i reads ``x_i``, the
feature map before it (``x_0`` the stem's output, ``x_i`` layer i-1's output), applies one of
six ops, and adds any of the earlier maps ``x_0 .. x_{i-1}`` ("skip connections"). Its
decisions, layer after layer (the layout of the official ``sample_arc`` under
``--controller_search_whole_channels``, general_controller.py:147-253):

    L{i}/op: Categorical over ENAS_MACRO_OPS
    L{i}/skip: Anchor with i sources, bit j = "x_j is added to layer i's output"

(``L0/skip`` has no bits: it gives the controller the step whose hidden state later anchors
attend to, general_controller.py:213-253.) ``spec.length = L + L (L - 1) / 2``.

Facts from the official code (github.com/melodyguan/enas; the macro space is
``src/cifar10/general_child.py`` and ``general_controller.py``, there is no
``macro_child.py``; scripts/cifar10_macro_search.sh sets ``--child_num_layers=12
--child_out_filters=36 --child_num_branches=6 --child_keep_prob=0.90
--controller_search_whole_channels``):

* **Op order** (general_child.py:268-293, ``_enas_layer`` with ``whole_channels``): 0 conv
  3x3, 1 separable conv 3x3, 2 conv 5x5, 3 separable conv 5x5, 4 average pool 3x3, 5 max
  pool 3x3 (``num_branches`` < 6 drops the pools from the end, general_child.py:284-293).
* **Conv branch** (``_conv_branch``, general_child.py:483-544, search mode with all
  channels): 1x1 conv -> BN -> ReLU, then the k x k conv (or, separable, a depthwise k x k
  conv with channel multiplier 1 followed by a 1x1 conv, ``tf.nn.separable_conv2d``) -> BN
  -> ReLU. The second BN is ``batch_norm_with_mask`` with epsilon 1e-3
  (image_ops.py:133-134); every other BN uses epsilon 1e-5 (image_ops.py:92).
* **Pool branch** (``_pool_branch``, general_child.py:546-589): 1x1 conv -> BN -> ReLU, then
  3x3 max or average pooling, stride 1, SAME padding (TF's average excludes the padding).
* **Skip connections** (general_child.py:353-367): the branch output plus the chosen earlier
  maps (``tf.add_n``, unchosen ones as zeros), then BN; layer 0 has no such BN. (The fixed
  architecture path ``_fixed_layer``, general_child.py:453-479, instead concatenates them
  and applies ReLU, 1x1 conv, BN; it also builds the separable ops as plain convs and has no
  pool ops at all (``pass``, general_child.py:406-409), which is why the final script uses
  ``--child_num_branches=4``. Here the standalone network is the search child, so that a
  child with shared weights equals it.)
* **Stem** (general_child.py:197-201): 3x3 conv (3 -> out_filters) -> BN, no ReLU.
* **Fixed reductions** (general_child.py:95-96, 214-224): after the layers
  ``pool_layers = [L // 3 - 1, 2 (L // 3) - 1]`` (3 and 7 for L = 12), every map of the
  list (the stem's and every layer's so far) is replaced by its factorized reduction, each
  with its own weights (``pool_at_{l}/from_{i}``). During search the filters stay
  ``out_filters``; only the fixed-architecture path doubles them (general_child.py:215-216).
* **Factorized reduction** (``_factorized_reduction``, general_child.py:129-177): path 1 =
  the map subsampled at stride 2 -> 1x1 conv to out_filters / 2; path 2 = the map shifted
  one pixel (pad bottom/right, drop the first row and column), subsampled -> 1x1 conv to
  out_filters / 2; concatenated -> BN. No ReLU; out_filters must be even.
* **Head** (general_child.py:231-242): global average pooling of the last layer's output,
  dropout with ``keep_prob`` in training, a fully connected layer without bias.
* **Batch norm** (image_ops.py:92-130): learned scale and offset; in training the batch's
  statistics, with moving averages updated at decay 0.9; in evaluation (validation, test,
  and the controller's reward, ``build_valid_rl`` calls ``_model(..., False)``,
  general_child.py:691) the moving averages. Flax's ``BatchNorm(momentum=0.9)`` is the same.
* **Initialisation**: He normal for every weight (common_ops.py:27-30, ``create_weight``).
* Read literally, the whole-channels ``tf.case`` of general_child.py:268-295 binds every
  branch to ``lambda: y``, which Python evaluates after the loop: the last branch's ``y``
  (max pooling) for every index (late binding; the pattern of tensorflow issue #5500); and
  the six branches are built outside the case, so all run. Here the sampled op is the one
  computed (the paper's intent), and only it.

Indices in the text form are those of the vector: ``<-j`` adds ``x_j`` (``x_0`` the stem). The
text lists the layers ``;``-separated, e.g. ``conv_3x3; sep_conv_5x5<-0; max_pool_3x3<-0,1``.

The space registers as ``"enas_macro"`` (a :class:`~jnas.spaces.base.SharedWeightSpace`):
``network`` is the standalone fixed network (trained by the generic ``train_child``; a
fidelity's ``width`` scales ``out_filters``), ``supergraph`` the shared-weight network of
every architecture (each layer runs only its sampled op, ``lax.switch``), and
``supergraph_variables_to_network`` takes a child's shared weights as the standalone
network's variables. ``retrain_architecture`` is what ``experiments.train`` retrains (a
config with ``space``: ``experiments/configs/eval_enas_macro_cifar10.py``), and ``draw``
writes the layer graph (PNG, SVG).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jnas.ops import layers as jlayers
from jnas.ops.batchnorm import BatchNorm
from jnas.spaces.base import SPACES, Fidelity, SharedWeightSpace
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

# general_child.py:268-293 (whole channels): the official branch order.
ENAS_MACRO_OPS: tuple[str, ...] = (
    "conv_3x3",
    "sep_conv_3x3",
    "conv_5x5",
    "sep_conv_5x5",
    "avg_pool_3x3",
    "max_pool_3x3",
)
# scripts/cifar10_macro_final.sh:5-28: the fixed_arc the official final training retrains
# (24 layers, --child_num_branches=4: op indices 0-3), in this space's vector layout (the
# same as the official one). Its official fixed-architecture path builds ops 1 and 3 as
# plain convolutions (general_child.py:389-405); here they are the separable ones.
OFFICIAL_FINAL_ARC: tuple[int, ...] = tuple(
    int(v)
    for v in """
    0
    3 0
    0 1 0
    2 0 0 1
    2 0 0 0 0
    3 1 1 0 1 0
    2 0 0 0 0 0 1
    2 0 1 1 0 1 1 1
    1 0 1 1 1 0 1 0 1
    0 0 0 0 0 0 0 0 0 0
    2 0 0 0 0 0 1 0 0 0 0
    0 1 0 0 1 1 0 0 0 0 1 1
    2 0 1 0 0 0 0 0 1 0 1 1 0
    1 0 0 1 0 0 0 1 1 1 0 1 0 1
    0 1 1 0 1 0 1 0 0 0 0 0 1 0 0
    2 0 0 1 0 0 0 0 0 0 0 1 0 1 0 1
    2 0 1 0 0 0 1 0 0 1 1 1 1 0 0 1 0
    2 0 0 0 0 1 0 1 0 1 0 0 1 0 1 0 0 1
    3 0 1 1 0 1 0 0 0 0 0 1 0 1 0 1 0 0 0
    3 0 1 1 0 0 0 0 0 0 0 0 0 1 1 0 0 0 0 1
    0 1 0 0 1 0 1 1 0 0 0 1 0 0 0 0 0 1 1 0 0
    3 0 1 0 1 1 0 0 1 0 1 1 0 1 1 0 1 0 0 1 0 0
    0 1 0 1 0 1 0 0 0 0 0 0 0 0 1 0 1 0 0 1 0 0 0
    0 1 1 0 0 0 1 1 1 0 1 0 0 0 1 0 1 0 0 1 1 0 0 0
    """.split()
)
_KERNEL = {"conv_3x3": 3, "sep_conv_3x3": 3, "conv_5x5": 5, "sep_conv_5x5": 5}

BN_EPS = 1e-5  # image_ops.py:92, batch_norm
BN_EPS_MASKED = 1e-3  # image_ops.py:134, batch_norm_with_mask (a conv branch's second BN)
BN_MOMENTUM = 0.9  # image_ops.py:92, decay

_he_normal = nn.initializers.he_normal()


def pool_layers(num_layers: int) -> tuple[int, ...]:
    """The layers after which every map is reduced (general_child.py:95-96): ``(L//3 - 1,
    2 (L//3) - 1)``, none when L < 3."""
    d = int(num_layers) // 3
    return (d - 1, 2 * d - 1) if d >= 1 else ()


@dataclasses.dataclass(frozen=True)
class MacroLayer:
    """One decoded layer: its op and the indices j < i of the maps ``x_j`` it adds."""

    op: str
    skips: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class MacroArch:
    """A decoded ENAS macro architecture (hashable: a static module field)."""

    layers: tuple[MacroLayer, ...]

    @property
    def num_layers(self) -> int:
        return len(self.layers)


def _is_int(x) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def needed_sources(arch: MacroArch, pool: int) -> tuple[int, ...]:
    """The maps ``x_j`` (j <= pool + 1) a fixed network must reduce after layer ``pool``: the
    next layer's input ``x_{pool+1}`` and those a later layer adds."""
    later = {j for i in range(pool + 1, arch.num_layers) for j in arch.layers[i].skips}
    return tuple(j for j in range(pool + 2) if j == pool + 1 or j in later)


@SPACES.register("enas_macro")
@dataclasses.dataclass(frozen=True)
class EnasMacroSpace(SharedWeightSpace):
    """The ENAS macro space (see the module docstring).

    Attributes:
      num_layers: L, the layers of the chain (the search script's 12).
      out_filters: the channels of every layer (the search script's 36; even, for the
        factorized reductions). A fidelity's ``width`` scales it.
      num_branches: the ops are ``ENAS_MACRO_OPS[:num_branches]`` (4, 5 or 6, as the
        official ``--child_num_branches``; 6 in the search script).
      keep_prob: the head's dropout keep probability in training (the search script's
        0.90); applied when the caller passes a ``"dropout"`` PRNG stream
        (``rngs={"dropout": key}``), else not (the generic child training passes none).
    """

    num_layers: int = 12
    out_filters: int = 36
    num_branches: int = 6
    keep_prob: float = 0.9

    name: ClassVar[str] = "enas_macro"

    def __post_init__(self):
        for field, low in (("num_layers", 1), ("out_filters", 2)):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"ENAS macro's {field} must be an int >= {low}, got {v!r}")
        if self.out_filters % 2:
            raise ValueError(
                f"ENAS macro's out_filters must be even (factorized reduction), got "
                f"{self.out_filters}"
            )
        if self.num_branches not in (4, 5, 6) or isinstance(self.num_branches, bool):
            raise ValueError(
                f"ENAS macro's num_branches must be 4, 5 or 6, got {self.num_branches!r}"
            )
        if not 0.0 < float(self.keep_prob) <= 1.0:
            raise ValueError(f"ENAS macro's keep_prob must be in (0, 1], got {self.keep_prob!r}")

    @property
    def ops(self) -> tuple[str, ...]:
        return ENAS_MACRO_OPS[: self.num_branches]

    @property
    def spec(self) -> DecisionSpec:
        decisions = []
        for i in range(self.num_layers):
            decisions.append(Categorical(f"L{i}/op", self.ops))
            decisions.append(Anchor(f"L{i}/skip", i))
        return DecisionSpec(tuple(decisions))

    # --- vector <-> MacroArch ----------------------------------------------------------

    def _check_vector(self, arch) -> np.ndarray:
        """``spec.validate``, with a vector of the wrong length named by the layer whose skip
        list it leaves short or long."""
        try:
            n = len(arch) if np.ndim(arch) == 1 else None
        except (TypeError, ValueError):  # ragged or not a sequence: validate names it
            n = None
        if n is not None and n != self.spec.length:
            pos = 0
            for i in range(self.num_layers):
                if pos + 1 + i > n:
                    have = max(0, n - pos - 1)
                    what = f"its op and {have} skip bits" if n > pos else "no entries"
                    raise ArchitectureRangeError(
                        f"an ENAS macro vector of {self.num_layers} layers has "
                        f"{self.spec.length} entries (per layer i the op and i skip bits), got "
                        f"shape ({n},): layer L{i} has {what}, expected its op and {i} skip bits"
                    )
                pos += 1 + i
            raise ArchitectureRangeError(
                f"an ENAS macro vector of {self.num_layers} layers has {self.spec.length} "
                f"entries (per layer i the op and i skip bits), got shape ({n},): {n - pos} left "
                f"over after L{self.num_layers - 1}'s skip list"
            )
        return self.spec.validate(arch)

    def decode(self, arch) -> MacroArch:
        """int vector -> :class:`MacroArch`."""
        if isinstance(arch, MacroArch):
            arch = self.encode(arch)
        a = self._check_vector(arch).tolist()
        out, pos = [], 0
        for i in range(self.num_layers):
            op = self.ops[a[pos]]
            bits = a[pos + 1 : pos + 1 + i]
            out.append(MacroLayer(op, tuple(j for j in range(i) if bits[j])))
            pos += 1 + i
        return MacroArch(tuple(out))

    def encode(self, arch: MacroArch) -> np.ndarray:
        """:class:`MacroArch` -> int vector.

        Raises:
          ArchitectureTypeError: not a MacroArch, an op that is not a str, a skip that is not
            an int.
          UnknownChoiceError: an op not in the space.
          ArchitectureRangeError: the wrong number of layers, a skip index that is not an
            earlier map (``0 <= j < i``) or is repeated.
        """
        if not isinstance(arch, MacroArch):
            raise ArchitectureTypeError(f"expected a MacroArch, got {type(arch).__name__}")
        if len(arch.layers) != self.num_layers:
            raise ArchitectureRangeError(
                f"architecture has {len(arch.layers)} layers, this space has {self.num_layers}"
            )
        out = []
        for i, layer in enumerate(arch.layers):
            if not isinstance(layer, MacroLayer):
                raise ArchitectureTypeError(f"L{i} is a {type(layer).__name__}, not a MacroLayer")
            if not isinstance(layer.op, str):
                raise ArchitectureTypeError(f"L{i}/op must be an op name, got {echo(layer.op)}")
            if layer.op not in self.ops:
                raise UnknownChoiceError(
                    f"L{i}/op = {echo(layer.op)} is not an op of this space: {list(self.ops)}"
                )
            out.append(self.ops.index(layer.op))
            skips = tuple(layer.skips)
            if not all(_is_int(j) for j in skips):
                raise ArchitectureTypeError(f"L{i} adds maps {echo(skips)}; expected ints")
            bad = [int(j) for j in skips if not 0 <= j < i]
            if bad:
                raise ArchitectureRangeError(
                    f"L{i} adds x_{bad[0]}, which is not an earlier map: layer {i} can add "
                    + (f"x_0 .. x_{i - 1} (x_0 the stem)" if i else "none")
                )
            if len(set(skips)) != len(skips):
                raise ArchitectureRangeError(f"L{i} adds a map twice: {skips}")
            out.extend(int(j in skips) for j in range(i))
        return np.asarray(out, np.int32)

    # --- text ----------------------------------------------------------------------------

    def to_text(self, arch) -> str:
        """int vector (or MacroArch) -> text, e.g. ``conv_3x3; sep_conv_5x5<-0``."""
        return "; ".join(
            x.op + ("<-" + ",".join(map(str, x.skips)) if x.skips else "")
            for x in self.decode(arch).layers
        )

    def parse(self, text: str) -> np.ndarray:
        """Text -> int vector.

        Strict: ASCII only; the layers ``;``-separated (white space around a layer ignored),
        each exactly ``{op}`` or ``{op}<-j,k,...`` with the indices in ASCII decimal digits
        without sign or leading zeros, distinct, in any order (a set).

        Raises:
          ArchitectureSyntaxError: a layer not of that form (``NonAsciiTextError`` for a
            non-ASCII character), an empty or absurdly long text.
          ArchitectureTypeError: ``text`` is not a ``str``.
          UnknownChoiceError: an op not in the space.
          ArchitectureRangeError: the wrong number of layers, a skip index that is not an
            earlier map, or one given twice.
        """
        what = "an ENAS macro architecture string"
        text = check_text(text, what)
        parts = [p.strip(ASCII_SPACE) for p in text.split(";")]
        layers = []
        for i, part in enumerate(parts):
            m = _LAYER_RE.fullmatch(part)
            if m is None:
                raise ArchitectureSyntaxError(
                    f"cannot parse ENAS macro layer {i} {echo(part)} of {echo(text)}: expected "
                    "{op} or {op}<-j,k,... (e.g. 'conv_3x3<-0,2')"
                )
            ins = m.group(2)
            skips = (
                tuple(parse_int(j, f"a skip index of L{i}") for j in ins.split(",")) if ins else ()
            )
            layers.append(MacroLayer(m.group(1), skips))
        if len(layers) != self.num_layers:
            raise ArchitectureRangeError(
                f"{echo(text)} has {len(layers)} layers, this space has {self.num_layers}"
            )
        return self.encode(MacroArch(tuple(layers)))

    # --- networks ------------------------------------------------------------------------

    def _as_arch(self, arch) -> MacroArch:
        return self.decode(self.encode(arch) if isinstance(arch, MacroArch) else arch)

    def filters_at(self, fidelity: Fidelity | None) -> int:
        """``out_filters`` scaled by a fidelity's width, rounded to an even count >= 2."""
        width = 1.0 if fidelity is None else float(fidelity.width)
        return max(2, 2 * int(round(self.out_filters * width / 2)))

    def network(
        self,
        arch,
        *,
        num_classes: int,
        fidelity: Fidelity | None = None,
        bn_axis_name: str | None = None,
    ) -> MacroNet:
        """The standalone network of ``arch`` (vector or MacroArch)."""
        return MacroNet(
            arch=self._as_arch(arch),
            num_classes=int(num_classes),
            out_filters=self.filters_at(fidelity),
            keep_prob=float(self.keep_prob),
            bn_axis_name=bn_axis_name,
        )

    def supergraph(
        self,
        *,
        num_classes: int,
        out_filters: int | None = None,
        bn_axis_name: str | None = None,
    ) -> MacroSupergraph:
        """The shared-weight supergraph (``apply(vars, images, arch, train=...)``)."""
        return MacroSupergraph(
            num_layers=self.num_layers,
            ops=self.ops,
            num_classes=int(num_classes),
            out_filters=int(out_filters or self.out_filters),
            keep_prob=float(self.keep_prob),
            bn_axis_name=bn_axis_name,
        )

    def supergraph_variables_to_network(self, arch, supergraph_variables) -> dict:
        """The variables of ``network(arch)`` taken from the supergraph's: the stem, the
        head, each layer's chosen op and skip BN, and the reductions of the maps the network
        uses (see :func:`needed_sources`). Arrays are shared, not copied."""
        decoded = self._as_arch(arch)
        wanted = {"stem": None, "head": None}
        for i, layer in enumerate(decoded.layers):
            wanted[f"layer{i}"] = (f"op_{layer.op}", "skip_bn")
        for p in pool_layers(self.num_layers):
            for j in needed_sources(decoded, p):
                wanted[f"reduce{p}_from{j}"] = None
        out = {}
        for col, tree in supergraph_variables.items():
            picked = {}
            for key, inner in wanted.items():
                if key not in tree:
                    continue
                sub = tree[key]
                picked[key] = sub if inner is None else {k: sub[k] for k in inner if k in sub}
            out[col] = picked
        return out

    # --- retraining (experiments.train) ---------------------------------------------------

    def retrain_architecture(self, text: str) -> MacroRetrainArch:
        """The architecture ``jnas.runner.train`` retrains (``config.space`` set to this
        space, ``config.genotype`` its text or the path of a file holding it, e.g. an ENAS
        search's ``genotype.txt``).

        Raises:
          ArchitectureError: the text (or the file's) is not an architecture of this space.
        """
        if isinstance(text, str) and "<-" not in text and os.path.isfile(text):
            with open(text) as f:
                text = f.read()
        return MacroRetrainArch(self, tuple(int(v) for v in self.parse(text)))

    # --- pictures ------------------------------------------------------------------------

    def draw(self, arch, out_dir: str, *, formats=("png", "svg"), backend: str = "auto"):
        """Writes the layer graph of ``arch`` (``macro.dot`` and ``macro.<fmt>``); see
        :func:`draw_macro`."""
        return draw_macro(self._as_arch(arch), out_dir, formats=formats, backend=backend)


@dataclasses.dataclass(frozen=True)
class MacroRetrainArch:
    """An ENAS macro architecture as :mod:`jnas.runner.train` retrains it: ``str`` is its
    text (the workdir's ``genotype.txt``), ``eval_network`` the standalone network returning
    ``(logits, None)``, trained with the evaluation recipe (augmentation, SGD, cosine lr;
    the head's dropout at the space's ``keep_prob``)."""

    space: EnasMacroSpace
    arch: tuple[int, ...]

    def validate(self) -> MacroRetrainArch:
        self.space.decode(np.asarray(self.arch, np.int32))
        return self

    def __str__(self) -> str:
        return self.space.to_text(np.asarray(self.arch, np.int32))

    def eval_network(self, *, num_classes: int, bn_axis_name: str | None = None) -> MacroNet:
        net = self.space.network(
            np.asarray(self.arch, np.int32), num_classes=num_classes, bn_axis_name=bn_axis_name
        )
        return net.clone(eval_outputs=True)


_LAYER_RE = re.compile(r"([A-Za-z0-9_]+)(?:<-([0-9]+(?:,[0-9]+)*))?")


# --- the modules -------------------------------------------------------------------------


def _bn(eps: float, axis_name, name: str | None = None) -> BatchNorm:
    return BatchNorm(momentum=BN_MOMENTUM, epsilon=eps, axis_name=axis_name, name=name)


def _conv(features: int, k: int, name: str, groups: int = 1) -> nn.Conv:
    return nn.Conv(
        features,
        (k, k),
        padding="SAME",
        use_bias=False,
        feature_group_count=groups,
        kernel_init=_he_normal,
        name=name,
    )


class MacroBranch(nn.Module):
    """One op of a layer: 1x1 conv -> BN -> ReLU, then the conv (-> BN -> ReLU) or pool."""

    op: str
    features: int
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        ura = not train
        c = self.features
        x = _conv(c, 1, "inp_conv")(x)
        x = nn.relu(_bn(BN_EPS, self.bn_axis_name, "inp_bn")(x, use_running_average=ura))
        if self.op in ("avg_pool_3x3", "max_pool_3x3"):
            pool = jlayers.avg_pool if self.op == "avg_pool_3x3" else jlayers.max_pool
            return pool(x, 3, 1, 1)
        k = _KERNEL[self.op]
        if self.op.startswith("sep_"):
            x = _conv(c, k, "depthwise", groups=c)(x)
            x = _conv(c, 1, "pointwise")(x)
        else:
            x = _conv(c, k, "conv")(x)
        return nn.relu(_bn(BN_EPS_MASKED, self.bn_axis_name, "out_bn")(x, use_running_average=ura))


class FactorizedReduction(nn.Module):
    """general_child.py:129-177: two stride-2 paths (the second shifted one pixel), a 1x1
    conv to half the filters each, concatenated, BN (no ReLU)."""

    features: int
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        half = self.features // 2
        p1 = _conv(half, 1, "path1_conv")(x[:, ::2, ::2, :])
        shifted = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))[:, 1:, 1:, :]
        p2 = _conv(half, 1, "path2_conv")(shifted[:, ::2, ::2, :])
        out = jnp.concatenate([p1, p2], axis=-1)
        return _bn(BN_EPS, self.bn_axis_name, "bn")(out, use_running_average=not train)


class MacroLayerOps(nn.Module):
    """A layer's ops (every op of the space in the supergraph, the chosen one in a fixed
    network) and its skip BN (layers i >= 1)."""

    ops: tuple[str, ...]
    features: int
    has_skip: bool
    bn_axis_name: str | None = None

    def setup(self):
        self.op = {name: MacroBranch(name, self.features, self.bn_axis_name) for name in self.ops}
        if self.has_skip:
            self.skip_bn = _bn(BN_EPS, self.bn_axis_name)

    def __call__(self, x, index, skip_sum, train: bool):
        if len(self.ops) == 1:
            out = self.op[self.ops[0]](x, train)
        else:

            def branch(name, mdl, x):
                return mdl.op[name](x, train)

            branches = [lambda m, x, n=n: branch(n, m, x) for n in self.ops]
            if self.is_mutable_collection("params"):
                # Initialisation creates every op's variables (no switch needed).
                out = jnp.stack([b(self, x) for b in branches])[index]
            else:
                # Only the sampled op runs: `nn.switch` is `lax.switch`, which XLA compiles
                # to a `conditional` that executes one branch, forward and backward. This
                # call is outside any vmap (a switch under vmap with a batched index would
                # become a select that computes every op), as in GDAS (jnas.spaces.edges).
                out = nn.switch(index, branches, self, x)
        if self.has_skip:
            out = self.skip_bn(out + skip_sum, use_running_average=not train)
        return out


class _Head(nn.Module):
    num_classes: int
    keep_prob: float

    @nn.compact
    def __call__(self, x, train: bool):
        x = jnp.mean(x, axis=(1, 2))
        if train and self.keep_prob < 1.0 and self.has_rng("dropout"):
            x = nn.Dropout(rate=1.0 - self.keep_prob, deterministic=False)(x)
        return nn.Dense(self.num_classes, use_bias=False, kernel_init=_he_normal, name="fc")(x)


class _Stem(nn.Module):
    """general_child.py:197-201: 3x3 conv -> BN (no ReLU)."""

    features: int
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool):
        x = _conv(self.features, 3, "conv")(x)
        return _bn(BN_EPS, self.bn_axis_name, "bn")(x, use_running_average=not train)


class MacroNet(nn.Module):
    """The standalone network of one macro architecture (``apply(vars, x, train=...)``).

    Attributes:
      arch: the decoded architecture (static).
      num_classes: classifier outputs.
      out_filters: channels of every layer (even).
      keep_prob: dropout keep probability of the head (with a ``"dropout"`` rng).
      bn_axis_name: a pmap axis over which batch statistics are averaged.
      eval_outputs: return ``(logits, None)`` (the evaluation networks' ``(logits,
        logits_aux)`` that :mod:`jnas.runner.train_step` trains) instead of the logits.
    """

    arch: MacroArch
    num_classes: int
    out_filters: int = 36
    keep_prob: float = 1.0
    bn_axis_name: str | None = None
    eval_outputs: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, drop_path_prob=None):
        """NHWC float images -> logits ``[N, num_classes]``. ``drop_path_prob`` is accepted
        and ignored (the macro network has no paths to drop; the official general child
        takes ``drop_path_keep_prob`` and never uses it)."""
        del drop_path_prob
        c, ax = self.out_filters, self.bn_axis_name
        pools = pool_layers(self.arch.num_layers)
        xs: list = [_Stem(c, ax, name="stem")(x, train)]
        out = xs[0]
        for i, layer in enumerate(self.arch.layers):
            skip_sum = None
            if i:
                skip_sum = sum((xs[j] for j in layer.skips), start=jnp.zeros_like(xs[i]))
            out = MacroLayerOps((layer.op,), c, i > 0, ax, name=f"layer{i}")(
                xs[i], None, skip_sum, train
            )
            xs.append(out)
            if i in pools:
                keep = set(needed_sources(self.arch, i))
                xs = [
                    FactorizedReduction(c, ax, name=f"reduce{i}_from{j}")(v, train)
                    if j in keep
                    else None
                    for j, v in enumerate(xs)
                ]
        logits = _Head(self.num_classes, self.keep_prob, name="head")(out, train)
        return (logits, None) if self.eval_outputs else logits


class MacroSupergraph(nn.Module):
    """The shared-weight supergraph of the macro space: ``apply(vars, x, arch, train=...)``
    with ``arch`` the int32 vector (traced: one compiled program for every architecture).

    Each layer holds one parameter set per op (``layer{i}/op_{name}``) and computes only the
    sampled op (``lax.switch``, see :class:`MacroLayerOps`); the skip connections are the
    anchor bits as 0/1 weights on the earlier maps (all of one shape: the same program for
    every set of skips; an unchosen map gets a zero gradient through it); every map is
    reduced at the pool layers, each with its own weights, as in the official search.
    """

    num_layers: int
    ops: tuple[str, ...]
    num_classes: int
    out_filters: int = 36
    keep_prob: float = 1.0
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, arch: jax.Array, train: bool = True) -> jax.Array:
        c, ax = self.out_filters, self.bn_axis_name
        arch = jnp.asarray(arch, jnp.int32)
        pools = pool_layers(self.num_layers)
        xs = [_Stem(c, ax, name="stem")(x, train)]
        out = xs[0]
        pos = 0
        for i in range(self.num_layers):
            index = arch[pos]
            skip_sum = None
            if i:
                # The anchor bits as 0/1 weights of the earlier maps (all of one shape): a
                # weighted sum, which XLA fuses into one elementwise pass (a stack and a
                # contraction would first copy the i maps into one array).
                bits = arch[pos + 1 : pos + 1 + i].astype(x.dtype)
                skip_sum = sum((bits[j] * xs[j] for j in range(1, i)), start=bits[0] * xs[0])
            out = MacroLayerOps(self.ops, c, i > 0, ax, name=f"layer{i}")(
                xs[i], index, skip_sum, train
            )
            xs.append(out)
            pos += 1 + i
            if i in pools:
                xs = [
                    FactorizedReduction(c, ax, name=f"reduce{i}_from{j}")(v, train)
                    for j, v in enumerate(xs)
                ]
        return _Head(self.num_classes, self.keep_prob, name="head")(out, train)


# --- the picture -------------------------------------------------------------------------


def _source_name(j: int) -> str:
    return "stem" if j == 0 else f"L{j - 1}"


def macro_graph(arch: MacroArch):
    """The layer graph of a macro architecture.

    Returns:
      ``(nodes, edges)``: nodes as ``(name, label, kind)`` (kind ``input``, ``node`` or
      ``output``): the image, the stem, one node per layer labelled ``L{i}: {op}``, the head;
      edges as ``(source, target, label, kind)`` with kind ``chain`` (the map a layer reads)
      or ``skip`` (a map it adds); the label says how many factorized reductions the map
      went through on its way (``"reduce"``, ``"reduce x2"``), else ``""``.
    """
    n = arch.num_layers
    pools = pool_layers(n)
    nodes = [("image", "image", "input"), ("stem", "stem", "node")]
    nodes += [(f"L{i}", f"L{i}: {layer.op}", "node") for i, layer in enumerate(arch.layers)]
    nodes.append(("head", "avg pool, fc", "output"))

    def label(j: int, i: int) -> str:
        r = sum(1 for p in pools if j - 1 <= p < i)
        return "" if r == 0 else ("reduce" if r == 1 else f"reduce x{r}")

    edges = [("image", "stem", "", "chain")]
    for i, layer in enumerate(arch.layers):
        edges.append((_source_name(i), f"L{i}", label(i, i), "chain"))
        edges += [(_source_name(j), f"L{i}", label(j, i), "skip") for j in layer.skips]
    edges.append((f"L{n - 1}", "head", "", "chain"))
    return nodes, edges


def macro_dot(arch: MacroArch) -> str:
    """The Graphviz DOT source of the layer graph (styled like jnas.spaces.draw's cells)."""
    from jnas.spaces.draw import _FILL

    nodes, edges = macro_graph(arch)
    lines = [
        "digraph macro {",
        "  rankdir=TB;",
        '  node [style="rounded,filled", shape=rect, align=center, fontsize=20, height=0.5,'
        ' width=0.5, penwidth=2, fontname="times"];',
        '  edge [fontsize=16, fontname="times"];',
    ]
    for name, text, kind in nodes:
        lines.append(f'  "{name}" [label="{text}", fillcolor={_FILL[kind]}];')
    for src, dst, text, kind in edges:
        attrs = [f'label="{text}"'] if text else []
        if kind == "skip":
            attrs += ["style=dashed", "color=gray40", "constraint=false"]
        lines.append(f'  "{src}" -> "{dst}" [{", ".join(attrs)}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _render_macro_matplotlib(arch: MacroArch, paths: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jnas.spaces.draw import _MPL_FILL, node_box, save_figure

    nodes, edges = macro_graph(arch)
    pos = {name: (0.0, -1.2 * k) for k, (name, _, _) in enumerate(nodes)}
    fig, ax = plt.subplots(figsize=(8, 0.9 * len(nodes) + 1))
    reach = 0.0
    for src, dst, text, kind in edges:
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        skip = kind == "skip"
        # A skip bulges right: arc3's control point is rad * (y1 - y0) right of the middle,
        # the curve's apex half that; longer skips bulge further (nested, not crossing).
        rad = -0.5 if skip else 0.0
        apex = rad * (y1 - y0) / 2
        reach = max(reach, apex)
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops=dict(
                arrowstyle="-|>",
                color="gray",
                lw=1.2,
                ls="--" if skip else "-",
                shrinkA=12,
                shrinkB=12,
                connectionstyle=f"arc3,rad={rad}",
            ),
        )
        if text:
            where = (apex + 0.1, (y0 + y1) / 2) if skip else (0.15, (y0 + y1) / 2)
            ax.text(*where, text, fontsize=8, ha="left", va="center")
    for name, text, kind in nodes:
        node_box(ax, pos[name], text, _MPL_FILL[kind], fontsize=11)
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(-3.0, max(3.0, reach + 1.5))
    ax.set_aspect("equal")  # arc3 bends in display units: equal units keep `apex` right
    ax.set_ylim(min(ys) - 1, max(ys) + 1)
    ax.axis("off")
    save_figure(fig, paths)


def draw_macro(
    arch: MacroArch,
    out_dir: str,
    *,
    formats: tuple[str, ...] = ("png", "svg"),
    backend: str = "auto",
) -> list[str]:
    """Renders the layer graph of ``arch`` into ``out_dir`` (created if missing):
    ``macro.dot`` and ``macro.<fmt>`` per format, with Graphviz where it is installed, else
    matplotlib (as :func:`jnas.spaces.draw.draw_genotype`).

    Returns:
      The paths written, the DOT source first.
    """
    from jnas.spaces.draw import render

    if not isinstance(arch, MacroArch):
        raise TypeError(f"arch must be a MacroArch, got {type(arch).__name__}")
    return render(
        macro_dot(arch),
        out_dir,
        "macro",
        formats,
        backend,
        lambda paths: _render_macro_matplotlib(arch, paths),
    )
