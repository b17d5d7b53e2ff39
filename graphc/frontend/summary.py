"""``model.summary()``: the Keras 3 table (Layer (type) | Output Shape | Param #, plus
"Connected to" for non-sequential graphs) and the Total/Trainable/Non-trainable params lines
with their memory sizes, drawn with the same box characters Keras' rich table uses."""
from __future__ import annotations

import textwrap

import numpy as np


def readable_memory_size(size: float) -> str:
    """Keras' format: ``4.00 KB`` (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


def _count(weights) -> int:
    return int(sum(int(np.prod(w.shape)) for w in weights))


def _bytes(weights) -> int:
    return int(sum(int(np.prod(w.shape)) * np.dtype(w.value.dtype).itemsize
                   if hasattr(w, "value") else np.asarray(w).nbytes for w in weights))


def _fmt_shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _class_name(layer) -> str:
    return getattr(layer, "_keras_class_name", None) or type(layer).__name__


def _relevant_nodes(model):
    graph = getattr(model, "_graph", None)
    return graph.node_ids if graph is not None else None


def _output_shape(layer, relevant) -> str:
    nodes = [n for n in layer._inbound_nodes if relevant is None or id(n) in relevant]
    if not nodes:
        nodes = layer._inbound_nodes
    if not nodes:
        return "?"
    shapes = [_fmt_shape(t.shape) for t in nodes[0].output_tensors]
    return shapes[0] if len(shapes) == 1 else "[" + ", ".join(shapes) + "]"


def _params(layer) -> str:
    if not layer.built:
        return "0 (unbuilt)"
    return f"{layer.count_params():,}"


def _connections(layer, relevant) -> str:
    out = []
    for node in layer._inbound_nodes:
        if relevant is not None and id(node) not in relevant:
            continue
        for t in node.input_tensors:
            h = t._keras_history
            out.append(f"{h.layer.name}[{h.node_index}][{h.tensor_index}]")
    return "\n".join(out) if out else "-"


def _sequential_like(model) -> bool:
    from graphc.frontend.models import Sequential
    graph = getattr(model, "_graph", None)
    if isinstance(model, Sequential) or graph is None:
        return True
    by_depth: dict[int, list] = {}
    for n in graph.nodes:
        by_depth.setdefault(graph.depth[id(n)], []).append(n)
    for nodes in by_depth.values():
        if len(nodes) > 1 or (len(nodes) == 1 and len(nodes[0].input_tensors) > 1):
            return False
    for layer in graph.layers:
        if sum(1 for n in layer._inbound_nodes if id(n) in graph.node_ids) > 1:
            return False
    return True


def _render_table(headers, rows, widths, aligns) -> list[str]:
    """A rich-style HEAVY_HEAD box table; cells wrap to their column width."""
    inner = [w - 3 for w in widths]            # one border + one space of padding each side

    def cell_lines(text, w):
        lines = []
        for part in str(text).split("\n"):
            lines.extend(textwrap.wrap(part, w, break_long_words=True,
                                       break_on_hyphens=False) or [""])
        return lines

    def fmt(text, w, align):
        return text.rjust(w) if align == "right" else (
            text.center(w) if align == "center" else text.ljust(w))

    def row_lines(cells, sep):
        wrapped = [cell_lines(c, w) for c, w in zip(cells, inner)]
        height = max(len(c) for c in wrapped)
        out = []
        for i in range(height):
            parts = [fmt(c[i] if i < len(c) else "", w, a)
                     for c, w, a in zip(wrapped, inner, aligns)]
            out.append(sep + sep.join(f" {p} " for p in parts) + sep)
        return out

    def rule(left, mid, right, fill):
        return left + mid.join(fill * (w + 2) for w in inner) + right

    lines = [rule("┏", "┳", "┓", "━")]
    lines += row_lines(headers, "┃")
    lines.append(rule("┡", "╇", "┩", "━"))
    for i, r in enumerate(rows):
        if i:
            lines.append(rule("├", "┼", "┤", "─"))
        lines += row_lines(r, "│")
    lines.append(rule("└", "┴", "┘", "─"))
    return lines


def summary_string(model, line_length=None, positions=None, expand_nested=False,
                   show_trainable=False, layer_range=None) -> str:
    from graphc.frontend.models import Model
    seq_like = _sequential_like(model)
    if seq_like:
        default_len, pos = 88, [0.45, 0.80, 1.0]
        headers = ["Layer (type)", "Output Shape", "Param #"]
        aligns = ["left", "left", "right"]
    else:
        default_len, pos = 108, [0.3, 0.56, 0.74, 1.0]
        headers = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
        aligns = ["left", "left", "right", "left"]
    if positions is not None:
        pos = list(positions)
    if show_trainable:
        default_len += 12
        pos = [p * 0.9 for p in pos] + [1.0]
        headers.append("Trainable")
        aligns.append("center")
    line_length = line_length or default_len
    if pos and pos[-1] <= 1:
        pos = [int(p * line_length) for p in pos]
    widths, cur = [], 0
    for p in pos:
        w = int(p) - cur
        if w < 4:
            raise ValueError("Insufficient console width to print summary.")
        widths.append(w)
        cur += w

    relevant = _relevant_nodes(model)
    layers = list(model.layers) if isinstance(model, Model) else [model]
    if layer_range is not None:
        names = [l.name for l in layers]
        try:
            lo, hi = names.index(layer_range[0]), names.index(layer_range[1])
        except ValueError:
            raise ValueError(f"layer_range {layer_range} must name two layers of the model "
                             f"({names})") from None
        layers = layers[lo:hi + 1]

    rows = []

    def add_rows(layer, rel, indent):
        name = f"{'  ' * indent}{layer.name} ({_class_name(layer)})"
        row = [name, _output_shape(layer, rel), _params(layer)]
        if not seq_like:
            row.append(_connections(layer, rel))
        if show_trainable:
            row.append("Y" if layer.trainable else "N")
        rows.append(row)
        if expand_nested and isinstance(layer, Model):
            for sub in layer.layers:
                add_rows(sub, _relevant_nodes(layer), indent + 1)

    for layer in layers:
        add_rows(layer, relevant, 0)

    trainable, non_trainable = model.trainable_weights, model.non_trainable_weights
    t_count, n_count = _count(trainable), _count(non_trainable)
    t_bytes, n_bytes = _bytes(trainable), _bytes(non_trainable)
    opt_count = opt_bytes = 0
    opt = getattr(model, "optimizer", None)
    opt_vars = getattr(opt, "variables", None) if getattr(opt, "built", False) else None
    if isinstance(opt_vars, (list, tuple)) and opt_vars:
        opt_count, opt_bytes = _count(opt_vars), _bytes(opt_vars)

    out = [f'Model: "{model.name}"']
    out += _render_table(headers, rows, widths, aligns)
    total = t_count + n_count + opt_count
    out.append(f" Total params: {total:,} "
               f"({readable_memory_size(t_bytes + n_bytes + opt_bytes)})")
    out.append(f" Trainable params: {t_count:,} ({readable_memory_size(t_bytes)})")
    out.append(f" Non-trainable params: {n_count:,} ({readable_memory_size(n_bytes)})")
    if opt_count:
        out.append(f" Optimizer params: {opt_count:,} ({readable_memory_size(opt_bytes)})")
    return "\n".join(out)


def print_summary(model, line_length=None, positions=None, print_fn=None, expand_nested=False,
                  show_trainable=False, layer_range=None) -> None:
    """Print the summary, or hand the whole text to ``print_fn`` once (as Keras 3 does)."""
    text = summary_string(model, line_length=line_length, positions=positions,
                          expand_nested=expand_nested, show_trainable=show_trainable,
                          layer_range=layer_range)
    (print_fn or print)(text)
