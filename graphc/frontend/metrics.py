"""Keras metrics (``graphc.metrics``): per-sample metric functions and metric objects.

A metric object has the ``name`` Keras logs and ``values(y_true, y_pred)``, a per-sample
tensor of shape ``(batch,)`` built with ``graphc.ops`` (so the train/eval graphs compute it
and the runtime keeps the running weighted mean). Eagerly, on numpy arrays, the same object
works Keras-style: ``update_state(y_true, y_pred, sample_weight)``, ``result()``,
``reset_state()``.

``get('accuracy')`` resolves as Keras ``compile`` does: binary accuracy for a
binary-crossentropy loss or a one-unit output, sparse categorical accuracy for a sparse loss
or integer labels against a multi-class output, categorical accuracy otherwise.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from graphc import errors
from graphc.frontend import losses as losses_mod
from graphc.frontend import ops
from graphc.frontend.activations import as_tensor, is_symbolic, lookup, split_config
from graphc.frontend.losses import squeeze_or_expand_to_same_rank

FLOATX = "float32"


# --------------------------------------------------------------------------------------
# Metric functions (per-sample values)
# --------------------------------------------------------------------------------------


def accuracy(y_true, y_pred):
    """Exact equality of labels and predictions (Keras ``Accuracy``)."""
    y_pred = as_tensor(y_pred)
    y_true = ops.cast(as_tensor(y_true), ops.dtype_of(y_pred))
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    return ops.mean(ops.cast(ops.equal(y_true, y_pred), FLOATX), axis=-1)


def binary_accuracy(y_true, y_pred, threshold: float = 0.5):
    y_pred = as_tensor(y_pred, float_only=True)
    y_true = ops.cast(as_tensor(y_true), ops.dtype_of(y_pred))
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    hit = ops.cast(ops.greater(y_pred, float(threshold)), ops.dtype_of(y_pred))
    return ops.mean(ops.cast(ops.equal(y_true, hit), FLOATX), axis=-1)


def categorical_accuracy(y_true, y_pred):
    y_pred = as_tensor(y_pred, float_only=True)
    y_true = as_tensor(y_true)
    # First maximum wins on ties, for both labels and predictions (argmax semantics).
    return ops.cast(ops.equal(ops.argmax(y_true, -1), ops.argmax(y_pred, -1)), FLOATX)


def _class_ids(y_true, y_pred):
    """Integer labels of shape ``y_pred.shape[:-1]`` (accepts a trailing 1)."""
    y_true = as_tensor(y_true)
    if ops.rank(y_true) == ops.rank(y_pred) and ops.shape(y_true)[-1] == 1:
        y_true = ops.squeeze(y_true, -1)
    if ops.shape(y_true) != ops.shape(y_pred)[:-1]:
        raise errors.ShapeError(
            f"sparse metric: integer labels of shape {ops.shape(y_true)} do not match "
            f"predictions of shape {ops.shape(y_pred)} (expected {ops.shape(y_pred)[:-1]} "
            f"or {ops.shape(y_pred)[:-1] + (1,)})")
    return ops.cast(y_true, "int64")


def sparse_categorical_accuracy(y_true, y_pred):
    y_pred = as_tensor(y_pred, float_only=True)
    ids = _class_ids(y_true, y_pred)
    return ops.cast(ops.equal(ids, ops.argmax(y_pred, -1)), FLOATX)


def _in_top_k(ids, y_pred, k: int):
    """True where fewer than ``k`` classes score strictly higher than the true class.

    Ties at the boundary count as hits (the true class is in the top k when classes that
    tie with it straddle the cut), exactly TensorFlow's ``in_top_k`` and Keras 3's; a NaN
    score for the true class is a miss.
    """
    depth = ops.shape(y_pred)[-1]
    mask = ops.equal(ops.expand_dims(ids, -1), np.arange(depth, dtype=np.int64))
    true_score = ops.sum(ops.where(mask, y_pred, 0.0), axis=-1, keepdims=True)
    higher = ops.sum(ops.cast(ops.greater(y_pred, true_score), "int64"), axis=-1)
    finite = ops.equal(ops.squeeze(true_score, -1), ops.squeeze(true_score, -1))
    return ops.logical_and(ops.less(higher, int(k)), finite)


def top_k_categorical_accuracy(y_true, y_pred, k: int = 5):
    y_pred = as_tensor(y_pred, float_only=True)
    ids = ops.argmax(as_tensor(y_true), -1)
    return ops.cast(_in_top_k(ids, y_pred, k), FLOATX)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k: int = 5):
    y_pred = as_tensor(y_pred, float_only=True)
    return ops.cast(_in_top_k(_class_ids(y_true, y_pred), y_pred, k), FLOATX)


# Loss functions double as metrics (Keras exports them under keras.metrics too).
mean_squared_error = losses_mod.mean_squared_error
mean_absolute_error = losses_mod.mean_absolute_error
mean_absolute_percentage_error = losses_mod.mean_absolute_percentage_error
mean_squared_logarithmic_error = losses_mod.mean_squared_logarithmic_error
binary_crossentropy = losses_mod.binary_crossentropy
categorical_crossentropy = losses_mod.categorical_crossentropy
sparse_categorical_crossentropy = losses_mod.sparse_categorical_crossentropy
hinge = losses_mod.hinge
squared_hinge = losses_mod.squared_hinge
categorical_hinge = losses_mod.categorical_hinge
kl_divergence = losses_mod.kl_divergence
poisson = losses_mod.poisson
log_cosh = losses_mod.log_cosh
mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
mape = MAPE = mean_absolute_percentage_error
msle = MSLE = mean_squared_logarithmic_error


# --------------------------------------------------------------------------------------
# Metric objects
# --------------------------------------------------------------------------------------


class Metric:
    """Base metric: ``values`` gives per-sample values; the eager state is a running
    weighted mean of them (``total / count``)."""

    def __init__(self, name: str | None = None, dtype=None):
        self.name = name or losses_mod._snake(type(self).__name__)
        self.dtype = dtype
        self.reset_state()

    def call(self, y_true, y_pred):
        raise NotImplementedError

    def values(self, y_true, y_pred):
        """Per-sample values, shape ``(batch,)``: trailing axes are averaged (per-timestep
        metrics), a scalar is broadcast over the batch."""
        v = self.call(y_true, y_pred)
        batch = ops.shape(as_tensor(y_pred))[:1] or (1,)
        if ops.rank(v) == 0:
            return ops.broadcast_to(v, batch)
        if ops.rank(v) > 1:
            v = ops.mean(v, axis=tuple(range(1, ops.rank(v))))
        return v

    # -- eager, Keras-style state -------------------------------------------------------
    def reset_state(self):
        self.total = 0.0
        self.count = 0.0

    def update_state(self, y_true, y_pred, sample_weight=None):
        if is_symbolic(y_true) or is_symbolic(y_pred):
            raise TypeError(f"metric {self.name}: update_state runs eagerly on arrays; "
                            f"in a graph use .values(y_true, y_pred)")
        v = np.asarray(self.values(np.asarray(y_true), np.asarray(y_pred)), dtype=np.float64)
        if sample_weight is None:
            w = np.ones_like(v)
        else:
            w = np.asarray(sample_weight, dtype=np.float64)
            if w.ndim == v.ndim + 1 and w.shape[-1] == 1:
                w = w[..., 0]
            while w.ndim > v.ndim:  # per-element weights: average per sample
                w = w.mean(axis=-1)
            w = np.broadcast_to(w, v.shape)
        self.total += float(np.sum(v * w))
        self.count += float(np.sum(w))

    def result(self):
        return np.float32(self.total / self.count if self.count else 0.0)

    def reset_states(self):  # Keras 2 spelling
        self.reset_state()

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Keras: update with this batch and return the running result."""
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config: Mapping):
        return cls(**dict(config))

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"


