"""Progress display: the Progbar line formats (Keras 3), in-place redraw throttling on a
terminal, and what fit/evaluate/predict print for verbose 0, 1 and 2."""
import io
import re

import numpy as np
import pytest

from graphc.runtime import progbar as pb_mod
from graphc.runtime import training
from graphc.runtime.progbar import Progbar, format_time, format_value

BAR = "━" * 20


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(pb_mod, "_clock", c)
    return c


class Stream(io.StringIO):
    def __init__(self, tty=False, encoding="utf-8"):
        super().__init__()
        self._tty, self._enc = tty, encoding

    def isatty(self):
        return self._tty

    @property
    def encoding(self):
        return self._enc


def run_epoch(bar, clock, steps=32, logs=(("accuracy", 0.875), ("loss", 0.31274))):
    clock.t = 0.1                         # the first step (compilation) is slow
    bar.update(1, list(logs))
    for i in range(2, steps):
        clock.t = 0.1 + (i - 1) * 0.003
        bar.update(i, list(logs))
    clock.t = 0.1 + (steps - 1) * 0.003
    bar.update(steps, list(logs), finalize=True)


def test_format_value_and_time():
    assert format_value(0.31274) == "0.3127"
    assert format_value(0.0005) == "5.0000e-04"
    assert format_value(-0.5) == "-0.5000"
    assert format_value(np.float32(2.0)) == "2.0000"
    assert format_value(float("nan")) == "nan"
    assert format_time(0.003, "step") == " 3ms/step"
    assert format_time(2.4, "step") == " 2s/step"
    assert format_time(0, "step") == " 0s/step"
    assert format_time(5e-5, "step") == " 50us/step"


def test_verbose1_not_a_tty_prints_only_the_final_line(clock):
    s = Stream(tty=False)
    bar = Progbar(32, verbose=1, stream=s, stateless_metrics=())
    run_epoch(bar, clock)
    assert s.getvalue() == f"32/32 {BAR} 0s 3ms/step - accuracy: 0.8750 - loss: 0.3127\n"


def test_verbose2_line(clock):
    s = Stream()
    bar = Progbar(32, verbose=2, stream=s, stateless_metrics=())
    run_epoch(bar, clock)
    assert s.getvalue() == "32/32 - 0s - 3ms/step - accuracy: 0.8750 - loss: 0.3127\n"


def test_verbose0_prints_nothing(clock):
    s = Stream(tty=True)
    run_epoch(Progbar(32, verbose=0, stream=s), clock)
    assert s.getvalue() == ""


def test_tty_redraws_in_place_throttled(clock):
    s = Stream(tty=True)
    bar = Progbar(100, verbose=1, stream=s, stateless_metrics=())
    for i in range(1, 100):               # 99 updates over 0.99 s
        clock.t = i * 0.01
        bar.update(i, [("loss", 1.0 / i)])
    clock.t = 1.0
    bar.update(100, [("loss", 0.01)])
    out = s.getvalue()
    redraws = out.count("\r")
    assert 5 <= redraws <= 12             # ≤ ~10 per second, plus the final one
    assert out.endswith("\n") and out.count("\n") == 1
    assert "\x1b[1m" in out and "\x1b[32m" in out          # colours on a terminal
    last = re.sub(r"\x1b\[[0-9;]*m", "", out.split("\r")[-1])
    assert last.startswith(f"100/100 {BAR} 1s ")
    assert last.rstrip().endswith("loss: 0.0100")
    mid = re.sub(r"\x1b\[[0-9;]*m", "", out.split("\r")[2])
    assert re.match(r" *\d+/100 ━+ \d+s \d+ms/step - loss: ", mid)   # ETA while running


def test_tty_pads_shorter_lines(clock):
    s = Stream(tty=True)
    bar = Progbar(10, verbose=1, stream=s, stateless_metrics=(), interval=0)
    clock.t = 1
    bar.update(1, [("loss", 123456.0)])
    clock.t = 2
    bar.update(2, [("loss", 1.0)])
    first, second = [re.sub(r"\x1b\[[0-9;]*m", "", p) for p in s.getvalue().split("\r")[1:]]
    assert len(second) >= len(first)


def test_unknown_target(clock):
    s = Stream(tty=True)
    bar = Progbar(None, verbose=1, stream=s, interval=0)
    clock.t = 1
    bar.update(5, [("loss", 0.5)])
    assert "      5/Unknown" in s.getvalue()


