"""Run many command lines of one entry point through its error boundary, in one process.

  python tests/scripts/cli_cases.py experiments.search CASES.json

CASES.json: ``[{"name": ..., "argv": [flags ...]}, ...]``. Each case runs
``jnas.cli.run(<module>.main, argv=[module, *argv])`` as ``python -m <module> *argv`` would
(the flags are unparsed between cases) with stderr captured. A case that reaches compilation
fails the script (``jax.jit`` lowering is refused), so every case must fail before it. Prints
``RESULT`` and a JSON object: name -> ``{"status": exit status or None, "stderr": ...,
"raised": "<ExceptionName>: message" for an exception that left the boundary, else None}``.
"""

import contextlib
import importlib
import io
import json
import sys

import jax
from absl import flags


def _no_compiling(*args, **kwargs):
    raise AssertionError("a case reached XLA compilation; every case must fail before it")


def main(module_name: str, cases_path: str) -> None:
    with open(cases_path) as f:
        cases = json.load(f)
    module = importlib.import_module(module_name)
    from jnas import cli

    # Nothing may compile: refuse lowering (jit's path to XLA) for the whole script. The
    # runtime switches' probe of the XLA CPU options (a 2x2 product) runs once before; its
    # answer is cached.
    from jnas.ops import xla_cpu

    xla_cpu.cpu_options()
    jax.stages.Traced.lower = _no_compiling
    jax.stages.Wrapped.lower = _no_compiling
    results = {}
    for case in cases:
        flags.FLAGS.unparse_flags()
        for name in [n for n in flags.FLAGS if n.startswith("config.")]:
            delattr(flags.FLAGS, name)  # the previous case's --config.<key> override flags
        err = io.StringIO()
        status, raised = None, None
        # ml_collections reads --config.<key> overrides from sys.argv, as in a real process.
        sys.argv = [module_name, *case["argv"]]
        with contextlib.redirect_stderr(err):
            try:
                cli.run(module.main, argv=sys.argv)
                status = 0
            except SystemExit as e:
                status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException as e:  # left the boundary: a bug (the process would exit 1)
                raised = f"{type(e).__name__}: {e}"[:2000]
        results[case["name"]] = {"status": status, "stderr": err.getvalue(), "raised": raised}
    print("RESULT", json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:])
