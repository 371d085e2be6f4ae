"""Child training: a fixed network trained briefly on in-memory arrays and scored on others.

This is how a discrete search judges a child at a given :class:`~jnas.spaces.base.Fidelity`
when no table holds its accuracy (NAS-RL, Zoph & Le 2017: the validation accuracy of the
trained child is the controller's reward). Any space gets it through
``SearchSpace.train_child``, which calls :func:`train_space_child`: the space builds
``network(arch, num_classes=..., fidelity=...)`` and :func:`train_classifier` trains it.

A network here is a Flax module called ``apply(variables, images, train=...)`` (``train``
defaults to False) on NHWC float images, returning logits; it may keep ``batch_stats``.

Fidelity: ``num_steps`` replaces the config's, or ``epochs`` sets it to ``epochs *
ceil(n / batch_size)`` (n the images trained on); ``data_fraction`` trains on the first
fraction of the training arrays (validation is always on all of ``val_arrays``);
``resolution`` resizes training and validation images (bilinear, antialiased, aspect kept)
so that their shorter side has that many pixels; ``width`` is the space's to apply when it
builds the network. ``SearchSpace.check_fidelity`` rejects, before anything is compiled, a
fidelity the space cannot apply (:class:`~jnas.spaces.base.FidelityError`).

Early stopping: :func:`fit_classifier` takes a ``monitor``, called after every epoch with
the validation accuracies so far and the epoch the training would end at; it returns True to
stop the child there (e.g. the learning-curve rule of :mod:`jnas.estimation.curves`). The
result (:class:`ChildResult`) says how many epochs and steps were trained and the curve.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jnas.spaces.base import Fidelity, FidelityError


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
    return fidelity


def resize_images(images: np.ndarray, resolution: int) -> np.ndarray:
    """NHWC images resized so that their shorter side is ``resolution`` pixels (aspect kept;
    bilinear with antialiasing, ``jax.image.resize``), as float32 in the input's range."""
    n, h, w, c = images.shape
    scale = resolution / min(h, w)
    shape = (n, max(1, int(round(h * scale))), max(1, int(round(w * scale))), c)
    if shape == images.shape:
        return images
    out = jax.image.resize(jnp.asarray(images, jnp.float32), shape, "linear", antialias=True)
    return np.asarray(out)


@dataclasses.dataclass(frozen=True)
class ChildResult:
    """What training a child gave.

    Attributes:
      accuracy: the validation accuracy at the end of training (stopped or not).
      epochs: epochs trained (``steps / steps_per_epoch``; less than ``planned_epochs`` when
        the monitor stopped it).
      planned_epochs: the epochs the fidelity asked for.
      steps: optimizer steps trained.
      steps_per_epoch: ``ceil(n / batch)`` for the n images trained on.
      curve: the validation accuracy after each whole epoch (empty without a monitor).
      stopped: whether the monitor stopped the child early.
      variables: the trained ``{"params", "batch_stats"}`` when asked for
        (``return_variables=True``), else None.
    """

    accuracy: float
    epochs: float
    planned_epochs: float
    steps: int
    steps_per_epoch: int
    curve: tuple[float, ...] = ()
    stopped: bool = False
    variables: dict | None = dataclasses.field(default=None, repr=False, compare=False)


Monitor = Callable[[Sequence[float], float], bool]


def planned_steps(config, fidelity, num_train: int) -> tuple[int, int]:
    """``(num_steps, steps_per_epoch)`` of a child trained at ``fidelity`` on ``num_train``
    images (before its ``data_fraction``), as :func:`fit_classifier` plans them."""
    cfg, fid = ChildTrainConfig.make(config), _fidelity(fidelity)
    n = max(1, int(round(fid.data_fraction * num_train))) if fid.data_fraction < 1 else num_train
    steps_per_epoch = math.ceil(n / min(cfg.batch_size, n))
    if fid.epochs is not None:
        return int(fid.epochs) * steps_per_epoch, steps_per_epoch
    return (
        int(fid.num_steps) if fid.num_steps is not None else int(cfg.num_steps)
    ), steps_per_epoch


def train_classifier(
    model, train_arrays, val_arrays, *, config=None, key: jax.Array, fidelity=None
) -> float:
    """Trains ``model`` briefly and returns its accuracy on ``val_arrays`` (see
    :func:`fit_classifier`, which this calls without a monitor)."""
    return fit_classifier(
        model, train_arrays, val_arrays, config=config, key=key, fidelity=fidelity
    ).accuracy


