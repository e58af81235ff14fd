"""Training: losses (NCE, score matching, contrastive divergence, margin), ``fit``,
checkpoints."""

from ._cd import ContrastiveDivergence
from ._checkpoint import load, save
from ._fit import fit
from ._loss import Loss, LossSum
from ._nce import NCE
from ._regularizers import L2, EnergyL2, MarginLoss
from ._result import FitError, FitResult
from ._score_matching import ScoreMatching
from ._state import TrainState, train_step

__all__ = [
    "L2",
    "NCE",
    "ContrastiveDivergence",
    "EnergyL2",
    "FitError",
    "FitResult",
    "Loss",
    "LossSum",
    "MarginLoss",
    "ScoreMatching",
    "TrainState",
    "fit",
    "load",
    "save",
    "train_step",
]
