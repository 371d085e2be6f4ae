"""Tests of the ENAS macro space: decisions, text, named errors, the standalone network, the
shared-weight supergraph (a child with shared weights == the standalone network with those
weights copied; one compiled program for every architecture; shared ops share parameters)
and the layer-graph picture. Tiny sizes: 2-4 layers, 4 filters, 8x8 images."""

import json
import xml.etree.ElementTree as ET

import jax
import jax.numpy as jnp
import matplotlib.image as mpimg
import numpy as np
import pytest

from jnas.spaces.base import SPACES, Fidelity, make_space
from jnas.spaces.discrete import (
    Anchor,
    ArchitectureRangeError,
    ArchitectureSyntaxError,
    ArchitectureTypeError,
    NonAsciiTextError,
    UnknownChoiceError,
)
from jnas.spaces.enas_macro import (
    ENAS_MACRO_OPS,
    OFFICIAL_FINAL_ARC,
    EnasMacroSpace,
    MacroArch,
    MacroLayer,
    needed_sources,
    pool_layers,
)


def _random_archs(space, n, seed):
    """``n`` vectors drawn uniformly position by position (numpy, explicit seed)."""
    rng = np.random.default_rng(seed)
    return [
        np.asarray([rng.integers(k) for k in space.spec.num_choices], np.int32) for _ in range(n)
    ]


def test_spec_follows_the_official_layout():
    space = EnasMacroSpace(num_layers=4)
    spec = space.spec
    # general_child.py:268-293: conv3, sep3, conv5, sep5, avg pool, max pool.
    assert ENAS_MACRO_OPS == (
        "conv_3x3",
        "sep_conv_3x3",
        "conv_5x5",
        "sep_conv_5x5",
        "avg_pool_3x3",
        "max_pool_3x3",
    )
    assert [d.name for d in spec.decisions] == [
        f"L{i}/{k}" for i in range(4) for k in ("op", "skip")
    ]
    assert [d.num_sources for d in spec.decisions if isinstance(d, Anchor)] == [0, 1, 2, 3]
    assert spec.length == 4 + 0 + 1 + 2 + 3
    assert spec.num_choices[:3] == (6, 6, 2)
    assert EnasMacroSpace().spec.length == 12 + 66
    assert EnasMacroSpace(num_branches=4).ops == ENAS_MACRO_OPS[:4]
    # general_child.py:95-96: pool_distance = L // 3, pools after layers d-1 and 2d-1.
    assert pool_layers(12) == (3, 7)
    assert pool_layers(3) == (0, 1)
    assert pool_layers(2) == ()
    assert SPACES.get("enas_macro") is EnasMacroSpace
    space = make_space({"name": "enas_macro", "num_layers": 5, "out_filters": 8})
    assert make_space(json.loads(json.dumps(space.options()))) == space


def test_text_and_vector_round_trip():
    space = EnasMacroSpace(num_layers=5)
    for a in _random_archs(space, 30, seed=0):
        text = space.to_text(a)
        np.testing.assert_array_equal(space.parse(text), a)
        np.testing.assert_array_equal(space.encode(space.decode(a)), a)
        assert space.decode(space.decode(a)) == space.decode(a)  # a MacroArch is accepted
    # By hand: layer i's op index, then i bits (bit j: x_j added, x_0 the stem).
    small = EnasMacroSpace(num_layers=3)
    text = " conv_3x3; sep_conv_5x5<-0 ;max_pool_3x3<-1,0\n"
    np.testing.assert_array_equal(small.parse(text), [0, 3, 1, 5, 1, 1])
    assert small.to_text([0, 3, 1, 5, 1, 1]) == "conv_3x3; sep_conv_5x5<-0; max_pool_3x3<-0,1"
    assert small.decode([2, 4, 0, 1, 0, 1]) == MacroArch(
        (MacroLayer("conv_5x5"), MacroLayer("avg_pool_3x3"), MacroLayer("sep_conv_3x3", (1,)))
    )


