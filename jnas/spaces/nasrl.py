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

`train_child` trains a decoded architecture briefly (a low-fidelity estimate) on in-memory
arrays and returns its validation accuracy, the reward of the NAS-RL controller.
"""

from __future__ import annotations

import dataclasses
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jnas.spaces.discrete import Anchor, ArchitectureError, Categorical, DecisionSpec


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


@dataclasses.dataclass(frozen=True)
class NasRLSpace:
    """The NAS-RL space; satisfies `jnas.spaces.discrete.DiscreteSpace`.

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
        if len(arch.layers) != self.num_layers:
            raise ArchitectureError(
                f"architecture has {len(arch.layers)} layers, this space has {self.num_layers}"
            )
        out = []
        for i, layer in enumerate(arch.layers):
            out.append(_index(self.filter_sizes, layer.filter_height, f"L{i}/filter_height"))
            out.append(_index(self.filter_sizes, layer.filter_width, f"L{i}/filter_width"))
            if self.predict_stride:
                out.append(_index(self.strides, layer.stride, f"L{i}/stride"))
            elif layer.stride != 1:
                raise ArchitectureError(f"L{i} has stride {layer.stride}; this space fixes 1")
            out.append(_index(self.num_filters, layer.num_filters, f"L{i}/num_filters"))
            inputs = tuple(layer.inputs)
            if any(j < 0 or j >= i for j in inputs) or len(set(inputs)) != len(inputs):
                raise ArchitectureError(f"L{i} reads layers {inputs}; expected distinct j < {i}")
            if self.skip_connections:
                out.extend(int(j in inputs) for j in range(i))
            elif inputs != ((i - 1,) if i else ()):
                raise ArchitectureError(f"L{i} reads {inputs}; this space is a plain chain")
        return np.asarray(out, np.int32)

    def to_text(self, arch) -> str:
        """int vector -> text form, e.g. `3x3/s1/f36; 5x7/s1/f48<-0`."""
        return "; ".join(
            f"{x.filter_height}x{x.filter_width}/s{x.stride}/f{x.num_filters}"
            + ("<-" + ",".join(map(str, x.inputs)) if x.inputs else "")
            for x in self.decode(arch).layers
        )

    def parse(self, text: str) -> np.ndarray:
        """Text form -> int vector; raises `ArchitectureError` naming the offending layer."""
        if not isinstance(text, str):
            raise ArchitectureError(f"expected an architecture string, got {type(text).__name__}")
        parts = [p.strip() for p in text.split(";")]
        layers = []
        for i, part in enumerate(parts):
            m = _LAYER_RE.fullmatch(part)
            if m is None:
                raise ArchitectureError(
                    f"cannot parse NAS-RL layer {i} {part!r} of {text!r}: "
                    "expected {h}x{w}/s{stride}/f{filters}[<-j,k,...]"
                )
            fh, fw, s, nf, ins = m.groups()
            inputs = tuple(int(j) for j in ins.split(",")) if ins else ()
            layers.append(ConvLayer(int(fh), int(fw), int(s), int(nf), inputs))
        return self.encode(NasRLArch(tuple(layers)))


_LAYER_RE = re.compile(r"(\d+)x(\d+)/s(\d+)/f(\d+)(?:<-(\d+(?:,\d+)*))?")


def _index(choices: tuple, value, name: str) -> int:
    if value not in choices:
        raise ArchitectureError(f"{name} = {value!r} is not one of {list(choices)}")
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


@dataclasses.dataclass(frozen=True)
class ChildTrainConfig:
    """Low-fidelity training of a child network (SGD with Nesterov momentum, cosine decay).

    Attributes:
      num_steps: optimizer steps (the fidelity).
      batch_size: training batch size (capped at the number of training images).
      learning_rate: peak learning rate, decayed to 0 by a cosine schedule.
      momentum: Nesterov momentum (Zoph & Le train children with momentum 0.9, Nesterov).
      weight_decay: L2 weight decay added to the gradients.
      eval_batch_size: batch size of the validation pass.
      num_classes: classifier outputs; 0 infers max(label) + 1 from the arrays.
    """

    num_steps: int = 100
    batch_size: int = 64
    learning_rate: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    eval_batch_size: int = 500
    num_classes: int = 0

    @classmethod
    def make(cls, config=None) -> ChildTrainConfig:
        """From None, a `ChildTrainConfig`, or a mapping / `ConfigDict` of some of the fields."""
        if config is None or isinstance(config, cls):
            return config or cls()
        items = dict(config.items())  # a Mapping or an ml_collections ConfigDict
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in items if k not in names)
        if unknown:
            raise ValueError(f"unknown child training option(s) {unknown}; known: {sorted(names)}")
        return cls(**items)


