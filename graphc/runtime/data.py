"""Turning what users pass to ``fit``/``evaluate``/``predict`` into batches.

Accepted, as Keras accepts them: numpy arrays (and anything ``np.asarray`` takes: Python
lists of numbers, pandas frames), lists/tuples of arrays for several inputs/outputs, dicts
keyed by input/output name; Python generators and other iterables; and ``Sequence``-style
objects (``__len__`` + ``__getitem__``, like ``ImageDataGenerator.flow_from_directory``)
yielding ``x``, ``(x, y)`` or ``(x, y, sample_weight)``.

Every batch leaves as ``Batch(xs, ys, sws, size)``: one array per model input, one per
output (empty for predict), one sample-weight array or None per output. Arrays are
C-contiguous; float data takes the model's float dtype (float64 → float32), integer labels
stay integer. All checks that can be done once (shapes, sample counts, names) are done once
per array source, so the per-step cost is one gather (shuffled) or one view (unshuffled).

Epochs over a source (``EpochIterator``): without ``steps`` each epoch is one full pass.
With ``steps`` (``steps_per_epoch``) training keeps one stream across epochs: a re-iterable
source (arrays, Sequence, re-iterable iterables) starts a fresh, reshuffled pass when a pass
ends — as Keras 2's ``fit_generator`` did for a Sequence, so ``steps_per_epoch`` larger than
``len(sequence)`` works — while a one-shot generator that runs out ends training with a
warning (Keras 3). Validation/evaluation restart from the beginning each time for
re-iterable sources, so every epoch's ``val_*`` numbers are measured on the same batches.
"""
from __future__ import annotations

import math
import warnings
from typing import Iterator, NamedTuple

import numpy as np

from graphc.errors import DataError, ShapeError
from graphc.frontend.seeding import global_rng


class Batch(NamedTuple):
    xs: list
    ys: list
    sws: list
    size: int


# ---------------------------------------------------------------------------------------
# What the model expects

def _np_dtype(dt):
    if dt is None:
        return None
    np_attr = getattr(dt, "np", None)        # graphc.ir.dtypes.DType
    try:
        return np.dtype(np_attr if isinstance(np_attr, np.dtype) else dt)
    except TypeError:
        return None


def _shape_of(t):
    shape = getattr(t, "shape", None)
    if shape is None:
        return None
    try:
        return tuple(None if d is None else int(d) for d in shape)
    except TypeError:
        return None


class ModelSpec:
    """Names, shapes (batch axis None) and dtypes of a model's inputs and outputs, read
    once per call from the model (missing pieces are None and their checks skipped)."""

    def __init__(self, input_names, input_shapes, input_dtypes, output_names, output_dtypes,
                 model=None, output_shapes=None):
        self.input_names = input_names
        self.input_shapes = input_shapes
        self.input_dtypes = input_dtypes
        self.output_names = output_names
        self.output_dtypes = output_dtypes
        self.output_shapes = output_shapes
        self.model = model

    def refresh(self) -> bool:
        """Re-read the model (a deferred Sequential gets its inputs when the first
        arrays are checked); True if its inputs are now known."""
        fresh = ModelSpec.from_model(self.model)
        self.__dict__.update(fresh.__dict__)
        return self.input_names is not None

    @classmethod
    def from_model(cls, model) -> "ModelSpec":
        inputs = getattr(model, "inputs", None)
        if inputs:
            in_names = list(getattr(model, "input_names", None) or
                            [getattr(t, "name", f"input_{i}") for i, t in enumerate(inputs)])
            in_shapes = [_shape_of(t) for t in inputs]
            in_dtypes = [_np_dtype(getattr(t, "dtype", None)) for t in inputs]
        else:
            in_names = in_shapes = in_dtypes = None
        outputs = getattr(model, "outputs", None)
        out_names = getattr(model, "output_names", None)
        if out_names:
            out_names = list(out_names)
        elif outputs:
            out_names = [getattr(t, "name", f"output_{i}") for i, t in enumerate(outputs)]
        else:
            out_names = None
        matched = bool(outputs and out_names and len(outputs) == len(out_names))
        out_dtypes = ([_np_dtype(getattr(t, "dtype", None)) for t in outputs] if matched
                      else [None] * len(out_names or ()))
        out_shapes = ([_shape_of(t) for t in outputs] if matched
                      else [None] * len(out_names or ()))
        return cls(in_names, in_shapes, in_dtypes, out_names, out_dtypes, model, out_shapes)

    @property
    def n_inputs(self):
        return None if self.input_names is None else len(self.input_names)

    @property
    def n_outputs(self):
        return None if self.output_names is None else len(self.output_names)


