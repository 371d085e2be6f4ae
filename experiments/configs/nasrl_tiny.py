r"""A CPU-sized NAS-RL search for tests: 2 layers of 4 filters, 8 training steps, 3 rounds of 3.

python -m experiments.search --config=experiments/configs/nasrl_tiny.py --workdir=/tmp/t

The space has 32 architectures (filter sizes {1, 3}, one filter count, one skip bit), so a
search of 9 asks meets some architecture twice: the history's reuse is exercised.
"""

from experiments.configs import nasrl_fashion_mnist


def get_config():
    config = nasrl_fashion_mnist.get_config()
    config.seed = 0
    config.data.limit = 128
    config.space.num_layers = 2
    config.space.filter_sizes = (1, 3)
    config.space.num_filters = (4,)
    config.child.num_steps = 8
    config.child.batch_size = 16
    config.child.eval_batch_size = 64
    config.search.rounds = 3
    config.search.children_per_round = 3
    config.evolution.pool_size = 4
    config.progress = False
    return config
