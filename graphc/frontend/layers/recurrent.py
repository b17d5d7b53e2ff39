"""Recurrent layers in Keras 3 semantics and weight layouts: ``SimpleRNN``, ``LSTM``, ``GRU``
(both ``reset_after`` conventions), their cells, the ``RNN(cell)`` wrapper and
``Bidirectional``.

Time is a **static unroll** over ``graphc.ops``; no IR loop construct was needed. A
200-step LSTM (batch 32, 16 features, 64 units, ``benchmarks/bench_rnn_compile.py``) traces
to 16 nodes per step and a simplified train graph of ~48 nodes per step (9.7k nodes), built
and simplified in about a second on the 2-core dev machine. What keeps it small and linear:

* one ``h @ recurrent_kernel`` per step and fused gate math — one sigmoid over all of an
  LSTM's/GRU's gate columns, then column slices;
* the input projection ``x_t @ kernel + bias`` is one matmul per step on a step slice of the
  input. The "one big matmul over all steps, then slice" alternative was measured slower
  (train step 1.8x, peak memory 2.1x): a slice's gradient is a pad to the full shape it
  was cut from, and wide projections make those pads dominate;
* a computed sequence is cut into steps by a balanced binary tree of slices, so the
  backward pads cost two full-size passes per tree level (O(T log T)); flat slicing is
  O(T^2) — measured 1.3 GB of pads and 2.7 GB peak memory for the LSTM above. A model
  input (never differentiated) is sliced flat; a sequence that a return_sequences RNN
  concatenated from step values is not sliced at all (the step values are reused);
* Keras' zero initial state lets the first step skip its recurrent matmul.

Dropout follows Keras' ``DropoutRNNCell``: one input mask and one recurrent mask per
sequence (one per gate when ``recurrent_dropout`` makes Keras use ``implementation=1``),
fixed across time steps, drawn with the counter-based ``random_uniform`` op from the
trace's ``seed``/``step`` and a salt hashed from the layer name — a pure function of
(run seed, step, layer) on every backend. Masking (``mask=``) and ``stateful=True`` are not
supported and say so.

Variables keep Keras' names, shapes and order (the cell's ``kernel``,
``recurrent_kernel``, ``bias``; ``forward_layer`` then ``backward_layer`` in
``Bidirectional``); their IR names are ``"{layer}.kernel"``
(``"{bidirectional}.forward_lstm.kernel"`` inside ``Bidirectional``), since Keras names
every cell ``lstm_cell`` and IR param names must be unique.
"""
from __future__ import annotations

import numpy as np

from graphc.errors import ShapeError
from graphc.frontend import ops
from graphc.frontend.keras_tensor import shape_str
from graphc.frontend.layers.base import (InputSpec, Layer, get_activation, get_constraint,
                                         get_initializer, get_regularizer,
                                         serialize_activation, serialize_object,
                                         stable_hash31)
from graphc.frontend.tracing import current_trace
from graphc.frontend.variables import Variable
from graphc.ir.dtypes import DType
from graphc.ir.graph import Value

__all__ = ["SimpleRNNCell", "LSTMCell", "GRUCell", "RNN", "SimpleRNN", "LSTM", "GRU",
           "Bidirectional"]


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def _cols(x, lo: int, hi: int):
    """``x[..., lo:hi]`` (x a graph value or Variable)."""
    shape = tuple(x.shape)
    if lo == 0 and hi == shape[-1]:
        return x
    begin = (0,) * (len(shape) - 1) + (lo,)
    end = shape[:-1] + (hi,)
    return ops.apply("slice", x, begin=begin, end=end)


def _concat(xs, axis: int):
    return xs[0] if len(xs) == 1 else ops.apply("concat", *xs, axis=axis)


def split_columns(x2, widths, tree: bool = True) -> list:
    """``x2`` ``[batch, sum(widths)]`` -> consecutive column blocks of those widths.

    A balanced binary tree of slices rather than one slice of ``x2`` per block: a slice's
    gradient is a pad back to the shape it was cut from, so flat slicing would add one
    full-size pad and add per block to the backward pass (quadratic in the number of
    blocks); the tree keeps that to two full-size passes per level. ``tree=False`` cuts
    flat, for a value no gradient flows into.
    """
    widths = list(widths)
    out: list = []
    if not tree:
        lo = 0
        for w in widths:
            out.append(_cols(x2, lo, lo + w))
            lo += w
        return out

    def rec(v, lo, hi):                       # v holds blocks lo..hi-1
        if hi - lo == 1:
            out.append(v)
            return
        mid = (lo + hi + 1) // 2
        cut = sum(widths[lo:mid])
        rec(_cols(v, 0, cut), lo, mid)
        rec(_cols(v, cut, v.shape[-1]), mid, hi)

    rec(x2, 0, len(widths))
    return out


def split_steps(x2, steps: int, width: int, tree: bool = True) -> list:
    """``[batch, steps * width]`` -> ``steps`` values ``[batch, width]`` (see
    ``split_columns``)."""
    return split_columns(x2, [width] * steps, tree)


def _is_leaf(x) -> bool:
    """A graph input (or param): the train step never differentiates with respect to
    one, so slicing it needs no gradient-friendly tree."""
    return isinstance(x, Value) and x.node is None


