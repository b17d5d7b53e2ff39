"""Assorted ops: softmax / log_softmax (high-level, numerically stable decompositions),
counter-based ``random_uniform`` (bit-exact across backends), ``one_hot`` and ``cut`` (a
named identity marking a boundary in the train graph)."""
from __future__ import annotations

import numpy as np

from graphc.errors import DTypeError
from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import check
from graphc.ir.registry import NOT_DIFFERENTIABLE, REQUIRED, def_op
from graphc.ir.ops.elementwise import _rand_shape

# ----------------------------------------------------------------------------- softmax


def _softmax_infer(op):
    def infer(types, attrs):
        t = types[0]
        if not t.dtype.is_float:
            raise DTypeError(f"{op}: expected a float tensor, got {t}")
        ax = attrs["axis"]
        check(isinstance(ax, int) and 0 <= ax < t.rank, op,
              f"axis {ax!r} out of range [0, {t.rank}) for {t}")
        return t
    return infer


def _softmax_ref(x, axis):
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype)


def _log_softmax_ref(x, axis):
    z = x - np.max(x, axis=axis, keepdims=True)
    return (z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))).astype(x.dtype)


def _shifted(b, x, axis):
    # Subtracting the max makes every exponent <= 0: no overflow for logits of any size,
    # and the max element contributes exp(0) = 1, so the sum never underflows to 0.
    return b.sub(x, b.reduce_max(x, axes=(axis,), keepdims=True))


def _softmax_decompose(b, ins, attrs):
    e = b.exp(_shifted(b, ins[0], attrs["axis"]))
    return b.div(e, b.reduce_sum(e, axes=(attrs["axis"],), keepdims=True))


def _log_softmax_decompose(b, ins, attrs):
    z = _shifted(b, ins[0], attrs["axis"])
    return b.sub(z, b.log(b.reduce_sum(b.exp(z), axes=(attrs["axis"],), keepdims=True)))


def _softmax_vjp(b, n, g):
    y, ax = n.outputs[0], n.attrs["axis"]
    s = b.reduce_sum(b.mul(g[0], y), axes=(ax,), keepdims=True)
    return [b.mul(y, b.sub(g[0], s))]


def _log_softmax_vjp(b, n, g):
    y, ax = n.outputs[0], n.attrs["axis"]
    s = b.reduce_sum(g[0], axes=(ax,), keepdims=True)
    return [b.sub(g[0], b.mul(b.exp(y), s))]


def _softmax_sample(rng, dtype):
    shape = _rand_shape(rng, max_rank=3, max_dim=5) or (4,)
    return ([(rng.standard_normal(shape) * 2).astype(dtype)],
            {"axis": int(rng.integers(0, len(shape)))})


def_op("softmax", arity=1, attrs={"axis": REQUIRED}, infer=_softmax_infer("softmax"),
       ref=_softmax_ref, vjp=_softmax_vjp, primitive=False, decompose=_softmax_decompose,
       sample=_softmax_sample, doc="exp(x - max) / sum(exp(x - max)) along a non-negative axis.")
def_op("log_softmax", arity=1, attrs={"axis": REQUIRED}, infer=_softmax_infer("log_softmax"),
       ref=_log_softmax_ref, vjp=_log_softmax_vjp, primitive=False,
       decompose=_log_softmax_decompose, sample=_softmax_sample,
       doc="(x - max) - log(sum(exp(x - max))) along a non-negative axis.")

# ----------------------------------------------------------------------------- random_uniform

_M32 = 0xFFFFFFFF


def _as_dtype(dt) -> DType:
    # DType.of(np.float32) (a scalar type, not a dtype) fails; samplers may get either.
    return dt if isinstance(dt, DType) else DType.of(np.dtype(dt))


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M32


