r"""ENAS macro search on Fashion-MNIST, reduced to finish in minutes on a 2-core CPU.

  python -m experiments.search --config=experiments/configs/enas_macro_fashion_mnist.py \
      --workdir=runs/enas_macro_fmnist

The official macro recipe (``enas_macro_cifar10.py``: its controller with the skip penalty,
optimizers and schedule) on a smaller problem: 6 layers of 12 filters, on 2 x 2,560
training images, batch 64, 4 epochs of 40 steps, each followed by 10 controller updates of
5 samples; the child lr is one cosine from 0.05 over the 4 epochs.
"""

from experiments.configs import enas_macro_cifar10


def get_config():
    config = enas_macro_cifar10.get_config()
    config.data.name = "fashion_mnist"
    config.data.train_portion = 0.5
    config.data.limit = 5120
    config.space.num_layers = 6
    config.space.out_filters = 12
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
