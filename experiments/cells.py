r"""The built-in published cells: parameter counts, multiply-adds, drawings.

  python -m experiments.cells                       # the table (CIFAR and ImageNet networks)
  python -m experiments.cells --json=cells.json     # the same rows as JSON
  python -m experiments.cells --draw=DARTS_V2 --out=figures/darts_v2   # PNG + SVG cells

``--draw`` takes a published name, a ``Genotype(...)`` text or a genotype file; ``--only``
restricts the table to some cells (comma-separated names).
"""

import json

from absl import flags

from jnas import cli
from jnas.errors import ConfigError
from jnas.spaces.complexity import format_table, published_rows
from jnas.spaces.draw import draw_genotype
from jnas.spaces.published import canonical_name, get_genotype

FLAGS = flags.FLAGS
flags.DEFINE_string("json", None, "Write the table rows as a JSON list to this path.")
flags.DEFINE_string("draw", None, "Draw this genotype (name, text or file) instead.")
flags.DEFINE_string("out", "cells", "Output directory of --draw.")
flags.DEFINE_list("formats", ["png", "svg"], "Image formats of --draw.")
flags.DEFINE_list("only", None, "Only these published cells in the table.")


def main(argv):
    if len(argv) > 1:
        raise ConfigError(cli.unexpected_arguments(argv))
    if FLAGS.draw:
        for path in draw_genotype(
            get_genotype(FLAGS.draw), FLAGS.out, formats=tuple(FLAGS.formats)
        ):
            print(path)
        return
    names = None
    if FLAGS.only:
        names = []
        for n in FLAGS.only:
            if canonical_name(n) is None:
                raise ConfigError(f"--only: unknown published cell {n!r}")
            names.append(canonical_name(n))
    rows = published_rows(names)
    print(format_table(rows))
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(rows, f, indent=2)
        print(f"wrote {FLAGS.json}")


if __name__ == "__main__":
    cli.run(main)
