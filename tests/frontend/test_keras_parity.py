"""Forward parity with real Keras, layer by layer (issue 4).

Every ``parity_fixtures/*.npz`` was written by ``tools/make_keras_parity_fixtures.py`` from
Keras 3 itself: the layer's serialized config, a random input, random weights in Keras'
``get_weights()`` order and Keras' output. Here graphc rebuilds the layer from that config
(``graphc.layers.deserialize``, so Keras' argument names, defaults and weight layouts are
what is tested), loads the same weights, runs it eagerly and must give Keras' output within
``ATOL + RTOL * |keras|`` (1e-5 each: float32 accumulation order is all that may differ).

Keras is not needed to run these tests; it is needed only to regenerate the fixtures.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from graphc import layers as graphc_layers

FIXTURES = Path(__file__).resolve().parent / "parity_fixtures"
PATHS = sorted(FIXTURES.glob("*.npz"))

ATOL = 1e-5
RTOL = 1e-5
#: Fixtures allowed a looser tolerance, with the reason. Empty: every layer meets 1e-5.
LOOSER: dict[str, tuple[float, float, str]] = {}

#: Fixtures where graphc knowingly differs from Keras: expected to fail (strictly — once
#: graphc is fixed the test fails until the entry is removed), with the reason.
KNOWN_DIVERGENCES = {
    "sequential_embedding_mask_zero_lstm": (
        "graphc does not propagate Keras masks: Embedding(mask_zero=True) computes no mask "
        "for the LSTM, which therefore runs over the padded steps instead of carrying its "
        "state across them (Keras: keras/src/backend/*/rnn.py, np.where(mask_t, output, "
        "prev_output)); rows without padding agree"),
}

#: Every layer issue 4 lists (plus the spine's layers, for completeness) must have at
#: least one fixture. Bidirectional's wrapped layer counts for its class too.
REQUIRED = {
    "BatchNormalization", "LayerNormalization",
    "SimpleRNN", "LSTM", "GRU", "Bidirectional",
    "Embedding",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
    "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose",
    "MaxPooling1D", "AveragePooling1D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "UpSampling2D", "ZeroPadding2D", "Cropping2D",
    "Permute", "RepeatVector", "LeakyReLU", "PReLU", "ELU", "ReLU", "Softmax",
    "GaussianNoise", "SpatialDropout2D", "Dropout",
    "Dense", "Activation", "Flatten", "Reshape", "MaxPooling2D", "AveragePooling2D",
}


def _drop_default_fan_axes(obj):
    """Keras 3.15 writes ``input_axes``/``output_axes`` (None: the usual fans) into every
    variance-scaling initializer's config; graphc's initializers do not take them yet, and
    ``graphc.saving`` drops them at these default values before deserializing (its
    ``_DEFAULT_VALUED_KEYS``). Do the same here, so that the layer is what is tested."""
    if isinstance(obj, list):
        return [_drop_default_fan_axes(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {k: _drop_default_fan_axes(v) for k, v in obj.items()}
    if out.get("module") == "keras.initializers" and isinstance(out.get("config"), dict):
        out["config"] = {k: v for k, v in out["config"].items()
                         if not (k in ("input_axes", "output_axes") and v is None)}
    return out


def _load(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        d = {k: f[k] for k in f.files}
    d["config"] = json.loads(str(d["config"]))
    d["call_kwargs"] = json.loads(str(d["call_kwargs"]))
    d["weight_names"] = json.loads(str(d["weight_names"]))
    return d


def _arrays(d: dict, prefix: str) -> list[np.ndarray]:
    out, i = [], 0
    while f"{prefix}{i}" in d:
        out.append(d[f"{prefix}{i}"])
        i += 1
    return out


def _class_names(config: dict) -> set[str]:
    names = {config["class_name"]}
    inner = config.get("config") or {}
    for key in ("layer", "backward_layer"):
        if isinstance(inner.get(key), dict):
            names |= _class_names(inner[key])
    for sub in inner.get("layers") or ():      # a Sequential's layers
        names |= _class_names(sub)
    return names


def _compare(name: str, what: str, got, want: np.ndarray):
    atol, rtol, _ = LOOSER.get(name, (ATOL, RTOL, ""))
    got = np.asarray(got)
    assert got.shape == want.shape, f"{name}: {what} shape {got.shape}, Keras {want.shape}"
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    bound = atol + rtol * np.abs(want.astype(np.float64))
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.size else ()
    assert np.all(err <= bound), (
        f"{name}: {what} differs from Keras: max |error| {err.max():.3g} "
        f"(at {tuple(int(i) for i in worst)}: graphc {got[worst]!r}, Keras {want[worst]!r})")


def test_fixtures_exist_and_are_small():
    assert PATHS, f"no fixtures in {FIXTURES}: run tools/make_keras_parity_fixtures.py"
    size = sum(p.stat().st_size for p in PATHS)
    assert size < 512 * 1024, f"parity fixtures take {size} bytes: keep them small"


def test_every_issue4_layer_has_a_fixture():
    covered = set()
    for p in PATHS:
        covered |= _class_names(_load(p)["config"])
    missing = sorted(REQUIRED - covered)
    assert not missing, (f"layers without a Keras parity fixture: {missing} (add them to "
                         f"tools/make_keras_parity_fixtures.py and regenerate)")


def _param(p: Path):
    reason = KNOWN_DIVERGENCES.get(p.stem)
    marks = [pytest.mark.xfail(reason=reason, strict=True, raises=AssertionError)] \
        if reason else []
    return pytest.param(p, id=p.stem, marks=marks)


def test_known_divergences_have_fixtures():
    assert set(KNOWN_DIVERGENCES) <= {p.stem for p in PATHS}


@pytest.mark.parametrize("path", [_param(p) for p in PATHS])
def test_forward_matches_keras(path):
    name = path.stem
    d = _load(path)
    layer = graphc_layers.deserialize(_drop_default_fan_axes(d["config"]))
    inputs = _arrays(d, "input_")
    x = inputs if int(d["n_inputs"]) else inputs[0]
    if not layer.built:
        layer.build([a.shape for a in inputs] if int(d["n_inputs"]) else inputs[0].shape)
    weights = _arrays(d, "weight_")
    assert len(layer.weights) == len(weights), (
        f"{name}: graphc has {len(layer.weights)} weights "
        f"({[v.path for v in layer.weights]}), Keras {len(weights)} ({d['weight_names']})")
    layer.set_weights(weights)

    out = layer(x, **d["call_kwargs"])

    wants = _arrays(d, "output_")
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    assert len(outs) == len(wants), f"{name}: {len(outs)} outputs, Keras {len(wants)}"
    for i, (got, want) in enumerate(zip(outs, wants)):
        _compare(name, f"output {i}", got, want)
    # State the call updated (BatchNormalization's moving statistics in training mode).
    for i, (got, want) in enumerate(zip(layer.get_weights(), _arrays(d, "after_"))):
        _compare(name, f"weight {d['weight_names'][i]} after the call", got, want)
