"""Energies: the base class, closed forms, neural terms and the algebra's combinators."""

from ._base import Energy
from ._closed_form import Confinement, FunctionEnergy, Gaussian, energy
from ._combinators import LogSumExp, Scaled, Sum, logsumexp, sum
from ._distribution import FromDistribution
from ._mixture import Mixture, mixture
from ._neural import NeuralEnergy
from ._rbm import BernoulliRBM, FreeEnergy, GaussianBernoulliRBM
from ._stack import Stacked, stack
from ._structure import terms, trainable_mask
from ._wrappers import Conditioned, Frozen, Named, Renamed, freeze

__all__ = [
    "BernoulliRBM",
    "Conditioned",
    "Confinement",
    "Energy",
    "FreeEnergy",
    "FromDistribution",
    "Frozen",
    "FunctionEnergy",
    "Gaussian",
    "GaussianBernoulliRBM",
    "LogSumExp",
    "Mixture",
    "Named",
    "NeuralEnergy",
    "Renamed",
    "Scaled",
    "Stacked",
    "Sum",
    "energy",
    "freeze",
    "logsumexp",
    "mixture",
    "stack",
    "sum",
    "terms",
    "trainable_mask",
]
