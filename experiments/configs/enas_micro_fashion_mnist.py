r"""ENAS micro search on Fashion-MNIST, reduced to finish in minutes on a 2-core CPU.

  python -m experiments.search --config=experiments/configs/enas_micro_fashion_mnist.py \
      --workdir=runs/enas_micro_fmnist

The official recipe (``enas_micro_cifar10.py``: its controller, optimizers and schedule)
on a smaller problem: a 5-cell, C=8 supergraph (the comparison's supernet size,
``experiments.compare``) with the paper's 5-node cells, on 2 x 2,560 training images
(search-train and search-val halves, as the DARTS configs split them), batch 64, 4 epochs
of 40 steps, each followed by 10 controller updates of 5 samples; the child lr is one cosine
from 0.05 over the 4 epochs (T_0 = epochs: no restart in so short a run).
"""

from experiments.configs import enas_micro_cifar10


def get_config():
    config = enas_micro_cifar10.get_config()
    config.data.name = "fashion_mnist"
    config.data.train_portion = 0.5
    config.data.limit = 5120
    config.space.C = 8
    config.space.layers = 5
    config.search.epochs = 4
    config.search.batch_size = 64
    config.search.max_steps_per_epoch = 40
    config.optim_w.T_0 = 4
    config.controller.num_aggregate = 5
    config.controller.train_steps = 10
    config.eval_batch_size = 256
    config.checkpoint_every_steps = 40
    config.log_every_steps = 10
    return config
