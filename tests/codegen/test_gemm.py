"""The generated GEMM against a float64 numpy reference: odd sizes, transposes, leading
dimensions, accumulation, fused epilogues, determinism across runs and thread counts, and
the AVX2 (8-wide) variant. Kernels are compiled once per module (~0.3 s each)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

llvmlite = pytest.importorskip("llvmlite")

from graphc.codegen.cpu import gemm as G  # noqa: E402
from graphc.codegen.cpu import jit, parallel  # noqa: E402

SIZES = (1, 3, 17, 33, 65, 127)


@pytest.fixture(scope="module")
def kernels():
    cache = {}

    def get(trans_a=False, trans_b=False, **kw):
        key = (trans_a, trans_b, tuple(sorted(kw.items(), key=lambda x: x[0])))
        if key not in cache:
            cache[key] = G.Gemm(trans_a, trans_b, **kw)
        return cache[key]
    return get


def _operands(rng, M, N, K, ta, tb):
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    return a, b


def _check(c, a, b, ta, tb, extra=None):
    A = (a.T if ta else a).astype(np.float64)
    B = (b.T if tb else b).astype(np.float64)
    ref = A @ B if extra is None else extra(A @ B)
    # float32 error bound of a K-term dot product, elementwise (rtol ~1e-4 of |A||B|),
    # plus float32 rounding of what the epilogue added.
    tol = 1e-4 * (np.abs(A) @ np.abs(B)) + 1e-6 * np.abs(ref) + 1e-6
    assert c.shape == ref.shape
    bad = np.abs(c - ref) > tol
    assert not bad.any(), f"{bad.sum()} wrong elements, max err {np.abs(c - ref).max()}"


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_odd_sizes_all_transposes(kernels, ta, tb):
    g = kernels(ta, tb)
    rng = np.random.default_rng(1)
    shapes = [(m, n, k) for m in SIZES for n in (1, 17, 65) for k in (1, 33, 127)]
    shapes += [(n, n, n) for n in SIZES] + [(100, 1000, 30), (1000, 3, 17), (64, 80, 600)]
    for M, N, K in shapes:
        a, b = _operands(rng, M, N, K, ta, tb)
        _check(g(a, b), a, b, ta, tb)


def test_parallel_sizes_match_reference(kernels):
    # Big enough to be split across two threads, with edges in every dimension.
    g = kernels(False, True, threads=2)
    rng = np.random.default_rng(2)
    for M, N, K in [(257, 300, 129), (129, 1001, 70), (1000, 65, 60)]:
        a, b = _operands(rng, M, N, K, False, True)
        _check(g(a, b), a, b, False, True)


def test_k_zero_and_empty(kernels):
    g = kernels()
    c = g(np.zeros((5, 0), np.float32), np.zeros((0, 7), np.float32))
    assert c.shape == (5, 7) and not c.any()
    assert g(np.zeros((0, 4), np.float32), np.ones((4, 3), np.float32)).shape == (0, 3)


def test_leading_dimensions_and_views(kernels):
    # Operands and output are column slices of bigger arrays: lda/ldb/ldc > width, and
    # the kernel must not touch C outside its window.
    g = kernels(True, False)
    rng = np.random.default_rng(3)
    big_a = rng.standard_normal((40, 90)).astype(np.float32)
    big_b = rng.standard_normal((40, 77)).astype(np.float32)
    big_c = np.full((50, 100), 7.0, np.float32)
    a, b = big_a[:, 5:38], big_b[:, 2:70]          # op(A) = a.T: 33 x 40, B: 40 x 68
    c = big_c[3:36, 10:78]
    g(a, b, c)
    _check(c, a, b, True, False)
    mask = np.ones_like(big_c, bool)
    mask[3:36, 10:78] = False
    assert (big_c[mask] == 7.0).all()


def test_accumulate(kernels):
    g = kernels(accumulate=True)
    rng = np.random.default_rng(4)
    for M, N, K in [(17, 33, 65), (64, 64, 1100)]:     # 1100: several K blocks
        a, b = _operands(rng, M, N, K, False, False)
        c0 = rng.standard_normal((M, N)).astype(np.float32)
        c = c0.copy()
        g(a, b, c)
        _check(c, a, b, False, False, extra=lambda x: x + c0)
    with pytest.raises(ValueError):
        g(a, b)


@pytest.mark.parametrize("threads", [1, 2])
def test_bias_relu_epilogue(kernels, threads):
    g = kernels(False, False, epilogue=G.bias_relu_epilogue())
    rng = np.random.default_rng(5)
    for M, N, K in [(1, 1, 1), (17, 33, 65), (127, 65, 33), (300, 200, 600)]:
        a, b = _operands(rng, M, N, K, False, False)
        bias = rng.standard_normal(N).astype(np.float32)
        c = g(a, b, None, bias, threads=threads)
        _check(c, a, b, False, False, extra=lambda x: np.maximum(x + bias, 0))


def _index_epilogue():
    # acc + 1000*row + col_of_lane: checks the row/column indices the hook receives,
    # including the offsets of a thread's slice and of the narrow-tile kernel.
    from llvmlite import ir

    def emit(b, acc, row, col, ctx):
        w = ctx.width
        f32 = ir.FloatType()
        base = b.sitofp(b.add(b.mul(row, ir.IntType(64)(1000)), col), f32)
        lanes = ir.Constant(ir.VectorType(f32, w), [float(i) for i in range(w)])
        return b.fadd(acc, b.fadd(ctx.splat(b, base), lanes))
    return G.Epilogue(emit, (), "index")


@pytest.mark.parametrize("ta,tb", [(False, False), (True, True)])
def test_epilogue_sees_global_indices(kernels, ta, tb):
    g = kernels(ta, tb, epilogue=_index_epilogue())
    rng = np.random.default_rng(6)
    for (M, N, K), threads in [((300, 250, 200), 2), ((300, 250, 200), 1), ((90, 10, 700), 2),
                               ((3, 5, 7), 1)]:
        a, b = _operands(rng, M, N, K, ta, tb)
        c = g(a, b, threads=threads)
        idx = 1000.0 * np.arange(M)[:, None] + np.arange(N)[None, :]
        _check(c, a, b, ta, tb, extra=lambda x: x + idx)


def test_bare_callback_epilogue(kernels):
    # A plain function is accepted as an epilogue (no extra arguments): here 2*acc - 1.
    def twice_minus_one(b, acc, row, col, ctx):
        return b.fsub(b.fadd(acc, acc), ctx.splat(b, ir_float(1.0)))
    g = kernels(epilogue=twice_minus_one)
    rng = np.random.default_rng(14)
    a, b = _operands(rng, 37, 45, 29, False, False)
    _check(g(a, b), a, b, False, False, extra=lambda x: 2 * x - 1)


def ir_float(x):
    from llvmlite import ir
    return ir.Constant(ir.FloatType(), x)


def test_bit_identical_runs_and_thread_counts(kernels):
    g = kernels(False, False, threads=2)
    rng = np.random.default_rng(7)
    a, b = _operands(rng, 300, 333, 700, False, False)   # 2 K blocks, parallel
    first = g(a, b, threads=2)
    for _ in range(3):
        assert np.array_equal(g(a, b, threads=2), first)
    # K order does not depend on the split: one thread gives the very same bits.
    assert np.array_equal(g(a, b, threads=1), first)
    assert parallel.runtime().pool_size() >= 1


def test_concurrent_python_threads(kernels):
    # Two Python threads, two kernels, both asking for the pool: the second dispatcher runs
    # its tasks serially (same partition), nothing deadlocks, results stay right.
    g1, g2 = kernels(threads=2), kernels(True, False, threads=2)
    rng = np.random.default_rng(8)
    a1, b1 = _operands(rng, 200, 300, 150, False, False)
    a2, b2 = _operands(rng, 200, 300, 150, True, False)
    r1, r2 = g1(a1, b1), g2(a2, b2)
    errors = []

    def work(g, a, b, ref):
        for _ in range(20):
            if not np.array_equal(g(a, b), ref):
                errors.append("mismatch")
    ts = [threading.Thread(target=work, args=args)
          for args in ((g1, a1, b1, r1), (g2, a2, b2, r2))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


def test_bind_matches_call(kernels):
    g = kernels()
    rng = np.random.default_rng(9)
    a, b = _operands(rng, 40, 50, 60, False, False)
    c = np.empty((40, 50), np.float32)
    g.bind(a, b, c)()
    assert np.array_equal(c, g(a, b))


def test_scratch_size_is_enough(kernels):
    # Call the entry point with a scratch of exactly scratch_floats(cfg, T, N, K) floats,
    # followed by canaries that must survive (any misalignment of the start included).
    g = kernels(False, True, threads=2)
    cfg = g.spec.cfg
    fn = g._kernel(cfg)[1]
    rng = np.random.default_rng(13)
    for M, N, K in [(300, 200, 700), (64, 33, 5), (1000, 40, 90)]:
        a, b = _operands(rng, M, N, K, False, True)
        c = np.empty((M, N), np.float32)
        need = G.scratch_floats(cfg, 2, N, K)
        buf = np.full(need + 64 + 1, -7.0, np.float32)
        sc = buf[1:need + 1]             # 4-byte aligned only
        fn(M, N, K, a.ctypes.data, K, b.ctypes.data, K, c.ctypes.data, N, sc.ctypes.data, 2)
        _check(c, a, b, False, True)
        assert (buf[need + 1:] == -7.0).all() and buf[0] == -7.0


def test_narrow_output_uses_narrow_tile(kernels):
    g = kernels(True, False)
    rng = np.random.default_rng(10)
    a, b = _operands(rng, 256, 10, 128, True, False)
    _check(g(a, b), a, b, True, False)
    assert G.narrow_config(g.spec.cfg) in g._kernels


@pytest.mark.parametrize("ta,tb", [(False, False), (True, True)])
def test_avx2_8_wide_variant(kernels, ta, tb):
    # The 6x16 <8 x float> kernel, compiled for an AVX2-only CPU (haswell: runs here too).
    g = kernels(ta, tb, vector_width=8, cpu="haswell", epilogue=G.bias_epilogue(),
                threads=2)
    assert g.spec.cfg.vw == 8 and g.spec.cfg.nr == 16
    rng = np.random.default_rng(11)
    for M, N, K in [(1, 1, 1), (17, 33, 65), (127, 5, 33), (200, 300, 400)]:
        a, b = _operands(rng, M, N, K, ta, tb)
        bias = rng.standard_normal(N).astype(np.float32)
        _check(g(a, b, None, bias), a, b, ta, tb, extra=lambda x: x + bias)


def test_8_wide_code_has_no_avx512():
    m = jit.ir_module()
    G.build_gemm(m, "g", G.GemmSpec(cfg=G.default_config(8)))
    asm = jit.emit_assembly(m, jit.target_machine("haswell"))
    assert "ymm" in asm and "zmm" not in asm


def test_host_kernel_uses_fma_vectors():
    if jit.vector_width() != 16:
        pytest.skip("host has no AVX-512")
    m = jit.ir_module()
    G.build_gemm(m, "g", G.GemmSpec())
    asm = jit.emit_assembly(m)
    assert "vfmadd231ps\t%zmm" in asm


def test_shape_errors(kernels):
    g = kernels()
    with pytest.raises(ValueError, match="inner dimensions"):
        g(np.zeros((3, 4), np.float32), np.zeros((5, 6), np.float32))
    with pytest.raises(ValueError):
        g(np.zeros((3, 4), np.float64), np.zeros((4, 6), np.float32))
    with pytest.raises(ValueError):
        g(np.zeros((4, 3), np.float32).T, np.zeros((4, 6), np.float32))  # not row-major


def test_matmul_convenience():
    rng = np.random.default_rng(12)
    a = rng.standard_normal((20, 30)).astype(np.float32)
    b = rng.standard_normal((20, 40)).astype(np.float32)
    _check(G.matmul(a, b, trans_a=True), a, b, True, False)


# ----------------------------------------------------------------------------- small GEMM
# smallgemm.py: unpacked kernels specialized per shape (the LSTM / small-MLP / matvec path
# of the cpu target). Many shapes compile in one module (one LLVM run).

from graphc.codegen.cpu import smallgemm as S  # noqa: E402

FORMS = [(False, False), (True, False), (False, True), (True, True)]


def _small_shapes(full):
    """Each size in each of M, N and K (rotations), plus the cubes; ``full``: every (M, N)
    pair of sizes, K cycling through them."""
    n = len(SIZES)
    if not full:
        return [(SIZES[i], SIZES[(i + 2) % n], SIZES[(i + 4) % n]) for i in range(n)] + \
            [(SIZES[i], SIZES[(i + 3) % n], SIZES[(i + 1) % n]) for i in range(n)] + \
            [(1, 1, 1), (127, 127, 127)]
    out = [(m, n_, SIZES[(i + j) % n]) for i, m in enumerate(SIZES)
           for j, n_ in enumerate(SIZES)]
    return out + [(s, s, s) for s in SIZES]


@pytest.mark.parametrize("full", [False, pytest.param(True, marks=pytest.mark.slow)])
@pytest.mark.parametrize("ta,tb", FORMS)
def test_small_gemm_sizes_all_transposes(ta, tb, full):
    shapes = _small_shapes(full)
    _, calls = S.compile_kernels([dict(M=M, N=N, K=K, trans_a=ta, trans_b=tb)
                                  for M, N, K in shapes])
    rng = np.random.default_rng(21)
    for (M, N, K), call in zip(shapes, calls):
        a, b = _operands(rng, M, N, K, ta, tb)
        c = np.full((M, N), np.nan, np.float32)
        call(a, b, c)
        _check(c, a, b, ta, tb)


# The products of the cpu target's small workloads (LSTM(64) over 16 features at batch 32
# and its gradients, the W4 MLP, the 10-column classifier layer, batch-1 W1 layers).
WORKLOAD_SHAPES = [(32, 256, 64, False, False), (64, 256, 32, True, False),
                   (32, 64, 256, False, True), (32, 256, 16, False, False),
                   (16, 256, 32, True, False), (32, 64, 10, False, False),
                   (10, 64, 32, True, False), (32, 10, 64, False, True),
                   (128, 10, 256, False, False), (256, 10, 128, True, False),
                   (128, 256, 10, False, True), (1, 512, 784, False, False),
                   (1, 256, 512, False, False), (1, 10, 256, False, False)]


@pytest.mark.parametrize("tasks", [1, 2, 3])
def test_small_gemm_workload_shapes_and_splits_are_bit_identical(tasks):
    # Column blocks split across threads: each output is one FMA chain in k order, so any
    # split gives the same bits (and the result matches the reference).
    specs = [dict(M=M, N=N, K=K, trans_a=ta, trans_b=tb) for M, N, K, ta, tb in
             WORKLOAD_SHAPES]
    _, one = S.compile_kernels(specs, tasks=1)
    _, split = S.compile_kernels(specs, tasks=tasks)
    rng = np.random.default_rng(22)
    for (M, N, K, ta, tb), f1, fs in zip(WORKLOAD_SHAPES, one, split):
        a, b = _operands(rng, M, N, K, ta, tb)
        c1, cs = np.empty((M, N), np.float32), np.empty((M, N), np.float32)
        f1(a, b, c1)
        _check(c1, a, b, ta, tb)
        for _ in range(2):
            fs(a, b, cs)
            np.testing.assert_array_equal(cs, c1)


@pytest.mark.parametrize("ta,tb", FORMS)
def test_small_gemm_epilogues_accumulate_and_leading_dims(ta, tb):
    rng = np.random.default_rng(23)
    shapes = [(1, 1, 1), (3, 17, 33), (17, 33, 65), (33, 65, 3), (65, 127, 17),
              (127, 3, 127)]
    specs = []
    for M, N, K in shapes:
        specs.append(dict(M=M, N=N, K=K, trans_a=ta, trans_b=tb,
                          epilogue=G.bias_relu_epilogue()))
        specs.append(dict(M=M, N=N, K=K, trans_a=ta, trans_b=tb, epilogue=_index_epilogue(),
                          accumulate=True))
        # Column windows of bigger arrays: lda/ldb/ldc wider than the rows.
        specs.append(dict(M=M, N=N, K=K, trans_a=ta, trans_b=tb, lda=(M if ta else K) + 5,
                          ldb=(K if tb else N) + 7, ldc=N + 3))
    _, calls = S.compile_kernels(specs, tasks=2)
    for i, (M, N, K) in enumerate(shapes):
        bias_relu, index_acc, windows = calls[3 * i:3 * i + 3]
        a, b = _operands(rng, M, N, K, ta, tb)
        bias = rng.standard_normal(N).astype(np.float32)
        c = np.empty((M, N), np.float32)
        bias_relu(a, b, c, bias)
        _check(c, a, b, ta, tb, extra=lambda x: np.maximum(x + bias, 0))
        c0 = rng.standard_normal((M, N)).astype(np.float32)
        c = c0.copy()
        index_acc(a, b, c)
        idx = 1000.0 * np.arange(M)[:, None] + np.arange(N)[None, :]
        _check(c, a, b, ta, tb, extra=lambda x: x + c0 + idx)
        big_a = np.zeros((a.shape[0], a.shape[1] + 5), np.float32)
        big_b = np.zeros((b.shape[0], b.shape[1] + 7), np.float32)
        big_c = np.full((M, N + 3), 7.0, np.float32)
        big_a[:, :a.shape[1]], big_b[:, :b.shape[1]] = a, b
        big_a[:, a.shape[1]:] = big_b[:, b.shape[1]:] = np.nan   # never read
        windows(big_a, big_b, big_c)
        _check(big_c[:, :N], a, b, ta, tb)
        assert (big_c[:, N:] == 7.0).all()                      # never written


def test_small_gemm_avx2_8_wide_variant():
    shapes = [(1, 1, 1), (17, 33, 65), (32, 64, 256), (1, 300, 100)]
    specs = [dict(M=M, N=N, K=K, trans_a=ta, trans_b=tb, epilogue=G.bias_epilogue())
             for M, N, K in shapes for ta, tb in FORMS]
    m = jit.ir_module()
    S.emit_small_gemm(m, "g", 17, 33, 65, trans_b=True, vector_width=8)
    asm = jit.emit_assembly(m, jit.target_machine("haswell"))
    assert "ymm" in asm and "zmm" not in asm
    _, calls = S.compile_kernels(specs, tasks=2, vector_width=8, cpu="haswell")
    rng = np.random.default_rng(24)
    for spec, call in zip(specs, calls):
        M, N, K, ta, tb = (spec[k] for k in ("M", "N", "K", "trans_a", "trans_b"))
        a, b = _operands(rng, M, N, K, ta, tb)
        bias = rng.standard_normal(N).astype(np.float32)
        c = np.empty((M, N), np.float32)
        call(a, b, c, bias)
        _check(c, a, b, ta, tb, extra=lambda x: x + bias)


def test_small_gemm_plan():
    # Matrix-vector products get wide column blocks (more FMA chains, long runs of B);
    # multi-row tiles 2 vectors wide; a narrow N uses one (masked) vector.
    w = jit.vector_width()
    assert S.plan_small_gemm(1, 256, threads=2).nv == min(8, -(-256 // w))
    # A vector-matrix product goes 16 vectors wide (AVX-512) only while every thread still
    # gets a block; more rows, or more threads than wide blocks, keep 8.
    wide = S._NV_MATVEC_WIDE.get(w, 8)
    assert S.plan_small_gemm(1, 512, threads=2).nv == min(wide, -(-512 // w))
    assert S.plan_small_gemm(1, 512, threads=4).nv == min(8, -(-512 // w))
    assert S.plan_small_gemm(3, 512, threads=1).nv == min(8, -(-512 // w))
    p = S.plan_small_gemm(32, 256)
    assert p.nv == 2 and p.blocks == -(-256 // (2 * w)) and p.mr * p.nv <= S._ACC_BUDGET[w]
    assert S.plan_small_gemm(128, 10).nv == 1


def test_small_gemm_matvec_tile_width_and_prefetch_do_not_change_bits(monkeypatch):
    # The wide matrix-vector tile and the A and B prefetches are speed settings: every output is
    # still one FMA chain over k in order, so the bits match the narrow tile without them.
    shapes = [(1, 512, 784), (1, 1000, 300), (1, 2048, 5), (2, 512, 64), (3, 40, 33)]
    specs = [dict(M=M, N=N, K=K, epilogue=G.bias_relu_epilogue()) for M, N, K in shapes]
    _, tuned = S.compile_kernels(specs, tasks=2)
    monkeypatch.setattr(S, "_NV_MATVEC_WIDE", {})
    monkeypatch.setattr(S, "_MATVEC_PREFETCH_ROWS", 1 << 40)
    monkeypatch.setattr(S, "_PREFETCH_A", False)
    _, plain = S.compile_kernels(specs, tasks=2)
    rng = np.random.default_rng(25)
    for (M, N, K), f_tuned, f_plain in zip(shapes, tuned, plain):
        a, b = _operands(rng, M, N, K, False, False)
        bias = rng.standard_normal(N).astype(np.float32)
        c1, c2 = np.empty((M, N), np.float32), np.empty((M, N), np.float32)
        f_tuned(a, b, c1, bias)
        f_plain(a, b, c2, bias)
        _check(c1, a, b, False, False, extra=lambda x: np.maximum(x + bias, 0))
        np.testing.assert_array_equal(c1, c2)


def test_small_gemm_k_zero_writes_zeros_and_epilogue():
    _, (plain, biased) = S.compile_kernels([
        dict(M=5, N=7, K=0), dict(M=5, N=7, K=0, trans_b=True, epilogue=G.bias_epilogue())])
    c = np.full((5, 7), np.nan, np.float32)
    plain(np.zeros((5, 0), np.float32), np.zeros((0, 7), np.float32), c)
    assert (c == 0).all()
    bias = np.arange(7, dtype=np.float32)
    biased(np.zeros((5, 0), np.float32), np.zeros((7, 0), np.float32), c, bias)
    assert (c == bias).all()