def _names(names) -> str:
    return ", ".join(repr(n) for n in names)


# ---------------------------------------------------------------------------------------
# Structure: a user value → one array per input / output

def _is_leaf(v) -> bool:
    """An array-like value (as opposed to a list of per-input arrays or a data source)."""
    return (isinstance(v, (np.ndarray, np.generic, int, float, bool, complex, range))
            or hasattr(v, "__array__") or hasattr(v, "to_numpy"))


def _is_source(v) -> bool:
    """A generator / iterable / Sequence producing batches (not an array or a structure)."""
    if v is None or _is_leaf(v) or isinstance(v, (list, tuple, dict, str, bytes)):
        return False
    return (hasattr(v, "__getitem__") and (hasattr(v, "__len__") or hasattr(v, "num_batches"))
            or hasattr(v, "__iter__") or hasattr(v, "__next__"))


def _flatten(value, names, what: str, role: str, ranks=None) -> list:
    """``value`` as one entry per name (list/tuple by position, dict by name, or a lone
    array for a single input/output). ``role`` is 'input' or 'output' (for messages)."""
    n = None if names is None else len(names)
    if isinstance(value, dict):
        if names is None:
            raise DataError(f"{what} is a dict but the model's {role} names are not known; "
                            f"pass a list of arrays instead")
        unknown = [k for k in value if k not in names]
        if unknown:
            raise DataError(f"{what} has unknown key(s) {_names(unknown)}; the model's "
                            f"{role}s are named {_names(names)}")
        missing = [k for k in names if k not in value]
        if missing:
            raise DataError(f"{what} is missing {role}(s) {_names(missing)}; the model's "
                            f"{role}s are named {_names(names)}")
        return [value[k] for k in names]
    if isinstance(value, (list, tuple)):
        if len(value) and all(_is_leaf(v) and np.ndim(v) > 0 for v in value):
            if n is None or (n > 1 and len(value) == n):
                return list(value)
            if n == 1:
                if len(value) == 1:
                    return [value[0]]
                # Arrays as big as a whole input are several inputs given to a one-input
                # model; smaller ones are rows (a list comprehension), stacked below.
                rank = ranks[0] if ranks else None
                if rank is not None and all(np.ndim(v) == rank for v in value):
                    raise DataError(
                        f"the model has 1 {role} ({_names(names)}) but {what} is a list of "
                        f"{len(value)} arrays")
                return [value]
            raise DataError(f"the model has {n} {role}s ({_names(names)}) but {what} is a "
                            f"list of {len(value)} arrays")
        if n is not None and n > 1:
            if len(value) == n:
                return list(value)
            raise DataError(f"the model has {n} {role}s ({_names(names)}) but {what} is a "
                            f"list of {len(value)} values")
        return [value]                        # nested Python lists of numbers: one array
    if n is not None and n > 1:
        raise DataError(f"the model has {n} {role}s ({_names(names)}) but {what} is a single "
                        f"array; pass a list of {n} arrays or a dict keyed by {role} name")
    return [value]