@pytest.mark.parametrize(
    "text, error, words",
    [
        ("conv_3x3; conv_7x7; conv_3x3", UnknownChoiceError, "conv_7x7"),
        ("conv_3x3; conv_3x3<-1; conv_3x3", ArchitectureRangeError, "x_1"),
        ("conv_3x3<-0; conv_3x3; conv_3x3", ArchitectureRangeError, "L0 adds x_0"),
        ("conv_3x3; conv_3x3; conv_3x3<-0,3", ArchitectureRangeError, "x_3"),
        ("conv_3x3; conv_3x3; conv_3x3<-1,1", ArchitectureRangeError, "twice"),
        ("conv_3x3; conv_3x3", ArchitectureRangeError, "2 layers"),
        ("conv_3x3; conv_3x3; conv_3x3; conv_3x3", ArchitectureRangeError, "4 layers"),
        ("conv_3x3; conv_3x3<-; conv_3x3", ArchitectureSyntaxError, "layer 1"),
        ("conv_3x3; conv_3x3 <- 0; conv_3x3", ArchitectureSyntaxError, "layer 1"),
        ("conv_3x3; conv_3x3<-00; conv_3x3", ArchitectureSyntaxError, "leading zeros"),
        ("conv_3x3;; conv_3x3", ArchitectureSyntaxError, "layer 1"),
        ("conv_3x3; conv_3x3<-٠; conv_3x3", NonAsciiTextError, "Unicode digit"),
        ("", ArchitectureSyntaxError, "empty"),
    ],
)
def test_bad_text_raises_named_errors(text, error, words):
    with pytest.raises(error, match=words):
        EnasMacroSpace(num_layers=3).parse(text)


def test_bad_vectors_objects_and_options_raise_named_errors():
    space = EnasMacroSpace(num_layers=3)  # length 6: [op, op, b, op, b, b]
    with pytest.raises(ArchitectureRangeError, match="layer L2 has its op and 1 skip bits"):
        space.decode([0, 0, 1, 0, 1])  # L2's skip list one bit short
    with pytest.raises(ArchitectureRangeError, match="1 left over after L2"):
        space.decode([0, 0, 1, 0, 1, 1, 0])
    with pytest.raises(ArchitectureRangeError, match="L1/skip<-0"):
        space.decode([0, 0, 2, 0, 1, 1])  # a skip bit of 2
    with pytest.raises(ArchitectureRangeError, match="L2/op"):
        space.decode([0, 0, 1, 6, 1, 1])
    with pytest.raises(UnknownChoiceError, match="max_pool_3x3"):
        EnasMacroSpace(num_layers=3, num_branches=4).parse("conv_3x3; max_pool_3x3; conv_3x3")
    layers = [MacroLayer("conv_3x3"), MacroLayer("conv_3x3"), MacroLayer("conv_3x3", (0, 1))]
    space.encode(MacroArch(tuple(layers)))
    with pytest.raises(ArchitectureTypeError, match="ints"):
        space.encode(MacroArch((*layers[:2], MacroLayer("conv_3x3", ("0",)))))
    with pytest.raises(ArchitectureRangeError, match="x_-1"):
        space.encode(MacroArch((*layers[:2], MacroLayer("conv_3x3", (-1,)))))
    with pytest.raises(ArchitectureTypeError, match="MacroArch"):
        space.encode("conv_3x3; conv_3x3; conv_3x3")
    for bad in ({"out_filters": 5}, {"num_branches": 3}, {"num_layers": 0}, {"keep_prob": 0.0}):
        with pytest.raises(ValueError):
            EnasMacroSpace(**bad)


