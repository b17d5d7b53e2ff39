"""Keras losses (``graphc.losses``): per-sample loss functions and ``Loss`` classes with
Keras 3 reductions, written with ``graphc.ops`` only so they emit IR inside a trace and run
eagerly on numpy arrays outside one.

Numerics follow Keras: probabilities are clipped to ``[1e-7, 1 - 1e-7]`` before a log;
logits go through stable forms (``max(x,0) - x z + log1p(e^-|x|)``, ``log_softmax``), so
extreme logits (±1e4) and probabilities of exactly 0 or 1 give finite losses. Like Keras on
its TensorFlow backend, a cross-entropy whose ``y_pred`` is the output of a graph ``sigmoid``
(or ``softmax``) node is computed from that node's input as logits: same value, but no
clipping plateau, so its gradient never vanishes on a saturated prediction.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from graphc import errors
from graphc.frontend import ops
from graphc.frontend.activations import as_tensor, log_softmax, lookup, softplus, split_config
from graphc.ir.dtypes import DType
from graphc.ir.graph import Value
from graphc.ir.registry import has_op

EPSILON = 1e-7  # keras.backend.epsilon()


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _pred(y_pred):
    """Predictions as a float tensor (eager ints and lists become float32)."""
    return as_tensor(y_pred, float_only=True)


def _true_like(y_true, y_pred):
    """Labels in the predictions' dtype: int labels (``y`` given as 0/1 ints) are cast."""
    return ops.cast(as_tensor(y_true), ops.dtype_of(y_pred))


