"""Convolution and window pooling over NHWC tensors, with their gradient forms.

Every op here is a backend primitive (conv is a contraction template, pooling a window op).
Padding is always explicit, ``((top, bottom), (left, right))``; ``conv_padding`` converts
Keras' ``'same'``/``'valid'`` into it with TF semantics. Filters are ``[KH, KW, Cin/groups,
Cout]`` (Keras layout); with ``groups=g`` input channel ``c`` belongs to group
``c // (Cin/g)`` and output channel ``o`` to group ``o // (Cout/g)``.
"""
from __future__ import annotations

import math

import numpy as np

from graphc.errors import DTypeError, ShapeError, UnknownNameError
from graphc.ir.dtypes import TensorType
from graphc.ir.graph import check
from graphc.ir.registry import REQUIRED, def_op, same_dtype

# ----------------------------------------------------------------------------- geometry


def conv_padding(kind: str, in_hw, kernel_hw, strides, dilation=(1, 1)):
    """Explicit ``((pt, pb), (pl, pr))`` for Keras padding ``kind`` ('same' or 'valid').

    'same' follows TF/Keras: the output has ``ceil(in / stride)`` positions, the total pad is
    ``max((ceil(in/s) - 1)*s + (k-1)*d + 1 - in, 0)`` and the odd pixel goes after
    (``pad_before = total // 2``). Pooling uses it with ``dilation=(1, 1)``.
    """
    k = str(kind).lower()
    if k == "valid":
        return ((0, 0), (0, 0))
    if k != "same":
        raise UnknownNameError(f"conv_padding: unknown padding {kind!r}; "
                               f"expected 'same' or 'valid'")
    pads = []
    for n, kk, s, d in zip(in_hw, kernel_hw, strides, dilation):
        total = max((math.ceil(n / s) - 1) * s + (kk - 1) * d + 1 - n, 0)
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def _check_pair(op, name, v, lo):
    check(isinstance(v, tuple) and len(v) == 2
          and all(isinstance(i, int) and i >= lo for i in v),
          op, f"{name} must be two integers >= {lo}, got {v!r}")


def _check_padding(op, p):
    check(isinstance(p, tuple) and len(p) == 2
          and all(isinstance(q, tuple) and len(q) == 2
                  and all(isinstance(i, int) and i >= 0 for i in q) for q in p),
          op, f"padding must be ((top, bottom), (left, right)) with integers >= 0, got {p!r}")


def _check_shape_attr(op, name, v, layout):
    check(isinstance(v, tuple) and len(v) == 4 and all(isinstance(d, int) and d >= 1 for d in v),
          op, f"{name} must be 4 positive integers {layout}, got {v!r}")


def _check_nhwc(op, what, t):
    check(t.rank == 4, op, f"{what} must be rank 4 (NHWC), got {t}")


def _check_float(op, t):
    if not t.dtype.is_float:
        raise DTypeError(f"{op}: expected a float tensor, got {t}")


def _out_hw(op, in_hw, k_hw, strides, padding, dilation):
    out = []
    for ax in range(2):
        eff = (k_hw[ax] - 1) * dilation[ax] + 1
        span = in_hw[ax] + padding[ax][0] + padding[ax][1]
        check(span >= eff, op, f"padded input {'height' if ax == 0 else 'width'} {span} is "
              f"smaller than the (dilated) window {eff}")
        out.append((span - eff) // strides[ax] + 1)
    return tuple(out)


def _conv_attrs_check(op, attrs):
    _check_pair(op, "strides", attrs["strides"], 1)
    _check_pair(op, "dilation", attrs["dilation"], 1)
    _check_padding(op, attrs["padding"])
    check(isinstance(attrs["groups"], int) and attrs["groups"] >= 1, op,
          f"groups must be an integer >= 1, got {attrs['groups']!r}")


def _conv_shape(op, x_shape, w_shape, attrs):
    """Check an (input, filter) shape pair for conv and return the output shape."""
    n, h, w, cin = x_shape
    kh, kw, cg, cout = w_shape
    g = attrs["groups"]
    check(cin % g == 0, op, f"input channels {cin} not divisible by groups {g}")
    check(cout % g == 0, op, f"filter output channels {cout} not divisible by groups {g}")
    check(cg * g == cin, op, f"filter in-channels: expected {cin // g} (input channels {cin} "
          f"/ groups {g}), got {cg} (filter {list(w_shape)})")
    check(kh >= 1 and kw >= 1, op, f"filter spatial size must be >= 1, got {list(w_shape)}")
    oh, ow = _out_hw(op, (h, w), (kh, kw), attrs["strides"], attrs["padding"], attrs["dilation"])
    return (n, oh, ow, cout)


# ----------------------------------------------------------------------------- numpy helpers

def _pad_hw(x, padding, value=0):
    (pt, pb), (pl, pr) = padding
    return np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=value)


