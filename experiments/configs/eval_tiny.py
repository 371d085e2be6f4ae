r"""A CPU-sized retraining for tests: DARTS_V2 in 3 cells at C=4, on 32x32 images.

  python -m experiments.train --config=experiments/configs/eval_tiny.py --workdir=/tmp/t

The tests pass synthetic arrays to ``jnas.runner.train.train(..., data=...)``; run from the
command line it trains on the first 128 Fashion-MNIST images (28x28, so no auxiliary head).
"""

from experiments.configs import eval_cifar10


def get_config():
    config = eval_cifar10.get_config()
    config.data.name = "fashion_mnist"
    config.data.limit = 128
    config.data.test_limit = 64
    config.data.cutout_length = 8
    config.model.C = 4
    config.model.layers = 3
    config.model.auxiliary = False
    config.train.epochs = 2
    config.train.batch_size = 16
    config.train.max_steps_per_epoch = 4
    config.train.eval_batch_size = 32
    config.checkpoint_every_steps = 3
    config.log_every_steps = 2
    config.progress = False
    return config
