"""Conversion to ArviZ: the only module that knows ArviZ's names."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..energies import Energy
from ._bridge import constrain
from ._samples import Samples

__all__ = ["to_inference_data"]

# Statistics every kernel records → (ArviZ sample_stats name, sign); each kernel's own
# statistics are named by its ``stats`` table.
_COMMON = {
    "potential_energy": ("lp", -1),
    "model_energy": ("model_energy", 1),
}
# NumPyro extra field → (ArviZ name, sign)
_EXTRA = {
    "diverging": ("diverging", 1),
    "accept_prob": ("acceptance_rate", 1),
    "num_steps": ("n_steps", 1),
    "adapt_state.step_size": ("step_size", 1),
    "energy": ("energy", 1),
    "potential_energy": ("lp", -1),
}


def _np(tree: dict) -> dict:
    return {k: np.asarray(v) for k, v in tree.items()}


def import_arviz() -> Any:
    """ArviZ, imported on first use (about 2 s), without its refactor announcement."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing", category=FutureWarning)
        import arviz

    return arviz


def _from_dict(posterior: dict, sample_stats: dict, coords=None, dims=None) -> Any:
    az = import_arviz()

    major = int(az.__version__.split(".")[0])
    if major >= 1:  # ArviZ 1.x: one mapping of groups, returns a DataTree
        return az.from_dict(
            {"posterior": posterior, "sample_stats": sample_stats}, coords=coords, dims=dims
        )
    return az.from_dict(posterior=posterior, sample_stats=sample_stats, coords=coords, dims=dims)


def _from_mcmc(mcmc: Any, energy: Energy | None) -> tuple[dict, dict]:
    samples = mcmc.get_samples(group_by_chain=True)
    sampler = mcmc.sampler
    has_model = getattr(sampler, "model", None) is not None
    if not has_model and mcmc.postprocess_fn is None:
        if energy is None:
            warnings.warn(
                "this MCMC was built from potential_fn without postprocess_fn: its draws "
                "are in the unconstrained space. Pass energy=E (or build MCMC with "
                "postprocess_fn=ebm.postprocess_fn(E)) to get constrained values",
                UserWarning,
                stacklevel=3,
            )
        else:
            samples = constrain(energy, samples)
    posterior = _np(samples)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    stats = {}
    for field, (name, sign) in _EXTRA.items():
        if field in extra:
            v = np.asarray(extra[field])
            stats[name] = -v if sign < 0 else v
    return posterior, stats


def to_inference_data(obj: Samples | Any, energy: Energy | None = None) -> Any:
    """ArviZ's data object from ``ebm.Samples`` or a NumPyro ``MCMC``.

    ``posterior`` holds the real variable names with (chain, draw) dimensions, in the
    constrained space; ``sample_stats`` uses ArviZ's names for each kernel's statistics
    (NUTS/HMC: ``diverging``, ``acceptance_rate``, ``n_steps``, ``step_size``,
    ``tree_depth``, ``energy``, and for NUTS ``reached_max_treedepth``; MALA:
    ``acceptance_rate``, ``step_size``, ...), ``lp`` (−potential) and ``model_energy``
    for every kernel, and for ``ebm.Samples`` ``term_energy`` (chain, draw, term): each
    top-level term's energy at every draw. For an ``MCMC`` built from
    ``potential_fn``, give ``energy=E`` (or build it with
    ``postprocess_fn=ebm.postprocess_fn(E)``) so the draws are constrained.

    Example:
        >>> import jax, composable_ebm as ebm
        >>> s = ebm.sample(ebm.Gaussian("x", 0.0, cov=1.0), jax.random.key(0),
        ...                num_warmup=100, num_samples=100, num_chains=2)
        >>> idata = ebm.to_inference_data(s)
        >>> idata.posterior["x"].dims
        ('chain', 'draw')
    """
    if isinstance(obj, Samples):
        posterior = _np(obj.draws)
        kernel = obj.state.kernel
        table = {**kernel.stats, **_COMMON}
        stats = {}
        for key, v in obj.stats.items():
            name, sign = table.get(key, (key, 1))
            v = np.asarray(v)
            stats[name] = -v if sign < 0 else v
        depth = getattr(kernel, "max_tree_depth", None)
        if obj.kernel == "nuts" and depth is not None and "tree_depth" in obj.stats:
            stats["reached_max_treedepth"] = np.asarray(obj.stats["tree_depth"]) >= depth
        coords = dims = None
        terms = obj.term_energies
        if terms:
            stats["term_energy"] = np.stack([np.asarray(v) for v in terms.values()], axis=-1)
            coords, dims = {"term": list(terms)}, {"term_energy": ["term"]}
        if "swap_accept_prob" in obj.stats:
            pairs = list(range(obj.stats["swap_accept_prob"].shape[-1]))
            coords = {**(coords or {}), "pair": pairs}
            dims = {**(dims or {}), "swap_acceptance_rate": ["pair"]}
        return _from_dict(posterior, stats, coords, dims)
    from numpyro.infer import MCMC

    if isinstance(obj, MCMC):
        return _from_dict(*_from_mcmc(obj, energy))
    raise TypeError(
        f"to_inference_data expects ebm.Samples or numpyro.infer.MCMC, got {type(obj).__name__}"
    )
