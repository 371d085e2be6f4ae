"""An entry point run from the command line through jnas.cli.run (tests/runtime_test.py).

  python tests/scripts/relaunch_probe.py --probe=<word>

Prints ``RESULT`` and a JSON object: how many times the module started, the process ids of
its first start and of ``main``, ``GLIBC_TUNABLES`` in ``main``, the malloc status and the
flag's value.
"""

import json
import os

from absl import flags

from jnas import cli, runtime

# Counted in the environment, which jnas.runtime.relaunch passes on to the new program.
os.environ["PROBE_STARTS"] = str(int(os.environ.get("PROBE_STARTS", "0")) + 1)
os.environ.setdefault("PROBE_FIRST_PID", str(os.getpid()))
flags.DEFINE_string("probe", None, "a flag that must survive the relaunch")


def main(argv):
    result = dict(
        starts=int(os.environ["PROBE_STARTS"]),
        first_pid=int(os.environ["PROBE_FIRST_PID"]),
        pid=os.getpid(),
        tunables=os.environ.get("GLIBC_TUNABLES"),
        status=runtime.tune_malloc(),
        probe=flags.FLAGS.probe,
    )
    print("RESULT" + json.dumps(result))


if __name__ == "__main__":
    cli.run(main)
