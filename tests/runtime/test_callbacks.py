"""Callbacks: hook order in fit/evaluate/predict, History, EarlyStopping, ModelCheckpoint,
CSVLogger, LR callbacks, LambdaCallback — driven by a scripted fake executable."""
import csv
import os

import numpy as np
import pytest

import graphc.callbacks as public
from graphc.runtime import training
from graphc.runtime.callbacks import (
    CallbackList, Callback, CSVLogger, EarlyStopping, History, LambdaCallback,
    LearningRateScheduler, ModelCheckpoint, ProgbarLogger, ReduceLROnPlateau, TerminateOnNaN)


class Sym:
    def __init__(self, name, shape):
        self.name, self.shape, self.dtype = name, shape, "float32"


class Opt:
    def __init__(self, lr):
        self.learning_rate = lr


class Model:
    """Weights = [number of train steps so far]; save/save_weights write small files."""

    def __init__(self):
        self.inputs = [Sym("x", (None, 2))]
        self.outputs = [Sym("y", (None, 1))]
        self.output_names = ["y"]
        self.optimizer = Opt(0.1)
        self.loss = "mse"
        self.stop_training = False
        self.steps = 0
        self.saved = []

    def get_weights(self):
        return [np.array(self.steps)]

    def set_weights(self, ws):
        self.steps = int(ws[0])

    def save_weights(self, path):
        with open(path, "w") as f:
            f.write(f"weights {self.steps}")
        self.saved.append(("weights", path))

    def save(self, path):
        with open(path, "w") as f:
            f.write(f"model {self.steps}")
        self.saved.append(("model", path))


class ScriptedExe:
    """train_step returns loss[epoch] (one batch per epoch with the data below); test_step
    returns val[epoch]; accuracy mirrors 1 - loss."""

    def __init__(self, losses=None, val_losses=None, steps_per_epoch=1):
        self.model = Model()
        self.losses = losses or [1.0] * 100
        self.val_losses = val_losses
        self.spe = steps_per_epoch
        self.tests = 0

    def train_step(self, xs, ys, sws):
        e = self.model.steps // self.spe
        self.model.steps += 1
        return {"loss": self.losses[e], "accuracy": 1 - self.losses[e]}

    def test_step(self, xs, ys, sws):
        e = (self.model.steps - 1) // self.spe
        self.tests += 1
        v = self.val_losses[e] if self.val_losses else 0.5
        return {"loss": v, "accuracy": 1 - v}

    def predict_step(self, xs):
        return [np.zeros((len(xs[0]), 1), np.float32)]

    fit = training.fit
    evaluate = training.evaluate
    predict = training.predict


X, Y = np.zeros((8, 2)), np.zeros(8)


def fit(exe, epochs, cbs, **kw):
    kw.setdefault("validation_data", (X, Y) if exe.val_losses else None)
    return exe.fit(X, Y, batch_size=8 // exe.spe, epochs=epochs, verbose=0, callbacks=cbs,
                   **kw)


class Trace(Callback):
    """Records every hook call with its int argument (epoch/batch)."""

    def __init__(self):
        super().__init__()
        self.calls = []


def _recorder(name):
    def rec(self, *args):
        self.calls.append((name,) + tuple(a for a in args if isinstance(a, int)))
    return rec


for _name in ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
              "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
              "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
              "on_predict_batch_begin", "on_predict_batch_end"):
    setattr(Trace, _name, _recorder(_name))


def test_public_face():
    assert public.EarlyStopping is EarlyStopping and public.History is History


def test_hook_order_fit_with_validation():
    exe = ScriptedExe(val_losses=[1, 1], steps_per_epoch=2)
    t = Trace()
    fit(exe, 2, [t])
    epoch = [("on_epoch_begin", "E"),
             ("on_train_batch_begin", 0), ("on_train_batch_end", 0),
             ("on_train_batch_begin", 1), ("on_train_batch_end", 1),
             ("on_test_begin",),
             ("on_test_batch_begin", 0), ("on_test_batch_end", 0),
             ("on_test_batch_begin", 1), ("on_test_batch_end", 1),
             ("on_test_end",),
             ("on_epoch_end", "E")]
    expected = [("on_train_begin",)]
    for e in range(2):
        expected += [tuple(e if v == "E" else v for v in c) for c in epoch]
    expected += [("on_train_end",)]
    assert t.calls == expected
    assert t.params == {"verbose": 0, "epochs": 2, "steps": 2}
    assert t.model is exe.model


