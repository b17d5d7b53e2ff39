"""Metrics vs float64 numpy formulas, eagerly and through a traced graph; 'accuracy'
resolution as Keras compile does it; top-k tie handling; logged names; eager running state."""
import numpy as np
import pytest

import graphc.metrics as M
from graphc.errors import ShapeError, UnknownNameError
from graphc.frontend.tracing import TraceContext
from graphc.ir.dtypes import TensorType
from graphc.ir.graph import Graph
from graphc.ir.interpreter import interpret

EPS = 1e-7


def np_msle(y, p):
    return ((np.log1p(np.maximum(p, EPS)) - np.log1p(np.maximum(y, EPS))) ** 2).mean(-1)


def run_graph(fn, *arrays):
    g = Graph("t")
    ins = [g.add_input(f"x{i}", TensorType.of(a)) for i, a in enumerate(arrays)]
    with TraceContext(g):
        out = fn(*ins)
    g.set_outputs([out])
    return interpret(g, list(arrays))[0]


def values(metric, y, p):
    """``metric.values`` eagerly and in a graph: they agree, and are per-sample."""
    e = np.asarray(metric.values(y, p))
    g = run_graph(metric.values, y, p)
    np.testing.assert_allclose(e, g, rtol=1e-6)
    assert e.shape == (np.shape(p)[0],)
    return e


rng = np.random.default_rng(2)
N, C = 8, 5
IDS = rng.integers(0, C, size=(N,))
ONEHOT = np.eye(C, dtype=np.float32)[IDS]
SCORES = rng.normal(size=(N, C)).astype(np.float32)
Y01 = rng.integers(0, 2, size=(N, 1))
P01 = rng.uniform(0, 1, size=(N, 1)).astype(np.float32)


def test_binary_accuracy_threshold():
    want = ((P01 > 0.5).astype(int) == Y01)[:, 0].astype(float)
    np.testing.assert_array_equal(values(M.get("binary_accuracy"), Y01, P01), want)
    # labels of shape (N,) against a (N,1) output, as y arrays usually come
    np.testing.assert_array_equal(values(M.get("binary_accuracy"), Y01[:, 0], P01), want)
    want7 = ((P01 > 0.7).astype(int) == Y01)[:, 0].astype(float)
    np.testing.assert_array_equal(values(M.BinaryAccuracy(threshold=0.7), Y01, P01), want7)
    # multi-label: mean over the label axis
    y, p = rng.integers(0, 2, (N, 3)), rng.uniform(0, 1, (N, 3)).astype(np.float32)
    np.testing.assert_allclose(values(M.BinaryAccuracy(), y, p), ((p > 0.5) == y).mean(-1))


def test_categorical_and_sparse_accuracy():
    want = (SCORES.argmax(-1) == IDS).astype(float)
    np.testing.assert_array_equal(values(M.get("categorical_accuracy"), ONEHOT, SCORES), want)
    for lab in (IDS, IDS.reshape(-1, 1), IDS.astype(np.float32)):
        np.testing.assert_array_equal(
            values(M.get("sparse_categorical_accuracy"), lab, SCORES), want)
    with pytest.raises(ShapeError):
        M.sparse_categorical_accuracy(ONEHOT, SCORES)


def np_in_top_k(ids, scores, k):
    true = scores[np.arange(len(ids)), ids]
    return ((scores > true[:, None]).sum(-1) < k).astype(float)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_top_k(k):
    want = np_in_top_k(IDS, SCORES, k)
    np.testing.assert_array_equal(
        values(M.TopKCategoricalAccuracy(k=k), ONEHOT, SCORES), want)
    np.testing.assert_array_equal(
        values(M.SparseTopKCategoricalAccuracy(k=k), IDS, SCORES), want)
    if k == 1:
        np.testing.assert_array_equal(want, (SCORES.argmax(-1) == IDS))


def test_top_k_defaults_and_ties():
    # k defaults to 5: with 5 classes everything is a hit
    assert np.all(values(M.get("top_k_categorical_accuracy"), ONEHOT, SCORES) == 1)
    assert np.all(values(M.get("sparse_top_k_categorical_accuracy"), IDS, SCORES) == 1)
    # Ties straddling the cut count as hits: only classes scoring strictly higher matter.
    scores = np.array([[0.5, 0.5, 0.5, 0.1], [0.9, 0.5, 0.5, 0.1], [0.9, 0.8, 0.5, 0.5]],
                      np.float32)
    ids = np.array([2, 2, 3])
    got = values(M.SparseTopKCategoricalAccuracy(k=2), ids, scores)
    np.testing.assert_array_equal(got, [1, 1, 0])
    np.testing.assert_array_equal(got, np_in_top_k(ids, scores, 2))
    # a NaN score for the true class is a miss
    nan = np.array([[np.nan, 0.1, 0.2]], np.float32)
    assert M.sparse_top_k_categorical_accuracy(np.array([0]), nan, k=3)[0] == 0


@pytest.mark.parametrize("name,ref", [
    ("mse", lambda y, p: ((y - p) ** 2).mean(-1)),
    ("mean_squared_error", lambda y, p: ((y - p) ** 2).mean(-1)),
    ("mae", lambda y, p: np.abs(y - p).mean(-1)),
    ("mean_absolute_error", lambda y, p: np.abs(y - p).mean(-1)),
    ("msle", np_msle),
    ("mean_squared_logarithmic_error", np_msle),
])
def test_regression_metrics(name, ref):
    y = rng.uniform(0, 3, (N, 3)).astype(np.float32)
    p = rng.uniform(0, 3, (N, 3)).astype(np.float32)
    m = M.get(name)
    assert m.name == name
    np.testing.assert_allclose(values(m, y, p), ref(y.astype(np.float64), p.astype(np.float64)),
                               rtol=2e-5)


