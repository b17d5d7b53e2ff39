"""``Model`` (functional and subclassed), ``Sequential``, and the layer graph they replay.

A functional model is the graph of layer calls (``Node``s) between its input and output
KerasTensors. ``Model.call`` replays that graph on whatever it is given — IR ``Value``s
inside a trace (which is how the compiler sees a model) or numpy arrays (eagerly) — so a
model nests inside another model exactly like a layer. ``Sequential`` is a functional model
that is (re)built as layers are added. The Keras training API (compile/fit/evaluate/
predict/save) is a thin delegation to ``graphc.runtime`` and ``graphc.saving``.
"""
from __future__ import annotations

import json
import re

import numpy as np

from graphc.errors import ShapeError
from graphc.frontend.keras_tensor import KerasTensor, shape_str
from graphc.frontend.layers._tree import flatten, pack_as
from graphc.frontend.layers.base import Layer, Node
from graphc.frontend.layers.input_layer import InputLayer


def _flat_struct(struct) -> list:
    """Model input/output structures flattened with dicts in the user's key order (so
    ``output_names`` follows the dict the user wrote, as the runtime reads it)."""
    if isinstance(struct, dict):
        return [x for v in struct.values() for x in _flat_struct(v)]
    if isinstance(struct, (list, tuple)):
        return [x for v in struct for x in _flat_struct(v)]
    return [struct]


def _pack_struct(struct, leaves: list):
    it = iter(leaves)

    def rec(s):
        if isinstance(s, dict):
            return {k: rec(v) for k, v in s.items()}
        if isinstance(s, (list, tuple)):
            return [rec(v) for v in s]
        return next(it)

    return rec(struct)


def _compatible(expected, actual) -> bool:
    return len(expected) == len(actual) and all(
        e is None or a is None or e == a for e, a in zip(expected, actual))


# --------------------------------------------------------------------------------------
# The layer graph
# --------------------------------------------------------------------------------------

