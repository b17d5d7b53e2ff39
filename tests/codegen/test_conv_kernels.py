"""The generated conv2d / conv2d_backprop_input / conv2d_backprop_filter kernels against the
reference interpreter's numpy semantics: varied small geometries (strides, dilation,
groups, asymmetric 'same' and explicit padding, channel counts 1/3/17/33), fused
epilogues, bit-identical repeats and begin/end splits, the 8-wide (AVX2) variant and the
thread-pool entry. All kernels of a test module are compiled in one LLVM module, once."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("llvmlite")
from llvmlite import ir  # noqa: E402

from graphc.codegen.cpu import conv, gemm, jit  # noqa: E402
from graphc.errors import ShapeError  # noqa: E402
from graphc.ir.ops.nn import conv_padding  # noqa: E402
from graphc.ir.registry import get_op  # noqa: E402

# (x_shape, w_shape, strides, padding | 'same' | 'valid', dilation, groups)
HANDPICKED = [
    ((2, 28, 28, 1), (5, 5, 1, 6), (1, 1), "same", (1, 1), 1),       # LeNet conv1
    ((2, 14, 14, 6), (5, 5, 6, 16), (1, 1), "valid", (1, 1), 1),     # LeNet conv2
    ((1, 1, 1, 1), (1, 1, 1, 1), (1, 1), "valid", (1, 1), 1),
    ((3, 11, 9, 3), (3, 3, 3, 17), (1, 1), "same", (1, 1), 1),
    ((2, 10, 11, 33), (3, 2, 33, 33), (2, 3), "same", (1, 1), 1),
    ((1, 9, 10, 17), (5, 4, 17, 3), (2, 2), "same", (2, 1), 1),      # asymmetric pads
    ((2, 8, 7, 2), (3, 3, 1, 6), (1, 2), ((2, 0), (1, 2)), (2, 2), 2),
    ((2, 7, 8, 34), (2, 3, 17, 34), (3, 1), ((1, 1), (0, 2)), (1, 2), 2),
    ((1, 5, 5, 6), (5, 5, 3, 2), (1, 1), ((4, 4), (4, 4)), (1, 1), 2),  # pad >= kernel-1
    ((2, 3, 11, 1), (1, 5, 1, 33), (3, 1), "same", (1, 2), 1),
    ((1, 6, 6, 3), (2, 2, 3, 16), (3, 3), "valid", (1, 1), 1),       # stride > kernel
    # Lanes over the reduced channels (few output channels): forward with 1 output
    # channel (also grouped), a 1-channel transposed-conv-like backprop-input, and the
    # swapped backprop-filter.
    ((2, 9, 10, 16), (3, 3, 16, 1), (2, 1), "same", (1, 2), 1),
    ((2, 7, 7, 34), (3, 2, 17, 2), (1, 2), "same", (1, 1), 2),
    ((2, 8, 8, 1), (4, 4, 1, 16), (2, 2), "same", (1, 1), 1),
    ((2, 6, 6, 40), (3, 3, 40, 1), (1, 1), ((1, 0), (0, 1)), (1, 1), 1),
    # Backprop-filter in chunks of 2 images (the last one partial); scratch on the heap.
    ((3, 16, 16, 3), (3, 3, 3, 8), (1, 1), "same", (1, 1), 1),
    ((1, 70, 70, 8), (3, 3, 8, 8), (1, 1), "same", (1, 1), 1),
]


def _resolve(case):
    xs, ws, s, p, d, g = case
    if isinstance(p, str):
        p = conv_padding(p, xs[1:3], ws[:2], s, d)
    return xs, ws, s, p, d, g


def _random_cases(seed, count):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        g = 2 if rng.random() < 0.3 else 1
        cg = int(rng.choice([1, 3, 17, 33] if g == 1 else [1, 3]))
        og = int(rng.choice([1, 3, 6, 16, 17, 33] if g == 1 else [1, 3, 8]))
        n = int(rng.integers(1, 4))
        h, w = (int(v) for v in rng.integers(1, 12, size=2))
        kh, kw = (int(v) for v in rng.integers(1, 6, size=2))
        s = tuple(int(v) for v in rng.integers(1, 4, size=2))
        d = tuple(int(v) for v in rng.integers(1, 3, size=2))
        r = rng.random()
        if r < 0.4:
            p = conv_padding("same", (h, w), (kh, kw), s, d)
        elif r < 0.7:
            p = ((0, 0), (0, 0))
        else:
            p = tuple(tuple(int(v) for v in rng.integers(0, 3, size=2)) for _ in range(2))
        case = ((n, h, w, cg * g), (kh, kw, cg, og * g), s, p, d, g)
        try:
            _y_shape(case)
        except ShapeError:
            continue
        out.append(case)
    return out


def _attrs(case):
    _, _, s, p, d, g = case
    return {"strides": s, "padding": p, "dilation": d, "groups": g}


def _y_shape(case):
    from graphc.ir.ops.nn import _conv_shape
    xs, ws, *_ = case
    return _conv_shape("conv2d", xs, ws, _attrs(case))


CASES = [_resolve(c) for c in HANDPICKED] + _random_cases(7, 10)
RV_CASES = (11, 12, 13)     # indices of the reduction-lane cases above


class Compiled:
    """Emit kernels into one module; compile on first call."""

    def __init__(self, **jit_kw):
        self.module = jit.ir_module("conv_tests")
        self.fns = {}
        self.jit_kw = jit_kw
        self.jm = None

    def add(self, name, emit, *args, **kw):
        self.fns[name] = emit(self.module, name, *args, **kw)

    def __getitem__(self, name):
        if self.jm is None:
            self.jm = jit.JitModule(self.module, **self.jit_kw)
        return conv.ctypes_caller(self.jm, self.fns[name])


def _emit_all(comp, cases, **kw):
    for i, (xs, ws, s, p, d, g) in enumerate(cases):
        ys = _y_shape((xs, ws, s, p, d, g))
        comp.add(f"f{i}", conv.emit_conv2d, xs, ws, s, p, d, g, **kw)
        comp.add(f"bi{i}", conv.emit_conv2d_backprop_input, ys, ws, xs, s, p, d, g, **kw)
        comp.add(f"bf{i}", conv.emit_conv2d_backprop_filter, xs, ys, ws, s, p, d, g, **kw)


@pytest.fixture(scope="module")
def host():
    comp = Compiled()
    _emit_all(comp, CASES)
    # Fused bias + relu (gemm's epilogue object) and a bare (b, acc, channel) hook.
    xs, ws, s, p, d, g = CASES[0]
    comp.add("ep_bias_relu", conv.emit_conv2d, xs, ws, s, p, d, g,
             epilogue=gemm.bias_epilogue(relu=True))
    xs, ws, s, p, d, g = CASES[3]
    comp.add("ep_bias_relu2", conv.emit_conv2d, xs, ws, s, p, d, g,
             epilogue=gemm.bias_epilogue(relu=True))

    def times_channel(b, acc, ch):
        w = acc.type.count
        lanes = ir.Constant(ir.VectorType(ir.IntType(64), w), list(range(w)))
        chv = b.add(b.insert_element(ir.Constant(lanes.type, None), ch, ir.IntType(32)(0)),
                    ir.Constant(lanes.type, None))
        chv = b.shuffle_vector(chv, ir.Constant(lanes.type, ir.Undefined),
                               ir.Constant(ir.VectorType(ir.IntType(32), w), [0] * w))
        return b.fmul(acc, b.sitofp(b.add(chv, lanes), acc.type))
    comp.add("ep_bare", conv.emit_conv2d, xs, ws, s, p, d, g, epilogue=times_channel)
    ys = _y_shape(CASES[1])
    comp.add("bi_ep", conv.emit_conv2d_backprop_input, ys, CASES[1][1], CASES[1][0],
             *CASES[1][2:], epilogue=gemm.relu_epilogue())
    for k in RV_CASES:
        xs, ws, s, p, d, g = CASES[k]
        comp.add(f"ep_rv{k}", conv.emit_conv2d, xs, ws, s, p, d, g,
                 epilogue=gemm.bias_epilogue(relu=True))
        comp.add(f"bi_ep_rv{k}", conv.emit_conv2d_backprop_input, _y_shape(CASES[k]), ws, xs,
                 s, p, d, g, epilogue=gemm.bias_epilogue(relu=True))
    return comp


def _data(case, seed):
    rng = np.random.default_rng(seed)
    xs, ws = case[0], case[1]
    ys = _y_shape(case)
    return (rng.standard_normal(xs).astype(np.float32),
            rng.standard_normal(ws).astype(np.float32),
            rng.standard_normal(ys).astype(np.float32))


def _close(out, ref, bound):
    """|out - ref| <= 1e-5 * (|ref| + sum of |terms|): rtol 1e-5, with the float32
    accumulation error of sums that cancel."""
    assert out.shape == ref.shape
    tol = 1e-5 * (np.abs(ref) + bound) + 1e-7
    bad = ~(np.abs(out.astype(np.float64) - ref) <= tol)
    assert not bad.any(), (f"{bad.sum()} of {bad.size} wrong, max err "
                           f"{np.nanmax(np.abs(out - ref))}")


def _refs(case, x, w, dy):
    a = _attrs(case)
    xs, ws = case[0], case[1]
    f = get_op("conv2d").run_ref
    bi = get_op("conv2d_backprop_input").run_ref
    bf = get_op("conv2d_backprop_filter").run_ref
    x64, w64, dy64 = (v.astype(np.float64) for v in (x, w, dy))
    ax, aw, ady = np.abs(x64), np.abs(w64), np.abs(dy64)
    return ((f([x64, w64], a)[0], f([ax, aw], a)[0]),
            (bi([dy64, w64], {**a, "input_shape": xs})[0],
             bi([ady, aw], {**a, "input_shape": xs})[0]),
            (bf([x64, dy64], {**a, "filter_shape": ws})[0],
             bf([ax, ady], {**a, "filter_shape": ws})[0]))


def _run(fn, ins, shape, begin=0, end=None):
    out = np.full(shape, np.nan, np.float32)
    fn(*ins, out, begin, fn.split_extent if end is None else end)
    return out


@pytest.mark.parametrize("i", range(len(CASES)))
def test_matches_reference(host, i):
    case = CASES[i]
    x, w, dy = _data(case, i)
    (yr, yb), (dxr, dxb), (dwr, dwb) = _refs(case, x, w, dy)
    _close(_run(host[f"f{i}"], (x, w), yr.shape), yr, yb)
    _close(_run(host[f"bi{i}"], (dy, w), dxr.shape), dxr, dxb)
    _close(_run(host[f"bf{i}"], (x, dy), dwr.shape), dwr, dwb)


def test_bias_relu_epilogue(host):
    for name, case in (("ep_bias_relu", CASES[0]), ("ep_bias_relu2", CASES[3])):
        x, w, _ = _data(case, 100)
        bias = np.random.default_rng(1).standard_normal(case[1][3]).astype(np.float32)
        (yr, yb), _, _ = _refs(case, x, w, np.zeros(_y_shape(case), np.float32))
        fn = host[name]
        out = np.full(yr.shape, np.nan, np.float32)
        fn(x, w, bias, out, 0, case[0][0])
        _close(out, np.maximum(yr + bias, 0), yb + np.abs(bias))
        assert (out >= 0).all() and (out == 0).any()


@pytest.mark.parametrize("k", RV_CASES)
def test_epilogues_of_reduction_lane_variants(host, k):
    case = CASES[k]
    xs, ws, *_ = case
    x, w, dy = _data(case, 103)
    (yr, yb), (dxr, dxb), _ = _refs(case, x, w, dy)
    rng = np.random.default_rng(k)
    bias = rng.standard_normal(ws[3]).astype(np.float32)
    out = np.full(yr.shape, np.nan, np.float32)
    host[f"ep_rv{k}"](x, w, bias, out, 0, xs[0])
    _close(out, np.maximum(yr + bias, 0), yb + np.abs(bias))
    bias = rng.standard_normal(xs[3]).astype(np.float32)
    out = np.full(dxr.shape, np.nan, np.float32)
    host[f"bi_ep_rv{k}"](dy, w, bias, out, 0, xs[0])
    _close(out, np.maximum(dxr + bias, 0), dxb + np.abs(bias))


def test_variant_choice():
    # The cases above really exercise the reduction-lane variants.
    assert conv._reduce_lanes(1, 16, 16) and conv._reduce_lanes(1, 17, 16)
    assert conv._reduce_lanes(1, 16, 8)              # 1-channel backprop-input over co
    assert not conv._reduce_lanes(6, 1, 16) and not conv._reduce_lanes(16, 6, 16)


def test_bare_epilogue_sees_channel_index(host):
    case = CASES[3]
    x, w, _ = _data(case, 101)
    (yr, yb), _, _ = _refs(case, x, w, np.zeros(_y_shape(case), np.float32))
    scale = np.arange(case[1][3], dtype=np.float64)
    _close(_run(host["ep_bare"], (x, w), yr.shape), yr * scale, yb * scale)


def test_backprop_input_epilogue(host):
    case = CASES[1]
    x, w, dy = _data(case, 102)
    _, (dxr, dxb), _ = _refs(case, x, w, dy)
    _close(_run(host["bi_ep"], (dy, w), dxr.shape), np.maximum(dxr, 0), dxb)


@pytest.mark.parametrize("i", [0, 1, 4, 6, 7, 11, 13, 14])
def test_bit_identical_repeats_and_splits(host, i):
    case = CASES[i]
    x, w, dy = _data(case, 200 + i)
    for name, ins, shape in ((f"f{i}", (x, w), _y_shape(case)),
                             (f"bi{i}", (dy, w), case[0]),
                             (f"bf{i}", (x, dy), case[1])):
        fn = host[name]
        whole = _run(fn, ins, shape)
        assert np.array_equal(whole, _run(fn, ins, shape))
        ext = fn.split_extent
        if ext < 2:
            continue
        mid = ext // 2
        half = np.full(shape, np.nan, np.float32)
        fn(*ins, half, 0, mid)
        # A slice writes only its part of the split axis ...
        if name.startswith("bf"):
            assert np.isnan(half).any()
        else:
            assert np.isnan(half[mid:]).all() and not np.isnan(half[:mid]).any()
        fn(*ins, half, mid, ext)
        # ... and two halves give the whole, bit for bit.
        assert np.array_equal(half, whole)


def test_split_extents():
    m = jit.ir_module()
    f = conv.emit_conv2d(m, "f", (5, 8, 8, 3), (3, 3, 3, 4))
    bi = conv.emit_conv2d_backprop_input(m, "bi", (5, 6, 6, 4), (3, 3, 3, 4), (5, 8, 8, 3))
    bf = conv.emit_conv2d_backprop_filter(m, "bf", (5, 8, 8, 3), (5, 6, 6, 4), (3, 3, 3, 4))
    assert f.split_extent == 5 and bi.split_extent == 5 and bf.split_extent >= 1
    assert [str(a.type) for a in f.args] == ["ptr", "ptr", "ptr", "i64", "i64"]


def test_eight_wide_avx2_variant():
    # Compiled for an AVX2-only CPU (haswell code runs on this host too): <8 x float>,
    # 12-accumulator tiles, no zmm anywhere.
    comp = Compiled(cpu="haswell")
    cases = [CASES[i] for i in (0, 1, 3, 4, 6, 7)] + _random_cases(11, 3)
    _emit_all(comp, cases, vector_width=8)
    comp.add("ep", conv.emit_conv2d, *cases[2], epilogue=gemm.bias_epilogue(relu=True),
             vector_width=8)
    small = jit.ir_module()
    xs, ws, s, p, d, g = cases[0]
    conv.emit_conv2d(small, "f", xs, ws, s, p, d, g, vector_width=8)
    conv.emit_conv2d_backprop_filter(small, "bf", xs, _y_shape(cases[0]), ws, s, p, d, g,
                                     vector_width=8)
    asm = jit.emit_assembly(small, jit.target_machine("haswell"))
    assert "ymm" in asm and "zmm" not in asm
    for i, case in enumerate(cases):
        x, w, dy = _data(case, 300 + i)
        (yr, yb), (dxr, dxb), (dwr, dwb) = _refs(case, x, w, dy)
        _close(_run(comp[f"f{i}"], (x, w), yr.shape), yr, yb)
        _close(_run(comp[f"bi{i}"], (dy, w), dxr.shape), dxr, dxb)
        _close(_run(comp[f"bf{i}"], (x, dy), dwr.shape), dwr, dwb)
    case = cases[2]
    x, w, _ = _data(case, 400)
    bias = np.linspace(-1, 1, case[1][3]).astype(np.float32)
    (yr, yb), _, _ = _refs(case, x, w, np.zeros(_y_shape(case), np.float32))
    out = np.empty(yr.shape, np.float32)
    comp["ep"](x, w, bias, out, 0, case[0][0])
    _close(out, np.maximum(yr + bias, 0), yb + 1)


def test_parallel_entry_matches_serial():
    from graphc.codegen.cpu import parallel
    parallel.ensure_runtime_symbols()
    case = CASES[1]
    xs, ws, s, p, d, g = case
    ys = _y_shape(case)
    comp = Compiled()
    m = comp.module
    k = {"f": conv.emit_conv2d(m, "f", xs, ws, s, p, d, g),
         "bf": conv.emit_conv2d_backprop_filter(m, "bf", xs, ys, ws, s, p, d, g)}
    for nm in ("f", "bf"):
        comp.fns[nm + ".par"] = conv.emit_parallel_entry(m, nm + ".par", k[nm], 2)
    comp.fns.update(k)
    x, w, dy = _data(case, 500)
    y1, y2 = np.empty(ys, np.float32), np.empty(ys, np.float32)
    comp["f"](x, w, y1, 0, xs[0])
    comp["f.par"](x, w, y2)
    assert np.array_equal(y1, y2)
    d1, d2 = np.empty(ws, np.float32), np.empty(ws, np.float32)
    fbf = comp["bf"]
    fbf(x, dy, d1, 0, fbf.split_extent)
    comp["bf.par"](x, dy, d2)
    assert np.array_equal(d1, d2)


def test_host_code_uses_wide_fma():
    if jit.vector_width() != 16:
        pytest.skip("host has no AVX-512")
    m = jit.ir_module()
    conv.emit_conv2d(m, "c2", (4, 14, 14, 6), (5, 5, 6, 16))
    asm = jit.emit_assembly(m)
    assert "vfmadd231ps" in asm and "zmm" in asm


def test_width_choice():
    assert conv.pick_width(6, 16) == 8
    assert conv.pick_width(16, 16) == 16
    assert conv.pick_width(17, 16) == 8
    assert conv.pick_width(32, 16) == 16
    assert conv.pick_width(16, 8) == 8
    assert conv.pick_width(3, 8) == 8 and conv.pick_width(1, 16) == 8


def test_shape_errors():
    m = jit.ir_module()
    with pytest.raises(ShapeError, match="not divisible by groups"):
        conv.emit_conv2d(m, "a", (1, 5, 5, 3), (3, 3, 1, 4), groups=3)
    with pytest.raises(ShapeError, match="smaller than"):
        conv.emit_conv2d(m, "b", (1, 2, 2, 1), (3, 3, 1, 1))
    with pytest.raises(ShapeError, match="dy shape"):
        conv.emit_conv2d_backprop_input(m, "c", (1, 4, 4, 1), (3, 3, 1, 1), (1, 5, 5, 1))
    with pytest.raises(ShapeError, match="dy shape"):
        conv.emit_conv2d_backprop_filter(m, "d", (1, 5, 5, 1), (1, 4, 4, 1), (3, 3, 1, 1))
