r"""The PyTorch reference: one training step of the official DARTS code, timed like ours.

Our speed targets are ratios to the official PyTorch DARTS code *on the same machine*, and this
machine's timings drift by 10-15 % between processes and sessions, so compare side by side: run
this script and ``benchmarks/train_step.py`` one after the other, alternating, nothing else
running. It needs PyTorch (and torchvision, which DARTS's ``utils.py`` imports) and a checkout of
https://github.com/quark0/darts; it imports that repository's ``cnn/model.py`` unchanged and
builds the same step as ``benchmarks/train_step.py``: DARTS_V2, C=36, 20 cells, auxiliary head
(weight 0.4), drop-path at 0.1 (mid-training), SGD with momentum 0.9 and weight decay 3e-4,
gradient clipping at 5, random inputs::

  python -m venv /tmp/tvenv && /tmp/tvenv/bin/pip install torch torchvision numpy
  git clone https://github.com/quark0/darts /tmp/darts
  /tmp/tvenv/bin/python benchmarks/torch_reference.py --darts=/tmp/darts --batch=32

DARTS's ``utils.drop_path`` allocates its mask with ``torch.cuda.FloatTensor``; on a CPU the
script puts a same-maths CPU version in its place (per-example Bernoulli mask, divide by the keep
probability). Prints the median step time, images per second and peak RSS; ``--json`` writes the
rows with the keys of ``benchmarks/train_step.py`` (``backend`` is ``torch-cpu``/``torch-cuda``).
No dependency on jnas or JAX, so it runs in its own virtual environment.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--darts", required=True, help="Checkout of quark0/darts (or its cnn/ folder).")
    p.add_argument("--batch", default="32", help="Comma-separated batch sizes.")
    p.add_argument("--steps", type=int, default=5, help="Timed steps per batch size.")
    p.add_argument("--warmup", type=int, default=2, help="Untimed steps first.")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default).")
    p.add_argument("--genotype", default="DARTS_V2")
    p.add_argument("--C", type=int, default=36)
    p.add_argument("--layers", type=int, default=20)
    p.add_argument("--drop_path_prob", type=float, default=0.2, help="Final; half is used.")
    p.add_argument(
        "--autocast",
        action="store_true",
        help="Forward pass and loss under torch.autocast(dtype=torch.bfloat16) (mixed "
        "precision; compare with the jnas benchmarks' --compute_dtype=bfloat16).",
    )
    p.add_argument("--json", default="", help="Write the rows here.")
    return p.parse_args()


def use_darts_checkout(path: str, module: str) -> None:
    """Put a quark0/darts checkout's ``cnn/`` (or ``path`` itself) first on ``sys.path``;
    exit naming the problem when ``module`` is not there."""
    cnn = os.path.join(path, "cnn")
    if not os.path.isdir(cnn):
        cnn = path
    if not os.path.isfile(os.path.join(cnn, f"{module}.py")):
        sys.exit(f"--darts={path}: no cnn/{module}.py there (want a checkout of quark0/darts)")
    sys.path.insert(0, cnn)


def main():
    args = _parse()
    use_darts_checkout(args.darts, "model")
    import genotypes  # noqa: PLC0415  (DARTS's own modules, from the checkout)
    import model as darts_model  # noqa: PLC0415
    import torch  # noqa: PLC0415  (only this script needs torch)

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:

        def drop_path(x, drop_prob):  # DARTS utils.drop_path, with the mask on the CPU
            if drop_prob > 0.0:
                keep = 1.0 - drop_prob
                mask = torch.empty(x.size(0), 1, 1, 1).bernoulli_(keep)
                x = x.div(keep).mul(mask)
            return x

        darts_model.drop_path = drop_path

    torch.manual_seed(0)
    rows = []
    for batch in [int(b) for b in args.batch.split(",")]:
        net = darts_model.NetworkCIFAR(
            args.C, 10, args.layers, True, getattr(genotypes, args.genotype)
        ).to(device)
        net.train()
        net.drop_path_prob = args.drop_path_prob / 2
        opt = torch.optim.SGD(net.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
        crit = torch.nn.CrossEntropyLoss()
        x = torch.randn(batch, 3, 32, 32, device=device)
        y = torch.randint(0, 10, (batch,), device=device)

        def step():
            opt.zero_grad()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.autocast):
                logits, logits_aux = net(x)
                loss = crit(logits, y) + 0.4 * crit(logits_aux, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            if cuda:
                torch.cuda.synchronize()

        for _ in range(max(1, args.warmup)):
            step()
        times, cpu = [], []
        for _ in range(args.steps):
            t, c = time.perf_counter(), time.process_time()
            step()
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        med = statistics.median(times)
        if cuda:
            peak, kind = torch.cuda.max_memory_allocated() / 2**20, "device peak allocated"
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            kind = "process peak RSS"
        row = {
            "batch": batch,
            "images_per_s": batch / med,
            "step_s_median": med,
            "compile_s": 0.0,
            "peak_mem_mb": peak,
            "backend": "torch-cuda" if cuda else "torch-cpu",
            "step_s": times,
            "cpu_s_median": statistics.median(cpu),
            "threads": torch.get_num_threads(),
            "autocast": "bfloat16" if args.autocast else None,
            "torch": torch.__version__,
        }
        rows.append(row)
        print(
            f"batch {batch:>4}: {row['images_per_s']:8.1f} images/s, step {med:.3f} s "
            f"(cpu {row['cpu_s_median']:.2f} s, steps {', '.join(f'{s:.3f}' for s in times)}), "
            f"peak memory {peak:.0f} MB ({kind}); torch {torch.__version__}, "
            f"{row['threads']} threads",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
