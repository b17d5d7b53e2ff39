"""Whole models on the cpu target: every example's train step agrees with the reference
target for several steps (loss, metrics and weights), predictions agree, runs with the same
seed are bit-identical, and the digits CNN trains through ``fit`` to the example's bar."""
from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

pytest.importorskip("llvmlite")

import graphc  # noqa: E402
from graphc.frontend.layers.base import reset_name_counters  # noqa: E402
from graphc.utils import set_random_seed  # noqa: E402

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
NAMES = ["seed_mlp", "small_cnn", "functional_two_input", "digits_cnn"]


def _module(name):
    spec = importlib.util.spec_from_file_location(f"cpu_example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _data(name, mod, n, rng):
    if name == "digits_cnn":
        (x, y), _ = mod.load_digits()
        pick = rng.choice(len(x), n, replace=False)
        return x[pick], y[pick]
    return mod.make_data(n, rng)


def _pair(name, target, seed=0):
    """The example's model (weights from ``seed``) compiled for ``target``, its module."""
    mod = _module(name)
    set_random_seed(seed)
    reset_name_counters()       # same layer names, so the same dropout salts
    model = mod.build_model()
    exe = graphc.compile(model, target=target)
    exe.seed = np.array(1234, np.int64)        # the same dropout stream on both targets
    return exe, mod


def _close(a, b, rtol, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.abs(a).max(initial=0.0), 1e-3)
    np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * scale, err_msg=what)


@pytest.mark.parametrize("name", NAMES)
def test_train_steps_match_reference(name):
    ref, mod = _pair(name, "reference")
    cpu, _ = _pair(name, "cpu")
    for a, b in zip(ref.get_weights(), cpu.get_weights()):
        np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(0)
    x, y = _data(name, mod, 32, rng)
    for step in range(3):
        lr = ref.train_on_batch(x, y, return_dict=True)
        lc = cpu.train_on_batch(x, y, return_dict=True)
        assert lr.keys() == lc.keys()
        for k in lr:
            _close(lr[k], lc[k], 1e-4, f"{name} step {step} {k}")
        for i, (a, b) in enumerate(zip(ref.get_weights(), cpu.get_weights())):
            _close(a, b, 1e-4, f"{name} step {step} weight {i}")
    pr, pc = ref.predict_on_batch(x), cpu.predict_on_batch(x)
    for a, b in zip(pr if isinstance(pr, list) else [pr], pc if isinstance(pc, list) else [pc]):
        _close(a, b, 1e-5, f"{name} predict")


def test_same_seed_gives_bit_identical_weights():
    runs = []
    for _ in range(2):
        cpu, mod = _pair("digits_cnn", "cpu", seed=3)
        x, y = _data("digits_cnn", mod, 64, np.random.default_rng(1))
        for _ in range(4):
            cpu.train_on_batch(x, y)
        runs.append(cpu.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_digits_cnn_fit_reaches_the_example_accuracy():
    mod = _module("digits_cnn")
    set_random_seed(0)
    reset_name_counters()
    (x_train, y_train), (x_test, y_test) = mod.load_digits()
    model = mod.build_model()
    exe = graphc.compile(model, target="cpu")
    exe.fit(x_train, y_train, epochs=15, batch_size=32, verbose=0)
    _, accuracy = exe.evaluate(x_test, y_test, verbose=0)
    assert accuracy >= mod.REQUIRED_ACCURACY
    # The model's weights are the trained ones (shared with the executable).
    np.testing.assert_array_equal(model.get_weights()[0], exe.get_weights()[0])


@pytest.mark.parametrize("name", ["seed_mlp", "digits_cnn"])
def test_inplace_state_updates_the_param_arrays(name):
    from graphc.passes import train_step as ts
    from graphc.runtime.backends import get_backend
    mod = _module(name)
    set_random_seed(0)
    reset_name_counters()
    model = mod.build_model()
    step = ts.build_train_graph(model, ts.model_input_types(model, 16),
                                ts.default_target_types(model, 16))
    fn = get_backend("cpu").compile(step.graph, inplace_state=True)
    ref = get_backend("reference").compile(step.graph)
    assert fn.module_info.aliases, "no state output was updated in place"
    x, y = _data(name, mod, 16, np.random.default_rng(0))
    xs = [np.asarray(a) for a in (x if isinstance(x, list) else [x])]
    y = np.asarray(y, np.float32 if step.graph.inputs[len(xs)].dtype.is_float else np.int32)
    ins = xs + [y.reshape(step.graph.inputs[len(xs)].shape), np.ones(16, np.float32),
                np.array(7, np.int64)]
    params = [np.array(v.value) for v in step.params]
    ref_params = [p.copy() for p in params]
    nlog = len(step.log_names)
    index = {id(v): i for i, v in enumerate(step.params)}
    for _ in range(3):
        got, want = fn(ins, params), ref(ins, ref_params)
        for a, b in zip(want, got):
            _close(a, b, 1e-4, name)
        for v, new, out in zip(step.state_vars, want[nlog:], got[nlog:]):
            i = index[id(v)]
            ref_params[i] = np.array(new)
            if fn.module_info.aliases and out is params[i]:
                continue                    # updated in place: the very param array
            params[i][...] = out
    n_inplace = sum(any(o is p for p in params) for o in got[nlog:])
    assert n_inplace == len(fn.module_info.aliases) > 0
