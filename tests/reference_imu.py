"""A float64 numpy IMU that handles one example at a time, written from spec §1–3 only.

The model is a one-hidden-layer tanh MLP with a dense softmax head, so every per-example gradient
is derived by hand (no autodiff), and nothing is shared with the library under test.
"""

import math

import numpy as np


def forward(params, x):
    hidden = np.tanh(x @ params["body"]["kernel"] + params["body"]["bias"])
    logits = hidden @ params["head"]["kernel"] + params["head"]["bias"]
    return hidden, logits


def softmax(z):
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


def example_loss(params, x, y):
    _, logits = forward(params, x)
    return -math.log(softmax(logits)[y])


def example_grad(params, x, y, *, head_only):
    """Gradient of one example's cross-entropy, by hand; a flat float64 vector."""
    hidden, logits = forward(params, x)
    error = softmax(logits)
    error[y] -= 1.0
    head = [np.outer(hidden, error).ravel(), error]
    if head_only:
        return np.concatenate(head)
    d_pre = (params["head"]["kernel"] @ error) * (1.0 - hidden**2)
    body = [np.outer(x, d_pre).ravel(), d_pre]
    return np.concatenate(body + head)


def influence(params, xs, ys, *, head_only, damping=0.01):
    """Spec §1, one example at a time: F = mean g² + λ, ḡ = mean g, I_i = −(g_i / F) · ḡ."""
    n = len(xs)
    total = total_sq = 0.0
    for x, y in zip(xs, ys):
        g = example_grad(params, x, y, head_only=head_only)
        total = total + g
        total_sq = total_sq + g * g
    mean, fisher = total / n, total_sq / n + damping
    return np.array([
        -np.dot(example_grad(params, x, y, head_only=head_only) / fisher, mean)
        for x, y in zip(xs, ys)
    ])


def weights(scores, *, top_fraction, clip_quantile=0.93):
    """Spec §2: keep negatives by |I| descending, the first max(1, floor(n_neg·f)); sqrt; clip."""
    negative = [i for i in range(len(scores)) if scores[i] < 0]
    if not negative:
        return np.arange(len(scores)), np.ones(len(scores))
    negative.sort(key=lambda i: -abs(scores[i]))  # Python's sort is stable: ties keep index order
    keep = negative[:max(1, math.floor(len(negative) * top_fraction))]
    w = np.sqrt(np.abs(np.asarray([scores[i] for i in keep])))
    if len(keep) > 1:
        w = np.minimum(w, np.quantile(w, clip_quantile))
    return np.asarray(keep), w


def head_vector(params):
    return np.concatenate([params["head"]["kernel"].ravel(), params["head"]["bias"]])


def set_head(params, vector):
    d, c = params["head"]["kernel"].shape
    new = {"body": dict(params["body"]), "head": {}}
    new["head"]["kernel"] = vector[:d * c].reshape(d, c)
    new["head"]["bias"] = vector[d * c:]
    return new


def sgd_steps(params, xs, ys, batches, *, lr, alpha, momentum, weight_decay):
    """PyTorch SGD on the head: g = ∇(−Σwℓ/Σw) + α·sign(θ) + wd·θ; buf = μ·buf + g; θ −= lr·buf.

    ``batches`` is a list of (indices, weights); the gradient is recomputed at each step's θ.
    """
    buf = None
    for indices, w in batches:
        theta = head_vector(params)
        grad = -sum(wi * example_grad(params, xs[i], ys[i], head_only=True)
                    for i, wi in zip(indices, w)) / np.sum(w)
        grad = grad + alpha * np.sign(theta) + weight_decay * theta
        buf = grad if buf is None else momentum * buf + grad
        params = set_head(params, theta - lr * buf)
    return params
