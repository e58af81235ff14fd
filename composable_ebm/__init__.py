"""composable_ebm: energy-based models as composable objects, sampled with NumPyro.

Sign convention everywhere: p(x) ∝ exp(−E(x)); an energy is NumPyro's ``potential_fn``.

Example:
    >>> import jax, jax.numpy as jnp, composable_ebm as ebm
    >>> prior = ebm.Gaussian("x", jnp.zeros(2), cov=jnp.eye(2))
    >>> ring = ebm.energy(lambda x: 5.0 * (jnp.linalg.norm(x) - 1.0) ** 2, x=(2,))
    >>> E = prior + ring.named("ring")
    >>> float(E(jnp.array([1.0, 0.0])))
    0.5
"""

from typing import Any

from ._cache import configure as _configure_cache
from ._param import Param
from ._space import Var
from .energies import (
    BernoulliRBM,
    Confinement,
    Energy,
    FromDistribution,
    Gaussian,
    GaussianBernoulliRBM,
    NeuralEnergy,
    Stacked,
    energy,
    freeze,
    logsumexp,
    stack,
    sum,
    terms,
    trainable_mask,
)
from .energies._mixture import mixture
from .infer import (
    EnergyDistribution,
    Samples,
    constrain,
    factor,
    init_params,
    model,
    postprocess_fn,
    potential_fn,
    sample,
    to_inference_data,
    unconstrain,
)
from .infer._langevin import langevin
from .infer._partition import LogZ, log_partition
from .train import (
    L2,
    NCE,
    ContrastiveDivergence,
    EnergyL2,
    FitError,
    FitResult,
    Loss,
    MarginLoss,
    ScoreMatching,
    TrainState,
    fit,
    load,
    save,
    train_step,
)

__version__ = "0.1.0"

_configure_cache()  # the persistent compilation cache (EBM_CACHE_DIR; "" turns it off)

__all__ = [
    "L2",
    "NCE",
    "BernoulliRBM",
    "Confinement",
    "ContrastiveDivergence",
    "Energy",
    "EnergyDistribution",
    "EnergyL2",
    "FitError",
    "FitResult",
    "FromDistribution",
    "Gaussian",
    "GaussianBernoulliRBM",
    "LogZ",
    "Loss",
    "MarginLoss",
    "NeuralEnergy",
    "Param",
    "Samples",
    "ScoreMatching",
    "Stacked",
    "TrainState",
    "Var",
    "constrain",
    "datasets",
    "energy",
    "factor",
    "fit",
    "freeze",
    "init_params",
    "langevin",
    "load",
    "log_partition",
    "logsumexp",
    "mixture",
    "model",
    "plot",
    "postprocess_fn",
    "potential_fn",
    "sample",
    "save",
    "stack",
    "sum",
    "terms",
    "to_inference_data",
    "train_step",
    "trainable_mask",
    "unconstrain",
]


def __getattr__(name: str) -> Any:
    if name in ("plot", "datasets"):  # matplotlib is imported only when plotting
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
