"""fit / evaluate / predict / *_on_batch loops, tested against a fake executable: a linear
regression whose train_step applies an exact numpy SGD step and records every batch."""
import warnings

import numpy as np
import pytest

from graphc.errors import DataError, ShapeError
from graphc.frontend.seeding import set_random_seed
from graphc.runtime import training
from graphc.runtime.callbacks import Callback, History, TerminateOnNaN


class Sym:
    """A symbolic tensor as the loops see it: name, shape (batch None), dtype."""

    def __init__(self, name, shape, dtype="float32"):
        self.name, self.shape, self.dtype = name, shape, dtype


class Opt:
    def __init__(self, lr):
        self.learning_rate = lr


class LinearModel:
    """y = x @ w + b per output. Feature 0 of x carries the sample id in most tests."""

    def __init__(self, n_features=3, input_names=("x",), output_names=("y",), lr=0.01):
        self.inputs = [Sym(n, (None, n_features)) for n in input_names]
        self.outputs = [Sym(n, (None, 1)) for n in output_names]
        self.output_names = list(output_names)
        self.optimizer = Opt(lr)
        self.loss = "mse"
        self.stop_training = False
        self.w = np.zeros((n_features * len(input_names), len(output_names)), np.float64)
        self.b = np.zeros(len(output_names), np.float64)

    def get_weights(self):
        return [self.w.copy(), self.b.copy()]

    def set_weights(self, ws):
        self.w, self.b = ws[0].copy(), ws[1].copy()


class FakeExe:
    def __init__(self, model):
        self.model = model
        self.train_batches = []     # (xs, ys, sws) copies
        self.train_logs = []        # per-batch logs returned
        self.test_batches = []
        self.predict_batches = []

    def _forward(self, xs):
        x = np.concatenate([a.astype(np.float64) for a in xs], axis=1)
        return x, x @ self.model.w + self.model.b

    def _loss(self, xs, ys, sws):
        x, pred = self._forward(xs)
        y = np.stack([np.asarray(t, np.float64).reshape(len(t), -1)[:, 0] for t in ys], axis=1)
        sw = sws[0] if sws and sws[0] is not None else np.ones(len(x))
        err = pred - y
        loss = float(np.mean(sw[:, None] * err ** 2))
        return x, err, sw, {"loss": loss, "mae": float(np.mean(np.abs(err)))}

    def train_step(self, xs, ys, sws):
        self.train_batches.append(([a.copy() for a in xs], [a.copy() for a in ys],
                                   [None if s is None else s.copy() for s in sws]))
        x, err, sw, logs = self._loss(xs, ys, sws)
        n = len(x)
        lr = self.model.optimizer.learning_rate
        gw = 2 * x.T @ (sw[:, None] * err) / (n * err.shape[1])
        gb = 2 * (sw[:, None] * err).sum(0) / (n * err.shape[1])
        self.model.w -= lr * gw
        self.model.b -= lr * gb
        self.train_logs.append(logs)
        return logs

    def test_step(self, xs, ys, sws):
        self.test_batches.append(([a.copy() for a in xs], [a.copy() for a in ys]))
        return self._loss(xs, ys, sws)[3]

    def predict_step(self, xs):
        self.predict_batches.append([a.copy() for a in xs])
        _, pred = self._forward(xs)
        return [pred[:, i:i + 1].astype(np.float32) for i in range(pred.shape[1])]

    # what the lead's Executable mixes in
    fit = training.fit
    evaluate = training.evaluate
    predict = training.predict
    train_on_batch = training.train_on_batch
    test_on_batch = training.test_on_batch
    predict_on_batch = training.predict_on_batch


def make_data(n=100, f=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f))
    x[:, 0] = np.arange(n)                 # sample id
    y = x[:, 1:] @ np.arange(1, f) + 0.5
    return x, y


def ids(batch):
    return batch[0][0][:, 0].astype(int).tolist()


@pytest.fixture
def exe():
    return FakeExe(LinearModel())


