"""The "trained fully" reference of a multi-fidelity or early-stopped discrete search.

  python -m jnas.estimation.reference --workdir=runs/nasrl_hb [--out=reference.json]

Every architecture in the workdir's ``history.jsonl`` is judged at the search's full
fidelity (the largest budget of a multi-fidelity strategy, through the same
``to_fidelity``; else ``config.child``'s) with the key the search gives it
(``jnas.runner.discrete.child_key``), so that an evaluation the search already made at the
full fidelity, and did not stop, is the same training: it is reused (``reused``), and every
other architecture is trained now, without early stopping. The result compares the search's
choice with the best architecture of the same set trained fully, and the child-epochs the
search trained with those of the reference (``num_archs`` x the full epochs). It is written
to ``<workdir>/reference.json`` (or ``--out``); a rerun reuses the architectures already in
it.

This is the cost the search avoided, measured: "at what loss of final accuracy" is
``reference_best_reward - search_best_full_reward`` on the search-val images (the accuracy
the search itself saw; no test images are used).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import ml_collections

from jnas.runner.checkpoint import write_json


def train_fully(workdir: str, *, out: str | None = None, strategy=None, log=print) -> dict:
    """Trains every architecture of ``workdir``'s history at the full fidelity (see the
    module docstring) and returns the comparison (also written to ``out``).

    ``strategy``: the strategy object the search was given, if it was not built from its
    config (``jnas.runner.discrete.search(..., strategy=...)``); it sets the budgets."""
    from jnas.runner import discrete, use_runtime
    from jnas.runner.data import load_search_data
    from jnas.spaces.base import make_space

    with open(os.path.join(workdir, "config.json")) as f:
        config = ml_collections.ConfigDict(json.load(f))
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    out = out or os.path.join(workdir, "reference.json")
    done = {}
    if os.path.exists(out):
        with open(out) as f:
            done = {row["arch"]: row for row in json.load(f)["children"]}
    with use_runtime(config) as (config, _):
        space = make_space(config.space)
        strategy, _, _, _ = discrete.build_strategy(config, space.spec, strategy)
        child_cfg, fidelity = discrete.child_settings(config.child)
        fidelities = discrete.budget_fidelities(strategy, fidelity)
        full_budget = max((b for b in fidelities if b is not None), default=None)
        full = fidelities[full_budget]
        info, train, val = load_search_data(config)
        if not child_cfg.num_classes:
            child_cfg = dataclasses.replace(child_cfg, num_classes=info.num_classes)
        history = discrete.History(
            os.path.join(workdir, discrete.HISTORY), None, space, check_header=False
        )
        archs = list(dict.fromkeys(row["arch"] for row in history.rows))
        children = []
        for i, text in enumerate(archs):
            row = history.by_arch.get(discrete.history_key({"arch": text, "budget": full_budget}))
            if text in done:
                children.append(done[text])
                continue
            if row is not None and not row.get("stopped"):
                entry = {"arch": text, "reward": row["reward"], "reused": True}
            else:
                t0 = time.time()
                reward = space.train_child(
                    space.parse(text),
                    train,
                    val,
                    fidelity=full,
                    config=child_cfg,
                    key=discrete.child_key(config.seed, text),
                )
                entry = {"arch": text, "reward": reward, "reused": False}
                entry["train_s"] = round(time.time() - t0, 1)
                log(f"{i + 1}/{len(archs)} {text}: {reward:.4f} ({entry['train_s']} s)")
            children.append(entry)
            write_json(out, {"children": children})  # a rerun goes on from here
    best = max(children, key=lambda c: c["reward"])
    chosen = next(c for c in children if c["arch"] == summary["best_arch"])
    ranked = sorted((c["reward"] for c in children), reverse=True)
    result = {
        "children": children,
        "num_archs": len(children),
        "full_fidelity": full.changes(),
        "reference_best_arch": best["arch"],
        "reference_best_reward": best["reward"],
        "search_best_arch": summary["best_arch"],
        "search_best_full_reward": chosen["reward"],
        "search_best_rank": ranked.index(chosen["reward"]) + 1,
        "accuracy_loss": round(best["reward"] - chosen["reward"], 6),
        "child_epochs_search": summary.get("child_epochs"),
        "child_epochs_reference": summary.get("child_epochs_full"),
        "child_epochs_saved": summary.get("child_epochs_saved"),
    }
    write_json(out, result)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a finished discrete search's workdir")
    parser.add_argument("--out", default=None, help="default: <workdir>/reference.json")
    args = parser.parse_args(argv)
    from jnas import runtime
    from jnas.runner import setup_jax

    runtime.tune_malloc()
    setup_jax()
    result = train_fully(args.workdir, out=args.out)
    print(json.dumps({k: v for k, v in result.items() if k != "children"}, indent=1))


if __name__ == "__main__":
    from jnas import runtime

    runtime.relaunch()  # jnas's malloc settings from the start (JNAS_MALLOC=0: leave it)
    main()
