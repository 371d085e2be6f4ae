"""Mixed precision (``config.model.compute_dtype="bfloat16"``, :mod:`jnas.ops.precision`).

References: two invariants, checked on the traced steps without compiling them: every
convolution and matrix product of a bfloat16 step takes bfloat16 operands (nothing promotes
the network back to float32 on the way), and what the step returns to keep is float32; and
(``-m slow``: two compilations each) the float32 step at the same weights and batch, whose
losses, gradient norms and update directions agree to bfloat16's precision.
"""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import eval_tiny
from jnas import validate
from jnas.config import with_overrides
from jnas.errors import ConfigError
from jnas.ops import precision
from jnas.runner.train import build_trainer
from jnas.spaces.published import get_genotype
from jnas.strategies.oneshot import gradient_strategy
from tests.strategies.search_helpers import TINY

HEAVY = ("conv_general_dilated", "dot_general")


def heavy_operand_dtypes(fn, *args) -> list[str]:
    """The operand dtypes of every convolution and matrix product in ``fn``'s jaxpr, nested
    jaxprs (scans, conds, custom derivatives) included."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in HEAVY:
                found.extend(str(v.aval.dtype) for v in eqn.invars)
            for sub in jax.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def float_dtypes(tree) -> set[str]:
    return {str(x.dtype) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}


def batch(channels=3):
    rng = np.random.default_rng(0)
    image = jnp.asarray(rng.normal(size=(4, 16, 16, channels)), jnp.float32)
    return {"image": image, "label": jnp.asarray([1, 2, 3, 4], jnp.int32)}


def flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def cosine(a, b) -> float:
    a, b = flat(a), flat(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def moved(new, old) -> np.ndarray:
    """What a step changed in a tree, flat."""
    return flat(new) - flat(old)


def assert_computes_in_bfloat16(step, state, kept):
    """Every convolution and product of ``step(state)`` takes bfloat16 operands; what
    ``kept(new_state)`` returns and the training loss are float32."""
    operands = heavy_operand_dtypes(step, state)
    assert operands and set(operands) == {"bfloat16"}, sorted(set(operands))
    new, metrics = jax.eval_shape(step, state)
    assert float_dtypes(kept(new)) == {"float32"}
    assert metrics["train_loss"].dtype == jnp.float32


def one_step_each(make, run, data):
    """``{dtype: (state, new_state, metrics)}`` of one compiled step per compute dtype, from
    the same initial weights (``make(dtype)`` builds the searcher or trainer)."""
    runs = {}
    for dtype in ("float32", "bfloat16"):
        obj = make(dtype)
        state = obj.init(jax.random.PRNGKey(0), data["image"])
        new, metrics = jax.jit(lambda s, obj=obj: run(obj, s))(state)
        runs[dtype] = (state, new, metrics)
    return runs["bfloat16"], runs["float32"]


def test_to_compute_casts_float32_leaves_only():
    tree = {"w": jnp.ones((2,)), "n": jnp.arange(3), "h": jnp.ones((1,), jnp.float16)}
    out = precision.to_compute(tree, jnp.bfloat16)
    assert out["w"].dtype == jnp.bfloat16
    assert out["n"].dtype == jnp.int32 and out["h"].dtype == jnp.float16
    assert precision.to_compute(tree, jnp.float32) is tree  # float32: the same program
    assert precision.to_float32(None) is None
    with pytest.raises(ValueError, match="'float16' is not one of 'float32', 'bfloat16'"):
        precision.compute_dtype("float16")


def test_config_check_names_a_bad_compute_dtype():
    config = eval_tiny.get_config()
    config.model.compute_dtype = "half"
    with pytest.raises(ConfigError, match="model.compute_dtype"):
        validate.check_train_config(config)


def _retrainer(dtype):
    config = eval_tiny.get_config()
    config.model.compute_dtype = dtype
    return build_trainer(config, get_genotype("DARTS_V2"), num_classes=10, steps_per_epoch=10)


def test_bfloat16_retraining_step_computes_in_bfloat16():
    """Every convolution and product of the step takes bfloat16; the weights, optimizer state
    and batch statistics it returns are float32."""
    data = batch()
    trainer = _retrainer("bfloat16")
    state = trainer.init(jax.random.PRNGKey(0), data["image"])

    def step(state):
        return trainer.step(state, data, jax.random.PRNGKey(1))

    assert_computes_in_bfloat16(step, state, lambda n: (n.params, n.opt_state, n.batch_stats))


@pytest.mark.slow
def test_bfloat16_retraining_step_matches_float32():
    data = batch()
    (state, new, metrics), (ref_state, ref_new, ref) = one_step_each(
        _retrainer, lambda t, s: t.step(s, data, jax.random.PRNGKey(1)), data
    )
    np.testing.assert_allclose(metrics["train_loss"], ref["train_loss"], rtol=1e-2)
    np.testing.assert_allclose(metrics["grad_norm"], ref["grad_norm"], rtol=3e-2)
    # The first SGD step moves the weights along the gradient: the same direction.
    assert cosine(moved(new.params, state.params), moved(ref_new.params, ref_state.params)) > 0.99
    # The running statistics are updated in float32 from the bfloat16 activations.
    assert cosine(new.batch_stats, ref_new.batch_stats) > 0.999


def _searcher(name, dtype):
    """The method's Fashion-MNIST config with the tiny supernet of the search tests."""
    config = importlib.import_module(f"experiments.configs.{name}_fashion_mnist").get_config()
    model = {k: v for k, v in TINY.items() if k.startswith("model.")}
    overrides = {**model, "model.compute_dtype": dtype, "search.arch_start_epoch": 0}
    config = with_overrides(config, overrides)
    strategy = gradient_strategy(name)
    return strategy(strategy.stage_configs(config)[0], num_classes=10, steps_per_epoch=10)


@pytest.mark.parametrize("name", ["darts", "gdas"])
def test_bfloat16_search_step_computes_in_bfloat16(name):
    """The supernet's ops (GDAS: every branch of each edge's switch) take bfloat16; the
    weights, alpha and both optimizer states the step returns are float32."""
    data = batch(channels=1)
    search = _searcher(name, "bfloat16")
    state = search.init(jax.random.PRNGKey(0), data["image"])

    def step(state):
        return search.step(state, data, data)

    assert_computes_in_bfloat16(
        step, state, lambda n: (n.params, n.alpha, n.w_opt_state, n.a_opt_state, n.batch_stats)
    )


@pytest.mark.slow
def test_bfloat16_darts_step_matches_float32():
    data = batch(channels=1)
    (state, new, metrics), (ref_state, ref_new, ref) = one_step_each(
        lambda dtype: _searcher("darts", dtype), lambda search, s: search.step(s, data, data), data
    )
    np.testing.assert_allclose(metrics["val_loss"], ref["val_loss"], rtol=1e-2)
    np.testing.assert_allclose(metrics["grad_norm_w"], ref["grad_norm_w"], rtol=1e-1)
    np.testing.assert_allclose(metrics["grad_norm_alpha"], ref["grad_norm_alpha"], rtol=1e-1)
    assert cosine(moved(new.params, state.params), moved(ref_new.params, ref_state.params)) > 0.95
    # Adam's first step is lr * sign(gradient): alpha moves the same way on (almost) every
    # entry; those whose gradient is near zero may flip.
    signs = np.sign(moved(new.alpha, state.alpha))
    ref_signs = np.sign(moved(ref_new.alpha, ref_state.alpha))
    assert np.mean(signs == ref_signs) >= 0.9