def _to_array(v, what: str, target=None, is_label=False) -> np.ndarray:
    """One user value → a C-contiguous array of the dtype the executable takes.

    ``target``: the dtype the model declares for this input/output, if known. Integer
    labels stay integer even for a float output (sparse losses index with them)."""
    try:
        arr = np.asarray(v.to_numpy() if hasattr(v, "to_numpy") else v)
    except (ValueError, TypeError) as e:
        raise DataError(f"{what} could not be converted to an array: {e}") from None
    if arr.dtype == object or arr.dtype.kind in "USV":
        try:
            arr = arr.astype(np.float32)
        except (ValueError, TypeError):
            raise DataError(f"{what} holds non-numeric values (dtype {arr.dtype}); "
                            f"expected numbers") from None
    if arr.ndim == 0:
        raise DataError(f"{what} is a scalar; expected an array with a sample axis")
    kind = arr.dtype.kind
    if target is not None:
        if arr.dtype != target and not (is_label and kind in "iu" and target.kind == "f"):
            arr = arr.astype(target)
    elif (kind == "f" and arr.dtype != np.float32) or kind == "b":
        # No declared dtype: graphc models compute in float32.
        arr = arr.astype(np.float32)
    return np.ascontiguousarray(arr)


def _input_target_dtype(spec: ModelSpec, i):
    if spec.input_dtypes is None:
        return None
    return spec.input_dtypes[i]


def _label_target_dtype(spec: ModelSpec, i):
    # Float labels follow the output's float dtype; integer labels are kept (see _to_array).
    if spec.output_dtypes and i < len(spec.output_dtypes):
        dt = spec.output_dtypes[i]
        if dt is not None and dt.kind == "f":
            return dt
    return None


def standardize_x(x, spec: ModelSpec, what="x") -> list:
    names = spec.input_names
    ranks = [len(s) if s is not None else None for s in spec.input_shapes] \
        if spec.input_shapes else None
    vals = _flatten(x, names, what, "input", ranks)
    out = []
    for i, v in enumerate(vals):
        label = what if len(vals) == 1 else f"{what} for input {names[i]!r}" if names \
            else f"{what}[{i}]"
        arr = _to_array(v, label, _input_target_dtype(spec, i))
        shape = spec.input_shapes[i] if spec.input_shapes else None
        # A 1-D array for an input of shape (None, 1): Keras 2 took it as a column.
        if shape is not None and arr.ndim == 1 and len(shape) == 2 and shape[1] == 1:
            arr = arr.reshape(-1, 1)
        out.append(arr)
    return out


def standardize_y(y, spec: ModelSpec, what="y") -> list:
    names = spec.output_names
    vals = _flatten(y, names, what, "output")
    out = []
    for i, v in enumerate(vals):
        label = what if len(vals) == 1 else f"{what} for output {names[i]!r}" if names \
            else f"{what}[{i}]"
        arr = _to_array(v, label, _label_target_dtype(spec, i), is_label=True)
        shape = spec.output_shapes[i] if spec.output_shapes and i < len(spec.output_shapes) \
            else None
        # Labels (n,) for an output (None, 1) (binary labels, regression targets): Keras'
        # losses expand them to the prediction's rank; doing it here, once, spares every
        # loss in the compiled graph from handling two label shapes.
        if shape is not None and shape[-1:] == (1,) and arr.ndim == len(shape) - 1:
            arr = arr.reshape(arr.shape + (1,))
        out.append(arr)
    return out


def standardize_sample_weight(sw, spec: ModelSpec, n_outputs: int, what="sample_weight"):
    """One float32 weight array (or None) per output. A single array applies to every
    output's loss, as in Keras."""
    if sw is None or n_outputs == 0:
        return [None] * n_outputs
    names = spec.output_names
    if isinstance(sw, dict):
        unknown = [k for k in sw if names is None or k not in names]
        if unknown:
            raise DataError(f"{what} has unknown key(s) {_names(unknown)}; the model's "
                            f"outputs are named {_names(names or [])}")
        vals = [sw.get(k) for k in names]
    elif (isinstance(sw, (list, tuple)) and n_outputs > 1 and len(sw) == n_outputs
          and all(v is None or (_is_leaf(v) and np.ndim(v) > 0) for v in sw)):
        vals = list(sw)
    else:
        arr = _to_array(sw, what, np.dtype(np.float32))
        return [arr] * n_outputs
    return [None if v is None else
            _to_array(v, f"{what} for output {names[i]!r}" if names else f"{what}[{i}]",
                      np.dtype(np.float32))
            for i, v in enumerate(vals)]


