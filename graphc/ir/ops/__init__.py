"""Importing this package registers every op (one module per family)."""
from graphc.ir.ops import (elementwise, reduce, movement, linalg, movement2, nn,  # noqa: F401
                           misc, indexing)
