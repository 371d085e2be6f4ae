r"""The quickstart: a real DARTS search on Fashion-MNIST with a reduced network, on a CPU.

  python -m experiments.search --config=experiments/configs/darts_fashion_mnist.py \
      --workdir=runs/quickstart

Reads Fashion-MNIST offline from Debian's `dataset-fashion-mnist` package (or tfds).
Searches a 5-cell, C=8 supernet (first order) on 2x2,000 training images (the search-train
and search-val halves) for 2 epochs (62 steps at batch 64) and writes the derived genotype.
Measured on the 2-core CPU while other jobs loaded it (load 4-6): about 4.5 minutes to
compile the step, then about 8 s per step; unloaded, expect roughly half.
The retraining of the found cell that the quickstart should end with needs the evaluation
networks (experiments.train), which are not on main yet.
"""

from experiments.configs import darts_cifar10


def get_config():
    config = darts_cifar10.get_config()
    config.seed = 0
    config.data.name = "fashion_mnist"
    config.data.limit = 4_000
    config.model.C = 8
    config.model.layers = 5
    config.search.epochs = 2
    config.search.batch_size = 64
    config.eval_every_epochs = 2  # one validation pass with running BN statistics, at the end
    config.eval_batch_size = 500
    config.checkpoint_every_steps = 20
    config.log_every_steps = 10
    return config
