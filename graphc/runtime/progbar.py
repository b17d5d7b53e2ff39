"""Keras-3-style progress bar: ``32/32 ━━━━━━━━━━━━━━━━━━━━ 0s 3ms/step - loss: 0.3127``.

Used by ``ProgbarLogger`` for ``fit``/``evaluate``/``predict`` and public as ``Progbar``.
On a terminal (or in a notebook) the bar is redrawn in place with ``\\r`` at most
``1 / interval`` times a second; elsewhere (pipes, log files, captured output) only the final
line is printed, so logs stay one clean line per epoch with no control characters.
"""
from __future__ import annotations

import math
import os
import re
import sys
import time

import numpy as np

# Indirection so tests can drive the clock (throttling, step-time display) deterministically.
_clock = time.monotonic

_BAR_CHAR = "━"


def _stdout():
    # Looked up at each write, not bound at import: pytest's capsys and
    # contextlib.redirect_stdout swap sys.stdout after this module is imported.
    return sys.stdout


def _is_dynamic(stream) -> bool:
    """Whether in-place redraws with ``\\r`` will render (a TTY, Jupyter, PyCharm)."""
    isatty = getattr(stream, "isatty", None)
    try:
        if isatty is not None and isatty():
            return True
    except ValueError:          # closed stream
        return False
    return "ipykernel" in sys.modules or "PYCHARM_HOSTED" in os.environ


def _can_encode(stream, text: str) -> bool:
    enc = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(enc)
        return True
    except (UnicodeEncodeError, LookupError):
        return False


def format_value(v) -> str:
    """A metric value as Keras prints it: 4 decimals, scientific when |v| <= 1e-3."""
    try:
        f = float(np.mean(v)) if not isinstance(v, (int, float)) else float(v)
    except (TypeError, ValueError):
        return f"{v}"
    # Keras' verbose=2 branch compares the signed value; we use |v| in both modes so a
    # negative loss prints as -0.1234, not -1.2340e-01.
    return f"{f:.4f}" if abs(f) > 1e-3 else f"{f:.4e}"


def format_time(time_per_unit: float, unit_name: str) -> str:
    """``" 3ms/step"``: whole seconds, milliseconds or microseconds (Keras' rule)."""
    if time_per_unit >= 1 or time_per_unit == 0:
        return f" {time_per_unit:.0f}s/{unit_name}"
    if time_per_unit >= 1e-3:
        return f" {time_per_unit * 1e3:.0f}ms/{unit_name}"
    return f" {time_per_unit * 1e6:.0f}us/{unit_name}"


