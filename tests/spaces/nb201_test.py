"""Tests of the NAS-Bench-201 space: arch strings, op codes, base-5 codes and its network."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.ops import layers
from jnas.spaces import child, discrete, nb201
from jnas.spaces.base import SPACES, Fidelity
from jnas.spaces.discrete import ArchitectureError

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
INDEX0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|" + (
    "skip_connect~2|"
)
BEST_C10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|" + (
    "nor_conv_1x1~2|"
)


def test_spec_has_six_edges_of_five_ops_in_string_order():
    spec = nb201.SPEC
    assert spec.names == ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")
    assert spec.num_choices == (5,) * 6
    assert spec.size == nb201.NUM_ARCHS == 15625
    assert nb201.OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


@pytest.mark.parametrize(
    "text, code", [(RESNET, "303101"), (INDEX0, "421211"), (BEST_C10, "333132")]
)
def test_known_strings_parse_to_the_readme_op_codes_and_back(text, code):
    arch = nb201.parse(text)
    assert nb201.op_code(arch) == code
    assert nb201.to_text(arch) == text
    np.testing.assert_array_equal(nb201.from_op_code(code), arch)
    assert int(nb201.to_code(arch)) == int(code, 5)


def test_every_architecture_round_trips_through_text_and_code():
    codes = jnp.arange(nb201.NUM_ARCHS)
    archs = np.asarray(jax.jit(jax.vmap(nb201.from_code))(codes))
    assert len({tuple(a) for a in archs.tolist()}) == nb201.NUM_ARCHS
    np.testing.assert_array_equal(jax.vmap(nb201.to_code)(archs), codes)
    for a in archs[::97]:  # the string form of a sample of them
        np.testing.assert_array_equal(nb201.parse(nb201.to_text(a)), a)


def test_genotype_round_trip_and_edge_order_within_a_node_is_free():
    arch = nb201.parse(RESNET)
    genotype = nb201.decode(arch)
    assert genotype[1] == (("none", 0), ("nor_conv_3x3", 1))
    np.testing.assert_array_equal(nb201.encode(genotype), arch)
    swapped = "|nor_conv_3x3~0|+|nor_conv_3x3~1|none~0|+|skip_connect~0|none~1|skip_connect~2|"
    np.testing.assert_array_equal(nb201.parse(swapped), arch)


@pytest.mark.parametrize(
    "text, message",
    [
        ("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|", "expected 3"),
        (RESNET[1:], "node 1"),  # no leading |
        (RESNET.replace("nor_conv_3x3~0", "conv_5x5~0"), "conv_5x5"),
        (RESNET.replace("nor_conv_3x3~1", "nor_conv_3x3~2"), "node 2"),  # a source 2 into node 2
        (RESNET.replace("nor_conv_3x3~0", "nor_conv_3x3"), "op~j"),
        ("", "empty text"),
    ],
)
def test_bad_strings_raise_naming_the_problem(text, message):
    with pytest.raises(ArchitectureError, match=message):
        nb201.parse(text)


def test_unknown_op_message_lists_the_ops():
    with pytest.raises(ArchitectureError, match="nor_conv_1x1"):
        nb201.parse(RESNET.replace("none~1", "sep_conv_3x3~1"))


@pytest.mark.parametrize("bad", [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5], [-1, 0, 0, 0, 0, 0]])
def test_bad_vectors_raise(bad):
    with pytest.raises(ArchitectureError):
        nb201.to_text(bad)
    with pytest.raises(ArchitectureError):
        nb201.op_code(bad)


def test_bad_op_codes_raise():
    for code in ["30310", "3031011", "30310x", "303105"]:
        with pytest.raises(ArchitectureError):
            nb201.from_op_code(code)


def test_mixed_radix_code_matches_manual_formula():
    spec = discrete.DecisionSpec(
        (discrete.Categorical("a", (0, 1, 2)), discrete.Categorical("b", (0, 1)))
    )
    for a in range(3):
        for b in range(2):
            assert int(discrete.to_code(spec, jnp.array([a, b]))) == 2 * a + b
            np.testing.assert_array_equal(discrete.from_code(spec, 2 * a + b), [a, b])


# The network of a fixed architecture (NAS-Bench-201's TinyNetwork).

TABLE_PATH = os.environ.get("JNAS_NB201_PATH") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "..",
    "shared",
    "nasbench201",
    "nb201.csv.gz",
)


def _num_params(module, image_shape):
    return child.count_params(module, image_shape)


@pytest.fixture(scope="module")
def table():
    return SPACES.get("nb201")().load_table(TABLE_PATH)


def test_the_space_is_registered_and_has_the_table(table):
    space = SPACES.get("nb201")()
    assert (
        space == nb201.SPACE
        and space.has_table
        and space.options()
        == {
            "name": "nb201",
            "channels": 16,
            "cells_per_stage": 5,
        }
    )
    assert table.lookup(RESNET)["c10_test_acc"] == pytest.approx(93.91)


@pytest.mark.parametrize("code", [0, 1, 777, 5000, 9999, 12345, 15624])
def test_network_parameters_equal_the_tables(table, code):
    """CIFAR-10 (32x32x3, 10 classes) parameter counts against the table's `c10_params_m`."""
    arch = np.asarray(nb201.from_code(code))
    model = nb201.SPACE.network(arch, num_classes=10)
    assert _num_params(model, (32, 32, 3)) == round(table.columns["c10_params_m"][code] * 1e6)