def fit_classifier(
    model,
    train_arrays,
    val_arrays,
    *,
    config=None,
    key: jax.Array,
    fidelity=None,
    monitor: Monitor | None = None,
    init_variables=None,
    return_variables: bool = False,
) -> ChildResult:
    """Trains ``model`` briefly and scores it on ``val_arrays``.

    Training calls one jit-compiled step per step (not a ``lax.scan``: XLA:CPU runs the
    convolutions of a loop body up to 50x slower than the same step outside a loop); step
    t draws a batch without replacement with ``fold_in(data_key, t)``, where ``init_key,
    data_key = split(key)``. Images are scaled to [0, 1] and normalised per channel with the
    mean and standard deviation of the images trained on. The learning rate follows a cosine
    decay over the planned steps; a child stopped early keeps the weights it has.

    Args:
      model: a Flax module, ``apply(variables, images, train=...) -> logits`` (see the module
        docstring); its classifier must have as many outputs as the labels have classes.
      train_arrays: ``(images, labels)``: uint8 (or float in [0, 255]) ``[N, H, W, C]`` (or
        ``[N, H, W]``) and int ``[N]``.
      val_arrays: the same for the validation images.
      config: a :class:`ChildTrainConfig`, a mapping / ``ConfigDict`` of its fields, or None.
      key: a PRNG key (initialisation and batch order).
      fidelity: a :class:`~jnas.spaces.base.Fidelity` (``num_steps`` or ``epochs``,
        ``data_fraction``, ``resolution``; its ``width`` is applied where the model is
        built), or None for the config's budget.
      monitor: None, or ``monitor(curve, planned_epochs) -> bool`` called after every whole
        epoch with the validation accuracies so far; True stops the training there.
      init_variables: None (a fresh ``model.init``), or the ``{"params", "batch_stats"}``
        to start from (e.g. a parent's, morphed); they must have the shapes ``model.init``
        gives (a ValueError names the first that does not).
      return_variables: whether the result carries the trained variables.

    Returns:
      A :class:`ChildResult` (``accuracy`` in [0, 1]).

    Raises:
      FidelityError: a resolution above the images'.
    """
    cfg = ChildTrainConfig.make(config)
    fid = _fidelity(fidelity)
    x_train, y_train = check_arrays(train_arrays, "train_arrays")
    x_val, y_val = check_arrays(val_arrays, "val_arrays")
    if x_train.shape[1:] != x_val.shape[1:]:
        raise ValueError(f"image shapes differ: {x_train.shape[1:]} vs {x_val.shape[1:]}")
    if fid.resolution is not None:
        side = min(x_train.shape[1:3])
        if fid.resolution > side:
            raise FidelityError(
                f"fidelity resolution = {fid.resolution} is above the images' {side} pixels"
            )
    if fid.data_fraction < 1.0:
        n = max(1, int(round(fid.data_fraction * x_train.shape[0])))
        x_train, y_train = x_train[:n], y_train[:n]
    if fid.resolution is not None:
        x_train, x_val = (
            resize_images(x_train, fid.resolution),
            resize_images(x_val, fid.resolution),
        )
    batch = min(cfg.batch_size, x_train.shape[0])
    num_steps, steps_per_epoch = planned_steps(
        cfg, dataclasses.replace(fid, data_fraction=1.0), x_train.shape[0]
    )
    pixels = x_train.reshape(-1, x_train.shape[-1]).astype(np.float64) / 255.0
    mean = jnp.asarray(pixels.mean(0), jnp.float32)
    std = jnp.asarray(np.maximum(pixels.std(0), 1e-3), jnp.float32)
    normalize = lambda x: (x.astype(jnp.float32) / 255.0 - mean) / std

    init_key, data_key = jax.random.split(key)
    sample = jnp.zeros((1, *x_train.shape[1:]), jnp.float32)
    if init_variables is None:
        variables = jax.jit(model.init)(init_key, sample)
    else:
        variables = _check_variables(init_variables, jax.eval_shape(model.init, init_key, sample))
    schedule = optax.cosine_decay_schedule(cfg.learning_rate, max(num_steps, 1))
    tx = optax.chain(
        optax.add_decayed_weights(cfg.weight_decay),
        optax.sgd(schedule, momentum=cfg.momentum, nesterov=True),
    )

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

    @jax.jit
    def num_correct(params, batch_stats, x, y, mask):
        logits = model.apply({"params": params, "batch_stats": batch_stats}, normalize(x))
        return jnp.sum((jnp.argmax(logits, -1) == y) & mask)

    eb = min(cfg.eval_batch_size, x_val.shape[0])

    def accuracy(params, batch_stats) -> float:
        correct = 0
        for start in range(0, x_val.shape[0], eb):  # fixed-size batches: one compilation
            x, y = x_val[start : start + eb], y_val[start : start + eb]
            mask = np.arange(eb) < x.shape[0]
            x = np.concatenate([x, np.zeros((eb - x.shape[0], *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.zeros((eb - y.shape[0],), y.dtype)])
            correct += int(num_correct(params, batch_stats, x, y, mask))
        return correct / x_val.shape[0]

    params = variables["params"]
    carry = (params, variables.get("batch_stats", {}), jax.jit(tx.init)(params))
    x_all, y_all = jnp.asarray(x_train), jnp.asarray(y_train)
    planned_epochs = num_steps / steps_per_epoch
    curve, stopped, t = [], False, 0
    while t < num_steps:
        carry = step(carry, jnp.int32(t), x_all, y_all)
        t += 1
        if monitor is not None and t % steps_per_epoch == 0:
            curve.append(accuracy(carry[0], carry[1]))
            if t < num_steps and monitor(tuple(curve), planned_epochs):
                stopped = True
                break
    last = curve[-1] if curve and t % steps_per_epoch == 0 else accuracy(carry[0], carry[1])
    return ChildResult(
        accuracy=last,
        epochs=t / steps_per_epoch,
        planned_epochs=planned_epochs,
        steps=t,
        steps_per_epoch=steps_per_epoch,
        curve=tuple(curve),
        stopped=stopped,
        variables={"params": carry[0], "batch_stats": carry[1]} if return_variables else None,
    )


def _check_variables(given, expected) -> dict:
    """``given`` as a dict of float32 arrays if it has ``expected``'s structure and shapes."""
    try:
        given = {k: given[k] for k in expected}
    except (KeyError, TypeError):
        raise ValueError(
            f"init_variables must hold {sorted(expected)}, got "
            f"{sorted(given) if hasattr(given, 'keys') else type(given).__name__}"
        ) from None
    flat_given = dict(jax.tree_util.tree_flatten_with_path(given)[0])
    flat_expected = dict(jax.tree_util.tree_flatten_with_path(expected)[0])
    for path, leaf in flat_expected.items():
        name = jax.tree_util.keystr(path)
        if path not in flat_given:
            raise ValueError(f"init_variables lack {name} (the network has it)")
        if tuple(np.shape(flat_given[path])) != tuple(leaf.shape):
            raise ValueError(
                f"init_variables{name} has shape {tuple(np.shape(flat_given[path]))}, the network "
                f"wants {tuple(leaf.shape)}"
            )
    extra = sorted(jax.tree_util.keystr(p) for p in flat_given if p not in flat_expected)
    if extra:
        raise ValueError(f"init_variables hold {extra[:5]}, which the network does not have")
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), given)