def _fmix32_int(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    return h ^ (h >> 16)


def random_key(seed: int, counter: int, salt: int = 0) -> int:
    """The uint32 stream key of ``random_uniform`` (see its docstring)."""
    words = [seed & _M32, (seed >> 32) & _M32, counter & _M32, (counter >> 32) & _M32]
    h = salt & _M32
    for k in words:
        k = (k * 0xCC9E2D51) & _M32
        k = _rotl(k, 15)
        k = (k * 0x1B873593) & _M32
        h ^= k
        h = _rotl(h, 13)
        h = (h * 5 + 0xE6546B64) & _M32
    return _fmix32_int(h ^ 16)


def _fmix32(h):
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def random_bits(key: int, n: int) -> np.ndarray:
    """uint32 bits of elements 0..n-1 for stream ``key`` (see ``random_uniform``)."""
    k = np.uint32(key)
    i = np.arange(n, dtype=np.uint32)
    h = _fmix32(k ^ (i * np.uint32(0x9E3779B1) + np.uint32(0x7F4A7C15)))
    return _fmix32(h + k)


def _random_uniform_ref(seed, counter, shape, salt=0, dtype=DType.f32):
    key = random_key(int(seed), int(counter), int(salt))
    n = int(np.prod(shape, dtype=np.int64))
    u = (random_bits(key, n) >> np.uint32(8)).astype(np.float64) * 2.0 ** -24
    return u.reshape(shape).astype(DType.of(dtype).np)


def _random_uniform_infer(types, attrs):
    op = "random_uniform"
    for what, t in zip(("seed", "counter"), types):
        if t.dtype != DType.i64 or t.rank != 0:
            raise DTypeError(f"{op}: {what} must be an i64 scalar (i64[]), got {t}")
    shape, salt = attrs["shape"], attrs["salt"]
    check(isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape), op,
          f"shape must be a tuple of integers >= 0, got {shape!r}")
    check(int(np.prod(shape, dtype=np.int64)) < 2 ** 32, op,
          f"at most 2**32 - 1 elements (the element index is uint32), got shape {list(shape)}")
    check(isinstance(salt, int) and 0 <= salt < 2 ** 32, op,
          f"salt must be an integer in [0, 2**32), got {salt!r}")
    dt = DType.of(attrs["dtype"])
    if not dt.is_float:
        raise DTypeError(f"{op}: dtype must be f32 or f64, got {dt}")
    return TensorType(shape, dt)


def _random_uniform_sample(rng, dtype):
    seed = np.array(rng.integers(-2 ** 63, 2 ** 63 - 1, dtype=np.int64))
    counter = np.array(rng.integers(0, 2 ** 40, dtype=np.int64))
    return [seed, counter], {"shape": _rand_shape(rng, max_rank=3, max_dim=5),
                             "salt": int(rng.integers(0, 2 ** 32)),
                             "dtype": _as_dtype(dtype)}


_RANDOM_DOC = """Counter-based uniform floats in [0, 1): a pure function of (seed, counter, salt).

Defined with uint32 arithmetic only (wrapping mod 2**32, ``>>`` logical, rotl(x, r) =
(x << r) | (x >> (32 - r))) so every backend reproduces it bit for bit:

    fmix32(h):  h ^= h >> 16; h *= 0x85EBCA6B; h ^= h >> 13; h *= 0xC2B2AE35; h ^= h >> 16

    key = MurmurHash3_x86_32 of the 16 bytes of (seed, counter) as little-endian int64s,
          hash seed = salt. That is, with words w = [lo32(seed), hi32(seed), lo32(counter),
          hi32(counter)] (two's complement):
            h = salt
            for k in w: k *= 0xCC9E2D51; k = rotl(k, 15); k *= 0x1B873593
                        h ^= k; h = rotl(h, 13); h = h * 5 + 0xE6546B64
            key = fmix32(h ^ 16)

    element i (row-major flat index, uint32):
            h = fmix32(key ^ (i * 0x9E3779B1 + 0x7F4A7C15))
            h = fmix32(h + key)
            value = float(h >> 8) * 2**-24          (exact in f32 and f64)

The values are identical for dtype f32 and f64. Typical use (dropout): seed = the run's
seed, counter = the step, salt = a per-layer constant, so layers and steps draw
independent streams and CPU and CUDA draw the same mask.
"""

