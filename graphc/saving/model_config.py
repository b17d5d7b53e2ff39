"""Model and compile configs between graphc objects and the JSON that files hold.

Saving: the model's Keras-form config (``graphc.frontend.layers.serialization``) and its
compile config with the optimizer, losses and metrics in serialized form (Keras writes the
optimizer object's full config, so a changed learning rate or ``amsgrad`` survives).

Loading: rebuild the model (errors turned into ``SavingError``s that name the file and say
how to fix them: an unknown class needs ``custom_objects``), then compile it from the saved
config, resolving losses/metrics/optimizers named in it.
"""
from __future__ import annotations

from collections.abc import Mapping

from graphc.errors import UnknownNameError
from graphc.saving.errors import FileFormatError, SavingError, UnknownObjectError

_COMPILE_KEYS = ("optimizer", "loss", "metrics", "loss_weights", "weighted_metrics",
                 "run_eagerly", "steps_per_execution", "jit_compile")


# --------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------

def _serialize_nested(value, serialize_one):
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        if "class_name" in value:
            return dict(value)
        return {k: _serialize_nested(v, serialize_one) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_serialize_nested(v, serialize_one) for v in value]
    return serialize_one(value)


def compile_config_for_saving(model) -> dict | None:
    """JSON-ready compile config of a compiled model, else None."""
    if not getattr(model, "compiled", False):
        return None
    get = getattr(model, "get_compile_config", None)
    cfg = get() if get is not None else None
    if cfg is None:
        return None
    from graphc.frontend import losses, metrics, optimizers
    cfg = {k: cfg.get(k) for k in _COMPILE_KEYS if k in cfg}
    if getattr(model, "optimizer", None) is not None:
        cfg["optimizer"] = optimizers.serialize(model.optimizer)
    cfg["loss"] = _serialize_nested(cfg.get("loss"), losses.serialize)
    for key in ("metrics", "weighted_metrics"):
        cfg[key] = _serialize_nested(cfg.get(key), metrics.serialize)
    return cfg


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------

def _unknown(source: str, e: Exception, custom_objects) -> UnknownObjectError:
    known = sorted(custom_objects) if custom_objects else []
    return UnknownObjectError(
        f"Cannot load {source}: {e}. If it is your own class or function, pass it when "
        f"loading: load_model(path, custom_objects={{'Name': Name}})"
        + (f" (custom_objects given: {known})" if known else ""))


# Arguments newer Keras releases write into object configs which, at these values, mean
# the default behaviour (Keras 3.15 added fan axes to the variance-scaling initializers).
_DEFAULT_VALUED_KEYS = {"keras.initializers": {"input_axes": None, "output_axes": None}}


