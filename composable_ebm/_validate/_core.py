"""Input checks of numbers, shapes, supports and integers (see the package docstring).

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

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from numpyro.distributions import constraints

__all__ = [
    "concrete",
    "finite",
    "in_support",
    "is_traced",
    "nonnegative_shape",
    "numeric",
    "numeric_kind",
    "positive",
    "positive_int",
    "positive_ints",
    "show",
]


def _unwrap(x: Any) -> Any:
    """The array behind an ``ebm.Param``; anything else as it is."""
    from .._param import Param

    return x.value if isinstance(x, Param) else x


def is_traced(x: Any) -> bool:
    """Whether ``x`` (or the value of an ``ebm.Param``) is a JAX tracer.

    Example:
        >>> import jax
        >>> from composable_ebm._validate import is_traced
        >>> seen = []
        >>> _ = jax.jit(lambda a: seen.append(is_traced(a)) or a)(1.0)
        >>> is_traced(1.0), seen
        (False, [True])
    """
    return isinstance(_unwrap(x), jax.core.Tracer)


def show(x: Any, limit: int = 60) -> str:
    """A short description of a given value for messages: a short ``repr``, or its type
    and shape when the repr is long.

    Example:
        >>> import numpy as np
        >>> from composable_ebm._validate import show
        >>> show("a"), show(np.zeros((100, 3)))
        ("str 'a'", 'an array of shape (100, 3) and dtype float64')
    """
    if isinstance(x, (str, bytes)):
        text = repr(x)
        return f"{type(x).__name__} {text if len(text) <= limit else text[:limit] + '…'}"
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is not None and dtype is not None:
        if shape == ():
            try:
                return repr(np.asarray(x).item())
            except Exception:  # a placeholder: fall through to its type
                return f"a {type(x).__name__} of dtype {dtype}"
        return f"an array of shape {tuple(shape)} and dtype {dtype}"
    text = repr(x)
    if isinstance(x, (int, float, bool)) or x is None:
        return text
    if len(text) > limit:
        text = text[:limit] + "…"
    return f"{type(x).__name__} {text}"


def numeric(x: Any, what: str, *, allow_bool: bool = True) -> np.ndarray | None:
    """``x`` as a NumPy array of real numbers, or ``None`` when ``x`` is traced.

    Raises:
        TypeError: ``x`` is a string, ``None``, a complex number or anything else that is
            not an array of real numbers (naming ``what`` and the given value).

    Example:
        >>> from composable_ebm._validate import numeric
        >>> numeric([1, 2], "mean").tolist()
        [1, 2]
        >>> numeric("a", "mean")
        Traceback (most recent call last):
        ...
        TypeError: mean must be a number or an array of numbers, got str 'a'
    """
    x = _unwrap(x)
    if isinstance(x, jax.core.Tracer):
        kind = np.dtype(x.dtype).kind
        arr = None
    else:
        if isinstance(x, (str, bytes)) or x is None:
            kind = "U"
        else:
            try:
                arr = np.asarray(x)
            except Exception:  # ragged lists, objects with a broken __array__
                arr = None
            kind = "O" if arr is None else arr.dtype.kind
    if kind not in ("b", "i", "u", "f") or (kind == "b" and not allow_bool):
        expected = "a number or an array of numbers"
        if kind == "c":
            expected = "real numbers"
        raise TypeError(f"{what} must be {expected}, got {show(x)}")
    return None if isinstance(x, jax.core.Tracer) else arr


def numeric_kind(x: Any, what: str) -> None:
    """As :func:`numeric`, looking at the dtype only: an array (JAX or NumPy) is not
    copied, so this is cheap on every call of an energy.

    Example:
        >>> from composable_ebm._validate import numeric_kind
        >>> numeric_kind(None, "the value of variable 'x'")
        Traceback (most recent call last):
        ...
        TypeError: the value of variable 'x' must be a number or an array of numbers, got None
    """
    dtype = getattr(x, "dtype", None)
    if isinstance(x, (jax.Array, np.ndarray, np.generic)) and dtype is not None:
        if np.dtype(dtype).kind in ("b", "i", "u", "f"):
            return
    numeric(x, what)


def concrete(x: Any) -> np.ndarray | None:
    """A NumPy view of a concrete numeric value; ``None`` for a tracer or a placeholder
    that is not an array of numbers (what JAX and equinox put in trees they rebuild).

    Example:
        >>> from composable_ebm._validate import concrete
        >>> concrete(2.0), concrete(None)
        (array(2.), None)
    """
    x = _unwrap(x)
    if isinstance(x, jax.core.Tracer) or x is None or isinstance(x, (str, bytes)):
        return None
    if not isinstance(x, (jax.Array, np.ndarray, np.generic, int, float, Sequence)):
        return None
    try:
        arr = np.asarray(x)
    except Exception:
        return None
    return arr if arr.dtype.kind in ("b", "i", "u", "f") else None


def _bad_entries(arr: np.ndarray, bad: np.ndarray) -> str:
    """``arr`` shown for a message, pointing at its first bad entry."""
    if arr.ndim == 0:
        return show(arr)
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    index = first[0] if len(first) == 1 else first
    return f"{arr[first].item()!r} at index {index} ({int(bad.sum())} of {arr.size} entries)"


def finite(x: Any, what: str) -> None:
    """Refuse NaN or infinite entries in a concrete number or array.

    Example:
        >>> import numpy as np
        >>> from composable_ebm._validate import finite
        >>> finite(np.array([1.0, np.inf]), "mean")
        Traceback (most recent call last):
        ...
        ValueError: mean must be finite, got inf at index 1 (1 of 2 entries)
    """
    arr = numeric(x, what)
    if arr is None or arr.dtype.kind != "f":
        return
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{what} must be finite, got {_bad_entries(arr, bad)}")


def positive(x: Any, what: str, *, allow_zero: bool = False) -> None:
    """Refuse non-finite entries and entries ≤ 0 (< 0 with ``allow_zero``).

    Example:
        >>> from composable_ebm._validate import positive
        >>> positive(-0.1, "noise", allow_zero=True)
        Traceback (most recent call last):
        ...
        ValueError: noise must be non-negative, got -0.1
    """
    finite(x, what)
    arr = numeric(x, what)
    if arr is None:
        return
    bad = arr < 0 if allow_zero else arr <= 0
    if np.any(bad):
        expected = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{what} must be {expected}, got {_bad_entries(arr, bad)}")


def _support_holds(arr: np.ndarray, support: constraints.Constraint) -> np.ndarray | None:
    """Elementwise membership (over the support's event axes), in NumPy; ``None`` when
    the support cannot be checked here."""
    c, event_dims = support, 0
    while isinstance(c, constraints._IndependentConstraint):
        event_dims += c.reinterpreted_batch_ndims
        c = c.base_constraint
    if isinstance(c, constraints._Dependent):
        return None
    try:
        ok = np.asarray(c(arr))
    except Exception:  # a constraint NumPyro cannot evaluate on these values
        return None
    if ok.dtype != np.bool_:
        return None
    if event_dims and ok.ndim >= event_dims:
        ok = ok.reshape((*ok.shape[: ok.ndim - event_dims], -1)).all(-1)
    return ok


def in_support(x: Any, support: constraints.Constraint, what: str, kind: str = "support") -> None:
    """Refuse a concrete value outside a NumPyro constraint's set (NaN never belongs);
    the message calls the set ``kind`` ("support", "constraint").

    Example:
        >>> from numpyro.distributions import constraints
        >>> from composable_ebm._validate import in_support
        >>> in_support(-1.0, constraints.positive, "variable 's'")
        Traceback (most recent call last):
        ...
        ValueError: variable 's' must lie in its support greater_than(0.0), got -1.0
    """
    from .._space import describe_support

    arr = numeric(x, what)
    if arr is None:
        return
    ok = _support_holds(arr, support)
    if ok is None:
        return
    if not np.all(ok):
        bad = ~ok
        given = _bad_entries(arr, bad) if bad.shape == arr.shape else show(arr)
        raise ValueError(f"{what} must lie in its {kind} {describe_support(support)}, got {given}")


def positive_int(n: Any, what: str) -> int:
    """``n`` as an ``int`` ≥ 1: a ``ValueError`` for a number that is not one (2.5, 0,
    ``True``), a ``TypeError`` for something that is not a number at all.

    Example:
        >>> from composable_ebm._validate import positive_int
        >>> positive_int(0, "num_hidden")
        Traceback (most recent call last):
        ...
        ValueError: num_hidden must be a positive integer, got 0
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        number = isinstance(n, (float, np.floating, bool, np.bool_))
        raise (ValueError if number else TypeError)(
            f"{what} must be a positive integer, got {show(n)}"
        )
    if n < 1:
        raise ValueError(f"{what} must be a positive integer, got {int(n)}")
    return int(n)


def positive_ints(seq: Any, what: str) -> tuple[int, ...]:
    """A sequence of positive integers (e.g. layer sizes) as a tuple of ``int``.

    Example:
        >>> from composable_ebm._validate import positive_ints
        >>> positive_ints((16, 0), "hidden")
        Traceback (most recent call last):
        ...
        ValueError: hidden[1] must be a positive integer, got 0
    """
    if isinstance(seq, (str, bytes)) or not isinstance(seq, (Sequence, np.ndarray)):
        raise TypeError(f"{what} must be a sequence of positive integers, got {show(seq)}")
    return tuple(positive_int(n, f"{what}[{i}]") for i, n in enumerate(seq))


def nonnegative_shape(shape: Any, what: str) -> tuple[int, ...]:
    """A shape: an int or a sequence of non-negative ints, as a tuple.

    Example:
        >>> from composable_ebm._validate import nonnegative_shape
        >>> nonnegative_shape(3, "shape"), nonnegative_shape([2, 0], "shape")
        ((3,), (2, 0))
    """
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, np.ndarray)):
        raise TypeError(f"{what} must be a tuple of integers, got {show(shape)}")
    out = []
    for i, s in enumerate(shape):
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"{what} must be a tuple of integers, got {show(s)} at index {i}")
        if s < 0:
            raise ValueError(f"{what} must have non-negative sizes, got {tuple(shape)}")
        out.append(int(s))
    return tuple(out)
