"""Root test configuration: the ``--update-golden`` option and process-wide settings that
must be in place before any test module imports the libraries they affect."""
import os

import pytest

# Numba reads this once, at its first import, and it cannot be switched later: CUDA tests
# run under the simulator unless a machine with a GPU says NUMBA_ENABLE_CUDASIM=0.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

# The cpu target's disk compile cache goes to a temp dir of this session (removed at exit):
# the suite exercises the cache without littering ~/.cache or reusing stale entries.
if "GRAPHC_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile
    os.environ["GRAPHC_CACHE_DIR"] = _cache = tempfile.mkdtemp(prefix="graphc-test-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/*.ir from the current compiler instead of "
                          "comparing with them (review the diff before committing)")


@pytest.fixture
def update_golden(request) -> bool:
    return request.config.getoption("--update-golden")
