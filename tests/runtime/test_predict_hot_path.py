"""Batch-1 inference takes a lean path (``Executable._make_hot_predict``, the cpu step's
``bound_caller``): params bound once, the input copied in, no per-call Python over the
weights. The oracle is the reference interpreter on the same model; every way the lean
path could go stale (new weight values, a new compile, a device lease, another call
re-pointing the step's table, other shapes/dtypes, threads) must still give its answer."""
from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("llvmlite")

import graphc  # noqa: E402
from graphc.frontend import variables  # noqa: E402
from graphc.layers import Dense, Input  # noqa: E402
from graphc.models import Model, Sequential  # noqa: E402
from graphc.utils import set_random_seed  # noqa: E402


def _mlp(seed=0):
    set_random_seed(seed)
    m = Sequential([Dense(48, activation="relu", input_dim=20), Dense(5, activation="softmax")])
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    return m


def _oracle(model, x):
    return graphc.compile(model, target="reference").predict_on_batch(x)


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_batch1_calls_match_the_interpreter_and_return_fresh_arrays():
    m = _mlp()
    exe = graphc.compile(m, target="cpu")
    rng = np.random.default_rng(0)
    outs = []
    for _ in range(4):
        x = rng.random((1, 20), dtype=np.float32)
        y = exe.predict_on_batch(x)
        _close(y, _oracle(m, x))
        outs.append((x, y.copy(), y))
    assert exe._hot_predict is not None
    for x, kept, y in outs:         # later calls did not overwrite earlier results
        np.testing.assert_array_equal(y, kept)


def test_new_weight_values_and_a_new_compile_are_seen():
    m = _mlp()
    exe = graphc.compile(m, target="cpu")
    x = np.random.default_rng(1).random((1, 20), dtype=np.float32)
    before = exe.predict_on_batch(x)
    m.set_weights([w * 0.5 + 0.1 for w in m.get_weights()])
    after = exe.predict_on_batch(x)
    assert not np.allclose(before, after)
    _close(after, _oracle(m, x))
    m.layers[0].trainable = False
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    m.fit(np.random.default_rng(2).random((8, 20), dtype=np.float32),
          np.eye(5, dtype=np.float32)[np.arange(8) % 5], epochs=1, verbose=0)
    _close(exe.predict_on_batch(x), _oracle(m, x))


class _FakeDeviceStore:
    """Stands for a cuda device store holding newer values than the host buffers."""

    def __init__(self, newer):
        self.newer = newer

    def pull(self, var):
        var._value[...] = self.newer[var.path]
        var._device = None


def test_a_device_lease_sends_the_call_down_the_full_path():
    m = _mlp()
    exe = graphc.compile(m, target="cpu")
    x = np.random.default_rng(3).random((1, 20), dtype=np.float32)
    exe.predict_on_batch(x)
    kernel = m.layers[0].kernel
    newer = {kernel.path: np.full(kernel.shape, 0.01, np.float32)}
    leases = variables.lease_generation()
    kernel._device = _FakeDeviceStore(newer)
    assert variables.lease_generation() == leases + 1
    y = exe.predict_on_batch(x)                 # must pull the newer kernel first
    assert kernel._device is None
    np.testing.assert_array_equal(kernel.value, newer[kernel.path])
    _close(y, _oracle(m, x))


def test_other_shapes_dtypes_layouts_and_a_rebound_table_fall_back():
    m = _mlp()
    exe = graphc.compile(m, target="cpu")
    rng = np.random.default_rng(4)
    x1 = rng.random((1, 20), dtype=np.float32)
    exe.predict_on_batch(x1)
    x64 = rng.random((1, 20))                                   # float64
    _close(exe.predict_on_batch(x64), _oracle(m, x64.astype(np.float32)))
    x3 = rng.random((3, 20), dtype=np.float32)                  # another batch size
    _close(exe.predict_on_batch(x3), _oracle(m, x3))
    xt = rng.random((20, 1), dtype=np.float32).T                # not C-contiguous
    _close(exe.predict_on_batch(xt), _oracle(m, np.ascontiguousarray(xt)))
    _close(exe.predict_on_batch(x1), _oracle(m, x1))
    # Someone calls the compiled step with other param arrays: the lean caller notices
    # its table was re-pointed and steps aside.
    (step, fn), = [v for k, v in exe._steps.items() if k[0] == "predict" and
                   k[1][0][0] == (1, 20)]
    other = [np.zeros_like(v.value) for v in step.params]
    np.testing.assert_allclose(fn([x1], other)[0], np.full((1, 5), 0.2), rtol=1e-6)
    assert exe._hot_predict(x1) is None
    _close(exe.predict_on_batch(x1), _oracle(m, x1))


def test_functional_two_outputs_and_threads():
    set_random_seed(5)
    inp = Input((12,))
    h = Dense(16, activation="tanh")(inp)
    m = Model(inp, [Dense(3)(h), Dense(1, activation="sigmoid")(h)])
    m.compile(optimizer="adam", loss=["mse", "binary_crossentropy"])
    exe = graphc.compile(m, target="cpu")
    rng = np.random.default_rng(6)
    xs = [rng.random((1, 12), dtype=np.float32) for _ in range(8)]
    want = [_oracle(m, x) for x in xs]
    for x, w in zip(xs, want):
        got = exe.predict_on_batch(x)
        assert isinstance(got, list) and len(got) == 2
        for a, b in zip(got, w):
            _close(a, b)
    errors = []

    def worker(i):
        try:
            for _ in range(200):
                got = exe.predict_on_batch(xs[i])
                for a, b in zip(got, want[i]):
                    _close(a, b)
        except AssertionError as e:       # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
