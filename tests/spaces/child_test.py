"""Tests of the generic child training (jnas.spaces.child): the fidelity (steps, epochs, data,
width, resolution), the per-epoch monitor (early stopping) and their named errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.spaces import child
from jnas.spaces.base import Fidelity, FidelityError
from jnas.spaces.nasrl import NasRLSpace

CONFIG = {"num_steps": 6, "batch_size": 16, "learning_rate": 0.1, "eval_batch_size": 32}


def _brightness_task(n, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 6, 6, 1)).astype(np.uint8)
    labels = (images.mean(axis=(1, 2, 3)) > 127.5).astype(np.int32)
    return images, labels


class _Linear(nn.Module):
    """A classifier without batch statistics: total brightness -> 2 logits."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(2)(jnp.sum(x, axis=(1, 2)))


TRAIN, VAL = _brightness_task(64, 0), _brightness_task(40, 1)


def test_num_steps_and_data_fraction_of_the_fidelity_equal_the_plain_training():
    """Fidelity(num_steps=3) trains as a config of 3 steps; data_fraction=0.25 as the first
    quarter of the images: the same accuracy, bit for bit."""
    model, key = _Linear(), jax.random.key(0)
    low = child.train_classifier(
        model,
        TRAIN,
        VAL,
        config=dict(CONFIG, num_steps=50),
        key=key,
        fidelity=Fidelity(num_steps=3, data_fraction=0.25),
    )
    plain = child.train_classifier(
        model,
        (TRAIN[0][:16], TRAIN[1][:16]),
        VAL,
        config=dict(CONFIG, num_steps=3),
        key=key,
    )
    assert low == plain
    assert low * len(VAL[1]) == pytest.approx(round(low * len(VAL[1])))  # an accuracy


def test_a_model_without_batch_statistics_learns():
    acc = child.train_classifier(
        _Linear(), TRAIN, VAL, config=dict(CONFIG, num_steps=60), key=jax.random.key(1)
    )
    assert 0.8 <= acc <= 1.0  # chance is about 0.5


def test_train_space_child_builds_the_network_at_the_fidelity_width(monkeypatch):
    space = NasRLSpace(num_layers=1, num_filters=(8,))
    built = []
    real = NasRLSpace.network

    def network(self, arch, *, num_classes, fidelity=None):
        module = real(self, arch, num_classes=num_classes, fidelity=fidelity)
        built.append((num_classes, module.arch.layers[0].num_filters))
        return module

    monkeypatch.setattr(NasRLSpace, "network", network)
    fid = Fidelity(num_steps=2, width=0.25)
    arch = space.parse("3x3/s1/f8")
    acc = space.train_child(arch, TRAIN, VAL, fidelity=fid, config=CONFIG, key=jax.random.key(0))
    assert built == [(2, 2)]  # num_classes from the labels (0 in the config), 8 * 0.25 filters
    again = child.train_classifier(
        real(space, arch, num_classes=2, fidelity=fid),
        TRAIN,
        VAL,
        config=CONFIG,
        key=jax.random.key(0),
        fidelity=fid,
    )
    assert acc == again


def test_bad_fidelity_and_config_are_named():
    key = jax.random.key(0)
    with pytest.raises(FidelityError, match="num_steps = 3 or epochs = 2, not both"):
        Fidelity(num_steps=3, epochs=2)
    with pytest.raises(FidelityError, match="resolution must be an integer >= 1"):
        Fidelity(resolution=0)
    with pytest.raises(FidelityError, match="resolution = 8 is above the images' 6 pixels"):
        child.train_classifier(_Linear(), TRAIN, VAL, key=key, fidelity=Fidelity(resolution=8))
    with pytest.raises(TypeError, match="Fidelity"):
        child.train_classifier(_Linear(), TRAIN, VAL, key=key, fidelity={"width": 0.5})
    with pytest.raises(ValueError, match="data_fraction"):
        Fidelity(data_fraction=0.0)
    with pytest.raises(ValueError, match="unknown child training option"):
        child.ChildTrainConfig.make({"width": 0.5})
    with pytest.raises(ValueError, match="image shapes differ"):
        child.train_classifier(_Linear(), TRAIN, (VAL[0][:, :5], VAL[1]), key=key)