def _step_pieces(x):
    """The per-step ``[batch, features]`` values a ``[batch, steps, features]`` value was
    concatenated from, when it was (a return_sequences RNN below this one), else None.

    Taking them directly saves slicing the sequence apart again — and, in the backward
    pass, the pads those slices' gradients would be.
    """
    if not isinstance(x, Value) or x.node is None or x.node.op != "reshape":
        return None
    src = x.node.inputs[0]
    b, t, f = x.shape
    if src.node is None or src.node.op != "concat" or src.shape != (b, t * f):
        return None
    pieces = src.node.inputs
    if src.node.attrs["axis"] != 1 or len(pieces) != t or any(
            p.shape != (b, f) for p in pieces):
        return None
    return list(pieces)


def _time_flip(y):
    """Reverse a ``[batch, steps, features]`` value along time (no flip op exists; slices
    and one concat, whose gradients are cheap thanks to ``split_steps``)."""
    b, t, f = y.shape
    parts = split_steps(ops.reshape(y, (b, t * f)), t, f)
    return ops.reshape(_concat(parts[::-1], 1), (b, t, f))


_NOT_ELEMENTWISE = {"softmax", "log_softmax"}


def _elementwise(fn) -> bool:
    """Whether ``fn`` is a built-in elementwise activation: then it may run once over
    several gates' columns, which is exact and saves nodes per step."""
    from graphc.frontend import activations
    name = getattr(fn, "__name__", None)
    return (name is not None and name not in _NOT_ELEMENTWISE
            and activations.ALL_ACTIVATIONS.get(name) is fn)


def _dropout_mask(shape, rate: float, salt: int, dtype):
    """Keras' ``random.dropout(ones, rate)``: ``1/(1-rate)`` where kept, else 0."""
    ctx = current_trace()
    if ctx is None or ctx.seed is None or ctx.step is None:
        raise RuntimeError("recurrent dropout in training mode needs the trace's seed and "
                           "step values (TraceContext(seed=..., step=...))")
    u = ops.apply("random_uniform", ctx.seed, ctx.step, shape=tuple(shape), salt=salt,
                  dtype=dtype)
    keep = ops.greater_equal(u, rate)
    return ops.where(keep, np.asarray(1.0 / (1.0 - rate), dtype.np), np.asarray(0, dtype.np))


def _zeros(shape, dtype):
    return ops.broadcast_to(np.zeros((), DType.of(dtype).np), tuple(shape))


def _as_list(states):
    if states is None:
        return None
    if isinstance(states, (list, tuple)):
        return list(states)
    return [states]


class _Recurrence:
    """``h -> h @ U`` for one sequence, with Keras' recurrent-dropout masks (one per gate
    under ``implementation=1``, applied through one batched matmul per step)."""

    def __init__(self, kernel, units: int, k: int, masks):
        self.kernel, self.units, self.k, self.masks = kernel, units, k, masks
        if masks is not None and k > 1:
            u = units
            self.stacked = ops.transpose(ops.reshape(kernel, (u, k, u)), (1, 0, 2))

    def __call__(self, h):
        if self.masks is None:
            return ops.matmul(h, self.kernel)
        if self.k == 1:
            return ops.matmul(ops.multiply(h, self.masks), self.kernel)
        b, u = h.shape
        hs = ops.multiply(ops.reshape(h, (1, b, u)), self.masks)        # [k, B, u]
        r = ops.matmul(hs, self.stacked)                                  # [k, B, u]
        return ops.reshape(ops.transpose(r, (1, 0, 2)), (b, self.k * u))


# --------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------

