"""Evaluates a ``Program`` (the kernel form) with numpy, vectorized over each kernel's
iteration space. It checks the lowering against the graph interpreter independently of any
backend, and gives backend tests a per-kernel oracle."""
from __future__ import annotations

import numpy as np

from graphc.codegen.kernel import (Acc, Const, Guard, IndexValue, IxAdd, IxDiv, IxMod, IxMul,
                                   Lit, Load, LoopKernel, Op, Program, Random, TemplateKernel,
                                   Var)
from graphc.ir.registry import get_op


def eval_index(e, grid):
    """The value of index expression ``e`` with ``grid[axis]`` for each variable (ints
    or numpy arrays; floor division, as IxDiv documents)."""
    if isinstance(e, Var):
        return grid[e.axis]
    if isinstance(e, Lit):
        return np.int64(e.value)
    if isinstance(e, IxAdd):
        return eval_index(e.a, grid) + eval_index(e.b, grid)
    if isinstance(e, IxMul):
        return eval_index(e.a, grid) * e.c
    if isinstance(e, IxDiv):
        return eval_index(e.a, grid) // e.c
    if isinstance(e, IxMod):
        return eval_index(e.a, grid) % e.c
    raise TypeError(e)


class _Eval:
    def __init__(self, mem, grid, shape, acc=None):
        self.mem, self.grid, self.shape, self.acc = mem, grid, shape, acc
        self.memo = {}

    def __call__(self, e):
        hit = self.memo.get(id(e))
        if hit is None:
            hit = self.memo[id(e)] = np.broadcast_to(self._eval(e), self.shape)
        return hit

    def _eval(self, e):
        if isinstance(e, Load):
            buf = self.mem[e.buffer].reshape(-1)
            idx = np.clip(eval_index(e.index, self.grid), 0, max(buf.size - 1, 0))  # guarded lanes
            return buf[idx]
        if isinstance(e, Const):
            return np.array(e.value, dtype=e.dtype.np)
        if isinstance(e, Op):
            args = [self(a) for a in e.args]
            out = get_op(e.op).run_ref(args, e.attrs)[0]
            return np.asarray(out).astype(e.dtype.np)
        if isinstance(e, Guard):
            cond = np.ones(self.shape, bool)
            for ix, lo, hi in e.conds:
                v = eval_index(ix, self.grid)
                cond = cond & (v >= lo) & (v < hi)
            return np.where(cond, self(e.then), self(e.otherwise))
        if isinstance(e, IndexValue):
            return np.asarray(eval_index(e.index, self.grid)).astype(e.dtype.np)
        if isinstance(e, Random):
            from graphc.ir.ops.misc import random_bits, random_key
            seed, counter = int(self(e.seed).reshape(-1)[0]), int(self(e.counter).reshape(-1)[0])
            flat = np.broadcast_to(eval_index(e.flat, self.grid), self.shape).astype(np.int64)
            n = int(flat.max()) + 1 if flat.size else 0
            bits = random_bits(random_key(seed, counter, e.salt), n)
            return ((bits[flat] >> np.uint32(8)).astype(np.float64) * 2.0 ** -24).astype(e.dtype.np)
        if isinstance(e, Acc):
            return self.acc
        raise TypeError(e)


def _run_loop(k: LoopKernel, mem):
    red = k.reduction
    acc = None
    if red is not None:
        full = tuple(k.shape) + tuple(red.extents)
        grid = np.ogrid[tuple(slice(0, d) for d in full)] if full else []
        vals = _Eval(mem, grid, full)(red.value)
        flat = vals.reshape(tuple(k.shape) + (-1,))
        if red.combiner == "sum":
            acc = flat.sum(axis=-1, dtype=red.dtype.np)
        elif red.combiner == "max":
            acc = flat.max(axis=-1)
        else:
            acc = flat.argmax(axis=-1).astype(np.int64)
    grid = np.ogrid[tuple(slice(0, d) for d in k.shape)] if k.shape else []
    ev = _Eval(mem, grid, tuple(k.shape), acc)
    for st in k.stores:
        val = ev(st.value)
        idx = np.broadcast_to(eval_index(st.index, grid), tuple(k.shape))
        mem[st.buffer].reshape(-1)[idx.reshape(-1)] = val.reshape(-1).astype(mem[st.buffer].dtype)


def run_program(p: Program, inputs, params) -> list[np.ndarray]:
    mem = {}
    for b in p.buffers:
        if b.kind == "const":
            mem[b.id] = np.array(b.data, dtype=b.dtype.np).reshape(b.shape)
        else:
            mem[b.id] = np.zeros(b.shape, b.dtype.np)
    for bid, a in zip(p.inputs, inputs):
        mem[bid] = np.array(a, dtype=p.buffers[bid].dtype.np).reshape(p.buffers[bid].shape)
    for bid, a in zip(p.params, params):
        mem[bid] = np.array(a, dtype=p.buffers[bid].dtype.np).reshape(p.buffers[bid].shape)
    for k in p.kernels:
        if isinstance(k, TemplateKernel):
            out = get_op(k.op).run_ref([mem[i] for i in k.inputs], k.attrs)[0]
            mem[k.output][...] = np.asarray(out).reshape(mem[k.output].shape)
        else:
            _run_loop(k, mem)
    return [mem[b].copy() for b in p.outputs]
