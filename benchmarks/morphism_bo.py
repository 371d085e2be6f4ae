r"""Time the Bayesian optimiser over morphisms on many architectures: the edit-distance matrix,
the GP fit and one acquisition search (jnas.strategies.morphism_bo).

  python benchmarks/morphism_bo.py                    # 1,000 architectures
  python benchmarks/morphism_bo.py --n=300 --json=out.json

The architectures are a search's kind: graphs of the graph space (its defaults: at most 40
layers and 1,000,000 parameters on 3-channel images) grown from the start network by random
morphisms, each new graph one random possible edit of a random earlier one (drawn with
``--seed``; untimed), with synthetic accuracies. Rows (``what``, ``n_archs``, ``seconds``):

* ``distance_matrix``: :func:`~jnas.strategies.morphism_bo.distance_matrix` of the ``n``
  descriptors (``n (n - 1) / 2`` pairs: layer programme in XLA, skip matching in numpy);
* ``gp_fit``: :class:`~jnas.strategies.morphism_bo.EditDistanceGP` given that matrix
  (Bourgain's embedding, tinygp's Cholesky in float64);
* ``acquisition``: one :func:`~jnas.strategies.morphism_bo.acquisition_search` from all ``n``
  trained graphs (Auto-Keras's schedule: at most 88 pops, 8 neighbours).

``seconds`` is a warm run (XLA's programs compiled, as in a search after its first round);
``first_s`` the first run of the process, compilation included. Target (issue 20): the three
under 10 s together on this CPU.
"""

from __future__ import annotations

import argparse
import json
import time


def _architectures(n: int, seed: int):
    import numpy as np

    from jnas.spaces.graph import GraphSpace
    from jnas.strategies.morphism_bo import random_children

    space = GraphSpace()
    rng = np.random.default_rng(seed)
    graphs, texts = [space.start_graph()], {space.start_graph().to_text()}
    while len(graphs) < n:
        parent = graphs[int(rng.integers(len(graphs)))]
        for _, child in random_children(space, parent, rng, 1):
            if child.to_text() not in texts:
                texts.add(child.to_text())
                graphs.append(child)
    return space, graphs


def _timed(fn, repeats: int = 2):
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="architectures (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the rows as a JSON list to this path")
    args = p.parse_args()

    import jax
    import numpy as np

    from jnas.strategies import morphism_bo as mb

    t0 = time.perf_counter()
    space, graphs = _architectures(args.n, args.seed)
    descriptors = [g.descriptor() for g in graphs]
    widths = np.array([sum(w for _, w in d.layers) for d in descriptors], float)
    accuracy = 0.5 + 0.4 * np.tanh(widths / widths.mean() / 2)
    accuracy += np.random.default_rng(args.seed).normal(0, 0.01, args.n)
    layers = np.array([len(d.layers) for d in descriptors])
    skips = np.array([len(d.skips) for d in descriptors])
    print(
        f"{args.n} architectures in {time.perf_counter() - t0:.1f} s (untimed): weighted "
        f"layers {layers.min()}-{layers.max()} (mean {layers.mean():.1f}), skip connections "
        f"{skips.min()}-{skips.max()} (mean {skips.mean():.1f})",
        flush=True,
    )

    rows = []
    dist, times = _timed(lambda: mb.distance_matrix(descriptors))
    rows.append(("distance_matrix", times))
    key = jax.random.key(args.seed)
    gp, times = _timed(lambda: mb.EditDistanceGP(descriptors, accuracy, key, dist=dist))
    rows.append(("gp_fit", times))
    trained = [mb.Trained(i, g, float(a)) for i, (g, a) in enumerate(zip(graphs, accuracy))]
    seen = {g.to_text() for g in graphs}
    info = {}

    def acquisition():
        best = mb.acquisition_search(space, gp, trained, jax.random.key(1), seen=seen)
        info.update(best.info)
        return best

    _, times = _timed(acquisition)
    rows.append(("acquisition", times))
    out = [
        {"what": w, "n_archs": args.n, "seconds": round(t[-1], 3), "first_s": round(t[0], 3)}
        for w, t in rows
    ]
    for r in out:
        print(json.dumps(r))
    total = sum(r["seconds"] for r in out)
    print(
        f"total {total:.2f} s warm ({sum(r['first_s'] for r in out):.2f} s first); the "
        f"acquisition popped {info['pops']}, expanded {info['expanded']}, scored "
        f"{info['scored']} candidates",
        flush=True,
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
