"""Independent numpy oracles for the ops of graphc/ir/ops/{nn,movement2,misc}.py.

Written the slow, obvious way (explicit loops over output positions and windows, float64,
pure-Python hashing) and sharing no code with the registry's refs, so a bug in a ref cannot
hide in its oracle. ``ORACLES[name](*inputs, **attrs)`` returns what the op's ref returns.
"""
from __future__ import annotations

import itertools
import math
import struct

import numpy as np

# ----------------------------------------------------------------------------- helpers


def _out_len(n, k, s, d, lo, hi):
    return (n + lo + hi - (k - 1) * d - 1) // s + 1


def _np_dtype(dtype):
    # attrs carry graphc DTypes (value "f32"...); avoid importing graphc here.
    name = getattr(dtype, "value", dtype)
    return np.dtype({"f32": "float32", "f64": "float64", "i32": "int32", "i64": "int64",
                     "u32": "uint32", "bool": "bool"}.get(name, name))


# ----------------------------------------------------------------------------- conv


def conv2d(x, w, strides=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
    xd, wd = x.astype(np.float64), w.astype(np.float64)
    n_, h, wi, _ = x.shape
    kh_, kw_, cg, cout = w.shape
    og = cout // groups
    (sh, sw), (dh, dw), ((pt, pb), (pl, pr)) = strides, dilation, padding
    oh_, ow_ = _out_len(h, kh_, sh, dh, pt, pb), _out_len(wi, kw_, sw, dw, pl, pr)
    y = np.zeros((n_, oh_, ow_, cout))
    for n, oh, ow, o in itertools.product(range(n_), range(oh_), range(ow_), range(cout)):
        g = o // og
        acc = 0.0
        for kh, kw, c in itertools.product(range(kh_), range(kw_), range(cg)):
            ih, iw = oh * sh - pt + kh * dh, ow * sw - pl + kw * dw
            if 0 <= ih < h and 0 <= iw < wi:
                acc += xd[n, ih, iw, g * cg + c] * wd[kh, kw, c, o]
        y[n, oh, ow, o] = acc
    return y.astype(x.dtype)


def conv2d_backprop_input(dy, w, input_shape, strides=(1, 1), padding=((0, 0), (0, 0)),
                          dilation=(1, 1), groups=1):
    n_, h, wi, _ = input_shape
    kh_, kw_, cg, cout = w.shape
    og = cout // groups
    (sh, sw), (dh, dw), ((pt, _), (pl, _)) = strides, dilation, padding
    dx = np.zeros(tuple(input_shape))
    # dx[n, ih, iw, c] = sum of w[kh, kw, c, o] * dy[n, oh, ow, o] over every tap and
    # output position that reads input pixel (ih, iw): oh*sh - pt + kh*dh == ih.
    for n, ih, iw, ci in itertools.product(range(n_), range(h), range(wi), range(cg * groups)):
        g, c = divmod(ci, cg)
        acc = 0.0
        for kh, kw in itertools.product(range(kh_), range(kw_)):
            qh, rh = divmod(ih + pt - kh * dh, sh)
            qw, rw = divmod(iw + pl - kw * dw, sw)
            if rh or rw or not (0 <= qh < dy.shape[1] and 0 <= qw < dy.shape[2]):
                continue
            for o in range(g * og, (g + 1) * og):
                acc += float(w[kh, kw, c, o]) * float(dy[n, qh, qw, o])
        dx[n, ih, iw, ci] = acc
    return dx.astype(dy.dtype)


def conv2d_backprop_filter(x, dy, filter_shape, strides=(1, 1), padding=((0, 0), (0, 0)),
                           dilation=(1, 1), groups=1):
    kh_, kw_, cg, cout = filter_shape
    og = cout // groups
    n_, h, wi, _ = x.shape
    (sh, sw), (dh, dw), ((pt, _), (pl, _)) = strides, dilation, padding
    dw_ = np.zeros(tuple(filter_shape))
    for kh, kw, c, o in itertools.product(range(kh_), range(kw_), range(cg), range(cout)):
        ci = (o // og) * cg + c
        acc = 0.0
        for n, oh, ow in itertools.product(range(n_), range(dy.shape[1]), range(dy.shape[2])):
            ih, iw = oh * sh - pt + kh * dh, ow * sw - pl + kw * dw
            if 0 <= ih < h and 0 <= iw < wi:
                acc += float(x[n, ih, iw, ci]) * float(dy[n, oh, ow, o])
        dw_[kh, kw, c, o] = acc
    return dw_.astype(x.dtype)


# ----------------------------------------------------------------------------- pooling

def _windows(x_shape, pool, strides, padding):
    """Yield (oh, ow, [valid (ih, iw) in row-major window order])."""
    _, h, w, _ = x_shape
    (ph, pw), (sh, sw), ((pt, pb), (pl, pr)) = pool, strides, padding
    for oh in range(_out_len(h, ph, sh, 1, pt, pb)):
        for ow in range(_out_len(w, pw, sw, 1, pl, pr)):
            pos = [(oh * sh - pt + i, ow * sw - pl + j) for i in range(ph) for j in range(pw)]
            yield oh, ow, [(a, b) for a, b in pos if 0 <= a < h and 0 <= b < w]


def _pooled_shape(x_shape, pool, strides, padding):
    (ph, pw), (sh, sw), ((pt, pb), (pl, pr)) = pool, strides, padding
    return (x_shape[0], _out_len(x_shape[1], ph, sh, 1, pt, pb),
            _out_len(x_shape[2], pw, sw, 1, pl, pr), x_shape[3])


def _first_argmax(x, n, c, cells):
    best = None
    for a, b in cells:
        if best is None or x[n, a, b, c] > x[n, best[0], best[1], c]:
            best = (a, b)
    return best


def max_pool2d(x, pool, strides, padding=((0, 0), (0, 0))):
    y = np.zeros(_pooled_shape(x.shape, pool, strides, padding))
    for oh, ow, cells in _windows(x.shape, pool, strides, padding):
        for n, c in itertools.product(range(x.shape[0]), range(x.shape[3])):
            y[n, oh, ow, c] = max(float(x[n, a, b, c]) for a, b in cells)
    return y.astype(x.dtype)


def max_pool2d_grad(x, dy, pool, strides, padding=((0, 0), (0, 0))):
    dx = np.zeros(x.shape)
    for oh, ow, cells in _windows(x.shape, pool, strides, padding):
        for n, c in itertools.product(range(x.shape[0]), range(x.shape[3])):
            a, b = _first_argmax(x, n, c, cells)
            dx[n, a, b, c] += dy[n, oh, ow, c]
    return dx.astype(x.dtype)


def max_pool2d_gather(x, g, pool, strides, padding=((0, 0), (0, 0))):
    y = np.zeros(_pooled_shape(x.shape, pool, strides, padding))
    for oh, ow, cells in _windows(x.shape, pool, strides, padding):
        for n, c in itertools.product(range(x.shape[0]), range(x.shape[3])):
            a, b = _first_argmax(x, n, c, cells)
            y[n, oh, ow, c] = g[n, a, b, c]
    return y.astype(g.dtype)


def avg_pool2d(x, pool, strides, padding=((0, 0), (0, 0))):
    y = np.zeros(_pooled_shape(x.shape, pool, strides, padding))
    for oh, ow, cells in _windows(x.shape, pool, strides, padding):
        for n, c in itertools.product(range(x.shape[0]), range(x.shape[3])):
            y[n, oh, ow, c] = math.fsum(float(x[n, a, b, c]) for a, b in cells) / len(cells)
    return y.astype(x.dtype)


def avg_pool2d_grad(dy, input_shape, pool, strides, padding=((0, 0), (0, 0))):
    dx = np.zeros(tuple(input_shape))
    for oh, ow, cells in _windows(input_shape, pool, strides, padding):
        for n, c in itertools.product(range(input_shape[0]), range(input_shape[3])):
            for a, b in cells:
                dx[n, a, b, c] += float(dy[n, oh, ow, c]) / len(cells)
    return dx.astype(dy.dtype)


# ----------------------------------------------------------------------------- movement

def slice_(x, begin, end, strides=None):
    strides = strides or (1,) * x.ndim
    ranges = [list(range(b, e, s)) for b, e, s in zip(begin, end, strides)]
    out = np.zeros([len(r) for r in ranges], dtype=x.dtype)
    for oi, xi in zip(itertools.product(*[range(len(r)) for r in ranges]),
                      itertools.product(*ranges)):
        out[oi] = x[xi]
    return out


def pad(x, pads, value=0.0):
    out = np.full([d + lo + hi for d, (lo, hi) in zip(x.shape, pads)], value, dtype=x.dtype)
    for idx in itertools.product(*[range(d) for d in x.shape]):
        out[tuple(i + lo for i, (lo, _) in zip(idx, pads))] = x[idx]
    return out


def concat(*xs, axis):
    shape = list(xs[0].shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    out = np.zeros(shape, dtype=xs[0].dtype)
    off = 0
    for x in xs:
        for idx in itertools.product(*[range(d) for d in x.shape]):
            j = list(idx)
            j[axis] += off
            out[tuple(j)] = x[idx]
        off += x.shape[axis]
    return out


# ----------------------------------------------------------------------------- softmax

def _rows(x, axis, fn):
    xm = np.moveaxis(x.astype(np.float64), axis, -1)
    out = np.zeros(xm.shape)
    for idx in itertools.product(*[range(d) for d in xm.shape[:-1]]):
        out[idx] = fn([float(v) for v in xm[idx]])
    return np.moveaxis(out, -1, axis).astype(x.dtype)


def _softmax_row(r):
    m = max(r)
    e = [math.exp(v - m) for v in r]
    s = math.fsum(e)
    return [v / s for v in e]


def _log_softmax_row(r):
    m = max(r)
    lse = m + math.log(math.fsum(math.exp(v - m) for v in r))
    return [v - lse for v in r]


def softmax(x, axis):
    return _rows(x, axis, _softmax_row)


def log_softmax(x, axis):
    return _rows(x, axis, _log_softmax_row)


# ----------------------------------------------------------------------------- random

def murmur3_32(data: bytes, seed: int = 0) -> int:
    """Reference MurmurHash3_x86_32 over bytes (with the tail handling, for test vectors)."""
    M = 0xFFFFFFFF

    def rotl(v, r):
        return ((v << r) | (v >> (32 - r))) & M

    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & M
    nblocks = len(data) // 4
    for blk in range(nblocks):
        k = int.from_bytes(data[4 * blk:4 * blk + 4], "little")
        k = rotl((k * c1) & M, 15) * c2 & M
        h = (rotl(h ^ k, 13) * 5 + 0xE6546B64) & M
    tail = data[4 * nblocks:]
    if tail:
        k = int.from_bytes(tail, "little")
        h ^= rotl((k * c1) & M, 15) * c2 & M
    return _fmix(h ^ len(data))


def _fmix(h):
    M = 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M
    return h ^ (h >> 16)


def random_uniform(seed, counter, shape, salt=0, dtype="f32"):
    M = 0xFFFFFFFF
    key = murmur3_32(struct.pack("<qq", int(seed), int(counter)), salt)
    n = int(np.prod(shape, dtype=np.int64))
    vals = []
    for i in range(n):
        h = _fmix(key ^ ((i * 0x9E3779B1 + 0x7F4A7C15) & M))
        h = _fmix((h + key) & M)
        vals.append((h >> 8) / 16777216.0)
    return np.array(vals, dtype=np.float64).reshape(shape).astype(_np_dtype(dtype))


# ----------------------------------------------------------------------------- misc

def one_hot(indices, depth, dtype="f32"):
    out = np.zeros(indices.shape + (depth,), dtype=_np_dtype(dtype))
    for idx in itertools.product(*[range(d) for d in indices.shape]):
        k = int(indices[idx])
        if 0 <= k < depth:
            out[idx + (k,)] = 1
    return out


def cut(*xs, name):
    return tuple(np.array(x, copy=True) for x in xs)


ORACLES = {
    "conv2d": conv2d,
    "conv2d_backprop_input": conv2d_backprop_input,
    "conv2d_backprop_filter": conv2d_backprop_filter,
    "max_pool2d": max_pool2d,
    "max_pool2d_grad": max_pool2d_grad,
    "max_pool2d_gather": max_pool2d_gather,
    "avg_pool2d": avg_pool2d,
    "avg_pool2d_grad": avg_pool2d_grad,
    "slice": slice_,
    "pad": pad,
    "concat": concat,
    "softmax": softmax,
    "log_softmax": log_softmax,
    "random_uniform": random_uniform,
    "one_hot": one_hot,
    "cut": cut,
}
