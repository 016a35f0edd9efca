"""Dependencies between jobs, in a networkx DiGraph (edge: dependency -> dependant).

An edge carries which iterations of the dependency it needs: ``None`` for the
whole job ("after": ["prep"]) or a set of indices ("after": ["sweep:3"]).
networkx is imported on the first dependency, so a run without any (the common
HTC sweep) does not pay its import time at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Set, Tuple

if TYPE_CHECKING:
    import networkx as nx

Edge = Tuple[str, str, Optional[int]]  # (dependency, dependant, iteration or None)


class Dag:
    def __init__(self) -> None:
        self._g: Optional[nx.DiGraph] = None

    @property
    def graph(self) -> nx.DiGraph:
        if self._g is None:
            import networkx as nx

            self._g = nx.DiGraph()
        return self._g

    @property
    def empty(self) -> bool:
        return self._g is None or self._g.number_of_edges() == 0

    def find_cycle(self, edges: Iterable[Edge]) -> Optional[List[str]]:
        """The jobs of a cycle among the new edges, or None (the graph is untouched).

        Only edges between jobs of one submit can close a cycle: an accepted job
        never depends on a later one, so no path leads from a new job back to it.
        """
        import networkx as nx

        g = nx.DiGraph()
        g.add_edges_from((a, b) for a, b, _ in edges)
        try:
            cycle = nx.find_cycle(g)
        except nx.NetworkXNoCycle:
            return None
        return [a for a, _ in cycle] + [cycle[0][0]]

    def add(self, edges: Iterable[Edge]) -> None:
        g = self.graph
        for dep, job, it in edges:
            if g.has_edge(dep, job):
                its = g.edges[dep, job]["its"]
                if its is None or it is None:
                    g.edges[dep, job]["its"] = None
                else:
                    its.add(it)
            else:
                g.add_edge(dep, job, its=None if it is None else {it})

    def dependants(self, job: str) -> Dict[str, Optional[Set[int]]]:
        """Direct dependants of ``job`` and which of its iterations each needs."""
        if self._g is None or job not in self._g:
            return {}
        return {succ: data["its"] for succ, data in self._g.succ[job].items()}

    def descendants(self, jobs: Iterable[str]) -> Set[str]:
        import networkx as nx

        out: Set[str] = set()
        if self._g is None:
            return out
        for j in jobs:
            if j in self._g and j not in out:
                out |= nx.descendants(self._g, j)
        return out

    def remove(self, job: str) -> None:
        if self._g is not None and job in self._g:
            self._g.remove_node(job)
