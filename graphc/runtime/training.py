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

import time
import warnings

import numpy as np

from graphc.errors import DataError
from graphc.runtime import data as data_mod
from graphc.runtime.callbacks import CallbackList, _overrides

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

    def _start(self, logs):
        if self.keys is None:
            self.raw_order = list(logs)
            self.keys = sorted(logs)
            self.sums = dict.fromkeys(self.keys, 0.0)

    def add(self, logs, n) -> dict:
        self._start(logs)
        sums = self.sums
        for k in self.keys:
            sums[k] += float(logs[k]) * n
        self.count += n
        c = self.count
        return {k: sums[k] / c for k in self.keys}

    def add_steps(self, logs, n) -> dict:
        """``add`` for several batches of ``n`` samples at once: ``logs`` maps each name
        to one value per batch. The same double-precision sums, added in the same order
        (``add.accumulate`` is sequential), as one ``add`` per batch."""
        self._start(logs)
        sums = self.sums
        steps = 0
        for k in self.keys:
            v = np.asarray(logs[k], np.float64) * n
            steps = len(v)
            if steps:
                sums[k] = float(np.add.accumulate(np.concatenate(([sums[k]], v)))[-1])
        self.count += n * steps
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


def _step_batches(it, step_fn, means, on_begin, on_end, stop) -> None:
    """One Python call per batch of ``it``'s epoch (the path when the epoch cannot run
    natively): hooks around each step, logs into ``means``, ``stop()`` checked after each."""
    for step, b in it.epoch():
        on_begin(step, None)
        batch_logs = means.add(step_fn(b.xs, b.ys, b.sws), b.size)
        on_end(step, batch_logs)
        if stop():
            break


def _run_test(exe, it: data_mod.EpochIterator, callbacks: CallbackList, native=None):
    """One evaluation pass with test hooks (``native``: a ``_NativePass`` over ``it``'s
    arrays); returns the (sorted) mean logs and the order in which the executable
    reported them."""
    model = exe.model
    test_step = exe.test_step
    means = _Means()
    model.stop_evaluating = False
    callbacks.on_test_begin(None)
    if native is not None:
        native.run(means, callbacks, model)
    else:
        _step_batches(it, test_step, means, callbacks.on_test_batch_begin,
                      callbacks.on_test_batch_end, lambda: model.stop_evaluating)
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


#: ``fit``/``evaluate`` on in-memory arrays run a pass's full batches in native calls
#: where the target can (``_NativePass``); False: one step call per batch everywhere.
NATIVE_EPOCHS = True
#: with a progress bar, seconds of steps per native call between bar updates
PROGRESS_INTERVAL = 0.1
#: without one, seconds per native call at most (Ctrl-C is seen between calls)
MAX_CALL_SECONDS = 1.0

# Per step kind: the per-batch step method, its batch hooks, the model's stop flag.
_KINDS = {"train": ("train_step", "on_train_batch_begin", "on_train_batch_end",
                    "stop_training"),
          "test": ("test_step", "on_test_batch_begin", "on_test_batch_end",
                   "stop_evaluating")}


