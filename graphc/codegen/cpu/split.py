"""Split one ``llvmlite.ir`` module into parts that compile independently (on threads,
``jit.compile_objects``) and link again when loaded into one MCJIT engine
(``cache.ObjectModule`` takes a list of objects).

A step module is one exported entry calling many kernel functions, each used by the entry
(and the thread-pool task wrappers) only, so LLVM's time on it divides into the functions'
times. The unit of the split is a *cluster*: the defined functions that reference each
other, the entry excluded (a kernel and its task wrappers, a shared loop kernel and its
users, a conv kernel and its helpers) — so every call the optimizer could inline across
stays inside one part. Clusters the entry calls directly stay in the entry's part (there
they are inlined, or get their constant loop bounds propagated: moved out, the LSTM T=200
step ran ~4% slower); the others — the ones the entry hands to the thread pool, i.e. the
big kernels — are dealt to the parts largest first, each to the lightest part (by IR text
size, a proxy of LLVM time).

What changes in the machine code: a task function of another part is exported and its
address resolved by the engine when the entry passes it to the thread pool; the kernel
code itself is compiled as before (every example's train step computes the same bits,
split or not). Constant globals used by several parts are defined in each (internal
copies: the optimizer keeps seeing their values) up to ``COPY_MAX_CHARS``, defined once
and declared elsewhere above it; mutable globals are defined once (in the entry's part).
Types and metadata go to every part (unused ones cost nothing). Splitting adds ~5-8% to
the LLVM work (declarations, per-module passes), paid back as soon as two cores compile.
"""
from __future__ import annotations

import re

from llvmlite import ir

__all__ = ["split_module", "COPY_MAX_CHARS", "PART_CHARS", "MAX_PARTS"]

#: constant globals whose IR text is up to this long are copied into every part reading them
COPY_MAX_CHARS = 1 << 18
#: IR text per part (modules shorter than two parts' worth stay whole: a part costs a few
#: ms of fixed LLVM time), and the most parts. Both decide the machine code, so the split
#: depends on the module alone, never on the host's core count.
PART_CHARS = 100_000
MAX_PARTS = 8

# A global's reference in IR text: @"quoted name" or @bare.name (llvmlite quotes most).
_REF = re.compile(r'@"((?:[^"\\]|\\.)*)"|@([-A-Za-z0-9_.$]+)')
_CALL = re.compile(r'call [^@\n]*@(?:"((?:[^"\\]|\\.)*)"|([-A-Za-z0-9_.$]+))\(')
_LINKAGE = re.compile(r"^(define|@\S+ =) (?:internal|private) ")
# A byte-string constant (c"...", its quotes printed as \22) in a variable's initializer.
_BYTES = re.compile(r'(?<![-\w."$])c"[^"]*"')


def _direct_calls(text: str) -> set[str]:
    """Names of the functions ``text`` calls (not merely mentions)."""
    return {a if a else b for a, b in _CALL.findall(text)}


def _refs(text: str) -> set[str]:
    """Names of the globals ``text`` (a function) mentions."""
    return {a if a else b for a, b in _REF.findall(text)}


def _declaration(g) -> str:
    """The declaration of global ``g`` (defined in another part)."""
    if isinstance(g, ir.Function):
        ft = g.ftype
        args = [str(t) for t in ft.args] + (["..."] if ft.var_arg else [])
        return f"declare {ft.return_type} {g.get_reference()}({', '.join(args)})"
    kind = "constant" if g.global_constant else "global"
    return f"{g.get_reference()} = external {kind} {g.value_type}"


def _exported(text: str) -> str:
    """Definition ``text`` with internal/private linkage dropped (external)."""
    return _LINKAGE.sub(r"\1 ", text, count=1)


def _splittable(name: str, g, text: str) -> bool:
    """Functions, and variables whose initializer names no other global (a table of
    function pointers would tie parts together in ways ``split_module`` does not track)."""
    if isinstance(g, ir.Function):
        return True
    return isinstance(g, ir.GlobalVariable) and _refs(_BYTES.sub("", text)) <= {name}


