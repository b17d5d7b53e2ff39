"""``Layer``, the base of every layer and model: weights, naming, building, and the three
ways a layer is called.

* on ``KerasTensor``s (model definition): build from the symbolic shapes, record a ``Node``
  in the layer graph, and get the output shapes by tracing ``call`` into a scratch graph;
* on IR ``Value``s inside an active ``TraceContext`` (a model being traced): ``call``
  directly, so the layer emits its IR into the caller's graph;
* on numpy arrays (eager, ``layer(np_array)``): trace into a scratch graph and run it with
  the reference interpreter.

One ``call`` written with ``graphc.ops`` serves all three, so there is no second
shape-inference code path to drift out of sync with the computation.
"""
from __future__ import annotations

import importlib
import inspect
import re
import zlib

import numpy as np

from graphc.errors import DTypeError, ShapeError
from graphc.frontend.keras_tensor import KerasHistory, KerasTensor, shape_str, standardize_dtype
from graphc.frontend.layers._tree import flatten, map_structure, pack_as
from graphc.frontend.tracing import TraceContext, current_trace
from graphc.frontend.variables import Variable
from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import Graph, Value

# --------------------------------------------------------------------------------------
# Naming
# --------------------------------------------------------------------------------------

_NAME_COUNTS: dict[str, int] = {}