class MeanMetricWrapper(Metric):
    """A per-sample metric function (plus keyword arguments) as a metric object."""

    def __init__(self, fn: Callable, name: str | None = None, dtype=None, **kwargs):
        self.fn = fn
        self._fn_kwargs = kwargs
        super().__init__(name=name or getattr(fn, "__name__", "metric"), dtype=dtype)

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def get_config(self):
        return {**super().get_config(), **self._fn_kwargs}


def _metric_class(class_name: str, fn: Callable, default_name: str, params: dict):
    def __init__(self, *args, name=default_name, dtype=None, **kwargs):
        names = list(params)
        if len(args) > len(names):
            raise TypeError(f"{class_name}() takes at most {len(names)} positional arguments")
        for k in kwargs:
            if k not in params:
                raise TypeError(f"{class_name}() got an unexpected keyword argument {k!r}")
        given = dict(zip(names, args))
        kw = {k: given.get(k, kwargs.get(k, d)) for k, d in params.items()}
        for k, v in kw.items():
            setattr(self, k, v)
        MeanMetricWrapper.__init__(self, fn, name=name, dtype=dtype, **kw)

    return type(class_name, (MeanMetricWrapper,), {
        "__init__": __init__, "__module__": __name__,
        "__doc__": f"Keras ``{class_name}``: the running mean of ``{fn.__name__}``."})


