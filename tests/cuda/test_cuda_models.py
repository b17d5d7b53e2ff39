"""Whole models on the cuda target: predict and two training steps of an MLP (with dropout,
so the counter-based RNG must match), the small CNN example and a tiny LSTM agree with the
reference target (predictions within 1e-5, logs and weights after two steps within 1e-4),
and with the cpu target where it runs; ``fit`` with a partial last batch; the device
residency contract (unchanged params are not re-uploaded, host changes are seen, the lease
protocol of ``run_resident``); ``dump-ir --stage cuda`` text; the one-line error without GPU.
"""
from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import graphc
from graphc.frontend.layers.base import reset_name_counters
from graphc.layers import LSTM, Dense, Dropout
from graphc.models import Sequential
from graphc.utils import set_random_seed

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _mlp():
    m = Sequential()
    m.add(Dense(8, activation="relu", input_dim=5))
    m.add(Dropout(0.3))
    m.add(Dense(3, activation="softmax"))
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def _lstm():
    m = Sequential()
    m.add(LSTM(4, input_shape=(3, 2)))
    m.add(Dense(1, activation="sigmoid"))
    m.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return m


def _small_cnn():
    spec = importlib.util.spec_from_file_location("cuda_small_cnn", EXAMPLES / "small_cnn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_model()


MODELS = {"mlp": _mlp, "small_cnn": _small_cnn, "lstm": _lstm}


def _data(name, n, seed=0):
    rng = np.random.default_rng(seed)
    if name == "mlp":
        return rng.standard_normal((n, 5)).astype(np.float32), rng.integers(0, 3, n)
    if name == "lstm":
        return rng.standard_normal((n, 3, 2)).astype(np.float32), rng.integers(0, 2, n)
    x = (rng.random((n, 12, 12, 1), dtype=np.float32) * 0.3)
    return x, np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]


def _compiled(name, target, seed=0):
    set_random_seed(seed)
    reset_name_counters()       # same layer names, so the same dropout salts
    exe = graphc.compile(MODELS[name](), target=target)
    exe.seed = np.array(1234, np.int64)        # the same dropout stream on every target
    return exe


def _close(a, b, tol, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.abs(a).max(initial=0.0), 1e-3)
    np.testing.assert_allclose(b, a, rtol=tol, atol=tol * scale, err_msg=what)


def _agree(name, other_target, batch):
    ref, cu = _compiled(name, other_target), _compiled(name, "cuda")
    for a, b in zip(ref.get_weights(), cu.get_weights()):
        np.testing.assert_array_equal(a, b)
    x, y = _data(name, batch)
    pr, pc = ref.predict_on_batch(x), cu.predict_on_batch(x)
    for a, b in zip(pr if isinstance(pr, list) else [pr], pc if isinstance(pc, list) else [pc]):
        _close(a, b, 1e-5, f"{name} predict vs {other_target}")
    for step in range(2):
        lr = ref.train_on_batch(x, y, return_dict=True)
        lc = cu.train_on_batch(x, y, return_dict=True)
        assert lr.keys() == lc.keys()
        for k in lr:
            _close(lr[k], lc[k], 1e-4, f"{name} step {step} {k} vs {other_target}")
        for i, (a, b) in enumerate(zip(ref.get_weights(), cu.get_weights())):
            _close(a, b, 1e-4, f"{name} step {step} weight {i} vs {other_target}")
    return ref, cu


@pytest.mark.parametrize("name,batch", [("mlp", 4), ("small_cnn", 2), ("lstm", 3)])
def test_predict_and_two_train_steps_match_reference(name, batch):
    _agree(name, "reference", batch)


def _cpu_runs() -> bool:
    from graphc.runtime.backends import get_backend
    try:
        be = get_backend("cpu")
        return bool(getattr(be, "is_available", lambda: True)())
    except Exception:   # noqa: BLE001 (not built here, or llvmlite missing)
        return False


@pytest.mark.parametrize("name,batch", [("mlp", 4), ("lstm", 3)])
def test_agrees_with_cpu_target(name, batch):
    if not _cpu_runs():
        pytest.skip("the cpu target is not available in this build")
    _agree(name, "cpu", batch)


def test_fit_with_partial_last_batch_matches_reference():
    x, y = _data("mlp", 5, seed=3)
    hist = {}
    weights = {}
    for target in ("reference", "cuda"):
        exe = _compiled("mlp", target, seed=1)
        h = exe.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0)
        hist[target] = h.history["loss"]
        weights[target] = exe.get_weights()
    _close(hist["reference"], hist["cuda"], 1e-4, "fit loss")
    for a, b in zip(weights["reference"], weights["cuda"]):
        _close(a, b, 1e-4, "fit weights")

# ----------------------------------------------------------------------------- residency


def _train_fn(exe):
    return next(fn for key, (_, fn) in exe._steps.items() if key[0] == "train")


def test_unchanged_params_stay_on_the_device_and_host_changes_are_seen():
    ref, cu = _compiled("mlp", "reference"), _compiled("mlp", "cuda")
    x, y = _data("mlp", 4)
    for exe in (ref, cu):
        exe.train_on_batch(x, y)
    store = _train_fn(cu).store
    before = store.uploads
    for exe in (ref, cu):
        exe.train_on_batch(x, y)
    assert store.uploads == before, "state written back by the runtime was uploaded again"
    cu.predict_on_batch(x)              # another step of the same executable: same store
    assert store.uploads == before
    # A change made on the host (set_weights) must reach the device.
    new = [w * 0.5 for w in ref.get_weights()]
    ref.set_weights(new)
    cu.set_weights([w.copy() for w in new])
    lr = ref.train_on_batch(x, y, return_dict=True)
    lc = cu.train_on_batch(x, y, return_dict=True)
    assert store.uploads > before
    _close(lr["loss"], lc["loss"], 1e-4, "loss after set_weights")
    for a, b in zip(ref.get_weights(), cu.get_weights()):
        _close(a, b, 1e-4, "weights after set_weights")


