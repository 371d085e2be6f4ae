r"""Bayesian optimisation over network morphisms (Auto-Keras, Jin, Song & Hu, KDD 2019) on
Fashion-MNIST, sized for a CPU: a few minutes on the shared 2-core machine.

  python -m experiments.search --config=experiments/configs/morphism_bo_fashion_mnist.py \
      --workdir=runs/mbo [--config.strategy=morphism_walk|graph_random] \
      [--config.search.rounds=20]
  python -m experiments.train --config=experiments/configs/morphism_bo_fashion_mnist.py \
      --config.retrain.search_workdir=runs/mbo --workdir=runs/mbo_retrain

The strategy (`jnas.strategies.morphism_bo`) proposes one child per round by the tree-structured
search with simulated annealing over sequences of morphisms of the trained networks, valued by
the upper confidence bound of a GP on the Auto-Keras edit distance (Bourgain-embedded); the
child inherits its parent's trained weights through the morphisms and trains for
`child.epochs` epochs on the search-train half of the first `data.limit` training images; its
accuracy on the other half is the reward (`jnas.runner.morphism`). `morphism_walk` (a random
trained parent, one random edit) and `graph_random` (random graphs of the same space, trained
from scratch) are the baselines on the same budget. Rerunning the command resumes; every
trained network is in `history.jsonl` with its parent, edits, accuracy and costs, and its
variables in `checkpoints/` (step id + 1).

As Auto-Keras 0.3.7: beta 2.576, t_min 1e-4 with decay 0.9, 8 neighbours per expansion,
lambda 1.0; its start network (CnnGenerator: conv blocks with pooling, global pooling, a dense
layer) scaled down to 16 filters. Reduced for a CPU: 1,000 + 1,000 images, 2 epochs per child
(Auto-Keras trains each child until its loss stops improving, up to 200 epochs), 10 rounds.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.strategy = "morphism_bo"  # morphism_bo | morphism_walk | graph_random
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.name = "fashion_mnist"
    config.data.data_dir = config_dict.placeholder(str)
    config.data.source = "auto"  # auto | tfds | idx
    config.data.train_portion = 0.5  # search-train / search-val split of the train set
    config.data.limit = 2_000  # the first `limit` training images (0: all)
    config.data.test_limit = 2_000  # test images for search.test_best and the retraining

    # The graph space (jnas.spaces.graph): the start network and the size limits.
    config.space = ml_collections.ConfigDict()
    config.space.name = "graph"
    config.space.start = (
        "c0=conv3x16<-input; p0=maxpool<-c0; c1=conv3x16<-p0; p1=maxpool<-c1; "
        "c2=conv3x16<-p1; p2=maxpool<-c2; g0=gpool<-p2; d0=dense16<-g0"
    )
    config.space.max_layers = 24
    config.space.max_params = 150_000
    config.space.num_classes = 10
    config.space.input_channels = 1
    config.space.kernels = (1, 3, 5)
    config.space.random_edits = 8  # graph_random: 0..8 random morphisms of the start network

    # Each child's training (jnas.spaces.child.ChildTrainConfig) and fidelity.
    config.child = ml_collections.ConfigDict()
    config.child.epochs = 2
    config.child.batch_size = 64
    config.child.learning_rate = 0.05
    config.child.momentum = 0.9
    config.child.weight_decay = 1e-4
    config.child.eval_batch_size = 500
    config.child.num_classes = 0  # 0: the data set's

    config.search = ml_collections.ConfigDict()
    config.search.rounds = 10  # after round 0, which trains the start network
    config.search.children_per_round = 1
    config.search.num_devices = 0  # devices children are spread over (0: all local devices)
    config.search.workers = 0  # threads training children (0: one per device)
    config.search.time_budget_s = config_dict.placeholder(float)  # stop starting rounds after
    config.search.test_best = True  # test the best network (its searched weights) at the end
    # None: every child at the full fidelity of config.child; "hyperband" or
    # "successive_halving": brackets of budgets (jnas.strategies.morphism_hyperband), with the
    # options of the section of that name below. morphism_bo + hyperband: BOHB over
    # morphisms (experiments/configs/morphism_bohb_fashion_mnist.py).
    config.search.schedule = config_dict.placeholder(str)

    # The learning-curve stop (jnas.estimation.curves, Domhan et al., IJCAI 2015): stop a child
    # after an epoch when its curve gives it a probability below `threshold` (the paper's
    # 0.05) of beating the best reward of the earlier rounds (with a schedule: at its budget).
    config.early_stop = ml_collections.ConfigDict(
        dict(enabled=False, threshold=0.05, min_points=3, noise_floor=0.005)
    )

    # Each strategy's options (the one named by config.strategy is used).
    config.morphism_bo = ml_collections.ConfigDict(
        dict(kernel_lambda=1.0, beta=2.576, t_min=1e-4, decay=0.9, n_neighbours=8, noise=1e-6)
    )
    config.morphism_walk = ml_collections.ConfigDict(dict(num_edits=1, tries=50))
    config.graph_random = ml_collections.ConfigDict(dict(tries=50))

    # The schedules' options (used when config.search.schedule names one): HpBandSter's ladder
    # max_budget * eta^-k from min_budget (or an explicit `budgets`), what a budget counts
    # (epochs | num_steps | data_fraction), and how many evaluations a budget needs before the
    # strategy is fitted on it (else the largest budget with any; our choice, see the module).
    schedule = dict(
        min_budget=1.0, max_budget=4.0, eta=2.0, budget_resource="epochs", min_points_in_model=3
    )
    config.hyperband = ml_collections.ConfigDict(schedule)
    config.successive_halving = ml_collections.ConfigDict(schedule)
    config.successive_halving.num_configs = config_dict.placeholder(int)  # None: eta^s_max

    # python -m experiments.train with this config retrains a graph from scratch and tests it.
    config.retrain = ml_collections.ConfigDict()
    config.retrain.arch = ""  # a graph's text or a file; "": <search_workdir>/best_arch.txt
    config.retrain.search_workdir = ""
    config.retrain.epochs = 10
    config.retrain.train_limit = 10_000  # the first training images (0: all 60,000)

    config.progress = True
    return config
