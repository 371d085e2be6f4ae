r"""A tiny Hyperband search over the NAS-RL space for tests: budgets of 1 and 3 epochs.

python -m experiments.search --config=experiments/configs/nasrl_hyperband_tiny.py --workdir=/tmp/t

The space of ``nasrl_tiny`` (32 architectures), 64 + 64 images, batch 16 (4 steps an epoch).
With eta 3 over the ladder 1, 3 one cycle is bracket s=1 (3 children at 1 epoch, the best
at 3) then bracket s=0 (2 children at 3 epochs): 6 rounds of one child.
"""

from experiments.configs import nasrl_hyperband_fashion_mnist, nasrl_tiny


def get_config():
    config = nasrl_hyperband_fashion_mnist.get_config()
    tiny = nasrl_tiny.get_config()
    config.data.limit = tiny.data.limit
    config.space = tiny.space
    config.child.batch_size = 16
    config.child.eval_batch_size = 64
    config.child.epochs = 3
    config.child.resolution = None  # the images' own 28x28
    config.search.rounds = 6
    config.hyperband.min_budget = 1.0
    config.hyperband.max_budget = 3.0
    config.early_stop.enabled = False
    config.early_stop.min_points = 2
    config.progress = False
    return config
