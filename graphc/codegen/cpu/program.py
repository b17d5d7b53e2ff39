"""A whole ``Program`` → one LLVM module with ONE exported entry ``void graphc_<name>(ptr
%table)``, where ``table[i]`` is the base pointer of buffer i (then the workspace templates
use as scratch, then temps templates add). The entry calls every kernel in program order;
constant buffers are module globals, never in the table. GEMMs and the thread pool are
called by symbol (``ProgramModule.ensure_symbols`` compiles/registers them).

Before rendering, program-level rewrites (the kernel form stays the contract):
- an elementwise loop that is the sole reader of a matmul/conv output folds into it as its
  epilogue (graphc/codegen/epilogue.py; bias, activation, residual, relu' masks);
- a 2-D transpose only matmuls read is not materialized: the matmul reads its source in
  place (``fold_transposes``; the backward pass's X^T and W^T);
- consecutive elementwise kernels over the same iteration space merge into one
  multi-output kernel, a value stored and re-read at the same index is forwarded, and a
  temp nobody reads any more is not stored (``fuse_loop_kernels``; e.g. Adam's m, v and
  weight passes become one pass, bias + activation one).

A kernel whose work is large enough runs on all cores: its outermost non-unit parallel
axis (conv/pool: their split axis) is cut into T static, contiguous chunks run by
``graphc_parallel_for`` (parallel.py). The partition depends only on the kernel and T,
and every element is computed by one chunk in a fixed order, so results are bit-identical
run to run (and across T: no reduction is ever split).
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
from llvmlite import ir

from graphc.codegen.kernel import (Buffer, Guard, Load, LoopKernel, Op, Program, Random, Store,
                                   TemplateKernel, Var, flatten)
from graphc.ir.dtypes import DType
from graphc.codegen.cpu.dedupe import kernel_key
from graphc.codegen.cpu import loops, templates
from graphc.codegen.cpu.colsum import split_column_sums
from graphc.codegen.cpu.relumask import fold_relu_masks
from graphc.codegen.epilogue import identity_index
from graphc.codegen.cpu.loops import I8, I64, PTR, VOID

# Smallest work (loops.kernel_cost units, ~simple ops) per task for a kernel to be split:
# a region costs ~0.3 us when the pool's workers are spinning (they spin ~200 us after a
# task), 13-28 us when one must be woken; ~64K simple ops are ~10-30 us of one core.
MIN_COST_PER_TASK = 1 << 16
# ... unless the step's buffers outgrow one core's L2 cache: then most operands come from L3
# and its small elementwise kernels wait on cache misses (stores into temps last touched a
# step ago), which two cores overlap twice as well as one. A 4x lower threshold, interleaved
# A/B on the 2-core Zen 4 VM: W3 (LSTM, ~3 MB of buffers) 1235 -> 1033 us per train step,
# W1 and W2 unchanged; W4 (~100 KB, all in L2) got slower with it (fit 0.0326 -> 0.0377 s),
# hence the condition.
MIN_COST_PER_TASK_OUT_OF_L2 = 1 << 14


@dataclass
class ProgramModule:
    """The LLVM module of a program and what the runtime needs to call it."""
    module: ir.Module
    entry: str
    buffers: list               # the program's buffers, the workspace, then template temps
    workspace_slot: int
    workspace_bytes: int
    threads: int
    stats: dict = field(default_factory=dict)
    gemms: list = field(default_factory=list)   # (GemmSpec, threads) the module calls
    aliases: dict = field(default_factory=dict)  # output buffer -> param updated in place
    # (kernel, its pieces) in execution order and {transposed buffer: source} as rendered:
    # what the memory planner (memplan.py) derives buffer live ranges from.
    schedule: list = field(default_factory=list)
    transposed: dict = field(default_factory=dict)

    def ensure_symbols(self) -> None:
        """Compile/register what the module calls by name (GEMMs, the thread pool): call
        before JIT-compiling it."""
        from graphc.codegen.cpu import cache
        cache.ensure_gemms(self.gemms)      # also the thread pool's symbols

    @property
    def nslots(self) -> int:
        """Length of the pointer table: one slot per buffer (consts unused)."""
        return len(self.buffers)


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name) or "program"


class StepContext:
    """What a template's ``NativeStep`` gets: the module, the step function's builder,
    buffer pointers, the workspace, and helpers for functions and loops."""

    def __init__(self, module, builder, table, buffers, const_ptrs, workspace_slot, threads):
        self.module, self.builder, self.table = module, builder, table
        self.buffers, self.const_ptrs = buffers, const_ptrs
        self.workspace_slot = workspace_slot
        self.threads = threads
        self.gemms: dict = {}
        self._tables = 0
        self._fns = 0

    def ptr(self, bid: int, builder=None, table=None):
        if bid in self.const_ptrs:
            return self.const_ptrs[bid]
        b = builder or self.builder
        t = table if table is not None else self.table
        return b.load(b.gep(t, [I64(bid)], inbounds=True, source_etype=PTR), typ=PTR)

    @property
    def workspace(self):
        return self.ptr(self.workspace_slot)

    def const_table(self, data: np.ndarray):
        self._tables += 1
        return const_global(self.module, f"table{self._tables}", data)

    @contextmanager
    def for_range(self, n: int):
        with self.loop(self.builder, self.builder.function, n) as i:
            yield i

    def loop(self, b, fn, n):
        """``for i in range(n)`` (n an int or i64 value) at ``b``'s position in ``fn``."""
        return loops.counted_loop(b, fn, n)

    def function(self, name, buffer_ids):
        """An internal ``void(ptr noalias ...)`` function, one pointer per buffer id."""
        self._fns += 1
        fn = ir.Function(self.module, ir.FunctionType(VOID, [PTR] * len(buffer_ids)),
                         name=f"{name}.native{self._fns}")
        fn.linkage = "internal"
        fn.attributes.add("noinline")
        for a, bid in zip(fn.args, buffer_ids):
            a.add_attribute("noalias")
            a.name = f"b{bid}"
        return fn

    def fn_builder(self, fn):
        return ir.IRBuilder(fn.append_basic_block("entry"))

    def call(self, fn, buffer_ids):
        self.builder.call(fn, [self.ptr(b) for b in buffer_ids])


