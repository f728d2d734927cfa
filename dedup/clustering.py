"""From pairwise links to clusters of records of one person. Pure (no ORM).

Plain connected components are transitive: A~B and B~C put A and C together even when A
and C are clearly two people (a shared family phone, a twin), and at scale such chains grow
into giant clusters. So:

1. components are built over the automatic links (union–find);
2. a component of two is accepted as is;
3. a larger component is rebuilt greedily, strongest link first, and a link is refused
   when joining its two groups would put together two records that *clearly differ*
   (the caller says which member pairs do: typically pairs scored below the review band or
   differing on a reliable field) or would exceed ``max_size``;
4. refused links are returned so that the caller sends them to review instead of linking.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

Pair = tuple[int, int]
DifferFunc = Callable[[list[Pair]], set[Pair]]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.members: dict[int, list[int]] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        if x not in parent:
            parent[x] = x
            self.members[x] = [x]
            return x
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if len(self.members[ra]) < len(self.members[rb]):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.members[ra].extend(self.members.pop(rb))
        return ra


@dataclass
class ClusterResult:
    clusters: list[list[int]] = field(default_factory=list)  # each sorted, size >= 2
    refused: list[int] = field(default_factory=list)  # indexes of refused links
    split_components: int = 0
    largest_component: int = 0


def components(links: Iterable[Pair]) -> list[list[int]]:
    """Plain connected components (sorted members) of ``links``."""
    uf = _UnionFind()
    for a, b in links:
        uf.union(a, b)
    return [sorted(m) for m in uf.members.values()]


def _key(a: int, b: int) -> Pair:
    return (a, b) if a < b else (b, a)


def cluster(
    links: Iterable[Pair],
    scores: Iterable[float],
    *,
    differ: DifferFunc | set[Pair] | None = None,
    max_size: int = 20,
) -> ClusterResult:
    """Clusters over ``links`` (pairs of record ids) with the guard described above.

    ``differ`` is either a set of pairs known to clearly differ or a function given the
    member pairs of a component (left < right) that returns those that clearly differ.
    """
    links = [_key(a, b) for a, b in links]
    scores = list(scores)
    if len(links) != len(scores):
        raise ValueError("links and scores must have the same length")
    uf = _UnionFind()
    for a, b in links:
        uf.union(a, b)
    by_root: dict[int, list[int]] = {}
    for index, (a, _b) in enumerate(links):
        by_root.setdefault(uf.find(a), []).append(index)

    result = ClusterResult()
    for root, edge_indexes in by_root.items():
        members = sorted(uf.members[root])
        result.largest_component = max(result.largest_component, len(members))
        if len(members) == 2:
            result.clusters.append(members)
            continue
        result.split_components += _rebuild(members, edge_indexes, links, scores, differ, max_size, result)
    result.clusters.sort()
    return result


def _rebuild(
    members: list[int],
    edge_indexes: list[int],
    links: list[Pair],
    scores: list[float],
    differ: DifferFunc | set[Pair] | None,
    max_size: int,
    result: ClusterResult,
) -> int:
    if differ is None:
        cannot: set[Pair] = set()
    elif callable(differ):
        all_pairs = [(a, b) for i, a in enumerate(members) for b in members[i + 1 :]]
        cannot = {_key(a, b) for a, b in differ(all_pairs)}
    else:
        cannot = differ
    local = _UnionFind()
    for m in members:
        local.find(m)
    refused_here = 0
    for index in sorted(edge_indexes, key=lambda i: (-scores[i], links[i])):
        a, b = links[index]
        ra, rb = local.find(a), local.find(b)
        if ra == rb:
            continue
        group_a, group_b = local.members[ra], local.members[rb]
        too_big = len(group_a) + len(group_b) > max_size
        clash = (not too_big) and any(_key(x, y) in cannot for x in group_a for y in group_b)
        if too_big or clash:
            result.refused.append(index)
            refused_here += 1
            continue
        local.union(a, b)
    groups = {}
    for m in members:
        groups.setdefault(local.find(m), []).append(m)
    result.clusters.extend(sorted(g) for g in groups.values() if len(g) >= 2)
    return 1 if refused_here else 0