def check_inputs(spec: ModelSpec, xs: list, what="x"):
    """Shape check of the input arrays against the model's inputs (batch axis free).
    Uses the model's own ``_check_input_arrays`` when it has one."""
    checker = getattr(spec.model, "_check_input_arrays", None)
    if checker is not None:
        checker(xs)
        return
    if not spec.input_shapes:
        return
    for i, (arr, shape) in enumerate(zip(xs, spec.input_shapes)):
        if shape is None:
            continue
        ok = arr.ndim == len(shape) and all(
            d is None or d == a for d, a in zip(shape[1:], arr.shape[1:]))
        if not ok:
            exp = "(" + ", ".join("None" if d is None else str(d) for d in shape) + \
                  ("," if len(shape) == 1 else "") + ")"
            raise ShapeError(
                f"input {spec.input_names[i]!r} expects arrays of shape {exp} (None: any "
                f"number of samples) but {what} has shape {tuple(arr.shape)}")


def check_and_refresh(spec: ModelSpec, xs: list, what="x") -> list:
    """``check_inputs``, then, if the model only learnt its inputs from that check (a
    deferred Sequential builds on its first data), re-read the spec and redo the input
    conversion with the now-known dtypes and shapes."""
    check_inputs(spec, xs, what=what)
    if spec.input_names is None and spec.model is not None and spec.refresh():
        xs = standardize_x(xs[0] if len(xs) == 1 else xs, spec, what=what)
    return xs


def check_counts(xs, ys, sws, spec: ModelSpec, prefix="", where=""):
    """Every array must have the same number of samples; returns that number.
    ``prefix`` names the argument group (``"validation_data "``), ``where`` the batch."""
    entries = []
    names = spec.input_names
    for i, a in enumerate(xs):
        entries.append((f"{prefix}x" if len(xs) == 1 else
                        f"{prefix}x for input {names[i]!r}" if names else f"{prefix}x[{i}]", a))
    onames = spec.output_names
    for i, a in enumerate(ys):
        entries.append((f"{prefix}y" if len(ys) == 1 else
                        f"{prefix}y for output {onames[i]!r}" if onames else f"{prefix}y[{i}]",
                        a))
    seen = set()
    for i, a in enumerate(sws):
        if a is not None and id(a) not in seen:
            seen.add(id(a))
            shared = len(sws) == 1 or all(s is a for s in sws)
            entries.append((f"{prefix}sample_weight" if shared else
                            f"{prefix}sample_weight[{i}]", a))
    n0_name, n0 = entries[0][0], len(entries[0][1])
    for name, a in entries[1:]:
        if len(a) != n0:
            raise DataError(f"{n0_name} has {n0} samples but {name} has {len(a)}{where}")
    return n0


def class_weight_to_sample_weights(y: np.ndarray, class_weight: dict) -> np.ndarray:
    """Per-sample weights from integer labels, ``(n, 1)`` labels or one-hot rows; classes
    absent from ``class_weight`` weigh 1 (Keras). Per-timestep labels give per-timestep
    weights."""
    y = np.asarray(y)
    if y.ndim > 1:
        y = np.argmax(y, axis=-1) if y.shape[-1] != 1 else y.reshape(y.shape[:-1])
    labels = np.round(y).astype(np.int64)
    try:
        cw = {int(k): float(v) for k, v in class_weight.items()}
    except (TypeError, ValueError, AttributeError):
        raise DataError(f"class_weight must be a dict of class index → weight; got "
                        f"{class_weight!r}") from None
    if labels.size == 0:
        return np.ones(labels.shape, np.float32)
    # A lookup table instead of a Python loop over samples.
    lo = min(int(labels.min()), min(cw, default=0))
    hi = max(int(labels.max()), max(cw, default=0))
    table = np.ones(hi - lo + 1, np.float32)
    for k, v in cw.items():
        table[k - lo] = v
    return table[labels - lo]