def squeeze_or_expand_to_same_rank(x1, x2, expand_rank_1: bool = True):
    """Keras' rank reconciliation: when ranks differ by one and the longer tensor ends in a
    1, a rank-1 partner is expanded (``(N,)`` vs ``(N,1)`` → both ``(N,1)``), otherwise the
    trailing 1 is squeezed."""
    r1, r2 = ops.rank(x1), ops.rank(x2)
    if r1 == r2:
        return x1, x2
    if r1 == r2 + 1 and ops.shape(x1)[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = ops.expand_dims(x2, -1)
        else:
            x1 = ops.squeeze(x1, -1)
    elif r2 == r1 + 1 and ops.shape(x2)[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = ops.expand_dims(x1, -1)
        else:
            x2 = ops.squeeze(x2, -1)
    return x1, x2


def _prepare(y_true, y_pred):
    y_pred = _pred(y_pred)
    y_true = _true_like(y_true, y_pred)
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    _check_same_shape(y_true, y_pred)
    return y_true, y_pred


def _check_same_shape(y_true, y_pred, what="loss"):
    st, sp = ops.shape(y_true), ops.shape(y_pred)
    try:
        np.broadcast_shapes(st, sp)
    except ValueError:
        raise errors.ShapeError(
            f"{what}: labels of shape {st} do not match predictions of shape {sp}") from None


def _producer(x, op: str):
    """The input of the graph node that produced ``x`` when that node is ``op``."""
    if isinstance(x, Value) and x.node is not None and x.node.op == op:
        return x.node
    return None


def _clip_probs(p):
    return ops.clip(p, EPSILON, 1.0 - EPSILON)


# --------------------------------------------------------------------------------------
# Loss functions (per-sample values)
# --------------------------------------------------------------------------------------


def mean_squared_error(y_true, y_pred):
    y_true, y_pred = _prepare(y_true, y_pred)
    return ops.mean(ops.square(ops.subtract(y_true, y_pred)), axis=-1)


def mean_absolute_error(y_true, y_pred):
    y_true, y_pred = _prepare(y_true, y_pred)
    return ops.mean(ops.abs(ops.subtract(y_true, y_pred)), axis=-1)


def mean_absolute_percentage_error(y_true, y_pred):
    y_true, y_pred = _prepare(y_true, y_pred)
    diff = ops.abs(ops.divide(ops.subtract(y_true, y_pred),
                              ops.maximum(ops.abs(y_true), EPSILON)))
    return ops.multiply(ops.mean(diff, axis=-1), 100.0)


def mean_squared_logarithmic_error(y_true, y_pred):
    y_true, y_pred = _prepare(y_true, y_pred)
    first = ops.log(ops.add(ops.maximum(y_pred, EPSILON), 1.0))
    second = ops.log(ops.add(ops.maximum(y_true, EPSILON), 1.0))
    return ops.mean(ops.square(ops.subtract(first, second)), axis=-1)


def _binary_ce_elementwise(y_true, y_pred, from_logits: bool):
    if not from_logits:
        node = _producer(y_pred, "sigmoid")
        if node is not None:
            y_pred, from_logits = node.inputs[0], True
    if from_logits:
        # softplus(x) - x z = max(x,0) - x z + log1p(exp(-|x|)): exp never sees a positive
        # argument, and the gradient is sigmoid(x) - z everywhere, x = 0 included.
        return ops.subtract(softplus(y_pred), ops.multiply(y_pred, y_true))
    p = _clip_probs(y_pred)
    return ops.negative(ops.add(ops.multiply(y_true, ops.log(p)),
                                ops.multiply(ops.subtract(1.0, y_true),
                                             ops.log(ops.subtract(1.0, p)))))


def binary_crossentropy(y_true, y_pred, from_logits: bool = False,
                        label_smoothing: float = 0.0, axis: int = -1):
    y_true, y_pred = _prepare(y_true, y_pred)
    if label_smoothing:
        y_true = ops.add(ops.multiply(y_true, 1.0 - label_smoothing), 0.5 * label_smoothing)
    return ops.mean(_binary_ce_elementwise(y_true, y_pred, from_logits), axis=axis)


def categorical_crossentropy(y_true, y_pred, from_logits: bool = False,
                             label_smoothing: float = 0.0, axis: int = -1):
    if isinstance(axis, bool):
        raise ValueError(f"categorical_crossentropy: axis must be an int, got {axis!r}")
    y_pred = _pred(y_pred)
    y_true = _true_like(y_true, y_pred)
    if ops.shape(y_true) != ops.shape(y_pred):
        raise errors.ShapeError(
            f"categorical_crossentropy: labels of shape {ops.shape(y_true)} do not match "
            f"predictions of shape {ops.shape(y_pred)}; one-hot labels are expected (use "
            f"sparse_categorical_crossentropy for integer class ids)")
    if label_smoothing:
        n = ops.shape(y_true)[axis]
        y_true = ops.add(ops.multiply(y_true, 1.0 - label_smoothing), label_smoothing / n)
    return ops.negative(ops.sum(ops.multiply(y_true, _log_probs(y_pred, from_logits, axis)),
                                axis=axis))


def _log_probs(y_pred, from_logits: bool, axis: int):
    """log of the class probabilities along ``axis``: from logits via log_softmax; from
    probabilities normalized by their sum and clipped, as Keras does."""
    a = axis % ops.rank(y_pred)
    if not from_logits:
        node = _producer(y_pred, "softmax")
        if node is not None and node.attrs.get("axis") == a:
            y_pred, from_logits = node.inputs[0], True
    if from_logits:
        return log_softmax(y_pred, axis=a)
    p = ops.divide(y_pred, ops.sum(y_pred, axis=a, keepdims=True))
    return ops.log(_clip_probs(p))


def _one_hot(labels, depth: int, dtype):
    """One-hot rows for integer class ids; the registered ``one_hot`` op when present."""
    idx = labels if ops.dtype_of(labels).is_int else ops.cast(labels, "int64")
    if has_op("one_hot"):
        return ops.apply("one_hot", idx, depth=depth, dtype=DType.of(dtype))
    classes = np.arange(depth, dtype=ops.dtype_of(idx).np)
    return ops.cast(ops.equal(ops.expand_dims(idx, -1), classes), dtype)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits: bool = False,
                                    ignore_class: int | None = None, axis: int = -1):
    y_pred = _pred(y_pred)
    y_true = as_tensor(y_true)
    if ops.rank(y_true) == ops.rank(y_pred) and ops.shape(y_true)[-1] == 1:
        y_true = ops.squeeze(y_true, -1)
    a = axis % ops.rank(y_pred)
    expected = tuple(d for i, d in enumerate(ops.shape(y_pred)) if i != a)
    if ops.shape(y_true) != expected:
        raise errors.ShapeError(
            f"sparse_categorical_crossentropy: integer labels of shape {ops.shape(y_true)} "
            f"(or that shape plus a trailing 1) were expected to match predictions "
            f"{ops.shape(y_pred)} without the class axis, i.e. {expected}; one-hot labels "
            f"go with categorical_crossentropy")
    if ops.dtype_of(y_true).is_float:
        y_true = ops.cast(y_true, "int64")
    valid = None
    if ignore_class is not None:
        valid = ops.not_equal(y_true, int(ignore_class))
        y_true = ops.where(valid, y_true, ops.multiply(y_true, 0))
    if a != ops.rank(y_pred) - 1:
        perm = [i for i in range(ops.rank(y_pred)) if i != a] + [a]
        y_pred = ops.transpose(y_pred, perm)
    depth = ops.shape(y_pred)[-1]
    onehot = _one_hot(y_true, depth, ops.dtype_of(y_pred))
    res = ops.negative(ops.sum(ops.multiply(onehot, _log_probs(y_pred, from_logits, -1)),
                               axis=-1))
    if valid is not None:
        res = ops.where(valid, res, ops.multiply(res, 0.0))
    return res


def _hinge_labels(y_true):
    """Keras converts labels that are all 0/1 to -1/1 (decided on the whole batch)."""
    is01 = ops.logical_or(ops.equal(y_true, 0.0), ops.equal(y_true, 1.0))
    all01 = ops.equal(ops.min(ops.cast(is01, ops.dtype_of(y_true))), 1.0)
    return ops.where(all01, ops.subtract(ops.multiply(y_true, 2.0), 1.0), y_true)


def hinge(y_true, y_pred):
    y_true, y_pred = _prepare(y_true, y_pred)
    y_true = _hinge_labels(y_true)
    return ops.mean(ops.maximum(ops.subtract(1.0, ops.multiply(y_true, y_pred)), 0.0), axis=-1)


def squared_hinge(y_true, y_pred):
    y_true, y_pred = _prepare(y_true, y_pred)
    y_true = _hinge_labels(y_true)
    return ops.mean(ops.square(ops.maximum(ops.subtract(1.0, ops.multiply(y_true, y_pred)),
                                           0.0)), axis=-1)


def categorical_hinge(y_true, y_pred):
    y_pred = _pred(y_pred)
    y_true = _true_like(y_true, y_pred)
    pos = ops.sum(ops.multiply(y_true, y_pred), axis=-1)
    neg = ops.max(ops.multiply(ops.subtract(1.0, y_true), y_pred), axis=-1)
    return ops.maximum(ops.add(ops.subtract(neg, pos), 1.0), 0.0)


def kl_divergence(y_true, y_pred):
    y_pred = _pred(y_pred)
    y_true = ops.clip(_true_like(y_true, y_pred), EPSILON, 1.0)
    y_pred = ops.clip(y_pred, EPSILON, 1.0)
    return ops.sum(ops.multiply(y_true, ops.log(ops.divide(y_true, y_pred))), axis=-1)


def poisson(y_true, y_pred):
    y_pred = _pred(y_pred)
    y_true = _true_like(y_true, y_pred)
    return ops.mean(ops.subtract(y_pred, ops.multiply(y_true, ops.log(ops.add(y_pred, EPSILON)))),
                    axis=-1)


def huber(y_true, y_pred, delta: float = 1.0):
    y_true, y_pred = _prepare(y_true, y_pred)
    err = ops.subtract(y_pred, y_true)
    abs_err = ops.abs(err)
    quad = ops.multiply(ops.square(err), 0.5)
    lin = ops.subtract(ops.multiply(abs_err, float(delta)), 0.5 * delta * delta)
    return ops.mean(ops.where(ops.less_equal(abs_err, float(delta)), quad, lin), axis=-1)


def log_cosh(y_true, y_pred):
    y_true, y_pred = _prepare(y_true, y_pred)
    x = ops.subtract(y_pred, y_true)
    # log(cosh x) = x + softplus(-2x) - log 2, stable for large |x|.
    sp = softplus(ops.multiply(x, -2.0))
    return ops.mean(ops.subtract(ops.add(x, sp), float(np.log(2.0))), axis=-1)


# --------------------------------------------------------------------------------------
# Loss classes
# --------------------------------------------------------------------------------------

_REDUCTIONS = ("sum_over_batch_size", "sum", "none", None, "mean", "mean_with_sample_weight")


class Loss:
    """Keras 3 ``Loss``: ``__call__(y_true, y_pred, sample_weight=None)`` reduces the
    per-sample values of ``call``: ``sum_over_batch_size`` (default; the weighted sum
    divided by the number of loss elements), ``sum``, ``none``."""

    def __init__(self, name: str | None = None, reduction="sum_over_batch_size", dtype=None):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"Invalid value for argument `reduction`. Expected one of "
                             f"{_REDUCTIONS}. Received: reduction={reduction!r}")
        self.name = name or _snake(type(self).__name__)
        self.reduction = reduction
        self.dtype = dtype

    def call(self, y_true, y_pred):
        raise NotImplementedError

    def __call__(self, y_true, y_pred, sample_weight=None):
        values = self.call(y_true, y_pred)
        return reduce_weighted_values(values, sample_weight, self.reduction)

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config: Mapping):
        return cls(**dict(config))

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"