def _clusters(funcs: dict, uses: dict, entry: str) -> list[list[str]]:
    """The defined functions other than ``entry``, grouped by reference (union-find),
    each group in module order."""
    parent = {n: n for n in funcs if n != entry}

    def find(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n
    for n in parent:
        for m in uses[n]:
            if m in parent:
                a, b = find(n), find(m)
                if a != b:
                    parent[b] = a
    groups: dict[str, list[str]] = {}
    for n in parent:
        groups.setdefault(find(n), []).append(n)
    return list(groups.values())


def split_module(module: ir.Module, entry: str, parts: int | None = None) -> list[str]:
    """IR texts of at most ``parts`` modules (default: one per ``PART_CHARS`` of IR, at most
    ``MAX_PARTS``) that, linked, define what ``module`` defines (``entry`` in the first;
    whatever is referenced across parts exported). One text, the module's own, when it
    is small or has too few clusters."""
    text_of = {name: str(g) for name, g in module.globals.items()}
    funcs = [n for n, g in module.globals.items() if isinstance(g, ir.Function) and g.blocks]
    if parts is None:
        parts = min(MAX_PARTS, sum(map(len, text_of.values())) // PART_CHARS)
    if parts < 2 or len(funcs) < 3 or not all(_splittable(n, g, text_of[n])
                                                for n, g in module.globals.items()):
        return [str(module)]
    uses = {n: _refs(text_of[n]) & text_of.keys() - {n} for n in funcs}
    clusters = _clusters(funcs, uses, entry)
    if len(clusters) < 2:
        return [str(module)]
    # Clusters the entry calls directly stay with it: called once or with the same
    # constant bounds at every site, they get inlined or constant-propagated there
    # (measured: LSTM T=200 step 4% slower with them apart). Those the entry only hands
    # to the thread pool (tasks) lose nothing. Then the largest cluster first, each to
    # the lightest part.
    direct = _direct_calls(text_of[entry])
    size = lambda names: sum(len(text_of[n]) for n in names)   # noqa: E731
    bins = [[len(text_of[entry]), [entry]]] + [[0, []] for _ in range(parts - 1)]
    pinned = [ns for ns in clusters if direct.intersection(ns)]
    for names in pinned:
        bins[0][0] += size(names)
        bins[0][1].extend(names)
    clusters = [ns for ns in clusters if not direct.intersection(ns)]
    if not clusters:
        return [str(module)]
    for names in sorted(clusters, key=lambda ns: -size(ns)):   # stable: ties in order
        lightest = min(bins, key=lambda b: b[0])
        lightest[0] += size(names)
        lightest[1].extend(names)
    groups = [set(names) for _, names in bins if names]
    needed = [set().union(*(uses[n] for n in grp)) for grp in groups]
    # Where each global is defined: functions where dealt; variables in the first part
    # reading them (mutable ones in the entry's), small constants in every such part.
    home, copied = {}, set()
    for i, grp in enumerate(groups):
        home.update(dict.fromkeys(grp, i))
    for name, g in module.globals.items():
        if isinstance(g, ir.GlobalVariable):
            readers = [i for i, need in enumerate(needed) if name in need]
            if g.global_constant and g.linkage in ("internal", "private") and \
                    len(text_of[name]) <= COPY_MAX_CHARS:
                copied.add(name)
            home[name] = readers[0] if readers and g.global_constant else 0
    head = [f'; ModuleID = "{module.name}"', f'target triple = "{module.triple}"',
            f'target datalayout = "{module.data_layout}"', ""]
    head += [t.get_declaration() for t in module.get_identified_types().values()]
    meta = module._get_metadata_lines()
    out = []
    for i, need in enumerate(needed):
        lines = list(head)
        for name, g in module.globals.items():
            if name not in home:                 # a declaration (runtime symbol, intrinsic)
                if name in need:
                    lines.append(text_of[name])
            elif home[name] == i or (name in copied and name in need):
                shared = name not in copied and any(name in nd for j, nd in enumerate(needed)
                                                    if j != i)
                lines.append(_exported(text_of[name]) if shared else text_of[name])
            elif name in need:
                lines.append(_declaration(g))
        out.append("\n".join(lines + meta))
    return out