def test_hook_order_evaluate_and_predict():
    exe = ScriptedExe()
    t = Trace()
    exe.evaluate(X, Y, batch_size=4, verbose=0, callbacks=[t])
    assert t.calls == [("on_test_begin",), ("on_test_batch_begin", 0), ("on_test_batch_end", 0),
                       ("on_test_batch_begin", 1), ("on_test_batch_end", 1), ("on_test_end",)]
    t.calls.clear()
    exe.predict(X, batch_size=8, verbose=0, callbacks=[t])
    assert t.calls == [("on_predict_begin",), ("on_predict_batch_begin", 0),
                       ("on_predict_batch_end", 0), ("on_predict_end",)]


def test_logs_passed_to_hooks():
    seen = {}

    class Rec(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen["epoch"] = dict(logs)

        def on_test_end(self, logs=None):
            seen["test"] = dict(logs)

        def on_predict_batch_end(self, batch, logs=None):
            seen["pred"] = logs

    exe = ScriptedExe(losses=[0.25], val_losses=[0.75])
    fit(exe, 1, [Rec()])
    assert seen["epoch"] == {"accuracy": 0.75, "loss": 0.25, "val_accuracy": 0.25,
                             "val_loss": 0.75}
    assert seen["test"] == {"accuracy": 0.25, "loss": 0.75}
    exe.predict(X, verbose=0, callbacks=[Rec()])
    assert seen["pred"]["outputs"].shape == (8, 1)


def test_legacy_on_batch_hooks_and_lambda():
    got = []

    class Legacy(Callback):
        def on_batch_end(self, batch, logs=None):
            got.append(("legacy", batch))

    lam = LambdaCallback(on_epoch_end=lambda epoch, logs: got.append(("epoch", epoch)),
                         on_batch_begin=lambda b, l: got.append(("lb", b)),
                         on_train_end=lambda logs: got.append("end"))
    fit(ScriptedExe(), 2, [Legacy(), lam])
    assert got == [("lb", 0), ("legacy", 0), ("epoch", 0), ("lb", 0), ("legacy", 0),
                   ("epoch", 1), "end"]
    with pytest.raises(TypeError, match="on_nothing"):
        LambdaCallback(on_nothing=print)


def test_callback_list_skips_noop_hooks():
    class OnlyEpoch(Callback):
        def on_epoch_end(self, epoch, logs=None):
            pass

    cl = CallbackList([OnlyEpoch(), LambdaCallback(on_train_batch_end=lambda b, l: None)])
    assert len(cl._dispatch["on_epoch_end"]) == 1
    assert len(cl._dispatch["on_train_batch_end"]) == 1
    assert cl._dispatch["on_train_batch_begin"] == []
    with pytest.raises(TypeError, match="Callback"):
        CallbackList([object()])


def test_history_and_progbar_are_last_and_not_duplicated():
    h = History()
    cl = CallbackList([h], add_history=True, add_progbar=True)
    assert cl.history is h and isinstance(cl.callbacks[-1], ProgbarLogger)
    assert len(cl.callbacks) == 2


def test_user_history_is_returned_and_reused():
    h = History()
    exe = ScriptedExe()
    assert fit(exe, 2, [h]) is h
    fit(exe, 1, [h])
    assert len(h.history["loss"]) == 3     # Keras: a reused History keeps accumulating
    assert h.epoch == [0]


# --- EarlyStopping -----------------------------------------------------------------------

def test_early_stopping_patience():
    exe = ScriptedExe(val_losses=[1.0, 0.5, 0.6, 0.7, 0.4, 0.3])
    es = EarlyStopping(patience=2)
    hist = fit(exe, 6, [es])
    # best at epoch 1; epochs 2 and 3 don't improve → stop after epoch 3
    assert hist.epoch == [0, 1, 2, 3]
    assert es.stopped_epoch == 3 and es.best == 0.5
    assert exe.model.steps == 4


def test_early_stopping_patience_zero_and_min_delta():
    exe = ScriptedExe(losses=[1.0, 0.95, 0.5])
    hist = fit(exe, 3, [EarlyStopping(monitor="loss", min_delta=0.1)])
    assert hist.epoch == [0, 1]            # 0.95 is not 0.1 better than 1.0


def test_early_stopping_restore_best_weights(capsys):
    exe = ScriptedExe(val_losses=[1.0, 0.5, 0.6, 0.7, 0.8])
    es = EarlyStopping(patience=2, restore_best_weights=True, verbose=1)
    fit(exe, 5, [es])
    assert exe.model.steps == 2            # weights as at the end of epoch 1 (2 steps)
    out = capsys.readouterr().out
    assert "Epoch 4: early stopping" in out
    assert "Restoring model weights from the end of the best epoch: 2." in out


def test_early_stopping_restores_even_without_stopping():
    exe = ScriptedExe(val_losses=[1.0, 0.5, 0.6])
    fit(exe, 3, [EarlyStopping(patience=5, restore_best_weights=True)])
    assert exe.model.steps == 2


def test_early_stopping_mode_max_inferred_for_accuracy():
    exe = ScriptedExe(val_losses=[0.5, 0.4, 0.45, 0.6])     # val_accuracy .5 .6 .55 .4
    hist = fit(exe, 4, [EarlyStopping(monitor="val_accuracy", patience=1)])
    assert hist.epoch == [0, 1, 2]


def test_early_stopping_baseline_and_start_from_epoch():
    losses = [0.9, 0.95, 0.97, 0.99, 0.99]
    hist = fit(ScriptedExe(losses), 5, [EarlyStopping(monitor="loss", patience=2)])
    assert hist.epoch == [0, 1, 2]
    # epoch 0 does not beat the baseline, so patience is not reset by it
    hist = fit(ScriptedExe(losses), 5, [EarlyStopping(monitor="loss", baseline=0.5,
                                                      patience=2)])
    assert hist.epoch == [0, 1]
    exe = ScriptedExe(losses=[1.0, 2.0, 3.0, 4.0, 5.0])
    hist = fit(exe, 5, [EarlyStopping(monitor="loss", start_from_epoch=3)])
    assert hist.epoch == [0, 1, 2, 3, 4]


def test_early_stopping_missing_metric_warns_and_unknown_direction_raises():
    exe = ScriptedExe()
    with pytest.warns(UserWarning, match="val_loss.*not available"):
        fit(exe, 2, [EarlyStopping()])
    with pytest.raises(ValueError, match="mode='max'"):
        fit(ScriptedExe(), 1, [EarlyStopping(monitor="weirdness")])
    with pytest.warns(UserWarning, match="weirdness"):
        fit(ScriptedExe(), 1, [EarlyStopping(monitor="weirdness", mode="min")])


# --- ModelCheckpoint ---------------------------------------------------------------------

def test_model_checkpoint_every_epoch_formatted(tmp_path):
    exe = ScriptedExe(val_losses=[0.9, 0.456, 0.7])
    path = str(tmp_path / "ck" / "w-{epoch:02d}-{val_loss:.2f}.weights.h5")
    fit(exe, 3, [ModelCheckpoint(path, save_weights_only=True)])
    names = sorted(os.listdir(tmp_path / "ck"))
    assert names == ["w-01-0.90.weights.h5", "w-02-0.46.weights.h5", "w-03-0.70.weights.h5"]
    assert all(kind == "weights" for kind, _ in exe.model.saved)
    assert (tmp_path / "ck" / "w-02-0.46.weights.h5").read_text() == "weights 2"


def test_model_checkpoint_save_best_only(tmp_path, capsys):
    exe = ScriptedExe(val_losses=[0.9, 0.5, 0.7, 0.4])
    path = str(tmp_path / "best.h5")
    mc = ModelCheckpoint(path, save_best_only=True, verbose=1)
    fit(exe, 4, [mc])
    assert [k for k, _ in exe.model.saved] == ["model"] * 3      # epochs 1, 2, 4
    assert (tmp_path / "best.h5").read_text() == "model 4"
    assert mc.best == 0.4
    out = capsys.readouterr().out
    assert "Epoch 3: val_loss did not improve from 0.50000" in out
    assert "Epoch 4: val_loss improved from 0.50000 to 0.40000, saving model to" in out


def test_model_checkpoint_max_mode_and_threshold(tmp_path):
    exe = ScriptedExe(val_losses=[0.5, 0.4, 0.45])                # val_accuracy .5 .6 .55
    fit(exe, 3, [ModelCheckpoint(str(tmp_path / "m.keras"), monitor="val_accuracy",
                                 save_best_only=True, initial_value_threshold=0.55)])
    assert len(exe.model.saved) == 1 and (tmp_path / "m.keras").read_text() == "model 2"


def test_model_checkpoint_save_freq_batches(tmp_path):
    exe = ScriptedExe(steps_per_epoch=4)
    fit(exe, 2, [ModelCheckpoint(str(tmp_path / "b{epoch}-{batch}.w"), save_freq=3,
                                 save_weights_only=True)])
    assert sorted(os.listdir(tmp_path)) == ["b1-3.w", "b2-2.w"]


def test_model_checkpoint_missing_placeholder(tmp_path):
    with pytest.raises(KeyError, match="val_acc"):
        fit(ScriptedExe(), 1, [ModelCheckpoint(str(tmp_path / "{val_acc:.2f}.h5"))])
    with pytest.raises(ValueError, match="save_freq"):
        ModelCheckpoint("x", save_freq="batch")


# --- CSV, LR, NaN ------------------------------------------------------------------------

def test_csv_logger(tmp_path):
    exe = ScriptedExe(losses=[0.5, 0.25], val_losses=[0.75, 0.5])
    path = tmp_path / "log.csv"
    fit(exe, 2, [CSVLogger(str(path))])
    rows = list(csv.reader(open(path)))
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert rows[1] == ["0", "0.5", "0.5", "0.25", "0.75"]
    assert len(rows) == 3
    fit(exe := ScriptedExe(losses=[0.1]), 1, [CSVLogger(str(path), append=True)])
    rows = list(csv.reader(open(path)))
    assert len(rows) == 4 and rows[3][0] == "0"


def test_reduce_lr_on_plateau():
    exe = ScriptedExe(losses=[1.0, 0.5, 0.5, 0.5, 0.5, 0.5])
    hist = fit(exe, 6, [ReduceLROnPlateau(monitor="loss", patience=2, factor=0.5,
                                          min_lr=0.02)])
    # logged before the epoch's reduction, as Keras does
    assert hist.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05])
    assert exe.model.optimizer.learning_rate == pytest.approx(0.025)
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(factor=1.5)


