r"""NAS-Bench-201, tabular: local search (White et al., UAI 2021) beside random search and
regularized evolution, 100 seeds, the protocol and budget of `nb201.py`.

  JNAS_NB201_PATH=/path/to/nb201.csv.gz \
    python -m experiments.tabular --config=experiments/configs/nb201_local_search.py

The strategy is `jnas.strategies.local_search` (registered as `local_search`; no options).

Measured 2026-12-07 (100 seeds, seed 0, the 2-core CPU; test accuracy %, mean ± std; random and
evolution as in `nb201.py`):

| dataset        | random       | evolution    | local_search | best in table |
|----------------|--------------|--------------|--------------|---------------|
| cifar10        | 93.79 ± 0.26 | 94.03 ± 0.32 | 94.15 ± 0.30 | 94.37         |
| cifar100       | 71.23 ± 1.05 | 72.13 ± 0.72 | 72.27 ± 0.94 | 73.51         |
| ImageNet16-120 | 44.78 ± 1.25 | 45.59 ± 0.98 | 45.92 ± 0.69 | 47.31         |

Local search averages 80.7 counted queries within CIFAR-10's time budget (random 99.5,
evolution 84.8): it climbs towards large networks, which cost more simulated seconds. White et
al. report this simple hill-climber as a strong baseline on NAS-Bench-201; here it matches or
beats aging evolution.
"""

from experiments.configs import nb201


def get_config():
    config = nb201.get_config()
    config.strategies = ("random", "evolution", "local_search")
    return config