def apply_class_weight(ys, sws, class_weight, spec: ModelSpec):
    if not class_weight:
        return sws
    if len(ys) != 1:
        raise DataError(f"class_weight is only supported for models with a single output; "
                        f"this model has {len(ys)} outputs ({_names(spec.output_names or [])})")
    cw = class_weight_to_sample_weights(ys[0], class_weight)
    # Keras 3 refuses sample_weight together with class_weight; tf.keras multiplied them,
    # which is what a user giving both means.
    return [cw if sws[0] is None else (sws[0] * cw.reshape((-1,) + (1,) * (sws[0].ndim - 1)))
            .astype(np.float32)]


def unpack_x_y_sample_weight(data):
    """``x`` / ``(x,)`` / ``(x, y)`` / ``(x, y, sample_weight)`` → a triple (Keras rule)."""
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return data, None, None
    if len(data) == 1:
        return data[0], None, None
    if len(data) == 2:
        return data[0], data[1], None
    if len(data) == 3:
        return data
    raise DataError(f"data should be x, (x,), (x, y) or (x, y, sample_weight); got a tuple "
                    f"of {len(data)} elements")


# ---------------------------------------------------------------------------------------
# Adapters: one full pass over a source at a time

class ArrayAdapter:
    """In-memory arrays: batches by index; shuffled per pass with the global RNG."""

    reiterable = True

    def __init__(self, xs, ys, sws, batch_size: int, shuffle=False):
        self.xs, self.ys, self.sws = xs, ys, sws
        self.num_samples = len(xs[0])
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.num_batches = math.ceil(self.num_samples / batch_size)

    def split(self, validation_split: float, validation_batch_size=None):
        """(train, validation) adapters: validation is the LAST fraction, before any
        shuffling (Keras)."""
        n = self.num_samples
        split_at = int(math.floor(n * (1.0 - validation_split)))
        if split_at == 0 or split_at == n:
            raise DataError(
                f"training data has {n} samples, which is not enough to split it into a "
                f"training and a validation set with validation_split={validation_split}; "
                "provide more data or a different validation_split")

        def part(sl):
            seen = {}
            sws = [None if s is None else seen.setdefault(id(s), s[sl]) for s in self.sws]
            return [a[sl] for a in self.xs], [a[sl] for a in self.ys], sws

        return (ArrayAdapter(*part(slice(0, split_at)), self.batch_size, self.shuffle),
                ArrayAdapter(*part(slice(split_at, None)),
                             _resolve_batch_size(validation_batch_size, 0, None)
                             if validation_batch_size is not None else self.batch_size,
                             False))

    def pass_plan(self) -> tuple:
        """One pass as ``(order, sizes)``: batch k holds rows ``order[s:s + sizes[k]]``,
        ``s = sum(sizes[:k])``; ``order`` is None for rows in storage order. Draws the
        pass's shuffle from the global RNG (so a pass planned here and a pass of
        ``iterate`` draw the same permutation)."""
        n, bs = self.num_samples, self.batch_size
        if not self.shuffle:
            return None, [min(bs, n - s) for s in range(0, n, bs)]
        rng = global_rng()
        if self.shuffle == "batch":
            # Keras' shuffle='batch': batch order shuffled, then samples within each batch
            # (for data that is only efficiently readable in chunks, e.g. HDF5).
            order = rng.permutation(self.num_batches)
            chunks = [rng.permutation(np.arange(b * bs, min((b + 1) * bs, n))) for b in order]
            return np.concatenate(chunks), [len(c) for c in chunks]
        return rng.permutation(n), [min(bs, n - s) for s in range(0, n, bs)]

    def batch(self, order, start: int, size: int) -> Batch:
        """Rows ``order[start:start + size]`` (``order`` None: ``start:start + size``);
        unshuffled batches are views."""
        idx = slice(start, start + size) if order is None else order[start:start + size]
        return Batch([a[idx] for a in self.xs], [a[idx] for a in self.ys],
                     [None if w is None else w[idx] for w in self.sws], size)

    def iterate(self) -> Iterator[Batch]:
        order, sizes = self.pass_plan()
        start = 0
        for size in sizes:
            yield self.batch(order, start, size)
            start += size