class _FusedCell(Layer):
    """Shared machinery of the built-in cells: weights, dropout masks, the input
    projection and a whole-sequence driver (``_run``) that an ``RNN`` uses instead of
    calling ``call`` step by step."""

    _gates = 1
    #: Time steps per input-projection matmul (see ``_step_inputs``). Measured with
    #: ``bench_rnn_compile.py --chunks`` (LSTM, T=200, batch 32, 16 -> 64, reference
    #: target, steps timed round-robin): 1 step per matmul gives the fastest train step
    #: (145 ms; 2: 165, 4: 181, 8: 198, all 200: 264 ms) and the least memory, for ~9%
    #: more train-graph nodes than one whole-sequence matmul.
    _chunk = 1

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
                 dropout=0.0, recurrent_dropout=0.0, seed=None, **kwargs):
        implementation = kwargs.pop("implementation", 2)
        super().__init__(**kwargs)
        if not isinstance(units, (int, np.integer)) or int(units) <= 0:
            raise ValueError(f"{self._desc}: units must be a positive integer, got {units!r}")
        self.units = int(units)
        self.activation = get_activation(activation)
        self.recurrent_activation = get_activation(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = get_initializer(kernel_initializer)
        self.recurrent_initializer = get_initializer(recurrent_initializer)
        self.bias_initializer = get_initializer(bias_initializer)
        self.kernel_regularizer = get_regularizer(kernel_regularizer)
        self.recurrent_regularizer = get_regularizer(recurrent_regularizer)
        self.bias_regularizer = get_regularizer(bias_regularizer)
        self.kernel_constraint = get_constraint(kernel_constraint)
        self.recurrent_constraint = get_constraint(recurrent_constraint)
        self.bias_constraint = get_constraint(bias_constraint)
        self.dropout = min(1.0, max(0.0, float(dropout)))
        self.recurrent_dropout = min(1.0, max(0.0, float(recurrent_dropout)))
        self.seed = seed
        # Keras switches to per-gate kernels (and per-gate dropout masks) when
        # recurrent_dropout is set; the masks' count is what is observable.
        self.implementation = 1 if self.recurrent_dropout != 0.0 else int(implementation)
        self._salt_key = None           # set by the owning RNN (cells share Keras names)
        self.state_size = self.units
        self.output_size = self.units

    # -- weights ------------------------------------------------------------------------
    def _bias_shape(self):
        return (self._gates * self.units,)

    def _bias_init(self):
        return self.bias_initializer

    def build(self, input_shape):
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(f"{self._desc}: the last dimension of the inputs must be "
                             f"defined, got input shape {tuple(input_shape)}")
        g = self._gates * self.units
        self.kernel = self.add_weight(name="kernel", shape=(in_dim, g),
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight(name="recurrent_kernel",
                                                shape=(self.units, g),
                                                initializer=self.recurrent_initializer,
                                                regularizer=self.recurrent_regularizer,
                                                constraint=self.recurrent_constraint)
        self.bias = self.add_weight(name="bias", shape=self._bias_shape(),
                                    initializer=self._bias_init(),
                                    regularizer=self.bias_regularizer,
                                    constraint=self.bias_constraint) if self.use_bias else None
        self.built = True

    # -- dropout ------------------------------------------------------------------------
    def _mask_count(self) -> int:
        return self._gates if self.implementation == 1 else 1

    def _salt(self, kind: str, i: int) -> int:
        key = self._salt_key or self.name
        if self.seed is not None:
            key = f"{key}:{int(self.seed)}"
        return stable_hash31(f"{key}:{kind}:{i}")

    def _input_masks(self, shape, training, dtype):
        if not (training and 0.0 < self.dropout < 1.0):
            return None
        return [_dropout_mask(shape, self.dropout, self._salt("dropout", i), dtype)
                for i in range(self._mask_count())]

    def _recurrent_masks(self, batch, training, dtype, k):
        """One ``[batch, units]`` mask, or ``[k, batch, units]`` for ``k`` gates."""
        if not (training and 0.0 < self.recurrent_dropout < 1.0):
            return None
        shape = (batch, self.units) if k == 1 else (k, batch, self.units)
        return _dropout_mask(shape, self.recurrent_dropout, self._salt("recurrent", 0), dtype)

    # -- projection ---------------------------------------------------------------------
    def _input_bias(self):
        return self.bias

    def _project(self, x, masks):
        """``x @ kernel + input bias`` for every leading position of ``x`` at once, with
        the input-dropout mask(s): returns ``[prod(leading dims), gates * units]``."""
        f = x.shape[-1]
        n = int(np.prod(x.shape[:-1]))
        if masks is None or len(masks) == 1:
            if masks is not None:
                x = ops.multiply(x, masks[0])
            y = ops.matmul(ops.reshape(x, (n, f)), self.kernel)
        else:
            u = self.units
            y = _concat([ops.matmul(ops.reshape(ops.multiply(x, m), (n, f)),
                                    _cols(self.kernel, i * u, (i + 1) * u))
                         for i, m in enumerate(masks)], 1)
        b = self._input_bias()
        return y if b is None else ops.add(y, b)

    # -- per-sequence setup and one step (subclasses) ----------------------------------
    def _setup(self, batch, training, dtype):
        """State shared by all steps of one sequence (recurrent projections, masks)."""
        raise NotImplementedError

    def _step(self, xp, states, rec):
        """One time step from ``xp`` (this step's input projection, bias included) and
        the previous ``states`` (``None`` entries stand for Keras' zero initial state,
        letting the first step skip its recurrent matmul). Returns (output, states)."""
        raise NotImplementedError

    def _n_states(self) -> int:
        return 1

    def _can_fuse(self) -> bool:
        """A subclass that overrides ``call`` gets the generic step-by-step loop."""
        base = next(c for c in type(self).__mro__ if c in _BUILTIN_CELLS)
        return type(self).call is base.call

    # -- Keras cell API -----------------------------------------------------------------
    def call(self, inputs, states, training=False):
        nested = isinstance(states, (list, tuple))
        states = _as_list(states)
        if states is None:
            states = [None] * self._n_states()
        b = inputs.shape[0]
        masks = self._input_masks(tuple(inputs.shape), training, inputs.dtype)
        xp = self._project(inputs, masks)
        rec = self._setup(b, training, inputs.dtype)
        out, new = self._step(xp, states, rec)
        return out, (new if nested else new[0])

    def _step_inputs(self, x, training):
        """This sequence's per-step input projections ``[B, gates*units]`` (bias and
        input dropout included), in time order.

        Projections are computed ``_chunk`` steps per matmul: a chunk of the input is cut
        out (from the concatenated step values when ``x`` came from a return_sequences
        RNN, else by a tree of slices of the narrow input), projected at once, and split
        into steps by flat slices. Chunking keeps the full-width projections' slice
        gradients (pads) local to a chunk instead of spanning the sequence.
        """
        b, t, f = x.shape
        g = self._gates * self.units
        masks = self._input_masks((b, f), training, x.dtype)
        c = max(1, min(int(self._chunk), t))
        sizes = [min(c, t - i) for i in range(0, t, c)]
        pieces = _step_pieces(x)
        if pieces is not None:
            chunks, i = [], 0
            for n in sizes:
                chunks.append(_concat(pieces[i:i + n], 1))
                i += n
        else:
            chunks = split_columns(ops.reshape(x, (b, t * f)), [n * f for n in sizes],
                                   tree=not _is_leaf(x))
        steps = []
        wide_masks = None
        for chunk, n in zip(chunks, sizes):
            if n == 1:
                steps.append(self._project(chunk, masks))                  # [B, G]
                continue
            if masks is not None and wide_masks is None:
                wide_masks = [ops.reshape(m, (b, 1, f)) for m in masks]
            xp = self._project(ops.reshape(chunk, (b, n, f)), wide_masks)  # [B*n, G]
            steps.extend(split_steps(ops.reshape(xp, (b, n * g)), n, g))
        return steps

    def _run(self, x, initial_states, training, go_backwards, return_sequences,
             time_ordered=False):
        """The whole sequence ``x`` ``[B, T, F]``: (output, final states)."""
        b, t, f = x.shape
        steps = self._step_inputs(x, training)
        rec = self._setup(b, training, x.dtype)
        states = list(initial_states) if initial_states else [None] * self._n_states()
        outs = []
        for i in (range(t - 1, -1, -1) if go_backwards else range(t)):
            out, states = self._step(steps[i], states, rec)
            outs.append(out)
        if not return_sequences:
            return outs[-1], states
        if time_ordered and go_backwards:
            outs = outs[::-1]
        u = outs[0].shape[-1]
        return ops.reshape(_concat(outs, 1), (b, t, u)), states

    def get_initial_state(self, batch_size=None):
        return [np.zeros((batch_size, self.units), self.dtype)
                for _ in range(self._n_states())]

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": serialize_activation(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": serialize_object(self.kernel_initializer, "initializers"),
                "recurrent_initializer": serialize_object(self.recurrent_initializer,
                                                          "initializers"),
                "bias_initializer": serialize_object(self.bias_initializer, "initializers"),
                "kernel_regularizer": serialize_object(self.kernel_regularizer, "regularizers"),
                "recurrent_regularizer": serialize_object(self.recurrent_regularizer,
                                                          "regularizers"),
                "bias_regularizer": serialize_object(self.bias_regularizer, "regularizers"),
                "kernel_constraint": serialize_object(self.kernel_constraint, "constraints"),
                "recurrent_constraint": serialize_object(self.recurrent_constraint,
                                                         "constraints"),
                "bias_constraint": serialize_object(self.bias_constraint, "constraints"),
                "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
                "seed": self.seed}


class SimpleRNNCell(_FusedCell):
    """``h_t = activation(x_t @ kernel + bias + h_{t-1} @ recurrent_kernel)``."""

    _gates = 1

    def __init__(self, units, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 **kwargs):
        super().__init__(units, activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer,
                         bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer,
                         recurrent_regularizer=recurrent_regularizer,
                         bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
                         recurrent_constraint=recurrent_constraint,
                         bias_constraint=bias_constraint, dropout=dropout,
                         recurrent_dropout=recurrent_dropout, seed=seed, **kwargs)
        self.implementation = 2   # Keras' SimpleRNNCell draws one mask whatever the rates

    def _setup(self, batch, training, dtype):
        return _Recurrence(self.recurrent_kernel, self.units, 1,
                           self._recurrent_masks(batch, training, dtype, 1))

    def _step(self, xp, states, rec):
        h = states[0]
        pre = xp if h is None else ops.add(xp, rec(h))
        out = self.activation(pre)
        return out, [out]


class LSTMCell(_FusedCell):
    """Keras LSTM cell: gates i, f, c, o in the kernels' column blocks;
    ``c = f*c + i*act(z_c)``, ``h = o*act(c)``; state ``[h, c]``."""

    _gates = 4

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, **kwargs):
        super().__init__(units, activation=activation,
                         recurrent_activation=recurrent_activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer,
                         bias_initializer=bias_initializer, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.state_size = [self.units, self.units]

    def _n_states(self):
        return 2

    def _bias_init(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        u, init = self.units, self.bias_initializer

        def bias_initializer(shape, dtype="float32"):
            # Keras: the forget-gate block starts at one, the rest from bias_initializer.
            return np.concatenate([np.asarray(init((u,), dtype=dtype)), np.ones((u,), dtype),
                                   np.asarray(init((2 * u,), dtype=dtype))]).astype(dtype)
        return bias_initializer

    def _setup(self, batch, training, dtype):
        k = self._mask_count()
        return _Recurrence(self.recurrent_kernel, self.units, k,
                           self._recurrent_masks(batch, training, dtype, k))

    def _step(self, xp, states, rec):
        h, c = states
        u = self.units
        z = xp if h is None else ops.add(xp, rec(h))
        ra = self.recurrent_activation
        if _elementwise(ra):
            s = ra(z)       # one node for the three sigmoid gates (the c block is unused)
            i, f, o = _cols(s, 0, u), _cols(s, u, 2 * u), _cols(s, 3 * u, 4 * u)
        else:
            i, f, o = ra(_cols(z, 0, u)), ra(_cols(z, u, 2 * u)), ra(_cols(z, 3 * u, 4 * u))
        g = self.activation(_cols(z, 2 * u, 3 * u))
        ig = ops.multiply(i, g)
        c = ig if c is None else ops.add(ops.multiply(f, c), ig)
        h = ops.multiply(o, self.activation(c))
        return h, [h, c]

    def get_config(self):
        return {**super().get_config(),
                "recurrent_activation": serialize_activation(self.recurrent_activation),
                "unit_forget_bias": self.unit_forget_bias}


class GRUCell(_FusedCell):
    """Keras GRU cell: gates z, r, h in the kernels' column blocks. ``reset_after=True``
    (default, cuDNN-compatible): bias ``(2, 3u)`` (input row, recurrent row) and
    ``hh = act(x_h + r * (h @ U_h + b_rh))``; ``reset_after=False``: bias ``(3u,)`` and
    ``hh = act(x_h + (r * h) @ U_h)``. Then ``h = z*h + (1-z)*hh``."""

    _gates = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 reset_after=True, **kwargs):
        super().__init__(units, activation=activation,
                         recurrent_activation=recurrent_activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer,
                         bias_initializer=bias_initializer, **kwargs)
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _input_bias(self):
        if self.bias is None or not self.reset_after:
            return self.bias
        return ops.reshape(ops.apply("slice", self.bias, begin=(0, 0),
                                     end=(1, 3 * self.units)), (3 * self.units,))

    def _recurrent_bias(self):
        return ops.reshape(ops.apply("slice", self.bias, begin=(1, 0),
                                     end=(2, 3 * self.units)), (3 * self.units,))

    def _setup(self, batch, training, dtype):
        u = self.units
        k = self._mask_count()
        masks = self._recurrent_masks(batch, training, dtype, k)
        if self.reset_after:
            rec = _Recurrence(self.recurrent_kernel, u, k, masks)
            rec.bias = self._recurrent_bias() if self.use_bias else None
            return rec
        # reset before: z, r from h @ U[:, :2u]; the h gate from (r * h) @ U[:, 2u:]
        zr_masks = h_mask = None
        if masks is not None:
            if k == 1:
                zr_masks, h_mask = masks, masks
            else:
                zr_masks = ops.apply("slice", masks, begin=(0, 0, 0), end=(2, batch, u))
                h_mask = ops.reshape(ops.apply("slice", masks, begin=(2, 0, 0),
                                               end=(3, batch, u)), (batch, u))
        rec = _Recurrence(_cols(self.recurrent_kernel, 0, 2 * u), u, 2 if k > 1 else 1,
                          zr_masks)
        rec.h_kernel = _cols(self.recurrent_kernel, 2 * u, 3 * u)
        rec.h_mask = h_mask
        return rec

    def _step(self, xp, states, rec):
        h = states[0]
        u = self.units
        ra, act = self.recurrent_activation, self.activation
        if self.reset_after:
            mi = None if h is None else rec(h)                       # [B, 3u]
            if rec.bias is not None:
                mi = rec.bias if mi is None else ops.add(mi, rec.bias)
            pre = xp if mi is None else ops.add(xp, mi)
            if _elementwise(ra):
                s = ra(pre)
                z, r = _cols(s, 0, u), _cols(s, u, 2 * u)
            else:
                z, r = ra(_cols(pre, 0, u)), ra(_cols(pre, u, 2 * u))
            xh = _cols(xp, 2 * u, 3 * u)
            hh = act(xh if mi is None else ops.add(xh, ops.multiply(r, _cols(mi, 2 * u, 3 * u))))
        else:
            xzr = _cols(xp, 0, 2 * u)
            pre = xzr if h is None else ops.add(xzr, rec(h))
            if _elementwise(ra):
                s = ra(pre)
                z, r = _cols(s, 0, u), _cols(s, u, 2 * u)
            else:
                z, r = ra(_cols(pre, 0, u)), ra(_cols(pre, u, 2 * u))
            xh = _cols(xp, 2 * u, 3 * u)
            if h is None:
                hh = act(xh)                                   # (r * 0) @ U_h == 0
            else:
                hm = h if rec.h_mask is None else ops.multiply(h, rec.h_mask)
                hh = act(ops.add(xh, ops.matmul(ops.multiply(r, hm), rec.h_kernel)))
        if h is None:
            new = ops.multiply(ops.subtract(1.0, z), hh)
        else:
            # z*h + (1-z)*hh rearranged: one node fewer per step, same value up to rounding
            new = ops.add(hh, ops.multiply(z, ops.subtract(h, hh)))
        return new, [new]

    def get_config(self):
        return {**super().get_config(),
                "recurrent_activation": serialize_activation(self.recurrent_activation),
                "reset_after": self.reset_after}


_BUILTIN_CELLS = (SimpleRNNCell, LSTMCell, GRUCell)


# --------------------------------------------------------------------------------------
# RNN layers
# --------------------------------------------------------------------------------------

def _first_shape(shapes):
    if isinstance(shapes, (list, tuple)) and shapes and isinstance(shapes[0], (list, tuple)):
        return tuple(shapes[0])
    return tuple(shapes)


class RNN(Layer):
    """Keras ``RNN(cell, return_sequences, return_state, go_backwards, stateful, unroll)``.

    Built-in cells run through their fused whole-sequence path; any other cell (a Layer
    with ``call(inputs, states)`` and ``state_size``) is called once per time step.
    ``unroll`` is accepted and means nothing (graphc always unrolls); ``stateful=True`` and
    masks are not supported.
    """

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, zero_output_for_mask=False, **kwargs):
        if isinstance(cell, (list, tuple)):
            raise NotImplementedError("RNN: a list of cells (StackedRNNCells) is not "
                                      "supported by graphc; stack RNN layers instead")
        time_major = kwargs.pop("time_major", False)
        super().__init__(**kwargs)
        if time_major:
            raise ValueError(f"{self._desc}: time_major=True is not supported; give inputs "
                             f"as (batch, timesteps, features)")
        if stateful:
            raise ValueError(f"{self._desc}: stateful=True is not supported by graphc (state "
                             f"carried between batches); pass the previous final states as "
                             f"initial_state= instead")
        if not hasattr(cell, "call") or getattr(cell, "state_size", None) is None:
            raise ValueError(f"{self._desc}: the cell must have a call method and a "
                             f"state_size attribute, got {cell!r}")
        self.cell = cell
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = False
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.supports_masking = False
        self._path_prefix = None
        self.input_spec = InputSpec(ndim=3, rank_hint="(batch, timesteps, features)")
        if isinstance(cell, _FusedCell):
            cell._salt_key = self.name

    # -- state sizes --------------------------------------------------------------------
    @property
    def state_size(self) -> list[int]:
        s = self.cell.state_size
        return [int(s)] if isinstance(s, (int, np.integer)) else [int(d) for d in s]

    @property
    def _output_size(self) -> int:
        out = getattr(self.cell, "output_size", None)
        return int(out) if out is not None else self.state_size[0]

    # -- weights / naming ---------------------------------------------------------------
    def _set_path_prefix(self, prefix: str | None):
        """IR names of the cell's variables: ``"{prefix}.kernel"`` (prefix = layer name,
        or ``"{bidirectional}.{sublayer}"``); the dropout salt follows the same key."""
        self._path_prefix = prefix
        key = prefix or self.name
        if isinstance(self.cell, _FusedCell):
            self.cell._salt_key = key
        if isinstance(self.cell, Layer):
            for v in self.cell._trainable_variables + self.cell._non_trainable_variables:
                v.path = f"{key}.{v.name}"

    def build(self, input_shape):
        seq = _first_shape(input_shape)
        if len(seq) != 3:
            raise ShapeError(f"{self._desc}: expected input of rank 3 (batch, timesteps, "
                             f"features), got shape {shape_str(seq)}")
        if isinstance(self.cell, Layer) and not self.cell.built:
            self.cell.build((seq[0],) + tuple(seq[2:]))
            self.cell.built = True
        self._set_path_prefix(self._path_prefix)
        self.built = True

    def _check_input_shapes(self, flat_shapes):
        # [sequence, *initial_states] as one list: only the sequence must be rank 3.
        super()._check_input_shapes(flat_shapes[:1])

    def compute_output_shape(self, input_shape):
        seq = _first_shape(input_shape)
        b, t = seq[0], seq[1]
        out = (b, t, self._output_size) if self.return_sequences else (b, self._output_size)
        if self.return_state:
            return [out] + [(b, s) for s in self.state_size]
        return out

    # -- call ---------------------------------------------------------------------------
    def _initial_states(self, initial_state, batch, dtype):
        states = _as_list(initial_state)
        if states is None:
            return None
        if len(states) != len(self.state_size):
            raise ValueError(f"{self._desc}: expected {len(self.state_size)} initial "
                             f"state(s) {[(None, s) for s in self.state_size]}, got "
                             f"{len(states)}")
        out = []
        for i, (s, size) in enumerate(zip(states, self.state_size)):
            if not isinstance(s, (Value, Variable)):
                s = current_trace().builder.const(np.asarray(s, dtype=dtype.np), dtype)
            s = ops.cast(s, dtype)
            if tuple(s.shape) != (batch, size):
                raise ShapeError(f"{self._desc}: initial state {i} must have shape "
                                 f"{shape_str((None, size))}, got {shape_str(s.shape)}")
            out.append(s)
        return out

    def call(self, sequences, initial_state=None, mask=None, training=False,
             _time_ordered=False):
        if isinstance(sequences, (list, tuple)):
            sequences, rest = sequences[0], list(sequences[1:])
            if rest:
                initial_state = rest
        if mask is not None:
            raise NotImplementedError(f"{self._desc}: masking (mask=..., Masking layers, "
                                      f"Embedding(mask_zero=True)) is not supported by "
                                      f"graphc's recurrent layers yet")
        x = sequences
        if len(x.shape) != 3:
            raise ShapeError(f"{self._desc}: expected input of rank 3 (batch, timesteps, "
                             f"features), got shape {shape_str(x.shape)}")
        b, t, _ = x.shape
        if t == 0:
            raise ShapeError(f"{self._desc}: the input has no time steps (shape "
                             f"{shape_str(x.shape)})")
        init = self._initial_states(initial_state, b, x.dtype)
        cell = self.cell
        if isinstance(cell, _FusedCell) and cell._can_fuse():
            y, states = cell._run(x, init, training, self.go_backwards,
                                  self.return_sequences, _time_ordered)
        else:
            y, states = self._generic_loop(x, init, training, _time_ordered)
        if self.return_state:
            return [y] + list(states)
        return y

    def _generic_loop(self, x, init, training, time_ordered):
        b, t, f = x.shape
        steps = split_steps(ops.reshape(x, (b, t * f)), t, f, tree=not _is_leaf(x))
        states = init if init is not None else [_zeros((b, s), x.dtype)
                                                for s in self.state_size]
        kw = {"training": training} if getattr(self.cell, "_call_has_training_arg",
                                               False) else {}
        outs = []
        for i in (range(t - 1, -1, -1) if self.go_backwards else range(t)):
            out, new = self.cell(steps[i], states, **kw)
            states = _as_list(new)
            outs.append(out)
        if not self.return_sequences:
            return outs[-1], states
        if time_ordered and self.go_backwards:
            outs = outs[::-1]
        u = outs[0].shape[-1]
        return ops.reshape(_concat(outs, 1), (b, t, u)), states

    def get_config(self):
        from graphc.frontend.layers.serialization import serialize
        return {**super().get_config(), "return_sequences": self.return_sequences,
                "return_state": self.return_state, "go_backwards": self.go_backwards,
                "stateful": self.stateful, "unroll": self.unroll,
                "zero_output_for_mask": self.zero_output_for_mask,
                "cell": serialize(self.cell)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from graphc.frontend.layers.serialization import deserialize
        config = dict(config)
        cell = config.pop("cell")
        if isinstance(cell, dict):
            cell = deserialize(cell, custom_objects)
        return cls(cell, **config)


_CELL_ARGS = ("activation", "use_bias", "kernel_initializer", "recurrent_initializer",
              "bias_initializer", "kernel_regularizer", "recurrent_regularizer",
              "bias_regularizer", "kernel_constraint", "recurrent_constraint",
              "bias_constraint", "dropout", "recurrent_dropout")


class _KerasRNN(RNN):
    """``SimpleRNN``/``LSTM``/``GRU``: an ``RNN`` owning its built-in cell, with the cell's
    arguments in its own constructor and config (Keras' layout)."""

    _cell_class: type = SimpleRNNCell
    _cell_name = "cell"
    _extra_args: tuple = ()

    def __init__(self, units, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, activity_regularizer=None, **kwargs):
        cell_kw = {k: kwargs.pop(k) for k in list(kwargs)
                   if k in _CELL_ARGS + self._extra_args + ("seed", "implementation")}
        kwargs.pop("use_cudnn", None)
        kwargs.pop("cell", None)
        cell = self._cell_class(units, dtype=kwargs.get("dtype"),
                                trainable=kwargs.get("trainable", True),
                                name=self._cell_name, **cell_kw)
        super().__init__(cell, return_sequences=return_sequences, return_state=return_state,
                         go_backwards=go_backwards, stateful=stateful, unroll=unroll,
                         activity_regularizer=activity_regularizer, **kwargs)

    def call(self, sequences, initial_state=None, mask=None, training=False,
             _time_ordered=False):
        return super().call(sequences, initial_state=initial_state, mask=mask,
                            training=training, _time_ordered=_time_ordered)

    def __getattr__(self, name):
        # Keras exposes the cell's hyper-parameters (units, activation, dropout, ...) and
        # weights (kernel, recurrent_kernel, bias) on the layer.
        if name in _CELL_ARGS + self._extra_args + ("units", "seed", "recurrent_activation",
                                                     "kernel", "recurrent_kernel", "bias"):
            cell = self.__dict__.get("cell")
            if cell is not None:
                return getattr(cell, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def get_config(self):
        cfg = super().get_config()
        del cfg["cell"]
        cell_cfg = self.cell.get_config()
        for k in ("name", "trainable", "dtype"):
            cell_cfg.pop(k, None)
        cfg.update(cell_cfg)
        cfg["activity_regularizer"] = serialize_object(self.activity_regularizer,
                                                       "regularizers")
        return cfg

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**dict(config))


class SimpleRNN(_KerasRNN):
    """Keras ``SimpleRNN(units, activation='tanh', use_bias=True, ...)``."""

    _cell_class = SimpleRNNCell
    _cell_name = "simple_rnn_cell"


class LSTM(_KerasRNN):
    """Keras ``LSTM(units, activation='tanh', recurrent_activation='sigmoid',
    unit_forget_bias=True, ...)``; ``return_state`` gives ``[output, h, c]``."""

    _cell_class = LSTMCell
    _cell_name = "lstm_cell"
    _extra_args = ("recurrent_activation", "unit_forget_bias")


class GRU(_KerasRNN):
    """Keras ``GRU(units, ..., reset_after=True)``; ``return_state`` gives
    ``[output, h]``."""

    _cell_class = GRUCell
    _cell_name = "gru_cell"
    _extra_args = ("recurrent_activation", "reset_after")


# --------------------------------------------------------------------------------------
# Bidirectional
# --------------------------------------------------------------------------------------

_MERGE_MODES = ("sum", "mul", "ave", "concat", None)


def _strip(prefix: str, name: str) -> str:
    return name[len(prefix):] if name.startswith(prefix) else name


class Bidirectional(Layer):
    """Keras ``Bidirectional(layer, merge_mode='concat', weights=None,
    backward_layer=None)``: a forward copy of ``layer`` (named ``forward_<name>``) and a
    backward one (``backward_<name>``, ``go_backwards=True``), built from ``layer``'s
    config as Keras does (so ``layer``'s own weights are not reused). Weights: the forward
    layer's, then the backward layer's. ``initial_state``: the first half goes to the
    forward layer, the second to the backward one."""

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None,
                 **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError(f"Bidirectional: `layer` must be a graphc Layer instance, got "
                             f"{layer!r}")
        if backward_layer is not None and not isinstance(backward_layer, Layer):
            raise ValueError(f"Bidirectional: `backward_layer` must be a graphc Layer "
                             f"instance, got {backward_layer!r}")
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"Bidirectional: invalid merge_mode {merge_mode!r}; expected "
                             f"one of 'sum', 'mul', 'ave', 'concat', None")
        if weights is not None:
            kwargs["weights"] = weights      # the base sets them after build, in order
        super().__init__(**kwargs)
        cfg = layer.get_config()
        cfg["name"] = "forward_" + _strip("forward_", layer.name)
        self.forward_layer = type(layer).from_config(cfg)
        if backward_layer is None:
            cfg = layer.get_config()
            cfg["go_backwards"] = True
            cfg["name"] = "backward_" + _strip("backward_", layer.name)
            self.backward_layer = type(layer).from_config(cfg)
        else:
            self.backward_layer = backward_layer
        fw, bw = self.forward_layer, self.backward_layer
        if getattr(fw, "go_backwards", None) == getattr(bw, "go_backwards", None):
            raise ValueError(f"{self._desc}: forward layer and backward layer should have "
                             f"different `go_backwards` values, got "
                             f"{getattr(fw, 'go_backwards', None)} for both")
        for a in ("stateful", "return_sequences", "return_state"):
            if getattr(fw, a, None) != getattr(bw, a, None):
                raise ValueError(f"{self._desc}: forward layer and backward layer are "
                                 f"expected to have the same value for attribute {a!r}, "
                                 f"got {getattr(fw, a, None)!r} and {getattr(bw, a, None)!r}")
        self.merge_mode = merge_mode
        self.stateful = False
        self.return_sequences = bool(getattr(layer, "return_sequences", False))
        self.return_state = bool(getattr(layer, "return_state", False))
        self.input_spec = layer.input_spec
        for sub in (fw, bw):
            if isinstance(sub, RNN):
                sub._set_path_prefix(f"{self.name}.{sub.name}")

    def build(self, input_shape):
        seq = _first_shape(input_shape)
        for sub in (self.forward_layer, self.backward_layer):
            if not sub.built:
                sub._maybe_build(seq, [seq])
            if isinstance(sub, RNN):
                sub._set_path_prefix(f"{self.name}.{sub.name}")
        self.built = True

    def _check_input_shapes(self, flat_shapes):
        super()._check_input_shapes(flat_shapes[:1])

    def compute_output_shape(self, input_shape):
        seq = _first_shape(input_shape)
        out = self.forward_layer.compute_output_shape(seq)
        states = []
        if self.return_state:
            out, states = tuple(out[0]), [tuple(s) for s in out[1:]]
        out = tuple(out)
        if self.merge_mode == "concat":
            out = out[:-1] + (None if out[-1] is None else 2 * out[-1],)
        outs = [out, out] if self.merge_mode is None else [out]
        if self.return_state:
            return outs + states + states
        return outs if self.merge_mode is None else out

    def call(self, sequences, initial_state=None, mask=None, training=None):
        if isinstance(sequences, (list, tuple)):
            sequences, rest = sequences[0], list(sequences[1:])
            if rest:
                initial_state = rest
        fw_state = bw_state = None
        if initial_state is not None:
            initial_state = _as_list(initial_state)
            half = len(initial_state) // 2
            fw_state, bw_state = initial_state[:half], initial_state[half:]
        kw = {}
        if mask is not None:
            kw["mask"] = mask
        fw_kw, bw_kw = dict(kw), dict(kw)
        # initial_state only when given: a non-RNN sequence layer need not accept it
        if fw_state is not None:
            fw_kw["initial_state"], bw_kw["initial_state"] = fw_state, bw_state
        y = self.forward_layer(sequences, training=training, **fw_kw)
        flipped = isinstance(self.backward_layer, RNN)
        if flipped:
            # The backward RNN emits its sequence back in time order directly: cheaper
            # than a flip of its output.
            bw_kw["_time_ordered"] = True
        y_rev = self.backward_layer(sequences, training=training, **bw_kw)
        states = []
        if self.return_state:
            states = list(y[1:]) + list(y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        if self.return_sequences and not flipped:
            y_rev = _time_flip(y_rev)
        if self.merge_mode == "concat":
            out = [ops.apply("concat", y, y_rev, axis=len(y.shape) - 1)]
        elif self.merge_mode == "sum":
            out = [ops.add(y, y_rev)]
        elif self.merge_mode == "ave":
            out = [ops.divide(ops.add(y, y_rev), 2.0)]
        elif self.merge_mode == "mul":
            out = [ops.multiply(y, y_rev)]
        else:
            out = [y, y_rev]
        if self.return_state or self.merge_mode is None:
            return out + states
        return out[0]

    def get_config(self):
        from graphc.frontend.layers.serialization import serialize
        return {**super().get_config(), "merge_mode": self.merge_mode,
                "layer": serialize(self.forward_layer),
                "backward_layer": serialize(self.backward_layer)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from graphc.frontend.layers.serialization import deserialize
        config = dict(config)
        config["layer"] = deserialize(config["layer"], custom_objects)
        bw = config.pop("backward_layer", None)
        if bw is not None:
            config["backward_layer"] = deserialize(bw, custom_objects)
        return cls(**config)
