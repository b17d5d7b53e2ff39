"""CUDA tests run under numba's CUDA simulator unless a GPU machine sets
NUMBA_ENABLE_CUDASIM=0. Numba reads the variable once, at its first import, so it is set
here (tests/conftest.py sets it for the whole session too) before anything imports numba;
the whole folder is skipped if the cuda target cannot run (no GPU and no simulator)."""
import os
import sys

import pytest

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
if "numba" in sys.modules:
    from numba.cuda.core import config as _numba_cuda_config
    assert bool(_numba_cuda_config.ENABLE_CUDASIM) == (
        os.environ["NUMBA_ENABLE_CUDASIM"].strip() not in ("", "0")), \
        "numba was imported before NUMBA_ENABLE_CUDASIM was set; run tests/cuda in its own " \
        "pytest process"

from graphc.codegen.cuda import is_available, simulator_enabled  # noqa: E402

AVAILABLE = is_available()
if AVAILABLE:
    import graphc.codegen.cuda.backend  # noqa: E402,F401  (registers the 'cuda' target)


def pytest_collection_modifyitems(config, items):
    if AVAILABLE:
        return
    skip = pytest.mark.skip(reason="target 'cuda' cannot run here: no GPU and the CUDA "
                                   "simulator is off (NUMBA_ENABLE_CUDASIM=0)")
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="package")
def _fast_simulator_threads():
    """The simulator runs every CUDA thread as a Python thread and busy-polls them at each
    syncthreads: a short switch interval roughly halves the time of a shared-memory kernel."""
    old = sys.getswitchinterval()
    if simulator_enabled():
        sys.setswitchinterval(1e-3)
    yield
    sys.setswitchinterval(old)
