"""colorjax: a JAX/Flax model zoo for automatic image colorization."""

__version__ = "0.1.0"
