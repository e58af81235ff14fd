"""Placeholder variable names and field replacement: what ``Energy.relabel`` builds on."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["positional", "replace_fields"]

#: Prefix of the placeholder names :meth:`Energy.relabel` gives variables when terms are
#: compared and stacked: a valid identifier no one types (U+01C1, a click letter).
_PLACEHOLDER = "\u01c1"


def positional(kind: str, i: int) -> str:
    """The ``i``-th placeholder variable name of a kind (``"v"``, ``"fixed"``, ``"inner"``)."""
    return f"{_PLACEHOLDER}{kind}{i}"


def replace_fields(module: Any, changes: Mapping[str, Any]) -> Any:
    """A copy of ``module`` with some fields replaced, without running its ``__init__``."""
    new = object.__new__(type(module))
    for f in dataclasses.fields(module):
        object.__setattr__(new, f.name, changes.get(f.name, getattr(module, f.name)))
    return new
