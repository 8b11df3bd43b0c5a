"""Shared helpers for the dialects' fuzz tests: every path into a payload, and mutating them."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

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


def json_values(keys: list[str], samples: list[Any]) -> st.SearchStrategy[Any]:
    """Any JSON value: scalars (integers as orjson and Avro longs can carry them, short texts,
    finite floats, the dialect's `samples`) nested in lists and in objects keyed by the dialect's
    `keys` or short texts."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.text(max_size=12)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.sampled_from(samples)
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), inner, max_size=5)
        ),
        max_leaves=25,
    )