def _tap(xp, i, j, out_hw, strides, dilation):
    """View of the padded input seen by window tap (i, j) at every output position."""
    (oh, ow), (sh, sw), (dh, dw) = out_hw, strides, dilation
    return xp[:, i * dh: i * dh + (oh - 1) * sh + 1: sh, j * dw: j * dw + (ow - 1) * sw + 1: sw, :]


def _conv2d_ref(x, w, strides, padding, dilation, groups):
    n, _, _, cin = x.shape
    kh, kw, cg, cout = w.shape
    _, oh, ow, _ = _conv_shape("conv2d", x.shape, w.shape, dict(
        strides=strides, padding=padding, dilation=dilation, groups=groups))
    og = cout // groups
    xp = _pad_hw(x, padding)
    y = np.zeros((n, oh, ow, cout), dtype=x.dtype)
    # One matmul per (tap, group): BLAS does the channel contraction.
    for i in range(kh):
        for j in range(kw):
            p = _tap(xp, i, j, (oh, ow), strides, dilation)
            for gi in range(groups):
                y[..., gi * og:(gi + 1) * og] += (p[..., gi * cg:(gi + 1) * cg]
                                                  @ w[i, j, :, gi * og:(gi + 1) * og])
    return y


def _conv2d_backprop_input_ref(dy, w, input_shape, strides, padding, dilation, groups):
    n, h, wd, cin = input_shape
    kh, kw, cg, cout = w.shape
    _, oh, ow, _ = dy.shape
    og = cout // groups
    (pt, pb), (pl, pr) = padding
    dxp = np.zeros((n, h + pt + pb, wd + pl + pr, cin), dtype=dy.dtype)
    for i in range(kh):
        for j in range(kw):
            t = _tap(dxp, i, j, (oh, ow), strides, dilation)  # a view: += scatters into dxp
            for gi in range(groups):
                t[..., gi * cg:(gi + 1) * cg] += (dy[..., gi * og:(gi + 1) * og]
                                                  @ w[i, j, :, gi * og:(gi + 1) * og].T)
    return dxp[:, pt:pt + h, pl:pl + wd, :].copy()


