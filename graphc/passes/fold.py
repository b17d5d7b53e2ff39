"""Constant folding: evaluate, at compile time, nodes whose inputs are all constants.

The node runs through its op's numpy reference (the interpreter's semantics, so results are
bit-identical to what the reference target computes) and is replaced by a ``constant``.
Folding proceeds in one forward walk, so whole constant subgraphs collapse at once; the
inputs that become unused are left for DCE.

Only results of at most ``FOLD_LIMIT`` elements (all outputs together) are folded. A larger
result would be stored in the IR as a literal: the printed IR (and golden files) would grow
by the tensor's size, the graph object would hold it in memory, and the compiled code would
load it from memory instead of recomputing it — ``broadcast_to(0.0, [4096, 4096])`` is one
cheap fused op but a 64 MiB literal. The limit is checked on the declared output types
before anything is evaluated, so big results cost nothing. Inputs may be large (a reduction
of a big constant to a scalar folds). Shape-only results — reshape/transpose/broadcast of a
constant — fold under the same limit: they are values like any other.

Splats — tensors whose elements are all the same bits, like the zeros and ones autodiff
makes — are kept in the canonical form ``broadcast_to(constant(scalar), shape)`` rather than
as a literal of repeated values: the IR text stays one line, and a backend fuses a scalar
broadcast into its consumer instead of loading an array. Folding treats such a splat as a
constant input (a zero-copy numpy view), produces a splat when a result is uniform, and
rewrites uniform literals (``constant`` nodes with more than one element) into splats.

Not folded: ops in ``NEVER_FOLD`` (``cut`` marks a boundary that must survive), and nodes
whose reference raises (they are left for run time, which will report the error with the
rest of the graph's context).
"""
from __future__ import annotations

import numpy as np

from graphc.ir.graph import Graph, Value
from graphc.ir.registry import get_op
from graphc.passes.rewrite import Rewriter, const_value, producer, rebuild

__all__ = ["fold", "FOLD_LIMIT", "NEVER_FOLD", "splat_scalar", "is_uniform"]

#: Largest number of result elements (over all outputs of a node) that folding produces.
FOLD_LIMIT = 1024
#: Ops never evaluated at compile time.
NEVER_FOLD = {"cut"}


def splat_scalar(v: Value):
    """The 0-d value ``s`` if ``v`` is the splat ``broadcast_to(constant(s), shape)``."""
    n = producer(v, "broadcast_to")
    if n is None:
        return None
    s = const_value(n.inputs[0])
    return s if s is not None and s.ndim == 0 else None


def is_uniform(a: np.ndarray) -> bool:
    """Whether every element of ``a`` has the same bits as the first (so NaN payloads and
    the sign of zero count; ``-0.0`` and ``0.0`` are different)."""
    if a.size == 0:
        return False
    flat = np.ascontiguousarray(a).reshape(-1)
    bits = flat.view(np.dtype(f"u{flat.dtype.itemsize}"))
    return bool((bits == bits[0]).all())


def _value_of(v: Value):
    c = const_value(v)
    if c is not None:
        return c
    s = splat_scalar(v)
    return None if s is None else np.broadcast_to(s, v.shape)


def _emit_value(rw: Rewriter, v: Value, a: np.ndarray) -> Value:
    """``a`` (already of ``v``'s dtype and shape) as a literal, or as a splat if uniform."""
    if a.size > 1 and is_uniform(a):
        s = rw.const(a.reshape(-1)[0], v.dtype)
        return rw.emit("broadcast_to", [s], {"shape": v.shape})[0]
    return rw.const(a, v.dtype)  # ``const`` copies: the literal never aliases an input


def fold(graph: Graph, limit: int = FOLD_LIMIT) -> Graph:
    """Replace constant-input nodes with small results by constants (splats for uniform
    results); returns ``graph`` itself when nothing folds."""

    def visit(rw, node, ins):
        if node.op in NEVER_FOLD:
            return None
        if node.op == "constant":
            a = node.attrs["value"]
            if a.size > 1 and is_uniform(a):
                return [_emit_value(rw, node.outputs[0], a)]
            return None
        if node.op == "broadcast_to" and splat_scalar(node.outputs[0]) is not None:
            return None  # already the canonical splat
        if sum(v.type.size for v in node.outputs) > limit:
            return None
        arrays = [_value_of(v) for v in ins]
        if any(a is None for a in arrays):
            return None
        try:
            # Same numerics as the interpreter, warnings included (a log of a negative
            # constant is NaN at run time too; no need to warn at compile time).
            with np.errstate(all="ignore"):
                outs = get_op(node.op).run_ref(arrays, node.attrs)
        except Exception:  # noqa: BLE001 — leave a failing op to run time
            return None
        if len(outs) != len(node.outputs):
            return None
        folded = []
        for v, a in zip(node.outputs, outs):
            a = np.asarray(a)
            if a.dtype != v.dtype.np:  # the interpreter casts the same way
                a = a.astype(v.dtype.np)
            if a.shape != v.shape:
                return None  # a ref disagreeing with its shape rule: not ours to paper over
            folded.append(a)
        # Emit only once every output evaluated, so a bail-out leaves no stray constants.
        return [_emit_value(rw, v, a) for v, a in zip(node.outputs, folded)]

    return rebuild(graph, visit)