class LayerGraph:
    """Nodes between ``inputs`` and ``outputs`` (flat lists of KerasTensors), in an
    execution order that is also Keras' layer order: by depth from the outputs, deepest
    first, ties in discovery order."""

    def __init__(self, inputs: list[KerasTensor], outputs: list[KerasTensor], desc: str):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        ids = [id(t) for t in self.inputs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{desc}: the same input tensor is given twice in `inputs`")
        input_ids = set(ids)

        def node_of(t: KerasTensor) -> Node:
            h = t._keras_history
            if h is None:
                raise ValueError(f"{desc}: tensor {t.name!r} was not produced by a layer; "
                                 f"model inputs must come from graphc.Input(...)")
            return h.layer._inbound_nodes[h.node_index]

        discovered: dict[int, int] = {}        # id(node) -> pre-order index
        layer_index: dict[int, int] = {}       # id(layer) -> pre-order index
        post: list[Node] = []                  # post-order: parents before children
        done: set[int] = set()
        nodes_by_id: dict[int, Node] = {}
        for t in self.outputs:
            if not isinstance(t, KerasTensor):
                raise TypeError(f"{desc}: outputs must be KerasTensors, got "
                                f"{type(t).__name__}")
            stack = [(node_of(t), False)]
            while stack:
                node, expanded = stack.pop()
                nid = id(node)
                if expanded:
                    if nid not in done:
                        done.add(nid)
                        post.append(node)
                    continue
                if nid in done:
                    continue
                if nid not in discovered:
                    discovered[nid] = len(discovered)
                    nodes_by_id[nid] = node
                    layer_index.setdefault(id(node.layer), len(layer_index))
                stack.append((node, True))
                if node.is_input:
                    if not any(id(o) in input_ids for o in node.output_tensors):
                        raise ValueError(
                            f"{desc}: graph disconnected: the model needs input "
                            f"'{node.layer.name}' (shape {shape_str(node.output_tensors[0].shape)}), "
                            f"which is not among its inputs "
                            f"[{', '.join(repr(i.name) for i in self.inputs)}]")
                    continue
                for x in reversed(node.input_tensors):
                    if id(x) in input_ids and not isinstance(node_of(x).layer, InputLayer):
                        continue          # an intermediate tensor used as a model input
                    parent = node_of(x)
                    if id(parent) not in done:
                        stack.append((parent, False))
        for t in self.inputs:
            if not isinstance(t, KerasTensor):
                raise TypeError(f"{desc}: inputs must be KerasTensors (from graphc.Input), "
                                f"got {type(t).__name__}")
            n = node_of(t)
            if id(n) not in done and isinstance(n.layer, InputLayer):
                # an input the outputs do not use: Keras keeps it (and its InputLayer)
                discovered[id(n)] = len(discovered)
                layer_index.setdefault(id(n.layer), len(layer_index))
                done.add(id(n))
                post.insert(0, n)

        # Depth: outputs' nodes 0; a parent is deeper than every consumer.
        depth: dict[int, int] = {}
        for node in reversed(post):
            d = depth.setdefault(id(node), 0)
            if node.is_input:
                continue
            for x in node.input_tensors:
                if id(x) in input_ids and not isinstance(node_of(x).layer, InputLayer):
                    continue
                p = node_of(x)
                depth[id(p)] = max(depth.get(id(p), 0), d + 1)
        topo = {id(n): i for i, n in enumerate(post)}
        self.nodes = sorted(post, key=lambda n: (-depth[id(n)], topo[id(n)]))
        self.node_ids = {id(n) for n in self.nodes}
        self.depth = depth

        layer_depth: dict[int, int] = {}
        layers_by_id: dict[int, Layer] = {}
        for n in self.nodes:
            lid = id(n.layer)
            layers_by_id[lid] = n.layer
            layer_depth[lid] = max(layer_depth.get(lid, 0), depth[id(n)])
        self.layers: list[Layer] = sorted(
            layers_by_id.values(),
            key=lambda l: (-layer_depth[id(l)], layer_index.get(id(l), 0)))

    def run(self, values: list, training=None) -> list:
        """Replay the graph on ``values`` (one per input): IR Values inside a trace."""
        env = {id(t): v for t, v in zip(self.inputs, values)}

        def sub(x):
            return env[id(x)] if isinstance(x, KerasTensor) else x

        for node in self.nodes:
            if node.is_input or all(id(t) in env for t in node.output_tensors):
                continue
            args = pack_as(list(node.call_args), [sub(x) for x in flatten(list(node.call_args))])
            kwargs = pack_as(node.call_kwargs, [sub(x) for x in flatten(node.call_kwargs)])
            if training is not None and node.layer._call_has_training_arg:
                kwargs["training"] = training
            out = node.layer(*args, **kwargs)
            for t, v in zip(node.output_tensors, flatten(out)):
                env[id(t)] = v
        return [env[id(t)] for t in self.outputs]


# --------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------

_COMPILE_LEGACY_KWARGS = {"sample_weight_mode", "auto_scale_loss", "target_tensors",
                          "distribute", "experimental_run_tf_function"}


class Model(Layer):
    """``Model(inputs, outputs, name=None)`` (functional) or a subclass with ``call``."""

    # Per-input dtypes come from the model's Input()s, not the layer dtype.
    _cast_inputs = False

    def __new__(cls, *args, **kwargs):
        if cls is Model and (args or "inputs" in kwargs or "outputs" in kwargs):
            cls = Functional
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        inputs = kwargs.pop("inputs", None)
        outputs = kwargs.pop("outputs", None)
        if args:
            inputs = args[0]
            if len(args) > 1:
                outputs = args[1]
            if len(args) > 2:
                raise TypeError("Model(inputs, outputs, name=None): too many positional "
                                "arguments")
        super().__init__(**kwargs)
        self._graph: LayerGraph | None = None
        self._inputs_struct = None
        self._outputs_struct = None
        # Training configuration (set by compile; used by graphc.runtime).
        self.compiled = False
        self.optimizer = None
        self.loss = None
        self.metrics_config = None
        self.loss_weights = None
        self.weighted_metrics = None
        self.run_eagerly = None
        self.jit_compile = None
        self.steps_per_execution = 1
        self.compile_target = None
        self._compile_config = None
        self._compiled_trainable_weights = None
        self._executable = None
        self.stop_training = False
        self.history = None
        if inputs is not None or outputs is not None:
            if inputs is None or outputs is None:
                raise ValueError(f"{self._desc}: a functional model needs both `inputs` and "
                                 f"`outputs`")
            self._init_graph(inputs, outputs)

    def _init_graph(self, inputs, outputs):
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(outputs, tuple):
            outputs = list(outputs)
        for t in _flat_struct(inputs) + _flat_struct(outputs):
            if not isinstance(t, KerasTensor):
                raise TypeError(f"{self._desc}: inputs and outputs must be KerasTensors "
                                f"(from graphc.Input(...) and layer calls), got "
                                f"{type(t).__name__}")
        graph = LayerGraph(_flat_struct(inputs), _flat_struct(outputs), self._desc)
        seen: dict[str, int] = {}
        for layer in graph.layers:
            seen[layer.name] = seen.get(layer.name, 0) + 1
        dup = sorted(n for n, c in seen.items() if c > 1)
        if dup:
            # Names are weight paths in the IR and in saved files: they must not collide.
            raise ValueError(f"{self._desc}: the name(s) {dup} are used by more than one "
                             f"layer in the model. All layer names should be unique.")
        self._graph = graph
        self._inputs_struct = inputs
        self._outputs_struct = outputs
        self.built = True
        shapes = [t.shape for t in self._graph.inputs]
        self._build_input_shape = shapes[0] if len(shapes) == 1 else shapes

    # -- structure ----------------------------------------------------------------------
    def _require_graph(self, what: str) -> LayerGraph:
        if self._graph is None:
            raise AttributeError(f"{self._desc} has no {what} yet: it is not built (give "
                                 f"its first layer an input_shape, start it with Input(...), "
                                 f"or call/fit it on data)")
        return self._graph

    @property
    def inputs(self) -> list[KerasTensor]:
        return list(self._require_graph("inputs").inputs)

    @property
    def outputs(self) -> list[KerasTensor]:
        return list(self._require_graph("outputs").outputs)

    @property
    def input(self):
        self._require_graph("input")
        s = self._inputs_struct
        return s[0] if isinstance(s, list) and len(s) == 1 else s

    @property
    def output(self):
        self._require_graph("output")
        s = self._outputs_struct
        return s[0] if isinstance(s, list) and len(s) == 1 else s

    @property
    def input_names(self) -> list[str]:
        if isinstance(self._inputs_struct, dict):
            return list(self._inputs_struct)
        return [t._keras_history.layer.name if t._keras_history else t.name
                for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        if isinstance(self._outputs_struct, dict):
            return list(self._outputs_struct)
        return [t._keras_history.layer.name for t in self.outputs]

    @property
    def input_shape(self):
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def input_spec(self):
        return None

    @input_spec.setter
    def input_spec(self, value):
        pass   # a model checks its inputs against its Input()s (see _flatten_call_inputs)

    @property
    def layers(self) -> list[Layer]:
        if self._graph is not None:
            return list(self._graph.layers)
        return Layer._sublayers(self)

    def _sublayers(self) -> list[Layer]:
        return self.layers

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        if index is not None and name is not None:
            raise ValueError(f"Provide only a layer name or a layer index. Received: "
                             f"index={index}, name={name}.")
        layers = self.layers
        if index is not None:
            if not -len(layers) <= index < len(layers):
                raise ValueError(f"Was asked to retrieve layer at index {index} but model "
                                 f"'{self.name}' only has {len(layers)} layers.")
            return layers[index]
        if name is not None:
            for layer in layers:
                if layer.name == name:
                    return layer
            raise ValueError(f"No such layer: {name}. Existing layers are: "
                             f"{[l.name for l in layers]}.")
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")

    # -- calling ------------------------------------------------------------------------
    def build(self, input_shape=None):
        if self._graph is not None:
            self.built = True
            return
        if type(self).call is Model.call:
            raise ValueError(f"{self._desc} has no layer graph and no call(): create it as "
                             f"Model(inputs, outputs) or subclass Model and define call()")
        if input_shape is None:
            raise ValueError(f"{self._desc}: build() needs an input_shape")
        # Subclassed model: trace call once so every sublayer builds its weights.
        self.built = True
        self._build_input_shape = input_shape
        if isinstance(input_shape, list) and input_shape and isinstance(input_shape[0],
                                                                          (list, tuple)):
            kts = [KerasTensor(s) for s in input_shape]
        else:
            kts = KerasTensor(input_shape)
        self._trace_output_spec((kts,), {}, False)

    def _flatten_call_inputs(self, inputs) -> list:
        """Match call inputs (one tensor, a list, or a dict by input name) to the model's
        inputs, check their shapes and cast to the inputs' dtypes."""
        from graphc.frontend import ops
        graph = self._graph
        names = self.input_names
        if isinstance(inputs, dict):
            missing = [n for n in names if n not in inputs]
            if missing:
                raise ValueError(f"{self._desc}: missing input(s) {missing}; the model's "
                                 f"inputs are {names}, got keys {sorted(inputs)}")
            vals = [inputs[n] for n in names]
        elif isinstance(inputs, (list, tuple)):
            vals = _flat_struct(list(inputs))
        else:
            vals = [inputs]
        if len(vals) != len(graph.inputs):
            raise ShapeError(f"{self._desc}: expects {len(graph.inputs)} input(s) "
                             f"({', '.join(names)}), got {len(vals)}")
        out = []
        for kt, v, n in zip(graph.inputs, vals, names):
            shape = (None,) + tuple(v.shape[1:]) if len(v.shape) else ()
            if not _compatible(kt.shape, shape):
                raise ShapeError(f"{self._desc}: input '{n}' expects shape "
                                 f"{shape_str(kt.shape)}, got {shape_str(shape)}")
            out.append(ops.cast(v, kt.dtype))
        return out

    def call(self, inputs, training=None, mask=None):
        if self._graph is None:
            raise NotImplementedError(f"{self._desc}: a subclassed Model must implement "
                                      f"call()")
        flat = self._flatten_call_inputs(inputs)
        outs = self._graph.run(flat, training)
        return _pack_struct(self._outputs_struct, outs)

    #: ``model(x)`` on arrays runs the compiled model once the same input shapes have come
    #: back this many times: a one-off call stays eager (no compile), a loop of single-sample
    #: calls (Keras' advice for small inputs) gets the batch-1 inference path (W1: ~20 us a
    #: call instead of ~380 us of tracing and interpreting).
    EAGER_CALLS_BEFORE_COMPILED = 2

    def _call_eager(self, args, kwargs, training):
        key = self._compiled_call_key(args, kwargs, training)
        if key is not None:
            counts = self.__dict__.setdefault("_eager_call_counts", {})
            seen = counts.get(key, 0)
            if seen >= self.EAGER_CALLS_BEFORE_COMPILED:
                return self._get_executable().predict_on_batch(args[0])
            counts[key] = seen + 1
        return super()._call_eager(args, kwargs, training)

    def _compiled_call_key(self, args, kwargs, training):
        """The input signature of an inference call the compiled model can answer with
        the same result structure (arrays in, one array or a list out), else None:
        training-mode calls (dropout, BatchNormalization updates), extra arguments, dict
        inputs or outputs and subclassed models keep the eager path."""
        if training or len(args) != 1 or kwargs or self._graph is None or \
                isinstance(self._outputs_struct, (dict, tuple)):
            return None
        x = args[0]
        arrays = [x] if isinstance(x, np.ndarray) else \
            list(x) if isinstance(x, list) and isinstance(self._inputs_struct, list) else None
        if not arrays or not all(isinstance(a, np.ndarray) for a in arrays):
            return None
        return tuple((a.shape, a.dtype.str) for a in arrays)

    def _check_input_arrays(self, arrays) -> None:
        """Check numpy inputs before the runtime batches them: count and per-sample shape
        against each Input, naming the input layer. Builds a deferred Sequential."""
        if isinstance(arrays, dict):
            names = self.input_names if self._graph is not None else sorted(arrays)
            arrays = [arrays[n] for n in names if n in arrays]
        elif not isinstance(arrays, (list, tuple)):
            arrays = [arrays]
        arrays = list(arrays)
        if not self.built and isinstance(self, Sequential) and arrays:
            self.build((None,) + tuple(np.shape(arrays[0])[1:]))
        if self._graph is None:
            return
        inputs = self._graph.inputs
        names = self.input_names
        if len(arrays) != len(inputs):
            raise ShapeError(f"{self._desc} expects {len(inputs)} input array(s) "
                             f"({', '.join(names)}), got {len(arrays)}")
        for kt, a, n in zip(inputs, arrays, names):
            shape = tuple(np.shape(a))
            if _compatible(kt.shape, (None,) + shape[1:]) and len(shape) == len(kt.shape):
                continue
            hint = ""
            exp = kt.shape
            if (len(shape) == len(exp) == 2 and exp[1] is not None and shape[0] == exp[1]
                    and shape[1] != exp[1]):
                hint = (f"; the array looks transposed: samples go along the first axis, "
                        f"so it should be ({shape[1]}, {shape[0]})")
            raise ShapeError(f"{self._desc}: input '{n}' expects arrays of shape "
                             f"{shape_str(exp)} (samples first), got an array of shape "
                             f"{shape}{hint}")

    # -- training API (delegations) -----------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None,
                weighted_metrics=None, run_eagerly=None, steps_per_execution=1,
                jit_compile=None, target=None, **kwargs):
        unknown = set(kwargs) - _COMPILE_LEGACY_KWARGS
        if unknown:
            raise TypeError(f"compile() got unexpected keyword arguments {sorted(unknown)}")
        from graphc.frontend import optimizers
        self._compile_config = {"optimizer": optimizer, "loss": loss, "metrics": metrics,
                                "loss_weights": loss_weights,
                                "weighted_metrics": weighted_metrics,
                                "run_eagerly": run_eagerly,
                                "steps_per_execution": steps_per_execution,
                                "jit_compile": jit_compile}
        self.optimizer = optimizers.get(optimizer)
        self.loss = loss
        self.metrics_config = metrics
        self.loss_weights = loss_weights
        self.weighted_metrics = weighted_metrics
        self.run_eagerly = run_eagerly
        self.jit_compile = jit_compile
        self.steps_per_execution = steps_per_execution
        self.compile_target = target
        self.compiled = True
        self._executable = None
        # Keras: what is trainable is fixed when compile() is called (GANs freeze the
        # discriminator after compiling it and still train it through its own fit).
        self._compiled_trainable_weights = list(self.trainable_weights) if self.built else None

    def get_compile_config(self):
        if not self.compiled or self._compile_config is None:
            return None
        cfg = dict(self._compile_config)
        opt = cfg["optimizer"]
        if not isinstance(opt, (str, dict)):
            try:
                from graphc.frontend import optimizers
                cfg["optimizer"] = optimizers.serialize(self.optimizer)
            except (ImportError, AttributeError):
                pass
        return cfg

    def compile_from_config(self, config):
        self.compile(**{k: v for k, v in dict(config).items()
                        if k in ("optimizer", "loss", "metrics", "loss_weights",
                                 "weighted_metrics", "run_eagerly", "steps_per_execution",
                                 "jit_compile")})

    def _training_weights(self) -> list:
        """The weights the optimizer updates: those trainable at compile() time (Keras),
        or the current trainable weights when the model was built after compile()."""
        if self._compiled_trainable_weights is not None:
            return list(self._compiled_trainable_weights)
        return self.trainable_weights

    def _get_executable(self):
        if self._executable is None:
            from graphc.runtime import compile_model
            self._executable = compile_model(self, target=self.compile_target)
        return self._executable

    def fit(self, *args, **kwargs):
        return self._get_executable().fit(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        return self._get_executable().evaluate(*args, **kwargs)

    def predict(self, *args, **kwargs):
        return self._get_executable().predict(*args, **kwargs)

    def train_on_batch(self, *args, **kwargs):
        return self._get_executable().train_on_batch(*args, **kwargs)

    def test_on_batch(self, *args, **kwargs):
        return self._get_executable().test_on_batch(*args, **kwargs)

    def predict_on_batch(self, *args, **kwargs):
        return self._get_executable().predict_on_batch(*args, **kwargs)

    # Keras 2 names some tutorials still use.
    def fit_generator(self, *args, **kwargs):
        return self.fit(*args, **kwargs)

    def evaluate_generator(self, *args, **kwargs):
        return self.evaluate(*args, **kwargs)

    def predict_generator(self, *args, **kwargs):
        return self.predict(*args, **kwargs)

    def save(self, filepath, *args, **kwargs):
        from graphc.saving import save_model
        return save_model(self, filepath, *args, **kwargs)

    def save_weights(self, filepath, *args, **kwargs):
        from graphc.saving import save_weights
        return save_weights(self, filepath, *args, **kwargs)

    def load_weights(self, filepath, *args, **kwargs):
        from graphc.saving import load_weights
        return load_weights(self, filepath, *args, **kwargs)

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        from graphc.frontend.summary import print_summary
        return print_summary(self, line_length=line_length, positions=positions,
                             print_fn=print_fn, expand_nested=expand_nested,
                             show_trainable=show_trainable, layer_range=layer_range)

    # -- config -------------------------------------------------------------------------
    def get_config(self) -> dict:
        if self._graph is None:
            return super().get_config()
        return functional_config(self)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if "layers" in config and "input_layers" in config:
            return functional_from_config(cls if cls is not Model else Functional, config,
                                          custom_objects)
        return cls(**config)

    def to_json(self, **kwargs) -> str:
        from graphc.frontend.layers.serialization import serialize
        return json.dumps(serialize(self), **kwargs)


class Functional(Model):
    """The class of ``Model(inputs, outputs)`` (Keras 3 names it ``Functional``)."""


# --------------------------------------------------------------------------------------
# Functional config (Keras 3 layout) and its inverse
# --------------------------------------------------------------------------------------

def _kt_config(t: KerasTensor, node_map: dict) -> dict:
    layer, node_index, tensor_index = t._keras_history
    return {"class_name": "__keras_tensor__",
            "config": {"shape": list(t.shape), "dtype": t.dtype,
                       "keras_history": [layer.name, node_map[(id(layer), node_index)],
                                         tensor_index]}}


def _serialize_arg(x, node_map):
    if isinstance(x, KerasTensor):
        return _kt_config(x, node_map)
    if isinstance(x, (list, tuple)):
        return [_serialize_arg(v, node_map) for v in x]
    if isinstance(x, dict):
        return {k: _serialize_arg(v, node_map) for k, v in x.items()}
    if isinstance(x, np.generic):
        return x.item()
    return x


def functional_config(model: Model) -> dict:
    from graphc.frontend.layers.serialization import serialize
    graph = model._graph
    # Keras renumbers each layer's nodes counting only those inside this model.
    node_map: dict[tuple[int, int], int] = {}
    for layer in graph.layers:
        kept = 0
        for i, node in enumerate(layer._inbound_nodes):
            if id(node) in graph.node_ids:
                node_map[(id(layer), i)] = kept
                kept += 1
    layer_configs = []
    for layer in graph.layers:
        cfg = serialize(layer)
        cfg["name"] = layer.name
        inbound = []
        for node in layer._inbound_nodes:
            if id(node) in graph.node_ids and not node.is_input:
                inbound.append({"args": _serialize_arg(list(node.call_args), node_map),
                                "kwargs": _serialize_arg(node.call_kwargs, node_map)})
        cfg["inbound_nodes"] = inbound
        layer_configs.append(cfg)

    def tensor_ref(t):
        layer, ni, ti = t._keras_history
        return [layer.name, node_map[(id(layer), ni)], ti]

    def refs(struct):
        if isinstance(struct, KerasTensor):
            return [tensor_ref(struct)]
        if isinstance(struct, dict):
            return {k: tensor_ref(v) for k, v in struct.items()}
        return [tensor_ref(t) for t in struct]

    return {"name": model.name, "trainable": model.trainable, "layers": layer_configs,
            "input_layers": refs(model._inputs_struct),
            "output_layers": refs(model._outputs_struct)}


class _NotReady(Exception):
    pass


def functional_from_config(cls, config: dict, custom_objects=None):
    """Rebuild a functional model: create each layer, then replay its inbound nodes in an
    order where every argument tensor exists (Keras 2 ``[[name, node, tensor, kw]]`` and
    Keras 3 ``{"args", "kwargs"}`` node forms)."""
    from graphc.frontend.layers.serialization import deserialize
    created: dict[str, Layer] = {}
    pending: dict[str, list] = {}
    order = []
    for ld in config["layers"]:
        name = ld.get("name") or ld.get("config", {}).get("name")
        layer = deserialize(ld, custom_objects)
        created[name] = layer
        order.append(name)
        pending[name] = list(ld.get("inbound_nodes") or [])

    def get_tensor(name, node_index, tensor_index):
        layer = created.get(name)
        if layer is None:
            raise ValueError(f"functional config refers to unknown layer {name!r}")
        if node_index >= len(layer._inbound_nodes):
            raise _NotReady
        return layer._inbound_nodes[node_index].output_tensors[tensor_index]

    def restore(x):
        if isinstance(x, dict):
            if x.get("class_name") == "__keras_tensor__":
                return get_tensor(*x["config"]["keras_history"])
            if x.get("class_name") == "__tuple__":
                return tuple(restore(v) for v in x["config"]["value"])
            return {k: restore(v) for k, v in x.items()}
        if isinstance(x, list):
            return [restore(v) for v in x]
        return x

    def node_call(layer, node_data):
        if isinstance(node_data, dict):           # Keras 3
            args = restore(node_data.get("args", []))
            kwargs = restore(node_data.get("kwargs", {}))
            return layer(*args, **kwargs)
        # Keras 2: a list of [layer_name, node_index, tensor_index, kwargs]
        tensors, kwargs = [], {}
        for entry in node_data:
            tensors.append(get_tensor(entry[0], entry[1], entry[2]))
            if len(entry) > 3 and entry[3]:
                kwargs = dict(entry[3])
        return layer(tensors[0] if len(tensors) == 1 else tensors, **kwargs)

    progress = True
    while any(pending.values()) and progress:
        progress = False
        for name in order:
            nodes = pending[name]
            while nodes:
                try:
                    node_call(created[name], nodes[0])
                except _NotReady:
                    break
                nodes.pop(0)
                progress = True
    if any(pending.values()):
        stuck = [n for n, v in pending.items() if v]
        raise ValueError(f"functional config: cannot connect layers {stuck} (their inputs "
                         f"are never produced)")

    def refs_to_struct(spec):
        if isinstance(spec, (list, tuple)) and len(spec) == 3 and isinstance(spec[0], str):
            return get_tensor(*spec)                   # a leaf: [name, node, tensor]
        if isinstance(spec, dict):
            return {k: refs_to_struct(v) for k, v in spec.items()}
        return [refs_to_struct(v) for v in spec]

    def unwrap(struct):    # Keras writes a single tensor as a list of one
        return struct[0] if isinstance(struct, list) and len(struct) == 1 else struct

    inputs = unwrap(refs_to_struct(config["input_layers"]))
    outputs = unwrap(refs_to_struct(config["output_layers"]))
    model = cls(inputs=inputs, outputs=outputs, name=config.get("name"))
    if config.get("trainable") is False:
        model.trainable = False
    return model


# --------------------------------------------------------------------------------------
# Sequential
# --------------------------------------------------------------------------------------

class Sequential(Model):
    """``Sequential(layers=None, name=None)``: a stack of single-output layers. Built as
    soon as the input shape is known (an ``Input``/``InputLayer`` first, a first layer
    with ``input_shape``/``input_dim``, or a built model first); otherwise on first call,
    ``build(input_shape)`` or fit."""

    def __init__(self, layers=None, trainable=True, name=None, **kwargs):
        super().__init__(trainable=trainable, name=name, **kwargs)
        self._seq_layers: list[Layer] = []
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._maybe_rebuild()

    @property
    def layers(self) -> list[Layer]:
        return [l for l in self._seq_layers if not isinstance(l, InputLayer)]

    def _sublayers(self):
        return self.layers

    def add(self, layer, rebuild=True):
        if isinstance(layer, KerasTensor):
            origin = layer._keras_history.layer if layer._keras_history else None
            if not isinstance(origin, InputLayer):
                raise TypeError(f"{self._desc}: only tensors from graphc.Input(...) can be "
                                f"added to a Sequential model; got {layer!r}")
            layer = origin
        if not isinstance(layer, Layer):
            raise TypeError(f"Only instances of `Layer` can be added to a Sequential model. "
                            f"Received: {layer!r} (of type {type(layer).__name__})")
        if isinstance(layer, InputLayer):
            if self._seq_layers and isinstance(self._seq_layers[0], InputLayer):
                raise ValueError(f"{self._desc} has already been configured to use input "
                                 f"shape {self._seq_layers[0].batch_shape}. You cannot add "
                                 f"a different Input layer to it.")
            if self._seq_layers:
                raise ValueError(f"{self._desc}: an InputLayer can only be its first layer")
        if any(l.name == layer.name for l in self._seq_layers):
            raise ValueError(f"All layers added to a Sequential model should have unique "
                             f"names. Name '{layer.name}' is already the name of a layer "
                             f"in this model. Update the `name` argument to pass a unique "
                             f"name.")
        saved = (list(self._seq_layers), self._graph, self._inputs_struct,
                 self._outputs_struct, self.built, self._build_input_shape)
        if (not self._seq_layers and not isinstance(layer, InputLayer)
                and getattr(layer, "_input_shape_arg", None) is not None):
            self._seq_layers.append(InputLayer(batch_shape=layer._input_shape_arg))
        self._seq_layers.append(layer)
        self._executable = None
        if rebuild:
            try:
                self._maybe_rebuild(new_layer=layer)
            except Exception:
                # Leave the model as it was, so the user can fix the layer and add again.
                (self._seq_layers, self._graph, self._inputs_struct, self._outputs_struct,
                 self.built, self._build_input_shape) = saved
                raise

    def pop(self, rebuild=True):
        if not self.layers:
            raise TypeError(f"{self._desc}: there are no layers in the model.")
        layer = self._seq_layers.pop()
        self._executable = None
        self._graph = None
        self.built = False
        if rebuild:
            self._maybe_rebuild()
        return layer

    def _maybe_rebuild(self, new_layer=None):
        layers = self._seq_layers
        if (new_layer is not None and self._graph is not None and layers
                and layers[-1] is new_layer and len(layers) > 2):
            x = self._call_stacked(new_layer, self._outputs_struct)
            self._init_graph(self._inputs_struct, x)
            return
        self._graph = None
        self.built = False
        if not layers:
            return
        first = layers[0]
        if isinstance(first, InputLayer):
            if len(layers) > 1:
                self.build(first.batch_shape)
        elif (isinstance(first, Model) and first._graph is not None
              and len(first._graph.inputs) == 1 and len(layers) > 1):
            self.build(first._graph.inputs[0].shape)

    def _call_stacked(self, layer, x):
        y = layer(x)
        if not isinstance(y, KerasTensor):
            raise ValueError(f"All layers in a Sequential model should have a single output "
                             f"tensor; {layer._desc} returns several. For multi-output "
                             f"layers, use the functional API.")
        return y

    def build(self, input_shape=None):
        if not self._seq_layers or not self.layers and not isinstance(
                self._seq_layers[0], InputLayer):
            raise ValueError(f"{self._desc} cannot be built because it has no layers. Call "
                             f"`model.add(layer)`.")
        if isinstance(self._seq_layers[0], InputLayer):
            bs = self._seq_layers[0].batch_shape
            if input_shape is not None and not _compatible(bs, tuple(input_shape)):
                raise ShapeError(f"{self._desc}: build() got input shape "
                                 f"{shape_str(input_shape)}, but the model's Input has "
                                 f"shape {shape_str(bs)}")
        else:
            if input_shape is None:
                raise ValueError(f"{self._desc}: build() needs an input_shape, e.g. "
                                 f"model.build((None, 784))")
            if isinstance(input_shape, list) and input_shape and isinstance(
                    input_shape[0], (list, tuple)):
                if len(input_shape) != 1:
                    raise ValueError(f"{self._desc}: a Sequential model has one input, got "
                                     f"{len(input_shape)} input shapes")
                input_shape = input_shape[0]
            self._seq_layers.insert(0, InputLayer(batch_shape=tuple(input_shape)))
        inputs = self._seq_layers[0].output
        x = inputs
        try:
            for layer in self._seq_layers[1:]:
                x = self._call_stacked(layer, x)
        except Exception:
            self._graph = None
            self.built = False
            raise
        self._init_graph(inputs, x)

    def call(self, inputs, training=None, mask=None):
        if self._graph is None:
            shape = (None,) + tuple(inputs.shape[1:])
            self.build(shape)
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        from graphc.frontend.layers.serialization import serialize
        cfg = {"name": self.name, "trainable": self.trainable, "dtype": self._dtype,
               "layers": [serialize(l) for l in self._seq_layers]}
        if self._build_input_shape is not None:
            cfg["build_input_shape"] = list(self._build_input_shape)
        return cfg

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from graphc.frontend.layers.serialization import deserialize
        if isinstance(config, list):                 # Keras 1/2.0: a bare list of layers
            config = {"layers": config}
        config = dict(config)
        model = cls(name=config.get("name"))
        for lc in config.get("layers", []):
            model.add(deserialize(lc, custom_objects))
        bis = config.get("build_input_shape")
        if not model.built and bis:
            model.build(tuple(bis))
        if config.get("trainable") is False:
            model.trainable = False
        return model


# --------------------------------------------------------------------------------------
# Module-level helpers (graphc.models faces)
# --------------------------------------------------------------------------------------

def clone_model(model: Model, input_tensors=None, clone_function=None):
    """A model of the same architecture with freshly initialized weights (Keras). Every
    layer gets a fresh auto name: names are weight paths, so clones must not share them."""
    from graphc.frontend.layers.serialization import deserialize, serialize
    if input_tensors is not None or clone_function is not None:
        raise NotImplementedError("clone_model: input_tensors/clone_function are not "
                                  "supported")
    names: set[str] = set()

    def collect(layer):
        names.add(layer.name)
        subs = layer._seq_layers if isinstance(layer, Sequential) else layer._sublayers()
        for sub in subs:
            collect(sub)

    collect(model)
    cfg = serialize(model)
    cfg["config"] = _rename_config(cfg["config"], names)
    return deserialize(cfg)


def _rename_config(config, names: set[str]):
    from graphc.frontend.layers.base import auto_name, to_snake_case
    mapping: dict[str, str] = {}

    def fresh(name):
        if name not in names:
            return name
        if name not in mapping:
            new = auto_name(to_snake_case(re.sub(r"_\d+$", "", name)))
            while new in names:
                new = auto_name(to_snake_case(re.sub(r"_\d+$", "", name)))
            mapping[name] = new
        return mapping[name]

    def walk(x, key=None):
        if isinstance(x, dict):
            return {k: walk(v, k) for k, v in x.items()}
        if isinstance(x, list):
            if key == "keras_history" or (x and isinstance(x[0], str) and len(x) == 3
                                          and key in ("input_layers", "output_layers", None)):
                return [fresh(x[0])] + x[1:] if x and isinstance(x[0], str) else x
            return [walk(v, key if key in ("input_layers", "output_layers") else None)
                    for v in x]
        if key == "name" and isinstance(x, str):
            return fresh(x)
        return x

    return walk(config)


def model_from_json(json_string: str, custom_objects=None):
    from graphc.frontend.layers.serialization import deserialize
    return deserialize(json.loads(json_string), custom_objects)


def model_from_config(config, custom_objects=None):
    from graphc.frontend.layers.serialization import deserialize
    return deserialize(config, custom_objects)
