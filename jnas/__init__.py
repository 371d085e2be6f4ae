"""jnas: neural architecture search in JAX.

Importing jnas tunes glibc's allocator for XLA's CPU runtime (see :mod:`jnas.runtime`; set
``JNAS_MALLOC=0`` to leave it alone).
"""

from jnas import runtime as _runtime

_runtime.tune_malloc()
