"""Regularity statistics and the lower bounds of Finlay & Oberman (arXiv 1905.11468).

Gradient norms of the loss, the Hessian spectral norm by power iteration on
Hessian-vector products, the L-bound and C-bound of their Proposition 2.1 per
image (Carlini-Wagner margin loss, l0 = 0), and the adversarial improvement ratio.
"""

import math

import numpy as np
import tensorflow as tf

from keras_advreg.attacks import losses
from keras_advreg.attacks.base import logits_of

# The dual of each threat norm: an l_p ball's first-order loss change is
# bounded by ||grad||_dual * epsilon.
_DUAL = {"linf": lambda g: np.sum(np.abs(g), axis=1), "l2": lambda g: np.linalg.norm(g, axis=1),
         "l1": lambda g: np.max(np.abs(g), axis=1)}
_ZERO = tf.UnconnectedGradients.ZERO
_LOSSES = {"cross_entropy": losses.cross_entropy, "cw_margin": losses.cw_margin}


def smooth_cw_margin(labels, logits):
    """CW margin with a soft maximum, logsumexp_{j != y} z_j - z_y (for curvature)."""
    labels = losses.sparse_labels(labels, logits.shape[-1])
    true = tf.one_hot(labels, logits.shape[-1]) > 0
    others = tf.reduce_logsumexp(tf.where(true, -1e9, logits), axis=-1)
    return others - tf.gather(logits, labels, axis=1, batch_dims=1)


