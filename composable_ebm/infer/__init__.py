"""Inference: the NumPyro bridge, ``sample()`` and ``Samples``, and ArviZ conversion."""

from ._arviz import to_inference_data
from ._bridge import constrain, init_params, postprocess_fn, potential_fn, unconstrain
from ._numpyro import EnergyDistribution, factor, model
from ._partition import LogZ, log_partition
from ._sample import sample
from ._samples import Samples

__all__ = [
    "EnergyDistribution",
    "LogZ",
    "Samples",
    "constrain",
    "factor",
    "init_params",
    "log_partition",
    "model",
    "postprocess_fn",
    "potential_fn",
    "sample",
    "to_inference_data",
    "unconstrain",
]
