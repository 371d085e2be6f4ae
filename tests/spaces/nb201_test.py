"""Tests of the NAS-Bench-201 space: arch strings, op codes and base-5 codes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.spaces import discrete, nb201
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
        ("", "expected 3"),
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
