"""Small and skinny float32 GEMMs without packing, specialized on the static shape.

``C[M,N] (= | +=) op(A)[M,K] @ op(B)[K,N]`` for the products where gemm.py's packed path
pays more for packing and dispatch than for arithmetic: an LSTM's per-step 32x256x64
recurrent products and their gradient forms, a 32-row MLP, 10-column classifier layers,
and M = 1 (batch-1 predict: a matrix-vector product). One function per shape, with the
plain split ABI of conv.py:

    void name(ptr A, ptr B, <epilogue args...>, ptr C, i64 begin, i64 end)

computing the column blocks ``[begin, end)`` of C (``fn.split_extent`` blocks of ``nr``
columns), so program.py runs it whole or hands disjoint column blocks to threads.

Register tile: ``mr`` rows x ``nv`` vectors of W lanes along N (the contiguous axis of B
and C), updated per k with ``llvm.fma`` of a broadcast A element and a B row vector read in
place; A is read in place in either layout (op(A)[i,k] at ``A[i*lda+k]`` or, transposed,
``A[k*lda+i]``: one scalar per row and k either way). A transposed B (``A @ B^T``, input
gradients) is the one layout with no contiguous N vectors: each column block's K x nr
panel is transposed into a stack buffer first (gemm.py's pack_b, W x W in-register
transposes), which costs K*nr moves against M*K*nr multiply-adds. Column edges are masked
vectors decided at generation time, row edges a second static tile.

Every output element is one FMA chain over k = 0..K-1 in order, computed by one call, so
results do not depend on the split: bit-identical run to run and across thread counts.
An epilogue (gemm.Epilogue, e.g. a templates.VectorEpilogue) runs on each output vector
before its store, as in gemm.py's micro-kernel.
"""
from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from graphc.codegen.cpu import gemm as G
from graphc.codegen.cpu.conv import I32, I64, PTR, _Fn, _host_width

__all__ = ["SmallGemmPlan", "plan_small_gemm", "emit_small_gemm", "small_gemm_flops",
           "compile_kernels"]

# Accumulator vectors of one register tile (at most; plan_small_gemm may use fewer rows):
# AVX-512 has 32 vector registers, 24 leave room for the B row vectors and the A
# broadcasts; AVX2 has 16.
_ACC_BUDGET = {16: 24, 8: 12, 4: 12}
# Vectors per tile row for multi-row tiles (2 x W columns, like gemm.py's 8 x 32 tile), and
# the most for M <= 4 (a matrix-vector product: more independent FMA chains per row, and
# longer contiguous runs of B per k). A vector-matrix product (M = 1) wide enough to give
# every thread a block of _NV_MATVEC_WIDE vectors uses those (AVX-512: 16 accumulators):
# 1 KB runs of B per k stream better than 512 B ones (1x784x512 on 2 threads, interleaved
# A/B with the prefetch below, two runs: 10.2-10.9 -> 9.9-10.1 us).
_NV_ROWS = 2
_NV_MATVEC = 8
SMALL_MATVEC_ROWS = 4
_NV_MATVEC_WIDE = {16: 16}
# A matrix-vector product prefetches the B rows this many k ahead: the hardware prefetcher
# alone leaves bandwidth unused on the short strided runs (2-core Zen 4, 1x784x512 + 1x512x256,
# interleaved A/B: 17.0 -> 16.3 us at distance 2; 1-3 alike, 4 and more slower).
_MATVEC_PREFETCH_ROWS = 2
# ... and asks for all of A's lines up front (see emit_small_gemm).
_PREFETCH_A = True


def tuning_key() -> str:
    """The tile settings above (module constants tests and benchmarks may change)."""
    return f"nv={_NV_ROWS},{_NV_MATVEC},{sorted(_NV_MATVEC_WIDE.items())} " \
        f"prefetch={_MATVEC_PREFETCH_ROWS},{_PREFETCH_A}"


@dataclass(frozen=True)
class SmallGemmPlan:
    """The register tile of one shape: ``mr`` rows x ``nv`` vectors of ``w`` lanes;
    ``nr = nv * w`` columns per split block, ``blocks`` of them cover N."""
    w: int
    mr: int
    nv: int
    blocks: int

    @property
    def nr(self) -> int:
        return self.nv * self.w