def test_fidelity_width_scales_the_filters_to_an_even_count():
    space = EnasMacroSpace(num_layers=2)
    arch = np.zeros(space.spec.length, np.int32)
    assert space.network(arch, num_classes=3).out_filters == 36
    assert space.network(arch, num_classes=3, fidelity=Fidelity(width=0.5)).out_filters == 18
    assert space.network(arch, num_classes=3, fidelity=Fidelity(width=0.1)).out_filters == 4
    assert space.network(arch, num_classes=3, fidelity=Fidelity(width=0.01)).out_filters == 2
    assert space.network(arch, num_classes=3) == space.network(space.decode(arch), num_classes=3)


@pytest.mark.slow  # 8 s cold: the generic child training, tested for every space elsewhere
def test_train_child_trains_the_standalone_network():
    # The generic child training (jnas.spaces.child) trains network(arch) at the fidelity's
    # width: on images whose class is their brightness it reaches 100 % (chance: ~50 %).
    space = EnasMacroSpace(num_layers=2, out_filters=8)
    rng = np.random.default_rng(0)

    def data(n):
        y = rng.integers(0, 2, n)
        x = rng.integers(0, 128, (n, 8, 8, 3)) + 127 * y[:, None, None, None]
        return x.astype(np.uint8), y

    accuracy = space.train_child(
        space.parse("conv_3x3; avg_pool_3x3<-0"),
        data(128),
        data(64),
        config={"num_steps": 30, "batch_size": 32, "learning_rate": 0.1},
        fidelity=Fidelity(width=0.5),
        key=jax.random.key(0, impl="rbg"),  # a small init program (threefry's compiles slowly)
    )
    assert accuracy == 1.0


def test_needed_sources_by_hand():
    # L=4: pools after layers 0 and 1. x_0 stem, x_1 = L0, x_2 = L1.
    space = EnasMacroSpace(num_layers=4)
    arch = space.decode(space.parse("conv_3x3; conv_3x3; conv_3x3<-0; conv_3x3<-2"))
    # After L0: x_1 feeds L1; x_0 is added by L2. After L1: x_2 feeds L2 and is added by L3.
    assert needed_sources(arch, 0) == (0, 1)
    assert needed_sources(arch, 1) == (0, 2)
    arch = space.decode(space.parse("conv_3x3; conv_3x3; conv_3x3; conv_3x3<-1"))
    assert needed_sources(arch, 0) == (1,)
    assert needed_sources(arch, 1) == (1, 2)


def test_building_blocks_match_hand_computations():
    from jnas.spaces.enas_macro import FactorizedReduction, MacroBranch

    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.standard_normal((2, 5, 5, 3)), jnp.float32)
    xn = np.asarray(x)
    red, pool, conv = (
        FactorizedReduction(4),
        MacroBranch("avg_pool_3x3", 4),
        MacroBranch("conv_3x3", 4),
    )
    shapes = [
        jax.eval_shape(lambda m=m: m.init(jax.random.key(0), x, train=False))
        for m in (red, pool, conv)
    ]
    v_red, v_pool, v_conv = (_fill(s, seed=k) for k, s in enumerate(shapes))
    out_red, out_pool = jax.jit(
        lambda a, b: (red.apply(a, x, train=False), pool.apply(b, x, train=False))
    )(v_red, v_pool)

    def bn(z, params, stats, eps=1e-5):  # evaluation mode: the running statistics
        scale = (z - np.asarray(stats["mean"])) / np.sqrt(np.asarray(stats["var"]) + eps)
        return scale * np.asarray(params["scale"]) + np.asarray(params["bias"])

    # Factorized reduction (general_child.py:129-177) on a 5x5 map: path 1 reads pixels
    # (0, 2, 4), path 2 the map shifted by one with a zero row/column padded at the end
    # (pixels 1, 3 and the padding); a 1x1 conv each, concatenated, BN (no ReLU).
    p, st = v_red["params"], v_red["batch_stats"]
    padded = np.pad(xn, ((0, 0), (0, 1), (0, 1), (0, 0)))
    cat = np.concatenate(
        [
            xn[:, ::2, ::2] @ np.asarray(p["path1_conv"]["kernel"])[0, 0],
            padded[:, 1::2, 1::2] @ np.asarray(p["path2_conv"]["kernel"])[0, 0],
        ],
        axis=-1,
    )
    np.testing.assert_allclose(out_red, bn(cat, p["bn"], st["bn"]), rtol=1e-4, atol=1e-5)
    # Average pool branch: 1x1 conv -> BN -> ReLU -> 3x3 average, padding not counted
    # (TF's SAME): a corner is the mean of its 2x2 neighbourhood.
    p, st = v_pool["params"], v_pool["batch_stats"]
    h = xn @ np.asarray(p["inp_conv"]["kernel"])[0, 0]
    h = np.maximum(bn(h, p["inp_bn"], st["inp_bn"]), 0.0)
    out = np.asarray(out_pool)
    np.testing.assert_allclose(out[:, 0, 0], h[:, :2, :2].mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out[:, 2, 2], h[:, 1:4, 1:4].mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)
    # The conv branch's second BN has the masked BN's epsilon 1e-3 (image_ops.py:134).
    assert {n: m.epsilon for n, m in _bn_modules(conv, v_conv, x).items()} == {
        "inp_bn": 1e-5,
        "out_bn": 1e-3,
    }


