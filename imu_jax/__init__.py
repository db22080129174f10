"""imu-jax: influence-guided machine unlearning (IMU) in JAX, Flax and Optax."""

__version__ = "0.1.0"

__all__ = ["__version__"]
