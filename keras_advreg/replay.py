"""Minibatch replay for Free adversarial training: each batch m times in a row."""

from keras_advreg import checks


class FreeReplay:
    """Repeats each batch of a `tf.data.Dataset` `replays` times in a row.

    What Free adversarial training (`methods.free_at`, Shafahi et al. 2019)
    trains on: m consecutive optimizer steps on every minibatch, the
    perturbation carried from one to the next. A pass over the replayed
    dataset therefore costs m plain epochs; with `steps_per_epoch` set to the
    batches of one plain epoch, each Keras epoch costs one plain epoch.

    Args:
        replays: m, the number of consecutive copies of each batch (an int >= 1).

    Example:

    >>> import tensorflow as tf
    >>> batches = tf.data.Dataset.range(3).batch(2)
    >>> [b.numpy().tolist() for b in FreeReplay(2)(batches)]
    [[0, 1], [0, 1], [2], [2]]
    """

    def __init__(self, replays):
        self.replays = checks.integer("replays", replays)

    def __call__(self, dataset):
        """The dataset with each element repeated `replays` times in a row."""
        import tensorflow as tf

        if self.replays == 1:
            return dataset
        return dataset.flat_map(
            lambda *batch: tf.data.Dataset.from_tensors(batch if len(batch) > 1 else batch[0])
            .repeat(self.replays))

    def __repr__(self):
        return f"{type(self).__name__}(replays={self.replays!r})"


def replays_of(objective):
    """m of an objective (a list of terms): the largest term `replays`, 1 without one."""
    return max([getattr(term, "replays", 1) for term in objective] or [1])
