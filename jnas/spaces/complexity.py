"""Parameter counts and multiply-adds of the evaluation networks, as the NAS papers count them.

* Parameters: trainable scalars (conv kernels, BN scale and bias, the classifier's weight and
  bias), without the auxiliary head (the DARTS code's ``count_parameters_in_MB``).
* Multiply-adds: those of the convolutions and linear layers of one inference pass of one
  image (no auxiliary head); pools, batch norm, ReLU and additions are not counted. A dense
  conv costs ``H_out W_out C_out k_h k_w C_in``, a depthwise conv ``H_out W_out C k_h k_w``, a
  linear layer ``C_in C_out``.

Both are computed from shapes alone: the network is traced under ``jax.eval_shape`` while
:func:`flax.linen.intercept_methods` records the shapes of every ``Conv2d``,
``DepthwiseConv2d`` and ``Dense`` call, so nothing is compiled or run. The published
networks' figures (DARTS Table 1-3) are in :data:`jnas.spaces.published.PAPER_FIGURES`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jnas.ops import layers
from jnas.spaces.cells import abstract_variables, build_network, count_params, scan_multiplicity
from jnas.spaces.genotype import Genotype

# The evaluation settings of DARTS (Sec. 3.3 / A.2): CIFAR 20 cells at C=36 on 32x32 images,
# ImageNet mobile 14 cells at C=48 on 224x224 images.
SETTINGS = {
    "cifar": {"C": 36, "layers": 20, "num_classes": 10, "image_shape": (32, 32, 3)},
    "imagenet": {"C": 48, "layers": 14, "num_classes": 1000, "image_shape": (224, 224, 3)},
}


def _macs_of_call(module: nn.Module, x, y) -> int:
    if isinstance(module, layers.Conv2d):
        kh, kw = module.kernel_size
        return int(np.prod(y.shape[1:]) * kh * kw * x.shape[-1])
    if isinstance(module, layers.DepthwiseConv2d):
        return int(np.prod(y.shape[1:]) * module.kernel_size**2)
    if isinstance(module, layers.Dense):
        return int(x.shape[-1] * module.features)
    return 0


def count_macs(model: nn.Module, image_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one inference pass (``train=False``) on one image.

    Args:
      model: an evaluation network; a layer inside an ``nn.scan`` over ``n`` cells is traced
        once and counted ``n`` times.
      image_shape: ``(H, W, C)`` of one image.

    Returns:
      The number of multiply-adds of its convolutions and linear layers.
    """
    variables = abstract_variables(model, image_shape)
    per_layer: dict[tuple[str, ...], int] = {}  # by module path: nn.scan may trace twice

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and args:
            path = tuple(context.module.path)
            macs = _macs_of_call(context.module, args[0], out)
            if macs:
                per_layer[path] = scan_multiplicity(path) * macs
        return out

    def forward(v, x):
        with nn.intercept_methods(interceptor):
            return model.apply(v, x, train=False)

    x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    jax.eval_shape(forward, variables, x)
    return sum(per_layer.values())


def network_stats(
    genotype: Genotype,
    network: str,
    *,
    C: int | None = None,
    layers: int | None = None,
    num_classes: int | None = None,
    image_shape: tuple[int, ...] | None = None,
) -> dict:
    """Parameters (without and with the auxiliary head) and multiply-adds of one network.

    Args:
      genotype: the cell.
      network: ``"cifar"`` or ``"imagenet"``; unspecified sizes default to the DARTS setting.
      C, layers, num_classes, image_shape: override the setting.

    Returns:
      ``{"network", "C", "layers", "params", "params_with_aux", "madds"}``.
    """
    s = dict(SETTINGS[network])
    for k, v in (("C", C), ("layers", layers), ("num_classes", num_classes)):
        if v is not None:
            s[k] = v
    if image_shape is not None:
        s["image_shape"] = tuple(image_shape)
    model = build_network(
        network,
        genotype,
        C=s["C"],
        layers=s["layers"],
        num_classes=s["num_classes"],
        auxiliary=True,
    )
    variables = abstract_variables(model, s["image_shape"])
    return {
        "network": network,
        "C": s["C"],
        "layers": s["layers"],
        "params": count_params(variables["params"]),
        "params_with_aux": count_params(variables["params"], auxiliary=True),
        "madds": count_macs(model, s["image_shape"]),
    }