def _snake(name: str) -> str:
    out = []
    for i, c in enumerate(name):
        if c.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(c.lower())
    return "".join(out)


def reduce_weighted_values(values, sample_weight=None, reduction="sum_over_batch_size"):
    """Keras ``reduce_weighted_values``: weight (broadcast per sample), then reduce."""
    if sample_weight is not None:
        sw = ops.cast(as_tensor(sample_weight), ops.dtype_of(values))
        values, sw = squeeze_or_expand_to_same_rank(values, sw)
        # Per-sample weights against per-timestep losses: broadcast over the extra axes
        # (Keras 3 would fail to broadcast (N,T) * (N,)).
        while ops.rank(sw) < ops.rank(values):
            sw = ops.expand_dims(sw, -1)
        values = ops.multiply(values, sw)
    if reduction in (None, "none") or ops.rank(values) == 0:
        return values
    total = ops.sum(values)
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        denom = ops.sum(ops.broadcast_to(sw, ops.shape(values)))
        return ops.divide(total, ops.maximum(denom, EPSILON))
    n = int(np.prod(ops.shape(values)))
    return ops.divide(total, float(max(n, 1)))


class LossFunctionWrapper(Loss):
    """A loss function (and its keyword arguments) as a ``Loss``."""

    def __init__(self, fn: Callable, reduction="sum_over_batch_size", name=None, dtype=None,
                 **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", "loss"), reduction=reduction,
                         dtype=dtype)
        self.fn = fn
        self._fn_kwargs = kwargs

    def call(self, y_true, y_pred):
        y_pred = _pred(y_pred)
        y_true = as_tensor(y_true)
        # Keras reconciles (N,) labels with (N,1) predictions before calling the function.
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def get_config(self):
        return {**super().get_config(), **self._fn_kwargs}

    @classmethod
    def from_config(cls, config: Mapping):
        if cls is LossFunctionWrapper:
            raise ValueError("LossFunctionWrapper.from_config needs a concrete loss class")
        return cls(**dict(config))


