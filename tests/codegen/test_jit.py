"""The LLVM owner (jit.py) and the IR thread pool (parallel.py): host target, O3 with the
vectorizers on, both JIT engines, AOT objects, libc symbols, and parallel_for semantics."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
import threading
import time

import numpy as np
import pytest

pytest.importorskip("llvmlite")
from llvmlite import ir  # noqa: E402

from graphc.codegen.cpu import jit, parallel  # noqa: E402

F32, I64, PTR = ir.FloatType(), ir.IntType(64), ir.PointerType()


def _vadd_module(name="vadd"):
    """void vadd(float* x, float* y, float* out, i64 n): a plain scalar loop."""
    m = jit.ir_module()
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [PTR, PTR, PTR, I64]), name=name)
    for a in fn.args[:3]:
        a.add_attribute("noalias")
    entry = fn.append_basic_block("entry")
    loop = fn.append_basic_block("loop")
    done = fn.append_basic_block("done")
    b = ir.IRBuilder(entry)
    b.cbranch(b.icmp_signed(">", fn.args[3], I64(0)), loop, done)
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(I64(0), entry)
    x = b.load(b.gep(fn.args[0], [i], source_etype=F32), typ=F32)
    y = b.load(b.gep(fn.args[1], [i], source_etype=F32), typ=F32)
    b.store(b.fadd(x, y), b.gep(fn.args[2], [i], source_etype=F32))
    n = b.add(i, I64(1))
    i.add_incoming(n, loop)
    b.cbranch(b.icmp_signed("<", n, fn.args[3]), loop, done)
    b.position_at_end(done)
    b.ret_void()
    return m


VADD_SIG = (None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


def _run_vadd(jm, n=1003):
    f = jm.cfunc("vadd", *VADD_SIG)
    x = np.arange(n, dtype=np.float32)
    y = np.full(n, 0.5, np.float32)
    out = np.empty(n, np.float32)
    f(x.ctypes.data, y.ctypes.data, out.ctypes.data, n)
    np.testing.assert_array_equal(out, x + y)


@pytest.mark.parametrize("engine", ["mcjit", "lljit"])
def test_jit_module_runs(engine):
    jm = jit.JitModule(_vadd_module(), engine=engine)
    _run_vadd(jm)
    assert jm.timings["total"] > 0
    assert jm.address("vadd") == jm.address("vadd")


def test_jit_accepts_ir_text():
    jm = jit.JitModule(str(_vadd_module()))
    _run_vadd(jm)


def test_unknown_function_raises():
    jm = jit.JitModule(_vadd_module())
    with pytest.raises(KeyError):
        jm.address("nope")


def test_host_target_uses_real_cpu_features():
    tm = jit.host_target_machine()
    assert tm.triple.startswith("x86_64") or tm.triple
    feats = jit.host_features()
    assert jit.vector_width() == (16 if "avx512f" in feats else 8)
    assert jit.vector_width(frozenset({"avx2"})) == 8
    assert jit.vector_width(frozenset({"avx2", "avx512f"})) == 16


def test_optimize_vectorizes_loop():
    text = jit.optimized_ir(_vadd_module())
    w = jit.vector_width()
    assert f"<{w} x float>" in text   # loop vectorizer used the host's widest vectors


def test_slp_vectorization_is_on():
    # Four independent scalar adds of adjacent elements: only SLP turns them into a vector.
    m = jit.ir_module()
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [PTR, PTR, PTR]), name="slp")
    for a in fn.args:
        a.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    for i in range(8):
        x = b.load(b.gep(fn.args[0], [I64(i)], source_etype=F32), typ=F32)
        y = b.load(b.gep(fn.args[1], [I64(i)], source_etype=F32), typ=F32)
        b.store(b.fmul(x, y), b.gep(fn.args[2], [I64(i)], source_etype=F32))
    b.ret_void()
    assert "x float>" in jit.optimized_ir(m)


def test_emit_object_is_pic_elf(tmp_path):
    obj = jit.emit_object(_vadd_module())
    assert obj[:4] == b"\x7fELF"
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler/linker to build a shared library")
    (tmp_path / "k.o").write_bytes(obj)
    so = tmp_path / "libk.so"
    r = subprocess.run([cc, "-shared", "-o", str(so), str(tmp_path / "k.o")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "TEXTREL" not in r.stderr
    lib = ctypes.CDLL(str(so))
    lib.vadd.argtypes = VADD_SIG[1:]
    x = np.ones(10, np.float32)
    out = np.empty(10, np.float32)
    lib.vadd(x.ctypes.data, x.ctypes.data, out.ctypes.data, 10)
    assert (out == 2).all()


def test_cfunc_releases_gil():
    # A native spin that waits for a flag set by another Python thread: it only finishes
    # if the GIL is released during the call.
    m = jit.ir_module()
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [PTR]), name="wait_flag")
    entry = fn.append_basic_block("entry")
    loop = fn.append_basic_block("loop")
    done = fn.append_basic_block("done")
    b = ir.IRBuilder(entry)
    b.branch(loop)
    b.position_at_end(loop)
    v = b.load_atomic(fn.args[0], "acquire", 8, typ=I64)
    b.cbranch(b.icmp_signed("!=", v, I64(0)), done, loop)
    b.position_at_end(done)
    b.ret_void()
    jm = jit.JitModule(m)
    wait = jm.cfunc("wait_flag", None, ctypes.c_void_p)
    flag = np.zeros(1, np.int64)

    def setter():
        time.sleep(0.05)
        flag[0] = 1
    t = threading.Thread(target=setter)
    t.start()
    wait(flag.ctypes.data)      # would deadlock if the GIL were held
    t.join()


def _task_module():
    """task(ctx, t): ctx[t] += t + 1 (an int64 array), and a caller of parallel_for."""
    m = jit.ir_module()
    task = ir.Function(m, parallel.TASK_FN_TYPE, name="task")
    b = ir.IRBuilder(task.append_basic_block("entry"))
    p = b.gep(task.args[0], [task.args[1]], source_etype=I64)
    b.store(b.add(b.load(p, typ=I64), b.add(task.args[1], I64(1))), p)
    b.ret_void()
    run = ir.Function(m, ir.FunctionType(ir.VoidType(), [PTR, I64]), name="run")
    b = ir.IRBuilder(run.append_basic_block("entry"))
    b.call(parallel.declare_parallel_for(m), [task, run.args[0], run.args[1]])
    b.ret_void()
    return m


def test_parallel_for_runs_each_task_once():
    parallel.ensure_runtime_symbols()
    jm = jit.JitModule(_task_module())
    run = jm.cfunc("run", None, ctypes.c_void_p, ctypes.c_int64)
    for n in (0, 1, 2, 3, 7, 100):          # more tasks than cores: the caller runs the rest
        ctx = np.zeros(max(n, 1), np.int64)
        for _ in range(5):
            run(ctx.ctypes.data, n)
        assert (ctx[:n] == 5 * (np.arange(n) + 1)).all()
    assert 1 <= parallel.runtime().pool_size() <= parallel.MAX_THREADS


def test_parallel_for_after_workers_parked():
    parallel.ensure_runtime_symbols()
    jm = jit.JitModule(_task_module())
    run = jm.cfunc("run", None, ctypes.c_void_p, ctypes.c_int64)
    ctx = np.zeros(2, np.int64)
    for _ in range(3):
        time.sleep(0.005)                 # workers fall asleep on the futex
        run(ctx.ctypes.data, 2)
    assert list(ctx) == [3, 6]


def test_aot_object_with_private_pool(tmp_path):
    # The AOT path: the pool is defined inside the module, linked into a shared library.
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler/linker to build a shared library")
    m = _task_module()
    parallel.define_runtime(m)
    (tmp_path / "t.o").write_bytes(jit.emit_object(m))
    so = tmp_path / "libt.so"
    r = subprocess.run([cc, "-shared", "-o", str(so), str(tmp_path / "t.o")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lib = ctypes.CDLL(str(so))
    lib.run.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    ctx = np.zeros(3, np.int64)
    lib.run(ctx.ctypes.data, 3)
    assert list(ctx) == [1, 2, 3]


def test_spawn_runtime_matches():
    rt = parallel.runtime()
    for n in (1, 2, 3):
        rt.spawn_for(rt.noop_task, None, n)
        rt.parallel_for(rt.noop_task, None, n)
