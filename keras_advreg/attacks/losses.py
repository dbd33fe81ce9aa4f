"""Per-example losses from logits, computed in float32.

Attacks maximize these; objectives and evaluation reuse them. Every function
takes float logits of shape (batch, classes) and returns shape (batch,).
Labels may be sparse (batch,) / (batch, 1) integers or one-hot (batch, classes).
"""

import tensorflow as tf


def sparse_labels(labels, num_classes):
    """Returns int32 class indices of shape (batch,) from sparse or one-hot labels."""
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 2 and labels.shape[-1] == num_classes and num_classes > 1:
        return tf.argmax(labels, axis=-1, output_type=tf.int32)
    return tf.cast(tf.reshape(labels, [-1]), tf.int32)


def cross_entropy(labels, logits):
    """Per-example softmax cross-entropy -log p_y, from logits."""
    logits = tf.cast(logits, tf.float32)
    labels = sparse_labels(labels, logits.shape[-1])
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def cw_margin(labels, logits):
    """Carlini-Wagner margin max_{j != y} z_j - z_y: positive iff misclassified."""
    logits = tf.cast(logits, tf.float32)
    labels = sparse_labels(labels, logits.shape[-1])
    true_mask = tf.one_hot(labels, logits.shape[-1]) > 0
    true_logit = tf.reduce_sum(tf.where(true_mask, logits, 0.0), axis=-1)
    other_logit = tf.reduce_max(tf.where(true_mask, -tf.float32.max, logits), axis=-1)
    return other_logit - true_logit


def kl_divergence(reference_logits, logits):
    """KL(p_ref || p) = sum_k p_ref,k (log p_ref,k - log p_k), in log space.

    Args:
        reference_logits: logits of the reference (clean) distribution p_ref.
        logits: logits of the compared (adversarial) distribution p.

    Returns:
        Per-example KL divergence, shape (batch,).
    """
    reference_log_p = tf.nn.log_softmax(tf.cast(reference_logits, tf.float32))
    log_p = tf.nn.log_softmax(tf.cast(logits, tf.float32))
    return tf.reduce_sum(tf.exp(reference_log_p) * (reference_log_p - log_p), axis=-1)


def misclassified(labels, logits):
    """Boolean (batch,): the argmax of `logits` differs from the label."""
    labels = sparse_labels(labels, logits.shape[-1])
    return tf.not_equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels)


def _sorted_logit(sorted_logits, rank):
    """The `rank`-th largest logit (0-based), clamped to the last class."""
    rank = min(rank, sorted_logits.shape[-1] - 1)
    return sorted_logits[:, rank]


def dlr(labels, logits):
    """Difference of logits ratio (Croce & Hein 2020, arXiv 2003.01690, eq. 6).

    DLR = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3), with z_pi the logits
    sorted in decreasing order. It is invariant to shifting and rescaling the
    logits, so a saturated softmax cannot hide the gradient. Positive iff
    misclassified. Needs at least 3 classes (fewer: the smallest logit is used).
    """
    logits = tf.cast(logits, tf.float32)
    labels = sparse_labels(labels, logits.shape[-1])
    ranked = tf.sort(logits, axis=-1, direction="DESCENDING")
    true_logit = tf.gather(logits, labels, axis=1, batch_dims=1)
    top_is_true = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels)
    other = tf.where(top_is_true, _sorted_logit(ranked, 1), ranked[:, 0])
    scale = ranked[:, 0] - _sorted_logit(ranked, 2) + 1e-12
    return -(true_logit - other) / scale


def targeted_dlr(labels, logits, targets):
    """Targeted DLR (Croce & Hein 2020): -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2).

    Maximizing it raises the target logit z_t over the true logit z_y. Needs at
    least 4 classes (fewer: the smallest logit is used).

    Args:
        labels: the true classes.
        logits: float logits (batch, classes).
        targets: the target classes, sparse (batch,).
    """
    logits = tf.cast(logits, tf.float32)
    labels = sparse_labels(labels, logits.shape[-1])
    targets = sparse_labels(targets, logits.shape[-1])
    ranked = tf.sort(logits, axis=-1, direction="DESCENDING")
    true_logit = tf.gather(logits, labels, axis=1, batch_dims=1)
    target_logit = tf.gather(logits, targets, axis=1, batch_dims=1)
    scale = ranked[:, 0] - 0.5 * (_sorted_logit(ranked, 2) + _sorted_logit(ranked, 3)) + 1e-12
    return -(true_logit - target_logit) / scale