def _loss_class(class_name: str, fn: Callable, default_name: str, params: dict):
    """A Keras loss class: ``__init__(<params with defaults>, reduction, name, dtype)``."""

    def __init__(self, *args, reduction="sum_over_batch_size", name=default_name, dtype=None,
                 **kwargs):
        names = list(params)
        if len(args) > len(names):
            raise TypeError(f"{class_name}() takes at most {len(names)} positional arguments")
        given = dict(zip(names, args))
        for k in kwargs:
            if k not in params:
                raise TypeError(f"{class_name}() got an unexpected keyword argument {k!r}")
        kw = {k: given.get(k, kwargs.get(k, d)) for k, d in params.items()}
        LossFunctionWrapper.__init__(self, fn, reduction=reduction, name=name, dtype=dtype,
                                     **kw)
        for k, v in kw.items():
            setattr(self, k, v)

    cls = type(class_name, (LossFunctionWrapper,), {
        "__init__": __init__, "__module__": __name__,
        "__doc__": f"Keras ``{class_name}``: the ``{fn.__name__}`` loss as a class."})
    return cls


MeanSquaredError = _loss_class("MeanSquaredError", mean_squared_error, "mean_squared_error", {})
MeanAbsoluteError = _loss_class("MeanAbsoluteError", mean_absolute_error,
                                "mean_absolute_error", {})
