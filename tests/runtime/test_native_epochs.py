"""``fit`` on in-memory arrays runs each epoch's full batches in native code (the cpu
target's epoch entry, graphc/codegen/cpu/epoch.py): the oracle is the per-batch loop
(``training.NATIVE_EPOCHS = False``), which must give bit-identical weights, optimizer
state and history, for every way of feeding batches; then the reference interpreter."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("llvmlite")

import graphc  # noqa: E402
from graphc import callbacks as cb  # noqa: E402
from graphc.errors import ShapeError  # noqa: E402
from graphc.frontend.layers.base import reset_name_counters  # noqa: E402
from graphc.layers import (BatchNormalization, Concatenate, Dense, Dropout, Embedding,  # noqa: E402
                           Flatten, Input)
from graphc.models import Model, Sequential  # noqa: E402
from graphc.runtime import training  # noqa: E402
from graphc.runtime.executable import Executable  # noqa: E402
from graphc.utils import set_random_seed  # noqa: E402


def _mlp(seed=0, width=10, dropout=0.25, loss="binary_crossentropy"):
    # Same layer names every build: dropout masks are salted with the layer's name.
    reset_name_counters()
    set_random_seed(seed)
    m = Sequential([Dense(16, activation="relu", input_dim=width), Dropout(dropout),
                    Dense(1, activation="sigmoid")])
    m.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    return m


def _data(n=203, width=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, width), dtype=np.float32)
    return x, (x[:, 0] + x[:, 1] > 1).astype(np.int64)


_TRAIN, _TEST, _STEPS = Executable.train_step, Executable.test_step, Executable.run_steps


class _Spy:
    """Records per-batch ``train_step``/``test_step`` calls (batch sizes) and native
    ``run_steps`` calls (steps per call), per kind."""

    def __init__(self, monkeypatch):
        self.batches, self.native_steps = [], []
        self.test_batches, self.native_test_steps = [], []

        def train_step(exe, xs, ys, sws=None):
            self.batches.append(len(xs[0]))
            return _TRAIN(exe, xs, ys, sws)

        def test_step(exe, xs, ys, sws=None):
            self.test_batches.append(len(xs[0]))
            return _TEST(exe, xs, ys, sws)

        def run_steps(exe, kind, rows, index, nsteps, batch_size):
            (self.native_steps if kind == "train" else self.native_test_steps).append(nsteps)
            return _STEPS(exe, kind, rows, index, nsteps, batch_size)
        monkeypatch.setattr(Executable, "train_step", train_step)
        monkeypatch.setattr(Executable, "test_step", test_step)
        monkeypatch.setattr(Executable, "run_steps", run_steps)


def _fit(monkeypatch, native, make=_mlp, x=None, y=None, **kw):
    monkeypatch.setattr(training, "NATIVE_EPOCHS", native)
    spy = _Spy(monkeypatch)
    model = make()
    if x is None:
        x, y = _data()
    kw.setdefault("epochs", 3)
    kw.setdefault("batch_size", 16)
    kw.setdefault("verbose", 0)
    history = model.fit(x, y, **kw)
    state = [v.value.copy() for v in model.optimizer.variables]
    return model.get_weights(), state, history, spy


def _assert_same(a, b):
    wa, sa, ha, _ = a
    wb, sb, hb, _ = b
    assert len(wa) == len(wb) and len(sa) == len(sb)
    for u, v in zip(wa + sa, wb + sb):
        np.testing.assert_array_equal(u, v)
    assert ha.history == hb.history            # exact floats, same keys and order
    assert ha.epoch == hb.epoch


@pytest.mark.parametrize("kw", [
    {},                                                   # shuffled, partial last batch
    {"shuffle": False},
    {"shuffle": "batch"},                                 # the partial batch mid-epoch
    {"batch_size": 29},                                   # 203 = 7 * 29: no partial batch
    {"class_weight": {0: 1.0, 1: 3.0}},
    {"validation_split": 0.2},
    {"initial_epoch": 1},
], ids=["shuffle", "no-shuffle", "shuffle-batch", "full-batches", "class-weight",
        "validation-split", "initial-epoch"])
def test_native_epochs_are_bit_identical_to_per_batch_steps(monkeypatch, kw):
    native = _fit(monkeypatch, True, **kw)
    per_batch = _fit(monkeypatch, False, **kw)
    _assert_same(native, per_batch)
    n = int(np.floor(203 * 0.8)) if "validation_split" in kw else 203
    bs = kw.get("batch_size", 16)
    epochs = 3 - kw.get("initial_epoch", 0)
    partial = [n % bs] * epochs if n % bs else []
    assert native[3].batches == partial                   # only the partial batches
    assert sum(native[3].native_steps) == (n // bs) * epochs
    assert len(per_batch[3].batches) == -(-n // bs) * epochs
    assert per_batch[3].native_steps == []


def test_sample_weights_and_validation_data(monkeypatch):
    x, y = _data()
    sw = np.random.default_rng(1).random(len(x)).astype(np.float32) * 2
    vx, vy = _data(40, seed=2)
    kw = dict(sample_weight=sw, validation_data=(vx, vy), x=x, y=y)
    native = _fit(monkeypatch, True, **kw)
    _assert_same(native, _fit(monkeypatch, False, **kw))
    assert "val_loss" in native[2].history and native[3].native_steps
    assert native[3].native_test_steps and native[3].test_batches == [40 % 16] * 3


def test_evaluate_runs_its_full_batches_natively(monkeypatch, capsys):
    x, y = _data(75)
    sw = np.linspace(0.5, 2, 75).astype(np.float32)
    results = []
    for native, verbose in ((True, 0), (False, 0), (True, 1)):
        monkeypatch.setattr(training, "NATIVE_EPOCHS", native)
        spy = _Spy(monkeypatch)
        m = _mlp()
        results.append((m.evaluate(x, y, sample_weight=sw, batch_size=16, verbose=verbose,
                                   return_dict=True), spy))
    assert results[0][0] == results[1][0] == results[2][0]
    assert sum(results[0][1].native_test_steps) == 4 and results[0][1].test_batches == [11]
    assert results[1][1].native_test_steps == [] and len(results[1][1].test_batches) == 5
    assert "5/5" in capsys.readouterr().out


def test_big_rows_sparse_labels_and_several_inputs(monkeypatch):
    """Rows gathered into staging buffers (a 784-wide batch is read in place by the
    per-batch step), integer labels, two inputs, and a per-batch call afterwards."""
    rng = np.random.default_rng(3)
    xa = rng.random((70, 784), dtype=np.float32)
    xb = rng.integers(0, 20, (70, 3))
    y = rng.integers(0, 5, 70)

    def make():
        reset_name_counters()
        set_random_seed(5)
        a, b = Input((784,), name="a"), Input((3,), name="b", dtype="int32")
        h = Concatenate()([Dense(8, activation="tanh")(a), Flatten()(Embedding(20, 2)(b))])
        m = Model([a, b], Dense(5, activation="softmax")(Dropout(0.1)(h)))
        m.compile("rmsprop", "sparse_categorical_crossentropy", ["accuracy"])
        return m
    runs = []
    for native in (True, False):
        runs.append(_fit(monkeypatch, native, make=make, x=[xa, xb], y=y, batch_size=8))
    _assert_same(*runs)
    assert runs[0][3].native_steps


def test_per_batch_calls_after_native_epochs_see_the_trained_weights(monkeypatch):
    """After an epoch entry gathered into the step's buffers, ``train_on_batch`` binds
    its own arrays again (same results as a model trained per batch throughout)."""
    rng = np.random.default_rng(4)
    x, y = rng.random((64, 784), dtype=np.float32), rng.integers(0, 2, 64)
    outs = []
    for native in (True, False):
        monkeypatch.setattr(training, "NATIVE_EPOCHS", native)
        m = _mlp(width=784)
        m.fit(x, y, batch_size=16, epochs=1, verbose=0)
        loss = m.train_on_batch(x[:16], y[:16])
        outs.append((loss, m.predict_on_batch(x[:5]), m.get_weights()))
    assert outs[0][0] == outs[1][0]
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    for a, b in zip(outs[0][2], outs[1][2]):
        np.testing.assert_array_equal(a, b)


def test_epoch_callbacks_keep_the_native_path_and_batch_callbacks_force_per_batch(
        monkeypatch):
    es = lambda: cb.EarlyStopping(monitor="loss", patience=0, min_delta=1.0)  # noqa: E731
    native = _fit(monkeypatch, True, callbacks=[es()], epochs=5)
    per_batch = _fit(monkeypatch, False, callbacks=[es()], epochs=5)
    _assert_same(native, per_batch)
    assert native[2].epoch == [0, 1] and native[3].native_steps

    seen = []
    batch_cb = cb.LambdaCallback(on_batch_end=lambda batch, logs: seen.append(batch))
    hooked = _fit(monkeypatch, True, callbacks=[batch_cb], epochs=2)
    assert hooked[3].native_steps == [] and len(hooked[3].batches) == 2 * 13
    assert seen == list(range(13)) * 2
    _assert_same(hooked, _fit(monkeypatch, False, epochs=2))


def test_stop_training_set_before_an_epoch_stops_after_its_first_batch(monkeypatch):
    class StopAtEpochBegin(cb.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True
    runs = [_fit(monkeypatch, native, callbacks=[StopAtEpochBegin()], epochs=4)
            for native in (True, False)]
    _assert_same(*runs)
    assert runs[0][2].epoch == [0, 1]
    iterations = [s for s in runs[0][1] if s.dtype == np.int64]
    assert int(iterations[0]) == 13 + 1


def test_progress_bar_is_updated_between_native_calls(monkeypatch, capsys):
    monkeypatch.setattr(training, "PROGRESS_INTERVAL", 0.0)     # one step per call
    native = _fit(monkeypatch, True, verbose=1, epochs=2)
    out = capsys.readouterr().out
    per_batch = _fit(monkeypatch, False, verbose=1, epochs=2)
    _assert_same(native, per_batch)
    assert native[3].native_steps == [1] * 24           # 12 full batches per epoch
    assert "Epoch 2/2" in out and "13/13" in out
    monkeypatch.setattr(training, "PROGRESS_INTERVAL", 10.0)
    chunked = _fit(monkeypatch, True, verbose=2, epochs=2)
    assert chunked[3].native_steps == [1, 11, 12]       # one step first, to time it


def test_log_means_over_many_steps_equal_one_add_per_step():
    rng = np.random.default_rng(6)
    vals = {"loss": rng.random(300).astype(np.float32) * 1e3,
            "acc": rng.random(300).astype(np.float32)}
    one, many = training._Means(), training._Means()
    for i in range(300):
        one.add({k: float(v[i]) for k, v in vals.items()}, 32)
    many.add_steps({k: v[:100] for k, v in vals.items()}, 32)
    many.add_steps({k: v[100:] for k, v in vals.items()}, 32)
    assert one.result() == many.result() and one.count == many.count


def test_native_epochs_agree_with_the_reference_target():
    """Independent oracle: the reference interpreter running the same fit per batch."""
    x, y = _data(100)
    weights = []
    for target in ("cpu", "reference"):
        m = _mlp(dropout=0.0)
        exe = graphc.compile(m, target=target)
        assert exe.native_epochs == (target == "cpu")
        exe.fit(x, y, batch_size=16, epochs=3, verbose=0)
        weights.append(m.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_run_steps_checks_its_arguments():
    m = _mlp()
    exe = graphc.compile(m, target="cpu")
    x, y = _data(40)
    rows = exe.prepare_rows([x], [y.reshape(-1, 1)], [None])
    with pytest.raises(ShapeError, match="row indices"):
        exe.run_steps("train", rows, np.array([0] * 15 + [40], np.int64), 1, 16)
    with pytest.raises(ShapeError, match="row indices"):
        exe.run_steps("train", rows, np.arange(16), 2, 16)
    logs = exe.run_steps("train", rows, np.arange(32), 2, 16)
    assert sorted(logs) == ["accuracy", "loss"] and logs["loss"].shape == (2,)
    assert int(m.optimizer.iterations.value) == 2


def test_state_the_step_cannot_update_in_place_is_fed_back_every_step(monkeypatch):
    """BatchNormalization's moving statistics and an embedding table updated by a
    scatter are new-state outputs copied back into their params inside the loop."""
    rng = np.random.default_rng(7)
    x = rng.integers(0, 20, (45, 4))
    y = rng.random((45, 1), dtype=np.float32)

    def make():
        reset_name_counters()
        set_random_seed(8)
        m = Sequential([Embedding(20, 3, input_length=4), Flatten(), Dense(8),
                        BatchNormalization(), Dense(1)])
        m.compile(graphc.optimizers.SGD(0.05, momentum=0.9), "mse", ["mae"])
        return m
    native = _fit(monkeypatch, True, make=make, x=x, y=y, batch_size=8)
    _assert_same(native, _fit(monkeypatch, False, make=make, x=x, y=y, batch_size=8))
    assert native[3].native_steps


def test_epoch_entry_is_compiled_once_then_loaded_from_the_disk_cache():
    from graphc.codegen.cpu import cache
    from graphc.codegen.cpu.epoch import EpochSpec, load_epoch_entry
    spec = EpochSpec(batch=3, gathers=((0, 12), (1, 4)), logs=((5, 4),), copies=((2, 6, 8),))
    load_epoch_entry(spec)
    cache.clear_memory()
    hits = cache.STATS["disk_hits"]
    fn, module = load_epoch_entry(spec)
    assert cache.STATS["disk_hits"] == hits + (cache.cache_dir() is not None)
    assert module.address(spec.symbol)


def test_predict_on_batch_fast_path_follows_weight_changes_and_returns_fresh_arrays():
    m = _mlp()
    x = _data(3)[0]
    first = m.predict_on_batch(x)
    again = m.predict_on_batch(x)
    assert first is not again and not np.shares_memory(first, again)
    np.testing.assert_array_equal(first, again)
    m.set_weights([w * 0.5 for w in m.get_weights()])
    halved = m.predict_on_batch(x)
    ref = graphc.compile(m, target="reference").predict_on_batch(x)
    np.testing.assert_allclose(halved, ref, rtol=1e-5, atol=1e-6)
    assert not np.allclose(halved, first)
    np.testing.assert_allclose(m.predict_on_batch(x[:1]), ref[:1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.predict_on_batch(x.astype(np.float64)), ref, rtol=1e-5,
                               atol=1e-6)


def test_a_test_batch_hook_keeps_training_native_and_validates_per_batch(monkeypatch):
    seen = []
    hook = cb.LambdaCallback(on_test_batch_end=lambda batch, logs: seen.append(batch))
    x, y = _data()
    kw = dict(x=x, y=y, validation_data=_data(40, seed=2), epochs=2)
    hooked = _fit(monkeypatch, True, callbacks=[hook], **kw)
    assert hooked[3].native_steps and hooked[3].native_test_steps == []
    assert seen == [0, 1, 2] * 2
    _assert_same(hooked, _fit(monkeypatch, False, **kw))


def test_checkpoint_per_epoch_keeps_the_native_path_per_batches_forces_steps(
        monkeypatch, tmp_path):
    every_epoch = cb.ModelCheckpoint(str(tmp_path / "e{epoch}.weights.h5"),
                                     save_weights_only=True)
    native = _fit(monkeypatch, True, callbacks=[every_epoch], epochs=2)
    assert native[3].native_steps and sorted(p.name for p in tmp_path.iterdir()) == [
        "e1.weights.h5", "e2.weights.h5"]
    every_5 = cb.ModelCheckpoint(str(tmp_path / "b.weights.h5"), save_weights_only=True,
                                 save_freq=5)
    hooked = _fit(monkeypatch, True, callbacks=[every_5], epochs=2)
    assert hooked[3].native_steps == [] and (tmp_path / "b.weights.h5").exists()
    _assert_same(native, hooked)
