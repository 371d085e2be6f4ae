"""Drawing a genotype's cells the way the DARTS papers do (``cnn/visualize.py``).

A cell is drawn left to right: the inputs ``c_{k-2}`` and ``c_{k-1}``, the intermediate nodes
``0 .. n-1``, and the output ``c_{k}``; every edge of the genotype is an arrow labelled with its
op, and every concatenated state has an arrow into ``c_{k}``. Nothing is omitted (a ``none``
edge is drawn too).

Rendering: Graphviz's ``dot`` through the ``graphviz`` Python package when it is installed,
else the ``dot`` program directly, else a matplotlib drawing of the same graph (layered
layout), so that PNG and SVG files are always written.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from jnas.spaces.genotype import Genotype, load_genotype
from jnas.spaces.published import PUBLISHED

INPUT_NAMES = ("c_{k-2}", "c_{k-1}")
OUTPUT_NAME = "c_{k}"
_FILL = {"input": "darkseagreen2", "node": "lightblue", "output": "palegoldenrod"}
_MPL_FILL = {"input": "#b4eeb4", "node": "lightblue", "output": "palegoldenrod"}  # same colours


def _state_name(i: int) -> str:
    return INPUT_NAMES[i] if i < 2 else str(i - 2)


def cell_graph(genotype: Genotype, cell: str = "normal"):
    """Nodes and labelled edges of one cell.

    Args:
      genotype: the genotype.
      cell: ``"normal"`` or ``"reduce"``.

    Returns:
      ``(nodes, edges)``: nodes as ``(name, kind)`` with kind ``input``, ``node`` or
      ``output``; edges as ``(source, target, label)`` (label ``""`` for the concatenation).
    """
    if cell not in ("normal", "reduce"):
        raise ValueError(f"cell must be 'normal' or 'reduce', got {cell!r}")
    edges_in = getattr(genotype, cell)
    concat = getattr(genotype, f"{cell}_concat")
    n_nodes = len(edges_in) // 2
    nodes = [(n, "input") for n in INPUT_NAMES]
    nodes += [(str(j), "node") for j in range(n_nodes)]
    nodes.append((OUTPUT_NAME, "output"))
    edges = [(_state_name(i), str(k // 2), op) for k, (op, i) in enumerate(edges_in)]
    edges += [(_state_name(i), OUTPUT_NAME, "") for i in concat]
    return nodes, edges


def cell_dot(genotype: Genotype, cell: str = "normal") -> str:
    """The Graphviz DOT source of one cell (styled like DARTS's ``visualize.py``)."""
    nodes, edges = cell_graph(genotype, cell)
    lines = [
        "digraph cell {",
        "  rankdir=LR;",
        '  node [style="rounded,filled", shape=rect, align=center, fontsize=20, height=0.5,'
        ' width=0.5, penwidth=2, fontname="times"];',
        '  edge [fontsize=20, fontname="times"];',
    ]
    for name, kind in nodes:
        lines.append(f'  "{name}" [fillcolor={_FILL[kind]}];')
    for src, dst, label in edges:
        attrs = f' [label="{label}", fillcolor=gray]' if label else " [fillcolor=gray]"
        lines.append(f'  "{src}" -> "{dst}"{attrs};')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _render_dot(source: str, path: str, fmt: str) -> bool:
    try:
        import graphviz  # type: ignore[import-not-found]

        data = graphviz.Source(source).pipe(format=fmt)
    except ImportError:
        exe = shutil.which("dot")
        if exe is None:
            return False
        proc = subprocess.run([exe, f"-T{fmt}"], input=source.encode(), capture_output=True)
        if proc.returncode != 0:
            return False
        data = proc.stdout
    except Exception:  # graphviz installed but its `dot` binary missing or failing
        return False
    with open(path, "wb") as f:
        f.write(data)
    return True


BACKENDS = ("auto", "graphviz", "matplotlib")


def check_backend(backend: str) -> None:
    """``ValueError`` unless ``backend`` is one of :data:`BACKENDS`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be auto, graphviz or matplotlib, got {backend!r}")


def render(source: str, out_dir: str, stem: str, formats, backend: str, fallback) -> list[str]:
    """Writes the DOT ``source`` to ``<out_dir>/<stem>.dot`` (the directory created if
    missing) and renders it to
    ``<stem>.<fmt>`` per format with Graphviz, or, where Graphviz is missing (or
    ``backend="matplotlib"``), calls ``fallback(paths)`` to draw them with matplotlib.

    Returns:
      The paths written, the DOT source first.

    Raises:
      ValueError: an unknown backend.
      RuntimeError: ``backend="graphviz"`` and Graphviz is not installed.
    """
    check_backend(backend)
    os.makedirs(out_dir, exist_ok=True)
    dot_path = os.path.join(out_dir, f"{stem}.dot")
    with open(dot_path, "w") as f:
        f.write(source)
    paths = [os.path.join(out_dir, f"{stem}.{fmt}") for fmt in formats]
    done = backend != "matplotlib" and all(
        _render_dot(source, p, fmt) for p, fmt in zip(paths, formats, strict=True)
    )
    if not done:
        if backend == "graphviz":
            raise RuntimeError("Graphviz is not available: install `graphviz` (dot)")
        fallback(paths)
    return [dot_path, *paths]


def node_box(ax, xy, text: str, fill: str, *, fontsize: int, lw: float = 1.5) -> None:
    """A node of a matplotlib picture: ``text`` centred at ``xy`` in a rounded box."""
    ax.text(
        *xy,
        text,
        ha="center",
        va="center",
        fontsize=fontsize,
        fontfamily="serif",
        bbox=dict(boxstyle="round", fc=fill, ec="black", lw=lw),
    )


def save_figure(fig, paths) -> None:
    """Saves a matplotlib figure to every path (SVG labels kept as text) and closes it."""
    import matplotlib.pyplot as plt

    with plt.rc_context({"svg.fonttype": "none"}):  # SVG labels stay text (searchable)
        for path in paths:
            fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def _render_matplotlib(genotype: Genotype, cell: str, paths: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes, edges = cell_graph(genotype, cell)
    # Layered layout: inputs in column 0, node j one column right of its latest input.
    col = {INPUT_NAMES[0]: 0, INPUT_NAMES[1]: 0}
    for src, dst, _ in edges:
        if dst != OUTPUT_NAME:
            col[dst] = max(col.get(dst, 1), col[src] + 1)
    col[OUTPUT_NAME] = max(col.values()) + 1
    rows: dict[int, list[str]] = {}
    for name, _ in nodes:
        rows.setdefault(col[name], []).append(name)
    pos = {}
    for c, names in rows.items():
        for r, name in enumerate(names):
            pos[name] = (3.0 * c, (len(names) - 1) / 2.0 - r)
    width = 2.6 * (col[OUTPUT_NAME] + 1)
    fig, ax = plt.subplots(figsize=(width, 1.6 * max(map(len, rows.values())) + 1))
    for k, (src, dst, label) in enumerate(edges):
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        bend = 0.15 * ((k % 3) - 1) if src != dst else 0.0
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops=dict(
                arrowstyle="-|>",
                color="gray",
                lw=1.5,
                shrinkA=18,
                shrinkB=18,
                connectionstyle=f"arc3,rad={bend}",
            ),
        )
        if label:
            ax.text(
                (x0 + x1) / 2,
                (y0 + y1) / 2 + bend,
                label,
                fontsize=9,
                ha="center",
                va="center",
                bbox=dict(fc="white", ec="none", alpha=0.8),
            )
    for name, kind in nodes:
        node_box(ax, pos[name], name, _MPL_FILL[kind], fontsize=12)
    ax.set_xlim(-1.5, 3.0 * col[OUTPUT_NAME] + 1.5)
    ys = [p[1] for p in pos.values()]
    ax.set_ylim(min(ys) - 1, max(ys) + 1)
    ax.axis("off")
    save_figure(fig, paths)


def draw_genotype(
    genotype: Genotype,
    out_dir: str,
    *,
    formats: tuple[str, ...] = ("png", "svg"),
    backend: str = "auto",
) -> list[str]:
    """Render the normal and reduction cells of ``genotype`` into ``out_dir``.

    Args:
      genotype: the genotype to draw.
      out_dir: created if missing; receives ``normal.<fmt>``, ``reduce.<fmt>`` and the DOT
        sources ``normal.dot`` / ``reduce.dot``.
      formats: image formats (``png``, ``svg``, ``pdf``).
      backend: ``"auto"`` (Graphviz, else matplotlib), ``"graphviz"`` or ``"matplotlib"``.

    Returns:
      The paths written.
    """
    written = []
    for cell in ("normal", "reduce"):
        fallback = lambda paths, cell=cell: _render_matplotlib(genotype, cell, paths)  # noqa: E731
        written += render(cell_dot(genotype, cell), out_dir, cell, formats, backend, fallback)
    return written


def write_cell_pictures(genotype: Genotype | str, directory: str) -> list[str]:
    """Write PNG and SVG pictures of a genotype's normal and reduction cells.

    What a search prints after deriving its cell: ``normal.png``, ``normal.svg``,
    ``reduce.png`` and ``reduce.svg`` in ``directory`` (beside them the DOT sources, see
    :func:`draw_genotype`), rendered with Graphviz where it is installed, else matplotlib.

    Args:
      genotype: a :class:`Genotype`, or its text (``str(genotype)``, e.g. a search's
        ``genotype.txt`` contents or path, or a published name such as ``"DARTS_V2"``).
      directory: created if missing.

    Returns:
      The four picture paths, normal cell first, PNG before SVG.

    Raises:
      MalformedGenotypeError: ``genotype`` is text that does not parse.
    """
    if isinstance(genotype, str):
        genotype = load_genotype(genotype, PUBLISHED)
    if not isinstance(genotype, Genotype):
        raise TypeError(f"genotype must be a Genotype or its text, got {type(genotype).__name__}")
    written = draw_genotype(genotype, directory, formats=("png", "svg"))
    return [p for p in written if not p.endswith(".dot")]