def _conv2d_backprop_filter_ref(x, dy, filter_shape, strides, padding, dilation, groups):
    kh, kw, cg, cout = filter_shape
    _, oh, ow, _ = dy.shape
    og = cout // groups
    xp = _pad_hw(x, padding)
    dw = np.zeros(tuple(filter_shape), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            p = _tap(xp, i, j, (oh, ow), strides, dilation)
            for gi in range(groups):
                a = p[..., gi * cg:(gi + 1) * cg].reshape(-1, cg)
                bb = dy[..., gi * og:(gi + 1) * og].reshape(-1, og)
                dw[i, j, :, gi * og:(gi + 1) * og] = a.T @ bb
    return dw


# ----------------------------------------------------------------------------- conv ops

_CONV_ATTRS = {"strides": (1, 1), "padding": ((0, 0), (0, 0)), "dilation": (1, 1), "groups": 1}


def _conv_kw(attrs):
    return {k: attrs[k] for k in _CONV_ATTRS}


def _conv2d_infer(types, attrs):
    x, w = types
    op = "conv2d"
    dt = same_dtype(op, types)
    _check_float(op, x)
    _check_nhwc(op, "input", x)
    check(w.rank == 4, op, f"filter must be rank 4 [KH,KW,Cin/groups,Cout], got {w}")
    _conv_attrs_check(op, attrs)
    return TensorType(_conv_shape(op, x.shape, w.shape, attrs), dt)


def _conv2d_vjp(b, n, g):
    x, w = n.inputs
    kw = _conv_kw(n.attrs)
    return [b.conv2d_backprop_input(g[0], w, input_shape=x.shape, **kw),
            b.conv2d_backprop_filter(x, g[0], filter_shape=w.shape, **kw)]


def _bi_infer(types, attrs):
    dy, w = types
    op = "conv2d_backprop_input"
    dt = same_dtype(op, types)
    _check_float(op, dy)
    _check_nhwc(op, "dy", dy)
    check(w.rank == 4, op, f"filter must be rank 4 [KH,KW,Cin/groups,Cout], got {w}")
    _conv_attrs_check(op, attrs)
    ishape = attrs["input_shape"]
    _check_shape_attr(op, "input_shape", ishape, "(NHWC)")
    expect = _conv_shape(op, ishape, w.shape, attrs)
    check(expect == dy.shape, op, f"dy shape: expected {list(expect)} (conv2d of input_shape "
          f"{list(ishape)} with filter {list(w.shape)}), got {list(dy.shape)}")
    return TensorType(ishape, dt)


def _bi_vjp(b, n, g):
    # dx = B(dy, w) is bilinear and is the adjoint of conv2d in x:
    #   <gbar, B(dy, w)> = <conv2d(gbar, w), dy>.
    dy, w = n.inputs
    kw = _conv_kw(n.attrs)
    return [b.conv2d(g[0], w, **kw),
            b.conv2d_backprop_filter(g[0], dy, filter_shape=w.shape, **kw)]


def _bf_infer(types, attrs):
    x, dy = types
    op = "conv2d_backprop_filter"
    dt = same_dtype(op, types)
    _check_float(op, x)
    _check_nhwc(op, "input", x)
    _check_nhwc(op, "dy", dy)
    _conv_attrs_check(op, attrs)
    fshape = attrs["filter_shape"]
    _check_shape_attr(op, "filter_shape", fshape, "[KH,KW,Cin/groups,Cout]")
    expect = _conv_shape(op, x.shape, fshape, attrs)
    check(expect == dy.shape, op, f"dy shape: expected {list(expect)} (conv2d of {list(x.shape)} "
          f"with filter_shape {list(fshape)}), got {list(dy.shape)}")
    return TensorType(fshape, dt)


def _bf_vjp(b, n, g):
    # dw = F(x, dy) with <gbar, F(x, dy)> = <conv2d(x, gbar), dy>.
    x, dy = n.inputs
    kw = _conv_kw(n.attrs)
    return [b.conv2d_backprop_input(dy, g[0], input_shape=x.shape, **kw),
            b.conv2d(x, g[0], **kw)]


def _conv_config(rng):
    """A random small valid conv geometry: (x_shape, w_shape, attrs, y_shape)."""
    while True:
        groups = 2 if rng.random() < 0.3 else 1
        cg = 1 if groups == 2 else int(rng.integers(1, 4))
        og = 1 if groups == 2 else int(rng.integers(1, 4))
        n = int(rng.integers(1, 3))
        h, w = (int(v) for v in rng.integers(1, 8, size=2))
        kh, kw = (int(v) for v in rng.integers(1, 4, size=2))
        strides = tuple(int(v) for v in rng.integers(1, 3, size=2))
        dilation = tuple(int(v) for v in rng.integers(1, 3, size=2))
        r = rng.random()
        if r < 0.35:
            padding = conv_padding("same", (h, w), (kh, kw), strides, dilation)
        elif r < 0.7:
            padding = ((0, 0), (0, 0))
        else:
            padding = tuple(tuple(int(v) for v in rng.integers(0, 3, size=2)) for _ in range(2))
        attrs = {"strides": strides, "padding": padding, "dilation": dilation, "groups": groups}
        xs, ws = (n, h, w, cg * groups), (kh, kw, cg, og * groups)
        try:
            ys = _conv_shape("conv2d", xs, ws, attrs)
        except ShapeError:
            continue
        return xs, ws, attrs, ys


def _conv2d_sample(rng, dtype):
    xs, ws, attrs, _ = _conv_config(rng)
    return [rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)], attrs


def _bi_sample(rng, dtype):
    xs, ws, attrs, ys = _conv_config(rng)
    return ([rng.standard_normal(ys).astype(dtype), rng.standard_normal(ws).astype(dtype)],
            {**attrs, "input_shape": xs})


