r"""A CPU-sized DARTS search for tests: 3 cells, C=4, 16 steps on 256 images.

python -m experiments.search --config=experiments/configs/darts_tiny.py --workdir=/tmp/t
"""

from experiments.configs import darts_cifar10


def get_config():
    config = darts_cifar10.get_config()
    config.seed = 0
    config.data.name = "fashion_mnist"
    config.data.limit = 256
    config.model.C = 4
    config.model.layers = 3
    config.search.epochs = 2
    config.search.batch_size = 16
    config.eval_batch_size = 64
    config.checkpoint_every_steps = 3
    config.log_every_steps = 2
    config.progress = False
    return config
