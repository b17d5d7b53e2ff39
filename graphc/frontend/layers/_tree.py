"""Nested-structure helpers (lists, tuples, dicts of tensors) for layer calls and models.

Layers are called with one tensor, a list of tensors (merge layers) or a dict (multi-input
models); these helpers flatten such a structure to a list and rebuild it, the way Keras'
``tree`` module does (dicts in sorted-key order, so flattening is deterministic).
"""
from __future__ import annotations

from typing import Any, Callable


def _is_nest(x) -> bool:
    return isinstance(x, (list, tuple, dict))


def flatten(struct) -> list:
    """Leaves of ``struct`` in order (dict values by sorted key); ``None`` is a leaf."""
    if isinstance(struct, dict):
        out = []
        for k in sorted(struct):
            out.extend(flatten(struct[k]))
        return out
    if isinstance(struct, (list, tuple)):
        out = []
        for v in struct:
            out.extend(flatten(v))
        return out
    return [struct]


def pack_as(struct, leaves: list):
    """Rebuild ``struct``'s shape from ``leaves`` (the inverse of ``flatten``)."""
    it = iter(leaves)

    def rec(s):
        if isinstance(s, dict):
            vals = {k: rec(s[k]) for k in sorted(s)}
            return {k: vals[k] for k in s}          # keep the user's key order
        if isinstance(s, (list, tuple)):
            vals = [rec(v) for v in s]
            return type(s)(vals) if isinstance(s, tuple) and not hasattr(s, "_fields") else vals
        return next(it)

    return rec(struct)


def map_structure(fn: Callable[[Any], Any], struct):
    return pack_as(struct, [fn(x) for x in flatten(struct)])
