"""A relu gradient folded into the max-pool gradient that feeds it.

The backward pass of ``relu -> max_pool2d`` is ``dz = select(r > 0, g, g * 0)`` over
``g = max_pool2d_grad(r, dy)``, where ``r`` (the relu output) is also the pool's input. The
pool gradient writes g in full (a zero almost everywhere), and the select streams r, g and
dz through memory again: on LeNet's first layer 3.6 MB for 46 us of a ~1 ms train step.

A window's gradient lands on its maximal element, whose value the pool kernel has just
compared; so the pool kernel can apply the relu mask itself (``attrs["_relu_mask"]``: each
contribution ``select(max > 0, dy, dy * 0)``) and write dz directly. Exact: at the element
that receives a contribution the mask tests ``r`` itself; elsewhere both forms give zero.
With overlapping windows the mask applies to each contribution rather than to their sum,
which is the same sum for r > 0 and zero otherwise.
"""
from __future__ import annotations

from dataclasses import replace

from graphc.codegen.epilogue import identity_index, kernel_reads
from graphc.codegen.kernel import Const, Load, LoopKernel, Op, TemplateKernel

__all__ = ["fold_relu_masks"]


def fold_relu_masks(kernels: list, bufs, outputs=()) -> list:
    """``kernels`` with every relu-gradient select that is the sole reader of a max-pool
    gradient over the same relu output folded into that gradient (see the module
    docstring). ``outputs``: buffers the program returns (never folded away)."""
    readers: dict[int, int] = {}
    for k in kernels:
        for b in kernel_reads(k):
            readers[b] = readers.get(b, 0) + 1
    producer = {k.output: n for n, k in enumerate(kernels)
                if isinstance(k, TemplateKernel) and k.op == "max_pool2d_grad" and
                k.epilogue is None and not k.attrs.get("_relu_mask")}
    out = list(kernels)
    drop = set()
    for n, k in enumerate(kernels):
        g = _masked_gradient(k, bufs)
        if g is None:
            continue
        grad_buf, relu_buf = g
        p = producer.get(grad_buf)
        if p is None or p > n or readers.get(grad_buf) != 1 or grad_buf in outputs:
            continue
        pool = kernels[p]
        if pool.inputs[0] != relu_buf:
            continue
        out[p] = replace(pool, output=k.stores[0].buffer,
                         attrs={**pool.attrs, "_relu_mask": True})
        drop.add(n)
    return [k for n, k in enumerate(out) if n not in drop]


def _masked_gradient(k, bufs):
    """(g, r) when ``k`` is exactly ``dz = select(r > 0, g, g * 0)`` elementwise over g's
    shape, else None."""
    if not isinstance(k, LoopKernel) or k.reduction is not None or len(k.stores) != 1:
        return None
    st = k.stores[0]
    idx = identity_index(k.shape)
    v = st.value
    if st.index != idx or not (isinstance(v, Op) and v.op == "select"):
        return None
    cond, then, other = v.args
    if not (isinstance(cond, Op) and cond.op == "greater" and _is_load(cond.args[0], idx)
            and _is_zero(cond.args[1]) and _is_load(then, idx)):
        return None
    if not (isinstance(other, Op) and other.op == "mul" and _is_load(other.args[0], idx) and
            other.args[0].buffer == then.buffer and _is_zero(other.args[1])):
        return None
    g, r = then.buffer, cond.args[0].buffer
    if tuple(bufs[g].shape) != tuple(k.shape) or tuple(bufs[r].shape) != tuple(k.shape):
        return None
    return g, r


def _is_load(e, idx) -> bool:
    return isinstance(e, Load) and e.index == idx


def _is_zero(e) -> bool:
    return isinstance(e, Const) and e.value == 0 and not isinstance(e.value, bool)