def to_snake_case(name: str) -> str:
    """Keras' rule: ``Conv2D`` -> ``conv2d``, ``MaxPooling2D`` -> ``max_pooling2d``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    return name


def auto_name(prefix: str) -> str:
    """``dense``, ``dense_1``, ... — one process-wide counter per prefix, as Keras."""
    n = _NAME_COUNTS.get(prefix, 0)
    _NAME_COUNTS[prefix] = n + 1
    return prefix if n == 0 else f"{prefix}_{n}"


def reset_name_counters() -> None:
    """Forget auto-generated names (``graphc.backend.clear_session``)."""
    from graphc.frontend import keras_tensor
    _NAME_COUNTS.clear()
    keras_tensor.reset_names()


def stable_hash31(text: str) -> int:
    """A 31-bit hash that is the same in every process (Python's ``hash`` is salted)."""
    return zlib.crc32(text.encode("utf-8")) & 0x7FFFFFFF


# --------------------------------------------------------------------------------------
# Keras objects other modules own (activations, initializers, regularizers, constraints)
# --------------------------------------------------------------------------------------

def _frontend_module(name: str):
    try:
        return importlib.import_module(f"graphc.frontend.{name}")
    except ImportError:
        return None


def get_activation(identifier):
    from graphc.frontend import activations
    return activations.get(identifier)


def serialize_activation(fn):
    from graphc.frontend import activations
    return activations.serialize(fn)


def get_initializer(identifier):
    mod = _frontend_module("initializers")
    if mod is None:
        raise RuntimeError("graphc.frontend.initializers is not available")
    return mod.get(identifier)


def _get_optional(kind: str, identifier):
    """Regularizers and constraints: None stays None; a callable is used as is when the
    module that resolves names does not exist (yet)."""
    if identifier is None:
        return None
    mod = _frontend_module(kind)
    if mod is not None and hasattr(mod, "get"):
        return mod.get(identifier)
    if callable(identifier):
        return identifier
    raise RuntimeError(f"cannot resolve {kind[:-1]} {identifier!r}: graphc.frontend.{kind} "
                       f"is not available")


def get_regularizer(identifier):
    return _get_optional("regularizers", identifier)


def get_constraint(identifier):
    return _get_optional("constraints", identifier)


def serialize_object(obj, kind: str):
    """Keras-config form of an initializer/regularizer/constraint (None stays None)."""
    if obj is None:
        return None
    mod = _frontend_module(kind)
    if mod is not None and hasattr(mod, "serialize"):
        return mod.serialize(obj)
    if isinstance(obj, str):
        return obj
    if hasattr(obj, "get_config"):
        return {"module": f"keras.{kind}", "class_name": type(obj).__name__,
                "config": obj.get_config(), "registered_name": None}
    return getattr(obj, "__name__", repr(obj))


# --------------------------------------------------------------------------------------
# InputSpec and shape checks
# --------------------------------------------------------------------------------------

class InputSpec:
    """What a layer accepts (Keras ``InputSpec``): rank bounds and fixed axis sizes.
    ``rank_hint`` names the axes in error messages, e.g. ``(batch, height, width, channels)``."""

    def __init__(self, dtype=None, shape=None, ndim=None, max_ndim=None, min_ndim=None,
                 axes=None, allow_last_axis_squeeze=False, name=None, rank_hint=None):
        self.dtype = dtype
        self.shape = tuple(shape) if shape is not None else None
        self.ndim = len(self.shape) if self.shape is not None else ndim
        self.max_ndim = max_ndim
        self.min_ndim = min_ndim
        self.axes = {int(k): int(v) for k, v in (axes or {}).items()}
        self.name = name
        self.rank_hint = rank_hint

    def __repr__(self):
        parts = [f"{k}={v}" for k, v in [("ndim", self.ndim), ("min_ndim", self.min_ndim),
                                          ("max_ndim", self.max_ndim), ("axes", self.axes)] if v]
        return f"InputSpec({', '.join(parts)})"


def _axis_words(axis: int) -> str:
    return "last dimension" if axis == -1 else f"dimension at axis {axis}"


class Node:
    """One call of a layer on KerasTensors: the arguments (with KerasTensors as leaves) and
    the KerasTensors it produced. A shared layer has several nodes."""

    def __init__(self, layer: "Layer", call_args: tuple = (), call_kwargs: dict | None = None,
                 outputs=None):
        self.layer = layer
        self.call_args = tuple(call_args)
        self.call_kwargs = dict(call_kwargs or {})
        self.input_tensors = [x for x in flatten((list(self.call_args), self.call_kwargs))
                              if isinstance(x, KerasTensor)]
        self.outputs = outputs
        self.output_tensors = [x for x in flatten(outputs) if isinstance(x, KerasTensor)]
        self.index = len(layer._inbound_nodes)
        layer._inbound_nodes.append(self)
        for i, t in enumerate(self.output_tensors):
            t._keras_history = KerasHistory(layer, self.index, i)

    @property
    def is_input(self) -> bool:
        return not self.input_tensors

    @property
    def parent_nodes(self) -> list["Node"]:
        return [t._keras_history.layer._inbound_nodes[t._keras_history.node_index]
                for t in self.input_tensors]

    def __repr__(self):
        return f"<Node {self.layer.name}[{self.index}]>"


# --------------------------------------------------------------------------------------
# Layer
# --------------------------------------------------------------------------------------

# Sizes substituted for unknown (None) dims when tracing ``call`` to infer output shapes:
# two probes, so a dim that differs between them is data-dependent (None) and one that
# agrees is static. Spatial probes are large enough for deep conv/pool stacks.
_PROBE_BATCH = (2, 3)
_PROBE_OTHER = (192, 320)

# Keyword arguments older Keras configs carry that mean nothing here.
_IGNORED_KWARGS = {"autocast", "input_dtype", "ragged", "sparse", "lora_rank",
                   "lora_alpha", "quantization_config"}


# Internal bookkeeping attributes that never hold sublayers.
_UNTRACKED_ATTRS = frozenset({
    "_tracked", "_trainable_variables", "_non_trainable_variables", "_inbound_nodes",
    "_build_input_shape", "_input_shape_arg", "_initial_weights", "input_spec",
    "kernel_size", "strides", "dilation_rate", "pool_size", "target_shape", "noise_shape",
    "batch_shape", "arguments", "_inputs_struct", "_outputs_struct", "_compile_config",
    "_compiled_trainable_weights", "metrics_config", "loss", "loss_weights",
    "weighted_metrics", "_seq_layers"})


class Layer:
    """Keras ``Layer``: see the module docstring. Subclasses implement ``build`` (create
    weights with ``add_weight``) and ``call`` (with ``graphc.ops``)."""

    # Float layers cast their (first-argument) inputs to the layer dtype, as Keras'
    # autocast does; a layer that consumes integers (Embedding) sets this to False.
    _cast_inputs = True
    _CLASS_REGISTRY: dict[str, type] = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        # Built-ins take precedence over user classes of the same name.
        prev = Layer._CLASS_REGISTRY.get(cls.__name__)
        if prev is None or not prev.__module__.startswith("graphc."):
            Layer._CLASS_REGISTRY[cls.__name__] = cls
        if "build" in cls.__dict__:
            cls.build = _build_wrapper(cls.__dict__["build"])
        sig = inspect.signature(cls.call)
        params = sig.parameters
        var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        cls._call_has_training_arg = "training" in params or var_kw
        cls._call_has_mask_arg = "mask" in params or var_kw

    def __init__(self, trainable: bool = True, name: str | None = None, dtype=None,
                 activity_regularizer=None, **kwargs):
        input_shape = kwargs.pop("input_shape", None)
        input_dim = kwargs.pop("input_dim", None)
        batch_size = kwargs.pop("batch_size", None)
        batch_input_shape = kwargs.pop("batch_input_shape", None)
        batch_shape = kwargs.pop("batch_shape", None)
        initial_weights = kwargs.pop("weights", None)
        for k in list(kwargs):
            if k in _IGNORED_KWARGS:
                kwargs.pop(k)
        if kwargs:
            raise TypeError(f"Unrecognized keyword arguments passed to "
                            f"{type(self).__name__}: {kwargs}")
        if name is not None and (not isinstance(name, str) or "/" in name or not name):
            raise ValueError(f"{type(self).__name__}: name must be a non-empty string "
                             f"without '/', got {name!r}")
        self.name = name or auto_name(to_snake_case(type(self).__name__))
        self._dtype = standardize_dtype(dtype)
        self._trainable = bool(trainable)
        self.built = False
        self._trainable_variables: list[Variable] = []
        self._non_trainable_variables: list[Variable] = []
        self._inbound_nodes: list[Node] = []
        self._build_input_shape = None
        self._initial_weights = initial_weights
        self.input_spec = None
        self.supports_masking = False
        self.activity_regularizer = get_regularizer(activity_regularizer)
        # Keras: ``input_shape=``/``input_dim=``/``batch_size=`` on any layer give the
        # batch shape of the InputLayer that a Sequential puts in front of it.
        if input_dim is not None and input_shape is None:
            input_shape = (int(input_dim),)
        if isinstance(input_shape, int):
            input_shape = (input_shape,)
        if batch_shape is None:
            batch_shape = batch_input_shape
        if batch_shape is not None:
            self._input_shape_arg = tuple(batch_shape)
        elif input_shape is not None:
            self._input_shape_arg = (batch_size,) + tuple(input_shape)
        else:
            self._input_shape_arg = None

    # -- description --------------------------------------------------------------------
    @property
    def _desc(self) -> str:
        return f"{type(self).__name__} '{self.name}'"

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"

    @property
    def dtype(self) -> str:
        return self._dtype

    @property
    def compute_dtype(self) -> str:
        return self._dtype

    @property
    def variable_dtype(self) -> str:
        return self._dtype

    @property
    def dtype_policy(self) -> str:
        return self._dtype

    # -- weights ------------------------------------------------------------------------
    def add_weight(self, *args, **kwargs) -> Variable:
        """Create a weight. Accepts the Keras 3 order ``(shape, initializer, dtype,
        trainable, ...)`` and the Keras 2 order ``(name, shape, dtype, initializer, ...)``;
        keywords are the usual ones (``name``, ``shape``, ``initializer``, ``dtype``,
        ``trainable``, ``regularizer``, ``constraint``)."""
        order3 = ("shape", "initializer", "dtype", "trainable", "autocast", "regularizer",
                  "constraint", "aggregation", "name")
        order2 = ("name", "shape", "dtype", "initializer", "regularizer", "trainable",
                  "constraint")
        order = order2 if args and isinstance(args[0], str) else order3
        for key, val in zip(order, args):
            if key in kwargs:
                raise TypeError(f"add_weight got multiple values for {key!r}")
            kwargs[key] = val
        name = kwargs.pop("name", None)
        shape = kwargs.pop("shape", None)
        initializer = kwargs.pop("initializer", None)
        dtype = kwargs.pop("dtype", None)
        trainable = kwargs.pop("trainable", True)
        regularizer = kwargs.pop("regularizer", None)
        constraint = kwargs.pop("constraint", None)
        for k in ("autocast", "aggregation", "synchronization", "use_resource",
                  "overwrite_with_gradient", "partitioner", "caching_device",
                  "experimental_autocast"):
            kwargs.pop(k, None)
        if kwargs:
            raise TypeError(f"{self._desc}: add_weight got unexpected arguments {sorted(kwargs)}")
        shape = () if shape is None else ((int(shape),) if isinstance(shape, (int, np.integer))
                                          else tuple(int(d) for d in shape))
        dtype = standardize_dtype(dtype or self._dtype)
        if name is None:
            n = len(self._trainable_variables) + len(self._non_trainable_variables)
            name = "variable" if n == 0 else f"variable_{n}"
        if initializer is None:
            initializer = "glorot_uniform" if np.dtype(dtype).kind == "f" else "zeros"
        init = get_initializer(initializer) if not isinstance(initializer, np.ndarray) else None
        if init is None:
            value = np.asarray(initializer, dtype=dtype)
        else:
            value = np.asarray(init(shape, dtype=dtype), dtype=dtype)
        if value.shape != shape:
            raise ShapeError(f"{self._desc}: initializer for weight '{name}' gave shape "
                             f"{value.shape}, expected {shape}")
        trainable = bool(trainable)
        var = Variable(value, name=name, path=f"{self.name}.{name}",
                       trainable=trainable and self._trainable, dtype=dtype)
        var.regularizer = get_regularizer(regularizer)
        var.constraint = get_constraint(constraint)
        (self._trainable_variables if trainable else self._non_trainable_variables).append(var)
        return var

    add_variable = add_weight

    def __setattr__(self, name, value):
        # Remember attributes that hold (or may later hold) sublayers, so collecting
        # weights walks a few references instead of every attribute of every layer.
        if name not in _UNTRACKED_ATTRS and isinstance(value, (Layer, list, tuple, dict)):
            self.__dict__.setdefault("_tracked", {})[name] = value
        else:
            tracked = self.__dict__.get("_tracked")
            if tracked is not None and name in tracked:
                del tracked[name]
        object.__setattr__(self, name, value)

    def _sublayers(self) -> list["Layer"]:
        """Direct sublayers, in attribute-assignment order (lists/dicts of layers count)."""
        tracked = self.__dict__.get("_tracked")
        if not tracked:
            return []
        out: list[Layer] = []
        seen: set[int] = set()

        def take(v):
            if isinstance(v, Layer):
                if id(v) not in seen and v is not self:
                    seen.add(id(v))
                    out.append(v)
            elif isinstance(v, (list, tuple)):
                for x in v:
                    take(x)
            elif isinstance(v, dict):
                for x in v.values():
                    take(x)

        for v in tracked.values():
            take(v)
        return out

    def _all_weights(self, seen: set[int]) -> list[Variable]:
        """Own weights (created trainable first, then non-trainable), then sublayers'."""
        out = []
        for v in self._trainable_variables + self._non_trainable_variables:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
        for layer in self._sublayers():
            out.extend(layer._all_weights(seen))
        return out

    @property
    def weights(self) -> list[Variable]:
        return self._all_weights(set())

    variables = weights

    @property
    def trainable_weights(self) -> list[Variable]:
        if not self.trainable:
            return []
        return [v for v in self.weights if v.trainable]

    trainable_variables = trainable_weights

    @property
    def non_trainable_weights(self) -> list[Variable]:
        if not self.trainable:
            return self.weights
        return [v for v in self.weights if not v.trainable]

    non_trainable_variables = non_trainable_weights

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool):
        # Keras 3: the flag propagates to the layer's own (created-trainable) variables and
        # to every sublayer, so ``Variable.trainable`` always tells what the optimizer sees.
        value = bool(value)
        self._trainable = value
        for v in self._trainable_variables:
            v.trainable = value
        for layer in self._sublayers():
            layer.trainable = value

    def get_weights(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights) -> None:
        params = self.weights
        weights = list(weights)
        if len(weights) != len(params):
            raise ShapeError(
                f"{self._desc}: set_weights expects {len(params)} weight array(s) "
                f"({', '.join(v.path for v in params) or 'the layer has no weights'}"
                f"{'' if self.built else '; the layer is not built yet'}), "
                f"got {len(weights)}")
        arrays = []
        for var, w in zip(params, weights):
            a = np.asarray(w)
            if a.shape != var.shape:
                raise ShapeError(f"{self._desc}: weight '{var.path}' expects shape "
                                 f"{var.shape}, got {a.shape}")
            arrays.append(a)
        for var, a in zip(params, arrays):   # all checked first: no half-assigned layer
            var.assign(a.astype(var.value.dtype, copy=False))

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(f"You tried to call `count_params` on {self._desc}, but the "
                             f"layer isn't built. You can build it manually via: "
                             f"`{self.name}.build(input_shape)`.")
        return int(sum(int(np.prod(v.shape)) for v in self.weights))

    def add_loss(self, loss) -> None:
        """Inside a trace: add a scalar to the training loss (Keras ``add_loss``)."""
        ctx = current_trace()
        if ctx is None:
            raise RuntimeError(f"{self._desc}: add_loss is only meaningful while the model "
                               f"is traced (inside call)")
        ctx.losses.append(loss)

    def _weight_regularization_losses(self) -> list:
        """Inside a trace: one scalar per trainable weight with a regularizer (Keras adds
        these to the loss)."""
        ctx = current_trace()
        if ctx is None:
            raise RuntimeError("_weight_regularization_losses needs an active TraceContext")
        return [v.regularizer(ctx.value_of(v)) for v in self.trainable_weights
                if v.regularizer is not None]

    # -- build --------------------------------------------------------------------------
    def build(self, input_shape=None):
        self.built = True

    def _maybe_build(self, shapes, flat_shapes):
        if self.built:
            return
        self._check_input_shapes(flat_shapes)        # rank errors before build's own
        self.build(shapes)
        self._build_input_shape = shapes
        self.built = True
        if self._initial_weights is not None:
            w, self._initial_weights = self._initial_weights, None
            self.set_weights(w)

    def get_build_config(self):
        if self._build_input_shape is not None:
            return {"input_shape": _jsonable_shape(self._build_input_shape)}
        return None

    def build_from_config(self, config):
        if config and config.get("input_shape") is not None:
            shapes = _shape_from_json(config["input_shape"])
            flat = _flat_shapes(shapes)
            self._maybe_build(shapes, flat)

    def _check_input_shapes(self, flat_shapes: list[tuple]):
        """Raise ShapeError naming the layer when inputs do not fit ``input_spec``."""
        spec = self.input_spec
        if spec is None:
            return
        specs = spec if isinstance(spec, (list, tuple)) else [spec]
        if len(specs) == 1 and len(flat_shapes) > 1:
            specs = specs * len(flat_shapes)
        if len(specs) != len(flat_shapes):
            raise ShapeError(f"{self._desc}: expected {len(specs)} input(s), got "
                             f"{len(flat_shapes)}")
        for i, (s, shape) in enumerate(zip(specs, flat_shapes)):
            if s is None:
                continue
            which = "" if len(flat_shapes) == 1 else f" {i}"
            r = len(shape)
            hint = f" {s.rank_hint}" if s.rank_hint else ""
            where = f"(input{which} shape {shape_str(shape)})"
            if s.ndim is not None and r != s.ndim:
                raise ShapeError(f"{self._desc}: expected input{which} of rank {s.ndim}{hint}, "
                                 f"got rank {r} {where}")
            if s.min_ndim is not None and r < s.min_ndim:
                raise ShapeError(f"{self._desc}: expected input{which} of rank >= "
                                 f"{s.min_ndim}{hint}, got rank {r} {where}")
            if s.max_ndim is not None and r > s.max_ndim:
                raise ShapeError(f"{self._desc}: expected input{which} of rank <= "
                                 f"{s.max_ndim}{hint}, got rank {r} {where}")
            for axis, size in s.axes.items():
                if -r <= axis < r:
                    got = shape[axis]
                    if got is not None and got != size:
                        raise ShapeError(f"{self._desc}: expected input{which} "
                                         f"{_axis_words(axis)} {size}, got {got} {where}")
            if s.shape is not None:
                for a, (want, got) in enumerate(zip(s.shape, shape)):
                    if want is not None and got is not None and want != got:
                        raise ShapeError(f"{self._desc}: expected input{which} shape "
                                         f"{shape_str(s.shape)}, got {shape_str(shape)}")

    # -- call ---------------------------------------------------------------------------
    def call(self, inputs, *args, **kwargs):
        return inputs

    def __call__(self, *args, **kwargs):
        if not args:
            if "inputs" in kwargs:
                args = (kwargs.pop("inputs"),)
            else:
                raise TypeError(f"{self._desc} must be called with at least one input")
        training = kwargs.pop("training", None)
        if "mask" in kwargs and not self._call_has_mask_arg:
            kwargs.pop("mask")     # Keras passes masks only to layers that take them
        leaves = flatten((list(args), kwargs))
        if any(isinstance(x, KerasTensor) for x in leaves):
            return self._call_symbolic(args, kwargs, training)
        if any(isinstance(x, (Value, Variable)) for x in leaves):
            return self._call_traced(args, kwargs, training)
        return self._call_eager(args, kwargs, training)

    # traced: inputs are IR values of the active trace
    def _call_traced(self, args, kwargs, training):
        ctx = current_trace()
        if ctx is None:
            raise RuntimeError(f"{self._desc} called on graph values outside a TraceContext")
        first = args[0]
        if self._cast_inputs:
            first = map_structure(self._autocast, first)
        shapes = map_structure(_batchless_shape, first)
        flat_shapes = [_batchless_shape(v) for v in flatten(first) if _is_tensor(v)]
        self._maybe_build(shapes, flat_shapes)
        self._check_input_shapes(flat_shapes)
        if training is None:
            training = ctx.training
        kw = dict(kwargs)
        if self._call_has_training_arg:
            kw["training"] = bool(training)
        try:
            outputs = self.call(first, *args[1:], **kw)
        except (ShapeError, DTypeError) as e:
            if getattr(e, "layer_name", None) is not None:
                raise
            # An op's shape rule fired: say which layer and inputs it was (once: a model's
            # own input check already names it).
            msg = str(e) if str(e).startswith(f"{self._desc}:") else f"{self._desc}: {e}"
            err = type(e)(f"{msg} (input shape(s) "
                          f"{', '.join(shape_str(s) for s in flat_shapes)})")
            err.layer_name = self.name
            raise err from e
        if self.activity_regularizer is not None:
            for o in flatten(outputs):
                if isinstance(o, Value):
                    ctx.losses.append(self.activity_regularizer(o))
        return outputs

    def _autocast(self, v):
        if isinstance(v, Value):
            want = DType.of(self._dtype)
            if v.dtype != want and want.is_float:
                from graphc.frontend import ops
                return ops.cast(v, want)
        return v

    # eager: numpy in, numpy out (through the reference interpreter)
    def _call_eager(self, args, kwargs, training):
        from graphc.frontend.seeding import next_seed
        from graphc.ir.interpreter import interpret

        first = args[0]
        if isinstance(first, (list, tuple)) and first and all(
                isinstance(a, np.ndarray) for a in first):
            arrays = [np.asarray(a) for a in first]
        elif isinstance(first, dict):
            arrays = first
        else:
            arrays = np.asarray(first)
        if self._cast_inputs:
            arrays = map_structure(lambda a: np.asarray(a, dtype=self._dtype)
                                   if np.asarray(a).dtype != np.dtype(self._dtype) else
                                   np.asarray(a), arrays)
        else:
            arrays = map_structure(_default_array, arrays)
        g = Graph(f"{self.name}_eager")
        seed = g.add_input("seed", TensorType((), DType.i64))
        step = g.add_input("step", TensorType((), DType.i64))
        flat = flatten(arrays)
        vals = [g.add_input(f"x{i}", TensorType.of(a)) for i, a in enumerate(flat)]
        with TraceContext(g, training=bool(training), seed=seed, step=step) as ctx:
            out = self(pack_as(arrays, vals), *args[1:], training=training, **kwargs)
        out_flat = flatten(out)
        # State the call updated (BatchNormalization's moving statistics in training mode)
        # is written back, as a Keras eager call assigns it.
        updates = list(ctx.state_updates.items())
        g.set_outputs([o if isinstance(o, Value) else g.builder.const(o) for o in out_flat]
                      + [ctx.value_of(u) if isinstance(u, Variable) else u
                         for _, u in updates])
        by_param = {val: var for var, val in ctx.var_values.items()}
        params = [by_param[p].value for p in g.params]
        res = interpret(g, [np.array(next_seed(), np.int64), np.array(0, np.int64)] + flat,
                        params)
        for (var, _), new in zip(updates, res[len(out_flat):]):
            var.assign(new)
        return pack_as(out, res[:len(out_flat)])

    # symbolic: KerasTensors in, KerasTensors out, a node recorded
    def _call_symbolic(self, args, kwargs, training):
        first = args[0]
        flat_in = [t for t in flatten(first) if isinstance(t, KerasTensor)]
        shapes = map_structure(lambda t: t.shape if isinstance(t, KerasTensor) else t, first)
        flat_shapes = [t.shape for t in flat_in]
        self._maybe_build(shapes, flat_shapes)
        self._check_input_shapes(flat_shapes)
        spec = self.compute_output_spec(*args, training=training, **kwargs)
        outputs = map_structure(
            lambda s: KerasTensor(s.shape, s.dtype) if isinstance(s, KerasTensor) else s, spec)
        call_kwargs = dict(kwargs)
        if training is not None:
            call_kwargs["training"] = training
        Node(self, args, call_kwargs, outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        """Output shape(s) for ``input_shape`` (``None`` for unknown dims). The default
        builds the layer if needed and traces ``call`` (see ``compute_output_spec``)."""
        if isinstance(input_shape, list) and input_shape and isinstance(input_shape[0],
                                                                          (list, tuple)):
            kts = [KerasTensor(s, self._dtype) for s in input_shape]
        elif isinstance(input_shape, dict):
            kts = {k: KerasTensor(s, self._dtype) for k, s in input_shape.items()}
        else:
            kts = KerasTensor(input_shape, self._dtype)
        flat = [t.shape for t in flatten(kts)]
        self._maybe_build(map_structure(lambda t: t.shape, kts), flat)
        spec = self._trace_output_spec((kts,), {}, None)
        return map_structure(lambda t: t.shape, spec)

    def compute_output_spec(self, *args, training=None, **kwargs):
        """KerasTensors describing the outputs for KerasTensor inputs. A layer that
        overrides ``compute_output_shape`` is trusted; otherwise ``call`` is traced."""
        if type(self).compute_output_shape is not Layer.compute_output_shape:
            first = args[0]
            shapes = map_structure(lambda t: t.shape, first)
            out = self.compute_output_shape(shapes)
            if isinstance(out, (list, tuple)) and out and isinstance(out[0], (list, tuple)):
                return [KerasTensor(s, self._dtype) for s in out]
            if isinstance(out, dict):
                return {k: KerasTensor(s, self._dtype) for k, s in out.items()}
            return KerasTensor(tuple(out), self._dtype)
        return self._trace_output_spec(args, kwargs, training)

    def _trace_output_spec(self, args, kwargs, training):
        probes = []
        for k in range(2):
            g = Graph(f"{self.name}_shape_probe")
            seed = g.add_input("seed", TensorType((), DType.i64))
            step = g.add_input("step", TensorType((), DType.i64))

            def to_value(t, k=k, g=g):
                if not isinstance(t, KerasTensor):
                    return t
                shape = tuple((_PROBE_BATCH[k] if i == 0 else _PROBE_OTHER[k])
                              if d is None else d for i, d in enumerate(t.shape))
                return g.add_input(t.name, TensorType(shape, DType.of(t.dtype)))

            a = map_structure(to_value, list(args))
            kw = map_structure(to_value, kwargs)
            with TraceContext(g, training=bool(training), seed=seed, step=step):
                out = self(*a, training=training, **kw)
            probes.append(out)
        flat0, flat1 = flatten(probes[0]), flatten(probes[1])

        def spec(v0, v1):
            if not isinstance(v0, Value):
                return v0
            shape = tuple(d0 if d0 == d1 else None for d0, d1 in zip(v0.shape, v1.shape))
            return KerasTensor(shape, v0.dtype.np.name)

        return pack_as(probes[0], [spec(a, b) for a, b in zip(flat0, flat1)])

    # -- graph position (Keras' input/output properties) ---------------------------------
    def _node_attr(self, what: str):
        if not self._inbound_nodes:
            raise AttributeError(f"{self._desc} has never been called and thus has no "
                                 f"defined {what}.")
        return self._inbound_nodes[0]

    @property
    def input(self):
        node = self._node_attr("input")
        t = node.input_tensors
        return t[0] if len(t) == 1 else t

    @property
    def output(self):
        node = self._node_attr("output")
        return node.outputs

    @property
    def input_shape(self):
        node = self._node_attr("input shape")
        t = node.input_tensors
        return t[0].shape if len(t) == 1 else [x.shape for x in t]

    @property
    def output_shape(self):
        node = self._node_attr("output shape")
        t = node.output_tensors
        return t[0].shape if len(t) == 1 else [x.shape for x in t]

    # -- config -------------------------------------------------------------------------
    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable, "dtype": self._dtype}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**dict(config))


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def _normalize_shapes(shapes):
    if isinstance(shapes, dict):
        return {k: _normalize_shapes(v) for k, v in shapes.items()}
    if isinstance(shapes, (list, tuple)) and shapes and isinstance(shapes[0], (list, tuple)):
        return [tuple(s) for s in shapes]
    if isinstance(shapes, (list, tuple)):
        return tuple(shapes)
    return shapes