@pytest.mark.parametrize("loss,yt,yp,cls", [
    ("binary_crossentropy", (32, 1), (32, 1), M.BinaryAccuracy),
    ("binary_crossentropy", (32, 4), (32, 4), M.BinaryAccuracy),   # multi-label
    ("mse", (32, 1), (32, 1), M.BinaryAccuracy),                   # one-unit output
    (None, (32,), (32, 1), M.BinaryAccuracy),
    ("categorical_crossentropy", (32, 10), (32, 10), M.CategoricalAccuracy),
    ("sparse_categorical_crossentropy", (32,), (32, 10), M.SparseCategoricalAccuracy),
    ("sparse_categorical_crossentropy", None, None, M.SparseCategoricalAccuracy),
    (None, (32,), (32, 10), M.SparseCategoricalAccuracy),          # integer labels
    (None, (32, 1), (32, 10), M.SparseCategoricalAccuracy),
    (None, (32, 10), (32, 10), M.CategoricalAccuracy),
    ("mse", (32, 10), (32, 10), M.CategoricalAccuracy),
])
@pytest.mark.parametrize("ident", ["accuracy", "acc"])
def test_accuracy_resolution(loss, yt, yp, cls, ident):
    import graphc.losses as L
    for lo in ([loss] if loss is None else [loss, L.get(loss), getattr(L, loss, None)]):
        m = M.get(ident, loss=lo, y_true_shape=yt, y_pred_shape=yp)
        assert type(m) is cls and m.name == ident


def test_accuracy_resolution_loss_objects():
    import graphc.losses as L
    m = M.get("accuracy", loss=L.BinaryCrossentropy(from_logits=True))
    assert isinstance(m, M.BinaryAccuracy)
    m = M.get("acc", loss=L.SparseCategoricalCrossentropy)
    assert isinstance(m, M.SparseCategoricalAccuracy)


def test_names():
    assert M.get("binary_accuracy").name == "binary_accuracy"
    assert M.get(M.BinaryAccuracy()).name == "binary_accuracy"
    assert M.get(M.TopKCategoricalAccuracy(k=3)).name == "top_k_categorical_accuracy"
    assert M.get(M.MeanSquaredError()).name == "mean_squared_error"
    assert M.get(M.Accuracy(name="my_acc")).name == "my_acc"
    assert M.get(M.CategoricalAccuracy).name == "categorical_accuracy"

    def my_metric(y, p):
        return M.mean_absolute_error(y, p)
    m = M.get(my_metric)
    assert m.name == "my_metric"
    y = rng.normal(size=(N, 2)).astype(np.float32)
    np.testing.assert_allclose(values(m, y, y * 0), np.abs(y).mean(-1), rtol=1e-6)


def test_accuracy_class_is_exact_match():
    y = np.array([[1.0], [2.0], [3.0]], np.float32)
    p = np.array([[1.0], [2.5], [3.0]], np.float32)
    np.testing.assert_array_equal(values(M.Accuracy(), y, p), [1, 0, 1])


def test_eager_running_weighted_mean():
    m = M.BinaryAccuracy()
    y1, p1 = np.array([1, 0, 1, 1]), np.array([[0.9], [0.2], [0.3], [0.8]], np.float32)
    assert float(m(y1, p1)) == pytest.approx(0.75)
    m.update_state(np.array([0, 0]), np.array([[0.7], [0.1]], np.float32))
    assert float(m.result()) == pytest.approx(4 / 6)
    m.reset_state()
    assert float(m.result()) == 0.0
    m.update_state(y1, p1, sample_weight=np.array([1.0, 1.0, 2.0, 0.0]))
    assert float(m.result()) == pytest.approx(2 / 4)
    m.update_state(np.array([[1]]), np.array([[0.6]], np.float32), sample_weight=np.array([[4.0]]))
    assert float(m.result()) == pytest.approx(6 / 8)
    mse = M.MeanSquaredError()
    mse.update_state([[1.0, 2.0], [0.0, 0.0]], [[1.0, 0.0], [1.0, 1.0]])
    assert float(mse.result()) == pytest.approx(np.mean([2.0, 1.0]))
    top = M.SparseTopKCategoricalAccuracy(k=1)
    top.update_state(IDS, SCORES)
    assert float(top.result()) == pytest.approx((SCORES.argmax(-1) == IDS).mean())
    rmse = M.RootMeanSquaredError()
    rmse.update_state([[1.0], [3.0]], [[0.0], [0.0]])
    assert float(rmse.result()) == pytest.approx(np.sqrt(5.0))


def test_serialize_roundtrip():
    m = M.TopKCategoricalAccuracy(k=3)
    again = M.deserialize(M.serialize(m))
    assert isinstance(again, M.TopKCategoricalAccuracy) and again.k == 3
    assert M.get(M.serialize(M.BinaryAccuracy(threshold=0.3))).threshold == 0.3


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError) as e:
        M.get("acuracy")
    for n in ("accuracy", "binary_accuracy", "top_k_categorical_accuracy", "mse"):
        assert n in str(e.value)