def _check_arrays(arrays, what: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        images, labels = arrays
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a pair (images, labels)") from None
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim == 3:  # [N, H, W] grayscale
        images = images[..., None]
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"{what} images have shape {images.shape}, expected [N, H, W, C], N > 0")
    if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{what} labels have shape {labels.shape} and dtype {labels.dtype}, "
            f"expected integers of shape ({images.shape[0]},)"
        )
    return images, labels.astype(np.int32)


def train_child(arch: NasRLArch, train_arrays, val_arrays, *, config=None, key: jax.Array):
    """Trains the child network of `arch` briefly and returns its validation accuracy.

    Training calls one jit-compiled step `num_steps` times (not a `lax.scan`: XLA:CPU runs the
    convolutions of a loop body up to 50x slower than the same step outside a loop); step t
    draws a batch without replacement with `fold_in(data_key, t)`. Images are scaled to [0, 1] and
    normalized per channel with the training images' mean and standard deviation.

    Args:
      arch: the decoded architecture (`NasRLSpace.decode(vector)`).
      train_arrays: `(images, labels)`: uint8 (or float in [0, 255]) `[N, H, W, C]` (or
        `[N, H, W]`) and int `[N]`.
      val_arrays: the same for the validation images.
      config: `ChildTrainConfig`, or a mapping / `ConfigDict` of its fields, or None.
      key: a PRNG key (initialization and batch order).

    Returns:
      The validation accuracy, a float in [0, 1].
    """
    cfg = ChildTrainConfig.make(config)
    x_train, y_train = _check_arrays(train_arrays, "train_arrays")
    x_val, y_val = _check_arrays(val_arrays, "val_arrays")
    if x_train.shape[1:] != x_val.shape[1:]:
        raise ValueError(f"image shapes differ: {x_train.shape[1:]} vs {x_val.shape[1:]}")
    num_classes = cfg.num_classes or int(max(y_train.max(), y_val.max())) + 1
    pixels = x_train.reshape(-1, x_train.shape[-1]).astype(np.float64) / 255.0
    mean = jnp.asarray(pixels.mean(0), jnp.float32)
    std = jnp.asarray(np.maximum(pixels.std(0), 1e-3), jnp.float32)
    normalize = lambda x: (x.astype(jnp.float32) / 255.0 - mean) / std

    model = ChildNet(arch, num_classes)
    init_key, data_key = jax.random.split(key)
    variables = jax.jit(model.init)(init_key, jnp.zeros((1, *x_train.shape[1:]), jnp.float32))
    schedule = optax.cosine_decay_schedule(cfg.learning_rate, max(cfg.num_steps, 1))
    tx = optax.chain(
        optax.add_decayed_weights(cfg.weight_decay),
        optax.sgd(schedule, momentum=cfg.momentum, nesterov=True),
    )
    batch = min(cfg.batch_size, x_train.shape[0])

    def loss_fn(p, bs, x, y):
        logits, upd = model.apply(
            {"params": p, "batch_stats": bs}, x, train=True, mutable=["batch_stats"]
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, upd["batch_stats"]

    @jax.jit
    def step(carry, t, x_all, y_all):
        p, bs, opt = carry
        k = jax.random.fold_in(data_key, t)
        idx = jax.random.choice(k, x_all.shape[0], (batch,), replace=False)
        grads, bs = jax.grad(loss_fn, has_aux=True)(p, bs, normalize(x_all[idx]), y_all[idx])
        updates, opt = tx.update(grads, opt, p)
        return optax.apply_updates(p, updates), bs, opt

    def train(params, batch_stats, x_all, y_all):
        carry = (params, batch_stats, jax.jit(tx.init)(params))
        for t in range(cfg.num_steps):
            carry = step(carry, jnp.int32(t), x_all, y_all)
        return carry[0], carry[1]

    @jax.jit
    def num_correct(params, batch_stats, x, y, mask):
        logits = model.apply({"params": params, "batch_stats": batch_stats}, normalize(x))
        return jnp.sum((jnp.argmax(logits, -1) == y) & mask)

    params, batch_stats = train(
        variables["params"], variables["batch_stats"], jnp.asarray(x_train), jnp.asarray(y_train)
    )
    eb = min(cfg.eval_batch_size, x_val.shape[0])
    correct = 0
    for start in range(0, x_val.shape[0], eb):  # fixed-size batches: one compilation
        x, y = x_val[start : start + eb], y_val[start : start + eb]
        mask = np.arange(eb) < x.shape[0]
        x = np.concatenate([x, np.zeros((eb - x.shape[0], *x.shape[1:]), x.dtype)])
        y = np.concatenate([y, np.zeros((eb - y.shape[0],), y.dtype)])
        correct += int(num_correct(params, batch_stats, x, y, mask))
    return correct / x_val.shape[0]