def plan_small_gemm(M: int, N: int, vector_width: int | None = None,
                    threads: int | None = None) -> SmallGemmPlan:
    """Tile for an M x N output: ``nv`` vectors wide (no wider than N needs), as many rows
    as the accumulator budget allows, balanced so M splits into near-equal row tiles.
    ``threads`` (default: the pool's) decides whether a matrix-vector tile can be wide."""
    w = _host_width(vector_width)
    budget = _ACC_BUDGET[w]
    vecs = -(-max(N, 1) // w)
    if M <= SMALL_MATVEC_ROWS:
        wide = _NV_MATVEC_WIDE.get(w, _NV_MATVEC)
        if threads is None:
            from graphc.codegen.cpu.parallel import default_threads
            threads = default_threads()
        # (one row only: at 16 vectors the budget leaves no room for a second row)
        nv = min(vecs, wide if M == 1 and vecs // wide >= threads else _NV_MATVEC)
    else:
        nv = min(vecs, _NV_ROWS)
    M = max(M, 1)
    cap = max(1, min(budget // nv, M))
    # A row count dividing M in [cap/2, cap] gives one tile variant instead of two (half
    # the code to compile); otherwise balanced tiles (the last one shorter).
    mr = next((r for r in range(cap, (cap + 1) // 2 - 1, -1) if M % r == 0), None)
    if mr is None:
        mr = -(-M // -(-M // cap))
    return SmallGemmPlan(w, mr, nv, -(-max(N, 1) // (nv * w)))


def small_gemm_flops(M: int, N: int, K: int) -> int:
    """Work estimate (in flops of a register-tiled product) for the threading decision: a
    tile of fewer than 4 rows loads one B vector per 1-3 FMAs and runs at the speed of
    memory, not of the FMA units (matrix-vector: ~35 vs ~110 GFLOP/s on one Zen 4 core)."""
    return 2 * M * N * K * max(1, 4 // max(M, 1))


def emit_small_gemm(module: ir.Module, name: str, M: int, N: int, K: int, *,
                    trans_a: bool = False, trans_b: bool = False, lda: int | None = None,
                    ldb: int | None = None, ldc: int | None = None,
                    accumulate: bool = False, epilogue: G.Epilogue | None = None,
                    vector_width: int | None = None) -> ir.Function:
    """Add ``name`` (see the module docstring) to ``module`` and return it. Leading
    dimensions default to the dense layout (``lda``: K, or M with ``trans_a``; ``ldb``: N,
    or K with ``trans_b``; ``ldc``: N). ``accumulate``: C += op(A) @ op(B) (the epilogue
    then sees the sum with the old C)."""
    lda = (M if trans_a else K) if lda is None else lda
    ldb = (K if trans_b else N) if ldb is None else ldb
    ldc = N if ldc is None else ldc
    plan = plan_small_gemm(M, N, vector_width)
    w, nv, nr = plan.w, plan.nv, plan.nr
    F = _Fn(module, name, 2, epilogue.arg_types if epilogue else (),
            split_extent=plan.blocks)
    # One copy per shape: a step calls it from many sites (an unrolled RNN: one per time
    # step, each through its own thread-pool task wrapper); a call costs nothing next to
    # the kernel, a copy per site would cost compile time.
    F.fn.attributes.add("noinline")
    A, B = F.ins
    C = F.out
    for p in F.extra:           # epilogue operands: read-only, never C itself
        if isinstance(p.type, ir.PointerType):
            p.add_attribute("noalias")
    b = F.b
    panel = F.buffer(K * nr) if trans_b and K > 0 else None
    pack = _pack_bt(module, w, nv) if panel is not None else None
    # B streams from memory once per call only in a matrix-vector product read in place.
    prefetch = _declare_prefetch(module) if M <= SMALL_MATVEC_ROWS and panel is None and \
        K > _MATVEC_PREFETCH_ROWS else None

    def tile(i0, rows, j0, bsrc, bld, lanes):
        """C[i0:i0+rows, j0:j0+lanes] from B vectors at bsrc + k*bld (static rows/lanes)."""
        nvb = -(-lanes // w)
        vlanes = [min(w, lanes - v * w) for v in range(nvb)]

        def step(k, accs):
            brow = F.ptr(bsrc, F.mul(k, bld))
            if prefetch:    # (past the last row: a prefetch never faults)
                ahead = F.ptr(brow, F.mul(_MATVEC_PREFETCH_ROWS, bld))
                for v in range(nvb):
                    b.call(prefetch, [F.ptr(ahead, v * w), I32(0), I32(3), I32(1)])
            bv = [F.vload(F.ptr(brow, v * w), w, vlanes[v]) for v in range(nvb)]
            out = list(accs)
            for r in range(rows):
                if trans_a:
                    a = F.load(F.ptr(A, F.mul(k, lda), i0, r))
                else:
                    a = F.load(F.ptr(A, F.mul(i0, lda), r * lda, k))
                s = F.splat(a, w)
                for v in range(nvb):
                    out[r * nvb + v] = F.fma(s, bv[v], out[r * nvb + v])
            return out

        # One k per iteration: LLVM unrolls the loop itself (hand-unrolling by 2 or 4
        # measured the same speed and doubled the IR, i.e. compile time).
        accs = F.loop(0, K, step, [F.zeros(w)] * (rows * nvb), name="k")
        for r in range(rows):
            crow = F.ptr(C, F.mul(i0, ldc), r * ldc)
            for v in range(nvb):
                acc = accs[r * nvb + v]
                p = F.ptr(crow, j0, v * w)
                if accumulate:
                    acc = b.fadd(acc, F.vload(p, w, vlanes[v]))
                if epilogue is not None:
                    mask = F.mask(w, vlanes[v]) if vlanes[v] < w else None
                    ctx = G.EpilogueContext(w, mask, F.extra, module)
                    acc = epilogue.emit(b, acc, F.idx(i0, r), F.idx(j0, v * w), ctx)
                F.vstore(acc, p, vlanes[v])

    def block(jb, lanes):
        j0 = F.mul(jb, nr)
        if pack is not None:
            # op(B)[k, j0+c] = B[j0+c, k]: transpose this block's K x nr panel (zero padded).
            b.call(pack, [B, I64(ldb), I64(0), F.idx(j0), I64(K), I64(lanes), panel])
            bsrc, bld = panel, nr
        else:
            bsrc, bld = F.ptr(B, j0), ldb
        full, rem = divmod(M, plan.mr)
        F.repeat(0, full, lambda t, _: tile(F.mul(t, plan.mr), plan.mr, j0, bsrc, bld, lanes),
                 name="rows")
        if rem:
            tile(full * plan.mr, rem, j0, bsrc, bld, lanes)

    nfull, edge = divmod(N, nr)
    if prefetch is not None and _PREFETCH_A and not trans_a and M > 0 and N > 0:
        # A (a few rows, K floats) is usually the previous layer's output, half written by
        # another core: its lines would otherwise arrive one by one as the k loop reaches
        # them, each a cross-core transfer; ask for all of them at once. (W1 batch-1
        # predict, interleaved A/B: no change on a quiet VM, 1-4 us of ~25 saved in its
        # slow phases, when cross-core transfers cost more.)
        def prefetch_line(r, line):
            b.call(prefetch, [F.ptr(A, r * lda, F.mul(line, 16)), I32(0), I32(3), I32(1)])
        for r in range(M):
            F.loop(0, -(-K // 16), lambda line, _, r=r: prefetch_line(r, line), name="pfa")
    if M > 0 and N > 0:
        stop = b.select(b.icmp_signed("<", F.end, I64(nfull)), F.end, I64(nfull))
        F.loop(F.begin, stop, lambda jb, _: block(jb, nr), name="jb")
        if edge:
            has_edge = b.and_(b.icmp_signed(">", F.end, I64(nfull)),
                              b.icmp_signed("<=", F.begin, I64(nfull)))
            F.when(has_edge, lambda _: block(nfull, edge))
    return F.ret()


def _declare_prefetch(module: ir.Module) -> ir.Function:
    """``llvm.prefetch(ptr, rw, locality, cache)`` (read, keep in all levels, data)."""
    fn = module.globals.get("llvm.prefetch.p0")
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, I32, I32, I32]),
                         "llvm.prefetch.p0")
    return fn


def _pack_bt(module: ir.Module, w: int, nv: int) -> ir.Function:
    """gemm.py's pack_b for a transposed B with an ``nv x w`` panel (one per module)."""
    name = f"graphc_smallgemm_packbt_w{w}n{nv}"
    fn = module.globals.get(f"{name}.pack_b")
    if fn is None:
        cfg = G.GemmConfig(vw=w, mr=1, nv=nv, kc=1, mc=1, nc=nv * w)
        fn = G._Gen(module, name, G.GemmSpec(trans_b=True, cfg=cfg)).pack_b()
    return fn


def compile_kernels(specs, *, tasks: int = 1, vector_width: int | None = None,
                    cpu: str | None = None, features: str | None = None):
    """JIT-compile small GEMMs for tests and benchmarks, all in ONE module (one LLVM run).

    ``specs``: dicts of ``emit_small_gemm`` keyword arguments (M, N, K, trans_a, ...).
    Returns ``(jit_module, [call])`` where ``call(a, b, c, *extra)`` runs the whole product
    on ``tasks`` threads of the pool (numpy arrays are passed by address, so views with
    leading dimensions work; ints by value). ``call.cfunc`` is the raw ctypes entry (addresses
    only), for timing without the per-call conversion."""
    import ctypes

    from graphc.codegen.cpu import conv, jit, parallel
    parallel.ensure_runtime_symbols()
    module = jit.ir_module("smallgemm")
    entries = []
    for i, spec in enumerate(specs):
        spec = dict(spec)
        M, N, K = spec.pop("M"), spec.pop("N"), spec.pop("K")
        k = emit_small_gemm(module, f"sg{i}", M, N, K, vector_width=vector_width, **spec)
        entries.append(conv.emit_parallel_entry(module, f"sg{i}.entry", k, tasks))
    jm = jit.JitModule(module, cpu=cpu, features=features)
    calls = []
    for e in entries:
        cts = [ctypes.c_void_p if isinstance(a.type, ir.PointerType) else ctypes.c_int64
               for a in e.args]
        cf = jm.cfunc(e.name, None, *cts)

        def call(a, b, c, *extra, _cf=cf):
            _cf(*[x.ctypes.data if hasattr(x, "ctypes") else x for x in (a, b, *extra, c)])
        call.cfunc = cf
        calls.append(call)
    return jm, calls

