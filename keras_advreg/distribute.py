"""Helpers for `tf.distribute` strategies."""

import tensorflow as tf


def replica_count():
    """The number of replicas of the current strategy (1 without one).

    Keras divides the compiled loss by this count before replicas sum their
    gradients; custom terms must be divided by it too.
    """
    return tf.distribute.get_strategy().num_replicas_in_sync