def _bf_sample(rng, dtype):
    xs, ws, attrs, ys = _conv_config(rng)
    return ([rng.standard_normal(xs).astype(dtype), rng.standard_normal(ys).astype(dtype)],
            {**attrs, "filter_shape": ws})


def_op("conv2d", arity=2, attrs=dict(_CONV_ATTRS), infer=_conv2d_infer, ref=_conv2d_ref,
       vjp=_conv2d_vjp, sample=_conv2d_sample,
       doc="2-D cross-correlation, NHWC input, [KH,KW,Cin/groups,Cout] filter, explicit "
           "padding ((pt,pb),(pl,pr)), strides, dilation, groups.")
def_op("conv2d_backprop_input", arity=2,
       attrs={"input_shape": REQUIRED, **_CONV_ATTRS},
       infer=_bi_infer, ref=_conv2d_backprop_input_ref, vjp=_bi_vjp, sample=_bi_sample,
       doc="Gradient of conv2d w.r.t. its input: (dy, w) -> dx of shape input_shape.")
def_op("conv2d_backprop_filter", arity=2,
       attrs={"filter_shape": REQUIRED, **_CONV_ATTRS},
       infer=_bf_infer, ref=_conv2d_backprop_filter_ref, vjp=_bf_vjp, sample=_bf_sample,
       doc="Gradient of conv2d w.r.t. its filter: (x, dy) -> dw of shape filter_shape.")


# ----------------------------------------------------------------------------- pooling
# Pads must be smaller than the window on each side, so every window overlaps the input
# (always true for Keras 'same'/'valid'); then max never sees only padding and the average
# divisor (number of valid elements, as TF/Keras use) is never zero.

_POOL_ATTRS = {"pool": REQUIRED, "strides": REQUIRED, "padding": ((0, 0), (0, 0))}


def _pool_kw(attrs):
    return {k: attrs[k] for k in _POOL_ATTRS}


def _pool_geometry(op, x_shape, attrs):
    """Validate pool attributes against an input shape; return (oh, ow)."""
    _check_pair(op, "pool", attrs["pool"], 1)
    _check_pair(op, "strides", attrs["strides"], 1)
    _check_padding(op, attrs["padding"])
    for ax in range(2):
        k = attrs["pool"][ax]
        check(all(p < k for p in attrs["padding"][ax]), op,
              f"padding {attrs['padding'][ax]} must be smaller than the window {k} on each side")
    return _out_hw(op, x_shape[1:3], attrs["pool"], attrs["strides"], attrs["padding"], (1, 1))


def _pool_infer(op):
    def infer(types, attrs):
        x = types[0]
        _check_float(op, x)
        _check_nhwc(op, "input", x)
        oh, ow = _pool_geometry(op, x.shape, attrs)
        return x.with_shape((x.shape[0], oh, ow, x.shape[3]))
    return infer


def _taps(pool):
    """Window taps in row-major order: the order that decides ties in max pooling."""
    return [(i, j) for i in range(pool[0]) for j in range(pool[1])]


def _out_of(x_shape, pool, strides, padding):
    return _out_hw("pool", x_shape[1:3], pool, strides, padding, (1, 1))


def _max_pool_ref(x, pool, strides, padding):
    out = _out_of(x.shape, pool, strides, padding)
    xp = _pad_hw(x, padding, -np.inf)
    y = None
    for i, j in _taps(pool):
        t = _tap(xp, i, j, out, strides, (1, 1))
        y = t.copy() if y is None else np.maximum(y, t)
    return y


def _argmax_tap(x, pool, strides, padding, out):
    """Per output element, the index (in ``_taps`` order) of the FIRST maximal tap."""
    xp = _pad_hw(x, padding, -np.inf)
    best, idx = None, None
    for t, (i, j) in enumerate(_taps(pool)):
        v = _tap(xp, i, j, out, strides, (1, 1))
        if best is None:
            best, idx = v.copy(), np.zeros(v.shape, dtype=np.int64)
            continue
        upd = v > best  # strict: an equal later tap does not take over
        best = np.where(upd, v, best)
        idx = np.where(upd, t, idx)
    return idx


def _max_pool_grad_ref(x, dy, pool, strides, padding):
    out = dy.shape[1:3]
    idx = _argmax_tap(x, pool, strides, padding, out)
    dxp = _pad_hw(np.zeros_like(x), padding)
    for t, (i, j) in enumerate(_taps(pool)):
        view = _tap(dxp, i, j, out, strides, (1, 1))
        view += np.where(idx == t, dy, 0)
    (pt, _), (pl, _) = padding
    return dxp[:, pt:pt + x.shape[1], pl:pl + x.shape[2], :].copy()


