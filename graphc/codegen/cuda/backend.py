"""The ``cuda`` target: a step graph → numba.cuda kernels and a step callable whose
parameters and optimizer state live on the device.

``CudaBackend.compile(graph)`` = optimize_graph → verify → ``lower_graph`` → epilogue fusion
(``graphc.codegen.epilogue``, shared with the cpu backend) → ``CudaProgram`` (kernels
rendered, compiled once per kernel text per process) → ``CudaStep``. A step owns
device buffers for its inputs, temporaries and outputs; parameters live in the backend's
``DeviceStore``, shared by every step the backend compiled (train, test, predict, the
partial last batch), keyed by the identity of the host array the runtime passes.

Device-residency contract of ``CudaStep.__call__(inputs, params) -> outputs`` (the generic
backend interface the ``Executable`` uses today):
- inputs are uploaded every call;
- a param is uploaded only when its host array is new to the store or its bytes differ from
  the store's shadow of the device copy (a host-side compare, no transfer), so an unchanged
  weight never crosses the bus twice;
- an output named like a param (the train graph's new value of that state) is not copied on
  the device: its buffer is swapped with the param's device buffer (double buffering), so
  the new state is on the device for the next step at no cost;
- every output is copied to host arrays the step owns and overwrites on its next call (the
  runtime copies state into ``Variable.value`` and logs into floats, which keeps
  ``model.get_weights()`` current).
The one per-step cost this interface cannot avoid is the download of the new state (and the
compare against it on the next call). ``CudaStep.run_resident`` removes both: with it only
the batch goes up and the logs come down. It needs the runtime to pass ``Variable`` objects
and each ``Variable`` to honour a lease (see ``DeviceStore.pull``): two small changes in
``graphc/runtime/executable.py`` and ``graphc/frontend/variables.py`` described there.

Faster still, in order of expected gain: the lease (``run_resident``) wired into the runtime;
capturing the step's launches in a CUDA graph (one launch per step instead of one numba
dispatch, ~10-30 us, per kernel); inputs staged through one pinned buffer (one copy per step);
a liveness plan for device temporaries (as the cpu backend's memplan); a disk cache of
compiled kernels (numba cannot cache exec'd source, so first compiles cost ~0.1-0.5 s each).

Without a GPU (and without ``NUMBA_ENABLE_CUDASIM=1``) constructing the backend raises a
one-line ``TargetError``; no driver traceback reaches the user.
"""
from __future__ import annotations

import threading
import time
import weakref

import numpy as np

from graphc.codegen.cuda import NO_GPU_MESSAGE, is_available, simulator_enabled
from graphc.errors import ShapeError, TargetError
from graphc.runtime.backends import register_backend


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1)


class _Entry:
    __slots__ = ("host", "dev", "shadow", "__weakref__")

    def __init__(self, host_ref, dev):
        self.host = host_ref        # weakref to the host array (the key's owner)
        self.dev = dev              # the device copy (flat)
        self.shadow = None          # host bytes equal to the device copy, or None: unknown


class DeviceStore:
    """Device copies of parameter/state arrays, keyed by the identity of their host array.

    An entry lives as long as its host array (a weakref callback frees the device memory),
    so a ``Variable``'s buffer stays resident for the life of the model, and arrays passed
    once do not leak device memory.

    Lease protocol (``run_resident``): a ``Variable`` whose ``_device`` attribute is this
    store has its newest value on the device; reading it must call ``store.pull(var)``
    first, which copies the device value into ``var._value`` and clears the lease. On the
    ``Variable`` side that is: ``self._device = None`` in ``__init__``; ``value`` does
    ``if self._device is not None: self._device.pull(self)`` before returning ``_value``;
    ``assign`` sets ``self._device = None`` before writing; ``numpy``/``__array__`` read
    through ``value``. A host array taken from ``value`` before a resident step must be read
    again after it (the step leases the variable anew).
    """

    def __init__(self):
        from numba import cuda
        self._cuda = cuda
        self._entries: dict[int, _Entry] = {}
        self._lock = threading.RLock()
        self.uploads = 0            # counters for tests and benchmarks
        self.skipped = 0

    def _entry(self, host: np.ndarray) -> _Entry | None:
        e = self._entries.get(id(host))
        if e is not None and e.host() is host:
            return e
        return None

    def _new_entry(self, host: np.ndarray) -> _Entry:
        key = id(host)
        store = weakref.ref(self)

        def drop(_ref, key=key):
            s = store()
            if s is not None:
                with s._lock:
                    e = s._entries.get(key)
                    if e is not None and e.host is _ref:
                        del s._entries[key]
        dev = self._cuda.to_device(_flat(host))
        self.uploads += 1
        e = _Entry(weakref.ref(host, drop), dev)
        self._entries[key] = e
        return e

    def sync(self, host: np.ndarray) -> _Entry:
        """The entry of ``host`` with a device copy equal to it (uploading only when the
        bytes differ from what the device holds)."""
        with self._lock:
            e = self._entry(host)
            if e is None:
                e = self._new_entry(host)
                e.shadow = host.copy()
                return e
            if e.shadow is not None and _same_bytes(host, e.shadow):
                self.skipped += 1
                return e
            e.dev.copy_to_device(_flat(host))
            self.uploads += 1
            if e.shadow is None:
                e.shadow = host.copy()
            else:
                np.copyto(e.shadow, host)
            return e

    def upload(self, host: np.ndarray) -> _Entry:
        """Make the device copy of ``host`` equal to it, unconditionally."""
        with self._lock:
            e = self._entry(host)
            if e is None:
                e = self._new_entry(host)
            else:
                e.dev.copy_to_device(_flat(host))
                self.uploads += 1
            e.shadow = None
            return e

    def pull(self, var) -> None:
        """Copy the device value of a leased ``Variable`` into its host buffer and end the
        lease (the host is authoritative again; the next resident step re-uploads it)."""
        with self._lock:
            host = var._value
            e = self._entry(host)
            if e is not None and getattr(var, "_device", None) is self:
                e.dev.copy_to_host(_flat(host))
                e.shadow = None
            var._device = None

    def __len__(self):
        return len(self._entries)


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    # Bitwise: NaN equals itself and -0.0 differs from 0.0, as the device copy would.
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(
        _flat(a).view(np.uint8), _flat(b).view(np.uint8))


