"""Reads the IR text that ``graphc.ir.printer`` writes back into a ``Graph``.

A small tokenizer feeds a recursive-descent parser (one method per grammar rule), so new
syntax (e.g. fused-group regions) is one more method. Every node is rebuilt through the op
registry — attributes normalized, types re-derived by the op's shape rule and checked
against the printed ones — so a parsed graph is as trustworthy as a built one.

Grammar (whitespace, including newlines, and ``//`` comments to the end of a line are
insignificant between tokens)::

    graph   := 'graph' GLOBAL '(' [sig {',' sig}] ')' ['params' '(' [sig {',' sig}] ')']
               '{' {node} 'return' [ret {',' ret}] '}'
    sig     := VALUE ':' type
    type    := DTYPE '[' [INT {',' INT}] ']'
    node    := [VALUE {',' VALUE}] '=' IDENT '(' [VALUE {',' VALUE}] ')'
               ['{' [IDENT '=' attr {',' IDENT '=' attr}] '}'] ':' [type {',' type}]
    attr    := INT | FLOAT | STRING | 'true' | 'false' | 'none' | 'nan' | 'inf' | '-inf'
               | DTYPE | '[' [attr {',' attr}] ']'
    ret     := VALUE | (IDENT | STRING) '=' VALUE

VALUE is ``%name`` and GLOBAL ``@name`` where a name is letters, digits and ``_ . : / -``
(a ``:`` belongs to the name only when another name character follows it, so the signature
form ``%x: f32[3]`` stays unambiguous), or a quoted string (``%"odd name"``).
"""
from __future__ import annotations

import bisect
import math
import re
from typing import Any, Callable, NamedTuple

import numpy as np

from graphc.errors import GraphcError, IRParseError
from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import Graph, Node, Value
from graphc.ir.registry import get_op

__all__ = ["parse"]

# ----------------------------------------------------------------------------- tokens