def const_global(module, name, data: np.ndarray):
    """A 64-byte aligned internal constant holding ``data``'s bytes; its ``ptr``."""
    raw = np.ascontiguousarray(data).tobytes()
    ty = ir.ArrayType(I8, max(len(raw), 1))
    g = ir.GlobalVariable(module, ty, name)
    g.initializer = ir.Constant(ty, bytearray(raw or b"\0"))
    g.linkage = "internal"
    g.global_constant = True
    g.align = 64
    g.type = PTR        # llvmlite 0.50 gives globals a typed pointer; we use opaque ptrs
    return g


def build_program_module(p: Program, *, threads: int | None = None,
                         name: str | None = None, profile: bool = False,
                         fuse: bool = True, inplace=None) -> ProgramModule:
    """Render ``p`` (see the module docstring). ``inplace``: {output buffer: param buffer}
    pairs to update in place where legal (``plan_inplace``; the granted ones are in
    ``ProgramModule.aliases``). ``profile``: also export
    ``<entry>_profile`` (an i64 array) accumulating the TSC cycles of each piece, in the
    order of ``stats["pieces"]`` (a tool for finding slow kernels, not for production)."""
    from graphc.codegen.cpu import jit, parallel
    threads = parallel.default_threads() if threads is None else max(1, int(threads))
    entry_name = "graphc_" + _sanitize(name or p.name)
    module = jit.ir_module(entry_name)
    const_ptrs = {}
    for buf in p.buffers:
        if buf.kind == "const":
            data = np.asarray(buf.data, dtype=buf.dtype.np).reshape(buf.shape)
            const_ptrs[buf.id] = const_global(module, f"const.b{buf.id}", data)
    entry = ir.Function(module, ir.FunctionType(VOID, [PTR]), name=entry_name)
    entry.args[0].name = "table"
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    table = entry.args[0]
    ws_slot = len(p.buffers)
    bufs = list(p.buffers) + [Buffer(ws_slot, (0,), DType.f32, "workspace", "workspace")]

    def new_temp(shape, dtype, name=""):
        """A buffer a template needs for itself (e.g. a re-laid-out operand): in the arena."""
        buf = Buffer(len(bufs), tuple(shape), dtype, "temp", name)
        bufs.append(buf)
        return buf
    ctx = StepContext(module, b, table, bufs, const_ptrs, ws_slot, threads)
    pfor = None
    if fuse:
        # Epilogues into contractions first (needs the unmerged loop kernels); the
        # folded-away intermediate buffers stay in the table, empty.
        from graphc.codegen.epilogue import fuse_epilogues
        p = fuse_epilogues(p, templates.epilogue_supported)
        bufs[:len(p.buffers)] = p.buffers
    if fuse:
        folded = fold_relu_masks(p.kernels, bufs, set(p.outputs))
        if len(folded) != len(p.kernels):
            p = replace(p, kernels=folded)
    skip, transposed = fold_transposes(p.kernels, bufs)
    kernels = fuse_loop_kernels(p.kernels, bufs, transposed, skip) if fuse else \
        [k for n, k in enumerate(p.kernels) if n not in skip]
    if fuse:
        kernels = split_column_sums(kernels, bufs, new_temp)
    aliases = {}
    if inplace:
        kernels, transposed, aliases = plan_inplace(kernels, bufs, transposed, inplace)
    stats = {"loop_kernels": 0, "parallel_kernels": 0, "native_steps": 0, "templates": {},
             "pieces": [], "folded_transposes": len(skip)}
    min_task_cost = min_cost_per_task(bufs)
    workspace = 0
    schedule = []
    built: dict = {}     # structural kernel key -> KernelFunction (see dedupe.py)
    if profile:
        scratch = list(bufs)
        nmax = sum(len(templates.expand(k, scratch, _scratch_temp(scratch), transposed))
                   if isinstance(k, TemplateKernel) else 1 for k in kernels)
        pty = ir.ArrayType(I64, nmax)
        prof = ir.GlobalVariable(module, pty, f"{entry_name}_profile")
        prof.initializer = ir.Constant(pty, None)
        prof.type = PTR
        rdtsc = loops.declare(module, "llvm.readcyclecounter", I64, [])
        t_last = b.call(rdtsc, [])

    def tick():
        nonlocal t_last
        if profile:
            now = b.call(rdtsc, [])
            slot = b.gep(prof, [I64(len(stats["pieces"]) - 1)], inbounds=True, source_etype=I64)
            b.store(b.add(b.load(slot, typ=I64), b.sub(now, t_last)), slot)
            t_last = now
    for kernel in kernels:
        if isinstance(kernel, TemplateKernel):
            pieces = templates.expand(kernel, bufs, new_temp, transposed)
            stats["templates"][kernel.op] = stats["templates"].get(kernel.op, 0) + 1
        else:
            pieces = [kernel]
        schedule.append((kernel, pieces))
        for piece in pieces:
            stats["pieces"].append(piece.name)
            if isinstance(piece, templates.NativeStep):
                stats["native_steps"] += 1
                workspace = max(workspace, piece.workspace_bytes)
                piece.emit(ctx)
                tick()
                continue
            if isinstance(piece, templates.ExternKernel):
                stats["extern_kernels"] = stats.get("extern_kernels", 0) + 1
                fn = piece.build(module, f"{entry_name}.{piece.name}")
                fn.linkage = "internal"
                kf = loops.KernelFunction(fn, list(piece.inputs) + [piece.output],
                                          fn.split_extent)
                cost = piece.flops // 4     # vectorized FMA work: cheaper per flop than loops
            else:
                assert isinstance(piece, LoopKernel)
                stats["loop_kernels"] += 1
                reads, writes = loops.buffers_used(piece)
                args = sorted((reads | writes) - set(const_ptrs))
                key = kernel_key(piece, args)
                kf = built.get(key)
                if kf is None:
                    kf = built[key] = loops.build_loop_kernel(
                        module, f"{entry_name}.{piece.name}", piece, bufs, const_ptrs)
                else:   # the same code on other buffers (e.g. the next RNN time step)
                    stats["shared_kernels"] = stats.get("shared_kernels", 0) + 1
                    kf = loops.KernelFunction(kf.fn, args, kf.extent)
                cost = loops.kernel_cost(piece)
            ntasks = min(threads, kf.extent, cost // min_task_cost)
            if ntasks >= 2:
                if pfor is None:
                    pfor = parallel.declare_parallel_for(module)
                task = _task_function(module, kf, ctx, ntasks)
                b.call(pfor, [task, table, I64(ntasks)])
                stats["parallel_kernels"] += 1
            else:
                b.call(kf.fn, [ctx.ptr(bid) for bid in kf.arg_buffers] +
                       [I64(0), I64(kf.extent)])
            tick()
    b.ret_void()
    gemms = [(spec, t) for (_, t), spec in ctx.gemms.items()]
    return ProgramModule(module, entry_name, bufs, ws_slot, workspace, threads, stats, gemms,
                         aliases, schedule, transposed)


def _transpose_source(k, bufs):
    """The buffer ``k`` transposes, if ``k`` is exactly ``out[i, j] = src[j, i]`` (2-D)."""
    if not isinstance(k, LoopKernel) or k.reduction is not None or len(k.stores) != 1:
        return None
    st = k.stores[0]
    out, v = bufs[st.buffer], st.value
    if out.kind != "temp" or len(out.shape) != 2 or tuple(k.shape) != out.shape or \
            not isinstance(v, Load):
        return None
    src = bufs[v.buffer]
    if src.shape != (out.shape[1], out.shape[0]) or src.dtype != out.dtype:
        return None
    if st.index != flatten([Var(0), Var(1)], out.shape) or \
            v.index != flatten([Var(1), Var(0)], src.shape):
        return None
    return src.id


def fold_transposes(kernels, bufs):
    """Transposes whose only readers are 2-D matmuls are not materialized: the GEMM reads
    the source in place with a transposed-operand flag (its packing does the transposition
    for free), the loop path with swapped indices. Returns (indices of kernels to skip, {transposed buffer: source buffer})."""
    candidates = {}
    for n, k in enumerate(kernels):
        src = _transpose_source(k, bufs)
        if src is not None:
            candidates[k.stores[0].buffer] = (n, src)
    if not candidates:
        return set(), {}
    ok = dict.fromkeys(candidates, True)
    for k in kernels:
        if isinstance(k, TemplateKernel):
            # Both matmul paths (GEMM flags, loop indices) read a 2-D transpose in place.
            inplace = k.op == "matmul" and len(bufs[k.output].shape) == 2
            for i in k.inputs:
                if i in ok and not inplace:
                    ok[i] = False
            for i in _epilogue_reads(k) & ok.keys():
                ok[i] = False
        else:
            reads, _ = loops.buffers_used(k)
            for i in reads & ok.keys():
                ok[i] = False
    folded = {b: candidates[b][1] for b, good in ok.items() if good}
    return {candidates[b][0] for b in folded}, folded


def _epilogue_reads(k):
    from graphc.codegen.epilogue import expr_reads
    return expr_reads(k.epilogue) if k.epilogue is not None else set()


def _reads(k, transposed):
    if isinstance(k, TemplateKernel):
        return {transposed.get(i, i) for i in k.inputs} | _epilogue_reads(k)
    return loops.buffers_used(k)[0]


def fuse_loop_kernels(kernels, bufs, transposed, skip=()):
    """Merge consecutive elementwise loop kernels over the same iteration space into one
    multi-output kernel, so each tensor is read once: when the later kernel reads what the
    earlier one stores (at the very same index), the stored expression is used directly
    (the Adam update's m, v and parameter passes become one; bias add + activation become
    one), and loads of the same element are shared. A store nobody reads any more (a temp
    only the merged-in kernel used) is dropped. Returns the new kernel list."""
    kernels = [k for n, k in enumerate(kernels) if n not in skip]
    out = []
    for k in kernels:
        prev = out[-1] if out else None
        merged = _merge(prev, k) if isinstance(prev, LoopKernel) and \
            isinstance(k, LoopKernel) else None
        if merged is None:
            out.append(k)
        else:
            out[-1] = merged
    # Dead temp stores.
    readers: dict = {}
    for n, k in enumerate(out):
        for bid in _reads(k, transposed):
            readers.setdefault(bid, set()).add(n)
    for n, k in enumerate(out):
        if isinstance(k, LoopKernel) and len(k.stores) > 1:
            keep = [st for st in k.stores if bufs[st.buffer].kind != "temp" or
                    readers.get(st.buffer, set()) - {n}]
            if keep and len(keep) < len(k.stores):
                out[n] = LoopKernel(k.name, k.shape, keep, k.reduction)
    return out


def _merge(a: LoopKernel, b: LoopKernel):
    """``a`` and ``b`` as one kernel (a's stores first), or None if that is not exact."""
    if a.reduction is not None or b.reduction is not None or tuple(a.shape) != tuple(b.shape):
        return None
    ident = identity_index(a.shape)
    written = {}
    for st in a.stores:
        if st.index != ident:
            return None
        written[st.buffer] = st.value
    b_reads, b_writes = loops.buffers_used(b)
    a_reads, _ = loops.buffers_used(a)
    if b_writes & (a_reads | set(written)):
        return None
    # Every read of a's outputs in b must be of the same element b's iteration computes.
    loads = {}
    for e in loops.iter_exprs(loops.kernel_roots(a)):
        if isinstance(e, Load):
            loads.setdefault((e.buffer, e.index), e)
    for e in loops.iter_exprs(loops.kernel_roots(b)):
        if isinstance(e, Load) and e.buffer in written and e.index != ident:
            return None
        if isinstance(e, loops.DynLoad) and e.buffer in written:
            return None
    memo = {}

    def sub(e):
        hit = memo.get(id(e))
        if hit is not None:
            return hit
        if isinstance(e, Load):
            if e.buffer in written:
                r = written[e.buffer]
                if r.dtype != e.dtype:
                    r = Op("cast", (r,), e.dtype, {"dtype": e.dtype})
            else:
                r = loads.setdefault((e.buffer, e.index), e)
        elif isinstance(e, Op):
            r = Op(e.op, tuple(sub(x) for x in e.args), e.dtype, e.attrs)
        elif isinstance(e, Guard):
            r = Guard(e.conds, sub(e.then), sub(e.otherwise), e.dtype)
        elif isinstance(e, Random):
            r = Random(sub(e.seed), sub(e.counter), e.salt, e.flat, e.dtype)
        elif isinstance(e, loops.DynLoad):
            r = loops.DynLoad(e.buffer, e.base, sub(e.dyn), e.stride, e.bound, e.dtype)
        else:
            r = e
        memo[id(e)] = r
        return r
    stores = list(a.stores) + [Store(st.buffer, st.index, sub(st.value)) for st in b.stores]
    return LoopKernel(f"{a.name}+{b.name.split('_', 1)[-1]}", a.shape, stores)


def plan_inplace(kernels, bufs, transposed, requests):
    """Grant the {output: param} in-place requests that are legal, rewriting the kernels so
    the output is stored straight into the param's buffer (optimizer state: no new buffer,
    no copy back). Legal when the one kernel writing the output is elementwise over it and
    reads the param only at the element it writes, and nothing after it reads the param's
    old value. Later reads of the output then read the param buffer (its new value).
    Returns (kernels, transposed, granted)."""
    writer = {}
    for n, k in enumerate(kernels):
        if isinstance(k, LoopKernel):
            for st in k.stores:
                writer[st.buffer] = n
    granted = {}
    for ob, pb in requests.items():
        n = writer.get(ob)
        if n is None or bufs[ob].shape != bufs[pb].shape or bufs[ob].dtype != bufs[pb].dtype:
            continue
        k = kernels[n]
        ident = identity_index(k.shape)
        if k.reduction is not None or tuple(k.shape) != bufs[ob].shape or any(
                st.buffer == ob and st.index != ident for st in k.stores):
            continue
        if any(pb in _reads(later, transposed) for later in kernels[n + 1:]):
            continue
        if any((isinstance(e, Load) and e.buffer == pb and e.index != ident) or
               (isinstance(e, loops.DynLoad) and e.buffer == pb)
               for e in loops.iter_exprs(loops.kernel_roots(k))):
            continue
        granted[ob] = pb
    if not granted:
        return kernels, transposed, {}
    out = []
    for k in kernels:
        if isinstance(k, TemplateKernel):
            if any(i in granted for i in k.inputs) or k.output in granted or \
                    _epilogue_reads(k) & granted.keys():
                from graphc.codegen.epilogue import rename_loads
                ep = rename_loads(k.epilogue, granted) if k.epilogue is not None else None
                k = TemplateKernel(k.name, k.op, [granted.get(i, i) for i in k.inputs],
                                   granted.get(k.output, k.output), k.attrs, ep)
            out.append(k)
            continue
        memo = {}

        def sub(e):
            hit = memo.get(id(e))
            if hit is not None:
                return hit
            if isinstance(e, Load):
                r = Load(granted[e.buffer], e.index, e.dtype) if e.buffer in granted else e
            elif isinstance(e, Op):
                r = Op(e.op, tuple(sub(x) for x in e.args), e.dtype, e.attrs)
            elif isinstance(e, Guard):
                r = Guard(e.conds, sub(e.then), sub(e.otherwise), e.dtype)
            elif isinstance(e, Random):
                r = Random(sub(e.seed), sub(e.counter), e.salt, e.flat, e.dtype)
            elif isinstance(e, loops.DynLoad):
                r = loops.DynLoad(granted.get(e.buffer, e.buffer), e.base, sub(e.dyn),
                                  e.stride, e.bound, e.dtype)
            else:
                r = e
            memo[id(e)] = r
            return r
        stores = [Store(granted.get(st.buffer, st.buffer), st.index, sub(st.value))
                  for st in k.stores]
        red = k.reduction
        if red is not None:
            red = type(red)(red.extents, red.combiner, sub(red.value), red.dtype)
        out.append(LoopKernel(k.name, k.shape, stores, red))
    transposed = {t: granted.get(src, src) for t, src in transposed.items()}
    return out, transposed, granted


def _scratch_temp(bufs):
    def new_temp(shape, dtype, name=""):
        buf = Buffer(len(bufs), tuple(shape), dtype, "temp", name)
        bufs.append(buf)
        return buf
    return new_temp


def min_cost_per_task(buffers) -> int:
    """The split threshold of a step with these buffers (see MIN_COST_PER_TASK)."""
    from graphc.codegen.cpu.parallel import l2_cache_bytes
    working = sum(b.nbytes for b in buffers if b.kind != "const")
    return MIN_COST_PER_TASK if working <= l2_cache_bytes() else MIN_COST_PER_TASK_OUT_OF_L2


def _task_function(module, kf: loops.KernelFunction, ctx: StepContext, ntasks: int):
    """``void task(ptr table, i64 t)``: chunk t of T of the kernel's split axis."""
    from graphc.codegen.cpu import parallel
    # A shared kernel function (dedupe.py) gets one task wrapper per call site.
    fn = ir.Function(module, parallel.TASK_FN_TYPE, name=module.get_unique_name(f"{kf.fn.name}.task"))
    fn.linkage = "internal"
    table, t = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    E = I64(kf.extent)
    lo = b.udiv(b.mul(t, E), I64(ntasks))
    hi = b.udiv(b.mul(b.add(t, I64(1)), E), I64(ntasks))
    b.call(kf.fn, [ctx.ptr(bid, builder=b, table=table) for bid in kf.arg_buffers] + [lo, hi])
    b.ret_void()
    return fn
