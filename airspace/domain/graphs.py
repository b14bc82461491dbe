"""Directed graphs of definitions: segment references, journey steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def find_cycle(edges: Mapping[str, Sequence[str]]) -> list[str]:
    """The first cycle (`a → b → a` as [a, b, a]) among the nodes of `edges`, or [].

    Targets that are not keys of `edges` end a path. Depth-first without recursion, so
    a very long chain cannot exhaust the stack.
    """
    done: set[str] = set()
    for start in edges:
        if start in done:
            continue
        path: list[tuple[str, list[str]]] = [(start, list(edges[start]))]
        on_path = {start}
        while path:
            node, targets = path[-1]
            if not targets:
                path.pop()
                on_path.discard(node)
                done.add(node)
                continue
            target = targets.pop(0)
            if target in on_path:
                loop = [n for n, _ in path]
                return [*loop[loop.index(target) :], target]
            if target in edges and target not in done:
                path.append((target, list(edges[target])))
                on_path.add(target)
    return []
