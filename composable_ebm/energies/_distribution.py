"""Energies taken from NumPyro distributions: E = −log_prob."""

from __future__ import annotations

import re
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

from .. import _validate
from .._param import as_float
from .._space import Var
from ._base import Energy, Values
from ._closed_form import _check_name

__all__ = ["FromDistribution", "InvalidParameterError"]


def _stored(tree: Any, constraint: Any) -> Any:
    """Numbers as strongly typed arrays: floats (and integers of a continuous parameter)
    in the default float dtype, integers of a discrete parameter in the default int dtype."""
    discrete = bool(getattr(constraint, "is_discrete", False))

    def conv(x):
        numeric = isinstance(x, (jax.Array, np.ndarray, np.generic, int, float))
        if isinstance(x, bool) or not numeric:
            return x
        arr = jnp.asarray(x)
        if jnp.issubdtype(arr.dtype, jnp.floating) or (
            not discrete and jnp.issubdtype(arr.dtype, jnp.integer)
        ):
            return as_float(arr)
        if jnp.issubdtype(arr.dtype, jnp.integer) and arr.weak_type:
            return jnp.asarray(arr, dtype=jnp.result_type(int))
        return arr

    return jax.tree_util.tree_map(conv, tree)


_NUMPYRO_INVALID = re.compile(r"got invalid (\w+) parameter")


class InvalidParameterError(ValueError):
    """A distribution parameter outside its constraint, naming the energy's variable."""


def _check_parameters(var: str, cls: type, params: dict[str, Any], note: str = "") -> None:
    """Refuse concrete parameters NumPyro would reject (NaN, or outside the parameter's
    constraint), naming the variable and the parameter; NumPyro itself only checks them
    when validation is on, and then names neither."""
    for name, constraint in cls.arg_constraints.items():
        p = params.get(name)
        what = f"FromDistribution {var!r}: the {cls.__name__} parameter {name!r}{note}"
        if _validate.is_traced(p) or (p is None and name not in params):
            continue  # traced, or a lazy parameter that was not given
        arr = _validate.numeric(p, what)
        try:
            if arr.dtype.kind == "f" and np.isnan(arr).any():
                _validate.finite(arr, what)  # names the first NaN
            if not constraints.is_dependent(constraint):
                _validate.in_support(arr, constraint, what, kind="constraint")
        except ValueError as e:
            raise InvalidParameterError(str(e)) from None


class FromDistribution(Energy):
    """−log_prob of any NumPyro distribution, summed to a scalar; support taken from it.

    The variable's shape is the distribution's ``batch_shape + event_shape``. Parameters
    are stored as float array leaves, by name (NumPyro's own field order is not stable
    across processes). With ``trainable=True`` the distribution is rebuilt from its
    constructor arguments on each evaluation, and each one that has a known constraint is
    stored unconstrained (through ``biject_to``) so ``fit`` can learn it.

    Example:
        >>> import numpyro.distributions as dist, composable_ebm as ebm
        >>> E = ebm.FromDistribution("s", dist.Exponential(2.0))
        >>> round(float(E(1.0)), 4)  # 2·1 − log 2
        1.3069
        >>> E.space["s"].support
        Positive(lower_bound=0.0)
    """

    trainable_fields = frozenset({"params"})  # empty unless built with trainable=True
    variable_fields = ("var",)

    var: str = eqx.field(static=True)
    dist_type: type = eqx.field(static=True)
    aux: tuple[tuple[str, Any], ...] | None = eqx.field(static=True)
    params: dict[str, Any]  # trainable: stored unconstrained
    fixed: dict[str, Any]  # everything else, as given
    shape: tuple[int, ...] = eqx.field(static=True)
    support: Any = eqx.field(static=True)

    def __init__(self, var: str, distribution: dist.Distribution, trainable: bool = False):
        self.var = _check_name(var)
        if not isinstance(distribution, dist.Distribution):
            raise TypeError(
                "FromDistribution expects a numpyro Distribution, got "
                f"{type(distribution).__name__}"
            )
        d = distribution
        self.dist_type = cls = type(d)
        fields = cls.gather_pytree_data_fields()
        args = d.arg_constraints
        # as given (lazy, derived parameters are not computed)
        _check_parameters(var, cls, d.__dict__)
        self.params, self.fixed = {}, {}
        if trainable:
            # the constructor's arguments only: derived fields (Beta's inner Dirichlet,
            # LogNormal's base Normal, ...) are recomputed from them on each rebuild
            self.aux = None
            for name, c in args.items():
                p = d.__dict__.get(name) if name in fields else None
                if p is None:
                    continue
                p = _stored(p, c)
                if isinstance(p, jax.Array) and jnp.issubdtype(p.dtype, jnp.floating):
                    try:
                        self.params[name] = as_float(biject_to(c).inv(p))
                        continue
                    except NotImplementedError:
                        pass
                self.fixed[name] = p
            try:
                rebuilt = self.distribution
            except InvalidParameterError:
                raise
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"FromDistribution {var!r}: trainable=True needs a {cls.__name__} that can "
                    f"be rebuilt from its parameters {sorted(args)}: {e}"
                ) from e
            if (rebuilt.batch_shape, rebuilt.event_shape) != (d.batch_shape, d.event_shape):
                raise ValueError(
                    f"FromDistribution {var!r}: rebuilding {cls.__name__} from its parameters "
                    "changed its shape; use trainable=False"
                )
        else:
            params, aux = d.tree_flatten()
            self.aux = tuple(zip(cls.gather_pytree_aux_fields(), aux, strict=True))
            self.fixed = {
                name: _stored(p, args.get(name)) for name, p in zip(fields, params, strict=True)
            }
        # as stored: a number may under- or overflow the float dtype
        stored = dict(self.fixed) if self.aux is not None else self.distribution.__dict__
        _check_parameters(var, cls, stored, f" (stored as {as_float(0.0).dtype})")
        self.shape = tuple(d.batch_shape) + tuple(d.event_shape)
        self.support = d.support
        Var(self.shape, self.support)  # checks the support has concrete bounds

    @property
    def unconstrained(self) -> tuple[str, ...]:
        """Names of the parameters stored unconstrained (the trainable ones)."""
        return tuple(self.params)

    @property
    def distribution(self) -> dist.Distribution:
        """The NumPyro distribution, rebuilt from the stored leaves."""
        cls = self.dist_type
        values = dict(self.fixed)
        for name, p in self.params.items():
            values[name] = biject_to(cls.arg_constraints[name])(p)
        try:
            if self.aux is None:
                return cls(**values)
            aux = dict(self.aux)
            return cls.tree_unflatten(
                tuple(aux.get(f) for f in cls.gather_pytree_aux_fields()),
                tuple(values.get(f) for f in cls.gather_pytree_data_fields()),
            )
        except ValueError as e:  # NumPyro's argument validation names no variable
            match = _NUMPYRO_INVALID.search(str(e))
            if match is None:
                raise
            raise InvalidParameterError(
                f"FromDistribution {self.var!r}: the {cls.__name__} parameter "
                f"{match.group(1)!r} is invalid (NumPyro: {e})"
            ) from e

    @property
    def space(self) -> dict[str, Var]:
        return {self.var: Var(self.shape, self.support)}

    @property
    def log_partition(self) -> jax.Array:
        """log ∫ exp(−E) = 0: a distribution's density is normalised."""
        return as_float(0.0)

    def evaluate(self, values: Values) -> jax.Array:
        return -jnp.sum(self.distribution.log_prob(values[self.var]))
