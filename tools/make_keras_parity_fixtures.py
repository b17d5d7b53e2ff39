"""Make the real-Keras forward-parity fixtures of tests/frontend/parity_fixtures/.

One compressed ``.npz`` per layer configuration: Keras builds the layer, gets seeded random
weights through ``set_weights`` (non-trivial on purpose: BatchNormalization's moving
statistics, a GRU's two bias rows, PReLU's alphas are all random, so a mixed-up order or a
missed term shows), runs it eagerly on a seeded random input and the file keeps what
``tests/frontend/test_keras_parity.py`` needs to rebuild the same layer in graphc and compare:

* ``config``: ``json.dumps(keras.layers.serialize(layer))`` — the Keras 3 dict
  ``{module, class_name, config, registered_name, build_config}`` that
  ``graphc.layers.deserialize`` reads;
* ``call_kwargs``: JSON of the call's keyword arguments (``{"training": false}``, ...);
* ``input_0``, ``input_1``, ... (a merge layer takes a list) and ``n_inputs``;
* ``weight_0``, ... in Keras ``get_weights()`` order, ``weight_names`` (JSON, for messages);
* ``output_0``, ... (``return_state`` and ``merge_mode=None`` give several) and
  ``n_outputs``;
* ``after_0``, ... : the weights after the call, for calls that update state
  (BatchNormalization in training mode: the moving statistics);
* ``keras_version``.

Keras is not a dependency of graphc: run this in a throwaway virtual environment with the
numpy backend (Keras' numpy backend imports JAX for convolutions) and commit the files:

    python3 -m venv /tmp/kenv && /tmp/kenv/bin/pip install keras jax
    KERAS_BACKEND=numpy /tmp/kenv/bin/python tools/make_keras_parity_fixtures.py

Each configuration's random numbers come from its own generator, seeded from its name, so
adding or removing one leaves the others' files byte-stable in content. Arrays are kept
tiny (a batch of 2, a handful of features) so the whole directory stays small.
"""
from __future__ import annotations

import json
import os
import sys
import zlib

