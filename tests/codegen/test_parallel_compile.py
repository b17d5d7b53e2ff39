"""Compiling on several threads (jit.compile_object / compile_objects) and splitting a
module into parts (split.py): the same object bytes as a serial compile, run after run
and thread against thread; errors surface; a split module computes what the whole one
does; GEMM variants compiled together land in the process table and the disk cache."""
from __future__ import annotations

import ctypes
import threading

import numpy as np
import pytest

pytest.importorskip("llvmlite")
from llvmlite import ir  # noqa: E402

from graphc.codegen.cpu import cache, jit, split  # noqa: E402
from graphc.codegen.cpu.parallel import _call_indirect  # noqa: E402

F32, I64, PTR, VOID = ir.FloatType(), ir.IntType(64), ir.PointerType(), ir.VoidType()


def _axpy_module(a: float, name="axpy", n: int = 48):
    """void axpy(ptr x, ptr y): y[i] += a * x[i] for i < n, straight-line code that the
    SLP vectorizer turns into vector operations."""
    m = jit.ir_module(name)
    fn = ir.Function(m, ir.FunctionType(VOID, [PTR, PTR]), name=name)
    for arg in fn.args:
        arg.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    for i in range(n):
        px, py = (b.gep(p, [I64(i)], source_etype=F32) for p in fn.args)
        b.store(b.fadd(b.fmul(b.load(px, typ=F32), F32(a)), b.load(py, typ=F32)), py)
    b.ret_void()
    return m


def _serial_object(module, level=3) -> bytes:
    """The object the global-context path (parse/optimize/emit under llvmlite's lock)
    produces: the reference the threaded path must match byte for byte."""
    tm = jit.target_machine()
    mod = jit.optimize(jit.parse(str(module)), tm, level)
    return tm.emit_object(mod)


def test_compile_object_matches_the_serial_path():
    m = _axpy_module(2.0)
    obj, mref, t = jit.compile_object(m, keep_module=True)
    assert obj[:4] == b"\x7fELF" and obj == _serial_object(m)
    assert "axpy" in str(mref) and t["total"] > 0 and t["cpu"] > 0
    assert jit.compile_object(m, 1)[0] == _serial_object(m, 1)


def test_compile_objects_is_deterministic_under_repetition():
    # Many rounds of many modules on more threads than cores: every object equals the
    # serial one (a data race inside LLVM would show as different bytes or a crash).
    mods = [_axpy_module(1.0 + k, f"axpy{k}") for k in range(8)]
    want = [_serial_object(m, 3 if k % 2 else 1) for k, m in enumerate(mods)]
    for _ in range(6):
        got = jit.compile_objects(((m, 3 if k % 2 else 1) for k, m in enumerate(mods)),
                                  threads=4)
        assert [o for o, _ in got] == want