class CudaStep:
    """A compiled step: ``step(inputs, params) -> outputs`` (see the module docstring)."""

    def __init__(self, graph, program, cprog, store: DeviceStore, timings=None):
        from numba import cuda
        self.graph, self.program, self.cuda_program = graph, program, cprog
        self.store = store
        self.timings = timings or {}
        bufs = program.buffers
        self._dev: dict[int, object] = {}
        for b in bufs:
            if b.kind == "const":
                data = np.ascontiguousarray(np.asarray(b.data, dtype=b.dtype.np).reshape(-1))
                self._dev[b.id] = cuda.to_device(data)
            elif b.kind in ("temp", "output", "input"):
                self._dev[b.id] = cuda.device_array(b.size, dtype=b.dtype.np)
        self._inputs = [(bid, bufs[bid]) for bid in program.inputs]
        self._params = [(bid, bufs[bid]) for bid in program.params]
        self._host_out = [np.empty(bufs[bid].shape, bufs[bid].dtype.np)
                          for bid in program.outputs]
        # Outputs that are the new value of a param (the train graph names them alike).
        slot_of = {bufs[bid].name: i for i, (bid, _) in enumerate(self._params)
                   if bufs[bid].name}
        self._state: dict[int, int] = {}
        for j, (bid, name) in enumerate(zip(program.outputs, program.output_names)):
            i = slot_of.get(name)
            if i is not None and bid not in program.params and bid not in program.inputs:
                pb = bufs[self._params[i][0]]
                if pb.shape == bufs[bid].shape and pb.dtype == bufs[bid].dtype:
                    self._state[j] = i
        self._launches = [ln for ln in cprog.launches if ln.source.work > 0]
        # Steps of one backend share the store's device buffers (and swap them): they run
        # one at a time, which costs nothing on a GPU's single default stream.
        self._lock = store._lock
        self.calls = 0

    # -- binding ------------------------------------------------------------------------
    def _host(self, a, buf, what: str) -> np.ndarray:
        dt = buf.dtype.np
        arr = a if (type(a) is np.ndarray and a.dtype == dt and a.flags.c_contiguous) \
            else np.ascontiguousarray(a, dtype=dt)
        if arr.shape != buf.shape:
            if arr.size == buf.size and (arr.ndim == 0 or len(buf.shape) == 0):
                arr = arr.reshape(buf.shape)        # a scalar given as [x] or vice versa
            else:
                raise ShapeError(f"cuda step: {what} '{buf.name or buf.id}' expected shape "
                                 f"{list(buf.shape)}, got {list(arr.shape)}")
        return arr

    def _upload_inputs(self, inputs):
        for (bid, buf), a in zip(self._inputs, inputs):
            arr = self._host(a, buf, "input")
            if buf.size:
                self._dev[bid].copy_to_device(_flat(arr))

    def _check_counts(self, inputs, params):
        if len(inputs) != len(self._inputs) or len(params) != len(self._params):
            raise ShapeError(f"cuda step: expected {len(self._inputs)} input(s) and "
                             f"{len(self._params)} param(s), got {len(inputs)} and "
                             f"{len(params)}")

    def _run_kernels(self, dev):
        for ln in self._launches:
            ln.launch([dev[b] for b in ln.source.args])

    def _finish(self, dev, entries, want=None):
        """Swap state outputs into the params' device buffers; download outputs (all, or
        the indices in ``want``). Returns the downloaded host arrays by output index."""
        out = {}
        for j, bid in enumerate(self.program.outputs):
            i = self._state.get(j)
            if i is not None:
                e = entries[i]
                # Double buffering: the param's old buffer becomes next call's output buffer.
                e.dev, self._dev[bid] = self._dev[bid], e.dev
                dev[bid] = e.dev
                e.shadow = None
            if want is None or j in want:
                host = self._host_out[j]
                if host.size:
                    dev[bid].copy_to_host(_flat(host))
                out[j] = host
                if i is not None:
                    e = entries[i]
                    e.shadow = host.copy()
        return out

    # -- the generic interface ------------------------------------------------------------
    def __call__(self, inputs, params=()):
        self._check_counts(inputs, params)
        with self._lock:
            self._upload_inputs(inputs)
            dev = dict(self._dev)
            entries = []
            for (bid, buf), a in zip(self._params, params):
                e = self.store.sync(self._host(a, buf, "param"))
                entries.append(e)
                dev[bid] = e.dev
            self._run_kernels(dev)
            out = self._finish(dev, entries)
            self.calls += 1
            return [out[j] for j in range(len(self.program.outputs))]

    # -- device-resident interface --------------------------------------------------------
    def run_resident(self, inputs, variables, state_vars=None):
        """Run one step with ``Variable`` params (in the graph's param order) under the
        store's lease (see ``DeviceStore``): params already leased to this store are not
        touched; others are uploaded once and leased. New state stays on the device (the
        variables stay leased); only outputs that are not state are downloaded and returned,
        in output order. ``state_vars`` (optional) cross-checks which variables the graph
        updates."""
        self._check_counts(inputs, variables)
        store = self.store
        with self._lock:
            self._upload_inputs(inputs)
            dev = dict(self._dev)
            entries = []
            for (bid, buf), var in zip(self._params, variables):
                e = store._entry(var._value) if getattr(var, "_device", None) is store \
                    else None
                if e is None:
                    host = self._host(var.value, buf, "param")   # pulls from another store
                    if host is not var._value:
                        raise ShapeError(f"cuda step: variable '{buf.name}' must hold a "
                                         f"contiguous {buf.dtype} array of shape "
                                         f"{list(buf.shape)} to live on the device")
                    e = store.upload(host)
                    var._device = store
                entries.append(e)
                dev[bid] = e.dev
            if state_vars is not None:
                updated = {id(variables[i]) for i in self._state.values()}
                if updated != {id(v) for v in state_vars}:
                    raise ShapeError("cuda step: the graph's state outputs do not match the "
                                     "runtime's state variables")
            self._run_kernels(dev)
            want = {j for j in range(len(self.program.outputs)) if j not in self._state}
            out = self._finish(dev, entries, want)
            self.calls += 1
            return [out[j] for j in sorted(want)]

    # -- introspection --------------------------------------------------------------------
    def launch_plan(self) -> str:
        return self.cuda_program.launch_plan()

    @property
    def sources(self) -> list[str]:
        return [ln.source.text for ln in self.cuda_program.launches]

    @property
    def state_outputs(self) -> dict[int, int]:
        """{output index: param slot} of the outputs that are new parameter/state values."""
        return dict(self._state)

    def memory_report(self) -> dict:
        """Device bytes of this step by buffer kind. Every temp has its own allocation (no
        liveness planning on the device yet), so the peak is the unplanned sum."""
        bufs = self.program.buffers
        rep = {f"{kind}_bytes": sum(b.nbytes for b in bufs if b.kind == kind)
               for kind in ("input", "param", "temp", "output", "const")}
        rep.update(unplanned_bytes=rep["temp_bytes"], peak_bytes=rep["temp_bytes"])
        return rep


