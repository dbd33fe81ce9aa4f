"""Arrays to batched `tf.data` pipelines: evaluation batches and resumable training epochs."""

import numpy as np

from keras_advreg.data.augmentation import _get_augmentation


def make_dataset(x, y, batch_size, *, shuffle=False, seed=None,
                 drop_remainder=False, augment=None, cache=True,
                 strategy=None):
    """Wraps arrays in a batched, prefetched `tf.data.Dataset` of `(x, y)`.

    The pipeline is: slices of `(x, y)` -> `cache()` -> `shuffle` -> `batch`
    -> augmentation of each whole batch (`num_parallel_calls=AUTOTUNE`) ->
    `prefetch(AUTOTUNE)`. The cache sits before the augmentation, so every
    epoch draws fresh crops and flips from the cached originals.

    Augmentations run on whole batches with stateless random ops: one
    vectorized op per batch was about 2x faster than a per-example `map`
    (0.43-0.49 s against 0.87-1.31 s per 10,000 32x32x3 images, batch
    128, on 2 shared CPU cores). Given a `seed`, the shuffled order and
    every augmented batch are reproducible (a new dataset built with the
    same arguments yields the same epochs), while each epoch still differs
    from the last. The output does not depend on how many batches tf.data
    processes in parallel.

    Under a `tf.distribute` strategy with more than one replica,
    `batch_size` is the PER-REPLICA batch size: the dataset yields global
    batches of `batch_size * strategy.num_replicas_in_sync` examples, and
    `model.fit` splits each one across the replicas (there is no need to
    call `strategy.experimental_distribute_dataset`). Without a strategy
    (or with one replica), `batch_size` is the batch size. Build the model
    under `strategy.scope()` and pass this dataset to `fit` as usual.

    Args:
        x: Array of inputs, first axis the examples. Augmentation needs
            images `(N, H, W, C)` with values in `[0, 1]`.
        y: Array of labels with the same first dimension as `x`.
        batch_size: Positive integer, examples per batch (per replica under
            a multi-replica `strategy`).
        shuffle: Whether to shuffle the whole array (reshuffled every
            epoch).
        seed: Optional integer seed for the shuffle and the augmentation.
        drop_remainder: Whether to drop the last, smaller batch.
        augment: A key of `AUGMENTATIONS` (`None`, `"crop_flip"`,
            `"crop"`), or a callable `fn(images, seed) -> images` taking a
            batch and a stateless seed (an int64 tensor of shape `[2]`).
            `default_augmentation(name)` gives the usual choice for a
            dataset. Defaults to `None` (no augmentation). Apply it to
            training data only.
        cache: Whether to `cache()` the examples in memory before shuffling
            and augmentation.
        strategy: Optional `tf.distribute.Strategy`; see above.

    Returns:
        A `tf.data.Dataset` yielding `(x_batch, y_batch)` tuples.

    Raises:
        ValueError: If `batch_size` is not a positive integer, `x` and `y`
            differ in length, `augment` is unknown, or augmentation is asked
            for inputs that are not `(N, H, W, C)` images.

    Example:

    >>> from keras_advreg.data import load_dataset
    >>> ds = load_dataset("digits")
    >>> train = make_dataset(ds.x_train, ds.y_train, 128, shuffle=True,
    ...                      seed=0)
    >>> xb, yb = next(iter(train))
    >>> tuple(xb.shape), tuple(yb.shape)
    ((128, 8, 8, 1), (128,))

    CIFAR-style training data, 128 examples per replica:

    >>> import numpy as np, tensorflow as tf
    >>> x = np.random.rand(512, 32, 32, 3).astype("float32")
    >>> y = np.zeros(512, "int64")
    >>> strategy = tf.distribute.get_strategy()  # e.g. MirroredStrategy()
    >>> train = make_dataset(x, y, 128, shuffle=True, seed=0,
    ...                      augment="crop_flip", strategy=strategy)
    >>> tuple(next(iter(train))[0].shape)  # 128 x replicas
    (128, 32, 32, 3)
    """
    import tensorflow as tf

    if (isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1):
        raise ValueError(
            f"Argument `batch_size` must be a positive integer, got "
            f"{batch_size!r}.")
    if len(x) != len(y):
        raise ValueError(
            f"`x` and `y` must have the same number of examples, got "
            f"{len(x)} and {len(y)}.")
    augment_fn = _get_augmentation(augment)
    if augment_fn is not None and np.ndim(x) != 4:
        raise ValueError(
            f"Argument `augment={augment!r}` needs images `x` of shape "
            f"(N, H, W, C), got shape {np.shape(x)}.")
    replicas = 1 if strategy is None else int(strategy.num_replicas_in_sync)
    global_batch_size = int(batch_size) * replicas

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(global_batch_size, drop_remainder=drop_remainder)
    if augment_fn is not None:
        # One stateless seed pair per batch, from a seeded stream that is
        # redrawn every epoch: reproducible, yet new crops each epoch, and
        # independent of the map's parallelism.
        seeds = tf.data.Dataset.random(
            seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda xy, s: (augment_fn(xy[0], s), xy[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def epoch_batches(x, y, batch_size, seed, first_epoch, epochs, augment=None):
    """A dataset of the batches of epochs `first_epoch .. epochs-1`, in order.

    Epoch e is a permutation of the data drawn from the stateless seed
    (seed, e), cut into batches (the last one may be smaller); batch i of
    epoch e is augmented with the stateless seed derived from (seed, e, i).

    Args:
        x: the inputs (an array).
        y: the labels (an array).
        batch_size: the batch size.
        seed: an int.
        first_epoch: the first epoch to produce.
        epochs: the number of epochs of the whole run.
        augment: None, or a batch augmentation `fn(images, seed)` (see
            `keras_advreg.data.AUGMENTATIONS`).

    Returns:
        A `tf.data.Dataset` of `(x, y)` batches.
    """
    import tensorflow as tf

    x = tf.constant(x)
    y = tf.constant(y)
    n = int(x.shape[0])

    def one_epoch(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n), tf.stack([tf.constant(seed, tf.int64), epoch]))
        batches = (tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
                   .map(lambda index: (tf.gather(x, index), tf.gather(y, index))))
        if augment is None:
            return batches
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        return batches.enumerate().map(
            lambda i, batch: (augment(batch[0], tf.random.experimental.stateless_fold_in(
                epoch_seed, i)), batch[1]), num_parallel_calls=tf.data.AUTOTUNE)

    return (tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)
            .prefetch(tf.data.AUTOTUNE))
