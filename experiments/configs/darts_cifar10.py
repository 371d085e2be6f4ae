r"""DARTS search on CIFAR-10, the paper's setting (Liu et al., ICLR 2019, Sec. 3.1 / A.1).

Run (needs CIFAR-10 through tfds, i.e. internet on first use):

  python -m experiments.search --config=experiments/configs/darts_cifar10.py \
      --workdir=runs/darts_c10

Second order: ``--config.search.hypergradient=fd`` (the paper) or ``=exact`` (autodiff).
Data parallel over all local devices: ``--config.parallel=pmap``.

Expected (paper, Table 1): 1st order ~1.5 GPU-days, genotype close to DARTS_V1 and 3.00 +-
0.14 % test error after retraining; 2nd order ~4 GPU-days, 2.76 +- 0.09 %.
"""

import ml_collections

from jnas.ops.primitives import DARTS_PRIMITIVES


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.strategy = "darts"
    config.seed = 2  # the DARTS code's default seed

    config.data = ml_collections.ConfigDict()
    config.data.name = "cifar10"
    config.data.data_dir = ml_collections.config_dict.placeholder(str)
    config.data.source = "auto"  # auto | tfds | idx
    config.data.train_portion = 0.5  # search-train / search-val split of the train set
    config.data.limit = 0  # use only the first `limit` train images (0: all)
    config.data.crop_padding = 4
    config.data.flip = ml_collections.config_dict.placeholder(bool)  # None: data set default

    config.model = ml_collections.ConfigDict()
    config.model.C = 16
    config.model.layers = 8
    config.model.n_nodes = 4
    config.model.multiplier = 4
    config.model.stem_multiplier = 3
    config.model.primitives = DARTS_PRIMITIVES
    # Edges one by one (False) or the edges leaving a state as one vmapped group (True). On the
    # CPU one by one is faster and lighter (benchmarks/search_step.py, this network, batch 16,
    # before the native depthwise kernels: 4.1 s and 1.5 GB of XLA buffers vs 6.4 s and
    # 5.4 GB), because XLA sums the vmapped input gradients in one reduction fusion that
    # materialises every depthwise tap.
    config.model.vmap_edges = False
    # Each cell's edges as nn.scan loops over a buffer of its states (True): XLA compiles one
    # edge per loop, not 14. Paper network, first order, batch 16, idle 2-core CPU
    # (benchmarks/search_step.py --edges=scanned/looped, BUILD.md): compile 56 s instead of
    # 190 s, but each step 1.35x slower (the loop copies every edge's saved activations into
    # stacked buffers). Worth it for short runs; off for the paper's search.
    config.model.scan_edges = False
    config.model.remat = False  # rematerialise each cell (less memory, more compute)
    # The dtype the network computes in: "float32", or "bfloat16" (mixed precision: weights,
    # optimizer state, batch statistics and the loss stay float32; jnas/ops/precision.py).
    config.model.compute_dtype = "float32"

    config.optim_w = ml_collections.ConfigDict()
    config.optim_w.lr = 0.025
    config.optim_w.lr_min = 0.001
    config.optim_w.momentum = 0.9
    config.optim_w.weight_decay = 3e-4
    config.optim_w.grad_clip = 5.0

    config.optim_alpha = ml_collections.ConfigDict()
    config.optim_alpha.lr = 3e-4
    config.optim_alpha.b1 = 0.5
    config.optim_alpha.b2 = 0.999
    config.optim_alpha.weight_decay = 1e-3

    config.search = ml_collections.ConfigDict()
    config.search.epochs = 50
    config.search.batch_size = 64
    config.search.hypergradient = "first"  # first | fd (paper 2nd order) | exact
    config.search.alpha_init_scale = 1e-3
    config.search.arch_start_epoch = 0
    config.search.max_steps_per_epoch = 0  # 0: a full pass over the search-train half
    # First order: compile the alpha and weight phases as one scanned pass (half the compile
    # time, a little more compute); False runs them as two separately compiled passes.
    config.search.fuse_phases = True

    config.parallel = "none"  # none | pmap (data parallel over all local devices)
    config.eval_every_epochs = 1  # validation pass with running BN statistics
    config.eval_batch_size = 256
    config.checkpoint_every_steps = 200
    config.keep_checkpoints = 2
    config.log_every_steps = 50
    config.progress = True

    # A retraining of the found cell after the search (an evaluation config, as for
    # experiments.train); the quickstart turns it on.
    config.retrain = ml_collections.ConfigDict({"enabled": False})
    return config
