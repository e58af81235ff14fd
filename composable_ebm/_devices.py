"""Devices: a one-axis ``jax.sharding.Mesh`` over chains (``sample``) or rows (``fit``).

For sampling, the driver runs each device's chains with ``jax.shard_map``: one compiled
program, every device advancing its own chains (a NUTS tree's while-loop waits only for
the chains on its own device, never for a global "all chains done"). Keys are the same as
on one device (step ``i``'s keys are ``split(fold_in(key, i), num_chains)``, each device
taking its slice), so the draws are the same in distribution, and equal up to floating
point. For training, each minibatch is split over the devices and the parameters
replicated: XLA reduces the gradients across devices (data parallelism).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["AXIS", "mesh_for", "one_device", "replicate", "shard_leading"]

AXIS = "devices"


def mesh_for(devices: str | Sequence[Any] | None, count: int, what: str) -> Mesh | None:
    """The mesh that ``count`` things (chains, rows of a batch) are split over, or ``None``.

    ``None``: every local device (``jax.local_devices()``) when ``count`` divides evenly
    among them, else one device (no mesh). ``"all"``: every device of every host
    (``jax.devices()``), and an error when ``count`` does not divide evenly. A list: those
    devices. ``what`` names ``count`` in errors.

    Example:
        >>> m = mesh_for(None, 4, "num_chains")
        >>> m is None or m.size > 1  # None on one device
        True
    """
    if devices is None:
        found = jax.local_devices()
        if len(found) < 2 or count % len(found):
            return None
        return Mesh(np.asarray(found), (AXIS,))
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f'devices must be None, "all" or a list of devices, got {devices!r}')
        found = jax.devices()
    else:
        try:
            found = list(devices)
        except TypeError:
            raise TypeError(
                f'devices must be None, "all" or a list of devices, got {type(devices).__name__}'
            ) from None
        if not found:
            raise ValueError("devices is an empty list: give at least one device")
        for d in found:
            if not isinstance(d, jax.Device):
                raise TypeError(f"devices must hold jax devices (jax.devices()), got {d!r}")
        if len({id(d) for d in found}) != len(found):
            raise ValueError(f"devices lists a device more than once: {found}")
    if count % len(found):
        raise ValueError(
            f"{what}={count} does not divide evenly over {len(found)} devices; "
            f"use a multiple of {len(found)}"
        )
    return Mesh(np.asarray(found), (AXIS,))


def shard_leading(tree: Any, mesh: Mesh | None) -> Any:
    """Place arrays on the mesh, split along their leading axis (chains, rows); without a
    mesh, on one device (see :func:`one_device`)."""
    if mesh is None:
        return one_device(tree)
    return jax.device_put(tree, NamedSharding(mesh, P(AXIS)))


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Place the array leaves of ``tree`` on every device of the mesh (whole copies);
    without a mesh, on one device (see :func:`one_device`)."""
    if mesh is None:
        return one_device(tree)
    arrays, rest = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.device_put(arrays, NamedSharding(mesh, P())), rest)


def one_device(tree: Any) -> Any:
    """Arrays spread over several devices (a sharded run, a data-parallel fit) gathered
    onto the default device, so a run on one device can take them; others untouched."""
    arrays, rest = eqx.partition(tree, lambda x: isinstance(x, jax.Array))
    leaves, treedef = jax.tree_util.tree_flatten(arrays)
    if all(len(x.sharding.device_set) == 1 for x in leaves):
        return tree
    device = jax.local_devices()[0]
    moved = [jax.device_put(x, device) if len(x.sharding.device_set) > 1 else x for x in leaves]
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, moved), rest)
