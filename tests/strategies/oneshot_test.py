"""The one-shot core: the fused and the two-phase first-order steps compute the same search
(DARTS's order and GDAS's, with and without the warm-up skip), each compiles once, and the
registry finds every gradient strategy with its configs."""

import importlib

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jnas.strategies import oneshot
from jnas.strategies.base import STRATEGIES


class ToyNet(nn.Module):
    """A tiny supernet: batch norm, then ``sum_k w_k * Dense_k(x)`` over three ops."""

    @nn.compact
    def __call__(self, x, arch, train=True):
        x = x.reshape(x.shape[0], -1)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.Dropout(0.1, deterministic=not train)(x)
        outs = [nn.Dense(5, name=f"op{k}")(x) for k in range(3)]
        return sum(arch["normal"][k] * y for k, y in enumerate(outs))


def _search(*, fuse, weights_first, skip_warmup, arch_start_step=2, hypergradient="first"):
    def arch(alpha, *_):
        return {"normal": jax.nn.softmax(alpha["normal"])}

    sgd = optax.chain(optax.add_decayed_weights(3e-4), optax.sgd(0.05, momentum=0.9))
    adam = optax.chain(optax.add_decayed_weights(1e-3), optax.adam(0.05, b1=0.5))
    return oneshot.OneShotSearch(
        model=ToyNet(),
        init_alpha=lambda key: {"normal": 0.1 * jax.random.normal(key, (3,))},
        arch_fn=arch,
        eval_arch_fn=arch,
        w_tx=sgd,
        a_tx=adam,
        lr_fn=lambda step: jnp.asarray(0.05),
        arch_start_step=arch_start_step,
        fuse_phases=fuse,
        weights_first=weights_first,
        skip_warmup=skip_warmup,
        hypergradient=hypergradient,
        weight_decay=3e-4,
        momentum=0.9,
    )


def _batches(n):
    rng = np.random.default_rng(0)
    return [
        {
            "image": jnp.asarray(rng.normal(size=(8, 4, 4, 1)), jnp.float32),
            "label": jnp.asarray(rng.integers(0, 5, 8), jnp.int32),
        }
        for _ in range(2 * n)
    ]


@pytest.mark.parametrize(
    "weights_first, hypergradient",
    [(False, "first"), (True, "first"), (False, "fd")],
    ids=["darts_order", "gdas_order", "second_order_fd"],
)
@pytest.mark.parametrize("skip_warmup", [False, True], ids=["masked_warmup", "skipped_warmup"])
def test_fused_and_two_phase_steps_agree(weights_first, hypergradient, skip_warmup):
    """Three steps, the first two in the warm-up: both programs (first order: the phases
    fused; finite differences: the five evaluations fused) give the same state and metrics,
    alpha stays put in the warm-up and moves after it, and each compiles once."""
    n = 3
    batches = _batches(n)
    results = {}
    for fuse in (True, False):
        search = _search(
            fuse=fuse,
            weights_first=weights_first,
            skip_warmup=skip_warmup,
            hypergradient=hypergradient,
        )
        state = search.init(jax.random.PRNGKey(1), batches[0]["image"][:2])
        alpha0 = state.alpha
        chex.clear_trace_counter()  # the counter is per place in the source, not per search
        step = jax.jit(chex.assert_max_traces(search.step, n=1))
        history = []
        for i in range(n):
            state, metrics = step(state, batches[2 * i], batches[2 * i + 1])
            history.append((jax.device_get(state.alpha), metrics))
        results[fuse] = (jax.device_get(state), [m for _, m in history])
        chex.assert_trees_all_close(history[1][0], alpha0)  # warm-up: alpha unchanged
        assert np.abs(history[2][0]["normal"] - alpha0["normal"]).max() > 1e-4
        if skip_warmup:  # the skipped phase computes no alpha gradient
            assert float(history[0][1]["grad_norm_alpha"]) == 0.0
        for m in results[fuse][1]:
            for k in ("train_loss", "val_loss"):
                assert np.isfinite(float(m[k])), k
    (fused, m_fused), (two, m_two) = results[True], results[False]
    chex.assert_trees_all_close(fused, two, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(m_fused, m_two, rtol=1e-5, atol=1e-6)


def test_weights_first_needs_first_order():
    with pytest.raises(ValueError, match="first-order"):
        oneshot.OneShotSearch(
            **{f: None for f in ("model", "init_alpha", "arch_fn", "eval_arch_fn", "w_tx", "a_tx")},
            lr_fn=None,
            hypergradient="fd",
            weights_first=True,
        )


def test_every_gradient_strategy_is_registered_with_its_configs():
    names = STRATEGIES.names(kind="gradient")
    assert {"darts", "gdas", "pcdarts", "pdarts", "snas"} <= set(names)
    for name in names:
        strategy = oneshot.gradient_strategy(name)
        assert strategy.title and strategy.configs, name
        for module in strategy.configs.values():
            config = importlib.import_module(f"experiments.configs.{module}").get_config()
            assert config.strategy == name, module
    assert oneshot.gradient_strategy("pdarts").staged
    assert not oneshot.gradient_strategy("darts").staged


def test_from_config_reads_the_config_sections():
    from experiments.configs import pcdarts_cifar10

    config = pcdarts_cifar10.get_config()
    config.search.arch_start_epoch = 3
    config.search.hypergradient = "exact"
    search = oneshot.OneShotSearch.from_config(
        config,
        steps_per_epoch=7,
        model=None,
        init_alpha=None,
        arch_fn=None,
        eval_arch_fn=None,
    )
    assert search.arch_start_step == 21
    assert search.hypergradient == "exact"
    assert search.weight_decay == config.optim_w.weight_decay
    assert search.momentum == config.optim_w.momentum
    assert float(search.lr_fn(0)) == pytest.approx(config.optim_w.lr)


def test_space_comes_from_the_config():
    from experiments.configs import darts_tiny

    config = darts_tiny.get_config()
    space = oneshot.space_from_config(config)
    assert space.name == "darts" and (space.C, space.layers) == (4, 3)
    config.space = {"name": "nb201"}
    with pytest.raises(ValueError, match="no supernet"):
        oneshot.space_from_config(config)
