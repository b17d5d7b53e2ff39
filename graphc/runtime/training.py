"""The ``fit`` / ``evaluate`` / ``predict`` loops (and ``*_on_batch``) over an executable.

Each function takes the executable first; ``Executable`` mixes them in as methods. The
executable runs one compiled step per call (``train_step``/``test_step``/``predict_step``
on lists of arrays, any batch size) and returns that batch's logs; everything else —
batching, shuffling, validation, epoch bookkeeping, callbacks, progress display — is here.
Keras semantics throughout (Keras 3 unless noted): the last partial batch is used, logs are
sample-weighted running means, keys sorted as Keras 3 does, ``val_`` results appended to
the epoch logs, ``model.stop_training`` honoured after each batch and epoch.
"""
from __future__ import annotations

import warnings

import numpy as np

from graphc.errors import DataError
from graphc.runtime import data as data_mod
from graphc.runtime.callbacks import CallbackList

# Keras 2 arguments of fit/evaluate/predict that have no effect here. Accepted (with a
# warning) so Keras 2 code runs unchanged: batches are produced in the calling thread.
_LEGACY_KWARGS = ("workers", "use_multiprocessing", "max_queue_size")


def _legacy(kwargs, fn):
    unknown = [k for k in kwargs if k not in _LEGACY_KWARGS]
    if unknown:
        raise TypeError(f"{fn}() got unexpected keyword argument(s) {', '.join(unknown)}")
    if kwargs:
        warnings.warn(f"{fn}(): {', '.join(sorted(kwargs))} are Keras 2 arguments and are "
                      "ignored by graphc", stacklevel=3)


def _verbose(verbose):
    if verbose == "auto":
        return 1
    if verbose is None or isinstance(verbose, bool):
        return int(bool(verbose))
    if not isinstance(verbose, (int, np.integer)) or verbose < 0:
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto'; got {verbose!r}")
    return int(verbose)


class _Means:
    """Running means of batch logs weighted by batch sample count (Keras' Mean metrics
    with sample_weight=batch_size). Keys are sorted once, as Keras 3 sorts its logs."""

    __slots__ = ("keys", "raw_order", "sums", "count")

    def __init__(self):
        self.keys = None
        self.raw_order = None
        self.sums = None
        self.count = 0

    def add(self, logs, n) -> dict:
        if self.keys is None:
            self.raw_order = list(logs)
            self.keys = sorted(logs)
            self.sums = dict.fromkeys(self.keys, 0.0)
        sums = self.sums
        for k in self.keys:
            sums[k] += float(logs[k]) * n
        self.count += n
        c = self.count
        return {k: sums[k] / c for k in self.keys}

    def result(self) -> dict:
        if self.keys is None:
            return {}
        return {k: self.sums[k] / self.count for k in self.keys}


def _require_compiled(model, fn):
    # Only models that say they are not compiled (graphc/Keras models have `compiled`).
    if getattr(model, "compiled", True) is False:
        raise ValueError(f"You must call compile() before using the model in {fn}() "
                         f"(model.compile(optimizer=..., loss=...))")


def _should_eval(epoch, validation_freq) -> bool:
    e = epoch + 1                      # validation_freq counts epochs from 1
    if isinstance(validation_freq, (int, np.integer)) and not isinstance(validation_freq, bool):
        return e % int(validation_freq) == 0
    return e in validation_freq


def _check_validation_freq(validation_freq):
    if isinstance(validation_freq, (int, np.integer)) and not isinstance(validation_freq, bool):
        if validation_freq < 1:
            raise ValueError(f"validation_freq must be >= 1; got {validation_freq}")
        return validation_freq
    if isinstance(validation_freq, (list, tuple, set, range, frozenset)):
        return set(int(v) for v in validation_freq)
    raise ValueError("validation_freq must be an int or a list of epoch numbers (1-based); "
                     f"got {validation_freq!r}")


def _unpack_validation_data(validation_data):
    if isinstance(validation_data, (tuple, list)):
        if len(validation_data) not in (2, 3):
            raise DataError(
                "validation_data must be (x_val, y_val) or (x_val, y_val, val_sample_weight) "
                f"or a generator/Sequence; got a {type(validation_data).__name__} of "
                f"{len(validation_data)} elements")
        vx, vy, vsw = data_mod.unpack_x_y_sample_weight(validation_data)
        return vx, vy, vsw
    if data_mod.is_array_data(validation_data):
        raise DataError("validation_data must be (x_val, y_val) or (x_val, y_val, "
                        "val_sample_weight) or a generator/Sequence; got a single "
                        f"{type(validation_data).__name__}")
    return validation_data, None, None


