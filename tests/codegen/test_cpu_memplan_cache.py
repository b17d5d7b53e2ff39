"""The cpu target's memory planner (memplan.py) and compile cache (cache.py): planning
changes no result bit and shrinks every example's arena; a hand-made program shows reuse;
a second process loads the compiled step from disk; damaged entries are recompiled; a
disabled cache writes nothing."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("llvmlite")

from graphc.codegen.cpu import cache, memplan  # noqa: E402
from graphc.codegen.kernel import (Buffer, Const, Load, LoopKernel, Op, Program,  # noqa: E402
                                   Reduction, Store, Var, flatten)
from graphc.frontend.layers.base import reset_name_counters  # noqa: E402
from graphc.ir.dtypes import DType  # noqa: E402
from graphc.passes import train_step as ts  # noqa: E402
from graphc.runtime.backends import get_backend  # noqa: E402
from graphc.utils import set_random_seed  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.py"))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    # Nothing written outside tmp_path; every test starts with an empty in-process cache.
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    cache.clear_memory()
    yield
    cache.clear_memory()


def _train_step(name, batch=8):
    spec = importlib.util.spec_from_file_location(f"memplan_{name}", ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    set_random_seed(0)
    reset_name_counters()
    model = mod.build_model()
    return ts.build_train_graph(model, ts.model_input_types(model, batch),
                                ts.default_target_types(model, batch))


def _feed(step):
    rng = np.random.default_rng(0)
    ins = []
    for v in step.graph.inputs:
        dt = v.dtype.np
        if v.shape == () and dt.kind in "iu":
            ins.append(np.array(7, dt))
        elif dt.kind == "f":
            ins.append(rng.random(v.shape).astype(dt))
        else:
            ins.append(rng.integers(0, 2, v.shape).astype(dt))
    return ins


def _run(fn, step, n=2):
    ins, params = _feed(step), [np.array(p.value) for p in step.params]
    outs = []
    for _ in range(n):
        outs += [np.array(o) for o in fn(ins, params)]
    return outs + params


@pytest.mark.parametrize("name", EXAMPLES)
def test_planned_arena_is_bit_identical_and_smaller(name):
    step = _train_step(name)
    cpu = get_backend("cpu")
    planned = cpu.compile(step.graph, inplace_state=True)
    bump = cpu.compile(step.graph, inplace_state=True, memory_plan=False)
    planned.plan.check()
    for a, b in zip(_run(planned, step), _run(bump, step)):
        np.testing.assert_array_equal(a, b)
    rep = planned.memory_report()
    assert rep["peak_bytes"] < rep["unplanned_bytes"], rep
    assert rep["unplanned_bytes"] == bump.memory_report()["peak_bytes"]
    assert rep["external_bytes"] > 0


def _hand_program(n=64):
    """x -> t1 = 2x -> t2 = rowsum(t1) -> t3 = x + t2 -> t4 = rowsum(t3) -> out = t4 + 1.
    Reductions keep the kernels apart; t1 is dead before t3 is written (same size), and
    t2 before t4: each pair provably shares memory."""
    f32 = DType.f32
    bufs = [Buffer(0, (n, n), f32, "input", "x"), Buffer(1, (n, n), f32, "temp"),
            Buffer(2, (n,), f32, "temp"), Buffer(3, (n, n), f32, "temp"),
            Buffer(4, (n,), f32, "temp"), Buffer(5, (n,), f32, "output", "out")]
    i, j = Var(0), Var(1)
    ij, i_ = flatten([i, j], (n, n)), flatten([i], (n,))
    from graphc.codegen.kernel import Acc
    ks = [
        LoopKernel("k0", (n, n), [Store(1, ij, Op("mul", (Load(0, ij, f32), Const(2.0, f32)), f32))]),
        LoopKernel("k1", (n,), [Store(2, i_, Acc(f32))],
                   Reduction((n,), "sum", Load(1, flatten([i, Var(1)], (n, n)), f32), f32)),
        LoopKernel("k2", (n, n), [Store(3, ij, Op("add", (Load(0, ij, f32), Load(2, i_, f32)), f32))]),
        LoopKernel("k3", (n,), [Store(4, i_, Acc(f32))],
                   Reduction((n,), "sum", Load(3, flatten([i, Var(1)], (n, n)), f32), f32)),
        LoopKernel("k4", (n,), [Store(5, i_, Op("add", (Load(4, i_, f32), Const(1.0, f32)), f32))]),
    ]
    return Program("hand", bufs, ks, [0], [], [5], ["out"])


def test_hand_made_program_reuses_dead_buffers():
    from graphc.codegen.cpu.backend import CpuStep, StepMeta
    from graphc.codegen.cpu.program import build_program_module
    n = 64
    prog = _hand_program(n)
    pmod = build_program_module(prog)
    plan = memplan.plan_memory(pmod)
    plan.check()
    assert plan.live[1] == (0, 1) and plan.live[3] == (2, 3)
    assert plan.offsets[1] == plan.offsets[3]          # t3 reuses t1's bytes
    assert plan.offsets[2] == plan.offsets[4]          # t4 reuses t2's
    assert plan.peak_bytes == n * n * 4 + n * 4 < plan.unplanned_bytes == 2 * (n * n * 4 + n * 4)
    pmod.ensure_symbols()
    obj, mref, _ = cache.compile_object(pmod.module)
    step = CpuStep(None, prog, StepMeta.of(pmod, plan, []), cache.ObjectModule(obj, None, mref), {})
    x = np.random.default_rng(0).random((n, n)).astype(np.float32)
    t2 = (2 * x).sum(axis=1, dtype=np.float32)
    want = (x + t2[:, None]).sum(axis=1, dtype=np.float32) + np.float32(1)
    np.testing.assert_allclose(step([x])[0], want, rtol=1e-5)


def test_executable_memory_report_cpu_and_reference():
    import graphc
    from graphc.layers import Dense
    from graphc.models import Sequential
    for target in ("cpu", "reference"):
        set_random_seed(0)
        m = Sequential([Dense(16, activation="relu", input_dim=8), Dense(1)])
        m.compile(optimizer="adam", loss="mse")
        exe = graphc.compile(m, target=target)
        x = np.ones((4, 8), np.float32)
        exe.train_on_batch(x, np.ones((4, 1), np.float32))
        exe.predict(x, verbose=0)
        rep = exe.memory_report()
        assert {r["kind"] for r in rep} == {"train", "predict"}
        train = next(r for r in rep if r["kind"] == "train")
        assert train["shapes"][0] == [4, 8]
        assert train["unplanned_bytes"] > 0
        if target == "cpu":
            assert train["peak_bytes"] < train["unplanned_bytes"]

# ----------------------------------------------------------------------------- disk cache


_CHILD = r"""
import hashlib, json, sys
sys.path.insert(0, {root!r})
import numpy as np
from graphc.codegen.cpu import cache, templates
from graphc.frontend.layers.base import reset_name_counters
from graphc.passes import train_step as ts
from graphc.runtime.backends import get_backend
from graphc.utils import set_random_seed
sys.path.insert(0, {examples!r})
import seed_mlp
set_random_seed(0); reset_name_counters()
# The seed MLP's products are small-GEMM kernels (inside the step's object); keep them on
# the packed GEMM, whose variants are cached as entries of their own, to cover both kinds.
templates.SMALL_GEMM_MAX_MADDS = templates.SMALL_GEMM_MAX_ROWS_ANY_SIZE = 0
model = seed_mlp.build_model()
step = ts.build_train_graph(model, ts.model_input_types(model, 32), ts.default_target_types(model, 32))
results = []
for _ in range(2):          # the second compile in this process: the in-process cache
    fn = get_backend("cpu").compile(step.graph, inplace_state=True)
    rng = np.random.default_rng(0)
    ins = [rng.random((32, 10), dtype=np.float32), (rng.random((32, 1)) > .5).astype(np.float32),
           np.ones(32, np.float32), np.array(3, np.int64)]
    params = [np.array(p.value) for p in step.params]
    h = hashlib.sha256()
    for _ in range(3):
        for o in fn(ins, params):
            h.update(np.ascontiguousarray(o).tobytes())
    for p in params:
        h.update(p.tobytes())
    results.append((fn.timings["cache"], h.hexdigest()))
