"""Sampler kernels: each one ``init``/``step`` pair with the energy passed at call time."""

from . import gibbs, hmc, langevin
from ._base import KERNELS, EnergyFn, Kernel, register
from .gibbs import Gibbs
from .hmc import HMC, NUTS
from .langevin import MALA, ULA

__all__ = [
    "HMC",
    "KERNELS",
    "MALA",
    "NUTS",
    "ULA",
    "EnergyFn",
    "Gibbs",
    "Kernel",
    "gibbs",
    "hmc",
    "langevin",
    "register",
]