def test_reduce_lr_on_plateau_min_lr_and_cooldown():
    exe = ScriptedExe(losses=[1.0] * 8)
    fit(exe, 8, [ReduceLROnPlateau(monitor="loss", patience=1, factor=0.1, min_lr=0.005,
                                   cooldown=2)])
    # 0.1 → 0.01 → floored at min_lr
    assert exe.model.optimizer.learning_rate == pytest.approx(0.005)
    exe = ScriptedExe(losses=[1.0] * 5)
    hist = fit(exe, 5, [ReduceLROnPlateau(monitor="loss", patience=1, factor=0.5,
                                          cooldown=2)])
    # Keras: the cooldown counter is decremented before the check, so with cooldown=2 the
    # second reduction comes two epochs after the first
    assert hist.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_learning_rate_scheduler_both_forms():
    exe = ScriptedExe()
    seen = []

    def sched(epoch, lr):
        seen.append(lr)
        return lr * 0.5

    hist = fit(exe, 3, [LearningRateScheduler(sched)])
    assert seen == pytest.approx([0.1, 0.05, 0.025])
    assert hist.history["learning_rate"] == pytest.approx([0.05, 0.025, 0.0125])
    exe = ScriptedExe()
    fit(exe, 2, [LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))])
    assert exe.model.optimizer.learning_rate == pytest.approx(0.02)
    with pytest.raises(ValueError, match="float"):
        fit(ScriptedExe(), 1, [LearningRateScheduler(lambda e, lr: "fast")])


def test_lr_callbacks_need_an_optimizer():
    exe = ScriptedExe()
    exe.model.optimizer = None
    with pytest.raises(ValueError, match="compile"):
        fit(exe, 1, [LearningRateScheduler(lambda e: 0.1)])


def test_terminate_on_nan_on_inf(capsys):
    exe = ScriptedExe(losses=[1.0, float("inf"), 1.0])
    hist = fit(exe, 3, [TerminateOnNaN()])
    assert hist.epoch == [0, 1]