class _BatchStandardizer:
    """Standardizes batches coming from a generator/Sequence; the first batch is checked
    against the model's inputs, later ones only for consistent sample counts."""

    def __init__(self, spec: ModelSpec, mode: str, class_weight, source_name: str):
        self.spec = spec
        self.mode = mode
        self.class_weight = class_weight
        self.source_name = source_name
        self.checked = False

    def __call__(self, item, index) -> Batch:
        x, y, sw = unpack_x_y_sample_weight(item)
        where = f" in batch {index} of {self.source_name}"
        if x is None:
            raise DataError(f"batch {index} of {self.source_name} has no inputs (x is None)")
        xs = standardize_x(x, self.spec, what=f"x{where}")
        if not self.checked:
            xs = check_and_refresh(self.spec, xs, what=f"x{where}")
            self.checked = True
        if self.mode == "predict":
            ys, sws = [], []
        elif y is None:
            if _needs_y(self.spec):
                raise DataError(f"{self.source_name} yielded only x{where}; training and "
                                f"evaluation need (x, y) or (x, y, sample_weight) batches")
            ys, sws = [], []
        else:
            ys = standardize_y(y, self.spec, what=f"y{where}")
            sws = standardize_sample_weight(sw, self.spec, len(ys),
                                            what=f"sample_weight{where}")
            if self.class_weight and self.mode == "fit":
                sws = apply_class_weight(ys, sws, self.class_weight, self.spec)
        n = check_counts(xs, ys, sws, self.spec, where=where)
        return Batch(xs, ys, sws, n)


class SequenceAdapter:
    """``__len__`` + ``__getitem__`` sources (Keras ``Sequence``/``PyDataset``,
    ``flow_from_directory``): batch order shuffled per pass, ``on_epoch_end()`` called
    after each full pass."""

    reiterable = True

    def __init__(self, seq, standardize: _BatchStandardizer, shuffle=False):
        self.seq = seq
        self.standardize = standardize
        self.shuffle = bool(shuffle)
        self.num_samples = None

    @property
    def num_batches(self):
        n = getattr(self.seq, "num_batches", None) if not hasattr(self.seq, "__len__") \
            else len(self.seq)
        return n

    def iterate(self) -> Iterator[Batch]:
        n = self.num_batches
        if n is None:                      # PyDataset with unknown length: until IndexError
            i = 0
            while True:
                try:
                    item = self.seq[i]
                except IndexError:
                    break
                yield self.standardize(item, i)
                i += 1
        else:
            order = global_rng().permutation(n) if self.shuffle else range(n)
            for i in order:
                yield self.standardize(self.seq[int(i)], int(i))
        end = getattr(self.seq, "on_epoch_end", None)
        if callable(end):
            end()


class IterableAdapter:
    """Generators and iterables. A generator is one stream (``iter(g) is g``); other
    iterables (a list of batches, a DataLoader) are iterated afresh each pass."""

    def __init__(self, source, standardize: _BatchStandardizer):
        self.source = source
        self.standardize = standardize
        self.num_samples = None
        self._first = None
        try:
            self.reiterable = iter(source) is not source
        except TypeError:
            self.reiterable = False     # an iterator without __iter__: just __next__
        self.num_batches = len(source) if self.reiterable and hasattr(source, "__len__") \
            else None

    def iterate(self) -> Iterator[Batch]:
        it = iter(self.source) if hasattr(self.source, "__iter__") else _next_only(self.source)
        for i, item in enumerate(it):
            yield self.standardize(item, i)


