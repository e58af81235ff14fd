"""Product of two Gaussian experts, sampled with NUTS, checked against the closed form.

Two experts over the same variable multiply: precisions add and the mean is the
precision-weighted average. Run: ``python examples/product_of_experts.py``.
"""

import jax
import jax.numpy as jnp

import composable_ebm as ebm


def main(quick: bool = False) -> dict:
    d = 3
    a = ebm.Gaussian("x", jnp.zeros(d), cov=1.0).named("expert A")
    b = ebm.Gaussian("x", jnp.full(d, 2.0), cov=0.5).named("expert B")
    n = 300 if quick else 1000
    s = ebm.sample(a + b, jax.random.key(0), num_warmup=n, num_samples=n)
    # closed form: precision 1 + 2 = 3, mean (1·0 + 2·2) / 3
    want_mean, want_var = 4.0 / 3.0, 1.0 / 3.0
    x = s.draws["x"]
    print(s.summary())
    print(
        f"mean {float(x.mean()):.3f} (closed form {want_mean:.3f}), "
        f"var {float(x.var()):.3f} (closed form {want_var:.3f})"
    )
    return {
        "mean": x.mean((0, 1)),
        "var": x.var((0, 1)),
        "want_mean": want_mean,
        "want_var": want_var,
        "samples": s,
    }


if __name__ == "__main__":
    main()