MeanAbsolutePercentageError = _loss_class("MeanAbsolutePercentageError",
                                          mean_absolute_percentage_error,
                                          "mean_absolute_percentage_error", {})
MeanSquaredLogarithmicError = _loss_class("MeanSquaredLogarithmicError",
                                          mean_squared_logarithmic_error,
                                          "mean_squared_logarithmic_error", {})
BinaryCrossentropy = _loss_class("BinaryCrossentropy", binary_crossentropy,
                                 "binary_crossentropy",
                                 {"from_logits": False, "label_smoothing": 0.0, "axis": -1})
CategoricalCrossentropy = _loss_class("CategoricalCrossentropy", categorical_crossentropy,
                                      "categorical_crossentropy",
                                      {"from_logits": False, "label_smoothing": 0.0,
                                       "axis": -1})
SparseCategoricalCrossentropy = _loss_class("SparseCategoricalCrossentropy",
                                            sparse_categorical_crossentropy,
                                            "sparse_categorical_crossentropy",
                                            {"from_logits": False, "ignore_class": None,
                                             "axis": -1})
Hinge = _loss_class("Hinge", hinge, "hinge", {})
SquaredHinge = _loss_class("SquaredHinge", squared_hinge, "squared_hinge", {})
CategoricalHinge = _loss_class("CategoricalHinge", categorical_hinge, "categorical_hinge", {})
KLDivergence = _loss_class("KLDivergence", kl_divergence, "kl_divergence", {})
Poisson = _loss_class("Poisson", poisson, "poisson", {})
Huber = _loss_class("Huber", huber, "huber_loss", {"delta": 1.0})
LogCosh = _loss_class("LogCosh", log_cosh, "log_cosh", {})

# Aliases Keras exports.
mse = MSE = mean_squared_error
bce = BCE = binary_crossentropy
mae = MAE = mean_absolute_error
mape = MAPE = mean_absolute_percentage_error
msle = MSLE = mean_squared_logarithmic_error
kld = KLD = kullback_leibler_divergence = kl_divergence
logcosh = log_cosh

ALL_LOSSES: dict[str, object] = {
    # functions
    "mean_squared_error": mean_squared_error, "mse": mean_squared_error,
    "MSE": mean_squared_error,
    "mean_absolute_error": mean_absolute_error, "mae": mean_absolute_error,
    "MAE": mean_absolute_error,
    "mean_absolute_percentage_error": mean_absolute_percentage_error,
    "mape": mean_absolute_percentage_error, "MAPE": mean_absolute_percentage_error,
    "mean_squared_logarithmic_error": mean_squared_logarithmic_error,
    "msle": mean_squared_logarithmic_error, "MSLE": mean_squared_logarithmic_error,
    "binary_crossentropy": binary_crossentropy, "bce": binary_crossentropy,
    "BCE": binary_crossentropy,
    "categorical_crossentropy": categorical_crossentropy,
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
    "hinge": hinge, "squared_hinge": squared_hinge, "categorical_hinge": categorical_hinge,
    "kl_divergence": kl_divergence, "kld": kl_divergence, "KLD": kl_divergence,
    "kullback_leibler_divergence": kl_divergence,
    "poisson": poisson, "huber": huber, "log_cosh": log_cosh, "logcosh": log_cosh,
    # classes
    "MeanSquaredError": MeanSquaredError, "MeanAbsoluteError": MeanAbsoluteError,
    "MeanAbsolutePercentageError": MeanAbsolutePercentageError,
    "MeanSquaredLogarithmicError": MeanSquaredLogarithmicError,
    "BinaryCrossentropy": BinaryCrossentropy,
    "CategoricalCrossentropy": CategoricalCrossentropy,
    "SparseCategoricalCrossentropy": SparseCategoricalCrossentropy,
    "Hinge": Hinge, "SquaredHinge": SquaredHinge, "CategoricalHinge": CategoricalHinge,
    "KLDivergence": KLDivergence, "Poisson": Poisson, "Huber": Huber, "LogCosh": LogCosh,
}

