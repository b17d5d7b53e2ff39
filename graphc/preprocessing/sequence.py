"""``graphc.preprocessing.sequence``: Keras' sequence preprocessing — ``pad_sequences``
(variable-length lists to one padded array, as ``Embedding``/``LSTM`` models take them) and
``TimeseriesGenerator`` (sliding windows over a series, a ``Sequence`` for ``fit``).

Same signatures, defaults and results as ``keras.preprocessing.sequence``.
"""
from __future__ import annotations

import numpy as np

from graphc.errors import DataError
from graphc.frontend.seeding import next_seed

__all__ = ["pad_sequences", "TimeseriesGenerator"]


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre",
                  value=0.0):
    """Pad (or truncate) every sequence to ``maxlen`` (default: the longest).

    ``padding``/``truncating``: 'pre' (default) adds/removes values at the start, 'post' at
    the end. ``value``: the padding value. Sequences may hold scalars or equal-shaped
    arrays (the result then has shape ``(n, maxlen) + that shape``). Returns an array of
    ``dtype`` and shape ``(len(sequences), maxlen, ...)``.
    """
    if not hasattr(sequences, "__len__"):
        raise DataError("pad_sequences: `sequences` must be a list of sequences (something "
                        "with a length)")
    if padding not in ("pre", "post"):
        raise DataError(f'pad_sequences: padding type "{padding}" not understood; expected '
                        f"'pre' or 'post'")
    if truncating not in ("pre", "post"):
        raise DataError(f'pad_sequences: truncating type "{truncating}" not understood; '
                        f"expected 'pre' or 'post'")
    num_samples = len(sequences)
    lengths = []
    sample_shape = ()
    found_shape = False
    for i, s in enumerate(sequences):
        try:
            lengths.append(len(s))
        except TypeError:
            raise DataError(f"pad_sequences: `sequences` must be a list of iterables; "
                            f"sequence {i} is not one: {s!r}") from None
        if not found_shape and len(s):
            # The shape of one element of the first non-empty sequence fixes the rest.
            sample_shape = np.asarray(s).shape[1:]
            found_shape = True
    if maxlen is None:
        maxlen = max(lengths) if lengths else 0
    elif isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer)) or maxlen < 0:
        raise DataError(f"pad_sequences: maxlen must be a non-negative integer or None; got "
                        f"{maxlen!r}")
    maxlen = int(maxlen)
    kind = np.dtype(dtype).kind
    if isinstance(value, str) and kind not in "OUS":
        raise DataError(f"pad_sequences: dtype {dtype} is not compatible with value's type "
                        f"{type(value).__name__}; set dtype=object for variable-length "
                        f"strings")
    x = np.full((num_samples, maxlen) + tuple(sample_shape), value, dtype=dtype)
    if maxlen == 0:
        return x          # s[-0:] would be the whole sequence, not none of it
    for idx, s in enumerate(sequences):
        if not len(s):
            continue
        trunc = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        trunc = np.asarray(trunc, dtype=dtype)
        if trunc.shape[1:] != sample_shape:
            raise DataError(f"pad_sequences: shape of sample {trunc.shape[1:]} of sequence "
                            f"at position {idx} is different from expected shape "
                            f"{sample_shape}")
        if padding == "post":
            x[idx, :len(trunc)] = trunc
        else:
            x[idx, -len(trunc):] = trunc
    return x


class TimeseriesGenerator:
    """Batches of sliding windows over a time series (Keras' ``TimeseriesGenerator``).

    Sample ``j`` is ``data[i - length:i:sampling_rate]`` with target ``targets[i]``, for
    ``i`` from ``start_index + length`` to ``end_index`` (default: the last index) in steps
    of ``stride``. ``shuffle``: draw each batch's windows at random (with replacement, as
    Keras does); ``reverse``: windows in reverse time order. A ``Sequence``: ``len`` and
    ``gen[i]`` → ``(samples, targets)``.
    """

    def __init__(self, data, targets, length, sampling_rate=1, stride=1, start_index=0,
                 end_index=None, shuffle=False, reverse=False, batch_size=128, seed=None):
        if len(data) != len(targets):
            raise DataError(f"TimeseriesGenerator: data and targets have to be of same "
                            f"length. Data length is {len(data)} while target length is "
                            f"{len(targets)}")
        self.data = data
        self.targets = targets
        self.length = length
        self.sampling_rate = sampling_rate
        self.stride = stride
        self.start_index = start_index + length
        self.end_index = len(data) - 1 if end_index is None else end_index
        self.shuffle = shuffle
        self.reverse = reverse
        self.batch_size = batch_size
        self._key = int(seed) if seed is not None else next_seed()
        self._epoch = 0
        if self.start_index > self.end_index:
            raise DataError(f"TimeseriesGenerator: start_index+length={self.start_index} > "
                            f"end_index={self.end_index} is disallowed, as no part of the "
                            f"sequence would be left to be used as current step.")

    def __len__(self):
        return (self.end_index - self.start_index + self.batch_size * self.stride) // (
            self.batch_size * self.stride)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"TimeseriesGenerator index {index} out of range "
                             f"[0, {len(self)})")
        if self.shuffle:
            rows = np.random.default_rng([self._key, self._epoch, int(index)]).integers(
                self.start_index, self.end_index + 1, size=self.batch_size)
        else:
            i = self.start_index + self.batch_size * self.stride * index
            rows = np.arange(i, min(i + self.batch_size * self.stride, self.end_index + 1),
                             self.stride)
        samples = np.array([self.data[row - self.length:row:self.sampling_rate]
                            for row in rows])
        targets = np.array([self.targets[row] for row in rows])
        if self.reverse:
            return samples[:, ::-1, ...], targets
        return samples, targets

    def on_epoch_end(self):
        # New random windows next epoch (shuffle=True); batch i is stable within an epoch.
        self._epoch += 1

    def get_config(self):
        return {"length": self.length, "sampling_rate": self.sampling_rate,
                "stride": self.stride, "start_index": self.start_index - self.length,
                "end_index": self.end_index, "shuffle": self.shuffle,
                "reverse": self.reverse, "batch_size": self.batch_size}