def _next_only(obj):
    while True:
        try:
            yield next(obj)
        except StopIteration:
            return


def _needs_y(spec: ModelSpec) -> bool:
    # Models compiled without a loss (add_loss only, e.g. a VAE) train on x alone.
    model = spec.model
    return getattr(model, "loss", "unknown") is not None


def _resolve_batch_size(batch_size, n, steps):
    if batch_size is None:
        # Keras: with steps and no batch size, split the data evenly over the steps.
        return int(math.ceil(n / steps)) if steps else 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer; got {batch_size!r}")
    return int(batch_size)


def make_adapter(x, y=None, sample_weight=None, *, spec: ModelSpec, mode="fit",
                 batch_size=None, steps=None, shuffle=False, class_weight=None, prefix=""):
    """An adapter over the user's data. ``mode``: 'fit', 'evaluate' or 'predict';
    ``prefix`` names the argument in messages (``"validation_data "``)."""
    if _is_source(x):
        kind = "a Sequence" if hasattr(x, "__getitem__") else "a generator/iterable"
        tname = type(x).__name__
        if y is not None:
            raise DataError(f"{prefix}y must not be given when {prefix}x is {kind} ({tname}): "
                            f"it yields (x, y) batches itself")
        if sample_weight is not None:
            raise DataError(f"{prefix}sample_weight must not be given when {prefix}x is {kind} "
                            f"({tname}): yield (x, y, sample_weight) batches instead")
        if batch_size is not None:
            warnings.warn(f"batch_size={batch_size} is ignored: {prefix}x is {kind} ({tname}) "
                          "whose batches are already formed", stacklevel=3)
        std = _BatchStandardizer(spec, mode, class_weight, f"{prefix}{tname}".strip())
        if hasattr(x, "__getitem__") and (hasattr(x, "__len__") or hasattr(x, "num_batches")):
            return SequenceAdapter(x, std, shuffle=shuffle if mode == "fit" else False)
        return IterableAdapter(x, std)

    if x is None:
        raise DataError(f"no input data: {prefix}x is None")
    xs = standardize_x(x, spec, what=f"{prefix}x")
    xs = check_and_refresh(spec, xs, what=f"{prefix}x")
    if mode == "predict":
        ys, sws = [], []
    elif y is None:
        if _needs_y(spec):
            raise DataError(f"{'training' if mode == 'fit' else 'evaluation'} needs target "
                            f"data but {prefix}y is None (pass y, or a generator yielding "
                            f"(x, y) batches)")
        ys, sws = [], []
    else:
        ys = standardize_y(y, spec, what=f"{prefix}y")
        sws = standardize_sample_weight(sample_weight, spec, len(ys),
                                        what=f"{prefix}sample_weight")
    n = check_counts(xs, ys, sws, spec, prefix=prefix)
    if n == 0:
        raise DataError(f"{prefix}x is empty (0 samples): nothing to "
                        f"{ {'fit': 'train', 'evaluate': 'evaluate', 'predict': 'predict'}[mode] }"
                        " on")
    if class_weight and mode == "fit":
        if not ys:
            raise DataError("class_weight needs target data y")
        sws = apply_class_weight(ys, sws, class_weight, spec)
    if shuffle not in (True, False, "batch"):
        raise DataError(f"shuffle must be True, False or 'batch'; got {shuffle!r}")
    return ArrayAdapter(xs, ys, sws, _resolve_batch_size(batch_size, n, steps),
                        shuffle=shuffle if mode == "fit" else False)


def is_array_data(x) -> bool:
    return not _is_source(x)


# ---------------------------------------------------------------------------------------
# Epochs