class _LeasedVariable:
    """A stand-in for ``graphc.frontend.variables.Variable`` with the lease hook the
    resident path asks of it (see ``graphc.codegen.cuda.backend.DeviceStore``)."""

    def __init__(self, array):
        self._value = np.array(array, copy=True)
        self._device = None
        self.reads = 0

    @property
    def value(self):
        if self._device is not None:
            self._device.pull(self)
            self.reads += 1
        return self._value


def test_run_resident_keeps_state_on_the_device():
    ref, cu = _compiled("mlp", "reference"), _compiled("mlp", "cuda")
    x, y = _data("mlp", 4)
    ref.train_on_batch(x, y)
    cu.train_on_batch(x, y)                   # builds the train step; state as the ref's
    step, fn = next(v for k, v in cu._steps.items() if k[0] == "train")
    variables = [_LeasedVariable(v.value) for v in step.params]
    state = [variables[step.params.index(v)] for v in step.state_vars]
    xs, ys, sws = cu._prepare_xy([x], [y], None)
    store = fn.store
    for i in range(2):
        ref_logs = ref.train_on_batch(x, y, return_dict=True)
        up = store.uploads
        logs = fn.run_resident(xs + ys + sws + [cu.seed], variables, state)
        if i == 1:
            assert store.uploads == up, "leased params were uploaded again"
        assert len(logs) == len(step.log_names)
        for k, v in zip(step.log_names, logs):
            _close(ref_logs[k], float(v), 1e-4, f"resident step {i} {k}")
    assert all(v._device is store for v in variables)
    for v, want in zip(variables, [p.value for p in ref._steps[next(
            k for k in ref._steps if k[0] == "train")][0].params]):
        _close(want, v.value, 1e-4, "resident weights")      # reading pulls
    assert all(v._device is None for v in variables)


def test_train_step_outputs_name_the_state():
    cu = _compiled("small_cnn", "cuda")
    x, y = _data("small_cnn", 2)
    cu.train_on_batch(x, y)
    step, fn = next(v for k, v in cu._steps.items() if k[0] == "train")
    nlog = len(step.log_names)
    assert sorted(fn.state_outputs) == list(range(nlog, nlog + len(step.state_vars)))
    for j, slot in fn.state_outputs.items():
        assert step.params[slot] is step.state_vars[j - nlog]

# ----------------------------------------------------------------------------- dump


def test_dump_cuda_stage_text():
    from graphc.codegen.cuda.dump import cuda_source
    from graphc.passes.pipeline import build_stage
    g = build_stage(_small_cnn(), "train", batch_size=2)
    text = cuda_source(g)
    assert text == cuda_source(g)
    plan = text[text.index("launch plan @train"):].splitlines()
    n = int(plan[0].split(":")[1].split()[0])
    assert n == len(plan) - 1 and n > 20
    assert "cuda.shared.array" in text and "cuda.syncthreads()" in text
    assert all(" grid (" in ln and " block (" in ln and " shared " in ln for ln in plan[1:])
    for ln in plan[1:]:
        assert f"def {ln.split()[1]}(" in text

# ----------------------------------------------------------------------------- no GPU


def test_no_gpu_no_simulator_is_a_one_line_error():
    code = (
        "import graphc, graphc.codegen.cuda.backend\n"
        "from numba import cuda\n"
        "if cuda.is_available():\n"
        "    print('HAS-GPU'); raise SystemExit(0)\n"
        "from graphc.layers import Dense\n"
        "from graphc.models import Sequential\n"
        "m = Sequential(); m.add(Dense(2, input_dim=3))\n"
        "try:\n"
        "    graphc.compile(m, target='cuda')\n"
        "except graphc.errors.TargetError as e:\n"
        "    print('ERR', e, '|cause', e.__cause__, '|ctx', e.__suppress_context__)\n"
        "print('AVAILABLE', graphc.config.available_targets())\n")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=str(ROOT), timeout=120)
    assert out.returncode == 0, out.stderr
    if "HAS-GPU" in out.stdout:
        pytest.skip("this machine has a GPU")
    err = next(ln for ln in out.stdout.splitlines() if ln.startswith("ERR "))
    assert "target 'cuda' needs an NVIDIA GPU (none found); use target='cpu', or set " \
           "NUMBA_ENABLE_CUDASIM=1" in err
    assert "|cause None |ctx True" in err
    assert "CudaSupportError" not in out.stdout + out.stderr
    assert "'cuda'" not in out.stdout.split("AVAILABLE", 1)[1]


def test_executable_fit_keeps_weights_on_the_device_until_read():
    x, y = _data("mlp", 5, seed=3)
    exe = _compiled("mlp", "cuda", seed=1)
    exe.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0)
    weights = exe.model.trainable_weights
    assert all(v._device is not None for v in weights)     # leased: no per-step download
    exe.get_weights()                                        # reading pulls them back
    assert all(v._device is None for v in weights)