# --- batching ----------------------------------------------------------------------------

def test_batch_sizes_last_partial_batch_is_used(exe):
    x, y = make_data(100)
    exe.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert [len(b[0][0]) for b in exe.train_batches] == [32, 32, 32, 4] * 2


def test_default_batch_size_is_32(exe):
    x, y = make_data(70)
    exe.fit(x, y, verbose=0)
    assert [len(b[0][0]) for b in exe.train_batches] == [32, 32, 6]


def test_every_sample_once_per_epoch_shuffled(exe):
    x, y = make_data(100)
    exe.fit(x, y, batch_size=32, epochs=3, verbose=0)
    epochs = [sum((ids(b) for b in exe.train_batches[i * 4:(i + 1) * 4]), [])
              for i in range(3)]
    for e in epochs:
        assert sorted(e) == list(range(100))
    assert epochs[0] != list(range(100)) and epochs[0] != epochs[1]   # shuffled, per epoch


def test_shuffle_false_keeps_order(exe):
    x, y = make_data(50)
    exe.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    seen = sum((ids(b) for b in exe.train_batches), [])
    assert seen == list(range(50)) * 2


def test_shuffle_reproducible_with_set_random_seed():
    x, y = make_data(64)
    orders = []
    for _ in range(2):
        e = FakeExe(LinearModel())
        set_random_seed(123)
        e.fit(x, y, batch_size=16, epochs=2, verbose=0)
        orders.append(sum((ids(b) for b in e.train_batches), []))
    assert orders[0] == orders[1]
    set_random_seed(124)
    e = FakeExe(LinearModel())
    e.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert sum((ids(b) for b in e.train_batches), []) != orders[0]


def test_shuffle_batch_mode_keeps_chunks(exe):
    x, y = make_data(40)
    exe.fit(x, y, batch_size=10, epochs=1, shuffle="batch", verbose=0)
    chunks = [sorted(ids(b)) for b in exe.train_batches]
    assert sorted(c[0] for c in chunks) == [0, 10, 20, 30]
    assert all(c == list(range(c[0], c[0] + 10)) for c in chunks)


def test_exact_sgd_replay():
    """The weights after fit are exactly those of SGD over the batches in the order seen."""
    x, y = make_data(50)
    e = FakeExe(LinearModel(lr=0.001))
    e.fit(x, y, batch_size=8, epochs=3, verbose=0)
    w, b = np.zeros((3, 1)), np.zeros(1)
    for xs, ys, _ in e.train_batches:
        xb, yb = xs[0].astype(np.float64), ys[0].astype(np.float64).reshape(-1, 1)
        err = xb @ w + b - yb
        w -= 0.001 * 2 * xb.T @ err / len(xb)
        b -= 0.001 * 2 * err.sum(0) / len(xb)
    np.testing.assert_allclose(e.model.w, w, rtol=1e-12)
    np.testing.assert_allclose(e.model.b, b, rtol=1e-12)
    # and sample-for-sample the batches hold the right rows
    for xs, ys, _ in e.train_batches:
        i = xs[0][:, 0].astype(int)
        np.testing.assert_array_equal(xs[0], x[i].astype(np.float32))
        np.testing.assert_array_equal(ys[0][:, 0], y[i].astype(np.float32))


# --- logs ----------------------------------------------------------------------------------

class BatchLogRecorder(Callback):
    def __init__(self):
        super().__init__()
        self.batch_logs, self.epoch_logs = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.batch_logs.append(dict(logs))

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_logs.append(dict(logs))


