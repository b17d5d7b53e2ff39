"""Static memory planning for the cpu target: every temp buffer (and the templates' shared
workspace) gets a fixed byte offset in the step's arena, chosen from buffer liveness so
that buffers whose lifetimes do not overlap share memory.

The plan is made AFTER program.py has rendered the step (``ProgramModule.schedule``): only
then is the final kernel order known (folded transposes, merged loop kernels, in-place
state, template expansion with its scratch temps). Rendering does not depend on the plan —
the step reads every buffer's address from its pointer table — so planning changes no
generated code and no result bit.

Liveness is at kernel granularity: a buffer is live from the first kernel that touches it
to the last one. A template kernel counts as ONE step for everything its pieces touch
(inputs, output, epilogue loads, its own scratch temps, the workspace), which is
conservative but exact enough: its pieces run back to back. Offsets are assigned greedily,
largest buffer first, each into the best-fitting (smallest sufficient) gap among the
buffers it overlaps in time, 64-byte aligned (what the vectorized kernels assume).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from graphc.codegen.kernel import LoopKernel, TemplateKernel

ALIGN = 64


def align(n: int) -> int:
    return (max(int(n), 1) + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class MemoryPlan:
    """Arena offsets of the planned buffers and the numbers ``memory_report`` shows."""
    offsets: dict                   # buffer id -> byte offset in the arena
    sizes: dict                     # buffer id -> aligned bytes reserved
    live: dict                      # buffer id -> (first step, last step)
    peak_bytes: int                 # arena bytes the plan needs
    unplanned_bytes: int            # a bump allocation of the same buffers (aligned sum)
    unused: list = field(default_factory=list)   # temps no kernel touches: no memory at all

    def check(self) -> None:
        """Raise AssertionError if two buffers live at the same time share bytes."""
        ids = sorted(self.offsets)
        for n, a in enumerate(ids):
            for b in ids[n + 1:]:
                (la, ha), (lb, hb) = self.live[a], self.live[b]
                if la <= hb and lb <= ha:
                    oa, ob = self.offsets[a], self.offsets[b]
                    assert oa + self.sizes[a] <= ob or ob + self.sizes[b] <= oa, \
                        f"b{a} and b{b} are live together and overlap in the arena"


def _expr_buffers(exprs):
    from graphc.codegen.cpu import loops
    return {e.buffer for e in loops.iter_exprs(exprs) if hasattr(e, "buffer")}


def step_accesses(pmod) -> list[set]:
    """Per scheduled kernel: the ids of the buffers it (or its pieces) reads or writes."""
    from graphc.codegen.cpu import loops, templates
    tr = pmod.transposed
    steps = []
    for kernel, pieces in pmod.schedule:
        touched = set()
        if isinstance(kernel, TemplateKernel):
            # The GEMM reads a folded transpose's source, never the transpose itself.
            touched |= {tr.get(i, i) for i in kernel.inputs}
            touched.add(kernel.output)
            if kernel.epilogue is not None:
                touched |= _expr_buffers([kernel.epilogue])
        for piece in pieces:
            if isinstance(piece, LoopKernel):
                r, w = loops.buffers_used(piece)
                touched |= r | w
            elif isinstance(piece, templates.ExternKernel):
                touched |= set(piece.inputs) | {piece.output}
            elif isinstance(piece, templates.NativeStep):
                touched |= set(piece.info.get("reads", ()))
                if piece.workspace_bytes:
                    touched.add(pmod.workspace_slot)
        steps.append(touched)
    return steps


def plan_memory(pmod) -> MemoryPlan:
    """The arena layout of ``pmod``'s temps and workspace (see the module docstring)."""
    bufs = pmod.buffers
    planned = {b.id for b in bufs if b.kind == "temp"}
    sizes = {bid: align(bufs[bid].nbytes) for bid in planned}
    if pmod.workspace_bytes:
        planned.add(pmod.workspace_slot)
        sizes[pmod.workspace_slot] = align(pmod.workspace_bytes)
    live = {}
    for n, touched in enumerate(step_accesses(pmod)):
        for bid in touched & planned:
            lo, _ = live.get(bid, (n, n))
            live[bid] = (lo, n)
    unplanned = sum(sizes.values())
    unused = sorted(planned - live.keys())
    offsets, placed = {}, []
    # Placed intervals indexed by blocks of kernel positions, so finding those alive at
    # the same time as a buffer looks at its neighbourhood, not at every buffer placed
    # (an unrolled LSTM has ~4,000 temps: the full scan took seconds).
    block = 32
    by_block: dict[int, list[int]] = {}
    # Largest first: big buffers fix the layout, small ones fill the holes between them.
    for bid in sorted(live, key=lambda b: (-sizes[b], live[b][0], b)):
        lo, hi = live[bid]
        size = sizes[bid]
        near = set()
        for blk in range(lo // block, hi // block + 1):
            near.update(by_block.get(blk, ()))
        busy = sorted((o, e) for o, e, l2, h2 in (placed[i] for i in near)
                      if l2 <= hi and lo <= h2)
        best, end = None, 0
        for o, e in busy:
            gap = o - end
            if gap >= size and (best is None or gap < best[1]):
                best = (end, gap)
            end = max(end, e)
        off = best[0] if best is not None else end
        offsets[bid] = off
        for blk in range(lo // block, hi // block + 1):
            by_block.setdefault(blk, []).append(len(placed))
        placed.append((off, off + size, lo, hi))
    peak = max((o + sizes[b] for b, o in offsets.items()), default=0)
    return MemoryPlan(offsets, {b: sizes[b] for b in offsets}, live, peak, unplanned, unused)


def bump_plan(pmod) -> MemoryPlan:
    """Every temp (and the workspace) at its own offset: the unplanned layout, kept for
    comparison and for tests that show planning changes no result."""
    bufs = pmod.buffers
    ids = [b.id for b in bufs if b.kind == "temp"]
    sizes = {bid: align(bufs[bid].nbytes) for bid in ids}
    if pmod.workspace_bytes:
        ids.append(pmod.workspace_slot)
        sizes[pmod.workspace_slot] = align(pmod.workspace_bytes)
    offsets, off = {}, 0
    for bid in ids:
        offsets[bid] = off
        off += sizes[bid]
    n = len(pmod.schedule)
    return MemoryPlan(offsets, sizes, {b: (0, n) for b in ids}, off, off)
