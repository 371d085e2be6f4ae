r"""The quickstart: a real DARTS search on Fashion-MNIST on a CPU, then a retraining of its cell.

  python -m experiments.search --config=experiments/configs/darts_fashion_mnist.py \
      --workdir=runs/quickstart
  python -m experiments.train --config=experiments/configs/darts_fashion_mnist.py:retrain \
      --config.genotype=DARTS_V2 --workdir=runs/v2     # the retraining alone, any cell

Reads Fashion-MNIST offline from Debian's `dataset-fashion-mnist` package (or tfds).

1. Search (first-order DARTS, the paper's ops and alpha optimizer): a 5-cell, C=8 supernet
   on 2x1,280 training images (the search-train and search-val halves), batch 32, 2 epochs
   (80 steps), then the genotype is derived as in the paper. Two settings differ from the
   paper's, both for this short budget: the first epoch (40 steps) trains the weights only
   (``search.arch_start_epoch = 1``, PC-DARTS's warm-up), and the weights' SGD starts at lr
   0.1 (cosine to 0.001) instead of 0.025.
2. Retraining (``config.retrain``, an evaluation config as for ``experiments.train``): the
   derived cell in a 5-cell, C=12 evaluation network, trained from scratch for two epochs on
   30,000 of the 60,000 training images (468 steps at batch 128, SGD momentum 0.9, cosine lr
   from 0.1, no augmentation: a short budget learns faster without it), then tested once on
   the 10,000 test images (no test pass after the first epoch, no best-checkpoint copy).

Why the warm-up and the larger weight lr. In the supernet each conv's weights get 1/8 of the
gradient (its softmax weight), so after 80 steps at lr 0.025 they are barely trained, and
the architecture gradient favours the parameter-free ops: the paper's settings find a normal
cell of eight pools (7 max, 1 avg; seed 0, 2026-12-04). Search-only runs of this config on
the 2-core CPU (``--config.retrain.enabled=False``, fresh workdirs, 2026-12-07, machine
loaded by other jobs, load average 9-14; normal cell, seed 0 unless said):

* warm-up only (lr 0.025): 7 max pools and 1 dil_conv_5x5;
* warm-up and lr 0.1 (this config): seed 0: 5 max pools, 2 sep_conv_5x5 and 1 dil_conv_5x5
  (the reduction cell all convolutions); seed 1: 3 sep_conv_3x3, sep_conv_5x5,
  dil_conv_5x5, 2 max pools, 1 skip_connect; seed 2: 2 sep_conv_5x5, dil_conv_5x5, 4 max
  pools, 1 avg pool. Three to five convolutions in every seed;
* the same with a third epoch (120 steps, weights only for two): 4 max pools, 1 avg pool,
  sep_conv_5x5, sep_conv_3x3, dil_conv_5x5; no more convolutions for 50 % more search.

The search costs the same as without them (80 steps; the warm-up steps still compute the
alpha gradient and mask its update). Measured figures of the whole quickstart (time, test
accuracy) are in README.md. Resume works for both parts: rerunning the command continues the
search, or the retraining if the search had finished. Either part can be changed from the
command line, e.g. ``--config.search.epochs=4`` or ``--config.retrain.train.epochs=2``.
"""

from experiments.configs import darts_cifar10, eval_fashion_mnist


def retrain_config():
    """The quickstart's retraining: short, on a small evaluation network."""
    config = eval_fashion_mnist.get_config()
    config.enabled = True
    config.genotype = "search"  # replaced by the found genotype
    config.data.limit = 30_000  # of the 60,000 training images
    config.data.cutout_length = 0
    config.data.crop_padding = 0
    config.data.flip = False
    config.model.C = 12
    config.model.layers = 5
    config.optim.lr = 0.1
    config.train.epochs = 2  # the cosine's second half lifts test accuracy most
    config.train.batch_size = 128
    config.train.eval_batch_size = 500
    config.train.eval_every_epochs = 0  # test once, at the end
    config.keep_best = False  # a best-on-test copy would select on the test set
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
    # Weights only for the first epoch, and a larger weight lr: the convolutions train enough
    # for the architecture step to keep some (the module docstring has the measurements).
    config.search.arch_start_epoch = 1
    config.optim_w.lr = 0.1
    # No separate validation pass with running BN statistics (its compilation costs ~20 s);
    # the search-val loss and accuracy of every step are logged all the same.
    config.eval_every_epochs = 0
    config.eval_batch_size = 500
    config.checkpoint_every_steps = 20
    config.log_every_steps = 10
    config.retrain = retrain_config()
    return config


def with_quickstart_budget(config):
    """Give another method's config this quickstart's data, network size, budget and retraining.

    The method keeps its own optimizers and architecture schedule (the quickstart's warm-up
    and weight lr are DARTS's settings for this budget, not part of the budget).
    """
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
