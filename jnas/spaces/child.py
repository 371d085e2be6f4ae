"""Child training: a fixed network trained briefly on in-memory arrays and scored on others.

This is how a discrete search judges a child at a given :class:`~jnas.spaces.base.Fidelity`
when no table holds its accuracy (NAS-RL, Zoph & Le 2017: the validation accuracy of the
trained child is the controller's reward). Any space gets it through
``SearchSpace.train_child``, which calls :func:`train_space_child`: the space builds
``network(arch, num_classes=..., fidelity=...)`` and :func:`train_classifier` trains it.

A network here is a Flax module called ``apply(variables, images, train=...)`` (``train``
defaults to False) on NHWC float images, returning logits; it may keep ``batch_stats``.

Fidelity: ``num_steps`` replaces the config's, ``data_fraction`` trains on the first fraction
of the training arrays (validation is always on all of ``val_arrays``), ``width`` is the
space's to apply when it builds the network.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jnas.spaces.base import Fidelity


@dataclasses.dataclass(frozen=True)
class ChildTrainConfig:
    """Low-fidelity training of a child network (SGD with Nesterov momentum, cosine decay).

    Attributes:
      num_steps: optimizer steps (a fidelity's ``num_steps`` replaces it).
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
        """From None, a ``ChildTrainConfig``, or a mapping / ``ConfigDict`` of some fields."""
        if config is None or isinstance(config, cls):
            return config or cls()
        items = dict(config.items())  # a Mapping or an ml_collections ConfigDict
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in items if k not in names)
        if unknown:
            raise ValueError(f"unknown child training option(s) {unknown}; known: {sorted(names)}")
        return cls(**items)


def check_arrays(arrays, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` as numpy ``[N, H, W, C]`` and int32 ``[N]``; a named ValueError
    otherwise (``what`` names the argument)."""
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


def num_classes_of(config: ChildTrainConfig, train_arrays, val_arrays) -> int:
    """``config.num_classes``, or max(label) + 1 over both label arrays when it is 0."""
    if config.num_classes:
        return int(config.num_classes)
    _, y_train = check_arrays(train_arrays, "train_arrays")
    _, y_val = check_arrays(val_arrays, "val_arrays")
    return int(max(y_train.max(), y_val.max())) + 1


def _fidelity(fidelity) -> Fidelity:
    if fidelity is None:
        return Fidelity()
    if not isinstance(fidelity, Fidelity):
        raise TypeError(f"fidelity must be a jnas.spaces.base.Fidelity, got {fidelity!r}")
    if fidelity.epochs is not None:
        raise ValueError(
            f"fidelity.epochs = {fidelity.epochs} selects a table's results; a trained child "
            "takes num_steps instead"
        )
    return fidelity


def train_classifier(
    model, train_arrays, val_arrays, *, config=None, key: jax.Array, fidelity=None
) -> float:
    """Trains ``model`` briefly and returns its accuracy on ``val_arrays``.

    Training calls one jit-compiled step ``num_steps`` times (not a ``lax.scan``: XLA:CPU runs
    the convolutions of a loop body up to 50x slower than the same step outside a loop); step
    t draws a batch without replacement with ``fold_in(data_key, t)``, where ``init_key,
    data_key = split(key)``. Images are scaled to [0, 1] and normalised per channel with the
    mean and standard deviation of the images trained on.

    Args:
      model: a Flax module, ``apply(variables, images, train=...) -> logits`` (see the module
        docstring); its classifier must have as many outputs as the labels have classes.
      train_arrays: ``(images, labels)``: uint8 (or float in [0, 255]) ``[N, H, W, C]`` (or
        ``[N, H, W]``) and int ``[N]``.
      val_arrays: the same for the validation images.
      config: a :class:`ChildTrainConfig`, a mapping / ``ConfigDict`` of its fields, or None.
      key: a PRNG key (initialisation and batch order).
      fidelity: a :class:`~jnas.spaces.base.Fidelity` (``num_steps``, ``data_fraction``; its
        ``width`` is applied where the model is built), or None for the config's budget.

    Returns:
      The validation accuracy, a float in [0, 1].
    """
    cfg = ChildTrainConfig.make(config)
    fid = _fidelity(fidelity)
    x_train, y_train = check_arrays(train_arrays, "train_arrays")
    x_val, y_val = check_arrays(val_arrays, "val_arrays")
    if x_train.shape[1:] != x_val.shape[1:]:
        raise ValueError(f"image shapes differ: {x_train.shape[1:]} vs {x_val.shape[1:]}")
    if fid.data_fraction < 1.0:
        n = max(1, int(round(fid.data_fraction * x_train.shape[0])))
        x_train, y_train = x_train[:n], y_train[:n]
    num_steps = int(fid.num_steps) if fid.num_steps is not None else int(cfg.num_steps)
    pixels = x_train.reshape(-1, x_train.shape[-1]).astype(np.float64) / 255.0
    mean = jnp.asarray(pixels.mean(0), jnp.float32)
    std = jnp.asarray(np.maximum(pixels.std(0), 1e-3), jnp.float32)
    normalize = lambda x: (x.astype(jnp.float32) / 255.0 - mean) / std

    init_key, data_key = jax.random.split(key)
    variables = jax.jit(model.init)(init_key, jnp.zeros((1, *x_train.shape[1:]), jnp.float32))
    schedule = optax.cosine_decay_schedule(cfg.learning_rate, max(num_steps, 1))
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
        return loss, upd.get("batch_stats", bs)

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
        for t in range(num_steps):
            carry = step(carry, jnp.int32(t), x_all, y_all)
        return carry[0], carry[1]

    @jax.jit
    def num_correct(params, batch_stats, x, y, mask):
        logits = model.apply({"params": params, "batch_stats": batch_stats}, normalize(x))
        return jnp.sum((jnp.argmax(logits, -1) == y) & mask)

    params, batch_stats = train(
        variables["params"],
        variables.get("batch_stats", {}),
        jnp.asarray(x_train),
        jnp.asarray(y_train),
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


def train_space_child(
    space, arch, train_arrays, val_arrays, *, fidelity=None, config=None, key: jax.Array
) -> float:
    """Trains ``space.network(arch)`` at ``fidelity`` and returns its validation accuracy.

    The network is built with ``num_classes`` from the config (or the labels, when it is 0)
    and the fidelity (its ``width``); :func:`train_classifier` trains and scores it.

    Args:
      space: a :class:`~jnas.spaces.base.SearchSpace`.
      arch: an architecture of ``space`` (int32 vector or its decoded object).
      train_arrays, val_arrays: ``(images, labels)`` (see :func:`train_classifier`).
      fidelity: a :class:`~jnas.spaces.base.Fidelity` or None.
      config: a :class:`ChildTrainConfig`, a mapping of its fields, or None.
      key: a PRNG key.
    """
    cfg = ChildTrainConfig.make(config)
    fid = _fidelity(fidelity)
    model = space.network(
        arch, num_classes=num_classes_of(cfg, train_arrays, val_arrays), fidelity=fid
    )
    return train_classifier(model, train_arrays, val_arrays, config=cfg, key=key, fidelity=fid)


def count_params(model, image_shape) -> int:
    """Parameters of ``model`` on images of shape ``[H, W, C]`` (shapes only: no compile)."""
    shapes = jax.eval_shape(
        model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    )
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes["params"])))