# A ':' belongs to a name only when the name goes on after it: `%a:b` is one name, while
# in `%a: f32[3]` the ':' is the signature's separator (and `%a:: f32[3]` names "a:").
_NAME_CHAR = r"(?:[A-Za-z0-9_./-]|:(?=[A-Za-z0-9_./:-]))"
_NAME = _NAME_CHAR + "+"
_STRING = r'"(?:[^"\\]|\\.)*"'
_TOKEN = re.compile(rf"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<VALUE>%(?:{_STRING}|{_NAME}))
  | (?P<GLOBAL>@(?:{_STRING}|{_NAME}))
  | (?P<STRING>{_STRING})
  | (?P<NINF>-inf(?![A-Za-z0-9_./:-]))
  | (?P<NUMBER>[-+]?\.?[0-9](?:[A-Za-z0-9.]|(?<=[eE])[-+])*)
  | (?P<IDENT>[A-Za-z_]{_NAME_CHAR}*)
  | (?P<PUNCT>[(){{}}\[\],=:])
""", re.VERBOSE)
_ESCAPE = re.compile(r'\\(?:([\\"ntr0])|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.?))',
                     re.DOTALL)
_SIMPLE_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r", "0": "\0"}
_DTYPES = {d.value: d for d in DType}


class Token(NamedTuple):
    kind: str      # VALUE GLOBAL IDENT INT FLOAT STRING PUNCT EOF
    text: str      # the source text of the token (for messages)
    value: Any     # decoded payload: name, number, string, punctuation char
    line: int
    col: int


class _Source:
    """The text with its line starts, to turn offsets into (line, column) and quote lines."""

    def __init__(self, text: str):
        self.text = text
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def where(self, pos: int) -> tuple[int, int]:
        i = bisect.bisect_right(self.starts, pos) - 1
        return i + 1, pos - self.starts[i] + 1

    def line_text(self, line: int) -> str:
        lo = self.starts[line - 1]
        hi = self.starts[line] - 1 if line < len(self.starts) else len(self.text)
        return self.text[lo:hi].rstrip("\r")

    def error(self, msg: str, line: int, col: int, near: str | None = None) -> IRParseError:
        where = f" near {near!r}" if near else ""
        return IRParseError(f"line {line}, column {col}: {msg}{where}\n"
                            f"  {self.line_text(line)}\n  {' ' * (col - 1)}^")


def _tokenize(src: _Source) -> list[Token]:
    text, pos, out = src.text, 0, []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            line, col = src.where(pos)
            if text[pos] == '"' or text[pos:pos + 2] in ('%"', '@"'):
                raise src.error("unterminated string", line, col, text[pos:pos + 10])
            raise src.error(f"unexpected character {text[pos]!r}", line, col, text[pos])
        kind, tok_text = m.lastgroup, m.group()
        if kind != "ws":
            line, col = src.where(pos)
            out.append(_make_token(src, kind, tok_text, line, col))
        pos = m.end()
    line, col = src.where(len(text))
    out.append(Token("EOF", "end of input", None, line, col))
    return out


def _make_token(src: _Source, kind: str, text: str, line: int, col: int) -> Token:
    if kind in ("VALUE", "GLOBAL"):
        body = text[1:]
        value = _unquote(src, body, line, col + 1) if body.startswith('"') else body
        return Token(kind, text, value, line, col)
    if kind == "STRING":
        return Token(kind, text, _unquote(src, text, line, col), line, col)
    if kind == "NINF":
        return Token("FLOAT", text, -math.inf, line, col)
    if kind == "NUMBER":
        try:
            if any(ch in text for ch in ".eE"):
                return Token("FLOAT", text, float(text), line, col)
            return Token("INT", text, int(text), line, col)
        except ValueError:
            raise src.error(f"malformed number {text!r}", line, col, text) from None
    return Token(kind, text, text, line, col)


def _unquote(src: _Source, quoted: str, line: int, col: int) -> str:
    def esc(m):
        simple, x2, u4, u8, bad = m.groups()
        if simple is not None:
            return _SIMPLE_ESCAPES[simple]
        if bad is not None:
            raise src.error(f"bad escape sequence '\\{bad}' in string", line, col, quoted[:20])
        return chr(int(x2 or u4 or u8, 16))
    return _ESCAPE.sub(esc, quoted[1:-1])


# ----------------------------------------------------------------------------- attributes

def _decode_constant_value(raw, out_types: list[TensorType]) -> np.ndarray:
    """``constant``'s ``value`` is printed as nested lists; rebuild the array with the
    node's printed output dtype and shape (the text carries no separate array type)."""
    if len(out_types) != 1:
        raise ValueError(f"constant must have one result type, got {len(out_types)}")
    t = out_types[0]
    leaves = _leaves(raw)
    for leaf in leaves:
        # numpy would silently truncate 1.5 into an int or accept 2 as a bool.
        ok = (isinstance(leaf, bool) if t.dtype == DType.bool else
              isinstance(leaf, int) and not isinstance(leaf, bool) if t.dtype.is_int else
              isinstance(leaf, (int, float)) and not isinstance(leaf, bool))
        if not ok:
            raise ValueError(f"element {leaf!r} does not fit dtype {t.dtype}")
    try:
        arr = np.array(raw, dtype=t.dtype.np)
    except (ValueError, OverflowError, TypeError) as e:
        raise ValueError(f"cannot build a {t} array: {e}") from None
    if arr.shape != t.shape:
        if arr.size == 0 and t.size == 0:
            arr = arr.reshape(t.shape)  # "[]" prints every empty shape alike
        else:
            raise ValueError(f"value has shape {list(arr.shape)} but the type says {t}")
    return arr


def _leaves(x) -> list:
    if isinstance(x, tuple):
        return [leaf for item in x for leaf in _leaves(item)]
    return [x]


#: (op, attribute) -> decoder(raw parsed value, printed output types) for attributes whose
#: printed form needs the node's type to be read back (numpy arrays print as nested lists).
ATTR_DECODERS: dict[tuple[str, str], Callable[[Any, list[TensorType]], Any]] = {
    ("constant", "value"): _decode_constant_value,
}

_WORDS = {"true": True, "false": False, "none": None, "nan": math.nan, "inf": math.inf}


# ----------------------------------------------------------------------------- parser

class _Parser:
    def __init__(self, text: str):
        self.src = _Source(text)
        self.toks = _tokenize(self.src)
        self.i = 0

    # -- token helpers --------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def next(self) -> Token:
        t = self.toks[self.i]
        if t.kind != "EOF":
            self.i += 1
        return t

    def at(self, kind: str, value=None) -> bool:
        t = self.tok
        return t.kind == kind and (value is None or t.value == value)

    def at_punct(self, ch: str) -> bool:
        return self.at("PUNCT", ch)

    def error(self, msg: str, tok: Token | None = None) -> IRParseError:
        tok = tok or self.tok
        return self.src.error(msg, tok.line, tok.col, tok.text)

    def expect(self, kind: str, value=None, what: str | None = None) -> Token:
        if not self.at(kind, value):
            want = what or (repr(value) if value is not None else kind.lower())
            raise self.error(f"expected {want}")
        return self.next()

    def punct(self, ch: str) -> Token:
        return self.expect("PUNCT", ch)

    def comma_list(self, close: str, item: Callable[[], Any]) -> list:
        """Items separated by ',' up to (and consuming) the closing punctuation."""
        out = []
        if self.at_punct(close):
            self.next()
            return out
        while True:
            out.append(item())
            if self.at_punct(","):
                self.next()
                continue
            if not self.at_punct(close):
                raise self.error(f"expected ',' or '{close}'")
            self.next()
            return out

    # -- grammar --------------------------------------------------------------------
    def parse_graph(self) -> Graph:
        self.expect("IDENT", "graph", "'graph'")
        g = Graph(self.expect("GLOBAL", what="a graph name like @main").value)
        self.env: dict[str, Value] = {}
        self.punct("(")
        for name, t, tok in self.comma_list(")", self.parse_sig):
            self.define(name, g.add_input(name, t), tok)
        if self.at("IDENT", "params"):
            self.next()
            self.punct("(")
            for name, t, tok in self.comma_list(")", self.parse_sig):
                self.define(name, g.add_param(name, t), tok)
        self.punct("{")
        while not self.at("IDENT", "return"):
            if self.at("EOF") or self.at_punct("}"):
                raise self.error("expected a node or 'return'")
            self.parse_node(g)
        self.next()
        rets = []
        if not self.at_punct("}"):
            rets.append(self.parse_ret())
            while self.at_punct(","):
                self.next()
                rets.append(self.parse_ret())
        self.punct("}")
        if not self.at("EOF"):
            raise self.error("expected end of input after the graph")
        g.set_outputs([v for _, v in rets], [n for n, _ in rets])
        return g

    def define(self, name: str, v: Value, tok: Token):
        if name in self.env:
            raise self.error(f"value %{name} is defined twice", tok)
        self.env[name] = v

    def use(self) -> Value:
        tok = self.expect("VALUE", what="a value like %x")
        try:
            return self.env[tok.value]
        except KeyError:
            raise self.error(f"undefined value %{tok.value}", tok) from None

    def parse_sig(self):
        tok = self.expect("VALUE", what="a value like %x")
        self.punct(":")
        return tok.value, self.parse_type(), tok

    def parse_type(self) -> TensorType:
        tok = self.tok
        if tok.kind != "IDENT" or tok.value not in _DTYPES:
            raise self.error(f"expected a type like f32[2,3] (dtypes: {', '.join(_DTYPES)})")
        self.next()
        self.punct("[")
        dims = self.comma_list("]", lambda: self.expect("INT", what="a dimension").value)
        if any(d < 0 for d in dims):
            raise self.error(f"negative dimension in {tok.value}{list(dims)}", tok)
        return TensorType(tuple(dims), _DTYPES[tok.value])

    def parse_node(self, g: Graph):
        """One node line: syntax first, then the node is rebuilt through the registry."""
        first = self.tok
        results: list[Token] = []
        if not self.at_punct("="):
            results.append(self.expect("VALUE", what="a result like %0, or 'return'"))
            while self.at_punct(","):
                self.next()
                results.append(self.expect("VALUE", what="a result value"))
        self.punct("=")
        op_tok = self.expect("IDENT", what="an op name")
        self.punct("(")
        args = self.comma_list(")", self.use)
        raw_attrs: dict[str, tuple[Any, Token]] = {}
        if self.at_punct("{"):
            self.next()
            for key, val, ktok in self.comma_list("}", self.parse_attr_entry):
                if key in raw_attrs:
                    raise self.error(f"attribute {key!r} given twice", ktok)
                raw_attrs[key] = (val, ktok)
        self.punct(":")
        types_tok = self.tok
        types = []
        if results or (self.at("IDENT") and self.tok.value in _DTYPES):
            types.append(self.parse_type())
            while self.at_punct(","):
                self.next()
                types.append(self.parse_type())
        if len(types) != len(results):
            raise self.error(f"{len(results)} result(s) but {len(types)} type(s)", first)
        node = self.build_node(op_tok, args, raw_attrs, types, types_tok)
        for tok, v in zip(results, node.outputs):
            self.define(tok.value, v, tok)
        g.nodes.append(node)

    def build_node(self, op_tok: Token, args: list[Value],
                   raw_attrs: dict[str, tuple[Any, Token]], types: list[TensorType],
                   types_tok: Token) -> Node:
        """A node built as ``Builder.emit`` would, checked against the printed types."""
        op = op_tok.value
        try:
            opdef = get_op(op)
        except GraphcError:
            raise self.error(f"unknown op {op!r}", op_tok) from None
        attrs = {}
        for key, (val, ktok) in raw_attrs.items():
            decode = ATTR_DECODERS.get((op, key))
            if decode is not None:
                try:
                    val = decode(val, types)
                except ValueError as e:
                    raise self.error(f"{op}: bad attribute {key}: {e}", ktok) from None
            attrs[key] = val
        try:
            attrs = opdef.normalize_attrs(attrs)
            inferred = opdef.infer_types([v.type for v in args], attrs)
        except Exception as e:  # noqa: BLE001
            # Shape rules are meant to raise ShapeError/DTypeError; anything else a rule
            # raises on malformed text is still this line's fault, not a parser crash.
            raise self.error(f"{op}: {e}", op_tok) from None
        if list(inferred) != types:
            raise self.error(
                f"type mismatch for {op}: printed {', '.join(map(str, types)) or '(none)'} "
                f"but its shape rule gives {', '.join(map(str, inferred)) or '(none)'}",
                types_tok)
        return Node(op, args, attrs, inferred)

    def parse_attr_entry(self):
        ktok = self.expect("IDENT", what="an attribute name")
        self.punct("=")
        return ktok.value, self.parse_attr(), ktok

    def parse_attr(self):
        tok = self.tok
        if tok.kind in ("INT", "FLOAT", "STRING"):
            self.next()
            return tok.value
        if tok.kind == "IDENT":
            if tok.value in _WORDS:
                self.next()
                return _WORDS[tok.value]
            if tok.value in _DTYPES:
                self.next()
                return _DTYPES[tok.value]
            raise self.error(f"unknown attribute word {tok.value!r}")
        if self.at_punct("["):
            self.next()
            return tuple(self.comma_list("]", self.parse_attr))
        raise self.error("expected an attribute value")

    def parse_ret(self) -> tuple[str | None, Value]:
        if self.at("VALUE"):
            return None, self.use()
        if self.at("IDENT") or self.at("STRING"):
            name = self.next().value
            self.punct("=")
            return name, self.use()
        raise self.error("expected a returned value like %3 or name=%3")


def parse(text: str) -> Graph:
    """Parse one graph printed by ``graphc.ir.printer.print_graph``.

    Raises ``IRParseError`` naming the line, column and offending text on malformed input,
    unknown ops, attributes the op rejects, or printed types that disagree with the op's
    shape rule.
    """
    return _Parser(text).parse_graph()
