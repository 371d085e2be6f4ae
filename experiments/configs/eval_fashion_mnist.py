r"""Retrain DARTS_V2 at small width on Fashion-MNIST: the CPU-sized proof that retraining learns.

  python -m experiments.train --config=experiments/configs/eval_fashion_mnist.py \
      --workdir=runs/eval_fmnist

Reads Fashion-MNIST offline from Debian's `dataset-fashion-mnist` package (or tfds). The
DARTS recipe at a small size: 6 cells at C=16 on the 28x28 images (no auxiliary head: it
needs 8x8 features, this network's 2/3 cell gives 7x7), SGD momentum 0.9 with a cosine
learning rate from 0.05, weight decay 3e-4, gradient clip 5, crop (padding 2), flip and
cutout 8, batch 128, 2 epochs over the 60,000 training images; tested on the 10,000 test
images. Expected on a 2-core CPU: about 15-20 minutes including compilation, test accuracy
about 0.90 (see docs/retraining.md for the measured run).

A search's quickstart retrains its cell with this config:
``train(config, workdir, genotype=found)``; shorten it with ``config.train.epochs``,
``config.train.max_steps_per_epoch`` or ``config.data.limit``.
"""

from experiments.configs import eval_cifar10


def get_config():
    config = eval_cifar10.get_config()
    config.data.name = "fashion_mnist"
    config.data.cutout_length = 8
    config.model.C = 16
    config.model.layers = 6
    config.model.auxiliary = False
    config.optim.lr = 0.05
    config.train.epochs = 2
    config.train.batch_size = 128
    config.train.drop_path_prob = 0.0
    config.train.eval_batch_size = 500
    config.checkpoint_every_steps = 100
    config.log_every_steps = 20
    return config