class EpochIterator:
    """Epochs of batches over an adapter (see the module docstring for ``steps``).

    ``cycle``: training semantics (one stream across epochs, new passes as needed);
    otherwise each ``epoch()`` of a re-iterable source restarts from its beginning and runs
    at most one pass."""

    def __init__(self, adapter, steps=None, cycle=False, what="x"):
        if steps is not None and (isinstance(steps, bool) or
                                  not isinstance(steps, (int, np.integer)) or steps < 1):
            raise DataError(f"steps must be a positive integer or None; got {steps!r}")
        self.adapter = adapter
        self.steps_arg = None if steps is None else int(steps)
        self.cycle = cycle
        self.what = what
        self._it = None
        self._pending: list[Batch] = []
        self._pass_batches = 0          # batches drawn from the current pass
        self.exhausted = False          # a one-shot source has run out
        self._warned = False

    @property
    def steps(self):
        """Steps per epoch if known (for progress bars and callbacks' params)."""
        if self.steps_arg is not None:
            n = self.adapter.num_batches
            if not self.cycle and self.adapter.reiterable and n is not None:
                return min(self.steps_arg, n)
            return self.steps_arg
        return self.adapter.num_batches

    @property
    def num_samples(self):
        return self.adapter.num_samples

    def _new_pass(self):
        self._it = iter(self.adapter.iterate())
        self._pass_batches = 0

    def _pull(self):
        """The next batch of the current stream, or None when it ends."""
        if self._pending:
            return self._pending.pop()
        if self._it is None:
            self._new_pass()
        b = next(self._it, None)
        if b is not None:
            self._pass_batches += 1
        return b

    def _ran_out(self):
        self.exhausted = True
        if not self._warned:
            self._warned = True
            if self.steps_arg is None:
                hint = ("a one-shot generator is used up by one epoch: make it loop forever "
                        "(`while True: ... yield x, y`) and pass steps_per_epoch (or "
                        "validation_steps / steps)")
            else:
                hint = ("make sure it can produce at least `steps_per_epoch * epochs` "
                        "batches (a generator should loop forever: `while True: ... "
                        "yield x, y`)")
            warnings.warn(f"Your input ({self.what}) ran out of data; interrupting: {hint}.",
                          stacklevel=4)

    def has_more(self) -> bool:
        """Whether another epoch would get at least one batch (peeks a one-shot source)."""
        if self.adapter.reiterable:
            return True
        if self.exhausted:
            self._ran_out()
            return False
        b = self._pull()
        if b is None:
            self._ran_out()
            return False
        self._pending.append(b)
        return True

    def ensure_not_empty(self):
        """Raise DataError if the source yields no batch at all (before any callback)."""
        if self.adapter.num_samples is not None:
            return                      # arrays: emptiness was checked when adapting
        b = self._pull() if not self._pending else None
        if b is None and not self._pending:
            raise DataError(f"{self.what} produced no data: an empty generator or Sequence")
        if b is not None:
            self._pending.append(b)

    def epoch(self) -> Iterator[tuple[int, Batch]]:
        if self.steps_arg is None:
            if self.adapter.reiterable or self._it is None:
                if not self._pending:
                    self._new_pass()
            step = 0
            while True:
                b = self._pull()
                if b is None:
                    break
                yield step, b
                step += 1
            self._it = None if self.adapter.reiterable else self._it
            if not self.adapter.reiterable:
                self.exhausted = True
            return
        if not self.cycle and self.adapter.reiterable and not self._pending:
            self._new_pass()
        for step in range(self.steps_arg):
            b = self._pull()
            if b is None:
                if self.adapter.reiterable:
                    if not self.cycle:
                        break           # evaluation: at most one pass
                    if self._pass_batches == 0:
                        self._ran_out()
                        return
                    self._new_pass()
                    b = self._pull()
                if b is None:
                    self._ran_out()
                    return
            yield step, b
        if not self.cycle and self.adapter.reiterable:
            self._it = None
