"""``fit``'s checkpoint file: the whole training state, resumed from and saved to."""

from __future__ import annotations

import os
import pathlib
import warnings
from typing import Any

import equinox as eqx
import jax
import numpy as np

from ..energies import Energy
from ._atomic import check_writable
from ._checkpoint import load_tree, save_tree

__all__ = ["FitCheckpoint"]


class FitCheckpoint:
    """The file of ``fit(..., checkpoint=path)``.

    The training state (trainable parameters, optimizer state, loss state, key, flags) is
    checked against the energy's terms and leaf paths when resumed. ±inf is refused in the
    trained parameters; the optimizer state may hold it (e.g. an initial best value).
    """

    def __init__(self, path: str | os.PathLike, energy: Energy, carry: tuple):
        self.path = pathlib.Path(path)
        check_writable(self.path)  # fail now, not after the first chunk of training
        self.energy = energy
        n_params = len(jax.tree_util.tree_leaves(eqx.filter(carry[0], eqx.is_array)))
        n_all = len(jax.tree_util.tree_leaves(eqx.filter(carry, eqx.is_array)))
        self.strict = [True] * n_params + [False] * (n_all - n_params)

    def resume(self, carry: tuple, steps: int) -> tuple[tuple, int, dict, dict] | None:
        """(carry, step, history, validation history) from the file, or None without one.

        Warns when the file is already past ``steps``: ``fit`` then trains nothing and
        returns the checkpoint's state.
        """
        if not self.path.exists():
            return None
        carry, info = load_tree(self.path, carry, energy=self.energy, strict=self.strict)
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
        return carry, done, history, val_hist

    def save(self, carry: Any, done: int, history: dict, val_hist: dict) -> None:
        """Write the training state after ``done`` steps (atomically)."""
        hist = {k: np.concatenate(v).tolist() for k, v in history.items() if v}
        save_tree(
            self.path,
            carry,
            {"kind": "fit", "step": done, "history": hist, "val_history": val_hist},
            energy=self.energy,
            strict=self.strict,
        )