def test_epoch_logs_are_sample_weighted_means(exe):
    x, y = make_data(100)
    rec = BatchLogRecorder()
    hist = exe.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[rec])
    sizes = [len(b[0][0]) for b in exe.train_batches]
    for e in range(2):
        logs = exe.train_logs[e * 4:(e + 1) * 4]
        n = np.array(sizes[e * 4:(e + 1) * 4], float)
        for k in ("loss", "mae"):
            v = np.array([l[k] for l in logs])
            expected = (v * n).sum() / n.sum()
            assert hist.history[k][e] == pytest.approx(expected, rel=1e-12)
            assert rec.epoch_logs[e][k] == pytest.approx(expected, rel=1e-12)
            # batch hooks get running means (Keras 3)
            running = np.cumsum(v * n) / np.cumsum(n)
            got = [b[k] for b in rec.batch_logs[e * 4:(e + 1) * 4]]
            np.testing.assert_allclose(got, running, rtol=1e-12)
    assert list(hist.history) == ["loss", "mae"]          # sorted, as Keras 3


def test_history_object(exe):
    x, y = make_data(20)
    hist = exe.fit(x, y, epochs=3, verbose=0)
    assert isinstance(hist, History)
    assert hist.epoch == [0, 1, 2]
    assert len(hist.history["loss"]) == 3
    assert hist.params == {"verbose": 0, "epochs": 3, "steps": 1}
    assert hist.model is exe.model and exe.model.history is hist


def test_initial_epoch(exe):
    x, y = make_data(20)
    hist = exe.fit(x, y, epochs=5, initial_epoch=3, verbose=0)
    assert hist.epoch == [3, 4]
    assert len(exe.train_batches) == 2


def test_loss_decreases(exe):
    x, y = make_data(200)
    x[:, 0] = 0.0
    hist = exe.fit(x, y, epochs=20, verbose=0, batch_size=16)
    assert hist.history["loss"][-1] < hist.history["loss"][0] / 10


# --- validation ----------------------------------------------------------------------------

def test_validation_split_takes_last_fraction(exe):
    x, y = make_data(100)
    hist = exe.fit(x, y, batch_size=32, epochs=2, validation_split=0.2, verbose=0)
    train_ids = sorted(sum((ids(b) for b in exe.train_batches[:3]), []))
    assert train_ids == list(range(80))
    assert [len(b[0][0]) for b in exe.train_batches] == [32, 32, 16] * 2
    val_ids = sum((b[0][0][:, 0].astype(int).tolist() for b in exe.test_batches), [])
    assert val_ids == list(range(80, 100)) * 2          # not shuffled
    assert set(hist.history) == {"loss", "mae", "val_loss", "val_mae"}
    assert list(hist.history) == ["loss", "mae", "val_loss", "val_mae"]


def test_validation_split_too_small_data(exe):
    x, y = make_data(1)
    with pytest.raises(DataError, match="not enough to split"):
        exe.fit(x, y, validation_split=0.1, verbose=0)


def test_validation_split_rejected_for_generators(exe):
    x, y = make_data(10)

    def gen():
        while True:
            yield x, y

    with pytest.raises(DataError, match="validation_split is only supported"):
        exe.fit(gen(), steps_per_epoch=2, validation_split=0.2, verbose=0)


def test_validation_data_tuple_and_weights(exe):
    x, y = make_data(60)
    vx, vy = make_data(30, seed=1)
    vsw = np.linspace(0, 1, 30)
    hist = exe.fit(x, y, epochs=2, validation_data=(vx, vy, vsw), validation_batch_size=7,
                   verbose=0)
    assert [len(b[0][0]) for b in exe.test_batches] == [7, 7, 7, 7, 2] * 2
    expected = exe.evaluate(vx, vy, sample_weight=vsw, batch_size=30, verbose=0,
                            return_dict=True)
    # last epoch's weights: evaluating again gives the same value (up to batching)
    assert hist.history["val_loss"][-1] == pytest.approx(expected["loss"], rel=1e-5)


def test_validation_freq(exe):
    x, y = make_data(20)
    hist = exe.fit(x, y, epochs=4, validation_data=(x, y), validation_freq=2, verbose=0)
    assert len(hist.history["loss"]) == 4 and len(hist.history["val_loss"]) == 2
    e2 = FakeExe(LinearModel())
    h2 = e2.fit(x, y, epochs=4, validation_data=(x, y), validation_freq=[1, 4], verbose=0)
    assert len(h2.history["val_loss"]) == 2