def _bn_modules(module, variables, x):
    """The batch norms a module's call builds, by name."""
    import flax.linen as nn

    found = {}

    def interceptor(f, args, kwargs, context):
        if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
            found[context.module.name] = context.module
        return f(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        jax.eval_shape(lambda v: module.apply(v, x, train=False), variables)
    return found


def _fill(shapes, seed):
    """Random values of the shapes of a variable tree: weights N(0, 0.5^2), BN running
    variances in [0.5, 1.5] (so that evaluation mode is not the identity)."""
    rng = np.random.default_rng(seed)

    def one(path, s):
        names = [getattr(p, "key", "") for p in path]
        if names[-1] == "var":
            return jnp.asarray(rng.uniform(0.5, 1.5, s.shape), s.dtype)
        return jnp.asarray(0.5 * rng.standard_normal(s.shape), s.dtype)

    return jax.tree_util.tree_map_with_path(one, shapes)


def _leaves(tree):
    return {
        jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(tree)
    }


def test_shared_child_equals_the_standalone_network_without_recompiling():
    # 3 layers: reductions after L0 and L1 (pool_layers(3) == (0, 1)), so the skips and the
    # per-source reductions are exercised; all six ops.
    space = EnasMacroSpace(num_layers=3, out_filters=4)
    sg = space.supergraph(num_classes=5)
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
    a0 = jnp.zeros(space.spec.length, jnp.int32)
    shapes = jax.eval_shape(lambda: sg.init(jax.random.key(1), x, a0, train=True))
    shared = _fill(shapes, seed=1)
    traces = []

    @jax.jit
    def run(variables, arch):
        traces.append(1)  # runs once per trace
        logits_eval = sg.apply(variables, x, arch, train=False)
        logits_train, upd = sg.apply(variables, x, arch, train=True, mutable=["batch_stats"])
        return logits_eval, logits_train, upd["batch_stats"]

    archs = _random_archs(space, 2, seed=2)
    archs.append(space.parse("max_pool_3x3; avg_pool_3x3<-0; sep_conv_5x5<-0,1"))
    archs.append(space.parse("conv_5x5; conv_3x3; sep_conv_3x3"))
    outputs = []
    for arch in archs:
        logits_eval, logits_train, stats = run(shared, jnp.asarray(arch))
        net = space.network(arch, num_classes=5)
        mine = space.supergraph_variables_to_network(arch, shared)
        # The copied variables are exactly the standalone network's (no more, no fewer).
        want = jax.eval_shape(lambda net=net: net.init(jax.random.key(0), x, train=True))
        assert jax.tree.structure(mine) == jax.tree.structure(want)
        assert jax.tree.map(jnp.shape, mine) == jax.tree.map(jnp.shape, want)
        # Eager: op by op, each op compiled once for all architectures (cheaper here than
        # one compile per architecture).
        ref_eval = net.apply(mine, x, train=False)
        ref_train, ref_upd = net.apply(mine, x, train=True, mutable=["batch_stats"])
        np.testing.assert_allclose(logits_eval, ref_eval, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(logits_train, ref_train, rtol=1e-4, atol=1e-4)
        # The batch statistics the child updated are the standalone network's.
        picked = space.supergraph_variables_to_network(arch, {"batch_stats": stats})
        got, ref = _leaves(picked["batch_stats"]), _leaves(ref_upd["batch_stats"])
        assert got.keys() == ref.keys()
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-4, atol=1e-5, err_msg=k)
        # Unsampled ops ran not at all: their running statistics are as they were.
        chosen = space.decode(arch).layers
        for i, layer in enumerate(chosen):
            for op in space.ops:
                if op != layer.op:
                    before = _leaves(shared["batch_stats"][f"layer{i}"][f"op_{op}"])
                    after = _leaves(stats[f"layer{i}"][f"op_{op}"])
                    for k in before:
                        np.testing.assert_array_equal(after[k], before[k])
        outputs.append(np.asarray(logits_eval))
    assert len(traces) == 1  # one compiled program for every architecture
    assert not np.allclose(outputs[0], outputs[1])  # and the architecture matters


@pytest.mark.slow  # 8 s cold; the micro space checks the same in the default suite
def test_architectures_sharing_an_op_update_the_same_parameters():
    space = EnasMacroSpace(num_layers=2, out_filters=4, num_branches=4)
    sg = space.supergraph(num_classes=3)
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
    y = jnp.asarray([0, 1, 2, 0])
    a0 = jnp.zeros(space.spec.length, jnp.int32)
    shapes = jax.eval_shape(lambda: sg.init(jax.random.key(1), x, a0, train=True))
    v = _fill(shapes, seed=3)
    traces = []

    @jax.jit
    def grads(params, arch):
        traces.append(1)

        def loss(p):
            logits, _ = sg.apply(
                {"params": p, "batch_stats": v["batch_stats"]},
                x,
                arch,
                train=True,
                mutable=["batch_stats"],
            )
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), y])

        return jax.grad(loss)(params)

    # Both choose sep_conv_3x3 at L0; L1 differs (conv_5x5 with the skip, conv_3x3 without).
    a = space.parse("sep_conv_3x3; conv_5x5<-0")
    b = space.parse("sep_conv_3x3; conv_3x3")
    ga, gb = grads(v["params"], jnp.asarray(a)), grads(v["params"], jnp.asarray(b))
    assert len(traces) == 1

    def norm(tree):
        return float(sum(jnp.sum(jnp.abs(leaf)) for leaf in jax.tree.leaves(tree)))

    for g in (ga, gb):
        assert all(norm(leaf) > 0 for leaf in jax.tree.leaves(g["layer0"]["op_sep_conv_3x3"]))
        for op in ("conv_3x3", "conv_5x5", "sep_conv_5x5"):
            assert norm(g["layer0"][f"op_{op}"]) == 0.0
        assert norm(g["stem"]) > 0 and norm(g["head"]) > 0 and norm(g["layer1"]["skip_bn"]) > 0
    assert norm(ga["layer1"]["op_conv_5x5"]) > 0 and norm(ga["layer1"]["op_conv_3x3"]) == 0
    assert norm(gb["layer1"]["op_conv_3x3"]) > 0 and norm(gb["layer1"]["op_conv_5x5"]) == 0
    # The shared op's gradient differs between the two (it is the same leaf, trained by both).
    assert not np.allclose(
        ga["layer0"]["op_sep_conv_3x3"]["inp_conv"]["kernel"],
        gb["layer0"]["op_sep_conv_3x3"]["inp_conv"]["kernel"],
    )


