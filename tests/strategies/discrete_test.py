"""Tests of the discrete strategies: random search, aging evolution, REINFORCE, the registry."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import nb201_tiny
from jnas.spaces import discrete, nb201
from jnas.spaces.discrete import Categorical, DecisionSpec
from jnas.spaces.nasrl import NasRLSpace
from jnas.strategies import controller, discrete_registry, evolution, reinforce

ONE = DecisionSpec((Categorical("op", ("a", "b", "c")),))
# The tiny experiment's strategy settings: tests that share them share jit's compilations.
TINY = nb201_tiny.get_config()


def test_registry_names_and_unknown_name():
    assert set(discrete_registry.STRATEGIES) == {"random", "evolution", "reinforce"}
    assert discrete_registry.get("evolution") is evolution
    assert discrete_registry.name_of(reinforce) == "reinforce"
    with pytest.raises(ValueError, match="unknown discrete strategy 'bayes'"):
        discrete_registry.get("bayes")


@pytest.mark.parametrize(
    "spec", [nb201.SPEC, NasRLSpace(num_layers=4, predict_stride=True).spec], ids=["nb201", "nasrl"]
)
def test_uniform_sampling_and_mutation_of_exactly_one_decision(spec):
    keys = jax.random.split(jax.random.key(0), 4000)
    parents, children = jax.jit(
        jax.vmap(lambda k: (a := discrete.sample_uniform(spec, k), discrete.mutate(spec, k, a)))
    )(keys)
    parents, children = np.asarray(parents), np.asarray(children)
    for t, n in enumerate(spec.num_choices):  # every value of every position equally often
        freq = np.bincount(parents[:, t], minlength=n) / len(parents)
        np.testing.assert_allclose(freq, 1 / n, atol=0.03)
    np.testing.assert_array_equal((children != parents).sum(axis=1), 1)
    assert np.all(children < np.asarray(spec.num_choices)) and np.all(children >= 0)
    # Every position gets mutated some time.
    assert np.all((children != parents).any(axis=0))


def test_evolution_keeps_population_size_and_drops_the_oldest():
    p = 5
    state = evolution.init(jax.random.key(0), nb201.SPEC, {"population_size": p, "sample_size": 2})
    ask, tell = jax.jit(evolution.ask), jax.jit(evolution.tell)
    told = []
    for t in range(13):
        state, arch = ask(state, jax.random.key(t))
        told.append(np.asarray(arch))
        state = tell(state, arch, jnp.float32(t % 4))  # fitness unrelated to age
        assert state.population.shape == (p, 6)
        assert int(state.num_told) == t + 1
    # Slots hold the last P told individuals; the oldest ones (0..7) are gone, best or not.
    np.testing.assert_array_equal(np.sort(np.asarray(state.birth)), np.arange(8, 13))
    for slot, birth in enumerate(np.asarray(state.birth)):
        np.testing.assert_array_equal(state.population[slot], told[birth])
        assert float(state.fitness[slot]) == birth % 4


def test_evolution_mutates_the_best_of_a_tournament():
    """P=4, S=2 drawn with replacement: the k-th best is the parent w.p. ((5-k)^2-(4-k)^2)/16."""
    cfg = TINY.evolution
    assert (cfg.population_size, cfg.sample_size) == (4, 2)
    state = evolution.init(jax.random.key(0), nb201.SPEC, cfg)
    ask, tell = jax.jit(evolution.ask), jax.jit(evolution.tell)
    members = np.array([[0] * 6, [1] * 6, [2] * 6, [3] * 6])
    for arch, reward in zip(members, [0.1, 0.9, 0.3, 0.2], strict=True):
        state = tell(state, arch, reward)
    counts = np.zeros(4)
    n = 1000
    for k in range(n):
        _, child = ask(state, jax.random.key(k))
        distance = (np.asarray(child)[None] != members).sum(axis=1)
        assert sorted(distance.tolist())[:2] in ([1, 5], [1, 6])  # one member, mutated once
        counts[np.argmin(distance)] += 1
    expected = np.array([1, 7, 5, 3]) / 16  # by fitness rank: 0.9 > 0.3 > 0.2 > 0.1
    np.testing.assert_allclose(counts / n, expected, atol=0.05)


def test_reinforce_gradient_equals_the_hand_formula():
    """dL/d(head bias) = -1/m sum_k (R_k - b) (onehot(a_k) - softmax(z)) for one decision."""
    params = controller.init(jax.random.key(0), ONE, hidden_size=4)
    actions = jnp.array([[0], [2], [2], [1]])
    rewards = jnp.array([0.9, 0.2, 0.4, 0.7])
    b = 0.5
    grad = jax.jit(jax.grad(reinforce.policy_loss), static_argnums=4)
    grads = grad(params, actions, rewards, b, ONE, 0.0)
    z = controller.logits(params, actions[0], ONE)[0, :3]
    p = np.asarray(jax.nn.softmax(z))
    onehot = np.eye(3)[np.asarray(actions[:, 0])]
    expected = -np.mean((np.asarray(rewards) - b)[:, None] * (onehot - p), axis=0)
    np.testing.assert_allclose(grads["head_bias"][0, :3], expected, rtol=1e-5, atol=1e-7)
    # The entropy bonus adds -beta dH/dz, with dH/dz_i = -p_i (log p_i + H).
    ent = -np.sum(p * np.log(p))
    grads_b = grad(params, actions, rewards, b, ONE, 0.1)
    np.testing.assert_allclose(
        grads_b["head_bias"][0, :3], expected + 0.1 * p * (np.log(p) + ent), rtol=1e-4, atol=1e-6
    )


def test_reinforce_update_is_an_adam_step_and_the_baseline_an_ema():
    cfg = {"learning_rate": 0.01, "baseline_decay": 0.8, "batch_size": 2, "hidden_size": 4}
    state = reinforce.init(jax.random.key(0), ONE, cfg)
    tell = jax.jit(reinforce.tell)
    rewards = [0.5, 0.7, 0.2, 0.9, 0.4, 0.4]
    archs = [jnp.array([i % 3]) for i in range(6)]
    adam = optax.adam(0.01)

    @jax.jit
    def adam_step(params, opt, actions, batch, baseline):
        g = jax.grad(reinforce.policy_loss)(params, actions, batch, baseline, ONE)
        upd, opt = adam.update(g, opt, params)
        return optax.apply_updates(params, upd), opt

    b, params, opt = None, state.params, adam.init(state.params)
    for i, (arch, r) in enumerate(zip(archs, rewards, strict=True)):
        state = tell(state, arch, r)
        if i % 2 == 0:  # the first of a batch of m=2 is only buffered
            assert int(state.num_updates) == i // 2 and int(state.buffer_count) == 1
            continue
        batch = np.array(rewards[i - 1 : i + 1], np.float32)
        used = batch.mean() if b is None else b  # the first batch is its own baseline
        params, opt = adam_step(params, opt, jnp.stack(archs[i - 1 : i + 1]), batch, used)
        b = 0.8 * used + 0.2 * batch.mean()
        np.testing.assert_allclose(float(state.baseline), b, rtol=1e-6)
        assert int(state.num_updates) == (i + 1) // 2 and int(state.buffer_count) == 0
        jax.tree.map(
            lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7),
            state.params,
            params,
        )


def test_reinforce_improves_the_controller_on_a_toy_reward():
    """Reward: the fraction of the 6 edges that pick op 3. The controller should learn it."""
    state = reinforce.init(jax.random.key(0), nb201.SPEC, TINY.reinforce)
    ask, tell = jax.jit(reinforce.ask), jax.jit(reinforce.tell)
    rewards = []
    for t in range(150):
        state, arch = ask(state, jax.random.key(t))
        rewards.append(float(jnp.mean(arch == 3)))
        state = tell(state, arch, rewards[-1])
    assert np.mean(rewards[:20]) < 0.4  # about 1/5 at first
    assert np.mean(rewards[-30:]) > 0.7


@pytest.mark.parametrize("name", ["random", "evolution", "reinforce"])
def test_non_finite_reward_raises_on_the_host_and_is_ignored_in_jit(name):
    strategy = discrete_registry.get(name)
    state = strategy.init(jax.random.key(0), nb201.SPEC, TINY.get(name))
    state, arch = jax.jit(strategy.ask)(state, jax.random.key(1))
    state = discrete_registry.tell_checked(strategy, state, arch, 0.5)
    for bad in [float("nan"), float("inf"), np.float32("nan")]:
        with pytest.raises(ValueError, match="finite"):
            discrete_registry.tell_checked(strategy, state, arch, bad)
        same = jax.jit(strategy.tell)(state, arch, jnp.float32(bad))  # cannot raise in jit
        jax.tree.map(np.testing.assert_array_equal, same, state)
    with pytest.raises(ValueError, match="single number"):
        discrete_registry.check_reward([0.1, 0.2])
    assert int(state.num_told) == 1