def test_validation_generator_with_steps(exe):
    x, y = make_data(40)

    def gen():
        while True:
            for s in range(0, 40, 10):
                yield x[s:s + 10], y[s:s + 10]

    exe.fit(x, y, epochs=2, validation_data=gen(), validation_steps=3, verbose=0)
    assert len(exe.test_batches) == 6


# --- weights -------------------------------------------------------------------------------

def test_class_weight_integer_labels(exe):
    x = np.zeros((6, 3))
    x[:, 0] = np.arange(6)
    y = np.array([0, 1, 1, 0, 2, 1])
    exe.fit(x, y, batch_size=6, shuffle=False, class_weight={0: 1.0, 1: 5.0}, verbose=0)
    sw = exe.train_batches[0][2][0]
    np.testing.assert_array_equal(sw, [1, 5, 5, 1, 1, 5])     # missing class → 1
    assert exe.train_batches[0][1][0].dtype.kind == "i"        # labels stay integer


def test_class_weight_one_hot_and_shuffled(exe):
    x = np.zeros((8, 3))
    x[:, 0] = np.arange(8)
    labels = np.array([0, 1, 2, 1, 0, 2, 2, 1])
    y = np.eye(3)[labels]
    exe.fit(x, y, batch_size=3, class_weight={0: 2.0, 1: 3.0, 2: 4.0}, verbose=0)
    for xs, _, sws in exe.train_batches:
        i = xs[0][:, 0].astype(int)
        np.testing.assert_array_equal(sws[0], np.array([2.0, 3.0, 4.0])[labels[i]])


def test_class_weight_multi_output_rejected():
    e = FakeExe(LinearModel(output_names=("a", "b")))
    x, y = make_data(10)
    with pytest.raises(DataError, match="single output.*'a', 'b'"):
        e.fit(x, [y, y], class_weight={0: 1.0}, verbose=0)


def test_sample_weight_follows_shuffled_samples(exe):
    x, y = make_data(50)
    sw = np.arange(50) / 10.0
    exe.fit(x, y, batch_size=16, sample_weight=sw, verbose=0)
    for xs, _, sws in exe.train_batches:
        np.testing.assert_allclose(sws[0], xs[0][:, 0] / 10.0, rtol=1e-6)
        assert sws[0].dtype == np.float32


# --- evaluate / predict / on_batch -------------------------------------------------------------

def test_evaluate_returns_keras_order(exe):
    x, y = make_data(50)
    res = exe.evaluate(x, y, verbose=0)
    assert isinstance(res, list) and len(res) == 2
    d = exe.evaluate(x, y, verbose=0, return_dict=True)
    assert res == [d["loss"], d["mae"]]
    sizes = [len(b[0][0]) for b in exe.test_batches[-2:]]
    assert sizes == [32, 18]


def test_evaluate_scalar_when_only_loss():
    class LossOnly(FakeExe):
        def test_step(self, xs, ys, sws):
            return {"loss": float(len(xs[0]))}

    e = LossOnly(LinearModel())
    x, y = make_data(40)
    assert e.evaluate(x, y, batch_size=32, verbose=0) == pytest.approx((32 * 32 + 8 * 8) / 40)


def test_evaluate_uses_model_metrics_names():
    class Acc(FakeExe):
        def test_step(self, xs, ys, sws):
            return {"loss": 1.0, "accuracy": 0.5, "mae": 0.25}

    m = LinearModel()
    m.metrics_names = ["loss", "mae", "accuracy"]
    assert Acc(m).evaluate(*make_data(10), verbose=0) == [1.0, 0.25, 0.5]


