"""Host loops (search, retraining) and their helpers: checkpoints, writers, progress."""

from __future__ import annotations

import os


def setup_jax(cache_dir: str | None = None) -> None:
    """Turn on JAX's persistent compilation cache, so reruns and resumes skip compilation.

    Args:
      cache_dir: the cache directory; default ``$JNAS_COMPILATION_CACHE`` or
        ``~/.cache/jnas/xla``. The empty string turns the cache off.
    """
    import jax

    if cache_dir is None:
        cache_dir = os.environ.get(
            "JNAS_COMPILATION_CACHE", os.path.join(os.path.expanduser("~"), ".cache/jnas/xla")
        )
    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
