r"""A tiny BOHB-over-morphisms search for tests: ``morphism_bo_tiny`` with Hyperband's
brackets over budgets of 1 and 2 epochs (eta 2).

python -m experiments.search --config=experiments/configs/morphism_bohb_tiny.py --workdir=/tmp/t

One cycle (3 rounds): bracket s=1 asks 2 new networks at 1 epoch and promotes the better to
2 epochs; bracket s=0 asks 2 new networks at 2 epochs. With the start network (2 epochs): 6
trainings of 5 networks.
"""

from experiments.configs import morphism_bo_tiny


def get_config():
    config = morphism_bo_tiny.get_config()
    config.search.schedule = "hyperband"
    config.child.epochs = 2
    config.search.rounds = 3
    for section in (config.hyperband, config.successive_halving):
        section.min_budget, section.max_budget, section.eta = 1.0, 2.0, 2.0
    return config
