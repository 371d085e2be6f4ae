"""Tests for jnas.data.augment."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.data import augment

MEAN = (0.49139968, 0.48215827, 0.44653124)
STD = (0.24703233, 0.24348505, 0.26158768)


def _images(n=8, h=32, w=32, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def test_normalize_hand_computed():
    images = np.array([0, 255, 51, 128], np.uint8).reshape(1, 2, 2, 1)
    out = augment.normalize(images, (0.5,), (0.25,))
    expected = (np.array([0.0, 1.0, 0.2, 128 / 255]) - 0.5) / 0.25
    assert out.dtype == jnp.float32 and out.shape == (1, 2, 2, 1)
    np.testing.assert_allclose(np.asarray(out).ravel(), expected, rtol=1e-6, atol=1e-6)


def test_normalize_per_channel():
    images = np.full((2, 3, 3, 3), 255, np.uint8)
    out = np.asarray(augment.normalize(images, MEAN, STD))
    for c in range(3):
        np.testing.assert_allclose(out[..., c], (1.0 - MEAN[c]) / STD[c], rtol=1e-6)


def test_random_crop_zero_padding_is_identity():
    images = _images()
    out = augment.random_crop(jax.random.key(0), images, padding=0)
    np.testing.assert_array_equal(np.asarray(out), images)


def test_random_crop_windows_of_padded_image():
    n, h, w, p = 64, 6, 5, 2
    # Distinct non-zero values so every window of the padded image is unique.
    images = (np.arange(n * h * w).reshape(n, h, w, 1) % 250 + 1).astype(np.uint8)
    out = np.asarray(augment.random_crop(jax.random.key(1), images, padding=p))
    assert out.shape == images.shape and out.dtype == np.uint8
    padded = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
    offsets = []
    for i in range(n):
        matches = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if np.array_equal(padded[i, dy : dy + h, dx : dx + w], out[i])
        ]
        assert len(matches) == 1
        offsets.append(matches[0])
    # Offsets are drawn per image and cover the whole range.
    assert len(set(offsets)) > 10
    assert {dy for dy, _ in offsets} == set(range(2 * p + 1))


def test_random_flip_twice_is_identity():
    images = _images(n=16)
    key = jax.random.key(3)
    once = augment.random_flip(key, images)
    twice = augment.random_flip(key, once)
    np.testing.assert_array_equal(np.asarray(twice), images)


def test_random_flip_per_image():
    images = _images(n=200)
    out = np.asarray(augment.random_flip(jax.random.key(4), images))
    flipped = np.array([np.array_equal(o, x[:, ::-1]) for o, x in zip(out, images, strict=True)])
    kept = np.array([np.array_equal(o, x) for o, x in zip(out, images, strict=True)])
    assert np.all(flipped ^ kept)
    assert 60 < flipped.sum() < 140


def test_square_mask_centered_square():
    mask = np.asarray(augment.square_mask(jnp.array([16]), jnp.array([16]), 16, 32, 32))
    assert mask.shape == (1, 32, 32)
    assert mask.sum() == 16 * 16
    assert mask[0, 8:24, 8:24].all()
    # Clipped at a corner, odd length.
    corner = np.asarray(augment.square_mask(jnp.array([0]), jnp.array([31]), 5, 32, 32))
    assert corner.sum() == 3 * 3 and corner[0, :3, 29:].all()


def test_cutout_zeroes_one_clipped_square():
    n, h, w, length = 256, 24, 24, 6
    images = jnp.ones((n, h, w, 2), jnp.float32)
    out = np.asarray(augment.cutout(jax.random.key(5), images, length))
    assert out.shape == images.shape
    zero = out[..., 0] == 0
    np.testing.assert_array_equal(zero, out[..., 1] == 0)  # Same square in every channel.
    interior = 0
    for z in zero:
        rows, cols = np.nonzero(z)
        assert len(rows) > 0
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert z[r0:r1, c0:c1].all() and z.sum() == (r1 - r0) * (c1 - c0)  # A rectangle.
        assert length // 2 <= r1 - r0 <= length and length // 2 <= c1 - c0 <= length
        if r0 > 0 and c0 > 0 and r1 < h and c1 < w:
            interior += 1
            assert z.sum() == length * length
    assert interior > n // 3


def test_cutout_zero_length_is_identity():
    images = jnp.ones((2, 8, 8, 1))
    np.testing.assert_array_equal(augment.cutout(jax.random.key(0), images, 0), images)


def _augment(key, images, **kwargs):
    defaults = dict(mean=MEAN, std=STD, crop_padding=4, flip=True, cutout_length=16)
    defaults.update(kwargs)
    return augment.augment_batch(key, images, **defaults)


def test_augment_batch_determinism():
    images = _images(n=16)
    a = _augment(jax.random.key(0), images)
    b = _augment(jax.random.key(0), images)
    c = _augment(jax.random.key(1), images)
    assert a.shape == images.shape and a.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a), np.asarray(c))


def test_augment_batch_without_augmentation_is_normalize():
    images = _images(n=4)
    out = _augment(jax.random.key(0), images, crop_padding=0, flip=False, cutout_length=0)
    np.testing.assert_allclose(out, augment.normalize(images, MEAN, STD), rtol=1e-6)


def test_augment_batch_jit_matches_eager():
    images = _images(n=8)
    jitted = jax.jit(
        augment.augment_batch, static_argnames=("crop_padding", "flip", "cutout_length")
    )
    key = jax.random.key(7)
    kwargs = dict(mean=MEAN, std=STD, crop_padding=4, flip=True, cutout_length=16)
    np.testing.assert_allclose(
        jitted(key, images, **kwargs),
        augment.augment_batch(key, images, **kwargs),
        rtol=1e-5,
        atol=1e-5,
    )


def test_crop_then_normalize_pads_with_black():
    images = np.full((32, 4, 4, 1), 200, np.uint8)
    out = np.asarray(_augment(jax.random.key(2), images, mean=(0.5,), std=(0.5,), cutout_length=0))
    inside = np.isclose(out, (200 / 255 - 0.5) / 0.5, atol=1e-6)
    padding = np.isclose(out, -1.0, atol=1e-6)
    assert np.all(inside | padding)
    assert padding.any() and inside.any()  # Some crops include the zero padding.


def test_negative_arguments_rejected():
    with pytest.raises(ValueError):
        augment.random_crop(jax.random.key(0), _images(n=1), padding=-1)
    with pytest.raises(ValueError):
        augment.cutout(jax.random.key(0), jnp.ones((1, 4, 4, 1)), -2)