def train_space_child(
    space,
    arch,
    train_arrays,
    val_arrays,
    *,
    fidelity=None,
    config=None,
    key: jax.Array,
    monitor: Monitor | None = None,
    init_variables=None,
    return_variables: bool = False,
):
    """Trains ``space.network(arch)`` at ``fidelity`` and returns its validation accuracy
    (a float), or, with a ``monitor`` or ``return_variables``, its :class:`ChildResult`.

    The fidelity is checked first (``space.check_fidelity``: a field the space cannot apply
    raises :class:`~jnas.spaces.base.FidelityError` before anything compiles); the network
    is built with ``num_classes`` from the config (or the labels, when it is 0) and the
    fidelity (its ``width``); :func:`fit_classifier` trains and scores it.

    Args:
      space: a :class:`~jnas.spaces.base.SearchSpace`.
      arch: an architecture of ``space`` (int32 vector or its decoded object).
      train_arrays, val_arrays: ``(images, labels)`` (see :func:`fit_classifier`).
      fidelity: a :class:`~jnas.spaces.base.Fidelity` or None.
      config: a :class:`ChildTrainConfig`, a mapping of its fields, or None.
      key: a PRNG key.
      monitor: see :func:`fit_classifier` (early stopping).
      init_variables, return_variables: see :func:`fit_classifier` (start from given
        variables; return the trained ones in the result).
    """
    cfg = ChildTrainConfig.make(config)
    x_train, _ = check_arrays(train_arrays, "train_arrays")
    fid = space.check_fidelity(_fidelity(fidelity), x_train.shape[1:])
    model = space.network(
        arch, num_classes=num_classes_of(cfg, train_arrays, val_arrays), fidelity=fid
    )
    result = fit_classifier(
        model,
        train_arrays,
        val_arrays,
        config=cfg,
        key=key,
        fidelity=fid,
        monitor=monitor,
        init_variables=init_variables,
        return_variables=return_variables,
    )
    return result if monitor is not None or return_variables else result.accuracy


def count_params(model, image_shape) -> int:
    """Parameters of ``model`` on images of shape ``[H, W, C]`` (shapes only: no compile)."""
    shapes = jax.eval_shape(
        model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    )
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes["params"])))
