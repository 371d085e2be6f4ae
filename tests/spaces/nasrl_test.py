"""Tests of the NAS-RL chain-CNN space, its child network and its `train_child`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.spaces import discrete
from jnas.spaces.base import SPACES, Fidelity
from jnas.spaces.child import count_params
from jnas.spaces.discrete import Anchor, ArchitectureError
from jnas.spaces.nasrl import ChildNet, ConvLayer, NasRLArch, NasRLSpace, concat_padded


def test_spec_layout_per_layer_with_anchors():
    space = NasRLSpace(num_layers=4, predict_stride=True)
    spec = space.spec
    per_layer = 4  # height, width, stride, filters
    assert spec.length == 4 * per_layer + (0 + 1 + 2 + 3)
    assert spec.names[:5] == (
        "L0/filter_height",
        "L0/filter_width",
        "L0/stride",
        "L0/num_filters",
        "L1/filter_height",
    )
    anchors = [d for d in spec.decisions if isinstance(d, Anchor)]
    assert [a.num_sources for a in anchors] == [0, 1, 2, 3]
    assert NasRLSpace(num_layers=3, skip_connections=False).spec.length == 9


@pytest.mark.parametrize("kwargs", [{}, {"predict_stride": True}, {"skip_connections": False}])
def test_random_architectures_round_trip(kwargs):
    space = NasRLSpace(num_layers=5, **kwargs)
    keys = jax.random.split(jax.random.key(0), 20)
    sample = jax.jit(jax.vmap(lambda k: discrete.sample_uniform(space.spec, k)))
    for arch in np.asarray(sample(keys)):
        text = space.to_text(arch)
        np.testing.assert_array_equal(space.parse(text), arch)
        np.testing.assert_array_equal(space.encode(space.decode(arch)), arch)


def test_text_form_and_decoding():
    space = NasRLSpace(num_layers=3, predict_stride=True)
    text = "3x3/s1/f36; 5x7/s2/f48<-0; 1x3/s1/f24<-0,1"
    arch = space.decode(space.parse(text))
    assert arch.layers[1] == ConvLayer(5, 7, 2, 48, (0,))
    assert arch.layers[2].inputs == (0, 1)
    assert space.to_text(space.encode(arch)) == text
    chain = NasRLSpace(num_layers=2, skip_connections=False)
    assert chain.decode(chain.parse("3x3/s1/f24; 3x3/s1/f24<-0")).layers[1].inputs == (0,)


@pytest.mark.parametrize(
    "text, message",
    [
        ("3x3/s1/f36; 5x7/s1/f48<-0", "2 layers"),
        ("3x3/s1/f36; 5x4/s1/f48<-0; 1x3/s1/f24", "filter_width = 4"),
        ("3x3/s1/f36; 5x7/s1/f50<-0; 1x3/s1/f24", "num_filters = 50"),
        ("3x3/s1/f36; 5x7/s2/f48<-0; 1x3/s1/f24", "stride 2"),
        ("3x3/s1/f36; 5x7/s1/f48<-1; 1x3/s1/f24", "L1 reads layers"),
        ("3x3/s1/f36; 5x7 s1 f48; 1x3/s1/f24", "cannot parse NAS-RL layer 1"),
    ],
)
def test_bad_text_raises_naming_the_problem(text, message):
    with pytest.raises(ArchitectureError, match=message):
        NasRLSpace(num_layers=3).parse(text)


def test_concat_padded_zero_pads_smaller_maps():
    a = jnp.ones((2, 4, 4, 3))
    b = 2 * jnp.ones((2, 2, 3, 5))
    out = concat_padded([a, b])
    assert out.shape == (2, 4, 4, 8)
    np.testing.assert_array_equal(out[:, :2, :3, 3:], 2.0)
    np.testing.assert_array_equal(out[:, 2:, :, 3:], 0.0)
    np.testing.assert_array_equal(out[:, :, 3:, 3:], 0.0)


def test_child_net_concatenates_inputs_and_unread_outputs():
    arch = NasRLArch(
        (
            ConvLayer(3, 3, 1, 24, ()),
            ConvLayer(3, 5, 2, 36, (0,)),  # 8x8 -> 4x4
            ConvLayer(1, 1, 1, 48, (0, 1)),  # reads 8x8 and a zero-padded 4x4: 60 channels
            ConvLayer(3, 3, 1, 24, ()),  # no input: reads the image
        )
    )
    model = ChildNet(arch, num_classes=7)
    x = jnp.zeros((2, 8, 8, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only: no compile
    assert variables["params"]["Conv_2"]["kernel"].shape == (1, 1, 60, 48)
    assert variables["params"]["Conv_3"]["kernel"].shape == (3, 3, 3, 24)
    # Layers 2 and 3 are read by no one: the classifier sees 48 + 24 channels.
    assert variables["params"]["Dense_0"]["kernel"].shape == (72, 7)
    logits, _ = jax.eval_shape(
        lambda v: model.apply(v, x, train=True, mutable=["batch_stats"]), variables
    )
    assert logits.shape == (2, 7)


def _brightness_task(n, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 8, 8, 1)).astype(np.uint8)
    labels = (images.mean(axis=(1, 2, 3)) > 127.5).astype(np.int32)
    return images, labels


def test_network_scales_the_filters_by_the_fidelity_width():
    space = SPACES.get("nasrl")(num_layers=2, num_filters=(24, 36))
    arch = space.parse("3x3/s1/f24; 1x1/s1/f36<-0")
    assert space.network(arch, num_classes=10) == ChildNet(space.decode(arch), 10)
    half = space.network(arch, num_classes=10, fidelity=Fidelity(width=0.5))
    assert [x.num_filters for x in half.arch.layers] == [12, 18]
    tiny = space.network(space.decode(arch), num_classes=10, fidelity=Fidelity(width=0.01))
    assert [x.num_filters for x in tiny.arch.layers] == [1, 1]  # at least one filter
    # By hand: conv 3x3x1x12 + BN 2*12, conv 1x1x12x18 + BN 2*18, dense 18*10 + 10.
    assert count_params(half, (8, 8, 1)) == 108 + 24 + 216 + 36 + 190
    with pytest.raises(ArchitectureError, match="num_filters = 5"):
        space.network(NasRLArch((ConvLayer(3, 3, 1, 5), ConvLayer(1, 1, 1, 24))), num_classes=2)


def test_train_child_learns_a_tiny_task():
    space = NasRLSpace(num_layers=2)
    arch = space.parse("3x3/s1/f24; 1x1/s1/f24<-0")
    acc = space.train_child(
        arch,
        _brightness_task(256, 0),
        _brightness_task(100, 1),
        config={"num_steps": 80, "batch_size": 32, "learning_rate": 0.1, "eval_batch_size": 64},
        key=jax.random.key(0),
    )
    assert isinstance(acc, float)
    assert 0.8 <= acc <= 1.0  # chance is about 0.5


def test_train_child_rejects_bad_inputs():
    space = NasRLSpace(num_layers=1)
    arch = np.asarray([1, 1, 0])
    good = _brightness_task(8, 0)
    with pytest.raises(ValueError, match="labels"):
        space.train_child(arch, (good[0], good[1][:4]), good, key=jax.random.key(0))
    with pytest.raises(ValueError, match="unknown child training option"):
        space.train_child(arch, good, good, config={"epochs": 1}, key=jax.random.key(0))
    with pytest.raises(ValueError, match="pair"):
        space.train_child(arch, good[0], good, key=jax.random.key(0))
    with pytest.raises(ArchitectureError):
        space.train_child([1, 1, 7], good, good, key=jax.random.key(0))
