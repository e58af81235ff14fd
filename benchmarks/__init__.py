"""Benchmarks against hand-written JAX and NumPyro: ``python -m benchmarks``."""