print(json.dumps({{"results": results, "stats": cache.STATS}}))
"""


def _child(env_dir, tmp_path, extra_env=None):
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(env_dir), HOME=str(tmp_path / "home"),
               XDG_CACHE_HOME=str(tmp_path / "xdg"), **(extra_env or {}))
    code = _CHILD.format(root=str(ROOT), examples=str(ROOT / "examples"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _entries(d):
    return sorted(p for p in pathlib.Path(d).rglob("*.gco"))


@pytest.mark.slow
def test_second_process_loads_the_step_from_disk(tmp_path):
    d = tmp_path / "cache"
    first = _child(d, tmp_path)
    assert [r[0] for r in first["results"]] == ["compiled", "memory"]
    assert first["stats"]["disk_writes"] >= 2          # the step and its GEMM(s)
    assert _entries(d)
    second = _child(d, tmp_path)
    assert second["results"][0][0] == "disk"
    assert second["stats"]["disk_hits"] >= 2 and second["stats"]["disk_writes"] == 0
    # Bit-identical results from cached machine code (and the in-process hit).
    assert len({r[1] for r in first["results"] + second["results"]}) == 1
    # Damaged entries (one truncated, the others with a flipped byte) are recompiled.
    for n, p in enumerate(_entries(d)):
        raw = p.read_bytes()
        p.write_bytes(raw[: len(raw) // 2] if n == 0 else
                      raw[:-100] + bytes([raw[-100] ^ 0xFF]) + raw[-99:])
    third = _child(d, tmp_path)
    assert third["results"][0][0] == "compiled"
    assert third["stats"]["corrupt"] >= 1 and third["stats"]["disk_writes"] >= 1
    assert third["results"][0][1] == first["results"][0][1]
    fourth = _child(d, tmp_path)                       # the rewritten entries are good
    assert fourth["results"][0][0] == "disk" and fourth["stats"]["corrupt"] == 0
    assert not (tmp_path / "home").exists() and not (tmp_path / "xdg").exists()


@pytest.mark.parametrize("value", ["off", "0"])
def test_disabled_cache_writes_nothing(tmp_path, monkeypatch, value):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", value)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() is None
    step = _train_step("seed_mlp")
    w0 = cache.STATS["disk_writes"]
    fn = get_backend("cpu").compile(step.graph, inplace_state=True)
    assert fn.timings["cache"] in ("compiled", "memory")
    assert cache.STATS["disk_writes"] == w0
    assert not (tmp_path / "home").exists() and not (tmp_path / "xdg").exists()
    assert not list(tmp_path.rglob("*.gco"))


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "graphc"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert cache.cache_dir() == tmp_path / "h" / ".cache" / "graphc"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "x"))
    assert cache.cache_dir() == tmp_path / "x"


def test_corrupt_entry_in_process_is_ignored(tmp_path):
    key = cache.make_key("test", "payload")
    assert cache.disk_store(key, {"object": b"abc"})
    p, = _entries(tmp_path / "cache")
    assert cache.disk_load(key)["object"] == b"abc"
    p.write_bytes(p.read_bytes()[:-3])
    before = cache.STATS["corrupt"]
    assert cache.disk_load(key) is None and cache.STATS["corrupt"] == before + 1
    p.write_bytes(b"")
    assert cache.disk_load(key) is None
