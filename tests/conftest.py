"""Root test configuration: the ``--update-golden`` option and process-wide settings that
must be in place before any test module imports the libraries they affect."""
import os

import pytest

# Numba reads this once, at its first import, and it cannot be switched later: CUDA tests
# run under the simulator unless a machine with a GPU says NUMBA_ENABLE_CUDASIM=0.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/*.ir from the current compiler instead of "
                          "comparing with them (review the diff before committing)")


@pytest.fixture
def update_golden(request) -> bool:
    return request.config.getoption("--update-golden")