def test_network_parameters_by_op_count(table):
    """Every architecture: 73,306 + 243,040 per 3x3 conv + 28,000 per 1x1 conv edge (the
    table's formula), here for all-one-op cells and the table's best."""
    for op, extra in [("none", 0), ("skip_connect", 0), ("avg_pool_3x3", 0)]:
        arch = np.full(6, nb201.OPS.index(op), np.int32)
        assert _num_params(nb201.SPACE.network(arch, num_classes=10), (32, 32, 3)) == 73306 + extra
    arch = nb201.parse(BEST_C10)  # four 3x3 convs, one 1x1
    assert _num_params(nb201.SPACE.network(arch, num_classes=10), (32, 32, 3)) == (
        73306 + 4 * 243040 + 28000
    )


def test_width_scales_the_channels():
    arch = nb201.parse(RESNET)
    net = nb201.SPACE.network(arch, num_classes=10, fidelity=Fidelity(width=0.5))
    assert net.channels == 8 and net.cells_per_stage == 5
    assert nb201.NB201Space(channels=4).network(arch, num_classes=3).channels == 4
    assert nb201.SPACE.network(arch, num_classes=3, fidelity=Fidelity(width=0.01)).channels == 1
    with pytest.raises(ValueError, match="channels"):
        nb201.NB201Space(channels=0)


@pytest.mark.parametrize(
    "text, expected",
    [
        # node1 = x, node2 = x + node1, node3 = x + node1 + node2 = 4x.
        ("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|"
         "skip_connect~2|", lambda x: 4 * x),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", lambda x: 0 * x),
        # Only 3<-0 is an op: a 3x3 average pool excluding the padding.
        ("|skip_connect~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|none~2|",
         lambda x: layers.avg_pool(x, 3, 1, 1)),
        # node3 = node1 + node2 = x + x.
        ("|skip_connect~0|+|skip_connect~0|none~1|+|none~0|skip_connect~1|skip_connect~2|",
         lambda x: 2 * x),
    ],
)  # fmt: skip
def test_cell_sums_the_ops_of_earlier_nodes(text, expected):
    cell = nb201.NB201Cell(nb201.decode(nb201.parse(text)), features=3)
    x = jax.random.normal(jax.random.key(0), (2, 5, 5, 3))
    variables = cell.init(jax.random.key(1), x)
    np.testing.assert_allclose(cell.apply(variables, x), expected(x), rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_a_tiny_network_trains_and_rejects_odd_sizes():
    space = nb201.NB201Space(channels=4, cells_per_stage=1)
    net = space.network(nb201.parse(BEST_C10), num_classes=3)
    x = jnp.ones((2, 8, 8, 1))
    variables = net.init(jax.random.key(0), x)
    logits, updates = net.apply(variables, x, train=True, mutable=["batch_stats"])
    assert logits.shape == (2, 3) and bool(jnp.all(jnp.isfinite(logits)))
    assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(
        variables["batch_stats"]
    )
    with pytest.raises(ValueError, match="even spatial sizes"):
        jax.eval_shape(net.init, jax.random.key(0), jnp.ones((1, 7, 7, 1)))