def test_predict_concatenates_and_preserves_order(exe):
    exe.model.w[:] = [[1.0], [0.0], [0.0]]
    x, _ = make_data(70)
    out = exe.predict(x, batch_size=32, verbose=0)
    assert isinstance(out, np.ndarray) and out.shape == (70, 1)
    np.testing.assert_array_equal(out[:, 0], np.arange(70))
    assert [len(b[0]) for b in exe.predict_batches] == [32, 32, 6]


def test_predict_multi_output_returns_list():
    e = FakeExe(LinearModel(output_names=("a", "b")))
    out = e.predict(make_data(10)[0], verbose=0)
    assert isinstance(out, list) and [o.shape for o in out] == [(10, 1), (10, 1)]


def test_predict_copies_out_of_reused_buffers(exe):
    buf = np.zeros((4, 1), np.float32)

    def reuse(xs):                      # an executable that reuses its output buffer
        buf[:len(xs[0]), 0] = xs[0][:, 0]
        return [buf[:len(xs[0])]]

    exe.predict_step = reuse
    out = exe.predict(make_data(10)[0], batch_size=4, verbose=0)
    np.testing.assert_array_equal(out[:, 0], np.arange(10))


def test_on_batch_functions(exe):
    x, y = make_data(8)
    r = exe.train_on_batch(x, y)
    assert len(r) == 2 and len(exe.train_batches) == 1 and len(exe.train_batches[0][0][0]) == 8
    d = exe.test_on_batch(x, y, return_dict=True)
    assert set(d) == {"loss", "mae"}
    p = exe.predict_on_batch(x)
    assert p.shape == (8, 1)
    exe.train_on_batch(x, (y > 2).astype(int), class_weight={1: 3.0})
    np.testing.assert_array_equal(exe.train_batches[-1][2][0], np.where(y > 2, 3.0, 1.0))


# --- generators and Sequences --------------------------------------------------------------

def test_generator_with_steps_per_epoch(exe):
    x, y = make_data(100)
    calls = []

    def gen():
        while True:
            for s in range(0, 100, 25):
                calls.append(s)
                yield x[s:s + 25], y[s:s + 25]

    hist = exe.fit(gen(), steps_per_epoch=3, epochs=2, verbose=0)
    assert len(exe.train_batches) == 6
    # one stream across epochs: epoch 2 continues where epoch 1 stopped
    assert [ids(b)[0] for b in exe.train_batches] == [0, 25, 50, 75, 0, 25]
    assert hist.params["steps"] == 3


def test_finite_generator_runs_out_with_warning(exe):
    x, y = make_data(40)
    gen = ((x[s:s + 10], y[s:s + 10]) for s in range(0, 40, 10))
    with pytest.warns(UserWarning, match="ran out of data"):
        hist = exe.fit(gen, steps_per_epoch=3, epochs=5, verbose=0)
    assert len(exe.train_batches) == 4
    assert hist.epoch == [0, 1]


def test_generator_without_steps_is_one_epoch(exe):
    x, y = make_data(40)
    gen = ((x[s:s + 10], y[s:s + 10]) for s in range(0, 40, 10))
    with pytest.warns(UserWarning, match="ran out of data"):
        hist = exe.fit(gen, epochs=3, verbose=0)
    assert len(exe.train_batches) == 4 and hist.epoch == [0]


def test_generator_yielding_sample_weights(exe):
    x, y = make_data(20)

    def gen():
        while True:
            yield x[:10], y[:10], np.full(10, 2.0)

    exe.fit(gen(), steps_per_epoch=2, verbose=0)
    np.testing.assert_array_equal(exe.train_batches[0][2][0], np.full(10, 2.0))