def _build_wrapper(build):
    """Keras records what a layer was built with (for ``build_config``) and marks it built,
    however ``build`` was reached (directly by the user or on first call)."""
    import functools

    @functools.wraps(build)
    def wrapped(self, *args, **kwargs):
        shape = args[0] if args else kwargs.get("input_shape")
        build(self, *args, **kwargs)
        if shape is not None:
            self._build_input_shape = _normalize_shapes(shape)
        self.built = True

    wrapped._graphc_wrapped = True
    return wrapped


def _is_tensor(v) -> bool:
    return isinstance(v, (Value, Variable, KerasTensor))


def _batchless_shape(v):
    """Shape with the batch dim unknown, as ``build`` sees it (Keras)."""
    if isinstance(v, (Value, Variable)):
        s = tuple(v.shape)
        return (None,) + s[1:] if s else s
    return v


def _default_array(a):
    a = np.asarray(a)
    if a.dtype == np.float64:
        return a.astype(np.float32)
    return a


def _flat_shapes(shapes) -> list[tuple]:
    if isinstance(shapes, dict):
        return [tuple(shapes[k]) for k in sorted(shapes)]
    if isinstance(shapes, list) and shapes and isinstance(shapes[0], (list, tuple)):
        return [tuple(s) for s in shapes]
    return [tuple(shapes)]