os.environ.setdefault("KERAS_BACKEND", "numpy")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "tests", "frontend", "parity_fixtures")


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def _normal(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _weights_for(layer, rng):
    """Random weights in the layer's get_weights() shapes; variances stay positive."""
    out = []
    for v in layer.weights:
        shape = tuple(v.shape)
        if "variance" in v.path:
            # Keep the moving variance away from 0 so epsilon is not the whole story.
            out.append((rng.random(shape) * 1.5 + 0.25).astype(np.float32))
        else:
            # 0.5: recurrent layers saturate less over the steps, so the outputs stay
            # sensitive to every weight.
            out.append(_normal(rng, shape, 0.5))
    return out


def _cases(keras):
    """(name, layer, input spec(s), call kwargs). An input spec is a shape (float32
    normal), ("int", shape, high) for indices, or an array used as is. A "layer" may be a
    Sequential model: its serialized config rebuilds the same way."""
    L = keras.layers
    c = []

    def add(name, layer, inputs, **call_kwargs):
        c.append((name, layer, inputs, call_kwargs))

    x1 = (2, 7, 4)          # [batch, steps, features]
    x2 = (2, 6, 5, 3)       # [batch, h, w, channels]

    # --- core and completeness ---------------------------------------------------------
    add("dense", L.Dense(5), (3, 4))
    add("dense_relu_3d", L.Dense(3, activation="relu"), x1)
    add("dense_no_bias_tanh", L.Dense(4, use_bias=False, activation="tanh"), (3, 6))
    for act in ("relu", "sigmoid", "tanh", "softmax", "softplus", "softsign",
                "hard_sigmoid", "elu", "selu", "gelu", "swish", "relu6", "exponential",
                "linear"):
        add(f"activation_{act}", L.Activation(act), (3, 5))
    add("flatten", L.Flatten(), x2)
    add("reshape", L.Reshape((5, -1)), x2)
    add("reshape_explicit", L.Reshape((3, 2, 15)), x2)
    add("max_pooling2d", L.MaxPooling2D(2), x2)
    add("max_pooling2d_same_s1", L.MaxPooling2D(3, strides=1, padding="same"), x2)
    add("average_pooling2d", L.AveragePooling2D(2), x2)
    add("average_pooling2d_same_s2", L.AveragePooling2D(3, strides=2, padding="same"), x2)
    # Identity at inference (and with training False explicitly).
    add("dropout_inference", L.Dropout(0.5), (3, 5))
    add("gaussian_noise_inference", L.GaussianNoise(0.3), (3, 5), training=False)
    add("gaussian_dropout_inference", L.GaussianDropout(0.3), (3, 5), training=False)
    add("spatial_dropout2d_inference", L.SpatialDropout2D(0.5), x2, training=False)
    add("spatial_dropout1d_inference", L.SpatialDropout1D(0.5), x1, training=False)
    add("activity_regularization", L.ActivityRegularization(l1=0.1), (3, 5))

    # --- normalization -------------------------------------------------------------------
    add("batch_normalization", L.BatchNormalization(), x2)
    add("batch_normalization_axis1", L.BatchNormalization(axis=1), (2, 3, 4, 5))
    add("batch_normalization_2d_eps", L.BatchNormalization(epsilon=0.1, momentum=0.9),
        (4, 6))
    add("batch_normalization_no_center_scale",
        L.BatchNormalization(center=False, scale=False), x1)
    add("batch_normalization_no_scale", L.BatchNormalization(scale=False), x1)
    # Training mode: batch statistics in the output, moving statistics updated (after_*).
    add("batch_normalization_training", L.BatchNormalization(momentum=0.8), (5, 3, 4),
        training=True)
    add("batch_normalization_axis1_training", L.BatchNormalization(axis=1, epsilon=0.01),
        (3, 4, 2, 2), training=True)
    add("layer_normalization", L.LayerNormalization(), x1)
    add("layer_normalization_axes12", L.LayerNormalization(axis=[1, 2]), x1)
    add("layer_normalization_no_center_eps",
        L.LayerNormalization(center=False, epsilon=0.01), (3, 6))
    add("layer_normalization_axis1_4d", L.LayerNormalization(axis=1), (2, 3, 4, 2))

    # --- recurrent -----------------------------------------------------------------------
    r = (2, 5, 3)
    add("simple_rnn", L.SimpleRNN(4), r)
    add("simple_rnn_seq_backwards_relu",
        L.SimpleRNN(4, return_sequences=True, go_backwards=True, activation="relu"), r)
    add("simple_rnn_state", L.SimpleRNN(3, return_state=True), r)
    add("lstm", L.LSTM(4), r)
    add("lstm_seq_state", L.LSTM(4, return_sequences=True, return_state=True), r)
    add("lstm_backwards_no_forget_bias",
        L.LSTM(3, go_backwards=True, unit_forget_bias=False), r)
    add("lstm_dropout_inference", L.LSTM(4, dropout=0.3, recurrent_dropout=0.3), r)
    add("lstm_relu_hard_sigmoid",
        L.LSTM(3, activation="relu", recurrent_activation="hard_sigmoid",
               return_sequences=True), r)
    add("gru_reset_after", L.GRU(4), r)
    add("gru_reset_before", L.GRU(4, reset_after=False), r)
    add("gru_reset_after_seq_state_backwards",
        L.GRU(3, return_sequences=True, return_state=True, go_backwards=True), r)
    add("gru_reset_before_seq", L.GRU(3, reset_after=False, return_sequences=True), r)
    add("gru_no_bias", L.GRU(3, use_bias=False), r)
    for mode in ("concat", "sum", "mul", "ave"):
        add(f"bidirectional_lstm_{mode}",
            L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode=mode), r)
    add("bidirectional_gru_concat_last", L.Bidirectional(L.GRU(3)), r)
    add("bidirectional_simple_rnn_none",
        L.Bidirectional(L.SimpleRNN(3, return_sequences=True), merge_mode=None), r)
    add("bidirectional_lstm_state",
        L.Bidirectional(L.LSTM(2, return_state=True)), r)

    # --- embedding -----------------------------------------------------------------------
    add("embedding", L.Embedding(10, 4), ("int", (3, 5), 10))
    add("embedding_mask_zero", L.Embedding(7, 3, mask_zero=True), ("int", (2, 6), 7))

    # --- merge ---------------------------------------------------------------------------
    two = [(3, 4), (3, 4)]
    add("add", L.Add(), two)
    add("add_three", L.Add(), [(2, 3, 4)] * 3)
    # Keras' Merge broadcasts a size-1 axis against the other inputs'.
    add("add_broadcast", L.Add(), [(2, 3, 4), (2, 1, 4)])
    add("subtract", L.Subtract(), two)
    add("multiply", L.Multiply(), two)
    add("average", L.Average(), [(3, 4)] * 3)
    add("multiply_broadcast", L.Multiply(), [(2, 1, 4), (2, 3, 1)])
    add("maximum", L.Maximum(), two)
    add("minimum", L.Minimum(), two)
    add("concatenate_last", L.Concatenate(), [(2, 3, 4), (2, 3, 2)])
    add("concatenate_axis1", L.Concatenate(axis=1), [(2, 3, 4), (2, 5, 4)])
    add("dot_axes1", L.Dot(axes=1), two)
    add("dot_axes1_normalize", L.Dot(axes=1, normalize=True), two)
    add("dot_3d_axes22", L.Dot(axes=(2, 2)), [(2, 3, 4), (2, 5, 4)])
    add("dot_3d_axes12", L.Dot(axes=(1, 2)), [(2, 3, 4), (2, 5, 3)])

    # --- convolution ---------------------------------------------------------------------
    add("conv1d", L.Conv1D(5, 3), x1)
    add("conv1d_same_s2_relu", L.Conv1D(4, 3, strides=2, padding="same", activation="relu"),
        x1)
    add("conv1d_causal_dilation2", L.Conv1D(3, 2, padding="causal", dilation_rate=2), x1)
    add("conv1d_groups2", L.Conv1D(6, 3, groups=2), x1)
    add("conv2d", L.Conv2D(4, 3), x2)
    add("conv2d_same_s2", L.Conv2D(4, (3, 2), strides=2, padding="same"), x2)
    add("conv2d_dilation2_same", L.Conv2D(2, 3, dilation_rate=2, padding="same"), x2)
    add("conv2d_groups3", L.Conv2D(6, 2, groups=3, activation="relu"), x2)
    add("depthwise_conv2d", L.DepthwiseConv2D(3), x2)
    add("depthwise_conv2d_mult2_same_s2",
        L.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same"), x2)
    add("depthwise_conv2d_dilation2", L.DepthwiseConv2D(2, dilation_rate=2), x2)
    add("separable_conv2d", L.SeparableConv2D(4, 3), x2)
    add("separable_conv2d_mult2_same", L.SeparableConv2D(5, 3, depth_multiplier=2,
                                                         padding="same", activation="relu"),
        x2)
    add("conv2d_transpose_s2_same", L.Conv2DTranspose(3, 3, strides=2, padding="same"), x2)
    add("conv2d_transpose_s2_valid", L.Conv2DTranspose(3, 3, strides=2, padding="valid"), x2)
    add("conv2d_transpose_k4_s2_same", L.Conv2DTranspose(2, 4, strides=2, padding="same"), x2)
    add("conv2d_transpose_outpad", L.Conv2DTranspose(2, 3, strides=2, output_padding=1), x2)
    add("conv2d_transpose_s1", L.Conv2DTranspose(2, (2, 3), activation="tanh"), x2)

    # --- pooling -------------------------------------------------------------------------
    add("max_pooling1d", L.MaxPooling1D(2), x1)
    add("max_pooling1d_same_s1", L.MaxPooling1D(3, strides=1, padding="same"), x1)
    add("average_pooling1d", L.AveragePooling1D(2), x1)
    add("average_pooling1d_same", L.AveragePooling1D(3, strides=2, padding="same"), x1)
    add("global_average_pooling1d", L.GlobalAveragePooling1D(), x1)
    add("global_average_pooling1d_keepdims", L.GlobalAveragePooling1D(keepdims=True), x1)
    add("global_max_pooling1d", L.GlobalMaxPooling1D(), x1)
    add("global_average_pooling2d", L.GlobalAveragePooling2D(), x2)
    add("global_max_pooling2d", L.GlobalMaxPooling2D(), x2)
    add("global_max_pooling2d_keepdims", L.GlobalMaxPooling2D(keepdims=True), x2)

    # --- reshaping -----------------------------------------------------------------------
    add("up_sampling2d", L.UpSampling2D(), x2)
    add("up_sampling2d_bilinear", L.UpSampling2D((2, 3), interpolation="bilinear"), x2)
    add("zero_padding2d", L.ZeroPadding2D(1), x2)
    add("zero_padding2d_asym", L.ZeroPadding2D(((1, 0), (2, 3))), x2)
    add("cropping2d", L.Cropping2D(((1, 2), (0, 1))), x2)
    add("permute", L.Permute((2, 1)), x1)
    add("permute_3d", L.Permute((3, 1, 2)), x2)
    add("repeat_vector", L.RepeatVector(3), (2, 4))

    # --- activation layers ---------------------------------------------------------------
    add("leaky_relu", L.LeakyReLU(), (3, 5))
    add("leaky_relu_slope", L.LeakyReLU(negative_slope=0.1), (3, 5))
    add("prelu", L.PReLU(), x1)
    add("prelu_shared_axes", L.PReLU(shared_axes=[1, 2]), x2)
    add("elu", L.ELU(), (3, 5))
    add("elu_alpha", L.ELU(alpha=0.5), (3, 5))
    add("relu", L.ReLU(), (3, 5))
    add("relu_max_slope_threshold", L.ReLU(max_value=1.0, negative_slope=0.1,
                                           threshold=0.3), (3, 5))
    add("softmax", L.Softmax(), (3, 5))
    add("softmax_axis1", L.Softmax(axis=1), x1)

    # --- whole models (a serialized Sequential: the layers' interplay) -------------------
    # Padded token sequences, as keras.utils.pad_sequences makes them (post-padding here).
    tokens = np.array([[3, 5, 1, 0, 0, 0], [2, 7, 4, 6, 1, 2]], np.int32)
    add("sequential_embedding_lstm_dense",
        keras.Sequential([keras.Input((6,), dtype="int32"), L.Embedding(8, 3), L.LSTM(4),
                          L.Dense(2, activation="softmax")]), tokens)
    # Keras passes Embedding's mask to the LSTM, which then skips the padded steps.
    add("sequential_embedding_mask_zero_lstm",
        keras.Sequential([keras.Input((6,), dtype="int32"),
                          L.Embedding(8, 3, mask_zero=True), L.LSTM(4)]), tokens)
    return c


def _input(rng, spec):
    if isinstance(spec, np.ndarray):      # given as is
        return spec
    if isinstance(spec, tuple) and spec and spec[0] == "int":
        _, shape, high = spec
        return rng.integers(0, high, size=shape).astype(np.int32)
    return _normal(rng, spec)


def make(out: str) -> list[str]:
    import keras
    os.makedirs(out, exist_ok=True)
    keras.utils.set_random_seed(0)
    names = []
    for name, layer, spec, call_kwargs in _cases(keras):
        rng = _rng(name)
        multi = isinstance(spec, list)
        xs = [_input(rng, s) for s in spec] if multi else [_input(rng, spec)]
        arg = xs if multi else xs[0]
        if not layer.built:
            layer.build([x.shape for x in xs] if multi else xs[0].shape)
        weights = _weights_for(layer, rng)
        layer.set_weights(weights)
        y = layer(arg, **call_kwargs)
        ys = [np.asarray(v) for v in (y if isinstance(y, (list, tuple)) else [y])]
        arrays = {
            "config": np.asarray(json.dumps(keras.layers.serialize(layer))),
            "call_kwargs": np.asarray(json.dumps(call_kwargs)),
            "weight_names": np.asarray(json.dumps([v.path for v in layer.weights])),
            "keras_version": np.asarray(keras.__version__),
            "n_inputs": np.asarray(len(xs) if multi else 0),   # 0: a single array
            "n_outputs": np.asarray(len(ys)),
        }
        for i, x in enumerate(xs):
            arrays[f"input_{i}"] = x
        for i, w in enumerate(weights):
            arrays[f"weight_{i}"] = w
        for i, v in enumerate(ys):
            arrays[f"output_{i}"] = v.astype(np.float32)
        after = [np.asarray(w) for w in layer.get_weights()]
        if any(not np.array_equal(a, w) for a, w in zip(after, weights)):
            for i, w in enumerate(after):
                arrays[f"after_{i}"] = w.astype(np.float32)
        np.savez_compressed(os.path.join(out, f"{name}.npz"), **arrays)
        names.append(name)
    return names


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else DEFAULT_OUT
    for f in os.listdir(out) if os.path.isdir(out) else ():
        if f.endswith(".npz"):            # a removed configuration leaves no stale file
            os.remove(os.path.join(out, f))
    names = make(out)
    size = sum(os.path.getsize(os.path.join(out, f"{n}.npz")) for n in names)
    print(f"wrote {len(names)} fixtures ({size / 1024:.0f} KB) to {os.path.normpath(out)}")


if __name__ == "__main__":
    main()
