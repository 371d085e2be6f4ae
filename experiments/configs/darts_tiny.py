r"""A CPU-sized DARTS search for tests and the notebook's tiny mode: 3 cells, C=4, cells of 2
nodes over 4 ops (5 edges), 2 epochs of 4 steps on 256 images.

python -m experiments.search --config=experiments/configs/darts_tiny.py --workdir=/tmp/t

One compiled program serves every test that runs it (the runner, resume and integrity tests,
the notebook): keep their overrides to what the step does not compile (data directory,
checkpoint and log intervals), so the persistent compilation cache compiles it once. The
4-node, 14-edge, 8-op logic is tested without a supernet (tests/spaces).
"""

from experiments.configs import darts_cifar10

SMALL_OPS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")


def get_config():
    config = darts_cifar10.get_config()
    config.seed = 0
    config.data.name = "fashion_mnist"
    config.data.limit = 256
    config.model.C = 4
    config.model.layers = 3
    config.model.n_nodes = 2
    config.model.multiplier = 2
    config.model.primitives = SMALL_OPS
    config.search.epochs = 2
    config.search.batch_size = 16
    config.search.max_steps_per_epoch = 4
    config.eval_batch_size = 64
    config.checkpoint_every_steps = 3
    config.log_every_steps = 2
    config.progress = False
    return config