def _jsonable_shape(shapes):
    if isinstance(shapes, dict):
        return {k: list(v) for k, v in shapes.items()}
    if isinstance(shapes, list):
        return [list(s) for s in shapes]
    return list(shapes)


def _shape_from_json(s):
    if isinstance(s, dict):
        return {k: tuple(v) for k, v in s.items()}
    if isinstance(s, (list, tuple)) and s and isinstance(s[0], (list, tuple)):
        return [tuple(x) for x in s]
    return tuple(s)


def normalize_tuple(value, n: int, name: str, layer: str) -> tuple[int, ...]:
    """``3`` -> ``(3, 3)``; a length-``n`` sequence of ints as a tuple; else ValueError."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n
    try:
        t = tuple(int(v) for v in value)
    except TypeError:
        raise ValueError(f"{layer}: {name} must be an int or a tuple of {n} ints, "
                         f"got {value!r}") from None
    if len(t) != n:
        raise ValueError(f"{layer}: {name} must be an int or a tuple of {n} ints, got {value!r}")
    return t


def normalize_padding(value, layer: str) -> str:
    p = str(value).lower()
    if p not in ("valid", "same"):
        raise ValueError(f"{layer}: padding must be 'valid' or 'same', got {value!r}")
    return p


def normalize_data_format(value, layer: str) -> str:
    if value is None:
        return "channels_last"
    v = str(value).lower()
    if v == "channels_last":
        return v
    if v == "channels_first":
        raise ValueError(f"{layer}: data_format='channels_first' is not supported; graphc "
                         f"uses channels_last (NHWC): give inputs as (batch, height, width, "
                         f"channels), e.g. np.transpose(x, (0, 2, 3, 1))")
    raise ValueError(f"{layer}: data_format must be 'channels_last' or 'channels_first', "
                     f"got {value!r}")


Layer._call_has_training_arg = False
Layer._call_has_mask_arg = False
