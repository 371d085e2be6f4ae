r"""The PyTorch reference for the search step: one step of the official DARTS search code.

``benchmarks/search_step.py`` times jnas's search step; this script times the official code's
on the same network (``model_search.Network``: C=16, 8 cells, 4 nodes, 32x32x3 inputs, 10
classes), as ``train_search.py``'s loop runs it: ``Architect.step`` (alpha's Adam step on the
validation batch; ``--order=2``: the unrolled finite-difference hypergradient) then the
weights' SGD step on the training batch (momentum 0.9, weight decay 3e-4, gradient clipping
at 5), random inputs. It imports the checkout's ``cnn/model_search.py`` and
``cnn/architect.py`` unchanged; on a CPU, their ``.cuda()`` calls are made no-ops. Compare
side by side (nothing else running, both scripts one after the other)::

  python -m venv /tmp/tvenv && /tmp/tvenv/bin/pip install torch==2.13.0 numpy
  git clone https://github.com/quark0/darts /tmp/darts
  /tmp/tvenv/bin/python benchmarks/torch_search_reference.py --darts=/tmp/darts --order=1,2

Prints per order and batch the median step time and the peak RSS (the device's peak where
CUDA is used); ``--json`` writes the rows with ``benchmarks/search_step.py``'s keys
(``backend`` is ``torch-cpu``/``torch-cuda``). No dependency on jnas or JAX.
"""

import argparse
import json
import resource
import statistics
import time
import warnings

from torch_reference import use_darts_checkout


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--darts", required=True, help="Checkout of quark0/darts (or its cnn/ folder).")
    p.add_argument("--order", default="1", help="Comma-separated orders (1, 2).")
    p.add_argument("--batch", default="16", help="Comma-separated batch sizes.")
    p.add_argument("--steps", type=int, default=5, help="Timed steps per row.")
    p.add_argument("--warmup", type=int, default=1, help="Untimed steps first.")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default).")
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--json", default="", help="Write the rows here.")
    return p.parse_args()


def main():
    args = _parse()
    use_darts_checkout(args.darts, "model_search")  # the script's folder is on sys.path
    import torch  # noqa: PLC0415  (only this script needs torch)

    cuda = torch.cuda.is_available()
    if not cuda:  # the official code calls .cuda() on the model, alphas and unrolled copies
        torch.Tensor.cuda = lambda self, *a, **k: self
        torch.nn.Module.cuda = lambda self, *a, **k: self
    warnings.filterwarnings("ignore", category=UserWarning)  # its deprecated add_/sub calls
    import architect as darts_architect  # noqa: PLC0415  (DARTS's own modules)
    import model_search  # noqa: PLC0415

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if cuda else "cpu")
    rows = []
    for order in [int(o) for o in args.order.split(",")]:
        for batch in [int(b) for b in args.batch.split(",")]:
            torch.manual_seed(0)
            crit = torch.nn.CrossEntropyLoss()
            net = model_search.Network(args.C, 10, args.layers, crit).to(device)
            opt = torch.optim.SGD(net.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
            hp = argparse.Namespace(  # train_search.py's defaults
                momentum=0.9, weight_decay=3e-4, arch_learning_rate=3e-4, arch_weight_decay=1e-3
            )
            arch = darts_architect.Architect(net, hp)
            xt, xv = (torch.randn(batch, 3, 32, 32, device=device) for _ in range(2))
            yt, yv = (torch.randint(0, 10, (batch,), device=device) for _ in range(2))

            def step():
                arch.step(xt, yt, xv, yv, 0.025, opt, unrolled=order == 2)
                opt.zero_grad()
                loss = crit(net(xt), yt)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                opt.step()
                if cuda:
                    torch.cuda.synchronize()
                return float(loss)

            for _ in range(max(1, args.warmup)):
                step()
            times = []
            for _ in range(args.steps):
                t = time.perf_counter()
                loss = step()
                times.append(time.perf_counter() - t)
            if cuda:
                peak = torch.cuda.max_memory_allocated() / 2**20
            else:
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            row = {
                "method": "darts",
                "order": order,
                "batch": batch,
                "step_s_median": statistics.median(times),
                "compile_s": 0.0,
                "peak_mem_mb": peak,
                "backend": "torch-cuda" if cuda else "torch-cpu",
                "loss": loss,
                "step_s": times,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
            }
            rows.append(row)
            print(
                f"order {order} batch {batch:>4}: step {row['step_s_median']:.3f} s "
                f"(steps {', '.join(f'{s:.2f}' for s in times)}), peak memory {peak:.0f} MB; "
                f"torch {torch.__version__}, {row['threads']} threads",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
