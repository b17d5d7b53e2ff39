"""``graphc.models``: Keras' ``keras.models`` face — ``Sequential``, ``Model``,
``load_model``, ``clone_model``, ``model_from_json``."""
from graphc.frontend.models import (Functional, Model, Sequential, clone_model,  # noqa: F401
                                    model_from_config, model_from_json)


def load_model(filepath, custom_objects=None, compile=True, **kwargs):  # noqa: A002
    """Load a model saved with ``model.save`` (``.keras`` or ``.h5``); see graphc.saving."""
    from graphc.saving import load_model as _load
    return _load(filepath, custom_objects=custom_objects, compile=compile, **kwargs)


def save_model(model, filepath, *args, **kwargs):
    from graphc.saving import save_model as _save
    return _save(model, filepath, *args, **kwargs)
