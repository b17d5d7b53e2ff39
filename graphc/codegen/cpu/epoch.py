"""The epoch entry: many train steps in one native call, no Python between them.

``void graphc_epoch_<key>(ptr step, ptr table, ptr sources, ptr index, i64 nsteps,
ptr logs)`` runs, for s in 0..nsteps:

1. row gathers: for every gathered input g, rows ``index[s*B .. s*B+B)`` of the full array
   ``sources[g]`` are copied into the step's input buffer ``table[slot_g]`` (B = the
   step's batch size; the buffers the step reads, so the step itself is unchanged);
2. the step: ``step(table)``, the train step's exported entry (program.py), called
   through its address — the step's machine code is shared, not recompiled;
3. logs: each log output's bytes are appended to the step's row of ``logs``;
4. state: each new-state output the step did not write in place is copied into its
   param's buffer, which is what the per-step runtime does in Python after each call
   (the optimizer's step counter, and with it Adam's bias correction and the dropout
   stream, advance per step exactly as there).

Everything the loop needs to know statically — batch size, table slots, row sizes, log
sizes, state copies — is an ``EpochSpec``; the module is small (one loop, memcpys) and is
compiled once per spec and kept in the compile cache (cache.py) like a step's code.
"""
from __future__ import annotations

import ctypes
import hashlib
from dataclasses import dataclass

from llvmlite import ir

from graphc.codegen.cpu import cache, jit
from graphc.codegen.cpu.loops import I64, I8, PTR, VOID, counted_loop
from graphc.codegen.cpu.parallel import _call_indirect

_STEP_FN_TYPE = ir.FunctionType(VOID, [PTR])


@dataclass(frozen=True)
class EpochSpec:
    """What an epoch entry does around the step (see the module docstring)."""
    batch: int                                  # rows per step
    gathers: tuple                              # (table slot, row bytes) per gathered input
    logs: tuple                                 # (table slot, bytes) per log output
    copies: tuple                               # (param slot, output slot, bytes) per state

    @property
    def log_row_bytes(self) -> int:
        return sum(n for _, n in self.logs)

    @property
    def symbol(self) -> str:
        return "graphc_epoch_" + hashlib.sha256(repr(self).encode()).hexdigest()[:16]


def build_epoch_module(spec: EpochSpec) -> ir.Module:
    """The LLVM module of the epoch entry for ``spec`` (exported as ``spec.symbol``)."""
    module = jit.ir_module(spec.symbol)
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR, PTR, PTR, PTR, I64, PTR]),
                     name=spec.symbol)
    step, table, sources, index, nsteps, logs = fn.args
    for a, n in zip(fn.args, ("step", "table", "sources", "index", "nsteps", "logs")):
        a.name = n
    memcpy = module.declare_intrinsic("llvm.memcpy", [PTR, PTR, I64])
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    def at(base, offset):
        return b.gep(base, [offset], inbounds=True, source_etype=I8)

    def slot(k):
        return b.load(b.gep(table, [I64(k)], inbounds=True, source_etype=PTR), typ=PTR)

    def copy(dst, src, nbytes):
        b.call(memcpy, [dst, src, I64(nbytes), ir.Constant(ir.IntType(1), 0)])

    B = spec.batch
    with counted_loop(b, fn, nsteps, "step") as s:
        first = b.mul(s, I64(B))
        for g, (k, row) in enumerate(spec.gathers):
            src = b.load(b.gep(sources, [I64(g)], inbounds=True, source_etype=PTR), typ=PTR)
            dst = slot(k)
            with counted_loop(b, fn, B, f"gather{g}") as r:
                i = b.load(b.gep(index, [b.add(first, r)], inbounds=True, source_etype=I64),
                           typ=I64)
                copy(at(dst, b.mul(r, I64(row))), at(src, b.mul(i, I64(row))), row)
        _call_indirect(b, step, [table], _STEP_FN_TYPE)
        off = b.mul(s, I64(spec.log_row_bytes))
        for k, nbytes in spec.logs:
            copy(at(logs, off), slot(k), nbytes)
            off = b.add(off, I64(nbytes))
        for dst, src, nbytes in spec.copies:
            copy(slot(dst), slot(src), nbytes)
    b.ret_void()
    return module


def load_epoch_entry(spec: EpochSpec):
    """The compiled epoch entry for ``spec``: (ctypes function, its module), from the
    compile cache (in process, then on disk) or compiled and stored."""
    key = cache.make_key("epoch", repr(spec))
    hit = cache.memory_get(key)
    if hit is None:
        value = cache.disk_load(key)
        try:
            hit = cache.ObjectModule(value["object"]) if value is not None else None
        except Exception:       # an unusable entry: compile afresh (and overwrite)
            cache.STATS["corrupt"] += 1
            hit = None
        if hit is None:
            # O1: the loop only moves bytes around the step call; O3 would fully unroll
            # every B-row gather for nothing and take ~3x as long to compile.
            obj, _, t = cache.compile_object(build_epoch_module(spec), opt_level=1)
            cache.disk_store(key, {"object": obj})
            hit = cache.ObjectModule(obj, t)
        cache.memory_put(key, hit)
    fn = hit.cfunc(spec.symbol, None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                   ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)
    return fn, hit