def _max_pool_gather_ref(x, g, pool, strides, padding):
    out = _out_of(x.shape, pool, strides, padding)
    idx = _argmax_tap(x, pool, strides, padding, out)
    gp = _pad_hw(g, padding)
    y = np.zeros(idx.shape, dtype=g.dtype)
    for t, (i, j) in enumerate(_taps(pool)):
        y += np.where(idx == t, _tap(gp, i, j, out, strides, (1, 1)), 0)
    return y


def _valid_count(in_hw, pool, strides, padding, out):
    """[1, OH, OW, 1] number of unpadded elements under each window (separable per axis)."""
    per_axis = []
    for ax in range(2):
        starts = np.arange(out[ax]) * strides[ax] - padding[ax][0]
        per_axis.append(np.minimum(starts + pool[ax], in_hw[ax]) - np.maximum(starts, 0))
    return (per_axis[0][:, None] * per_axis[1][None, :])[None, :, :, None]


def _avg_pool_ref(x, pool, strides, padding):
    out = _out_of(x.shape, pool, strides, padding)
    xp = _pad_hw(x, padding)
    s = np.zeros((x.shape[0],) + out + (x.shape[3],), dtype=x.dtype)
    for i, j in _taps(pool):
        s += _tap(xp, i, j, out, strides, (1, 1))
    return (s / _valid_count(x.shape[1:3], pool, strides, padding, out)).astype(x.dtype)


def _avg_pool_grad_ref(dy, input_shape, pool, strides, padding):
    out = dy.shape[1:3]
    dyc = (dy / _valid_count(input_shape[1:3], pool, strides, padding, out)).astype(dy.dtype)
    (pt, pb), (pl, pr) = padding
    n, h, w, c = input_shape
    dxp = np.zeros((n, h + pt + pb, w + pl + pr, c), dtype=dy.dtype)
    for i, j in _taps(pool):
        view = _tap(dxp, i, j, out, strides, (1, 1))
        view += dyc
    return dxp[:, pt:pt + h, pl:pl + w, :].copy()


def _pool_pair_infer(op, first, second, second_is_pooled):
    """Infer for the two-input max-pool helpers: x plus a tensor shaped like y or like x."""
    def infer(types, attrs):
        x, other = types
        dt = same_dtype(op, types)
        _check_float(op, x)
        _check_nhwc(op, first, x)
        oh, ow = _pool_geometry(op, x.shape, attrs)
        y_shape = (x.shape[0], oh, ow, x.shape[3])
        want = y_shape if second_is_pooled else x.shape
        check(other.shape == want, op,
              f"{second}: expected shape {list(want)}, got {list(other.shape)}")
        return TensorType(x.shape if second_is_pooled else y_shape, dt)
    return infer


def _avg_grad_infer(types, attrs):
    op = "avg_pool2d_grad"
    dy = types[0]
    _check_float(op, dy)
    _check_nhwc(op, "dy", dy)
    ishape = attrs["input_shape"]
    _check_shape_attr(op, "input_shape", ishape, "(NHWC)")
    oh, ow = _pool_geometry(op, ishape, attrs)
    want = (ishape[0], oh, ow, ishape[3])
    check(dy.shape == want, op, f"dy: expected shape {list(want)} (pooling of input_shape "
          f"{list(ishape)}), got {list(dy.shape)}")
    return dy.with_shape(ishape)


def _pool_config(rng):
    while True:
        n, c = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        h, w = (int(v) for v in rng.integers(1, 8, size=2))
        pool = tuple(int(v) for v in rng.integers(1, 4, size=2))
        strides = tuple(int(v) for v in rng.integers(1, 4, size=2))
        r = rng.random()
        if r < 0.4:
            padding = conv_padding("same", (h, w), pool, strides)
        elif r < 0.7:
            padding = ((0, 0), (0, 0))
        else:
            padding = tuple(tuple(int(v) for v in rng.integers(0, k, size=2)) for k in pool)
        attrs = {"pool": pool, "strides": strides, "padding": padding}
        try:
            oh, ow = _pool_geometry("pool", (n, h, w, c), attrs)
        except ShapeError:
            continue
        return (n, h, w, c), attrs, (n, oh, ow, c)