class _NativePass:
    """One pass over in-memory arrays with no Python per step: runs of full batches go
    to ``exe.run_steps`` (one native call each: rows gathered, step run, logs recorded,
    in native code), a batch of another size (the last, partial one) to the per-batch
    step. Same shuffle draw (``ArrayAdapter.pass_plan``), same batches, same updates in
    the same order, same logs as the per-batch loop, so weights and logs are
    bit-identical.

    Used for arrays without ``steps``/``steps_per_epoch`` (which stream batches across
    passes: per batch) when nothing needs Python between batches: no callback with batch
    hooks of the step's kind besides the progress bar, which is updated after each
    native call — calls are then sized to last about ``PROGRESS_INTERVAL`` seconds,
    else ``MAX_CALL_SECONDS`` (the first call is one step, to time it). The model's stop
    flag (``stop_training``/``stop_evaluating``) is honoured after each call: only
    epoch-level hooks can set it, and one set before the pass stops it after its first
    batch, as per batch."""

    def __init__(self, exe, kind, adapter, rows, report: bool):
        self.exe, self.kind, self.adapter, self.rows = exe, kind, adapter, rows
        self.report = report
        self.sec_per_step = None
        self._arange = None

    @classmethod
    def create(cls, exe, kind, adapter, steps, cbs: CallbackList):
        """The native pass for ``adapter``, or None where batches must go one by one."""
        if not (NATIVE_EPOCHS and getattr(exe, "native_epochs", False) and
                isinstance(adapter, data_mod.ArrayAdapter) and steps is None):
            return None
        _, begin, end, _ = _KINDS[kind]
        if any(cb is not cbs.progbar and (_overrides(cb, begin) or _overrides(cb, end))
               for cb in cbs.callbacks):
            return None
        rows = exe.prepare_rows(adapter.xs, adapter.ys, adapter.sws)
        if rows is None:
            return None
        return cls(exe, kind, adapter, rows, report=cbs.progbar is not None)

    def _chunk(self) -> int:
        if self.sec_per_step is None:
            return 1
        seconds = PROGRESS_INTERVAL if self.report else MAX_CALL_SECONDS
        return max(1, int(seconds / max(self.sec_per_step, 1e-9)))

    def run(self, means: _Means, cbs: CallbackList, model) -> None:
        step_name, begin, end, stop = _KINDS[self.kind]
        one_step = getattr(self.exe, step_name)
        begin, end = getattr(cbs, begin), getattr(cbs, end)
        adapter, bs = self.adapter, self.adapter.batch_size
        order, sizes = adapter.pass_plan()
        if order is None:
            if self._arange is None:
                self._arange = np.arange(adapter.num_samples, dtype=np.int64)
            index = self._arange
        else:
            index = order.astype(np.int64, copy=False)
        start = step = 0
        while step < len(sizes):
            if sizes[step] != bs:
                b = adapter.batch(order, start, sizes[step])
                begin(step, None)
                batch_logs = means.add(one_step(b.xs, b.ys, b.sws), b.size)
                end(step, batch_logs)
                start += b.size
                step += 1
            else:
                run = 1
                while step + run < len(sizes) and sizes[step + run] == bs:
                    run += 1
                n = 1 if getattr(model, stop, False) else min(run, self._chunk())
                t0 = time.perf_counter()
                logs = self.exe.run_steps(self.kind, self.rows, index[start:start + n * bs],
                                          n, bs)
                self.sec_per_step = (time.perf_counter() - t0) / n
                batch_logs = means.add_steps(logs, bs)
                start += n * bs
                step += n
                end(step - 1, batch_logs)
            if getattr(model, stop, False):
                break


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
    native = _NativePass.create(exe, "train", train, steps_per_epoch, cbs)
    val_native = None if val_it is None else \
        _NativePass.create(exe, "test", val, validation_steps, cbs)
    train_step = exe.train_step
    model.stop_training = False
    cbs.on_train_begin(None)
    training_logs = None
    for epoch in range(initial_epoch, epochs):
        if epoch > initial_epoch and not train_it.has_more():
            break                       # a one-shot generator ran out (warned)
        means = _Means()
        cbs.on_epoch_begin(epoch, None)
        if native is not None:
            native.run(means, cbs, model)
        else:
            _step_batches(train_it, train_step, means, cbs.on_train_batch_begin,
                          cbs.on_train_batch_end, lambda: model.stop_training)
        epoch_logs = means.result()
        if val_it is not None and _should_eval(epoch, validation_freq):
            if val_it.has_more():
                val_logs, _ = _run_test(exe, val_it, cbs, val_native)
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
    logs, raw_order = _run_test(exe, it, cbs,
                                _NativePass.create(exe, "test", adapter, steps, cbs))
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


def _plain_input(exe, x) -> bool:
    """A C-contiguous float32 array for a one-input model: Batch-1 inference latency is
    mostly Python, and such an array needs no adapter (its shape is still checked by the
    executable when it compiles that shape)."""
    return type(x) is np.ndarray and x.dtype == np.float32 and x.flags.c_contiguous and \
        x.ndim >= 1 and len(exe.model.inputs) == 1


def _one_batch(exe, x, y, sample_weight, class_weight, mode):
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
    xs = [x] if _plain_input(exe, x) else _one_batch(exe, x, None, None, None, "predict").xs
    outs = exe.predict_step(xs)
    if isinstance(outs, np.ndarray):
        outs = [outs]
    # predict_step's arrays are the caller's (Executable copies out of the step's reused
    # buffers); copy only what another executable might still own.
    if getattr(exe, "predict_step_returns_copies", False) is not True:
        outs = [np.array(o, copy=True) for o in outs]
    return outs[0] if len(outs) == 1 else outs


__all__ = ["fit", "evaluate", "predict", "train_on_batch", "test_on_batch",
           "predict_on_batch"]
