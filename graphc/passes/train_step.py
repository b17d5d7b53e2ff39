"""Builds the graphs an executable runs, straight from a Keras-style model:

* ``predict``: inputs → model outputs (inference mode);
* ``test``:    inputs, targets, sample weights → loss and metrics (inference mode);
* ``train``:   the same plus backward and the optimizer update, as ONE graph whose params are
  the model weights and the optimizer state, and whose outputs are the logs followed by the
  new value of every updated state variable (output named by the variable's path).

The gradients of the trainable weights pass through a ``cut {name="gradients"}`` node: the
boundary between "gradients computed" and "update applied" that a data-parallel runtime
would all-reduce across. Frozen weights are params of the train graph that no gradient is
derived for and no output updates.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from graphc.errors import ShapeError
from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import Graph, Value
from graphc.frontend.tracing import TraceContext
from graphc.frontend import ops


@dataclass
class StepGraph:
    """A graph plus what the runtime needs to bind it: which model inputs, targets and
    variables go where, and which outputs are logs and which are new state."""

    kind: str
    graph: Graph
    n_inputs: int
    n_targets: int = 0
    params: list = field(default_factory=list)            # Variables, in graph param order
    log_names: list[str] = field(default_factory=list)    # the first outputs
    state_vars: list = field(default_factory=list)        # Variables updated by outputs after logs


def _model_inputs(model):
    return list(model.inputs)


def _output_names(model) -> list[str]:
    names = getattr(model, "output_names", None)
    if names:
        return list(names)
    return [f"output_{i}" for i in range(len(model.outputs))]


def _unique(seq):
    seen, out = set(), []
    for v in seq:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def _new_graph(kind: str, model, x_types: Sequence[TensorType]):
    g = Graph(kind)
    xs = []
    for spec, t in zip(_model_inputs(model), x_types):
        xs.append(g.add_input(spec.name, t))
    return g, xs


def _bind_params(g: Graph, variables) -> dict:
    return {v: g.add_param(v.path, v.type) for v in variables}


def _trace_model(model, ctx: TraceContext, xs: list[Value], training: bool) -> list[Value]:
    with ctx:
        outs = model(xs if len(xs) > 1 else xs[0], training=training)
    return list(outs) if isinstance(outs, (list, tuple)) else \
        list(outs.values()) if isinstance(outs, dict) else [outs]


# ----------------------------------------------------------------------------- predict

def build_predict_graph(model, x_types: Sequence[TensorType]) -> StepGraph:
    g, xs = _new_graph("predict", model, x_types)
    weights = _unique(model.weights)
    ctx = TraceContext(g, training=False)
    ctx.var_values.update(_bind_params(g, weights))
    outs = _trace_model(model, ctx, xs, training=False)
    g.set_outputs(outs, _output_names(model))
    return StepGraph("predict", g, len(xs), 0, weights, [], [])


# ----------------------------------------------------------------------------- loss

def _per_output(config, names, what):
    """Expand a Keras loss/metrics/loss_weights config to one entry per output."""
    if isinstance(config, dict):
        unknown = set(config) - set(names)
        if unknown:
            raise ValueError(f"{what}: unknown output name(s) {sorted(unknown)}; model outputs "
                             f"are {names}")
        return [config.get(n) for n in names]
    if isinstance(config, (list, tuple)) and len(names) > 1 and what != "metrics":
        if len(config) != len(names):
            raise ValueError(f"{what}: got {len(config)} entries for {len(names)} outputs "
                             f"{names}")
        return list(config)
    if what == "metrics" and isinstance(config, (list, tuple)) and len(names) > 1 and \
            config and all(isinstance(c, (list, tuple)) or c is None for c in config):
        return list(config)
    return [config] * len(names)


def _loss_name(loss) -> str:
    return str(getattr(loss, "name", None) or getattr(loss, "__name__", "") or loss)


def check_target(output_name: str, loss, y: TensorType, pred: TensorType):
    """Reject labels shaped for another loss, naming the output and both shapes."""
    lname = _loss_name(loss).lower()
    sparse = "sparse" in lname
    if y.shape[0] != pred.shape[0]:
        raise ShapeError(f"output '{output_name}': targets have {y.shape[0]} samples in the "
                         f"batch but predictions have {pred.shape[0]}")
    if sparse:
        ok = y.shape in (pred.shape[:-1], pred.shape[:-1] + (1,))
        if not ok:
            raise ShapeError(
                f"output '{output_name}' with loss {lname}: expected integer targets of shape "
                f"{pred.shape[:-1]} (or {pred.shape[:-1] + (1,)}), got {y.shape}")
        return
    if y.shape == pred.shape:
        return
    if pred.shape[-1:] == (1,) and y.shape == pred.shape[:-1]:
        return  # (N,) labels for an (N, 1) output: Keras expands them
    hint = ""
    if y.rank == pred.rank - 1 and y.dtype.is_int:
        hint = " (integer class labels need loss='sparse_categorical_crossentropy')"
    raise ShapeError(f"output '{output_name}' with loss {lname}: expected targets of shape "
                     f"{pred.shape}, got {y.shape}{hint}")


def _losses_and_metrics(model, ys, sws, outs, names):
    """Emit per-output losses, their weighted total and metric means; returns logs."""
    from graphc.frontend import losses as losses_mod, metrics as metrics_mod
    loss_cfg = _per_output(model.loss, names, "loss")
    weight_cfg = _per_output(getattr(model, "loss_weights", None), names, "loss_weights")
    metric_cfg = _per_output(getattr(model, "metrics_config", None) or [], names, "metrics")
    logs: list[tuple[str, Value]] = []
    total = None
    per_output = []
    for name, cfg, w, y, sw, p in zip(names, loss_cfg, weight_cfg, ys, sws, outs):
        if cfg is None:
            continue
        loss = losses_mod.get(cfg)
        check_target(name, loss, y.type, p.type)
        if y.shape != p.shape and not ("sparse" in _loss_name(loss).lower()):
            y = ops.reshape(y, p.shape)
        value = loss(y, p, sample_weight=sw)
        per_output.append((name, value))
        term = value if w is None else ops.multiply(value, float(w))
        total = term if total is None else ops.add(total, term)
    if total is None:
        raise ValueError("model.compile(): no loss was given for any output")
    metric_logs = []
    for name, mcfg, y, p, cfg in zip(names, metric_cfg, ys, outs, loss_cfg):
        if mcfg is None:
            continue
        for m in (mcfg if isinstance(mcfg, (list, tuple)) else [mcfg]):
            metric = metrics_mod.get(m, loss=cfg, y_true_shape=y.shape, y_pred_shape=p.shape)
            val = ops.mean(ops.cast(metric.values(y, p), p.dtype))
            key = metric.name if len(names) == 1 else f"{name}_{metric.name}"
            metric_logs.append((key, val))
    return total, per_output, metric_logs


def training_weights(model) -> list:
    """The weights the optimizer updates: those trainable when ``compile()`` ran (Keras
    semantics, which the frozen-discriminator GAN idiom relies on)."""
    snap = getattr(model, "_training_weights", None)
    return _unique(snap() if snap is not None else model.trainable_weights)


def _regularization(model, ctx) -> Value | None:
    # Keras adds weight regularizers of trainable weights only.
    terms = list(ctx.losses)
    for var in training_weights(model):
        reg = getattr(var, "regularizer", None)
        if reg is not None:
            terms.append(reg(var))
    if not terms:
        return None
    out = terms[0]
    for t in terms[1:]:
        out = ops.add(out, t)
    return out


def _add_targets(g: Graph, names, y_types, batch):
    multi = len(names) > 1
    ys, sws = [], []
    for name, t in zip(names, y_types):
        ys.append(g.add_input(f"y.{name}" if multi else "y", t))
    for name in names:
        sws.append(g.add_input(f"sample_weight.{name}" if multi else "sample_weight",
                               TensorType((batch,), DType.f32)))
    return ys, sws


def _logs(total, per_output, metric_logs, reg, names):
    if reg is not None:
        total = ops.add(total, reg)
    logs = [("loss", total)]
    if len(names) > 1:
        logs += [(f"{n}_loss", v) for n, v in per_output]
    return logs + metric_logs


# ----------------------------------------------------------------------------- test

def build_test_graph(model, x_types, y_types) -> StepGraph:
    g, xs = _new_graph("test", model, x_types)
    names = _output_names(model)
    ys, sws = _add_targets(g, names, y_types, x_types[0].shape[0])
    weights = _unique(model.weights)
    ctx = TraceContext(g, training=False)
    ctx.var_values.update(_bind_params(g, weights))
    outs = _trace_model(model, ctx, xs, training=False)
    with ctx:
        total, per_output, metric_logs = _losses_and_metrics(model, ys, sws, outs, names)
        logs = _logs(total, per_output, metric_logs, _regularization(model, ctx), names)
    g.set_outputs([v for _, v in logs], [n for n, _ in logs])
    return StepGraph("test", g, len(xs), len(ys), weights, [n for n, _ in logs], [])


# ----------------------------------------------------------------------------- train

def build_train_graph(model, x_types, y_types) -> StepGraph:
    from graphc.passes.autodiff import gradients
    opt = model.optimizer
    if opt is None:
        raise ValueError("model.compile() must be called before training")
    g, xs = _new_graph("train", model, x_types)
    names = _output_names(model)
    ys, sws = _add_targets(g, names, y_types, x_types[0].shape[0])
    seed = g.add_input("seed", TensorType((), DType.i64))
    weights = _unique(model.weights)
    trainable = training_weights(model)
    opt.build(trainable)
    opt_vars = _unique(opt.variables)
    params = weights + [v for v in opt_vars if v not in weights]
    bound = _bind_params(g, params)
    step = bound[opt.iterations]
    ctx = TraceContext(g, training=True, seed=seed, step=step)
    ctx.var_values.update(bound)
    outs = _trace_model(model, ctx, xs, training=True)
    with ctx:
        total, per_output, metric_logs = _losses_and_metrics(model, ys, sws, outs, names)
        reg = _regularization(model, ctx)
        objective = total if reg is None else ops.add(total, reg)
        logs = _logs(total, per_output, metric_logs, reg, names)
        wrt = [bound[v] for v in trainable]
        grads = gradients(g, objective, wrt, builder=ctx.builder)
        pairs = [(gr, v) for gr, v in zip(grads, trainable) if gr is not None]
        if pairs:
            cut = ctx.builder.emit("cut", [gr for gr, _ in pairs], name="gradients")
            cut = cut if isinstance(cut, tuple) else (cut,)
            opt.apply_graph([(c, v) for c, (_, v) in zip(cut, pairs)])
        for var in trainable:
            constraint = getattr(var, "constraint", None)
            if constraint is not None and var in ctx.state_updates:
                ctx.state_updates[var] = constraint(ctx.state_updates[var])
    updated = [v for v in params if v in ctx.state_updates]
    outputs = [v for _, v in logs] + [ctx.state_updates[v] for v in updated]
    g.set_outputs(outputs, [n for n, _ in logs] + [v.path for v in updated])
    return StepGraph("train", g, len(xs), len(ys), params, [n for n, _ in logs], updated)


def model_input_types(model, batch_size: int) -> list[TensorType]:
    """Static input types of ``model`` for a given batch size (model dtypes)."""
    out = []
    for spec in _model_inputs(model):
        shape = (batch_size,) + tuple(spec.shape[1:])
        if any(d is None for d in shape):
            raise ShapeError(f"input '{spec.name}' has an unknown dimension {spec.shape}; "
                             "graphc compiles static shapes")
        out.append(TensorType(shape, DType.of(getattr(spec, "dtype", "float32") or "float32")))
    return out


def default_target_types(model, batch_size: int) -> list[TensorType]:
    """Targets shaped like each output and typed for its loss (int for sparse losses)."""
    from graphc.frontend import losses as losses_mod
    names = _output_names(model)
    cfg = _per_output(model.loss, names, "loss")
    out = []
    for spec, c in zip(model.outputs, cfg):
        shape = (batch_size,) + tuple(spec.shape[1:])
        if c is not None and "sparse" in _loss_name(losses_mod.get(c)).lower():
            out.append(TensorType(shape[:-1], DType.i32))
        else:
            out.append(TensorType(shape, DType.f32))
    return out
