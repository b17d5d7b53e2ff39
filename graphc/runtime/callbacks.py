"""Keras callbacks: the ``Callback`` hook protocol, ``CallbackList`` dispatch and the stock
callbacks (History, ProgbarLogger, EarlyStopping, ModelCheckpoint, ...) with Keras 3
semantics. ``graphc.callbacks`` is the public face of this module.

The loops in ``training.py`` call hooks positionally, as Keras does, so user lambdas with
any parameter names work. Logs passed to batch hooks are the running (sample-weighted)
means of the epoch so far, as in Keras 3; logs passed to ``on_epoch_end`` are the epoch's
results plus ``val_*``; callbacks may add entries (``learning_rate``) that later callbacks,
History and the progress bar then see, because History and ProgbarLogger run last.
"""
from __future__ import annotations

import collections
import csv
import math
import os
import warnings

import numpy as np

from graphc.runtime.progbar import Progbar

_HOOKS = (
    "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
    "on_train_batch_begin", "on_train_batch_end",
    "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
    "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end",
)
# Keras 2 names still used by user code: the train-batch hooks forward to them.
_LEGACY_ALIAS = {"on_train_batch_begin": "on_batch_begin",
                 "on_train_batch_end": "on_batch_end"}


class Callback:
    """Base class: override any hook. ``self.model`` and ``self.params``
    (``{'verbose', 'epochs', 'steps'}``) are set before ``on_train_begin``."""

    def __init__(self):
        self.model = None
        self.params = {}
        self.validation_data = None     # Keras 2 attribute some user callbacks read

    def set_params(self, params):
        self.params = params

    def set_model(self, model):
        self.model = model

    def on_batch_begin(self, batch, logs=None):
        """Keras 2 name of ``on_train_batch_begin``."""

    def on_batch_end(self, batch, logs=None):
        """Keras 2 name of ``on_train_batch_end``."""

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs)

    def on_test_batch_begin(self, batch, logs=None):
        pass

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_predict_batch_begin(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass


def _overrides(cb, hook: str) -> bool:
    """Whether ``cb`` does anything on ``hook`` (so no-op hooks cost nothing per step, and
    ``fit`` may run whole epochs natively). A callback whose hook is a no-op in some
    configurations says so with ``_hook_active(hook) -> bool``."""
    active = getattr(cb, "_hook_active", None)
    if active is not None and not active(hook):
        return False
    names = (hook, _LEGACY_ALIAS[hook]) if hook in _LEGACY_ALIAS else (hook,)
    if not isinstance(cb, Callback):
        return callable(getattr(cb, hook, None))
    for name in names:
        if name in vars(cb):                      # LambdaCallback sets instance attributes
            return True
        if getattr(type(cb), name, None) is not getattr(Callback, name):
            return True
    return False


class CallbackList:
    """Dispatches each hook to every callback, in order. ``History`` and (when
    ``add_progbar``) ``ProgbarLogger`` are appended last unless the user passed one."""

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None,
                 **params):
        if isinstance(callbacks, CallbackList):
            callbacks = callbacks.callbacks
        elif isinstance(callbacks, Callback):
            callbacks = [callbacks]
        self.callbacks = list(callbacks or [])
        for cb in self.callbacks:
            if not any(callable(getattr(cb, h, None)) for h in _HOOKS):
                raise TypeError(f"callbacks must be graphc.callbacks.Callback instances; "
                                f"got {type(cb).__name__}")
        self.history = next((cb for cb in self.callbacks if isinstance(cb, History)), None)
        if self.history is None and add_history:
            self.history = History()
            self.callbacks.append(self.history)
        self.progbar = next((cb for cb in self.callbacks if isinstance(cb, ProgbarLogger)),
                            None)
        if self.progbar is None and add_progbar:
            self.progbar = ProgbarLogger()
            self.callbacks.append(self.progbar)
        self.model = None
        self.params = {}
        self._build_dispatch()
        if model is not None:
            self.set_model(model)
        if params:
            self.set_params(params)

    def _build_dispatch(self):
        self._dispatch = {h: [cb for cb in self.callbacks if _overrides(cb, h)] for h in _HOOKS}

    def append(self, callback):
        self.callbacks.append(callback)
        if self.model is not None:
            callback.set_model(self.model)
        if self.params:
            callback.set_params(self.params)
        self._build_dispatch()

    def set_params(self, params):
        self.params = params
        for cb in self.callbacks:
            cb.set_params(params)

    def set_model(self, model):
        self.model = model
        for cb in self.callbacks:
            cb.set_model(model)

    def _call(self, hook, *args):
        for cb in self._dispatch[hook]:
            getattr(cb, hook)(*args)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, logs)

    def on_test_begin(self, logs=None):
        self._call("on_test_begin", logs)

    def on_test_end(self, logs=None):
        self._call("on_test_end", logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._call("on_test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        self._call("on_test_batch_end", batch, logs)

    def on_predict_begin(self, logs=None):
        self._call("on_predict_begin", logs)

    def on_predict_end(self, logs=None):
        self._call("on_predict_end", logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._call("on_predict_batch_begin", batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._call("on_predict_batch_end", batch, logs)

    # Keras 2 spellings, for code that drives a CallbackList by hand.
    on_batch_begin = on_train_batch_begin
    on_batch_end = on_train_batch_end

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self):
        return len(self.callbacks)


class History(Callback):
    """Records epoch logs: ``history.history['loss'][i]``, ``history.epoch``."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
        # Set each epoch (not once at the end) so the model's history is current even
        # when training is interrupted.
        if self.model is not None:
            self.model.history = self


class ProgbarLogger(Callback):
    """Prints ``Epoch i/n`` and the progress bar (``verbose`` 1) or one line per epoch
    (``verbose`` 2). Validation inside ``fit`` is silent; its ``val_*`` results are
    appended to the epoch line."""

    def __init__(self):
        super().__init__()
        self.seen = 0
        self.progbar = None
        self.target = None
        self.verbose = 1
        self.epochs = 1
        self._called_in_fit = False

    def set_params(self, params):
        super().set_params(params)
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else verbose
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def on_train_begin(self, logs=None):
        self._called_in_fit = True

    def on_train_end(self, logs=None):
        self._called_in_fit = False

    def on_test_begin(self, logs=None):
        if not self._called_in_fit:
            self._reset_progbar()

    def on_predict_begin(self, logs=None):
        self._reset_progbar()

    def on_epoch_begin(self, epoch, logs=None):
        self._reset_progbar()
        # Keras 3 prints no "Epoch 1/1" header for single-epoch fits.
        if self.verbose and self.epochs > 1:
            print(f"Epoch {epoch + 1}/{self.epochs}", flush=True)

    def on_train_batch_end(self, batch, logs=None):
        self._update_progbar(batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        if not self._called_in_fit:
            self._update_progbar(batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._update_progbar(batch, None)   # never the predictions themselves

    def on_epoch_end(self, epoch, logs=None):
        self._finalize_progbar(logs)

    def on_test_end(self, logs=None):
        if not self._called_in_fit:
            self._finalize_progbar(logs)

    def on_predict_end(self, logs=None):
        self._finalize_progbar(logs)

    def _reset_progbar(self):
        self.seen = 0
        self.progbar = None

    def _maybe_init_progbar(self):
        if self.progbar is None:
            # Logs are already running means: show them as given, never re-averaged
            # (Keras 3 re-averages, which shows a mean of means mid-epoch).
            self.progbar = Progbar(target=self.target, verbose=self.verbose,
                                   stateless_metrics=(), unit_name="step")

    def _update_progbar(self, batch, logs=None):
        self._maybe_init_progbar()
        self.seen = batch + 1
        if self.verbose == 1:
            self.progbar.update(self.seen, list((logs or {}).items()), finalize=False)

    def _finalize_progbar(self, logs):
        self._maybe_init_progbar()
        if self.target is None:
            # Unknown length (a generator): learn it from the first epoch.
            self.target = self.seen
            self.progbar.target = self.seen
        self.progbar.update(self.target, list((logs or {}).items()), finalize=True)


# ---------------------------------------------------------------------------------------
# Monitoring callbacks

_MAX_HINTS = ("acc", "auc", "precision", "recall", "f1", "fmeasure", "iou", "top_k",
              "true_positives", "true_negatives")
_MIN_HINTS = ("loss", "error", "crossentropy", "hinge", "mse", "mae", "mape", "msle",
              "divergence", "poisson", "cosh", "false_positives", "false_negatives")


def _monitor_direction(monitor: str, mode: str, model, who: str, default=None) -> str:
    """'min' or 'max' for ``monitor`` under ``mode`` ('auto' infers it from the name or
    from a metric object's ``_direction``, as Keras 3 does)."""
    if mode in ("min", "max"):
        return mode
    name = monitor[4:] if monitor.startswith("val_") else monitor
    if name == "loss" or name.endswith("_loss"):
        return "min"
    for m in getattr(model, "metrics", None) or ():
        subs = getattr(m, "metrics", None)
        for mm in (subs if isinstance(subs, (list, tuple)) else [m]):
            if getattr(mm, "name", None) == name and hasattr(mm, "_direction"):
                return "max" if mm._direction == "up" else "min"
    low = name.lower()
    if any(h in low for h in _MAX_HINTS):
        return "max"
    if any(h in low for h in _MIN_HINTS):
        return "min"
    if default is not None:
        return default
    raise ValueError(
        f"{who} callback received monitor={monitor!r}, but graphc can't tell whether that "
        "metric should be maximized or minimized. Pass mode='max' to monitor the highest "
        "value, or mode='min' for the lowest.")


def _check_mode(mode, who):
    if mode not in ("auto", "min", "max"):
        warnings.warn(f"{who} mode {mode!r} is unknown, falling back to 'auto'.",
                      stacklevel=3)
        return "auto"
    return mode


def _as_float(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has stopped improving for ``patience`` epochs.

    With ``restore_best_weights`` the weights of the best epoch are restored at the end
    of training (even if training was not stopped early)."""

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor = monitor
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.min_delta = abs(min_delta)
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.mode = _check_mode(mode, "EarlyStopping")
        self.monitor_op = None
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def _improves(self, current, reference) -> bool:
        if reference is None:
            return True
        # An improvement must beat the reference by more than min_delta.
        if self.monitor_op == "min":
            return current + self.min_delta < reference
        return current - self.min_delta > reference

    def on_train_begin(self, logs=None):
        # Reset everything so one instance can be reused across fit calls.
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self.monitor_op = _monitor_direction(self.monitor, self.mode, self.model,
                                                 "EarlyStopping")
        logs = logs or {}
        current = _as_float(logs.get(self.monitor))
        if current is None:
            warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which is "
                          f"not available. Available metrics are: {','.join(logs)}",
                          stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._improves(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            # Patience restarts only when we beat both the previous best and the baseline.
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping", flush=True)
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print("Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.", flush=True)
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs):
        return (logs or {}).get(self.monitor)


class ModelCheckpoint(Callback):
    """Save the model (``model.save``) or its weights (``model.save_weights``) each epoch,
    every ``save_freq`` batches, or only when ``monitor`` improves (``save_best_only``).

    ``filepath`` may hold ``str.format`` fields filled from the epoch (1-based), the batch
    and the logs: ``"ckpt-{epoch:02d}-{val_loss:.2f}.weights.h5"``. Any file extension is
    accepted (Keras 3 insists on ``.keras``/``.weights.h5``; Keras 2 code uses ``.h5``):
    the saver picks the format."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.mode = _check_mode(mode, "ModelCheckpoint")
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq > 0):
            raise ValueError(f"ModelCheckpoint: save_freq must be 'epoch' or a positive "
                             f"integer (a number of batches); got {save_freq!r}")
        self.save_freq = save_freq
        self.initial_value_threshold = initial_value_threshold
        self.monitor_op = None
        self.best = initial_value_threshold
        self._batches_since_save = 0
        self._last_batch_seen = -1
        self._current_epoch = 0

    def on_train_begin(self, logs=None):
        self._batches_since_save = 0
        self._last_batch_seen = -1

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def _hook_active(self, hook: str) -> bool:
        # Saving per epoch needs no batch hook: fit keeps its native epoch loop.
        return not (hook == "on_train_batch_end" and self.save_freq == "epoch")

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        # Count batches across epoch boundaries (batch restarts at 0 each epoch).
        added = batch + 1 if batch <= self._last_batch_seen else batch - self._last_batch_seen
        self._last_batch_seen = batch
        self._batches_since_save += added
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save(self._current_epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _file_path(self, epoch, batch, logs) -> str:
        try:
            if batch is None or "batch" in logs:
                return self.filepath.format(epoch=epoch + 1, **logs)
            return self.filepath.format(epoch=epoch + 1, batch=batch + 1, **logs)
        except KeyError as e:
            raise KeyError(f'Failed to format this callback filepath: "{self.filepath}". '
                           f"Reason: no value for {e} in the logs "
                           f"(available: epoch, {', '.join(logs)})") from None

    def _write(self, filepath):
        dirname = os.path.dirname(filepath)
        if dirname:
            os.makedirs(dirname, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(filepath)
        else:
            self.model.save(filepath)

    def _save(self, epoch, batch, logs):
        logs = logs or {}
        filepath = self._file_path(epoch, batch, logs)
        if not self.save_best_only:
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: saving model to {filepath}", flush=True)
            self._write(filepath)
            return
        current = _as_float(logs.get(self.monitor))
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available, "
                          "skipping.", stacklevel=2)
            return
        if self.monitor_op is None:
            self.monitor_op = _monitor_direction(self.monitor, self.mode, self.model,
                                                 "ModelCheckpoint")
        best = self.best
        improved = best is None or (current < best if self.monitor_op == "min"
                                    else current > best)
        shown = ("inf" if self.monitor_op == "min" else "-inf") if best is None \
            else f"{best:.5f}"
        if improved:
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {shown} to "
                      f"{current:.5f}, saving model to {filepath}", flush=True)
            self.best = current
            self._write(filepath)
        elif self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {shown}",
                  flush=True)


class LambdaCallback(Callback):
    """A callback from plain functions: ``on_epoch_end(epoch, logs)``,
    ``on_train_batch_end(batch, logs)``, ``on_train_begin(logs)``, ... Any other hook
    (``on_batch_end``, ``on_test_end``, ...) may be given by keyword."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 **kwargs):
        super().__init__()
        hooks = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end)
        for name, fn in kwargs.items():
            if name not in _HOOKS and name not in ("on_batch_begin", "on_batch_end"):
                raise TypeError(f"LambdaCallback got an unknown hook {name!r}")
            hooks[name] = fn
        for name, fn in hooks.items():
            if fn is not None:
                setattr(self, name, fn)


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch's loss is NaN or infinite."""

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            print(f"Batch {batch}: Invalid loss, terminating training", flush=True)
            self.model.stop_training = True


class CSVLogger(Callback):
    """Stream epoch results to a CSV file: ``epoch`` then the log keys, sorted."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = append
        self.keys = None
        self.writer = None
        self.csv_file = None
        self.append_header = True

    def on_train_begin(self, logs=None):
        self.keys = None
        self.writer = None
        if self.append:
            if os.path.exists(self.filename):
                with open(self.filename) as f:
                    self.append_header = not bool(len(f.readline()))
            mode = "a"
        else:
            self.append_header = True
            mode = "w"
        self.csv_file = open(self.filename, mode, newline="")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}

        def handle_value(k):
            if isinstance(k, str) or not isinstance(k, collections.abc.Iterable) or \
                    (isinstance(k, np.ndarray) and k.ndim == 0):
                return k
            return '"[%s]"' % ", ".join(map(str, k))

        if self.keys is None:
            self.keys = sorted(logs)
            # Without validation data in the first epoch, reserve columns for it anyway so
            # a later validated epoch (validation_freq) still fits the header.
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys += ["val_" + k for k in self.keys]
        if self.writer is None:
            sep = self.sep

            class _Dialect(csv.excel):
                delimiter = sep

            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch"] + self.keys,
                                         dialect=_Dialect)
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch}
        row.update((k, handle_value(logs.get(k, "NA"))) for k in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file is not None:
            self.csv_file.close()
        self.writer = None


def _get_lr(model, who) -> float:
    opt = getattr(model, "optimizer", None)
    if opt is None or not hasattr(opt, "learning_rate"):
        raise ValueError(f"{who} needs a compiled model whose optimizer has a "
                         "`learning_rate` (call model.compile(optimizer=...) first)")
    return float(np.asarray(opt.learning_rate))


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved for
    ``patience`` epochs; adds ``learning_rate`` to the epoch logs."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0, **kwargs):
        super().__init__()
        if "epsilon" in kwargs:     # Keras 1/2 name of min_delta
            min_delta = kwargs.pop("epsilon")
        if kwargs:
            raise TypeError(f"ReduceLROnPlateau got unexpected arguments {sorted(kwargs)}")
        if factor >= 1.0:
            raise ValueError("ReduceLROnPlateau does not support a factor >= 1.0. "
                             f"Received factor={factor}")
        self.monitor = monitor
        self.factor = factor
        self.min_lr = min_lr
        self.min_delta = min_delta
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self.mode = _check_mode(mode, "ReduceLROnPlateau")
        self.cooldown_counter = 0
        self.wait = 0
        self.best = None
        self.monitor_op = None

    def _reset(self):
        # Keras' rule for this callback: unknown names mean "lower is better".
        self.monitor_op = _monitor_direction(self.monitor, self.mode, self.model,
                                             "ReduceLROnPlateau", default="min")
        self.best = np.inf if self.monitor_op == "min" else -np.inf
        self.cooldown_counter = 0
        self.wait = 0

    def _improves(self, current):
        if self.monitor_op == "min":
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta

    def on_train_begin(self, logs=None):
        self._reset()

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if self.monitor_op is None:
            self._reset()
        logs["learning_rate"] = _get_lr(self.model, "ReduceLROnPlateau")
        current = _as_float(logs.get(self.monitor))
        if current is None:
            warnings.warn(f"Learning rate reduction is conditioned on metric `{self.monitor}` "
                          f"which is not available. Available metrics are: {','.join(logs)}.",
                          stacklevel=2)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improves(current):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = logs["learning_rate"]
                if old_lr > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new_lr
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning "
                              f"rate to {new_lr}.", flush=True)
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class LearningRateScheduler(Callback):
    """Set the learning rate at each epoch start to ``schedule(epoch, lr)`` (or
    ``schedule(epoch)``, the Keras 1 form); adds ``learning_rate`` to the epoch logs."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        lr = _get_lr(self.model, "LearningRateScheduler")
        try:
            lr = self.schedule(epoch, lr)
        except TypeError:           # the one-argument form
            lr = self.schedule(epoch)
        if isinstance(lr, np.ndarray) and lr.ndim == 0:
            lr = lr.item()
        if not isinstance(lr, (float, int, np.floating, np.integer)) or isinstance(lr, bool):
            raise ValueError("The output of the `schedule` function should be a float. "
                             f"Got: {lr!r}")
        self.model.optimizer.learning_rate = float(lr)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                  f"{float(lr)}.", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _get_lr(self.model, "LearningRateScheduler")


__all__ = ["Callback", "CallbackList", "History", "ProgbarLogger", "EarlyStopping",
           "ModelCheckpoint", "LambdaCallback", "TerminateOnNaN", "CSVLogger",
           "ReduceLROnPlateau", "LearningRateScheduler"]