def test_ascii_terminal_falls_back(clock):
    s = Stream(encoding="ascii")
    bar = Progbar(2, verbose=1, stream=s)
    clock.t = 1
    bar.update(2, [("loss", 0.5)])
    assert s.getvalue().startswith("2/2 " + "=" * 20 + " ")


def test_stateless_metrics_are_averaged_by_default(clock):
    """Keras' public Progbar averages values over steps unless declared stateful."""
    s = Stream(tty=True)
    bar = Progbar(4, verbose=1, stream=s, interval=0, stateful_metrics=["acc"])
    for i, (l, a) in enumerate([(1.0, 0.1), (3.0, 0.3), (5.0, 0.5)], 1):
        clock.t = i
        bar.update(i, [("loss", l), ("acc", a)])
    last = re.sub(r"\x1b\[[0-9;]*m", "", s.getvalue().split("\r")[-1])
    assert "loss: 3.0000" in last and "acc: 0.5000" in last


# --- what fit / evaluate / predict print ---------------------------------------------------

class Sym:
    def __init__(self, name, shape):
        self.name, self.shape, self.dtype = name, shape, "float32"


class Model:
    def __init__(self):
        self.inputs = [Sym("x", (None, 2))]
        self.outputs = [Sym("y", (None, 1))]
        self.output_names = ["y"]
        self.loss = "mse"
        self.stop_training = False


class ConstExe:
    model = None

    def __init__(self):
        self.model = Model()

    def train_step(self, xs, ys, sws):
        return {"loss": 0.25, "mae": 0.0005}

    def test_step(self, xs, ys, sws):
        return {"mae": 0.5, "loss": 0.75}

    def predict_step(self, xs):
        return [np.zeros((len(xs[0]), 1), np.float32)]

    fit = training.fit
    evaluate = training.evaluate
    predict = training.predict


X, Y = np.zeros((100, 2)), np.zeros(100)
STEP = r"\d+(s|ms|us)/step"


def test_fit_verbose1_output(capsys):
    ConstExe().fit(X, Y, epochs=2, validation_data=(X, Y), verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    pat = (rf"^4/4 {BAR} \d+s {STEP} - loss: 0\.2500 - mae: 5\.0000e-04 - "
           r"val_loss: 0\.7500 - val_mae: 0\.5000$")
    assert re.match(pat, lines[1]), lines[1]
    assert re.match(pat, lines[3]), lines[3]


def test_fit_verbose_auto_is_1(capsys):
    ConstExe().fit(X, Y, epochs=1)
    out = capsys.readouterr().out
    assert "Epoch" not in out                      # Keras 3: no header for one epoch
    assert re.match(rf"^4/4 {BAR} \d+s {STEP} - loss: 0\.2500 - mae: 5\.0000e-04\n$", out)


def test_fit_verbose2_output(capsys):
    ConstExe().fit(X, Y, epochs=2, batch_size=10, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and len(lines) == 4
    assert re.match(rf"^10/10 - \d+s - {STEP} - loss: 0\.2500 - mae: 5\.0000e-04$", lines[1])


def test_fit_verbose0_silent(capsys):
    ConstExe().fit(X, Y, epochs=2, validation_split=0.5, verbose=0)
    assert capsys.readouterr().out == ""


def test_generator_learns_target_after_first_epoch(capsys):
    def gen():
        for _ in range(3):
            yield X[:10], Y[:10]

    ConstExe().fit(gen(), epochs=1, verbose=1)
    out = capsys.readouterr().out
    assert re.match(rf"^3/3 {BAR} ", out), out


def test_evaluate_and_predict_output(capsys):
    exe = ConstExe()
    exe.evaluate(X, Y, verbose=1)
    out = capsys.readouterr().out
    assert re.match(rf"^4/4 {BAR} \d+s {STEP} - loss: 0\.7500 - mae: 0\.5000\n$", out), out
    exe.predict(X, verbose=1)
    out = capsys.readouterr().out
    assert re.match(rf"^4/4 {BAR} \d+s {STEP}\n$", out), out
    exe.predict(X, verbose=0)
    exe.evaluate(X, Y, verbose=0)
    assert capsys.readouterr().out == ""