def test_epochs_train_as_that_many_passes_of_steps():
    """Fidelity(epochs=2) on 16 images at batch 16 (data_fraction 0.25) is 2 steps."""
    model, key = _Linear(), jax.random.key(0)
    by_epochs = child.fit_classifier(
        model, TRAIN, VAL, config=CONFIG, key=key, fidelity=Fidelity(epochs=2, data_fraction=0.25)
    )
    by_steps = child.train_classifier(
        model,
        TRAIN,
        VAL,
        config=CONFIG,
        key=key,
        fidelity=Fidelity(num_steps=2, data_fraction=0.25),
    )
    assert (by_epochs.steps, by_epochs.steps_per_epoch, by_epochs.epochs) == (2, 1, 2.0)
    assert by_epochs.accuracy == by_steps and not by_epochs.stopped


def test_a_monitor_sees_each_epoch_and_stops_the_child():
    """At batch 16 on 64 images an epoch is 4 steps. A monitor that never stops changes
    nothing; one that stops after epoch 2 trains 8 steps with the same first two points."""
    model, key = _Linear(), jax.random.key(3)
    fid = Fidelity(epochs=4)
    plain = child.train_classifier(model, TRAIN, VAL, config=CONFIG, key=key, fidelity=fid)
    seen = []

    def watch(curve, planned):
        seen.append((len(curve), planned))
        return False

    full = child.fit_classifier(
        model, TRAIN, VAL, config=CONFIG, key=key, fidelity=fid, monitor=watch
    )
    assert full.accuracy == plain == full.curve[-1] and len(full.curve) == 4
    assert seen == [(1, 4.0), (2, 4.0), (3, 4.0)]  # not asked after the last epoch
    cut = child.fit_classifier(
        model, TRAIN, VAL, config=CONFIG, key=key, fidelity=fid, monitor=lambda c, e: len(c) == 2
    )
    assert (cut.steps, cut.epochs, cut.planned_epochs, cut.stopped) == (8, 2.0, 4.0, True)
    assert cut.curve == full.curve[:2] and cut.accuracy == full.curve[1]


def test_resolution_trains_on_resized_images():
    """Resolution 3 equals training on the images resized to 3x3 beforehand."""
    model, key = _Linear(), jax.random.key(0)
    low = child.train_classifier(
        model, TRAIN, VAL, config=CONFIG, key=key, fidelity=Fidelity(resolution=3)
    )
    small = [(child.resize_images(x, 3), y) for x, y in (TRAIN, VAL)]
    assert small[0][0].shape == (64, 3, 3, 1)
    flat = np.full((2, 6, 12, 1), 77, np.uint8)  # aspect kept; a constant stays constant
    np.testing.assert_allclose(child.resize_images(flat, 3), np.full((2, 3, 6, 1), 77.0), rtol=1e-6)
    assert low == child.train_classifier(model, *small, config=CONFIG, key=key)


def test_a_fidelity_the_space_cannot_apply_is_named_before_training(monkeypatch):
    space = NasRLSpace(num_layers=1, num_filters=(8,))
    arch = space.parse("3x3/s1/f8")
    monkeypatch.setattr(child, "fit_classifier", lambda *a, **k: pytest.fail("trained"))
    monkeypatch.setattr(NasRLSpace, "FIDELITIES", frozenset({"num_steps", "epochs"}))
    with pytest.raises(FidelityError, match="cannot apply the fidelity \\['width'\\]"):
        space.train_child(arch, TRAIN, VAL, fidelity=Fidelity(width=0.5), key=jax.random.key(0))
    monkeypatch.undo()
    monkeypatch.setattr(child, "fit_classifier", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(FidelityError, match="above the images' 6 pixels"):
        space.train_child(arch, TRAIN, VAL, fidelity=Fidelity(resolution=7), key=jax.random.key(0))
