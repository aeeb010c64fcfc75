"""Coupling groups from channel index maps: which channels must be pruned together, and where
each one sits in every layer that reads it.

The probe (``automc.analysis.probe``) gives, per (producer, leaf), the producer channel at each
of the leaf's input positions. Channels that meet at one position (a residual add, a squeeze-excite
gate times its map, a ghost module's features summed with a shortcut) are one *class*: they are
kept or removed together. Producers whose channels share classes form one *coupling group*;
the group's decision is how many of its classes to keep. A LayerNorm mixes channels (the probe
stops there) but keeps their index: its output channel i joins its input position i's class,
and it follows the group (its scale and shift are sliced with it).

For every layer the group is regular or refused with the reason:

- each producer writes the same number of channels per class (a shortcut conv added to a ghost
  module writes two per class: one for the primary conv's channel, one for its cheap feature);
- each reader reads the same number of positions per class (a flattened map: ``h*w`` each; a
  DenseNet layer reads each earlier layer's classes at their offset in the concat; a channel
  shuffle followed by a split reads half of them, which pruning cannot keep in place);
- a grouped conv (RegNet, ResNeXt) reads or writes its conv groups' channels in contiguous
  blocks of classes: the group keeps the same number of classes in each block (``divisions``).

Where a layer's map is not the identity, the group lists it as runs of positions
(``CouplingGroup.maps``), which is all the pruning surgery reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from automc.analysis.layer_table import CouplingGroup
from automc.analysis.probe import MIXED, NetworkTrace

#: readers whose weights are indexed by their input channels and that mix channels
_CONSUMER_KINDS = ("conv", "dense", "groupconv")


@dataclass
class Coupling:
    """Groups, and how wide each layer's input and output are in their terms."""

    groups: list[CouplingGroup]
    #: leaf -> (positions in no group, ((group index, positions per class), ...)) for every leaf the probe saw reading
    reads: dict[str, tuple[int, tuple[tuple[int, int], ...]]] = field(default_factory=dict)
    #: producer -> (group index, channels per class)
    writes: dict[str, tuple[int, int]] = field(default_factory=dict)


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, a: int) -> int:
        parent = self.parent
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:
            parent[a], a = root, parent[a]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def runs(classes: np.ndarray) -> tuple[tuple[int, int, int, int], ...]:
    """``classes`` (class per position, -1 for none) as runs ``(position, first class, classes,
    positions per class)``: consecutive positions covering consecutive classes, each repeated."""
    out = []
    i, n = 0, len(classes)
    while i < n:
        if classes[i] < 0:
            i += 1
            continue
        rep = 1
        while i + rep < n and classes[i + rep] == classes[i]:
            rep += 1
        count = 1
        while True:
            j = i + count * rep
            block = classes[j : j + rep]
            if len(block) == rep and (block == classes[i] + count).all():
                count += 1
            else:
                break
        out.append((i, int(classes[i]), count, rep))
        i += count * rep
    return tuple(out)


def expand(runs_: tuple[tuple[int, int, int, int], ...], width: int) -> np.ndarray:
    """Inverse of ``runs``: the class at each of ``width`` positions (-1 for none)."""
    out = np.full(width, -1, dtype=np.int64)
    for pos, first, count, rep in runs_:
        out[pos : pos + count * rep] = np.repeat(np.arange(first, first + count), rep)
    return out


def couple(trace: NetworkTrace) -> Coupling:
    """Coupling groups of ``trace`` (module docstring), sorted by their first producer."""
    nodes = {n.name: n for n in trace.nodes}
    order = {n.name: n.order for n in trace.nodes}
    producers = trace.producers
    offset, total = {}, 0
    for p in producers:
        offset[p], total = total, total + nodes[p].out_channels
    uf = _UnionFind(total)
    mixed: dict[str, set[str]] = {}
    for leaf, by_producer in trace.reads.items():
        at_position: dict[int, list[int]] = {}
        for p, src in by_producer.items():
            if (src == MIXED).any():
                mixed.setdefault(p, set()).add(leaf)
            for i in np.nonzero(src >= 0)[0]:
                at_position.setdefault(int(i), []).append(offset[p] + int(src[i]))
        for ids in at_position.values():
            for other in ids[1:]:
                uf.union(ids[0], other)
    # a LayerNorm mixes channels but keeps their index: its output channel i is its input's
    for relay in (p for p in producers if nodes[p].kind == "norm"):
        for p, src in trace.reads.get(relay, {}).items():
            for i in np.nonzero(src >= 0)[0]:
                uf.union(offset[relay] + int(i), offset[p] + int(src[i]))
    root = np.array([uf.find(i) for i in range(total)], dtype=np.int64)

    # producers sharing a class are one group
    puf = _UnionFind(len(producers))
    first_owner: dict[int, int] = {}
    for j, p in enumerate(producers):
        for r in np.unique(root[offset[p] : offset[p] + nodes[p].out_channels]):
            puf.union(first_owner.setdefault(int(r), j), j)
    members: dict[int, list[str]] = {}
    for j, p in enumerate(producers):
        members.setdefault(puf.find(j), []).append(p)

    result = Coupling(groups=[])
    staged = []
    for group_producers in members.values():
        group_producers.sort(key=order.get)
        staged.append(_group(trace, nodes, order, group_producers, root, offset, mixed))
    for group, writes, reads in staged:  # a relay is no producer of its group: it follows it
        for relay in [p for p in writes if nodes[p].kind == "norm"]:
            del writes[relay]
    staged.sort(key=lambda s: order[s[0].producers[0]])
    for gi, (group, writes, reads) in enumerate(staged):
        result.groups.append(group)
        for p, per_class in writes.items():
            result.writes[p] = (gi, per_class)
        for leaf, per_class in reads.items():
            fixed, terms = result.reads.get(leaf, (nodes[leaf].in_channels, ()))
            result.reads[leaf] = (fixed - per_class * group.channels, (*terms, (gi, per_class)))
    return result


