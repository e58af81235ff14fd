"""The one home for input checks: numbers, shapes, supports, matrices, integers.

Every check names what it checks (``what``: an argument, a variable, a parameter), says
what was expected and what was given, and raises ``ValueError`` (a bad value) or
``TypeError`` (a value of the wrong kind). Checks look at concrete values only: on a
traced value (energies are also built inside ``jit``, e.g. by ``fit``) they return
silently. They run in NumPy on the host, so checking compiles nothing.

Example:
    >>> from composable_ebm import _validate as v
    >>> v.finite(float("nan"), "weight")
    Traceback (most recent call last):
    ...
    ValueError: weight must be finite, got nan
"""

from ._core import (
    concrete,
    finite,
    in_support,
    is_traced,
    nonnegative_shape,
    numeric,
    numeric_kind,
    positive,
    positive_int,
    positive_ints,
    show,
)
from ._matrix import SYMMETRY_RTOL, positive_definite, symmetric

__all__ = [
    "SYMMETRY_RTOL",
    "concrete",
    "finite",
    "in_support",
    "is_traced",
    "nonnegative_shape",
    "numeric",
    "numeric_kind",
    "positive",
    "positive_definite",
    "positive_int",
    "positive_ints",
    "show",
    "symmetric",
]
