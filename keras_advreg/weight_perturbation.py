"""Adversarial weight perturbation (AWP): each step's gradient taken at adversarially moved weights."""

import keras
import tensorflow as tf

from keras_advreg import checks, distribute


@keras.saving.register_keras_serializable(package="keras_advreg")
class AdversarialWeightPerturbation:
    """Adversarial Weight Perturbation (Wu, Xia & Wang 2020, arXiv 2004.05884).

    AWP minimizes the training loss at the worst weights near w, which
    flattens the weight loss landscape. Each step, after the adversarial
    points are computed at w, every weight matrix w_l (each trainable variable
    of rank >= 2: dense and convolution kernels, embeddings) takes one
    normalized ascent step on the step's own loss, relative to its norm:

        v_l = gamma * ||w_l|| * g_l / ||g_l||,   g_l = grad_{w_l} loss(w),

    then the step's gradient is taken at w + v, the weights are restored to w
    (the saved copy is assigned back, so exactly) and the optimizer applies
    that gradient to w. As in the authors' code (csdongxian/AWP,
    `diff_in_weights`): biases and normalization scales and offsets (rank
    <= 1) are not perturbed, the norms are per variable, one ascent step, the
    ascent loss is the training objective without the layers' regularizers
    (their proxy optimizer has no weight decay), and its forward passes run
    in training mode (batch statistics). The moving statistics and other
    state that ascent pass updates (BatchNormalization, dropout seeds) are
    restored, so they are updated once per step, by the pass at w + v (the
    authors run the ascent on a throwaway copy of the model). Their code adds
    1e-20 to ||g_l||; here g_l = 0 gives v_l = 0.

    Under a `tf.distribute` strategy the ascent gradient is all-reduced (the
    gradient of the global batch's loss, as on one device), so every replica
    computes the same v and writes the same values into its copy of the
    weights. Under mixed precision the ascent loss is scaled like the step's
    loss and only each g_l's direction is used, so the scale cancels; a
    non-finite ascent gradient (a loss-scale overflow) skips the perturbation
    of that step (v = 0).

    Args:
        gamma: the size of the perturbation relative to each weight matrix's
            norm (>= 0; 0 trains like the method without AWP). The paper uses
            5e-3; the authors' AT-AWP script defaults to 1e-2.

    Example:

    >>> import keras, numpy as np, keras_advreg as kar
    >>> base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> model = kar.AdvRegModel(base, kar.methods.madry(epsilon=0.1, steps=2),
    ...                         weight_perturbation=AdversarialWeightPerturbation(gamma=5e-3))
    >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> history = model.fit(np.random.rand(8, 4), np.arange(8) % 3, verbose=0)
    """

    def __init__(self, gamma=5e-3):
        self.gamma = checks.number("gamma", gamma)

    def perturb(self, model, loss_fn):
        """Moves the weight matrices of `model.base_model` from w to w + v.

        Args:
            model: the `AdvRegModel`; its optimizer scales the ascent loss.
            loss_fn: returns this replica's training loss at the current
                weights (a scalar, its forward passes in training mode);
                called once, under a gradient tape.

        Returns:
            The saved weights, for `restore`.
        """
        base = model.base_model
        weights = [w for w in base.trainable_variables if len(w.shape) > 1]
        state = [tf.identity(v) for v in base.non_trainable_variables]
        saved = [tf.identity(w) for w in weights]
        with tf.GradientTape() as tape:
            loss = model.optimizer.scale_loss(loss_fn() / distribute.replica_count())
        gradients = tape.gradient(loss, weights)
        for variable, value in zip(base.non_trainable_variables, state):
            variable.assign(value)  # the ascent pass must not update the moving statistics
        pairs = [(w, g) for w, g in zip(weights, gradients) if g is not None]
        if not pairs:
            return saved
        # The global batch's gradient on every replica: the same v everywhere.
        gradients = tf.distribute.get_replica_context().all_reduce(
            "sum", [tf.cast(g, tf.float32) for _, g in pairs])
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
        for (w, _), g in zip(pairs, gradients):
            size = self.gamma * tf.norm(tf.cast(w, tf.float32))
            v = tf.where(finite, tf.math.divide_no_nan(size, tf.norm(g)) * g, tf.zeros_like(g))
            w.assign_add(tf.cast(v, w.dtype))
        return saved

    def restore(self, model, saved):
        """Assigns the saved weights back; returns the values read after it.

        Args:
            model: the `AdvRegModel` given to `perturb`.
            saved: what `perturb` returned.

        Returns:
            The restored weights, read after the assignment (ops that must
            see w, not w + v, can depend on them).
        """
        weights = [w for w in model.base_model.trainable_variables if len(w.shape) > 1]
        restored = []
        for w, value in zip(weights, saved):
            w.assign(value)
            restored.append(tf.identity(w))
        return restored

    def get_config(self):
        return {"gamma": self.gamma}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}(gamma={self.gamma!r})"
