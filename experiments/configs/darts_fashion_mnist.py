r"""The quickstart: a real DARTS search on Fashion-MNIST on a CPU, then a retraining of its cell.

  python -m experiments.search --config=experiments/configs/darts_fashion_mnist.py \
      --workdir=runs/quickstart

Reads Fashion-MNIST offline from Debian's `dataset-fashion-mnist` package (or tfds).

1. Search (first-order DARTS, the paper's ops, optimizers and alpha step): a 5-cell, C=8
   supernet on 2x1,280 training images (the search-train and search-val halves), batch 32,
   2 epochs (80 steps), then the genotype is derived as in the paper.
2. Retraining (``config.retrain``, an evaluation config as for ``experiments.train``): the
   derived cell in a 5-cell, C=12 evaluation network, trained from scratch for two epochs on
   40,000 of the 60,000 training images (624 steps at batch 128, SGD momentum 0.9, cosine lr from 0.1,
   no augmentation: a short budget learns faster without it), then tested on the 10,000 test
   images.

Measured figures (time on the 2-core CPU, test accuracy) are in README.md. Resume works for
both parts: rerunning the command continues the search, or the retraining if the search had
finished. Either part can be changed from the command line, e.g.
``--config.search.epochs=4`` or ``--config.retrain.train.epochs=2``.
"""

from experiments.configs import darts_cifar10, eval_fashion_mnist


def retrain_config():
    """The quickstart's retraining: short, on a small evaluation network."""
    config = eval_fashion_mnist.get_config()
    config.enabled = True
    config.genotype = "search"  # replaced by the found genotype
    config.data.limit = 40_000  # of the 60,000 training images
    config.data.cutout_length = 0
    config.data.crop_padding = 0
    config.data.flip = False
    config.model.C = 12
    config.model.layers = 5
    config.optim.lr = 0.1
    config.train.epochs = 2  # the cosine's second half lifts test accuracy most
    config.train.batch_size = 128
    config.train.eval_batch_size = 500
    config.checkpoint_every_steps = 100
    return config


def get_config(arg: str | None = None):
    """The quickstart (search, then retraining); ``arg == "retrain"``: the retraining alone.

    ``--config=experiments/configs/darts_fashion_mnist.py:retrain`` gives
    :func:`retrain_config` as an ``experiments.train`` config (pass ``--config.genotype``).
    """
    if arg == "retrain":
        config = retrain_config()
        config.genotype = "DARTS_V2"  # the reference cell; --config.genotype picks another
        return config
    if arg is not None:
        raise ValueError(f"darts_fashion_mnist.py takes no argument or 'retrain', got {arg!r}")
    config = darts_cifar10.get_config()
    config.seed = 0
    config.data.name = "fashion_mnist"
    config.data.limit = 2_560
    config.model.C = 8
    config.model.layers = 5
    config.search.epochs = 2
    config.search.batch_size = 32
    # No separate validation pass with running BN statistics (its compilation costs ~20 s);
    # the search-val loss and accuracy of every step are logged all the same.
    config.eval_every_epochs = 0
    config.eval_batch_size = 500
    config.checkpoint_every_steps = 20
    config.log_every_steps = 10
    config.retrain = retrain_config()
    return config


def with_quickstart_budget(config):
    """Give another method's config this quickstart's data, network size, budget and retraining."""
    quick = get_config()
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
