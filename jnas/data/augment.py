"""DARTS-style image augmentation as pure, jit-able JAX functions.

All functions work on a batch ``[N, H, W, C]`` (NHWC, as produced by :mod:`jnas.data.sources`)
and take an explicit PRNG key, so the augmentation of a batch is a deterministic function of
``(key, images)``. Derive the key from ``(seed, epoch, batch index)`` (see
:func:`jnas.data.pipeline.batch_key`) and a resumed run augments exactly like an uninterrupted one.

The DARTS (Liu et al. 2019) CIFAR recipe, reproduced by :func:`augment_batch`, is::

    RandomCrop(32, padding=4) -> RandomHorizontalFlip() -> ToTensor() -> Normalize(mean, std)
    [-> Cutout(16) for the final evaluation training only]

Crop padding uses zeros on the uint8 image (black, like torchvision), so after normalisation the
padded border is ``-mean / std``; cutout zeroes the *normalised* image (i.e. sets the square to the
data set mean), as in the DARTS code.

Static arguments (``padding``, ``length``, ``crop_padding``, ``flip``, ``cutout_length``) must be
Python values; under ``jax.jit`` mark them static, e.g.
``jax.jit(augment_batch, static_argnames=("crop_padding", "flip", "cutout_length"))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "augment_batch",
    "cutout",
    "normalize",
    "random_crop",
    "random_flip",
    "square_mask",
]


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """Scales uint8 pixels to ``[0, 1]`` and standardises each channel.

    Args:
      images: ``[..., C]`` uint8 (or any numeric) array with values in ``[0, 255]``.
      mean: Per-channel mean, length ``C`` (or 1), in ``[0, 1]`` units.
      std: Per-channel standard deviation, length ``C`` (or 1), in ``[0, 1]`` units.

    Returns:
      float32 array ``(images / 255 - mean) / std`` of the same shape.
    """
    x = jnp.asarray(images).astype(jnp.float32) / 255.0
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (x - mean) / std


def random_crop(key: jax.Array, images: jax.Array, padding: int = 4) -> jax.Array:
    """Zero-pads each image by ``padding`` pixels and crops a random ``H x W`` window.

    Each image gets its own offsets, uniform over ``[0, 2 * padding]`` in both directions (like
    ``torchvision.transforms.RandomCrop(H, padding=padding)``).

    Args:
      key: PRNG key.
      images: ``[N, H, W, C]`` array (any dtype).
      padding: Non-negative Python int; 0 makes this the identity.

    Returns:
      Array with the shape and dtype of ``images``.
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}.")
    if padding == 0:
        return images
    n, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * padding + 1)

    def crop_one(image: jax.Array, offset: jax.Array) -> jax.Array:
        return lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    return jax.vmap(crop_one)(padded, offsets)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """Flips each image horizontally (along W) with probability 1/2.

    Args:
      key: PRNG key.
      images: ``[N, H, W, C]`` array.

    Returns:
      Array with the shape and dtype of ``images``.
    """
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


def square_mask(
    center_y: jax.Array, center_x: jax.Array, length: int, height: int, width: int
) -> jax.Array:
    """Boolean masks of squares of side ``length`` around the given centres, clipped at borders.

    The square covers rows ``[cy - length // 2, cy - length // 2 + length)`` (same for columns),
    intersected with the image; for even ``length`` this is exactly the DARTS ``Cutout`` square.

    Args:
      center_y: ``[N]`` int row of each centre.
      center_x: ``[N]`` int column of each centre.
      length: Side of the square (Python int).
      height: Image height H.
      width: Image width W.

    Returns:
      ``[N, H, W]`` bool, True inside the square.
    """
    y0 = jnp.asarray(center_y)[:, None] - length // 2
    x0 = jnp.asarray(center_x)[:, None] - length // 2
    rows = jnp.arange(height)[None, :]
    cols = jnp.arange(width)[None, :]
    in_y = (rows >= y0) & (rows < y0 + length)
    in_x = (cols >= x0) & (cols < x0 + length)
    return in_y[:, :, None] & in_x[:, None, :]


def cutout(key: jax.Array, images: jax.Array, length: int) -> jax.Array:
    """Zeroes one ``length x length`` square per image (Cutout, DeVries & Taylor 2017).

    The centre is uniform over all pixels, so the square is clipped at the borders and can be
    smaller than ``length ** 2`` pixels, as in the DARTS code. Apply it after :func:`normalize`.

    Args:
      key: PRNG key.
      images: ``[N, H, W, C]`` array.
      length: Side of the square (Python int); 0 makes this the identity.

    Returns:
      Array with the shape and dtype of ``images``.
    """
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}.")
    if length == 0:
        return images
    n, h, w, _ = images.shape
    key_y, key_x = jax.random.split(key)
    cy = jax.random.randint(key_y, (n,), 0, h)
    cx = jax.random.randint(key_x, (n,), 0, w)
    mask = square_mask(cy, cx, length, h, w)
    return jnp.where(mask[..., None], jnp.zeros((), images.dtype), images)


def augment_batch(
    key: jax.Array,
    images_uint8: jax.Array,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    crop_padding: int,
    flip: bool,
    cutout_length: int = 0,
) -> jax.Array:
    """The DARTS training augmentation: crop, flip, normalise, cutout.

    Args:
      key: PRNG key; split internally into one key per step.
      images_uint8: ``[N, H, W, C]`` uint8 batch.
      mean: Per-channel mean for :func:`normalize`.
      std: Per-channel standard deviation for :func:`normalize`.
      crop_padding: Padding of the random crop; 0 disables cropping.
      flip: Whether to apply random horizontal flips.
      cutout_length: Cutout square side; 0 disables cutout.

    Returns:
      float32 ``[N, H, W, C]`` batch.
    """
    key_crop, key_flip, key_cutout = jax.random.split(key, 3)
    x = random_crop(key_crop, images_uint8, crop_padding)
    if flip:
        x = random_flip(key_flip, x)
    x = normalize(x, mean, std)
    return cutout(key_cutout, x, cutout_length)