Accuracy = _metric_class("Accuracy", accuracy, "accuracy", {})
BinaryAccuracy = _metric_class("BinaryAccuracy", binary_accuracy, "binary_accuracy",
                               {"threshold": 0.5})
CategoricalAccuracy = _metric_class("CategoricalAccuracy", categorical_accuracy,
                                    "categorical_accuracy", {})
SparseCategoricalAccuracy = _metric_class("SparseCategoricalAccuracy",
                                          sparse_categorical_accuracy,
                                          "sparse_categorical_accuracy", {})
TopKCategoricalAccuracy = _metric_class("TopKCategoricalAccuracy", top_k_categorical_accuracy,
                                        "top_k_categorical_accuracy", {"k": 5})
SparseTopKCategoricalAccuracy = _metric_class("SparseTopKCategoricalAccuracy",
                                              sparse_top_k_categorical_accuracy,
                                              "sparse_top_k_categorical_accuracy", {"k": 5})
MeanSquaredError = _metric_class("MeanSquaredError", mean_squared_error,
                                 "mean_squared_error", {})
MeanAbsoluteError = _metric_class("MeanAbsoluteError", mean_absolute_error,
                                  "mean_absolute_error", {})
MeanAbsolutePercentageError = _metric_class("MeanAbsolutePercentageError",
                                            mean_absolute_percentage_error,
                                            "mean_absolute_percentage_error", {})
MeanSquaredLogarithmicError = _metric_class("MeanSquaredLogarithmicError",
                                            mean_squared_logarithmic_error,
                                            "mean_squared_logarithmic_error", {})
BinaryCrossentropy = _metric_class("BinaryCrossentropy", binary_crossentropy,
                                   "binary_crossentropy",
                                   {"from_logits": False, "label_smoothing": 0.0})
CategoricalCrossentropy = _metric_class("CategoricalCrossentropy", categorical_crossentropy,
                                        "categorical_crossentropy",
                                        {"from_logits": False, "label_smoothing": 0.0,
                                         "axis": -1})
SparseCategoricalCrossentropy = _metric_class("SparseCategoricalCrossentropy",
                                              sparse_categorical_crossentropy,
                                              "sparse_categorical_crossentropy",
                                              {"from_logits": False, "axis": -1})
Hinge = _metric_class("Hinge", hinge, "hinge", {})
SquaredHinge = _metric_class("SquaredHinge", squared_hinge, "squared_hinge", {})
CategoricalHinge = _metric_class("CategoricalHinge", categorical_hinge, "categorical_hinge", {})
KLDivergence = _metric_class("KLDivergence", kl_divergence, "kl_divergence", {})
Poisson = _metric_class("Poisson", poisson, "poisson", {})
LogCoshError = _metric_class("LogCoshError", log_cosh, "logcosh", {})


class RootMeanSquaredError(Metric):
    """sqrt of the running mean squared error (not a mean of per-sample roots)."""

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def call(self, y_true, y_pred):
        return mean_squared_error(y_true, y_pred)

    def result(self):
        return np.float32(np.sqrt(self.total / self.count) if self.count else 0.0)

    #: The runtime applies this to the running mean of ``values`` to get the logged value.
    finalize = staticmethod(np.sqrt)


