"""Energies: the base class, closed forms, neural terms and the algebra's combinators."""

from ._base import Energy
from ._closed_form import Confinement, FunctionEnergy, Gaussian, energy
from ._combinators import LogSumExp, Scaled, Sum, logsumexp
from ._distribution import FromDistribution
from ._neural import NeuralEnergy
from ._structure import terms, trainable_mask
from ._wrappers import Conditioned, Frozen, Named, Renamed, freeze

__all__ = [
    "Conditioned",
    "Confinement",
    "Energy",
    "FromDistribution",
    "Frozen",
    "FunctionEnergy",
    "Gaussian",
    "LogSumExp",
    "Named",
    "NeuralEnergy",
    "Renamed",
    "Scaled",
    "Sum",
    "energy",
    "freeze",
    "logsumexp",
    "terms",
    "trainable_mask",
]
