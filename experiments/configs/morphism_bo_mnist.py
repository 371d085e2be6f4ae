r"""Bayesian optimisation over network morphisms on MNIST (the Fashion-MNIST config's settings).

  python -m experiments.search --config=experiments/configs/morphism_bo_mnist.py \
      --workdir=runs/mbo_mnist [--config.strategy=morphism_walk|graph_random]

MNIST is read from IDX files (``$JNAS_MNIST_DIR``, four ``*-ubyte.gz`` files) or a prepared
tfds directory (``--config.data.data_dir``); without either and without internet the run
stops at once with ``DatasetNotFoundError`` naming both ways to provide it (this project's
machines have no offline MNIST; Debian's ``dataset-fashion-mnist`` has only Fashion-MNIST).
"""

from experiments.configs import morphism_bo_fashion_mnist


def get_config():
    config = morphism_bo_fashion_mnist.get_config()
    config.data.name = "mnist"
    return config
