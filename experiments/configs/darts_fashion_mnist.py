r"""The quickstart: a real DARTS search on Fashion-MNIST with a reduced network, on a CPU.

  python -m experiments.search --config=experiments/configs/darts_fashion_mnist.py \
      --workdir=runs/quickstart

Reads Fashion-MNIST offline from Debian's `dataset-fashion-mnist` package (or tfds).
Searches a 5-cell, C=8 supernet (first order) on 2x5,000 training images for 4 epochs, then
retrains the derived cell (a 6-cell, C=16 network) from scratch on the full training set and
prints its test accuracy. Expected on a 2-core CPU: under 10 minutes in all, test accuracy
of the retrained cell about 0.88-0.90.
"""

from experiments.configs import darts_cifar10


def get_config():
    config = darts_cifar10.get_config()
    config.seed = 0
    config.data.name = "fashion_mnist"
    config.data.limit = 10_000
    config.model.C = 8
    config.model.layers = 5
    config.search.epochs = 4
    config.search.batch_size = 64
    config.checkpoint_every_steps = 50
    config.log_every_steps = 10
    config.retrain.epochs = 2
    config.retrain.C = 16
    config.retrain.layers = 6
    config.retrain.batch_size = 128
    config.retrain.lr = 0.05
    return config