def_op("random_uniform", arity=2, attrs={"shape": REQUIRED, "salt": 0, "dtype": DType.f32},
       infer=_random_uniform_infer, ref=_random_uniform_ref, vjp=NOT_DIFFERENTIABLE,
       sample=_random_uniform_sample, doc=_RANDOM_DOC)

# ----------------------------------------------------------------------------- one_hot


def _one_hot_infer(types, attrs):
    t = types[0]
    if not t.dtype.is_int:
        raise DTypeError(f"one_hot: indices must be an integer tensor, got {t}")
    depth = attrs["depth"]
    check(isinstance(depth, int) and depth >= 1, "one_hot",
          f"depth must be an integer >= 1, got {depth!r}")
    return TensorType(t.shape + (depth,), DType.of(attrs["dtype"]))


def _one_hot_ref(indices, depth, dtype=DType.f32):
    out = indices[..., None] == np.arange(depth, dtype=indices.dtype)
    return out.astype(DType.of(dtype).np)


def _one_hot_decompose(b, ins, attrs):
    # Compare against an iota constant: out-of-range (and negative) indices match no column,
    # which gives the all-zero rows TF/Keras produce.
    idx = ins[0]
    iota = b.const(np.arange(attrs["depth"]), idx.dtype)
    hit = b.equal(b.reshape(idx, shape=idx.shape + (1,)), iota)
    return b.cast(hit, dtype=DType.of(attrs["dtype"]))


def _one_hot_sample(rng, dtype):
    depth = int(rng.integers(1, 6))
    # Some indices fall outside [0, depth) on purpose: they must give all-zero rows.
    idx = rng.integers(-2, depth + 2, size=_rand_shape(rng, max_rank=2, max_dim=5))
    return ([idx.astype(np.int64 if rng.random() < 0.5 else np.int32)],
            {"depth": depth, "dtype": _as_dtype(dtype)})


def_op("one_hot", arity=1, attrs={"depth": REQUIRED, "dtype": DType.f32},
       infer=_one_hot_infer, ref=_one_hot_ref, vjp=NOT_DIFFERENTIABLE, primitive=False,
       decompose=_one_hot_decompose, sample=_one_hot_sample,
       doc="indices[...] -> [..., depth]: 1 where column == index, else 0; indices outside "
           "[0, depth) give all-zero rows (as TF/Keras).")

# ----------------------------------------------------------------------------- cut


def _cut_infer(types, attrs):
    check(len(types) >= 1, "cut", "expected at least one input, got none")
    check(isinstance(attrs["name"], str) and attrs["name"] != "", "cut",
          f"name must be a non-empty string, got {attrs['name']!r}")
    return list(types)


def _cut_decompose(b, ins, attrs):
    return ins[0] if len(ins) == 1 else tuple(ins)


def _cut_sample(rng, dtype):
    xs = [rng.standard_normal(_rand_shape(rng)).astype(dtype)
          for _ in range(int(rng.integers(1, 4)))]
    return xs, {"name": str(rng.choice(["grads", "update", "forward"]))}


def_op("cut", arity=None, attrs={"name": REQUIRED}, infer=_cut_infer,
       ref=lambda *xs, name: tuple(np.array(x) for x in xs),
       vjp=lambda b, n, g: list(g), primitive=False, decompose=_cut_decompose,
       sample=_cut_sample,
       doc="Named identity over any number of values (one output per input). Marks a "
           "boundary in the train graph, e.g. name=\"grads\" between gradients computed and "
           "update applied, where a data-parallel runtime splits the step to all-reduce. It "
           "decomposes to nothing, so single-device fusion can still cross it.")