def published_rows(names: list[str] | None = None) -> list[dict]:
    """The table of ``python -m experiments.cells``: every published cell in both networks.

    Each row: ``genotype``, ``network`` (``cifar`` or ``imagenet``), ``shape`` (``darts``:
    the DARTS evaluation network; ``paper``: the network that paper itself evaluated, see
    :data:`jnas.spaces.published.PAPER_NETWORKS`; ``enas``: ENAS's final network as its
    official code builds it, :func:`jnas.spaces.enas_final.official_row`), ``C``, ``layers``,
    ``params``, ``params_with_aux``, ``madds``, ``paper_params``, ``paper_madds`` (None where
    the paper gives none) and ``note``.
    """
    from jnas.spaces.published import PAPER_FIGURES, PAPER_NETWORKS, PUBLISHED

    rows = []
    for name in names or list(PUBLISHED):
        figures = PAPER_FIGURES.get(name, {})
        paper_net = PAPER_NETWORKS.get(name)
        for network in ("cifar", "imagenet"):
            stats = network_stats(PUBLISHED[name], network)
            rows.append(
                {
                    "genotype": name,
                    "shape": "darts",
                    **stats,
                    "paper_params": figures.get(f"{network}_params"),
                    "paper_madds": figures.get(f"{network}_madds"),
                    "note": (
                        "the paper evaluated another network; see its 'paper' row"
                        if paper_net is not None and network == "cifar"
                        else ""
                    ),
                }
            )
            if paper_net is not None and network == "cifar":
                g = paper_net.genotype or PUBLISHED[name]
                stats = network_stats(g, "cifar", C=paper_net.C, layers=paper_net.layers)
                rows.append(
                    {
                        "genotype": name,
                        "shape": "paper",
                        **stats,
                        "paper_params": figures.get("cifar_params"),
                        "paper_madds": None,
                        "note": paper_net.note,
                    }
                )
            if name == "ENAS" and network == "cifar":  # the network of the official ENAS code
                from jnas.spaces.enas_final import official_row

                rows.append(official_row(figures.get("cifar_params")))
    return rows


def format_table(rows: list[dict]) -> str:
    """A plain-text table of :func:`published_rows` (millions, one decimal more than papers)."""

    def m(x):
        return "-" if x is None else f"{x / 1e6:.2f}M"

    head = (
        f"{'genotype':<12} {'network':<8} {'shape':<5} {'C':>3} {'cells':>5} {'params':>13} "
        f"{'+aux head':>13} {'madds':>9} {'paper':>7} {'paper madds':>11}"
    )
    lines = [head, "-" * len(head)]
    notes = []
    for r in rows:
        mark = ""
        if r["note"] and r["shape"] != "darts":
            notes.append(f"[{len(notes) + 1}] {r['genotype']}: {r['note']}")
            mark = f" [{len(notes)}]"
        lines.append(
            f"{r['genotype']:<12} {r['network']:<8} {r['shape']:<5} {r['C']:>3} {r['layers']:>5} "
            f"{r['params']:>13,} {r['params_with_aux']:>13,} {m(r['madds']):>9} "
            f"{m(r['paper_params']):>7} {m(r['paper_madds']):>11}{mark}"
        )
    lines.append("")
    lines.append(
        "params: trainable parameters without the auxiliary head (as the papers count); "
        "madds: multiply-adds of convs and linear layers, one image, inference."
    )
    lines.append(
        "paper: the paper's own figures; for NASNet-A, AmoebaNet-A and PNAS on ImageNet they "
        "are those of the papers' own mobile networks, not of the DARTS ImageNet network."
    )
    lines += notes
    return "\n".join(lines)