class Seq:
    """A Keras-Sequence-like object, as flow_from_directory returns."""

    def __init__(self, x, y, bs):
        self.x, self.y, self.bs = x, y, bs
        self.epoch_ends = 0

    def __len__(self):
        return -(-len(self.x) // self.bs)

    def __getitem__(self, i):
        s = slice(i * self.bs, (i + 1) * self.bs)
        return self.x[s], self.y[s]

    def on_epoch_end(self):
        self.epoch_ends += 1


def test_sequence_input(exe):
    x, y = make_data(50)
    seq = Seq(x, y, 16)
    hist = exe.fit(seq, epochs=2, verbose=0)
    for e in range(2):
        ep = sum((ids(b) for b in exe.train_batches[e * 4:(e + 1) * 4]), [])
        assert sorted(ep) == list(range(50))
    assert seq.epoch_ends == 2
    assert hist.params["steps"] == 4
    firsts = [ids(b)[0] for b in exe.train_batches]
    assert sorted(firsts[:4]) == [0, 16, 32, 48]


def test_sequence_with_more_steps_than_batches_wraps(exe):
    x, y = make_data(40)
    seq = Seq(x, y, 10)
    exe.fit(seq, steps_per_epoch=6, epochs=2, shuffle=False, verbose=0)
    assert [ids(b)[0] for b in exe.train_batches] == [0, 10, 20, 30, 0, 10,
                                                    20, 30, 0, 10, 20, 30]
    assert seq.epoch_ends == 2


def test_evaluate_and_predict_on_sequence(exe):
    x, y = make_data(30)
    seq = Seq(x, y, 8)
    exe.evaluate(seq, verbose=0)
    assert [len(b[0][0]) for b in exe.test_batches] == [8, 8, 8, 6]
    out = exe.predict(seq, verbose=0)
    assert out.shape == (30, 1)
    assert [int(b[0][0, 0]) for b in exe.predict_batches] == [0, 8, 16, 24]   # in order


def test_predict_generator_with_steps(exe):
    x, _ = make_data(100)

    def gen():
        while True:
            yield x[:10]

    out = exe.predict(gen(), steps=3, verbose=0)
    assert out.shape == (30, 1)


# --- structures ----------------------------------------------------------------------------

def test_dict_and_list_inputs_for_two_input_model():
    e = FakeExe(LinearModel(n_features=2, input_names=("a", "b")))
    a, b = np.ones((10, 2)), np.zeros((10, 2))
    a[:, 0] = np.arange(10)
    y = np.ones(10)
    e.fit({"b": b, "a": a}, y, shuffle=False, verbose=0)
    xs = e.train_batches[0][0]
    np.testing.assert_array_equal(xs[0], a.astype(np.float32))
    np.testing.assert_array_equal(xs[1], b.astype(np.float32))
    e.fit([a, b], {"y": y}, verbose=0)
    with pytest.raises(DataError, match=r"unknown key\(s\) 'c'.*'a', 'b'"):
        e.fit({"a": a, "c": b}, y, verbose=0)
    with pytest.raises(DataError, match=r"missing input\(s\) 'b'"):
        e.fit({"a": a}, y, verbose=0)
    with pytest.raises(DataError, match=r"2 inputs \('a', 'b'\).*single array"):
        e.fit(a, y, verbose=0)
    with pytest.raises(DataError, match=r"2 inputs \('a', 'b'\).*list of 3 arrays"):
        e.fit([a, b, b], y, verbose=0)


def test_python_lists_and_dtypes(exe):
    x = [[float(i), 1.0, 2.0] for i in range(10)]
    y = [float(i) for i in range(10)]
    exe.fit(x, y, verbose=0)
    xs, ys, _ = exe.train_batches[0]
    assert xs[0].dtype == np.float32 and ys[0].dtype == np.float32
    assert xs[0].flags.c_contiguous
    exe.fit(np.zeros((4, 3), np.int64), np.array([0, 1, 1, 0]), verbose=0)
    xs, ys, _ = exe.train_batches[-1]
    assert xs[0].dtype == np.float32          # the input is float32: ints are cast
    assert ys[0].dtype == np.int64            # integer labels kept


# --- errors --------------------------------------------------------------------------------

def test_sample_count_mismatch(exe):
    x, y = make_data(100)
    with pytest.raises(DataError, match="x has 100 samples but y has 99"):
        exe.fit(x, y[:99], verbose=0)
    with pytest.raises(DataError, match="x has 100 samples but sample_weight has 3"):
        exe.fit(x, y, sample_weight=np.ones(3), verbose=0)
    with pytest.raises(ValueError):           # DataError is a ValueError
        exe.evaluate(x, y[:5], verbose=0)


def test_transposed_input_names_input_and_shapes(exe):
    x = np.zeros((3, 100))                     # (features, samples) instead of (samples, f)
    with pytest.raises(ShapeError, match=r"'x'.*\(None, 3\).*\(3, 100\)"):
        exe.fit(x, np.zeros(100), verbose=0)


def test_model_check_input_arrays_is_used(exe):
    seen = []

    def check(arrays):
        seen.append([a.shape for a in arrays])
        raise ShapeError("layer dense: expected (None, 3), got (5, 7)")

    exe.model._check_input_arrays = check
    with pytest.raises(ShapeError, match="layer dense"):
        exe.predict(np.zeros((5, 7)), verbose=0)
    assert seen == [[(5, 7)]]


def test_empty_data(exe):
    with pytest.raises(DataError, match="empty"):
        exe.fit(np.zeros((0, 3)), np.zeros(0), verbose=0)
    with pytest.raises(DataError, match="no data"):
        exe.fit(iter([]), verbose=0)
    with pytest.raises(DataError, match="no data"):
        exe.predict(Seq(np.zeros((0, 3)), np.zeros(0), 4), verbose=0)


def test_uncompiled_model(exe):
    exe.model.compiled = False
    with pytest.raises(ValueError, match="compile"):
        exe.fit(*make_data(4), verbose=0)
    with pytest.raises(ValueError, match="compile"):
        exe.evaluate(*make_data(4), verbose=0)
    assert exe.predict(make_data(4)[0], verbose=0).shape == (4, 1)   # predict needs none


def test_missing_y(exe):
    with pytest.raises(DataError, match="y is None"):
        exe.fit(np.zeros((4, 3)), verbose=0)


def test_generator_with_y_argument_rejected(exe):
    with pytest.raises(DataError, match="y must not be given"):
        exe.fit(iter([]), np.zeros(3), verbose=0)


def test_bad_validation_data(exe):
    x, y = make_data(10)
    with pytest.raises(DataError, match="validation_data"):
        exe.fit(x, y, validation_data=x, verbose=0)
    with pytest.raises(DataError, match="validation_data x has 10 samples but "
                                        "validation_data y has 9"):
        exe.fit(x, y, validation_data=(x, y[:9]), verbose=0)


def test_legacy_kwargs_accepted_with_warning(exe):
    x, y = make_data(10)
    with pytest.warns(UserWarning, match="workers"):
        exe.fit(x, y, verbose=0, workers=4, use_multiprocessing=True)
    with pytest.raises(TypeError, match="nonsense"):
        exe.fit(x, y, verbose=0, nonsense=1)


# --- stopping ------------------------------------------------------------------------------

def test_terminate_on_nan_stops_at_that_batch(exe, capsys):
    x, y = make_data(100)
    y[40] = np.nan                               # in the second batch when unshuffled
    hist = exe.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0,
                   callbacks=[TerminateOnNaN()])
    assert len(exe.train_batches) == 2
    assert hist.epoch == [0] and np.isnan(hist.history["loss"][0])
    assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out


def test_stop_training_mid_epoch_still_validates(exe):
    class Stop(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    x, y = make_data(100)
    hist = exe.fit(x, y, batch_size=10, epochs=3, validation_data=(x, y), verbose=0,
                   callbacks=[Stop()])
    assert len(exe.train_batches) == 2 and hist.epoch == [0]
    assert "val_loss" in hist.history


def test_no_warnings_in_plain_fit(exe):
    x, y = make_data(30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exe.fit(x, y, epochs=2, validation_split=0.2, verbose=0)
        exe.evaluate(x, y, verbose=0)
        exe.predict(x, verbose=0)
