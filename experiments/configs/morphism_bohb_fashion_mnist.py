r"""BOHB over network morphisms on Fashion-MNIST: Hyperband's brackets (Li et al., JMLR 2018)
whose new networks ``morphism_bo`` proposes (Auto-Keras's GP on the edit distance, fitted on
the largest budget with enough evaluations, as BOHB fits its TPE), sized for a CPU.

  python -m experiments.search --config=experiments/configs/morphism_bohb_fashion_mnist.py \
      --workdir=runs/mbohb [--config.strategy=morphism_walk|graph_random] \
      [--config.search.schedule=successive_halving]

``morphism_bo_fashion_mnist.py`` with ``search.schedule = "hyperband"``: budgets of 1, 2 and
4 epochs (``min_budget`` 1, ``max_budget`` 4, ``eta`` 2); one cycle of brackets is 6 rounds
(rungs): 4 new networks at 1 epoch (the best 2 again at 2 epochs, the best of those at 4),
3 new at 2 epochs (the best at 4), 3 new at 4 epochs; with the start network (4 epochs),
15 trainings of 11 networks, 38 epochs against 44 for training the 11 for 4 epochs each.
A promoted network retrains from its parent's morphed weights at the larger budget
(``jnas.strategies.morphism_hyperband``). ``summary.json`` reports ``child_epochs`` and
``child_epochs_full``.
"""

from experiments.configs import morphism_bo_fashion_mnist


def get_config():
    config = morphism_bo_fashion_mnist.get_config()
    config.search.schedule = "hyperband"
    config.child.epochs = 4  # the full fidelity: the ladder's top (epochs are the budget)
    config.search.rounds = 6  # rungs: one cycle of Hyperband's brackets over 1, 2, 4 epochs
    config.hyperband.min_budget = 1.0
    config.hyperband.max_budget = 4.0
    config.hyperband.eta = 2.0
    config.hyperband.budget_resource = "epochs"
    return config