def _drop_default_keys(obj):
    if isinstance(obj, list):
        return [_drop_default_keys(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {k: _drop_default_keys(v) for k, v in obj.items()}
    defaults = _DEFAULT_VALUED_KEYS.get(out.get("module"))
    if defaults and isinstance(out.get("config"), dict):
        out["config"] = {k: v for k, v in out["config"].items()
                         if not (k in defaults and v == defaults[k])}
    return out


def rebuild_model(config: dict, custom_objects, source: str):
    """The model described by a serialized config (Keras 2 or 3 form)."""
    from graphc.frontend.layers.serialization import deserialize
    from graphc.frontend.models import Model
    if not isinstance(config, Mapping) or "class_name" not in config:
        raise FileFormatError(f"{source}: the model config is not a serialized model "
                              f"(no 'class_name')")
    config = _drop_default_keys(dict(config))
    config.pop("compile_config", None)
    try:
        model = deserialize(config, custom_objects)
    except UnknownNameError as e:
        raise _unknown(source, e, custom_objects) from e
    except SavingError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        raise SavingError(f"Cannot rebuild the model saved in {source}: {type(e).__name__}: "
                          f"{e}") from e
    if not isinstance(model, Model):
        raise FileFormatError(f"{source}: the saved config describes a "
                              f"{type(model).__name__}, not a model")
    return model


def _resolve_nested(value, resolve_one):
    if value is None or isinstance(value, (int, float, bool)):
        return value
    if isinstance(value, str):
        return resolve_one(value)
    if isinstance(value, Mapping):
        if "class_name" in value:
            return resolve_one(value)
        return {k: _resolve_nested(v, resolve_one) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_resolve_nested(v, resolve_one) for v in value]
    return value


def compile_kwargs(config: Mapping, custom_objects, source: str) -> dict:
    """``model.compile`` arguments from a saved compile config (Keras 3
    ``compile_config`` or the converted legacy ``training_config``)."""
    from graphc.frontend import losses, metrics, optimizers
    custom = dict(custom_objects or {})

    def loss_one(x):
        if isinstance(x, str):
            if x in custom:
                return custom[x]
            losses.get(x)                 # unknown names fail here, with the hint below
            return x
        return losses.deserialize(x, custom)

    def metric_name(x):
        if x in custom:
            return custom[x]
        if x.lower() not in ("accuracy", "acc", "crossentropy", "ce"):
            metrics.get(x)
        return x

    def metric_one(x):
        if isinstance(x, str):
            return metric_name(x)
        if x.get("class_name") == "MeanMetricWrapper":
            # Keras 2: {"name": "accuracy", "fn": "categorical_accuracy"}; the name is what
            # the user passed (and what logs show), the function what it resolved to.
            cfg = x.get("config") or {}
            for candidate in (cfg.get("name"), cfg.get("fn")):
                if isinstance(candidate, str):
                    try:
                        return metric_name(candidate)
                    except UnknownNameError:
                        continue
            raise UnknownNameError(f"Unknown metric {cfg.get('name')!r} (function "
                                   f"{cfg.get('fn')!r})")
        return metrics.deserialize(x, custom)

    kwargs = {k: config.get(k) for k in _COMPILE_KEYS if k in config}
    opt = kwargs.get("optimizer")
    try:
        if isinstance(opt, Mapping):
            opt = dict(opt)
            name = opt.get("class_name") or ""
            if name.startswith("Custom>"):       # tf.keras 2.11+ writes "Custom>Adam"
                opt["class_name"] = name[len("Custom>"):]
            kwargs["optimizer"] = optimizers.deserialize(opt, custom)
        elif isinstance(opt, str) and opt in custom:
            kwargs["optimizer"] = custom[opt]
        elif opt is None:
            kwargs["optimizer"] = "rmsprop"
        kwargs["loss"] = _resolve_nested(kwargs.get("loss"), loss_one)
        for key in ("metrics", "weighted_metrics"):
            if key in kwargs:
                kwargs[key] = _resolve_nested(kwargs[key], metric_one)
    except UnknownNameError as e:
        raise _unknown(f"the compile config of {source}", e, custom_objects) from e
    except (TypeError, ValueError, KeyError) as e:
        raise SavingError(
            f"Cannot compile the model loaded from {source} from its saved compile config "
            f"({type(e).__name__}: {e}); load it with compile=False and compile it "
            f"yourself") from e
    for k in ("run_eagerly", "jit_compile"):
        if kwargs.get(k) is not None:
            kwargs[k] = bool(kwargs[k])
    if kwargs.get("steps_per_execution") is None:
        kwargs.pop("steps_per_execution", None)
    return kwargs


def _flatten_single_output(model, value):
    # Keras 2 records metrics per output ([["accuracy"]]); with one output that is the
    # plain list Keras 3 (and graphc) expect.
    try:
        n_out = len(model.outputs)
    except (AttributeError, TypeError):
        return value
    if n_out == 1 and isinstance(value, list) and len(value) == 1 and \
            isinstance(value[0], list):
        return value[0]
    return value


def compile_model(model, config: Mapping, custom_objects, source: str) -> None:
    kwargs = compile_kwargs(config, custom_objects, source)
    for key in ("metrics", "weighted_metrics"):
        if kwargs.get(key) is not None:
            kwargs[key] = _flatten_single_output(model, kwargs[key])
    try:
        model.compile(**kwargs)
    except UnknownNameError as e:
        raise _unknown(f"the compile config of {source}", e, custom_objects) from e
    except (TypeError, ValueError) as e:
        raise SavingError(
            f"Cannot compile the model loaded from {source} from its saved compile config "
            f"({type(e).__name__}: {e}); load it with compile=False and compile it "
            f"yourself") from e