class CudaBackend:
    """numba.cuda kernels for an NVIDIA GPU, or the CUDA simulator (see the module
    docstring). One instance per ``Executable``: its steps share one ``DeviceStore``."""

    name = "cuda"

    def __init__(self, config=None):
        if not is_available():
            raise TargetError(NO_GPU_MESSAGE) from None
        from graphc.codegen.cuda.source import default_config
        self.config = config or default_config()
        self.store = DeviceStore()

    @staticmethod
    def is_available() -> bool:
        return is_available()

    @property
    def simulator(self) -> bool:
        return simulator_enabled()

    def prepare(self, graph):
        from graphc.passes.pipeline import optimize_graph, verify_graph
        return verify_graph(optimize_graph(graph))

    def compile(self, graph) -> CudaStep:
        from graphc.codegen.cuda.program import CudaProgram, cache_stats, fuse_program
        from graphc.codegen.lowering import lower_graph
        t0 = time.perf_counter()
        g = self.prepare(graph)
        t1 = time.perf_counter()
        program = fuse_program(lower_graph(g), self.config)
        t2 = time.perf_counter()
        before = cache_stats()["compiled"]
        cprog = CudaProgram(program, self.config)
        t3 = time.perf_counter()
        timings = {"passes": t1 - t0, "lowering": t2 - t1, "kernels": t3 - t2,
                   "kernels_compiled": cache_stats()["compiled"] - before,
                   "total": t3 - t0}
        return CudaStep(g, program, cprog, self.store, timings)


register_backend("cuda", CudaBackend)
