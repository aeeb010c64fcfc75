"""NAS-style elastic width, depth and kernel size, with weight inheritance (Once-for-All style).

A policy's ``nas`` field picks a sub-network of the trained baseline, which is built as a real,
smaller, standalone MindSpore network that inherits the baseline's weights, so a short fine-tune
suffices; ``LayerTable.resolve`` predicts its shapes exactly, so cost models see the choice.

Declaring elastic dimensions
----------------------------
A network (zoo or user) declares them with a method returning an ``ElasticSpace`` of cell paths
(the names of ``net.cells_and_names()``)::

    def elastic_space(self) -> ElasticSpace:
        return ElasticSpace(
            stages={"stage1": ("layer1.0", "layer1.1", "layer1.2")},  # depth: keep the first d blocks
            min_depth={"stage1": 1},                                 # blocks always kept (default 1)
            widths={"stage1": ("layer1.0.conv1.0", "layer1.0.conv2.0")},  # producers whose groups scale
            kernels={"block3": ("features.3.conv.1.0",)},           # (depthwise) convs whose kernel shrinks
        )

``build_layer_table`` attaches it to the table (``table.elastic``); for a network you cannot
edit, ``with_elastic_space(table, net, space)`` does the same. Decision keys are
``<stage>.depth``, ``<width>.width`` and ``<kernel>.kernel`` (e.g. ``stage2.depth``,
``stage2.width``, ``block3.kernel``); the YAML's ``compress.nas`` lists the allowed values.

Semantics (shared exactly by ``extract`` and the layer table)
-------------------------------------------------------------
- width ``w``: every coupling group holding one of the listed producers keeps
  ``round(channels * w)`` channels (at least one), the ones with the largest L1 filter norm
  summed over the group's producers (the pruner's criterion, ``importance``);
- kernel ``k``: kernels only shrink, by centre crop of the baseline's kernel (build the baseline
  with the largest kernel you want to search, e.g. ``mobilenetv2(kernel=7)``); padding stays
  "same", so feature-map sizes do not change;
- depth ``d``: a stage keeps its first ``d`` blocks; the others become ``nn.Identity`` in place,
  so they must keep their input's shape (residual blocks with identity shortcut). Layer paths of
  the kept cells, hence layer and coupling-group names, stay the baseline's; in the table the
  removed rows have ``present=False``.

Joint policies apply NAS first, then pruning and quantization on the sub-network: pruning ratios
are shares of the sub-network's channels; ratios of groups and bit-widths of layers that NAS
removed are ignored. ``sub_policy(table, policy)`` (``ElasticNAS.after_apply``) gives the
sub-network's table and the rest of the policy restated for it.

``recalibrate_bn(sub, x)`` re-estimates a sub-network's batch-norm statistics, which makes its
accuracy before any fine-tuning a usable ranking signal (see ``benchmarks/nas_mobilenetv2.py``).
"""

from automc.algorithms.nas._calibrate import recalibrate_bn
from automc.algorithms.nas._extract import attach_declared_space, extract, sub_policy, with_elastic_space
from automc.algorithms.nas._nas import ElasticNAS
from automc.algorithms.nas._resolver import ElasticResolver, nas_channels, resolver_of
from automc.algorithms.nas._space import ElasticSpace
from automc.algorithms.nas._supernet import ElasticNetwork, sandwich

__all__ = [
    "attach_declared_space",
    "ElasticNAS",
    "ElasticNetwork",
    "ElasticResolver",
    "ElasticSpace",
    "extract",
    "nas_channels",
    "recalibrate_bn",
    "resolver_of",
    "sandwich",
    "sub_policy",
    "uniform_width",
    "with_elastic_space",
]


def uniform_width(table, width: float) -> dict[str, float]:
    """NAS choices that scale every declared width by ``width`` (the uniformly shrunk network)."""
    return {f"{knob}.width": float(width) for knob in resolver_of(table).space.widths}
