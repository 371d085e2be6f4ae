"""Tests of the discrete strategies: random search, aging evolution, REINFORCE, local search."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import nb201_tiny
from jnas.registry import UnknownNameError
from jnas.spaces import discrete, nb201
from jnas.spaces.discrete import Categorical, DecisionSpec
from jnas.spaces.nasrl import NasRLSpace
from jnas.strategies import controller
from jnas.strategies.base import STRATEGIES, check_reward, check_rewards, make_strategy
from jnas.strategies.evolution import Evolution
from jnas.strategies.local_search import LocalSearch
from jnas.strategies.random_search import RandomSearch
from jnas.strategies.reinforce import Reinforce, ReinforceParams, policy_loss

ONE = DecisionSpec((Categorical("op", ("a", "b", "c")),))
# The tiny experiment's strategy settings: tests that share them share jit's compilations.
TINY = nb201_tiny.get_config()
NAMES = ("random", "evolution", "reinforce", "local_search")


def test_registry_and_from_config_split_static_options_from_params():
    assert set(NAMES) <= set(STRATEGIES.names(kind="discrete"))
    assert STRATEGIES.get("evolution") is Evolution
    with pytest.raises(UnknownNameError, match="bayes.*known:.*evolution"):
        make_strategy("bayes", nb201.SPEC, 1)
    strategy, params = make_strategy("reinforce", nb201.SPEC, 4, TINY.reinforce)
    assert strategy == Reinforce(nb201.SPEC, population_size=4, hidden_size=8)
    assert isinstance(params, ReinforceParams)
    np.testing.assert_allclose(
        [params.learning_rate, params.baseline_decay, params.entropy_weight], [0.01, 0.9, 0.0]
    )
    assert params.learning_rate.dtype == jnp.float32
    evo, _ = Evolution.from_config(nb201.SPEC, 2, {"pool_size": 5, "sample_size": 2})
    assert (evo.population_size, evo.pool_size, evo.sample_size) == (2, 5, 2)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['batch_size'\].*hidden_size"):
        make_strategy("reinforce", nb201.SPEC, 1, {"batch_size": 2})
    with pytest.raises(ValueError, match="population_size is not a strategy option"):
        make_strategy("evolution", nb201.SPEC, 1, {"population_size": 10})
    with pytest.raises(ValueError, match="baseline_decay"):
        make_strategy("reinforce", nb201.SPEC, 1, {"baseline_decay": 1.0})
    with pytest.raises(ValueError, match=">= 1"):
        Evolution(nb201.SPEC, population_size=0)


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


def test_members_are_drawn_from_fold_in_of_the_key():
    strategy = RandomSearch(nb201.SPEC, population_size=5)
    state = strategy.init(jax.random.key(0))
    archs, _ = jax.jit(strategy.ask)(jax.random.key(3), state, strategy.default_params)
    for i in range(5):
        expected = discrete.sample_uniform(nb201.SPEC, jax.random.fold_in(jax.random.key(3), i))
        np.testing.assert_array_equal(archs[i], expected)


def test_evolution_keeps_pool_size_and_drops_the_oldest_in_member_order():
    p, m = 5, 3
    strategy = Evolution(nb201.SPEC, population_size=m, pool_size=p, sample_size=2)
    params = strategy.default_params
    state = strategy.init(jax.random.key(0), params)
    ask, tell = jax.jit(strategy.ask), jax.jit(strategy.tell)
    told = []
    for r in range(5):
        archs, state = ask(jax.random.key(r), state, params)
        rewards = jnp.arange(r * m, (r + 1) * m) % 4  # fitness unrelated to age
        told.extend(np.asarray(archs))
        state, metrics = tell(state, archs, rewards.astype(jnp.float32), params)
        assert state.pool.shape == (p, 6)
        assert int(state.num_told) == int(metrics["num_told"]) == (r + 1) * m
    # Slots hold the last P told individuals (members pushed in order); 0..9 are gone.
    np.testing.assert_array_equal(np.sort(np.asarray(state.birth)), np.arange(10, 15))
    for slot, birth in enumerate(np.asarray(state.birth)):
        np.testing.assert_array_equal(state.pool[slot], told[birth])
        assert float(state.fitness[slot]) == birth % 4
    assert float(metrics["best_in_pool"]) == 3.0


def test_evolution_mutates_the_best_of_a_tournament():
    """P=4, S=2 drawn with replacement: the k-th best is the parent w.p. ((5-k)^2-(4-k)^2)/16."""
    n = 1000
    strategy, params = make_strategy("evolution", nb201.SPEC, 4, TINY.evolution)
    assert (strategy.pool_size, strategy.sample_size) == (4, 2)
    state = strategy.init(jax.random.key(0), params)
    members = np.array([[0] * 6, [1] * 6, [2] * 6, [3] * 6])
    state, _ = strategy.tell(state, members, jnp.array([0.1, 0.9, 0.3, 0.2]), params)
    # One population of n proposals from the same pool.
    many = Evolution(nb201.SPEC, population_size=n, pool_size=4, sample_size=2)
    children, _ = jax.jit(many.ask)(jax.random.key(1), state, params)
    distance = (np.asarray(children)[:, None] != members[None]).sum(axis=2)
    nearest = np.sort(distance, axis=1)
    assert np.all(nearest[:, 0] == 1) and np.all(nearest[:, 1] >= 5)  # one member, mutated once
    counts = np.bincount(np.argmin(distance, axis=1), minlength=4)
    expected = np.array([1, 7, 5, 3]) / 16  # by fitness rank: 0.9 > 0.3 > 0.2 > 0.1
    np.testing.assert_allclose(counts / n, expected, atol=0.05)


def test_reinforce_gradient_equals_the_hand_formula():
    """dL/d(head bias) = -1/m sum_k (R_k - b) (onehot(a_k) - softmax(z)) for one decision."""
    params = controller.init(jax.random.key(0), ONE, hidden_size=4)
    actions = jnp.array([[0], [2], [2], [1]])
    rewards = jnp.array([0.9, 0.2, 0.4, 0.7])
    b = 0.5
    grad = jax.jit(jax.grad(policy_loss, has_aux=True), static_argnums=4)
    grads, ent = grad(params, actions, rewards, b, ONE, 0.0)
    z = controller.logits(params, actions[0], ONE)[0, :3]
    p = np.asarray(jax.nn.softmax(z))
    onehot = np.eye(3)[np.asarray(actions[:, 0])]
    expected = -np.mean((np.asarray(rewards) - b)[:, None] * (onehot - p), axis=0)
    np.testing.assert_allclose(grads["head_bias"][0, :3], expected, rtol=1e-5, atol=1e-7)
    # The entropy bonus adds -beta dH/dz, with dH/dz_i = -p_i (log p_i + H).
    h = -np.sum(p * np.log(p))
    np.testing.assert_allclose(ent, h, rtol=1e-5)
    grads_b, _ = grad(params, actions, rewards, b, ONE, 0.1)
    np.testing.assert_allclose(
        grads_b["head_bias"][0, :3], expected + 0.1 * p * (np.log(p) + h), rtol=1e-4, atol=1e-6
    )


def test_reinforce_tell_is_one_adam_step_per_population_and_the_baseline_an_ema():
    strategy, params = make_strategy(
        "reinforce", ONE, 2, {"learning_rate": 0.01, "baseline_decay": 0.8, "hidden_size": 4}
    )
    state = strategy.init(jax.random.key(0), params)
    tell = jax.jit(strategy.tell)
    adam = optax.adam(0.01)

    @jax.jit
    def adam_step(theta, opt, actions, batch, baseline):
        g, ent = jax.grad(policy_loss, has_aux=True)(theta, actions, batch, baseline, ONE)
        upd, opt = adam.update(g, opt, theta)
        return optax.apply_updates(theta, upd), opt, ent

    b, theta, opt = None, state.params, adam.init(state.params)
    for r, batch in enumerate([[0.5, 0.7], [0.2, 0.9], [0.4, 0.4]]):
        actions = jnp.array([[r % 3], [(r + 1) % 3]])
        batch = np.array(batch, np.float32)
        state, metrics = tell(state, actions, batch, params)
        used = batch.mean() if b is None else b  # the first batch is its own baseline
        theta, opt, ent = adam_step(theta, opt, actions, batch, used)
        b = 0.8 * used + 0.2 * batch.mean()
        np.testing.assert_allclose(float(state.baseline), b, rtol=1e-6)
        np.testing.assert_allclose(float(metrics["baseline"]), b, rtol=1e-6)
        np.testing.assert_allclose(float(metrics["entropy"]), float(ent), rtol=1e-6)
        assert int(state.num_updates) == r + 1 and int(state.num_told) == 2 * (r + 1)
        chex.assert_trees_all_close(state.params, theta, rtol=1e-5, atol=1e-7)


# --- The one-at-a-time algorithms, as they are specified (population 1 must equal them). ---


def _old_evolution(spec, pool, sample):
    def init():
        return dict(
            population=jnp.zeros((pool, spec.length), jnp.int32),
            fitness=jnp.full((pool,), -jnp.inf, jnp.float32),
            birth=jnp.full((pool,), -1, jnp.int32),
            num_told=jnp.zeros((), jnp.int32),
        )

    def ask(s, key):
        k_random, k_sample, k_mutate = jax.random.split(key, 3)
        random_arch = discrete.sample_uniform(spec, k_random)
        idx = jax.random.randint(k_sample, (sample,), 0, pool)
        parent = idx[jnp.argmax(s["fitness"][idx])]
        child = discrete.mutate(spec, k_mutate, s["population"][parent])
        return jnp.where(s["num_told"] < pool, random_arch, child)

    def tell(s, arch, reward):
        slot = s["num_told"] % pool
        return dict(
            population=s["population"].at[slot].set(arch),
            fitness=s["fitness"].at[slot].set(reward),
            birth=s["birth"].at[slot].set(s["num_told"]),
            num_told=s["num_told"] + 1,
        )

    return init, jax.jit(ask), jax.jit(tell)


def _old_reinforce(spec, hidden, lr, decay):
    adam = optax.adam(lr)

    def init(key):
        theta = controller.init(key, spec, hidden)
        return dict(theta=theta, opt=adam.init(theta), baseline=jnp.float32(0), n=0)

    def ask(s, key):
        return controller.sample(s["theta"], key, spec)[0]

    @jax.jit
    def step(theta, opt, arch, reward, baseline):
        g, _ = jax.grad(policy_loss, has_aux=True)(theta, arch[None], reward[None], baseline, spec)
        upd, opt = adam.update(g, opt, theta)
        return optax.apply_updates(theta, upd), opt

    def tell(s, arch, reward):
        reward = jnp.float32(reward)
        baseline = s["baseline"] if s["n"] > 0 else reward
        theta, opt = step(s["theta"], s["opt"], arch, reward, baseline)
        return dict(theta=theta, opt=opt, baseline=decay * baseline + (1 - decay) * reward,
                    n=s["n"] + 1)  # fmt: skip

    return init, ask, tell


def _toy_reward(arch):
    return jnp.mean(jnp.asarray(arch) == 3, axis=-1).astype(jnp.float32)


@pytest.mark.slow  # every strategy against its one-at-a-time form (14 s cold)
def test_population_of_one_equals_the_one_at_a_time_algorithms():
    """Member 0 of round t uses fold_in(key_t, 0): the old algorithms get that key."""
    spec = nb201.SPEC
    evo = Evolution(spec, population_size=1, pool_size=4, sample_size=2)
    rl, rl_params = make_strategy("reinforce", spec, 1, TINY.reinforce)
    old_evo, old_rl = _old_evolution(spec, 4, 2), _old_reinforce(spec, 8, 0.01, 0.9)
    e_state, r_state = evo.init(jax.random.key(0)), rl.init(jax.random.key(0), rl_params)
    oe, orl = old_evo[0](), old_rl[0](jax.random.key(0))
    e_ask, e_tell = jax.jit(evo.ask), jax.jit(evo.tell)
    r_ask, r_tell = jax.jit(rl.ask), jax.jit(rl.tell)
    for t in range(12):
        key = jax.random.key(100 + t)
        member = jax.random.fold_in(key, 0)
        archs, e_state = e_ask(key, e_state, None)
        arch = old_evo[1](oe, member)
        np.testing.assert_array_equal(archs[0], arch)
        e_state, _ = e_tell(e_state, archs, _toy_reward(archs), None)
        oe = old_evo[2](oe, arch, _toy_reward(arch))
        np.testing.assert_array_equal(e_state.pool, oe["population"])
        np.testing.assert_array_equal(e_state.fitness, oe["fitness"])
        np.testing.assert_array_equal(e_state.birth, oe["birth"])

        archs, r_state = r_ask(key, r_state, rl_params)
        arch = old_rl[1](orl, member)
        np.testing.assert_array_equal(archs[0], arch)
        r_state, _ = r_tell(r_state, archs, _toy_reward(archs), rl_params)
        orl = old_rl[2](orl, arch, _toy_reward(arch))
        chex.assert_trees_all_close(r_state.params, orl["theta"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(r_state.baseline, orl["baseline"], rtol=1e-6)


def _run(strategy, params, steps, key):
    """A whole toy search (ask / reward / tell) as one scan; returns the final state."""
    state = strategy.init(jax.random.key(0), params)

    def step(state, t):
        archs, state = strategy.ask(jax.random.fold_in(key, t), state, params)
        state, metrics = strategy.tell(state, archs, _toy_reward(archs), params)
        return state, metrics["baseline"]

    return jax.lax.scan(step, state, jnp.arange(steps))


def test_reinforce_params_vmap_and_do_not_recompile():
    strategy, params = make_strategy("reinforce", nb201.SPEC, 2, TINY.reinforce)
    lrs = jnp.array([0.003, 0.05], jnp.float32)
    batched = params.replace(learning_rate=lrs)
    run = jax.jit(lambda p: _run(strategy, p, 6, jax.random.key(1)))
    axes = ReinforceParams(learning_rate=0, baseline_decay=None, entropy_weight=None)
    both = jax.vmap(run, in_axes=(axes,))(batched)
    for i in range(2):
        one = run(params.replace(learning_rate=lrs[i]))
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], both), one, rtol=1e-5, atol=1e-6)
    assert not np.allclose(both[0].params["head_bias"][0], both[0].params["head_bias"][1])
    # A new value of any param traces ask / tell once.
    ask = jax.jit(chex.assert_max_traces(strategy.ask, n=1))
    tell = jax.jit(chex.assert_max_traces(strategy.tell, n=1))
    state = strategy.init(jax.random.key(0), params)
    for lr, decay, beta in [(0.01, 0.9, 0.0), (0.1, 0.5, 0.01), (1e-4, 0.0, 0.2)]:
        p = params.replace(
            learning_rate=jnp.float32(lr), baseline_decay=jnp.float32(decay),
            entropy_weight=jnp.float32(beta),
        )  # fmt: skip
        archs, state = ask(jax.random.key(2), state, p)
        state, _ = tell(state, archs, _toy_reward(archs), p)


def test_reinforce_improves_the_controller_on_a_toy_reward():
    """Reward: the fraction of the 6 edges that pick op 3. The controller should learn it."""
    strategy, params = make_strategy("reinforce", nb201.SPEC, 1, TINY.reinforce)
    state = strategy.init(jax.random.key(0), params)
    ask, tell = jax.jit(strategy.ask), jax.jit(strategy.tell)
    rewards = []
    for t in range(150):
        archs, state = ask(jax.random.key(t), state, params)
        rewards.append(float(_toy_reward(archs)[0]))
        state, _ = tell(state, archs, _toy_reward(archs), params)
    assert np.mean(rewards[:20]) < 0.4  # about 1/5 at first
    assert np.mean(rewards[-30:]) > 0.7


def test_local_search_moves_to_the_first_better_neighbour_and_restarts_at_an_optimum():
    spec = DecisionSpec(tuple(Categorical(f"d{i}", tuple(range(3))) for i in range(3)))
    target = np.array([2, 0, 1])
    reward = lambda a: jnp.mean(jnp.asarray(a) == target, axis=-1).astype(jnp.float32)
    strategy = LocalSearch(spec, population_size=1)
    assert strategy.num_neighbours == 6
    state = strategy.init(jax.random.key(0))
    ask, tell = jax.jit(strategy.ask), jax.jit(strategy.tell)
    current, asked_here, optima = None, [], 0
    for t in range(60):
        archs, state = ask(jax.random.key(t), state, None)
        arch = np.asarray(archs[0])
        if current is not None:  # a neighbour of the current architecture, never asked twice
            assert (arch != current).sum() == 1
            assert not any(np.array_equal(arch, a) for a in asked_here)
            asked_here.append(arch)
        r = float(reward(arch))
        state, metrics = tell(state, archs, reward(archs), None)
        if current is None:  # a (re)start: the search stands on the random architecture
            current, asked_here = arch, []
        elif r > float(reward(current)):  # the first better neighbour: move
            current, asked_here = arch, []
        elif len(asked_here) == 6:  # a local optimum (here the global one): restart
            assert float(reward(current)) == 1.0
            current, optima = None, optima + 1
        if current is not None:
            np.testing.assert_array_equal(state.current, current)
        assert bool(state.has_current) == (current is not None)
        assert int(metrics["num_restarts"]) == optima
    assert optima >= 2


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_reward_raises_on_the_host_and_is_ignored_in_jit(name):
    strategy, params = make_strategy(name, nb201.SPEC, 2, TINY.get(name))
    state = strategy.init(jax.random.key(0), params)
    archs, state = jax.jit(strategy.ask)(jax.random.key(1), state, params)
    tell = jax.jit(strategy.tell)
    state, _ = tell(state, archs, jnp.array([0.5, 0.6]), params)
    for bad in [float("nan"), float("inf"), np.float32("nan")]:
        with pytest.raises(ValueError, match="finite"):
            check_rewards([0.5, bad], 2)
        same, _ = tell(state, archs, jnp.array([0.5, bad], jnp.float32), params)  # no raise
        chex.assert_trees_all_equal(same, state)
    with pytest.raises(ValueError, match="single number"):
        check_reward([0.1, 0.2])
    with pytest.raises(ValueError, match="2 rewards for a population of 3"):
        check_rewards([0.1, 0.2], 3)
    assert int(state.num_told) == 2
