"""``Executable``: a model compiled for one target. It owns nothing but compiled steps:
parameters and optimizer state stay in the model's ``Variable`` buffers, read by each step
and updated in place, so ``model.get_weights()`` is always current.

Steps are compiled lazily per (kind, input shapes and dtypes, trainable set) and cached, so
the last partial batch of an epoch compiles once and is reused every epoch.
"""
from __future__ import annotations

import contextlib
import gc

import numpy as np

from graphc.errors import DataError
from graphc.frontend import variables
from graphc.ir.dtypes import DType, TensorType
from graphc.passes import train_step as ts
from graphc.runtime import training
from graphc.runtime.backends import get_backend


_NP_DTYPE: dict = {}


def _as_model_dtype(a, declared) -> np.ndarray:
    """``a`` as an array of an input's declared dtype (float32 when none is declared)."""
    dt = _NP_DTYPE.get(declared)
    if dt is None:          # DType.of per call would cost more than the rest of the call
        dt = _NP_DTYPE[declared] = DType.of(declared or "float32").np
    a = np.asarray(a)
    return a if a.dtype == dt else a.astype(dt)


def _as_target(a) -> np.ndarray:
    """Float labels as f32, integer/bool labels as i32 (losses cast what they need)."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        return a if a.dtype == np.float32 else a.astype(np.float32)
    if a.dtype.kind in "iub":
        return a if a.dtype == np.int32 else a.astype(np.int32)
    raise DataError(f"targets of dtype {a.dtype} are not supported; use numbers")


@contextlib.contextmanager
def _gc_paused():
    """Building and compiling a step allocates many small, acyclic IR objects; Python's
    cyclic collector scanning them roughly doubled compile time for unrolled RNNs."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Executable:
    """The compiled form of a model for one target, with the Keras training API."""

    #: ``predict_step`` returns arrays of the caller's own, never a step's reused buffers
    predict_step_returns_copies = True

    def __init__(self, model, target: str | None = None):
        from graphc.config import default_target
        from graphc.frontend.seeding import next_seed
        self.model = model
        self.target = target or default_target()
        self.backend = get_backend(self.target)
        self.seed = np.array(next_seed() & 0x7FFFFFFF, dtype=np.int64)
        self._steps: dict = {}
        self._hot_predict = None    # batch-1 fast path (_make_hot_predict)

    # -- compiled steps -------------------------------------------------------------
    def _signature(self):
        # The Variables themselves: they compare and hash by identity, in C (cheaper per
        # call than a tuple of their ids built in Python).
        snap = getattr(self.model, "_training_weights", None)
        return tuple(snap() if snap is not None else self.model.trainable_weights)

    def _step(self, kind: str, xs, ys=()):
        key = (kind, tuple([(a.shape, a.dtype) for a in xs] + [(a.shape, a.dtype) for a in ys]),
               self._signature())
        hit = self._steps.get(key)
        if hit is not None:
            return hit
        check = getattr(self.model, "_check_input_arrays", None)
        if check is not None:
            check(list(xs))
        with _gc_paused():
            step, fn = self._build_step(kind, xs, ys)
        self._steps[key] = (step, fn)
        return step, fn

    def _build_step(self, kind, xs, ys):
        x_types = [TensorType.of(a) for a in xs]
        y_types = [TensorType.of(a) for a in ys]
        if kind == "predict":
            step = ts.build_predict_graph(self.model, x_types)
        elif kind == "test":
            step = ts.build_test_graph(self.model, x_types, y_types)
        else:
            step = ts.build_train_graph(self.model, x_types, y_types)
        if kind == "train" and getattr(self.backend, "supports_inplace_state", False):
            # New weights and optimizer slots are written straight into the Variables'
            # buffers; the write-back in train_step then copies nothing.
            fn = self.backend.compile(step.graph, inplace_state=True)
        else:
            fn = self.backend.compile(step.graph)
        return step, fn

    def _prepare_x(self, xs):
        specs = self.model.inputs
        if len(xs) != len(specs):
            raise DataError(f"model expects {len(specs)} input array(s) "
                            f"({', '.join(s.name for s in specs)}), got {len(xs)}")
        return [_as_model_dtype(a, getattr(s, "dtype", None)) for a, s in zip(xs, specs)]

    def _prepare_xy(self, xs, ys, sws):
        xs = self._prepare_x(xs)
        ys = [_as_target(y) for y in ys]
        n = xs[0].shape[0]
        sws = [np.ones(n, np.float32) if w is None else np.asarray(w, np.float32).reshape(n)
               for w in (sws or [None] * len(ys))]
        return xs, ys, sws

    def train_step(self, xs, ys, sws=None) -> dict[str, float]:
        xs, ys, sws = self._prepare_xy(xs, ys, sws)
        step, fn = self._step("train", xs, ys)
        resident = getattr(fn, "run_resident", None)
        if resident is not None:    # params and state stay on the device (cuda target)
            logs = resident(xs + ys + sws + [self.seed], step.params, step.state_vars)
            return {k: float(v) for k, v in zip(step.log_names, logs)}
        outs = fn(xs + ys + sws + [self.seed], [v.value for v in step.params])
        nlog = len(step.log_names)
        for var, new in zip(step.state_vars, outs[nlog:]):
            if new is not var.value:
                var.value[...] = new
        return {k: float(v) for k, v in zip(step.log_names, outs[:nlog])}

    # -- many steps per call ------------------------------------------------------------
    @property
    def native_epochs(self) -> bool:
        """Whether ``run_steps`` runs its steps in one native call (the cpu target);
        ``fit``/``evaluate`` then run a pass over in-memory arrays with no Python per
        step. Not when ``train_step``/``test_step`` is overridden on this instance:
        that code wants to see every batch."""
        return bool(getattr(self.backend, "supports_run_steps", False)) and \
            "train_step" not in vars(self) and "test_step" not in vars(self)

    def prepare_rows(self, xs, ys, sws):
        """Full in-memory arrays → the arrays ``run_steps`` gathers batches from (the
        per-batch conversions of ``train_step``/``test_step``, done once), or None when a
        sample-weight array does not have one weight per sample (the per-batch steps
        report that)."""
        n = len(xs[0])
        if any(w is not None and np.size(w) != n for w in (sws or ())):
            return None
        xs, ys, sws = self._prepare_xy(xs, ys, sws)
        return [np.ascontiguousarray(a) for a in xs + ys + sws], len(xs), len(ys)

    def run_steps(self, kind: str, rows, index, nsteps: int, batch_size: int) -> dict:
        """``nsteps`` train (``kind='train'``) or test steps in one native call: step s
        runs on rows ``index[s*batch_size:(s+1)*batch_size]`` of ``rows`` (from
        ``prepare_rows``). The same results and updates, in the same order, as
        ``train_step``/``test_step`` on each of those batches; returns {log name: one
        value per step}."""
        arrays, nx, ny = rows
        protos = [a[:batch_size] for a in arrays]
        step, fn = self._step(kind, protos[:nx], protos[nx:nx + ny])
        nlog = len(step.log_names)
        slot = {id(v): i for i, v in enumerate(step.params)}
        state = [(nlog + j, slot[id(v)]) for j, v in enumerate(step.state_vars)]
        cols, outs = fn.run_steps(arrays, [self.seed] if kind == "train" else [],
                                  [v.value for v in step.params], index, nsteps,
                                  nlog=nlog, state=state)
        for var, new in zip(step.state_vars, outs[nlog:]):
            if new is not var.value:
                var.value[...] = new
        return dict(zip(step.log_names, cols))

    def test_step(self, xs, ys, sws=None) -> dict[str, float]:
        xs, ys, sws = self._prepare_xy(xs, ys, sws)
        step, fn = self._step("test", xs, ys)
        resident = getattr(fn, "run_resident", None)
        outs = resident(xs + ys + sws, step.params) if resident is not None else \
            fn(xs + ys + sws, [v.value for v in step.params])
        return {k: float(v) for k, v in zip(step.log_names, outs)}

    def predict_step(self, xs) -> list[np.ndarray]:
        hot = self._hot_predict
        if hot is not None and len(xs) == 1:
            outs = hot(xs[0])
            if outs is not None:
                return outs
        xs = self._prepare_x(xs)
        step, fn = self._step("predict", xs)
        resident = getattr(fn, "run_resident", None)
        if resident is not None:
            outs = resident(xs, step.params)
        else:
            if len(xs) == 1:
                self._hot_predict = self._make_hot_predict(xs[0], step, fn)
            outs = fn(xs, [v.value for v in step.params])
        return [np.array(o) for o in outs]     # steps reuse their output arrays

    def _make_hot_predict(self, x, step, fn):
        """``hot(x) -> outputs | None``: batch-1 latency is mostly Python, so an array like
        ``x`` (same shape, already the model's dtype) goes straight to ``fn`` while the
        model's trainable set is the same and no device lease has begun since (a weight's
        newest value could then be off its host buffer). None means: take the full path
        (which makes a new one)."""
        signature, signature_of = self._signature(), self._signature
        leases = variables.lease_generation()
        model = self.model
        frozen = getattr(model, "_compiled_trainable_weights", None)
        if frozen is not None:
            # The trainable set fixed at compile() (``_training_weights``): only another
            # compile() changes it, and that assigns a new list.
            def valid():
                return variables._lease_generation == leases and \
                    model._compiled_trainable_weights is frozen
        else:
            def valid():
                return variables._lease_generation == leases and signature_of() == signature
        params = step.params
        bound = getattr(fn, "bound_caller", None)
        if bound is not None:
            run = bound([v.value for v in params], x.shape, x.dtype, valid)
            if run is not None:
                return run
        shape, dtype = x.shape, x.dtype

        def hot(x):
            if type(x) is np.ndarray and x.shape == shape and x.dtype == dtype and valid():
                return [np.array(o) for o in fn([x], [v.value for v in params])]
            return None
        return hot

    def predict_on_batch(self, x):
        """Outputs for this batch (one array, or a list for several outputs)."""
        hot = self._hot_predict
        if hot is not None:
            outs = hot(x)
            if outs is not None:
                return outs[0] if len(outs) == 1 else outs
        return training.predict_on_batch(self, x)

    def memory_report(self) -> list[dict]:
        """Per compiled step: its kind, input shapes and the backend's memory report (the
        cpu target: planned arena peak vs the unplanned sum of its temps, plus external
        bytes); a backend without one reports the unplanned sum of its temp buffers."""
        out = []
        for (kind, shapes, _), (step, fn) in self._steps.items():
            report = getattr(fn, "memory_report", None)
            if report is not None:
                rep = dict(report())
            else:
                temps = _temp_bytes(step.graph)
                rep = {"unplanned_bytes": temps, "peak_bytes": temps}
            out.append({"kind": kind, "shapes": [list(s) for s, _ in shapes], **rep})
        return out

    # -- Keras API --------------------------------------------------------------------
    # The loops of training.py, as methods (the functions themselves: no forwarding frame
    # on the per-call paths such as predict_on_batch).
    fit = training.fit
    evaluate = training.evaluate
    predict = training.predict
    train_on_batch = training.train_on_batch
    test_on_batch = training.test_on_batch

    def get_weights(self):
        return self.model.get_weights()

    def set_weights(self, weights):
        self.model.set_weights(weights)

    def __repr__(self):
        return f"<graphc.Executable target={self.target} steps={len(self._steps)}>"


def _temp_bytes(graph) -> int:
    """The unplanned sum for a step without a memory planner: every intermediate value of
    its graph (what the reference interpreter may hold)."""
    ext = set(graph.inputs) | set(graph.params)
    return sum(int(np.prod(v.shape)) * v.dtype.itemsize
               for n in graph.nodes for v in n.outputs if v not in ext)


def compile_model(model, target: str | None = None) -> Executable:
    """``graphc.compile(model, target=...)``: the model compiled for ``target``."""
    return Executable(model, target)
