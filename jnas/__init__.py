"""jnas: neural architecture search in JAX.

Importing jnas changes no process-wide state. The entry points (``experiments.*``,
``benchmarks/*``) tune glibc's allocator for XLA's CPU runtime before JAX starts; a library
user may do the same with :func:`jnas.runtime.tune_malloc` (see :mod:`jnas.runtime`).
"""
