"""Shared helpers for the dialects' fuzz tests: every path into a payload, and mutating them."""

from __future__ import annotations

from typing import Any

DELETE = object()  # as a mutation's value: remove the key


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path into nested dicts and lists (not the empty path)."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*prefix, i))
    return out


def mutate(payload: Any, mutations: list[tuple[tuple[Any, ...], Any]]) -> None:
    """Set (or with DELETE remove) each path's value in place; paths that no longer exist
    after an earlier mutation are skipped."""
    for path, value in mutations:
        node: Any = payload
        try:
            for step in path[:-1]:
                node = node[step]
            if value is DELETE:
                if isinstance(node, dict):
                    node.pop(path[-1], None)
                elif isinstance(node, list):
                    del node[path[-1]]
            elif isinstance(node, dict | list):
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