#: Canonical names of the loss functions, used to recognize a loss whatever its spelling
#: (the 'accuracy' metric resolution in ``graphc.frontend.metrics`` needs this).
_FN_CLASS = {
    mean_squared_error: MeanSquaredError, mean_absolute_error: MeanAbsoluteError,
    mean_absolute_percentage_error: MeanAbsolutePercentageError,
    mean_squared_logarithmic_error: MeanSquaredLogarithmicError,
    binary_crossentropy: BinaryCrossentropy, categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy, hinge: Hinge,
    squared_hinge: SquaredHinge, categorical_hinge: CategoricalHinge,
    kl_divergence: KLDivergence, poisson: Poisson, huber: Huber, log_cosh: LogCosh,
}


def canonical_name(loss) -> str | None:
    """The Keras function name of a loss given as a name, function, class or instance
    (``'mse'`` → ``'mean_squared_error'``; ``BinaryCrossentropy()`` →
    ``'binary_crossentropy'``); None when it is not a built-in loss."""
    if loss is None:
        return None
    if isinstance(loss, str):
        try:
            loss = lookup("loss", loss, ALL_LOSSES)
        except errors.UnknownNameError:
            return None
    if isinstance(loss, type):
        for fn, cls in _FN_CLASS.items():
            if cls is loss:
                return fn.__name__
        return None
    fn = getattr(loss, "fn", loss)
    try:
        return fn.__name__ if fn in _FN_CLASS else None
    except TypeError:  # unhashable user object
        return None


def serialize(loss) -> dict | str:
    """Keras 3 form for Loss objects; the function name for loss functions."""
    if isinstance(loss, Loss):
        return {"module": "keras.losses", "class_name": type(loss).__name__,
                "config": loss.get_config(), "registered_name": None}
    return getattr(loss, "__name__", str(loss))


def deserialize(config, custom_objects: Mapping | None = None):
    """A Loss (or loss function) from ``serialize``'s output or a Keras config dict."""
    if isinstance(config, str):
        if custom_objects and config in custom_objects:
            return custom_objects[config]
        return lookup("loss", config, ALL_LOSSES)
    name, cfg = split_config("loss", config)
    if name in ("function",) and isinstance(cfg, str):
        return deserialize(cfg, custom_objects)
    obj = custom_objects.get(name) if custom_objects else None
    if obj is None:
        obj = lookup("loss", name, ALL_LOSSES)
    if isinstance(obj, type):
        cfg = dict(cfg or {})
        if cfg.get("reduction") == "auto":  # Keras 2 default reduction
            cfg["reduction"] = "sum_over_batch_size"
        cfg.pop("fn", None)
        return obj.from_config(cfg)
    return obj


def get(identifier):
    """A ``Loss`` object (``__call__(y_true, y_pred, sample_weight=None) -> scalar`` and a
    ``name``) for a name, function, class, instance or config dict; None for None."""
    if identifier is None:
        return None
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        obj = lookup("loss", identifier, ALL_LOSSES)
    elif isinstance(identifier, Mapping):
        obj = deserialize(identifier)
    else:
        obj = identifier
    if isinstance(obj, Loss):
        return obj
    if isinstance(obj, type) and issubclass(obj, Loss):
        return obj()
    if callable(obj):
        return LossFunctionWrapper(obj, name=getattr(obj, "__name__", None))
    raise errors.UnknownNameError(
        f"Could not interpret loss identifier {identifier!r}: expected a name "
        f"({', '.join(sorted(ALL_LOSSES, key=str.lower))}), a Loss, a function or a "
        f"config dict")