def _run_test(exe, it: data_mod.EpochIterator, callbacks: CallbackList):
    """One evaluation pass with test hooks; returns the (sorted) mean logs and the order
    in which the executable reported them."""
    model = exe.model
    test_step = exe.test_step
    means = _Means()
    model.stop_evaluating = False
    callbacks.on_test_begin(None)
    for step, b in it.epoch():
        callbacks.on_test_batch_begin(step, None)
        batch_logs = means.add(test_step(b.xs, b.ys, b.sws), b.size)
        callbacks.on_test_batch_end(step, batch_logs)
        if model.stop_evaluating:
            break
    logs = means.result()
    callbacks.on_test_end(logs)
    return logs, means.raw_order


def _in_keras_order(model, logs: dict, raw_order) -> list:
    """Values in Keras' ``evaluate`` order: ``model.metrics_names`` where known, then the
    executable's own order (loss first, then compiled metrics)."""
    order = []
    for name in list(getattr(model, "metrics_names", None) or ()) + ["loss"] + \
            list(raw_order or ()) + sorted(logs):
        if name in logs and name not in order:
            order.append(name)
    return [logs[k] for k in order]


def _scalar_or_list(values):
    return values[0] if len(values) == 1 else values


def fit(exe, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
        validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
        sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
        validation_batch_size=None, validation_freq=1, **kwargs):
    """Train for ``epochs`` epochs (Keras ``Model.fit``); returns the ``History``."""
    _legacy(kwargs, "fit")
    model = exe.model
    _require_compiled(model, "fit")
    verbose = _verbose(verbose)
    validation_freq = _check_validation_freq(validation_freq)
    if not isinstance(epochs, (int, np.integer)) or isinstance(epochs, bool):
        raise ValueError(f"epochs must be an integer; got {epochs!r}")
    spec = data_mod.ModelSpec.from_model(model)

    train = data_mod.make_adapter(x, y, sample_weight, spec=spec, mode="fit",
                                  batch_size=batch_size, steps=steps_per_epoch,
                                  shuffle=shuffle, class_weight=class_weight)
    val = None
    if validation_split and validation_data is None:
        if not 0.0 < validation_split < 1.0:
            raise ValueError(f"validation_split must be in (0, 1); got {validation_split}")
        if not isinstance(train, data_mod.ArrayAdapter):
            raise DataError(
                "validation_split is only supported for numpy arrays (and lists/dicts of "
                f"them), not for {type(x).__name__} inputs; pass validation_data instead")
        train, val = train.split(validation_split, validation_batch_size)
    elif validation_data is not None:
        vx, vy, vsw = _unpack_validation_data(validation_data)
        val = data_mod.make_adapter(
            vx, vy, vsw, spec=spec, mode="evaluate",
            batch_size=(validation_batch_size or batch_size)
            if data_mod.is_array_data(vx) else validation_batch_size,
            steps=validation_steps, prefix="validation_data ")

    train_it = data_mod.EpochIterator(train, steps_per_epoch, cycle=True,
                                      what=type(x).__name__)
    train_it.ensure_not_empty()
    val_it = None
    if val is not None:
        val_it = data_mod.EpochIterator(val, validation_steps, cycle=False,
                                        what="validation_data")
        val_it.ensure_not_empty()

    cbs = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=model,
                       verbose=verbose, epochs=epochs, steps=train_it.steps)
    train_step = exe.train_step
    model.stop_training = False
    cbs.on_train_begin(None)
    training_logs = None
    for epoch in range(initial_epoch, epochs):
        if epoch > initial_epoch and not train_it.has_more():
            break                       # a one-shot generator ran out (warned)
        means = _Means()
        cbs.on_epoch_begin(epoch, None)
        for step, b in train_it.epoch():
            cbs.on_train_batch_begin(step, None)
            batch_logs = means.add(train_step(b.xs, b.ys, b.sws), b.size)
            cbs.on_train_batch_end(step, batch_logs)
            if model.stop_training:
                break
        epoch_logs = means.result()
        if val_it is not None and _should_eval(epoch, validation_freq):
            if val_it.has_more():
                val_logs, _ = _run_test(exe, val_it, cbs)
                epoch_logs.update(("val_" + k, v) for k, v in val_logs.items())
        cbs.on_epoch_end(epoch, epoch_logs)
        training_logs = epoch_logs
        if model.stop_training:
            break
    cbs.on_train_end(training_logs)
    model.history = cbs.history
    return cbs.history


def evaluate(exe, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
             steps=None, callbacks=None, return_dict=False, **kwargs):
    """Loss and metrics over the data (Keras ``Model.evaluate``): the scalar loss when
    that is all, else ``[loss, metric, ...]``, or a dict with ``return_dict``."""
    _legacy(kwargs, "evaluate")
    model = exe.model
    _require_compiled(model, "evaluate")
    verbose = _verbose(verbose)
    spec = data_mod.ModelSpec.from_model(model)
    adapter = data_mod.make_adapter(x, y, sample_weight, spec=spec, mode="evaluate",
                                    batch_size=batch_size, steps=steps)
    it = data_mod.EpochIterator(adapter, steps, cycle=False, what=type(x).__name__)
    it.ensure_not_empty()
    cbs = CallbackList(callbacks, add_progbar=verbose != 0, model=model, verbose=verbose,
                       epochs=1, steps=it.steps)
    logs, raw_order = _run_test(exe, it, cbs)
    if return_dict:
        return logs
    return _scalar_or_list(_in_keras_order(model, logs, raw_order))


