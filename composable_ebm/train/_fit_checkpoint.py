"""``fit``'s checkpoint file: the training state, resumed from and saved to."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import warnings

import equinox as eqx
import jax
import numpy as np

from ..energies import Energy
from ._atomic import check_writable
from ._checkpoint import load_tree, save_tree
from ._file import read_file
from ._state import TrainState

__all__ = ["FitCheckpoint"]


def _stored(state: TrainState) -> TrainState:
    """The part of the state a checkpoint holds: everything that changes while training
    (parameters, optimizer and loss state, average, step, key); the energy's fixed parts
    and the configured loss come from the ``fit`` call that resumes."""
    return dataclasses.replace(state, rest=None, loss=None)


class FitCheckpoint:
    """The file of ``fit(..., checkpoint=path)``.

    The stored :class:`TrainState` is checked against the energy's terms and leaf paths when
    resumed. ±inf is refused in the trained and averaged parameters; the optimizer state may
    hold it (e.g. an initial best value).
    """

    def __init__(self, path: str | os.PathLike, energy: Energy, state: TrainState):
        self.path = pathlib.Path(path)
        check_writable(self.path)  # fail now, not after the first chunk of training
        self.energy = energy
        self.ema = state.ema
        trained = dataclasses.replace(
            jax.tree_util.tree_map(lambda _: False, eqx.filter(_stored(state), eqx.is_array)),
            params=jax.tree_util.tree_map(lambda _: True, eqx.filter(state.params, eqx.is_array)),
            averaged=jax.tree_util.tree_map(
                lambda _: True, eqx.filter(state.averaged, eqx.is_array)
            ),
        )
        self.strict = [bool(s) for s in jax.tree_util.tree_leaves(trained)]

    def resume(self, state: TrainState, steps: int) -> tuple[TrainState, int, dict, dict] | None:
        """(state, step, history, validation history) from the file, or None without one.

        Warns when the file is already past ``steps``: ``fit`` then trains nothing and
        returns the checkpoint's state.
        """
        if not self.path.exists():
            return None
        header, _ = read_file(self.path)
        saved_ema = header["info"].get("ema", "missing")
        if saved_ema != "missing" and saved_ema != self.ema:
            raise ValueError(
                f"the checkpoint {self.path} was written with ema={saved_ema!r} but this fit "
                f"has ema={self.ema!r}: resume with the same averaging setting (or a new path)"
            )
        loaded, info = load_tree(self.path, _stored(state), energy=self.energy, strict=self.strict)
        state = dataclasses.replace(loaded, rest=state.rest, loss=state.loss)
        done = int(info["step"])
        history = {k: [np.asarray(v)] for k, v in info.get("history", {}).items()}
        val_hist = {"val_step": [], "val_loss": []}
        val_hist = {k: list(v) for k, v in info.get("val_history", val_hist).items()}
        if done > steps:
            warnings.warn(
                f"the checkpoint {self.path} is already at step {done}, past the requested "
                f"steps={steps}: nothing is trained, and the checkpoint's state (step {done}, "
                "its parameters and history) is returned unchanged",
                UserWarning,
                stacklevel=3,
            )
        return state, done, history, val_hist

    def save(self, state: TrainState, done: int, history: dict, val_hist: dict) -> None:
        """Write the training state after ``done`` steps (atomically)."""
        hist = {k: np.concatenate(v).tolist() for k, v in history.items() if v}
        info = {"kind": "fit", "step": done, "ema": self.ema, "history": hist}
        save_tree(
            self.path,
            _stored(state),
            {**info, "val_history": val_hist},
            energy=self.energy,
            strict=self.strict,
        )
