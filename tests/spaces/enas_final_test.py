"""Tests of the official ENAS final micro network (jnas.spaces.enas_final): its parameter
count against a hand count and against an arithmetic count that follows the official code
(melodyguan/enas src/cifar10/micro_child.py) line by line, TF ``SAME`` pooling, a forward
pass, named errors. Shapes only (``jax.eval_shape``), but for one tiny forward pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.spaces.cells import NetworkConfigError, abstract_variables, count_params
from jnas.spaces.complexity import count_macs, format_table, published_rows
from jnas.spaces.discrete import ArchitectureRangeError, ArchitectureTypeError
from jnas.spaces.enas_final import (
    OFFICIAL_FIXED_ARC,
    EnasFinalNetwork,
    _pool_same,
    official_arcs,
    official_genotype,
    official_stats,
)
from jnas.spaces.genotype import Genotype
from jnas.spaces.published import PUBLISHED

# A 2-node cell pair for hand counts: the normal cell leaves input 0 and node 1 unused (both
# concatenated, at one resolution); the reduction cell leaves input 0 unused (reduced by the
# concat) and node 1.
TINY = Genotype(
    normal=[("sep_conv_3x3", 1), ("skip_connect", 1), ("avg_pool_3x3", 2), ("sep_conv_5x5", 1)],
    normal_concat=[3],
    reduce=[("skip_connect", 1), ("max_pool_3x3", 1), ("sep_conv_3x3", 2), ("avg_pool_3x3", 1)],
    reduce_concat=[3],
)


def _reference(normal, reduce, *, C, L, hw, num_classes=10):
    """Parameters per scope of the official ``_model`` (fixed arc), by arithmetic only:
    ``{"stem", "layer_i", "fc"}`` and the auxiliary head's. Each weight is ``create_weight``
    (no bias), each BN has an offset and a scale."""

    def bn(c):
        return 2 * c

    def fr(c_in, c_out):  # _factorized_reduction, stride 2: two 1x1 convs to c_out / 2, BN
        return 2 * c_in * (c_out // 2) + bn(c_out)

    B = len(normal) // 4
    pool_layers = [L // 3, 2 * (L // 3) + 1]
    parts = {"stem": 3 * 3 * 3 * 3 * C + bn(3 * C)}
    prev = [(hw, 3 * C), (hw, 3 * C)]
    out, aux = C, 0
    for layer_id in range(L + 2):
        reduction = layer_id in pool_layers
        out *= 2 if reduction else 1
        arc, stride = (reduce, 2) if reduction else (normal, 1)
        (h0, c0), (h1, c1) = prev
        n = 0
        if h0 != h1:  # calibrate/pool_x
            n += fr(c0, out)
        elif c0 != out:
            n += c0 * out + bn(out)
        if c1 != out:  # calibrate/pool_y
            n += c1 * out + bn(out)
        n += out * out + bn(out)  # layer_base
        used = [0] * (B + 2)
        for k in range(0, 4 * B, 2):
            i, op = arc[k], arc[k + 1]
            used[i] += 1
            if op in (0, 1):  # _fixed_conv: 2 x (depthwise f x f, pointwise, BN)
                f = (3, 5)[op]
                n += 2 * (f * f * out + out * out + bn(out))
            elif op == 4 and stride == 2 and i < 2:
                n += fr(out, out)
        h = h1 // stride
        c_out = 0
        for i in range(B + 2):  # _fixed_combine
            if used[i] == 0:
                n += fr(out, out) if i < 2 and stride == 2 else 0
                c_out += out
        parts[f"layer_{layer_id}"] = n
        prev = [prev[1], (h, c_out)]
        if layer_id == pool_layers[-1] + 1:  # aux_head: proj, avg_pool (hw x hw conv), fc
            p = (h - 5) // 3 + 1
            aux = c_out * 128 + bn(128) + p * p * 128 * 768 + bn(768) + 768 * num_classes
    parts["fc"] = prev[1][1] * num_classes
    return parts, aux


def _counts(model, image):
    params = abstract_variables(model, image)["params"]
    parts = {k: count_params(v) for k, v in params.items() if k.startswith("layer_")}
    parts["stem"] = count_params(params["stem_conv"]) + count_params(params["stem_bn"])
    parts["fc"] = count_params(params["fc"])
    return parts, count_params(params, auxiliary=True) - count_params(params)


def test_tiny_network_matches_a_hand_count():
    # C=4, num_layers=3: cells 0 (normal, 4 filters), 1 (reduction, 8), 2 (normal, 8),
    # 3 (reduction, 16), 4 (normal, 16); bn(c) = 2c; a factorized reduction c -> o costs
    # 2 c (o / 2) + 2 o. Normal cell ops at o filters: sep 3x3 2(9o + o^2 + 2o) + sep 5x5
    # 2(25o + o^2 + 2o) = 4o^2 + 76o. Reduction cell ops: skip at stride 2 (o^2 + 2o), sep
    # 3x3 on node 0 (2o^2 + 22o), the unused input 0 reduced by the concat (o^2 + 2o):
    # 4o^2 + 26o. Each cell outputs 2 o channels.
    hand = {
        "stem": 3 * 3 * 3 * 12 + 24,  # 348
        # pool_x 12->4 (56), pool_y 12->4 (56), layer_base 4->4 (24), ops 4*16 + 76*4 (368)
        "layer_0": 56 + 56 + 24 + 368,
        # pool_x 12->8 (112), input 1 has 8 channels already, layer_base (80), ops (464)
        "layer_1": 112 + 80 + 464,
        # pool_x: input 0 is at twice the size: reduction 8->8 (80), pool_y 16->8 (144),
        # layer_base (80), ops 4*64 + 76*8 (864)
        "layer_2": 80 + 144 + 80 + 864,
        # inputs of 16 channels: layer_base only (288), ops 4*256 + 26*16 (1440)
        "layer_3": 288 + 1440,
        # reduction 16->16 (288), pool_y 32->16 (544), layer_base (288), ops (2240)
        "layer_4": 288 + 544 + 288 + 2240,
        "fc": 32 * 10,
    }
    assert sum(hand.values()) == 8084
    model = EnasFinalNetwork(TINY, C=4, num_layers=3, auxiliary=True)
    parts, aux = _counts(model, (32, 32, 3))
    assert parts == hand
    # aux head after cell 4 (8x8, 32 channels): proj 32*128 + 256, a 2x2 conv 4*128*768
    # + 1536 (the 5x5 / 3 pool leaves 2x2), fc 768*10.
    assert aux == 32 * 128 + 256 + 4 * 128 * 768 + 1536 + 7680 == 406_784
    normal, reduce = official_arcs(TINY)
    assert _reference(normal, reduce, C=4, L=3, hw=32) == (hand, aux)


def test_official_final_network_counts_what_the_official_code_counts():
    genotype = official_genotype()
    normal, reduce = official_arcs(genotype)
    assert " ".join(map(str, normal + reduce)) == OFFICIAL_FIXED_ARC
    # cifar10_micro_final.sh: 15 layers, 36 filters, 32x32 images.
    parts, aux = _counts(EnasFinalNetwork(genotype, auxiliary=True), (32, 32, 3))
    assert (parts, aux) == _reference(normal, reduce, C=36, L=15, hw=32)
    # The official `Model has N params` (no aux head): 15 % below the paper's 4.6M; with
    # the aux head 4.6 % below.
    assert (sum(parts.values()), aux) == (3_894_372, 494_848)
    assert abs((sum(parts.values()) + aux) / 4.6e6 - 1) < 0.05


def test_official_stats_and_a_hand_count_of_multiply_adds():
    stats = official_stats(TINY, C=4, num_layers=3, image_shape=(32, 32, 3))
    assert (stats["C"], stats["layers"], stats["params"]) == (4, 5, 8084)
    assert stats["params_with_aux"] == 8084 + 406_784
    # Multiply-adds on 8x8 images. At n x n outputs and o filters: a 1x1 conv from c costs
    # n^2 o c, so does a factorized reduction; a separable k x k stack 2 (n^2 o k^2 + n^2 o^2).
    hand = [
        8 * 8 * 12 * 9 * 3,  # stem 20736
        # cell 0 (8x8, o=4): pool_x, pool_y 12->4, layer_base; sep 3x3, sep 5x5
        3072 + 3072 + 1024 + 2 * (64 * 4 * 9 + 64 * 16) + 2 * (64 * 4 * 25 + 64 * 16),
        # cell 1 (4x4, o=8): pool_x 12->8 at 8x8, layer_base at 8x8; skip (a reduction),
        # sep 3x3 on node 0, the concat's reduction of input 0
        6144 + 4096 + 1024 + 2 * (16 * 8 * 9 + 16 * 64) + 1024,
        # cell 2 (4x4, o=8): reduction 8->8, pool_y 16->8, layer_base; sep 3x3, sep 5x5
        1024 + 2048 + 1024 + 2 * (16 * 8 * 9 + 16 * 64) + 2 * (16 * 8 * 25 + 16 * 64),
        # cell 3 (2x2, o=16): layer_base at 4x4; skip, sep 3x3, the concat's reduction
        4096 + 1024 + 2 * (4 * 16 * 9 + 4 * 256) + 1024,
        # cell 4 (2x2, o=16): reduction 16->16, pool_y 32->16, layer_base; the two sep convs
        1024 + 2048 + 1024 + 2 * (4 * 16 * 9 + 4 * 256) + 2 * (4 * 16 * 25 + 4 * 256),
        32 * 10,  # fc
    ]
    model = EnasFinalNetwork(TINY, C=4, num_layers=3)
    assert count_macs(model, (8, 8, 3)) == sum(hand) == 105_152


def test_same_pooling_as_tensorflow():
    # TF SAME at stride 2 on an even size pads one row / column at the bottom-right only;
    # the average counts the pixels inside the image.
    x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3) ** 1.5
    xn = np.asarray(x)
    for stride in (1, 2):
        avg = np.asarray(_pool_same(x, "avg", stride))
        mx = np.asarray(_pool_same(x, "max", stride))
        lo = 0 if stride == 2 else -1  # window start of output 0 (pad before: 0 or 1)
        for i in range(4 // stride):
            for j in range(4 // stride):
                r0, c0 = max(lo + stride * i, 0), max(lo + stride * j, 0)
                win = xn[:, r0 : lo + stride * i + 3, c0 : lo + stride * j + 3, :]
                np.testing.assert_allclose(avg[:, i, j], win.mean(axis=(1, 2)), rtol=1e-6)
                np.testing.assert_array_equal(mx[:, i, j], win.max(axis=(1, 2)))


def test_tiny_forward_pass():
    model = EnasFinalNetwork(TINY, C=4, num_layers=3, num_classes=7)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    # Variables drawn with numpy from the shapes: compiling `init` (its threefry draws)
    # takes 10 s on a CPU, the forward pass 1 s.
    rng = np.random.default_rng(0)
    shapes = abstract_variables(model, (8, 8, 3))
    variables = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), shapes)

    @jax.jit
    def forward(variables, x):
        (logits, aux), updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
        return logits, aux, updates

    logits, aux, updates = forward(variables, x)
    assert logits.shape == (2, 7) and aux is None
    assert np.isfinite(np.asarray(logits)).all()
    assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(
        variables["batch_stats"]
    )


def test_bad_input_is_named():
    with pytest.raises(ArchitectureRangeError, match="dil_conv_3x3' is not an ENAS micro op"):
        abstract_variables(EnasFinalNetwork(PUBLISHED["DARTS_V2"]), (8, 8, 3))
    with pytest.raises(ArchitectureTypeError, match="Genotype"):
        abstract_variables(EnasFinalNetwork(OFFICIAL_FIXED_ARC), (8, 8, 3))
    with pytest.raises(NetworkConfigError, match="C must be even"):
        abstract_variables(EnasFinalNetwork(TINY, C=5, num_layers=3), (8, 8, 3))
    with pytest.raises(NetworkConfigError, match="auxiliary head"):
        abstract_variables(EnasFinalNetwork(TINY, C=4, num_layers=3, auxiliary=True), (8, 8, 3))


def test_the_table_prints_the_enas_row_with_its_note():
    row = {
        "genotype": "ENAS",
        "network": "cifar",
        "shape": "enas",
        "C": 36,
        "layers": 17,
        "params": 3_894_372,
        "params_with_aux": 4_389_220,
        "madds": 620.9e6,
        "paper_params": 4.6e6,
        "paper_madds": None,
        "note": "the official network",
    }
    lines = format_table([row]).splitlines()
    assert lines[2].split() == (
        "ENAS cifar enas 36 17 3,894,372 4,389,220 620.90M 4.60M - [1]".split()
    )
    assert "[1] ENAS: the official network" in lines


@pytest.mark.slow  # published_rows(["ENAS"]) traces its four networks (30 s on 2 cores)
def test_experiments_cells_has_the_official_network_row():
    rows = [r for r in published_rows(["ENAS"]) if r["shape"] == "enas"]
    assert len(rows) == 1
    row = rows[0]
    assert (row["params"], row["params_with_aux"], row["paper_params"]) == (
        3_894_372,
        4_389_220,
        4.6e6,
    )
    # The cell of the paper's figure in the same network (_reference of PUBLISHED["ENAS"]).
    normal, reduce = official_arcs(PUBLISHED["ENAS"])
    parts, _ = _reference(normal, reduce, C=36, L=15, hw=32)
    assert f"{sum(parts.values()):,}" == "3,435,660" and "3,435,660" in row["note"]
