"""``graphc.constraints``: Keras weight constraints (see ``graphc.frontend.constraints``)."""
from graphc.frontend.constraints import (  # noqa: F401
    Constraint, MaxNorm, MinMaxNorm, NonNeg, UnitNorm, deserialize, get, max_norm,
    min_max_norm, non_neg, serialize, unit_norm)