def gradient_fn(model, loss_name):
    """`(x, y) -> (per-example loss, raw float32 input gradient)`; non-finite entries kept."""
    loss_fn = _LOSSES[loss_name]

    def fn(x, y):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            loss = loss_fn(y, logits_of(model, x))
            total = tf.reduce_sum(loss)
        return loss, tape.gradient(total, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return fn


def hessian_norm_fn(model, iterations=20):
    """`(x, y) -> per-example spectral norm of the Hessian of the smooth CW loss`.

    Power iteration on Hessian-vector products (double backprop); examples are
    independent because the model runs in inference mode.
    """
    def hvp(x, y, v):
        with tf.GradientTape(watch_accessed_variables=False) as outer:
            outer.watch(x)
            with tf.GradientTape(watch_accessed_variables=False) as inner:
                inner.watch(x)
                loss = tf.reduce_sum(smooth_cw_margin(y, logits_of(model, x)))
            grad = inner.gradient(loss, x, unconnected_gradients=_ZERO)
            directional = tf.reduce_sum(grad * v)
        return outer.gradient(directional, x, unconnected_gradients=_ZERO)

    def normalize(v):
        flat = tf.reshape(v, [tf.shape(v)[0], -1])
        size = tf.maximum(tf.norm(flat, axis=1), 1e-12)
        return v / tf.reshape(size, [-1] + [1] * (v.shape.rank - 1)), size

    def fn(x, y):
        v, _ = normalize(tf.random.normal(tf.shape(x)))

        def body(i, v, _):
            v, size = normalize(hvp(x, y, v))
            return i + 1, v, size
        _, _, size = tf.while_loop(lambda i, *_: i < iterations, body,
                                   (tf.constant(0), v, tf.zeros(tf.shape(x)[:1])))
        return size
    return fn


def gradient_statistics(runner, x, y, norm):
    """Mean and max input-gradient norms (l2 and the dual norm) for CE and CW losses.

    Returns:
        `(stats, cw_loss, cw_gradient)`: the JSON-ready statistics, and the
        per-example CW loss and flat gradient for the bounds.
    """
    stats, cw = {}, None
    for name in _LOSSES:
        fn = runner.traced(("gradient", name), gradient_fn(runner.model, name))
        loss, grad = runner.batched(fn, x, y, counted=True)
        flat = grad.reshape(len(x), -1).astype(np.float64)
        finite = np.all(np.isfinite(flat), axis=1)
        clean = np.where(np.isfinite(flat), flat, 0.0)
        l2, dual = np.linalg.norm(clean, axis=1), _DUAL[norm](clean)
        stats[name] = {"mean_l2": float(l2.mean()), "max_l2": float(l2.max()),
                       "mean_dual": float(dual.mean()), "max_dual": float(dual.max()),
                       "zero_fraction": float(np.mean(np.all(clean == 0, axis=1))),
                       "nonfinite_fraction": float(np.mean(~finite))}
        if name == "cw_margin":
            cw = (loss, clean)
    stats["dual_norm"] = {"linf": "l1", "l2": "l2", "l1": "linf"}[norm]
    return stats, cw[0], cw[1]


def hessian_spectral_norm(runner, x, y, iterations=20):
    """Per-example Hessian spectral norms of the smooth CW loss."""
    fn = runner.traced(("hessian", iterations), hessian_norm_fn(runner.model, iterations))
    return runner.batched(fn, x, y, counted=True)


def lower_bounds(cw_loss, cw_gradient, norm, curvature=None):
    """Per-image L-bound (and C-bound) of Proposition 2.1 in the threat norm.

    L is estimated as the largest dual gradient norm over the images (as the
    paper does); the C-bound is an l2 bound, converted for linf through
    ||v||_inf >= ||v||_2 / sqrt(d), and valid as it is for l1 (||v||_1 >= ||v||_2).

    Args:
        cw_loss: per-image CW margin max_{j != y} z_j - z_y (negative when correct).
        cw_gradient: flat per-image gradients of the CW margin.
        norm: the threat norm.
        curvature: C, the largest Hessian spectral norm, or None.

    Returns:
        A dict with `L`, `l_bound` and, with a curvature, `C` and `c_bound`.
    """
    gap = np.maximum(-cw_loss, 0.0)
    lipschitz = float(_DUAL[norm](cw_gradient).max())
    result = {"L": lipschitz, "l_bound": gap / max(lipschitz, 1e-12)}
    if curvature is not None and curvature > 0:
        g2 = np.linalg.norm(cw_gradient, axis=1)
        c_bound = (-g2 + np.sqrt(g2 ** 2 + 2 * curvature * gap)) / curvature
        dims = cw_gradient.shape[1]
        result.update(C=float(curvature),
                      c_bound=c_bound / {"linf": math.sqrt(dims), "l2": 1.0, "l1": 1.0}[norm])
    return result


def bound_held(bound, epsilon, broken_at_epsilon, minimal_distance):
    """Per image: no attack beat the bound (broken within epsilon < bound, or a
    minimal-distance attack found a point closer than the bound)."""
    beaten = np.logical_or(np.logical_and(broken_at_epsilon, bound > epsilon),
                           minimal_distance < bound)
    return ~beaten


def summarize_bounds(bounds, epsilon, broken, minimal_distance, correct):
    """JSON-ready bounds over the correctly classified images."""
    summary = {"loss": "cw_margin", "L": bounds["L"], "n_images": int(correct.sum())}
    for key in ("l_bound", "c_bound"):
        if key not in bounds or not correct.any():
            continue
        values = bounds[key][correct]
        held = bound_held(values, epsilon, broken[correct], minimal_distance[correct])
        summary[key] = {"mean": float(values.mean()), "min": float(values.min()),
                        "max": float(values.max()), "fraction_held": float(held.mean()),
                        "per_image": [float(v) for v in values]}
    if "C" in bounds:
        summary["C"] = bounds["C"]
    return summary


def improvement_ratio(clean_accuracy, mean_distance, baseline):
    """Adversarial improvement ratio R_mu / R_e of Finlay & Oberman (sec. 4).

    R_e = (e - e0) / e0 is the relative increase of test error over the
    baseline and R_mu = (mu - mu0) / mu0 the relative increase of mean
    minimal adversarial distance. Returns None when undefined (no baseline
    distance or error, or no loss of test accuracy: then the ratio is
    unbounded and `relative_error_increase` says so).
    """
    e, e0 = 1.0 - clean_accuracy, 1.0 - baseline["clean_accuracy"]
    mu, mu0 = mean_distance, baseline.get("mean_minimal_distance")
    if mu0 is None or mu is None or mu0 <= 0 or e0 <= 0:
        return {"ratio": None, "relative_error_increase": None, "relative_distance_increase": None}
    r_e, r_mu = (e - e0) / e0, (mu - mu0) / mu0
    return {"ratio": r_mu / r_e if r_e > 0 else None,
            "relative_error_increase": r_e, "relative_distance_increase": r_mu}