def predict(exe, x, batch_size=None, verbose="auto", steps=None, callbacks=None, **kwargs):
    """Model outputs for ``x`` (Keras ``Model.predict``): one array for a single-output
    model, else a list with one array per output."""
    _legacy(kwargs, "predict")
    model = exe.model
    verbose = _verbose(verbose)
    spec = data_mod.ModelSpec.from_model(model)
    adapter = data_mod.make_adapter(x, spec=spec, mode="predict", batch_size=batch_size,
                                    steps=steps)
    it = data_mod.EpochIterator(adapter, steps, cycle=False, what=type(x).__name__)
    it.ensure_not_empty()
    cbs = CallbackList(callbacks, add_progbar=verbose != 0, model=model, verbose=verbose,
                       epochs=1, steps=it.steps)
    predict_step = exe.predict_step
    n_total = adapter.num_samples
    results = None          # arrays: preallocated, filled in place
    chunks = None           # generators: unknown total, concatenated at the end
    filled = 0
    model.stop_predicting = False
    cbs.on_predict_begin(None)
    for step, b in it.epoch():
        cbs.on_predict_batch_begin(step, None)
        outs = predict_step(b.xs)
        if isinstance(outs, np.ndarray):
            outs = [outs]
        # Copy out of the step's buffers now: an executable may reuse its output buffers
        # for the next batch.
        if n_total is not None:
            if results is None:
                results = [np.empty((n_total,) + np.shape(o)[1:], np.asarray(o).dtype)
                           for o in outs]
            for r, o in zip(results, outs):
                r[filled:filled + b.size] = o
        else:
            if chunks is None:
                chunks = [[] for _ in outs]
            for c, o in zip(chunks, outs):
                c.append(np.array(o, copy=True))
        filled += b.size
        cbs.on_predict_batch_end(step, {"outputs": outs[0] if len(outs) == 1 else outs})
        if model.stop_predicting:
            break
    cbs.on_predict_end(None)
    if results is not None:
        outputs = [r[:filled] for r in results]
    else:
        outputs = [np.concatenate(c, axis=0) for c in chunks]
    return outputs[0] if len(outputs) == 1 else outputs


class _Batch:
    """The one-array batch of the predict fast path (what ArrayAdapter would give)."""

    def __init__(self, xs):
        self.xs = xs


def _one_batch(exe, x, y, sample_weight, class_weight, mode):
    if mode == "predict" and type(x) is np.ndarray and x.dtype == np.float32 and \
            x.flags.c_contiguous and x.ndim >= 1 and len(exe.model.inputs) == 1:
        # Batch-1 inference latency is mostly Python: a plain float32 array needs no
        # adapter (shapes are still checked by the executable when it compiles the shape).
        return _Batch([x])
    if mode != "predict":
        _require_compiled(exe.model, "train_on_batch" if mode == "fit" else "test_on_batch")
    spec = data_mod.ModelSpec.from_model(exe.model)
    adapter = data_mod.make_adapter(x, y, sample_weight, spec=spec, mode=mode,
                                    class_weight=class_weight, batch_size=1)
    if not isinstance(adapter, data_mod.ArrayAdapter):
        raise DataError(f"{mode}_on_batch takes arrays, not a {type(x).__name__}")
    return adapter


def train_on_batch(exe, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
    """One optimizer step on exactly this batch. Returns this batch's loss (and metrics),
    as Keras 2 did with its default ``reset_metrics=True`` (what GAN loops expect)."""
    a = _one_batch(exe, x, y, sample_weight, class_weight, "fit")
    logs = {k: float(v) for k, v in exe.train_step(a.xs, a.ys, a.sws).items()}
    if return_dict:
        return dict(sorted(logs.items()))
    return _scalar_or_list(_in_keras_order(exe.model, logs, list(logs)))


def test_on_batch(exe, x, y=None, sample_weight=None, return_dict=False):
    """Loss (and metrics) of this batch, no update."""
    a = _one_batch(exe, x, y, sample_weight, None, "evaluate")
    logs = {k: float(v) for k, v in exe.test_step(a.xs, a.ys, a.sws).items()}
    if return_dict:
        return dict(sorted(logs.items()))
    return _scalar_or_list(_in_keras_order(exe.model, logs, list(logs)))


def predict_on_batch(exe, x):
    """Outputs for this batch (one array, or a list for several outputs)."""
    a = _one_batch(exe, x, None, None, None, "predict")
    outs = exe.predict_step(a.xs)
    if isinstance(outs, np.ndarray):
        outs = [outs]
    outs = [np.array(o, copy=True) for o in outs]
    return outs[0] if len(outs) == 1 else outs


__all__ = ["fit", "evaluate", "predict", "train_on_batch", "test_on_batch",
           "predict_on_batch"]
