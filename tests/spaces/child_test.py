"""Tests of the generic child training (jnas.spaces.child): the fidelity and its named errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.spaces import child
from jnas.spaces.base import Fidelity
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
    with pytest.raises(ValueError, match="epochs"):
        child.train_classifier(_Linear(), TRAIN, VAL, key=key, fidelity=Fidelity(epochs=12))
    with pytest.raises(TypeError, match="Fidelity"):
        child.train_classifier(_Linear(), TRAIN, VAL, key=key, fidelity={"width": 0.5})
    with pytest.raises(ValueError, match="data_fraction"):
        Fidelity(data_fraction=0.0)
    with pytest.raises(ValueError, match="unknown child training option"):
        child.ChildTrainConfig.make({"width": 0.5})
    with pytest.raises(ValueError, match="image shapes differ"):
        child.train_classifier(_Linear(), TRAIN, (VAL[0][:, :5], VAL[1]), key=key)