ALL_METRICS: dict[str, object] = {
    "accuracy": accuracy, "acc": accuracy,
    "binary_accuracy": binary_accuracy, "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "top_k_categorical_accuracy": top_k_categorical_accuracy,
    "sparse_top_k_categorical_accuracy": sparse_top_k_categorical_accuracy,
    "mean_squared_error": mean_squared_error, "mse": mean_squared_error,
    "MSE": mean_squared_error,
    "mean_absolute_error": mean_absolute_error, "mae": mean_absolute_error,
    "MAE": mean_absolute_error,
    "mean_absolute_percentage_error": mean_absolute_percentage_error,
    "mape": mean_absolute_percentage_error, "MAPE": mean_absolute_percentage_error,
    "mean_squared_logarithmic_error": mean_squared_logarithmic_error,
    "msle": mean_squared_logarithmic_error, "MSLE": mean_squared_logarithmic_error,
    "binary_crossentropy": binary_crossentropy,
    "categorical_crossentropy": categorical_crossentropy,
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
    "hinge": hinge, "squared_hinge": squared_hinge, "categorical_hinge": categorical_hinge,
    "kl_divergence": kl_divergence, "kld": kl_divergence, "KLD": kl_divergence,
    "poisson": poisson, "logcosh": log_cosh, "log_cosh": log_cosh,
    "Accuracy": Accuracy, "BinaryAccuracy": BinaryAccuracy,
    "CategoricalAccuracy": CategoricalAccuracy,
    "SparseCategoricalAccuracy": SparseCategoricalAccuracy,
    "TopKCategoricalAccuracy": TopKCategoricalAccuracy,
    "SparseTopKCategoricalAccuracy": SparseTopKCategoricalAccuracy,
    "MeanSquaredError": MeanSquaredError, "MeanAbsoluteError": MeanAbsoluteError,
    "MeanAbsolutePercentageError": MeanAbsolutePercentageError,
    "MeanSquaredLogarithmicError": MeanSquaredLogarithmicError,
    "RootMeanSquaredError": RootMeanSquaredError,
    "BinaryCrossentropy": BinaryCrossentropy, "CategoricalCrossentropy": CategoricalCrossentropy,
    "SparseCategoricalCrossentropy": SparseCategoricalCrossentropy,
    "Hinge": Hinge, "SquaredHinge": SquaredHinge, "CategoricalHinge": CategoricalHinge,
    "KLDivergence": KLDivergence, "Poisson": Poisson, "LogCoshError": LogCoshError,
}


def resolve_accuracy(loss=None, y_true_shape=None, y_pred_shape=None) -> type:
    """Which accuracy ``'accuracy'``/``'acc'`` means for this loss and these shapes."""
    kind = losses_mod.canonical_name(loss)
    if kind == "binary_crossentropy" or (y_pred_shape is not None and len(y_pred_shape)
                                         and y_pred_shape[-1] == 1):
        return BinaryAccuracy
    if kind == "sparse_categorical_crossentropy":
        return SparseCategoricalAccuracy
    if y_true_shape is not None and y_pred_shape is not None and (
            len(y_true_shape) == len(y_pred_shape) - 1
            or (len(y_true_shape) == len(y_pred_shape) and y_true_shape[-1] == 1)):
        return SparseCategoricalAccuracy
    return CategoricalAccuracy


def get(identifier, loss=None, y_true_shape=None, y_pred_shape=None) -> Metric:
    """A metric object named as Keras logs it: the string the user passed (``'acc'`` logs
    as ``acc``), otherwise the object's or function's own name."""
    if identifier is None:
        return None
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        return resolve_accuracy(loss, y_true_shape, y_pred_shape)(name=identifier)
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        obj = lookup("metric", identifier, ALL_METRICS)
        name = identifier
    elif isinstance(identifier, Mapping):
        obj = deserialize(identifier)
        name = None
    else:
        obj, name = identifier, None
    if isinstance(obj, Metric):
        if name is not None:
            obj.name = name
        return obj
    if isinstance(obj, type) and issubclass(obj, Metric):
        return obj(name=name) if name is not None else obj()
    if isinstance(obj, losses_mod.Loss):
        # A Loss object as a metric: its per-sample values, under its own name.
        return MeanMetricWrapper(obj.call, name=name or obj.name)
    if callable(obj):
        return MeanMetricWrapper(obj, name=name or getattr(obj, "__name__", "metric"))
    raise errors.UnknownNameError(
        f"Could not interpret metric identifier {identifier!r}: expected a name "
        f"({', '.join(sorted(ALL_METRICS, key=str.lower))}), a Metric, a function or a "
        f"config dict")


def serialize(metric) -> dict | str:
    if isinstance(metric, Metric) and type(metric).__name__ in ALL_METRICS:
        return {"module": "keras.metrics", "class_name": type(metric).__name__,
                "config": metric.get_config(), "registered_name": None}
    return getattr(metric, "__name__", getattr(metric, "name", str(metric)))


def deserialize(config, custom_objects: Mapping | None = None):
    if isinstance(config, str):
        if custom_objects and config in custom_objects:
            return custom_objects[config]
        return lookup("metric", config, ALL_METRICS)
    name, cfg = split_config("metric", config)
    if name == "function" and isinstance(cfg, str):
        return deserialize(cfg, custom_objects)
    obj = custom_objects.get(name) if custom_objects else None
    if obj is None:
        obj = lookup("metric", name, ALL_METRICS)
    if isinstance(obj, type):
        return obj.from_config(dict(cfg or {}))
    return obj