def test_concurrent_callers_get_their_own_objects():
    mods = [_axpy_module(float(k), f"f{k}") for k in range(4)]
    want = [_serial_object(m) for m in mods]
    out, errors = {}, []

    def run(k):
        try:
            out[k] = [o for o, _ in jit.compile_objects([(m, 3) for m in mods], threads=2)]
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
    ts = [threading.Thread(target=run, args=(k,)) for k in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors and all(out[k] == want for k in range(3))


def test_compile_objects_raises_the_failing_jobs_error():
    good = _axpy_module(3.0)
    with pytest.raises(RuntimeError, match="parsing error"):
        jit.compile_objects([(good, 3), ("define void @bad( {", 3), (good, 1)], threads=2)
    # The failure leaked no broken state: the next compile still matches.
    assert jit.compile_objects([(good, 3)], threads=2)[0][0] == _serial_object(good)


def test_serial_setting(monkeypatch):
    monkeypatch.setenv("GRAPHC_COMPILE_THREADS", "1")
    assert jit.compile_threads() == 1
    m = _axpy_module(5.0)
    assert jit.compile_objects([(m, 3)])[0][0] == _serial_object(m)
    monkeypatch.delenv("GRAPHC_COMPILE_THREADS")
    assert jit.compile_threads() >= 1

# ----------------------------------------------------------------------------- split


def _program_like_module():
    """An entry calling kernels the way a step module does: ``entry(x, out)`` with
    out[i] = 2*x[i] + small[i % 4] + big[i % 4] + x[i]^2, then out[n] = the number of
    kernel calls, counted in a mutable global. Kernels are internal; one is called
    directly (twice), the others are handed as pointers to ``run`` (as tasks are to the
    thread pool); one has a helper; one reads a small and one a big constant table; an
    unused byte string looks like a reference."""
    m = jit.ir_module("prog")
    n = 64
    kty = ir.FunctionType(VOID, [PTR, PTR])

    def table(name, vals):
        ty = ir.ArrayType(F32, len(vals))
        g = ir.GlobalVariable(m, ty, name)
        g.initializer = ir.Constant(ty, [F32(v) for v in vals])
        g.linkage, g.global_constant = "internal", True
        return g
    small = table("small", [1, 2, 3, 4])
    big = table("big", [10, 20, 30, 40] + [0.0] * 60)
    calls = ir.GlobalVariable(m, I64, "calls")
    calls.initializer = I64(0)
    tag = ir.GlobalVariable(m, ir.ArrayType(ir.IntType(8), 7), "tag")
    tag.initializer = ir.Constant(tag.value_type, bytearray(b"@k_big\0"))
    tag.linkage, tag.global_constant = "internal", True

    def kernel(name, body):
        fn = ir.Function(m, kty, name=name)
        fn.linkage = "internal"
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        b.store(b.add(b.load(calls, typ=I64), I64(1)), calls)
        for i in range(n):
            x = b.load(b.gep(fn.args[0], [I64(i)], source_etype=F32), typ=F32)
            po = b.gep(fn.args[1], [I64(i)], source_etype=F32)
            b.store(b.fadd(b.load(po, typ=F32), body(b, x, i)), po)
        b.ret_void()
        return fn
    helper = ir.Function(m, ir.FunctionType(F32, [F32]), name="helper")
    helper.linkage = "internal"
    hb = ir.IRBuilder(helper.append_basic_block("entry"))
    hb.ret(hb.fmul(helper.args[0], helper.args[0]))
    run = ir.Function(m, ir.FunctionType(VOID, [PTR, PTR, PTR]), name="run")
    run.linkage = "internal"
    rb = ir.IRBuilder(run.append_basic_block("entry"))
    _call_indirect(rb, run.args[0], list(run.args[1:]), kty)
    rb.ret_void()
    k_calc = kernel("k_calc", lambda b, x, i: x)        # a name ending in c, then a quote
    k_small = kernel("k_small", lambda b, x, i: b.load(
        b.gep(small, [I64(0), I64(i % 4)], source_etype=small.value_type), typ=F32))
    k_big = kernel("k_big", lambda b, x, i: b.load(
        b.gep(big, [I64(0), I64(i % 4)], source_etype=big.value_type), typ=F32))
    k_help = kernel("k_help", lambda b, x, i: b.call(helper, [x]))
    entry = ir.Function(m, ir.FunctionType(VOID, [PTR, PTR]), name="entry")
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    b.call(k_calc, list(entry.args))
    for k in (k_small, k_big, k_help):
        b.call(run, [k, *entry.args])
    b.call(k_calc, list(entry.args))
    count = b.sitofp(b.load(calls, typ=I64), F32)
    b.store(count, b.gep(entry.args[1], [I64(n)], source_etype=F32))
    b.ret_void()
    return m, n


def _run_entry(om, n):
    x = np.linspace(-1, 1, n).astype(np.float32)
    out = np.zeros(n + 1, np.float32)
    om.cfunc("entry", None, ctypes.c_void_p, ctypes.c_void_p)(x.ctypes.data, out.ctypes.data)
    return x, out


def test_split_module_computes_what_the_whole_module_does(monkeypatch):
    monkeypatch.setattr(split, "COPY_MAX_CHARS", 200)     # 'big' is defined once
    m, n = _program_like_module()
    parts = split.split_module(m, "entry", 3)
    assert len(parts) == 3 and parts == split.split_module(m, "entry", 3)
    assert sum('define void @"entry"' in p for p in parts) == 1
    # The directly called kernel and 'run' stay with the entry; pointer-passed ones move.
    assert all(f'define internal void @"{f}"' in parts[0] for f in ("k_calc", "run"))
    assert sum(f'@"{f}"(ptr %' in p for p in parts[1:] for f in ("k_small", "k_big")) == 2
    # The mutable counter and the big table: defined once, declared where else used.
    assert sum('@"calls" = global' in p for p in parts) == 1
    assert sum('@"big" = constant' in p for p in parts) <= 1
    assert sum('@"big" = internal constant' in p for p in parts) <= 1
    objs = [o for o, _ in jit.compile_objects([(p, 3) for p in parts], threads=2)]
    x, out = _run_entry(cache.ObjectModule(objs), n)
    want = 2 * x + np.tile([1, 2, 3, 4], n // 4) + np.tile([10, 20, 30, 40], n // 4) + x * x
    np.testing.assert_allclose(out[:n], want, rtol=1e-6)
    assert out[n] == 5                                    # one counter for all parts
    _, whole = _run_entry(cache.ObjectModule(jit.compile_object(m)[0]), n)
    np.testing.assert_array_equal(out, whole)


def test_split_keeps_small_modules_whole():
    m, _ = _program_like_module()
    assert split.split_module(m, "entry") == [str(m)]           # below PART_CHARS
    assert split.split_module(m, "entry", 1) == [str(m)]


def _mlp_step_outputs(monkeypatch, part_chars, cache_dir="off"):
    """The outputs (loss, new params, ...) of one train step of a small MLP compiled with
    ``split.PART_CHARS = part_chars``, and the number of parts its module had."""
    from graphc.frontend.layers.base import reset_name_counters
    from graphc.layers import Dense
    from graphc.models import Sequential
    from graphc.passes import train_step as ts
    from graphc.runtime.backends import get_backend
    from graphc.utils import set_random_seed
    from graphc.codegen.cpu import parallel
    monkeypatch.setattr(split, "PART_CHARS", part_chars)
    # Two threads whatever the host: the big kernels become thread-pool tasks, the part
    # of a step that leaves the entry's part.
    monkeypatch.setattr(parallel, "default_threads", lambda: 2)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(cache_dir))
    cache.clear_memory()
    set_random_seed(0)
    reset_name_counters()
    model = Sequential([Dense(256, activation="relu", input_dim=20),
                        Dense(256, activation="tanh"), Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    step = ts.build_train_graph(model, ts.model_input_types(model, 64),
                                ts.default_target_types(model, 64))
    fn = get_backend("cpu").compile(step.graph)
    rng = np.random.default_rng(1)
    ins = [rng.random((64, 20), dtype=np.float32),
           np.eye(3, dtype=np.float32)[rng.integers(0, 3, 64)],
           np.ones(64, np.float32), np.array(3, np.int64)]
    params = [np.array(p.value) for p in step.params]
    outs = [np.array(o) for o in fn(ins, params)]
    cache.clear_memory()
    return outs, fn.jit.parts, fn.timings["cache"]


def test_split_train_step_matches_the_whole_one(monkeypatch):
    whole, nwhole, _ = _mlp_step_outputs(monkeypatch, 10 ** 9)
    parts, nparts, _ = _mlp_step_outputs(monkeypatch, 2_000)
    assert nwhole == 1 and nparts > 1
    assert len(whole) == len(parts) > 3
    for x, y in zip(whole, parts):
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-6)


def test_split_step_goes_through_the_disk_cache(tmp_path, monkeypatch):
    first, n1, src1 = _mlp_step_outputs(monkeypatch, 2_000, tmp_path)
    again, n2, src2 = _mlp_step_outputs(monkeypatch, 2_000, tmp_path)
    assert (src1, src2) == ("compiled", "disk") and n1 == n2 > 1
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)

# ----------------------------------------------------------------------------- GEMMs


@pytest.mark.slow
def test_gemm_variants_compile_together(tmp_path, monkeypatch):
    from graphc.codegen.cpu import gemm, templates
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    specs = [gemm.GemmSpec(trans_a=ta, trans_b=tb, cfg=gemm.default_config())
             for ta, tb in ((False, False), (False, True), (True, False))]
    threads = 1     # a thread count no other test uses: fresh variants in this process
    refs, extra = cache.ensure_gemms([(s, threads) for s in specs] + [(specs[0], threads)],
                                     [(_axpy_module(1.0), 3)])
    assert len(refs) == 4 and refs[0] == refs[3] and len(extra) == 1
    for name, key, dkey in refs:
        assert key in templates._GEMMS and cache.disk_load(dkey) is not None
    # The same bytes as one serial compile of the variant.
    monkeypatch.setenv("GRAPHC_COMPILE_THREADS", "1")
    from graphc.codegen.cpu import parallel
    for (name, key, dkey), spec in zip(refs, specs):
        module = jit.ir_module(name)
        parallel.build_parallel_gemm(module, name, spec, max_threads=threads)
        assert cache.disk_load(dkey)["object"] == _serial_object(module,
                                                                 templates.GEMM_OPT_LEVEL)
    # And they compute: C = A @ B through the registered symbol's machine code.
    name, key, _ = refs[0]
    om = templates._GEMMS[key][1]
    M, N, K = 37, 45, 29
    rng = np.random.default_rng(0)
    a, b = rng.random((M, K), np.float32), rng.random((K, N), np.float32)
    c = np.zeros((M, N), np.float32)
    scratch = np.zeros(gemm.scratch_floats(specs[0].cfg, threads, N, K) + 64, np.float32)
    f = om.cfunc(name, None, *([ctypes.c_int64] * 3 + [ctypes.c_void_p, ctypes.c_int64] * 3
                               + [ctypes.c_void_p, ctypes.c_int64]))
    f(M, N, K, a.ctypes.data, K, b.ctypes.data, N, c.ctypes.data, N, scratch.ctypes.data,
      threads)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5)
