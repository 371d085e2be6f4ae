"""The evaluation networks: exact DARTS parameter counts, published figures, forward, drop-path,
and bad input rejected before anything compiles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.ops.primitives import UnknownOpError
from jnas.spaces import cells
from jnas.spaces.cells import (
    NetworkCIFAR,
    NetworkConfigError,
    NetworkImageNet,
    abstract_variables,
    build_network,
    count_params,
    drop_path,
    scan_groups,
)
from jnas.spaces.complexity import count_macs, network_stats
from jnas.spaces.genotype import Genotype, MalformedGenotypeError
from jnas.spaces.published import PAPER_FIGURES, PAPER_NETWORKS, PUBLISHED, get_genotype


def _params(network, name, *, C, layers, num_classes, image, scan=True):
    model = build_network(
        network,
        PUBLISHED[name],
        C=C,
        layers=layers,
        num_classes=num_classes,
        auxiliary=True,
        scan_cells=scan,
    )
    p = abstract_variables(model, image)["params"]  # jax.eval_shape: nothing compiles
    return count_params(p), count_params(p, auxiliary=True)


# The official DARTS code (cnn/model.py + utils.count_parameters_in_MB), run on these networks.
@pytest.mark.parametrize(
    "network,name,C,layers,classes,image,expected,expected_aux",
    [
        ("cifar", "DARTS_V2", 36, 20, 10, (32, 32, 3), 3_349_342, 3_825_768),
        ("cifar", "DARTS_V1", 36, 20, 10, (32, 32, 3), 3_169_414, None),
        ("imagenet", "DARTS_V2", 48, 14, 1000, (224, 224, 3), 4_718_752, None),
    ],
)
def test_exact_darts_parameter_counts(
    network, name, C, layers, classes, image, expected, expected_aux
):
    params, params_aux = _params(
        network, name, C=C, layers=layers, num_classes=classes, image=image
    )
    assert params == expected
    if expected_aux is not None:
        assert params_aux == expected_aux


def test_scan_and_unrolled_cells_count_alike():
    a = _params("cifar", "DARTS_V2", C=36, layers=20, num_classes=10, image=(32, 32, 3))
    b = _params("cifar", "DARTS_V2", C=36, layers=20, num_classes=10, image=(32, 32, 3), scan=False)
    assert a == b
    assert scan_groups(20) == [(2, 6), (8, 13), (15, 20)]
    assert scan_groups(20, scan=False) == []


@pytest.mark.parametrize("name", [n for n in PUBLISHED if n not in ("DARTS_V1", "DARTS_V2")])
def test_published_parameter_figures(name):
    """Within 5 % of the paper, in the DARTS network or, where the paper evaluated another
    network, in that one (the table then shows both)."""
    published = PAPER_FIGURES[name]["cifar_params"]
    paper_net = PAPER_NETWORKS.get(name)
    if paper_net is None:
        params, _ = _params("cifar", name, C=36, layers=20, num_classes=10, image=(32, 32, 3))
        assert abs(params / published - 1) < 0.05, (name, params, published)
        return
    assert paper_net.note
    genotype = paper_net.genotype or PUBLISHED[name]
    model = build_network(
        "cifar", genotype, C=paper_net.C, layers=paper_net.layers, num_classes=10, auxiliary=True
    )
    params = count_params(abstract_variables(model, (32, 32, 3))["params"])
    if name == "ENAS":  # documented as not reproduced: see PAPER_NETWORKS["ENAS"].note
        assert "not reproduced" in paper_net.note
        return
    assert abs(params / published - 1) < 0.05, (name, params, published)


@pytest.mark.slow  # compiles the CIFAR and ImageNet networks' forward passes (20 s cold)
def test_multiply_adds():
    # DARTS_V2 on CIFAR: 528M, as counted independently (e.g. FairDARTS's genotypes.py).
    stats = network_stats(PUBLISHED["DARTS_V2"], "cifar")
    assert abs(stats["madds"] / 528e6 - 1) < 0.005
    # Cells inside nn.scan are counted once per cell.
    unrolled = build_network(
        "cifar",
        PUBLISHED["DARTS_V2"],
        C=36,
        layers=20,
        num_classes=10,
        auxiliary=True,
        scan_cells=False,
    )
    assert count_macs(unrolled, (32, 32, 3)) == stats["madds"]
    _check_imagenet_madds("DARTS_V2")


def _check_imagenet_madds(name):
    # ImageNet mobile setting: the papers' counters differ; ours is within 10 % of each.
    stats = network_stats(PUBLISHED[name], "imagenet")
    paper = PAPER_FIGURES[name]["imagenet_madds"]
    assert abs(stats["madds"] / paper - 1) < 0.10, (name, stats["madds"], paper)
    assert stats["madds"] < 600e6  # the mobile setting


@pytest.mark.slow
@pytest.mark.parametrize("name", ["P_DARTS", "PC_DARTS", "GDAS"])
def test_multiply_adds_other_cells(name):
    _check_imagenet_madds(name)


def test_macs_of_a_known_tiny_network():
    # All-skip cells: only the stem, preprocessing 1x1 convs, factorized reductions and the
    # classifier have multiply-adds; check against a hand count.
    g = Genotype(
        [("skip_connect", 0), ("skip_connect", 1)],
        [2],
        [("skip_connect", 0), ("skip_connect", 1)],
        [2],
    )
    model = NetworkCIFAR(g, C=4, num_classes=10, layers=3)
    stem = 8 * 8 * 12 * 9 * 3
    cell0 = 2 * (8 * 8 * 4 * 12)  # two 1x1 preprocess convs, 12 -> 4 channels
    # cell 1 (reduce, C=8): pre0 12->8, pre1 4->8 at 8x8; skip at stride 2 = factorized
    # reductions 8->8 (two 1x1 convs 8->4 at 4x4) on both inputs.
    cell1 = 8 * 8 * 8 * 12 + 8 * 8 * 8 * 4 + 2 * (2 * 4 * 4 * 4 * 8)
    # cell 2 (reduce, reduction_prev, C=16): pre0 = factorized reduction of 4 channels at
    # 8x8 -> 16 at 4x4, pre1 8->16 at 4x4, skips at stride 2 -> two factorized reductions.
    cell2 = 2 * (4 * 4 * 8 * 4) + 4 * 4 * 16 * 8 + 2 * (2 * 2 * 2 * 8 * 16)
    classifier = 16 * 10
    assert count_macs(model, (8, 8, 3)) == stem + cell0 + cell1 + cell2 + classifier


def _tiny(genotype=None, **kw):
    kw = dict(C=4, layers=3, num_classes=10, auxiliary=True, **kw)
    return NetworkCIFAR(genotype or PUBLISHED["DARTS_V2"], **kw)


def _init(model, x):
    return jax.jit(lambda k, x: model.init(k, x, train=True))(jax.random.key(0, impl="rbg"), x)


def test_forward_tiny_network_train_and_eval():
    model = _tiny()
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 32, 32, 3)), jnp.float32)
    v = _init(model, x)
    (logits, aux), _ = jax.jit(
        lambda v, x: model.apply(
            v,
            x,
            train=True,
            drop_path_prob=0.2,
            rngs={"dropout": jax.random.key(1)},
            mutable=["batch_stats"],
        )
    )(v, x)
    assert logits.shape == (2, 10) and aux.shape == (2, 10)
    logits, aux = jax.jit(lambda v, x: model.apply(v, x, train=False))(v, x)
    assert logits.shape == (2, 10) and aux is None
    assert np.all(np.isfinite(logits))


def test_drop_path_zero_equals_deterministic_path():
    model = _tiny()
    x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 32, 32, 3)), jnp.float32)
    v = _init(model, x)

    def run(p, rngs):
        return model.apply(v, x, train=True, drop_path_prob=p, rngs=rngs, mutable=["batch_stats"])[
            0
        ][0]

    base = jax.jit(lambda: run(0.0, {}))()  # no dropout rng needed at all
    traced = jax.jit(lambda p: run(p, {"dropout": jax.random.key(3)}))
    # Another program (masks of ones, scale 1): equal up to XLA's fusion choices.
    np.testing.assert_allclose(
        np.asarray(base), np.asarray(traced(jnp.float32(0.0))), rtol=1e-5, atol=1e-5
    )
    assert not np.allclose(np.asarray(base), np.asarray(traced(jnp.float32(0.5))))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 2, 2, 3)), jnp.float32)
    np.testing.assert_array_equal(np.asarray(drop_path(x, 0.0, jax.random.key(0))), np.asarray(x))


def test_drop_path_scales_one_draw_per_cell_independent_per_path():
    # A cell draws all its paths' factors at once: independent rows, E = 1, values 0 or 1/keep.
    f = np.asarray(cells.drop_path_scales(0.4, jax.random.key(1), 7, 5000))
    assert f.shape == (7, 5000)
    assert np.all(np.isclose(f, 0.0) | np.isclose(f, 1 / 0.6))
    np.testing.assert_allclose(f.mean(axis=1), 1.0, atol=0.05)
    kept = f > 0
    agree = [(kept[i] == kept[j]).mean() for i in range(7) for j in range(i + 1, 7)]
    assert max(agree) < 0.6  # independent: P(agree) = 0.6^2 + 0.4^2 = 0.52
    # Under pmap the global-batch draw is sliced: the slices tile the one-device draw.
    devices = jax.local_device_count()
    g = jax.pmap(
        lambda _: cells.drop_path_scales(0.4, jax.random.key(1), 3, 4, axis_name="d"),
        axis_name="d",
    )(jnp.zeros(devices))
    whole = cells.drop_path_scales(0.4, jax.random.key(1), 3, 4 * devices)
    np.testing.assert_array_equal(np.concatenate(list(np.asarray(g)), axis=1), np.asarray(whole))


def test_drop_path_preserves_expectation_and_spares_identity():
    x = jnp.ones((20000, 1, 1, 2))
    y = drop_path(x, 0.3, jax.random.key(0))
    kept = np.asarray(y[:, 0, 0, 0])
    assert np.all(np.isclose(kept, 0.0) | np.isclose(kept, 1 / 0.7))
    assert abs(kept.mean() - 1.0) < 0.02  # E[mask / keep] = 1
    np.testing.assert_array_equal(np.asarray(y[:, 0, 0, 0]), np.asarray(y[:, 0, 0, 1]))
    # A cell of identities only is never dropped (the DARTS code skips Identity ops).
    g = Genotype(
        [("skip_connect", 0), ("skip_connect", 1)],
        [2],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1)],
        [2],
    )
    cell = cells.Cell(g, 4, reduction=False, reduction_prev=False)
    s = jnp.asarray(np.random.default_rng(2).standard_normal((3, 4, 4, 4)), jnp.float32)
    cv = cell.init(jax.random.key(0), s, s, True, 0.0)
    a = cell.apply(cv, s, s, True, 0.0, mutable=["batch_stats"])[0]
    b = cell.apply(
        cv, s, s, True, 0.9, rngs={"dropout": jax.random.key(5)}, mutable=["batch_stats"]
    )[0]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
    "text,error,match",
    [
        (
            "Genotype(normal=[('sep_conv_3x3', 2), ('sep_conv_3x3', 1)], normal_concat=[2], "
            "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2])",
            MalformedGenotypeError,
            "input index 2",
        ),  # points forward (to itself)
        (
            "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 7)], normal_concat=[2], "
            "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2])",
            MalformedGenotypeError,
            "input index 7",
        ),  # out of range
        (
            "Genotype(normal=[('conv_9x9', 0), ('sep_conv_3x3', 1)], normal_concat=[2], "
            "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2])",
            UnknownOpError,
            "conv_9x9",
        ),
    ],
)
def test_bad_genotypes_rejected_before_compile(text, error, match, monkeypatch):
    monkeypatch.setattr(jax, "jit", lambda *a, **k: pytest.fail("compiled"))
    with pytest.raises(error, match=match):
        get_genotype(text)


def test_reduction_cell_may_not_concat_inputs():
    g = Genotype(
        [("skip_connect", 0), ("skip_connect", 1)],
        [2],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1)],
        [0, 2],
    )
    with pytest.raises(MalformedGenotypeError, match="reduce_concat"):
        build_network("cifar", g, C=4, layers=3, num_classes=10, auxiliary=False)


@pytest.mark.parametrize("image", [(28, 28, 1), (16, 16, 3), (64, 64, 3)])
def test_auxiliary_head_on_wrong_size_fails_before_compile(image, monkeypatch):
    model = _tiny()
    monkeypatch.setattr(jax, "jit", lambda *a, **k: pytest.fail("compiled"))
    with pytest.raises(NetworkConfigError, match="auxiliary"):
        abstract_variables(model, image)


def test_network_shape_errors():
    with pytest.raises(NetworkConfigError, match="at least 3 cells"):
        abstract_variables(NetworkCIFAR(PUBLISHED["DARTS_V2"], C=4, layers=2), (32, 32, 3))
    with pytest.raises(NetworkConfigError, match="unknown network"):
        build_network(
            "mobile", PUBLISHED["DARTS_V2"], C=4, layers=3, num_classes=10, auxiliary=False
        )


@pytest.mark.slow  # compiles the ImageNet network's train step (15 s cold)
def test_imagenet_network_trains_a_step_on_a_tiny_batch():
    """The eval_imagenet network's structure (stem, aux head at 7x7, label smoothing) at a
    small width: one train step runs; the full size is counted above and run in a slow test."""
    from experiments.configs import eval_imagenet
    from jnas.runner.train import build_trainer

    config = eval_imagenet.get_config()
    config.model.C, config.model.layers = 8, 3
    trainer = build_trainer(config, PUBLISHED["DARTS_V2"], num_classes=1000, steps_per_epoch=10)
    assert isinstance(trainer.model, NetworkImageNet) and trainer.label_smoothing == 0.1
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 224, 224, 3)), jnp.float32)
    # Initialise from shapes (one compile less): weights of 0.01, batch norm as initialised.
    abstract = jax.eval_shape(trainer.init, jax.random.PRNGKey(0), x)
    state = jax.tree.map(lambda s: jnp.full(s.shape, 0.01, s.dtype), abstract)
    state = state.replace(step=jnp.zeros((), jnp.int32))
    state, m = jax.jit(trainer.step)(
        state, {"image": x, "label": jnp.array([1, 999])}, jax.random.PRNGKey(1)
    )
    assert np.isfinite(float(m["train_loss"])) and int(state.step) == 1


@pytest.mark.slow
def test_full_imagenet_network_step():
    from experiments.configs import eval_imagenet
    from jnas.runner.train import build_trainer

    config = eval_imagenet.get_config()
    trainer = build_trainer(config, PUBLISHED["DARTS_V2"], num_classes=1000, steps_per_epoch=10)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 224, 224, 3)), jnp.float32)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0), x)
    assert count_params(state.params) == 4_718_752
    state, m = jax.jit(trainer.step)(
        state, {"image": x, "label": jnp.array([1, 999])}, jax.random.PRNGKey(1)
    )
    assert np.isfinite(float(m["train_loss"]))


def test_aux_head_pool_equals_average_pooling():
    from jnas.ops.layers import avg_pool

    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 8, 5)), jnp.float32)
    np.testing.assert_allclose(cells._avg_pool_valid(x, 5, 3), avg_pool(x, 5, 3, 0), atol=1e-6)
    y = x[:, :7, :7]
    np.testing.assert_allclose(cells._avg_pool_valid(y, 5, 2), avg_pool(y, 5, 2, 0), atol=1e-6)