def _svg_texts(path):
    root = ET.parse(path).getroot()  # well-formed XML or this raises
    return ["".join(t.itertext()).strip() for t in root.iter("{http://www.w3.org/2000/svg}text")]


@pytest.mark.parametrize("backend", ["auto", "matplotlib"])
def test_picture_shows_every_layer_op_and_skip(tmp_path, backend):
    space = EnasMacroSpace(num_layers=4)
    text = "conv_3x3; sep_conv_5x5<-0; max_pool_3x3<-0,1; avg_pool_3x3<-2"
    paths = space.draw(space.parse(text), str(tmp_path / "pic"), backend=backend)
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["macro.dot", "macro.png", "macro.svg"]
    image = mpimg.imread(paths[1])
    assert image.ndim == 3 and min(image.shape[:2]) > 50 and image[..., :3].std() > 0.05
    texts = _svg_texts(paths[2])
    layers = ["L0: conv_3x3", "L1: sep_conv_5x5", "L2: max_pool_3x3", "L3: avg_pool_3x3"]
    for label in [*layers, "stem", "image"]:
        assert texts.count(label) == 1, (label, texts)
    dot = open(paths[0]).read()
    skips = [line for line in dot.splitlines() if "dashed" in line]
    # L1<-x_0 (stem), L2<-x_0, x_1 (L0), L3<-x_2 (L1): four dashed skip edges; pools after
    # L0 and L1 (so L3's skip from L1 went through one reduction, L2's from the stem two).
    assert sorted(s.split("[")[0].strip() for s in skips) == sorted(
        ['"stem" -> "L1"', '"stem" -> "L2"', '"L0" -> "L2"', '"L1" -> "L3"']
    )
    assert any('"stem" -> "L2"' in s and "reduce x2" in s for s in skips)