def _group(trace: NetworkTrace, nodes, order, producers: list[str], root: np.ndarray, offset: dict[str, int],
           mixed: dict[str, set[str]]):
    """One coupling group: ``(CouplingGroup, producer -> channels per class, reader -> positions
    per class)``."""
    reasons: list[tuple[str, str]] = []  # (kind, text); kinds: BLOCKED_BY
    relays = [p for p in producers if nodes[p].kind == "norm"]
    if len(relays) == len(producers):  # LayerNorms of channels no layer writes (the network input)
        reasons.append(("cannot be sliced", f"{producers[0]} normalises channels no layer writes"))
    out_roots = {p: root[offset[p] : offset[p] + nodes[p].out_channels] for p in producers}
    classes = list(dict.fromkeys(int(r) for p in producers for r in out_roots[p]))
    # readers: class of each input position, for every leaf reading one of the producers
    read_roots: dict[str, np.ndarray] = {}
    for leaf, by_producer in trace.reads.items():
        hits = [(p, src) for p, src in by_producer.items() if p in out_roots]
        if not hits:
            continue
        at = np.full(nodes[leaf].in_channels, -1, dtype=np.int64)
        for p, src in hits:
            ok = src >= 0
            at[ok] = out_roots[p][src[ok]]
        read_roots[leaf] = at
    # conv-group blocks a grouped conv imposes on the classes (reading or writing them)
    partitions: list[dict[int, int]] = []
    for leaf in [*producers, *read_roots]:
        cell = nodes[leaf].cell
        if nodes[leaf].kind != "groupconv":
            continue
        at = out_roots[leaf] if leaf in out_roots else read_roots[leaf]
        block = len(at) // cell.group
        partitions.append({int(r): i // block for i, r in enumerate(at) if r >= 0})
    divisions = 1
    if partitions:
        block_of = partitions[0]
        if any(p != block_of for p in partitions[1:]) or len(block_of) != len(classes):
            reasons.append(("grouped conv", f"grouped convs read {producers[0]}'s channels in different blocks"))
        else:
            divisions = len(set(block_of.values()))
            sizes = np.bincount(list(block_of.values()))
            if (sizes != sizes[0]).any():
                reasons.append(("grouped conv", f"grouped conv blocks of {producers[0]} differ in size"))
            classes.sort(key=lambda r: block_of[r])
    index = {r: i for i, r in enumerate(classes)}
    n = len(classes)

    def per_class(roots: np.ndarray, who: str, what: str) -> tuple[int, np.ndarray]:
        cls = np.array([index.get(int(r), -1) if r >= 0 else -1 for r in roots], dtype=np.int64)
        counts = np.bincount(cls[cls >= 0], minlength=n)
        if (counts != counts[0]).any() and what == "writes":
            reasons.append(("widths differ", f"{who} writes {producers[0]}'s channels unevenly (its channels and the "
                                             "ones they meet at element-wise ops do not pair up)"))
        elif (counts != counts[0]).any():
            reasons.append(("re-indexed", f"{who} reads {producers[0]}'s channels unevenly (a slice, split or "
                                          "shuffle between layers)"))
        return int(counts[0]), cls

    writes, maps = {}, []
    for p in producers:
        f, cls = per_class(out_roots[p], p, "writes")
        writes[p] = f
        if not (f == 1 and np.array_equal(cls, np.arange(n))) and p not in relays:
            maps.append((p, "out", runs(cls)))
    reads, consumers, followers = {}, [], []
    for leaf, at in read_roots.items():
        node = nodes[leaf]
        f, cls = per_class(at, leaf, "reads")
        reads[leaf] = f
        kind = node.kind
        if kind in _CONSUMER_KINDS:
            consumers.append(leaf)
        elif kind in ("bn", "dwconv", "norm"):
            followers.append(leaf)
        elif kind == "other":
            reasons.append(("cannot be sliced", f"{leaf} ({type(node.cell).__name__}) cannot be sliced by channel"))
        if kind in (*_CONSUMER_KINDS, "bn", "dwconv", "norm"):
            identity = (len(cls) == n * f and np.array_equal(cls, np.repeat(np.arange(n), f))
                        and (f == 1 or kind == "dense"))
            if not identity:
                maps.append((leaf, "in", runs(cls)))
        for p in producers:
            if leaf in mixed.get(p, ()):
                reasons.append(("re-indexed", f"channels of {p} are mixed by a non-layer op before {leaf}"))
    for p in producers:
        if p in trace.output_aligned:
            reasons.append(("output", f"{p} feeds the network output"))
    for name in [*producers, *consumers, *followers]:
        if nodes[name].calls > 1:
            reasons.append(("shared weights", f"{name} is called {nodes[name].calls} times (shared weights)"))
    if n % divisions or (divisions > 1 and n // divisions < 1):
        reasons.append(("grouped conv", f"{n} channels do not split into {divisions} conv groups"))
    if len(relays) < len(producers):
        producers = [p for p in producers if p not in relays]
        followers += [r for r in relays if r not in followers]
    group = CouplingGroup(
        name=producers[0],
        channels=n,
        producers=tuple(producers),
        consumers=tuple(sorted(consumers, key=order.get)),
        followers=tuple(sorted(followers, key=order.get)),
        prunable=not reasons,
        reason="; ".join(dict.fromkeys(text for _, text in reasons)),
        blocked_by=tuple(dict.fromkeys(kind for kind, _ in reasons)),
        divisions=divisions,
        maps=tuple(sorted(maps, key=lambda m: (order[m[0]], m[1]))),
    )
    return group, writes, reads
