r"""NAS-Bench-201, tabular: local search (White et al., UAI 2021) beside random search and
regularized evolution, 100 seeds, the protocol and budget of `nb201.py`.

  JNAS_NB201_PATH=/path/to/nb201.csv.gz \
    python -m experiments.tabular --config=experiments/configs/nb201_local_search.py

The strategy is `jnas.strategies.local_search` (registered as `local_search`; no options).
"""

from experiments.configs import nb201


def get_config():
    config = nb201.get_config()
    config.strategies = ("random", "evolution", "local_search")
    return config
