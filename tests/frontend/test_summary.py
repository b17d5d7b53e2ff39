"""``model.summary()`` against hand-computed parameter counts and Keras 3's layout."""
from __future__ import annotations

import re

import pytest

from graphc.frontend.summary import readable_memory_size, summary_string
from graphc.ir.registry import has_op
from graphc.layers import Add, Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
from graphc.models import Model, Sequential


def rows(text):
    """Table body rows as lists of stripped cells (continuation lines merged)."""
    out = []
    for line in text.splitlines():
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip("│").split("│")]
            if cells[0]:
                out.append(cells)
            else:
                out[-1] = [f"{a}\n{b}".strip() for a, b in zip(out[-1], cells)]
    return out


def totals(text):
    return [l for l in text.splitlines() if "params:" in l]


def test_sequential_mlp_counts():
    model = Sequential([Dense(64, activation="relu", input_dim=10, name="h"),
                        Dense(1, activation="sigmoid", name="o")], name="mlp")
    text = summary_string(model)
    assert text.splitlines()[0] == 'Model: "mlp"'
    assert "Layer (type)" in text and "Output Shape" in text and "Param #" in text
    assert "Connected to" not in text
    assert rows(text) == [["h (Dense)", "(None, 64)", "704"], ["o (Dense)", "(None, 1)", "65"]]
    # 769 float32 params = 3076 bytes
    assert totals(text) == [" Total params: 769 (3.00 KB)",
                            " Trainable params: 769 (3.00 KB)",
                            " Non-trainable params: 0 (0.00 B)"]


def test_thousands_separator_and_size():
    model = Sequential([Dense(1, input_dim=1024)])
    t = totals(summary_string(model))
    assert t[0] == " Total params: 1,025 (4.00 KB)"


def test_cnn_counts_by_hand():
    if not (has_op("conv2d") and has_op("max_pool2d")):
        pytest.skip("conv/pool ops not registered yet")
    model = Sequential([
        Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1), name="c1"),
        MaxPooling2D((2, 2), name="p1"),
        Conv2D(64, (3, 3), activation="relu", name="c2"),
        Flatten(name="f"),
        Dropout(0.5, name="dr"),
        Dense(10, activation="softmax", name="out")])
    r = rows(summary_string(model, line_length=100))
    c1 = 3 * 3 * 1 * 32 + 32                  # 320
    c2 = 3 * 3 * 32 * 64 + 64                 # 18,496
    dense = 11 * 11 * 64 * 10 + 10            # 77,450
    assert r == [["c1 (Conv2D)", "(None, 26, 26, 32)", f"{c1:,}"],
                 ["p1 (MaxPooling2D)", "(None, 13, 13, 32)", "0"],
                 ["c2 (Conv2D)", "(None, 11, 11, 64)", f"{c2:,}"],
                 ["f (Flatten)", "(None, 7744)", "0"],
                 ["dr (Dropout)", "(None, 7744)", "0"],
                 ["out (Dense)", "(None, 10)", f"{dense:,}"]]
    total = c1 + c2 + dense
    assert totals(summary_string(model))[0] == \
        f" Total params: {total:,} ({readable_memory_size(total * 4)})"
    assert model.count_params() == total == 96266


def test_trainable_split():
    base = Dense(8, input_dim=4, name="frozen")
    model = Sequential([base, Dense(2, name="head")])
    base.trainable = False
    t = totals(summary_string(model))
    assert t == [" Total params: 58 (232.00 B)",
                 " Trainable params: 18 (72.00 B)",
                 " Non-trainable params: 40 (160.00 B)"]


def test_functional_shows_inputs_and_connections():
    a, b = Input((3,), name="xa"), Input((3,), name="xb")
    shared = Dense(2, name="sh")
    out = Add(name="sum")([shared(a), shared(b)])
    text = summary_string(Model([a, b], out, name="fn"))
    assert "Connected to" in text
    r = rows(text)
    assert r[0] == ["xa (InputLayer)", "(None, 3)", "0", "-"]
    assert r[1] == ["xb (InputLayer)", "(None, 3)", "0", "-"]
    assert r[2][0] == "sh (Dense)" and r[2][2] == "8"
    assert r[2][3].split("\n") == ["xa[0][0]", "xb[0][0]"]
    assert r[3] == ["sum (Add)", "(None, 2)", "0", "sh[0][0]\nsh[1][0]"]
    assert totals(text)[0] == " Total params: 8 (32.00 B)"      # shared: counted once


def test_sequential_like_functional_has_no_connections_column():
    inp = Input((5,))
    text = summary_string(Model(inp, Dense(2)(Dense(3)(inp))))
    assert "Connected to" not in text
    assert rows(text)[0][0].endswith("(InputLayer)")


def test_nested_model_row_and_expand():
    inner = Sequential([Dense(3, input_dim=2, name="i1"), Dense(2, name="i2")], name="inner_s")
    inp = Input((2,))
    outer = Model(inp, Dense(1, name="top")(inner(inp)), name="outer_s")
    r = rows(summary_string(outer))
    assert r[1] == ["inner_s (Sequential)", "(None, 2)", str(2 * 3 + 3 + 3 * 2 + 2)]
    expanded = rows(summary_string(outer, expand_nested=True))
    assert [row[0] for row in expanded][2:4] == ["i1 (Dense)", "i2 (Dense)"]


def test_unbuilt_sequential():
    model = Sequential([Dense(3, name="u1")], name="unbuilt")
    r = rows(summary_string(model))
    assert r == [["u1 (Dense)", "?", "0 (unbuilt)"]]
    assert totals(summary_string(model))[0] == " Total params: 0 (0.00 B)"


def test_print_fn_and_box_drawing(capsys):
    model = Sequential([Dense(2, input_dim=2)])
    got = []
    model.summary(print_fn=got.append)
    assert len(got) == 1 and got[0] == summary_string(model)
    lines = got[0].splitlines()
    widths = {len(l) for l in lines[1:] if l[:1] in "┏┃┡│├└"}
    assert len(widths) == 1                                  # a rectangular table
    assert lines[1].startswith("┏") and re.match(r"└─+┴─+┴─+┘", lines[-4])
    model.summary()
    assert capsys.readouterr().out.strip() == got[0].strip()
    model.summary(show_trainable=True)
    assert "Trainable" in capsys.readouterr().out


def test_readable_memory_size():
    assert readable_memory_size(0) == "0.00 B"
    assert readable_memory_size(1023) == "1023.00 B"
    assert readable_memory_size(4100) == "4.00 KB"
    assert readable_memory_size(3 * 1024 ** 2) == "3.00 MB"