def test_official_final_architecture_is_a_member():
    # scripts/cifar10_macro_final.sh: 24 layers, 4 branches; its vector is this space's.
    space = EnasMacroSpace(num_layers=24, num_branches=4)
    arch = np.asarray(OFFICIAL_FINAL_ARC, np.int32)
    assert arch.shape == (24 + 24 * 23 // 2,)
    decoded = space.decode(arch)
    assert decoded.layers[:3] == (
        MacroLayer("conv_3x3"),  # "0"
        MacroLayer("sep_conv_5x5"),  # "3 0"
        MacroLayer("conv_3x3", (0,)),  # "0 1 0"
    )
    assert decoded.layers[23].skips == (0, 1, 5, 6, 7, 9, 13, 15, 18, 19)
    np.testing.assert_array_equal(space.parse(space.to_text(arch)), arch)


def _macro_retrain_config(**space):
    import ml_collections

    from experiments.configs import eval_tiny

    config = eval_tiny.get_config()
    config.space = ml_collections.ConfigDict({"name": "enas_macro", **space})
    config.genotype = "conv_3x3; max_pool_3x3<-0; sep_conv_3x3<-0,1"
    return config


def test_a_retraining_config_with_a_space_builds_the_macro_network(tmp_path):
    from experiments.configs import eval_enas_macro_cifar10
    from jnas.errors import ConfigError
    from jnas.runner import train as runner_train
    from jnas.validate import check_train_config

    config = _macro_retrain_config(num_layers=3, out_filters=4)
    arch = runner_train.space_architecture(config)
    assert str(arch) == "conv_3x3; max_pool_3x3<-0; sep_conv_3x3<-0,1"
    path = tmp_path / "genotype.txt"  # what an ENAS search writes
    path.write_text(str(arch) + "\n")
    assert runner_train.space_architecture(config, str(path)) == arch
    trainer = runner_train.build_trainer(config, arch, num_classes=10, steps_per_epoch=2)
    space = EnasMacroSpace(num_layers=3, out_filters=4)
    net = space.network(space.parse(str(arch)), num_classes=10)
    x = jnp.zeros((2, 8, 8, 3))
    got = jax.eval_shape(lambda: trainer.model.init(jax.random.key(0), x, train=True))
    want = jax.eval_shape(lambda: net.init(jax.random.key(0), x, train=True))
    assert jax.tree.map(jnp.shape, got) == jax.tree.map(jnp.shape, want)
    out = jax.eval_shape(lambda v: trainer.model.apply(v, x, train=False), got)
    assert out[0].shape == (2, 10) and out[1] is None  # (logits, logits_aux)
    # The default config: the official final architecture, a valid retraining config.
    official = eval_enas_macro_cifar10.get_config()
    arch = runner_train.space_architecture(official)
    np.testing.assert_array_equal(arch.arch, OFFICIAL_FINAL_ARC)
    check_train_config(official, genotype=arch)
    # Bad input fails before anything is written.
    bad = _macro_retrain_config(num_layers=3)
    bad.genotype = "conv_3x3; conv_7x7; conv_3x3"
    with pytest.raises(UnknownChoiceError, match="conv_7x7"):
        runner_train.train(bad, str(tmp_path / "w1"))
    bad = _macro_retrain_config(num_layers=3, out_filters=5)
    with pytest.raises(ConfigError, match="even"):
        runner_train.train(bad, str(tmp_path / "w2"))
    bad = _macro_retrain_config()
    bad.space = {"name": "nasrl"}
    with pytest.raises(ConfigError, match="no retraining network"):
        runner_train.train(bad, str(tmp_path / "w3"))
    bad = _macro_retrain_config(num_layers=3)
    bad.genotype = None
    with pytest.raises(ConfigError, match="genotype"):
        runner_train.train(bad, str(tmp_path / "w4"))
    assert not any((tmp_path / w).exists() for w in ("w1", "w2", "w3", "w4"))


@pytest.mark.slow
def test_retrain_and_evaluate_a_macro_network_from_its_text(tmp_path):
    from jnas import data as jdata
    from jnas.runner import train as runner_train
    from jnas.runner.checkpoint import IncompatibleCheckpointError

    config = _macro_retrain_config(num_layers=3, out_filters=4, keep_prob=0.8)
    config.train.epochs = 1
    config.train.max_steps_per_epoch = 2
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (48, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 48).astype(np.int32)
    data = (
        jdata.get_dataset_info("cifar10"),
        (images[:32], labels[:32]),
        (images[32:], labels[32:]),
    )
    workdir = str(tmp_path / "run")
    results = runner_train.train(config, workdir, data=data)
    assert results["genotype"] == config.genotype and results["steps"] == 2
    space = EnasMacroSpace(num_layers=3, out_filters=4)
    net = space.network(space.parse(config.genotype), num_classes=10)
    x = jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32)
    shapes = jax.eval_shape(net.init, jax.random.key(0), x)
    assert results["params"] == sum(
        int(np.prod(s.shape)) for s in jax.tree.leaves(shapes["params"])
    )
    with open(f"{workdir}/genotype.txt") as f:
        assert f.read() == config.genotype + "\n"
    evaluated = runner_train.evaluate(workdir, data=data)
    assert evaluated["test_acc"] == pytest.approx(results["test_acc"])
    other = _macro_retrain_config(num_layers=3, out_filters=4, keep_prob=0.8)
    other.genotype = "conv_5x5; max_pool_3x3<-0; sep_conv_3x3<-0,1"
    other.train.epochs, other.train.max_steps_per_epoch = 1, 2
    with pytest.raises(IncompatibleCheckpointError, match="another genotype"):
        runner_train.train(other, workdir, data=data, allow_config_change=True)