def format_eta(eta: float) -> str:
    if eta > 3600:
        return "%d:%02d:%02d" % (eta // 3600, (eta % 3600) // 60, eta % 60)
    if eta > 60:
        return "%d:%02d" % (eta // 60, eta % 60)
    return "%ds" % eta


class Progbar:
    """Displays a progress bar (``keras.utils.Progbar`` semantics).

    Args:
        target: total number of steps expected, None if unknown.
        width: bar width in characters.
        verbose: 0 silent, 1 bar, 2 one line when finalized.
        interval: minimum seconds between in-place redraws (verbose=1 on a terminal).
        stateful_metrics: names displayed as given; all others are averaged over steps
            by the bar (Keras' default for user code calling ``update``/``add``).
        stateless_metrics: the opposite list (give at most one of the two); pass
            ``()`` to display every value as given, as ``ProgbarLogger`` does.
        unit_name: ``"step"`` or ``"sample"``.
        dynamic: force (True) or forbid (False) in-place redraws; default: detect.
        stream: where to write; default: the current ``sys.stdout``.
    """

    def __init__(self, target, width=20, verbose=1, interval=0.1, stateful_metrics=None,
                 stateless_metrics=None, unit_name="step", dynamic=None, stream=None):
        if stateful_metrics is not None and stateless_metrics is not None:
            raise ValueError("Progbar: give at most one of `stateful_metrics` and "
                             "`stateless_metrics`")
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        if stateless_metrics is not None:
            self.stateful_metrics = None
            self.stateless_metrics = set(stateless_metrics)
        else:
            self.stateful_metrics = set(stateful_metrics or ())
            self.stateless_metrics = None
        self._stream = stream
        out = self._out()
        self._dynamic = _is_dynamic(out) if dynamic is None else bool(dynamic)
        self._bar_char = _BAR_CHAR if _can_encode(out, _BAR_CHAR) else "="
        self._seen_so_far = 0
        self._values: dict[str, list] = {}
        self._values_order: list[str] = []
        self._start = _clock()
        self._last_update = -math.inf
        self._time_after_first_step = None
        self._prev_width = 0

    def _out(self):
        return self._stream if self._stream is not None else _stdout()

    def _write(self, text: str):
        out = self._out()
        try:
            out.write(text)
        except UnicodeEncodeError:
            out.write(text.encode("ascii", "replace").decode("ascii"))
        flush = getattr(out, "flush", None)
        if flush is not None:
            flush()

    def _is_stateless(self, k) -> bool:
        if self.stateful_metrics is not None:
            return k not in self.stateful_metrics
        return k in self.stateless_metrics

    def update(self, current, values=None, finalize=None):
        """Advance to step ``current`` with ``values`` = [(name, value), ...]."""
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        for k, v in values or ():
            if k not in self._values_order:
                self._values_order.append(k)
            if self._is_stateless(k) and not finalize:
                base = max(current - self._seen_so_far, 1)
                acc = self._values.get(k)
                if acc is None:
                    self._values[k] = [v * base, base]
                else:
                    acc[0] += v * base
                    acc[1] += base
            else:
                # Stateful values, and every value at finalize (callers then pass epoch
                # results, which are already means), are shown as given.
                self._values[k] = [v, 1]
        self._seen_so_far = current

        now = _clock()
        time_per_unit = self._estimate_step_duration(current, now)
        if self.verbose == 1:
            if not finalize and (not self._dynamic or now - self._last_update < self.interval):
                return
            self._last_update = now
            self._write(self._line_v1(current, now, time_per_unit, finalize))
        elif self.verbose == 2 and finalize:
            self._last_update = now
            self._write(self._line_v2(current, now, time_per_unit))

    def add(self, n, values=None):
        self.update(self._seen_so_far + n, values)

    def _metrics_text(self) -> str:
        parts = []
        for k in self._values_order:
            total, count = self._values[k]
            if isinstance(total, str):
                parts.append(f" - {k}: {total}")
            else:
                parts.append(f" - {k}: {format_value(total / max(1, count))}")
        return "".join(parts)

    def _line_v1(self, current, now, time_per_unit, finalize) -> str:
        color = self._dynamic
        bold = (lambda s: f"\x1b[1m{s}\x1b[0m") if color else (lambda s: s)
        if self.target is not None and self.target > 0:
            digits = int(math.log10(self.target)) + 1
            count = f"%{digits}d/%d" % (current, self.target)
            done = min(int(self.width * current / self.target), self.width)
            if color:
                green = f"\x1b[32m{self._bar_char * done}\x1b[0m" if done else ""
                grey = f"\x1b[37m{self._bar_char * (self.width - done)}\x1b[0m"
                bar = bold(count) + " " + green + grey
            else:
                bar = count + " " + self._bar_char * done + " " * (self.width - done)
            if not finalize:
                info = " " + bold(format_eta(time_per_unit * (self.target - current)))
            else:
                info = " " + bold(f"{now - self._start:.0f}s")
        else:
            bar = "%7d/Unknown" % current
            info = " " + bold(f"{now - self._start:.0f}s")
        info += format_time(time_per_unit, self.unit_name) + self._metrics_text()
        line = bar + info
        if not self._dynamic:
            return line + "\n"
        # Pad with spaces so a shorter line fully overwrites the previous one.
        visible = len(_strip_ansi(line))
        pad = " " * max(self._prev_width - visible, 0)
        self._prev_width = visible
        return "\r" + line + pad + ("\n" if finalize else "")

    def _line_v2(self, current, now, time_per_unit) -> str:
        if self.target is not None and self.target > 0:
            digits = int(math.log10(self.target)) + 1
            count = f"%{digits}d/%d" % (current, self.target)
        else:
            count = f"{current}"
        return (f"{count} - {now - self._start:.0f}s -"
                f"{format_time(time_per_unit, self.unit_name)}{self._metrics_text()}\n")

    def _estimate_step_duration(self, current, now) -> float:
        # The first step usually includes compilation: once a second step is done,
        # time steps from the end of the first.
        if not current:
            return 0.0
        if self._time_after_first_step is not None and current > 1:
            per = (now - self._time_after_first_step) / (current - 1)
        else:
            per = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return per


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _strip_ansi(s: str) -> str:
    return _ANSI.sub("", s)
