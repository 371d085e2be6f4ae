r"""GDAS on Fashion-MNIST with a reduced network, on a CPU (the DARTS quickstart's budget).

  python -m experiments.search --config=experiments/configs/gdas_fashion_mnist.py \
      --workdir=runs/gdas_fmnist

The quickstart's budget (``darts_fashion_mnist.py``: a 5-cell, C=8 supernet, 2x2,000
images, its batch size and epochs) with the GDAS recipe of ``gdas_cifar10.py`` (the
temperature falls from 10 in the first epoch to 0.1 in the last), followed, as the
quickstart, by a retraining of the found cell (``config.retrain``;
``--config.retrain.enabled=False`` skips it). A step computes one op per edge, so it is
several times faster than a DARTS step; most of the search's time is compilation.
"""

from experiments.configs import darts_fashion_mnist, gdas_cifar10


def get_config():
    config = gdas_cifar10.get_config()
    quick = darts_fashion_mnist.get_config()
    config.seed = quick.seed
    config.data = quick.data
    config.model.C = quick.model.C
    config.model.layers = quick.model.layers
    config.search.epochs = quick.search.epochs
    config.search.batch_size = quick.search.batch_size
    config.checkpoint_every_steps = quick.checkpoint_every_steps
    config.log_every_steps = quick.log_every_steps
    config.retrain = quick.retrain
    return config
