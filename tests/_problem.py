"""A small random classification problem shared by the core tests (JAX and float64 numpy views)."""

import jax
import jax.numpy as jnp
import numpy as np

NUM_EXAMPLES, NUM_INPUTS, NUM_HIDDEN, NUM_CLASSES = 37, 6, 8, 4


def make_problem(seed=0, n=NUM_EXAMPLES):
    rng = np.random.default_rng(seed)
    params = {
        "body": {"kernel": rng.normal(0, 0.7, (NUM_INPUTS, NUM_HIDDEN)),
                 "bias": rng.normal(0, 0.1, NUM_HIDDEN)},
        "head": {"kernel": rng.normal(0, 0.7, (NUM_HIDDEN, NUM_CLASSES)),
                 "bias": rng.normal(0, 0.1, NUM_CLASSES)},
    }
    xs = rng.normal(0, 1, (n, NUM_INPUTS))
    ys = rng.integers(0, NUM_CLASSES, n)
    return params, xs, ys


def to_jax(params):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)


def features(body, x):
    return jnp.tanh(x @ body["kernel"] + body["bias"])


def full_loss(params, example):
    """Cross-entropy of one example for the whole MLP."""
    logits = features(params["body"], example["x"]) @ params["head"]["kernel"] + params["head"]["bias"]
    return -jax.nn.log_softmax(logits)[example["y"]]


def head_loss_fn(body):
    """Loss of one example as a function of the head only, closing over the body."""
    return lambda head, example: full_loss({"body": body, "head": head}, example)


def batch(xs, ys):
    return {"x": jnp.asarray(xs, jnp.float32), "y": jnp.asarray(ys, jnp.int32)}
