"""Performance estimation: judging a child cheaper than training it fully.

* :mod:`jnas.estimation.curves`: learning-curve extrapolation (Domhan et al., IJCAI 2015),
  the probability that a running child beats the best so far, and the stop rule built on it.
"""