def _distinct(rng, shape, dtype):
    """Values >= ~0.08 apart: window maxima are unique and FD probes cannot reorder them."""
    size = int(np.prod(shape))
    v = (rng.permutation(size) - size / 2) * 0.1 + rng.uniform(-0.01, 0.01, size)
    return v.reshape(shape).astype(dtype)


def _max_pool_sample(rng, dtype):
    xs, attrs, _ = _pool_config(rng)
    return [_distinct(rng, xs, dtype)], attrs


def _max_pool_grad_sample(rng, dtype):
    xs, attrs, ys = _pool_config(rng)
    return [_distinct(rng, xs, dtype), rng.standard_normal(ys).astype(dtype)], attrs


def _max_pool_gather_sample(rng, dtype):
    xs, attrs, _ = _pool_config(rng)
    return [_distinct(rng, xs, dtype), rng.standard_normal(xs).astype(dtype)], attrs


def _avg_pool_sample(rng, dtype):
    xs, attrs, _ = _pool_config(rng)
    return [rng.standard_normal(xs).astype(dtype)], attrs


def _avg_pool_grad_sample(rng, dtype):
    xs, attrs, ys = _pool_config(rng)
    return [rng.standard_normal(ys).astype(dtype)], {**attrs, "input_shape": xs}


# max_pool2d_grad(x, dy) is piecewise constant in x (the argmax only moves at ties), so its
# x-gradient is zero almost everywhere and is reported as None; it is linear in dy, and its
# adjoint in dy is max_pool2d_gather (read g at each window's argmax) — and vice versa.
def_op("max_pool2d", arity=1, attrs=dict(_POOL_ATTRS), infer=_pool_infer("max_pool2d"),
       ref=_max_pool_ref, sample=_max_pool_sample,
       vjp=lambda b, n, g: [b.max_pool2d_grad(n.inputs[0], g[0], **_pool_kw(n.attrs))],
       doc="Max over pool windows (NHWC); padding never wins (it acts as -inf).")
def_op("max_pool2d_grad", arity=2, attrs=dict(_POOL_ATTRS),
       infer=_pool_pair_infer("max_pool2d_grad", "input", "dy", True),
       ref=_max_pool_grad_ref, sample=_max_pool_grad_sample,
       vjp=lambda b, n, g: [None, b.max_pool2d_gather(n.inputs[0], g[0], **_pool_kw(n.attrs))],
       doc="(x, dy) -> dx: each window's dy goes to the FIRST maximal element of the window "
           "in row-major (kh, kw) order; ties are not split. Windows overlap: contributions add.")
def_op("max_pool2d_gather", arity=2, attrs=dict(_POOL_ATTRS),
       infer=_pool_pair_infer("max_pool2d_gather", "input", "g", False),
       ref=_max_pool_gather_ref, sample=_max_pool_gather_sample,
       vjp=lambda b, n, g: [None, b.max_pool2d_grad(n.inputs[0], g[0], **_pool_kw(n.attrs))],
       doc="(x, g) -> y shaped like max_pool2d(x): g read at each window's first argmax of x "
           "(the adjoint of max_pool2d_grad in dy; its gradient-of-gradient).")
def_op("avg_pool2d", arity=1, attrs=dict(_POOL_ATTRS), infer=_pool_infer("avg_pool2d"),
       ref=_avg_pool_ref, sample=_avg_pool_sample,
       vjp=lambda b, n, g: [b.avg_pool2d_grad(g[0], input_shape=n.inputs[0].shape,
                                              **_pool_kw(n.attrs))],
       doc="Mean over pool windows (NHWC), dividing by the number of unpadded elements in "
           "each window (TF/Keras 'same' semantics).")
def_op("avg_pool2d_grad", arity=1, attrs={"input_shape": REQUIRED, **_POOL_ATTRS},
       infer=_avg_grad_infer, ref=_avg_pool_grad_ref, sample=_avg_pool_grad_sample,
       vjp=lambda b, n, g: [b.avg_pool2d(g[0], **_pool_kw(n.attrs))],
       doc="dy -> dx: the adjoint of avg_pool2d (each dy spread evenly over its window's "
           "unpadded elements).")
