"""`AdvRegModel`: adversarial regularization inside `model.fit`."""

import re

import keras
import numpy as np
import tensorflow as tf

from keras_advreg import checks, distribute
from keras_advreg.attacks import losses
from keras_advreg.inputs import checked_spec
from keras_advreg.objectives import CleanLoss, StepContext

# The key prefix of the carried perturbations (Free AT) among the model's saved variables.
_CARRIED = "carried_"

# Marks the in-graph assertion of `stop_on_nonfinite`, so `fit` can tell it from other errors.
_NON_FINITE = "keras_advreg non-finite step"


class NonFiniteLossError(FloatingPointError):
    """Training stopped at a step whose loss terms or gradients are NaN or infinite."""


@keras.saving.register_keras_serializable(package="keras_advreg")
class AdvRegModel(distribute.MultiWorkerFixMixin, keras.Model):
    """Trains any Keras classifier with an adversarial objective.

    `train_step` computes the adversarial points the objective needs (model in
    inference mode, outside the gradient tape), then the weighted sum of the
    objective's terms, then follows Keras's own step: loss scaling for mixed
    precision, `optimizer.apply`, compiled metrics. Each term's weight is a
    non-trainable variable in `term_weights` (callbacks assign to it), and
    `epsilon_scale` multiplies every attack's epsilon and step size. Logs the
    total `loss`, each weighted term under its name, the compiled metrics on
    clean inputs and `adv_accuracy` on the first attack's adversarial inputs.
    Custom terms are divided by the replica count under a `tf.distribute`
    strategy, as Keras divides the compiled loss.

    The base model must return logits. Calling the wrapper calls the base model;
    export `model.base_model`.

    Args:
        base_model: a Keras model (Sequential, functional or subclassed)
            mapping inputs in [0, 1] to logits.
        objective: an `Objective` or a list of them, usually from
            `keras_advreg.methods`; defaults to `methods.standard()`.
        seed: the seed of the attacks' random starts (drawn from NumPy's
            global generator when None); with the optimizer's iteration count
            it fixes every step's randomness, so resumed runs are reproducible.
        weight_perturbation: moves the weights before each training step's
            loss and restores them before the update, e.g.
            `weight_perturbation.AdversarialWeightPerturbation` (AWP); when
            None, the one `objective` names (`methods.madry_awp`, ...), if any.
        stop_on_nonfinite: when True (the default), a training step whose
            terms or gradients are NaN or infinite raises `NonFiniteLossError`
            naming the terms, before the optimizer updates the weights (a
            callback only sees the logs after the update). With a
            `LossScaleOptimizer` only the terms are checked: it skips steps
            with overflowing scaled gradients itself. Off under XLA
            (`jit_compile=True`), which cannot compile the check's message.
        perturb: None, or a `PerturbSpec` naming the inputs of a multi-input
            base model (a dict of named inputs or a list) that the attacks
            perturb, each in its own box and optionally under a mask; the
            other inputs pass through unchanged. The attacks then run on the
            packed perturbed features (`inputs.PackedModel`) under the joint
            norm over them, and the spec's boxes replace the attacks' own
            `clip_min`/`clip_max`. See docs/multi_input.md. When None, the
            one `objective` names (`methods.from_nsl_config` with NSL's
            feature names or `feature_mask`), if any.
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Example:

    >>> import keras, numpy as np, keras_advreg as kar
    >>> base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> model = kar.AdvRegModel(base, kar.methods.madry(epsilon=0.1, steps=2))
    >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> history = model.fit(np.random.rand(8, 4), np.arange(8) % 3, verbose=0)
    >>> sorted(history.history)
    ['adv_accuracy', 'adversarial_loss', 'loss']
    """

    def __init__(self, base_model, objective=None, seed=None, stop_on_nonfinite=True,
                 weight_perturbation=None, perturb=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(base_model, keras.Model):
            raise ValueError(f"`base_model` must be a keras.Model, got {type(base_model).__name__}.")
        if objective is None:
            objective = [CleanLoss()]
        self.base_model = base_model
        # Attack randomness is stateless: (seed, optimizer iteration) per step.
        self.seed = (int(np.random.randint(0, 2**31 - 1)) if seed is None
                     else checks.integer("seed", seed, minimum=0))
        self.stop_on_nonfinite = bool(stop_on_nonfinite)
        self.weight_perturbation = (weight_perturbation if weight_perturbation is not None
                                    else getattr(objective, "weight_perturbation", None))
        if self.weight_perturbation is not None and not all(
                callable(getattr(self.weight_perturbation, m, None)) for m in ("perturb", "restore")):
            raise ValueError(f"`weight_perturbation` must have `perturb` and `restore` methods, "
                             f"got {self.weight_perturbation!r}.")
        self.objectives = tuple(objective if isinstance(objective, (list, tuple)) else [objective])
        names = [o.name for o in self.objectives]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"`objective` must hold terms with distinct names, got {names}.")
        self.attacks = [o.attack for o in self.objectives if o.attack is not None]
        if perturb is not None:
            checked_spec(perturb)
        self.perturb = perturb if perturb is not None else getattr(objective, "perturb", None)
        perturb = self.perturb
        if perturb is not None:
            perturb.bind(base_model)
        # Each attack with the spec's boxes (in packed units), by the original's id.
        self.packed_attacks = ({} if perturb is None else
                               {id(a): perturb.attack_for(a) for a in self.attacks})
        # Terms whose perturbation lives from step to step (`FreeAdversarialLoss`).
        self._carrying = [o for o in self.objectives if callable(getattr(o, "create_state", None))]
        if self._carrying and perturb is not None:
            raise ValueError(f"{self._carrying[0].name!r} carries a perturbation of the whole "
                             f"input from step to step, which multi-input models "
                             f"(`perturb=...`) do not support; use madry or trades.")
        for term in self._carrying:
            term.create_state(self)
        self.term_weights = {
            o.name: self.add_weight(name=f"{o.name}_weight", shape=(), trainable=False,
                                    initializer=keras.initializers.Constant(o.weight))
            for o in self.objectives}
        self.epsilon_scale = self.add_weight(name="epsilon_scale", shape=(), trainable=False,
                                             initializer="ones")
        self.term_trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.adversarial_accuracy = (keras.metrics.Mean(name="adv_accuracy")
                                     if self.attacks else None)
        # The wrapper creates no weights lazily: it is built when its base is.
        self.built = base_model.built

    def call(self, inputs, training=None):
        return self.base_model(inputs, training=training)

    def compile(self, *args, jit_compile=False, **kwargs):
        """`keras.Model.compile`, with XLA off unless `jit_compile=True`.

        Keras's default ("auto") turns XLA on; on CPU it made a PGD-7 step 7x
        slower, and it fails under MirroredStrategy (TF 2.21). A `loss` is required.
        """
        super().compile(*args, jit_compile=jit_compile, **kwargs)
        if self._compile_loss is None:
            raise ValueError("AdvRegModel.compile needs a `loss`, e.g. "
                             "keras.losses.SparseCategoricalCrossentropy(from_logits=True).")

    def compile_from_config(self, config):
        # Keras skips (with a warning) recompiling a loaded model whose class
        # overrides `compile`; ours only adds a check, so recompile here.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def step_seed(self):
        """The stateless seed of the current step: (seed, optimizer iterations)."""
        optimizer = getattr(self, "optimizer", None)  # absent before compile
        iterations = optimizer.iterations if optimizer is not None else 0
        return tf.stack([tf.constant(self.seed, tf.int64), tf.cast(iterations, tf.int64)])

    def compiled_loss_value(self, y, logits, sample_weight=None):
        """The compiled loss at `logits`, undoing Keras's division by the replica count."""
        return self._compile_loss(y, logits, sample_weight) * distribute.replica_count()

    def set_term_weight(self, name, value):
        """Assigns the weight of the term `name` (a non-negative number)."""
        checks.choice("name", name, self.term_weights)
        self.term_weights[name].assign(checks.number(f"{name} weight", value))

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        points = self._carried_points(x)
        context = StepContext(self, x, y, sample_weight, training=True, points=points)
        perturbed = self._perturb_weights(context)
        with tf.GradientTape() as tape:
            tape.watch(list(points.values()))
            weighted, total = self._weighted_terms(context)
            loss = self.optimizer.scale_loss(total / distribute.replica_count())
        # One backward pass: the weight gradient and the carried points' input gradient.
        variables = self.trainable_variables
        gradients = tape.gradient(loss, [*variables, *points.values()])
        gradients, point_gradients = gradients[:len(variables)], gradients[len(variables):]
        gradients = self._restore_weights(perturbed, gradients)
        if self.stop_on_nonfinite and not self.jit_compile:  # XLA has no string ops
            gradients = self._checked_finite(weighted, total, gradients)
        metrics = self._update_metrics(context, weighted, total)
        self.optimizer.apply(gradients, variables)
        for term, gradient in zip(points, point_gradients):
            term.update(context.x, gradient, self.epsilon_scale)
        return metrics

    def _carried_points(self, x):
        """`{term: points}` of the terms that carry a perturbation across steps (Free AT)."""
        return {term: term.points(x) for term in self._carrying}

    def _perturb_weights(self, context):
        """Weight-perturbation hook (AWP): moves the weights before the step's loss.

        The ascent loss is the sum of the weighted terms at the step's
        adversarial points; returns what `_restore_weights` needs, or None.
        """
        if self.weight_perturbation is None:
            return None
        saved = self.weight_perturbation.perturb(
            self, lambda: tf.add_n(list(self._weighted_terms(context)[0].values())))
        context.forget_forward_passes()  # they ran at the unperturbed weights
        return saved

    def _restore_weights(self, saved, gradients):
        """`gradients` (taken at the perturbed weights), once the weights are restored."""
        if saved is None:
            return gradients
        # The non-finite check below must find the weights restored, even when it fails.
        with tf.control_dependencies(self.weight_perturbation.restore(self, saved)):
            return [None if g is None else tf.identity(g) for g in gradients]

    def _checked_finite(self, weighted, total, gradients):
        """`gradients`, after an assertion that the terms and gradients are finite."""
        names = list(weighted) + (["layer losses"] if self.losses else [])
        values = list(weighted.values()) + ([total] if self.losses else [])
        bad_terms = tf.logical_not(tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in values]))
        bad = [tf.reduce_any(bad_terms)]
        scaled = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        checked = [g for g in gradients if g is not None] if not scaled else []
        bad_gradient = (tf.logical_not(tf.reduce_all(
            tf.stack([tf.reduce_all(tf.math.is_finite(g)) for g in checked])))
            if checked else tf.constant(False))
        bad.append(bad_gradient)
        culprits = tf.strings.reduce_join(tf.boolean_mask(tf.constant(names), bad_terms),
                                          separator=", ")
        message = tf.strings.join([
            _NON_FINITE, " at optimizer step ", tf.strings.as_string(self.optimizer.iterations),
            ": terms [", culprits, "], gradient non-finite: ",
            tf.where(bad_gradient, "yes", "no")])
        check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(tf.stack(bad))), [message],
                                    summarize=1)
        with tf.control_dependencies([check]):
            return [None if g is None else tf.identity(g) for g in gradients]

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        # Evaluation does not move (or read) a carried perturbation: its terms run at delta = 0.
        context = StepContext(self, x, y, sample_weight, training=False,
                              points={term: x for term in self._carrying})
        weighted, total = self._weighted_terms(context)
        return self._update_metrics(context, weighted, total)

    def _weighted_terms(self, context):
        weighted = {o.name: tf.cast(self.term_weights[o.name], tf.float32) * o(context)
                    for o in self.objectives}
        total = tf.add_n(list(weighted.values()))
        if self.losses:  # regularizers of the base model's layers, once
            total += tf.add_n([tf.cast(loss, tf.float32) for loss in self.losses])
        return weighted, total

    def _update_metrics(self, context, weighted, total):
        batch_size = tf.shape(tf.nest.flatten(context.x)[0])[0]
        self._loss_tracker.update_state(total, sample_weight=batch_size)
        for name, value in weighted.items():
            self.term_trackers[name].update_state(value, sample_weight=batch_size)
        if self.attacks:
            correct = tf.logical_not(losses.misclassified(context.y, self._logits(context, self.attacks[0])))
            self.adversarial_accuracy.update_state(tf.cast(correct, tf.float32),
                                                   sample_weight=context.sample_weight)
        return self.compute_metrics(context.x, context.y, self._logits(context, "clean"),
                                    sample_weight=context.sample_weight)

    def _logits(self, context, point):
        """Logits at `point` from the step's forward passes, or an inference pass."""
        logits = context.computed_logits(point)
        if logits is None:
            logits = context.base_model(context.inputs(point), training=False)
        return logits

    def fit(self, x=None, y=None, **kwargs):
        """Runs `check_data`, then `keras.Model.fit`.

        Raises:
            NonFiniteLossError: at the first step with a NaN or infinite term or
                gradient (see `stop_on_nonfinite`); the weights are those before it.
        """
        self.check_data(x, y, kwargs.get("validation_data"))
        try:
            return super().fit(x, y, **kwargs)
        except tf.errors.InvalidArgumentError as error:
            found = re.search(_NON_FINITE + r" at optimizer step (\d+): terms \[([^\]]*)\], "
                              r"gradient non-finite: (yes|no)", error.message)
            if found is None:
                raise
            step, terms, gradient = found.groups()
            what = " and ".join(filter(None, [
                terms and f"the loss term(s) {terms}",
                gradient == "yes" and "the gradient of the total loss"]))
            raise NonFiniteLossError(
                f"training stopped at step {int(step) + 1}: {what} became NaN or infinite; "
                f"the weights are those before this step. Check the inputs for NaN, lower the "
                f"learning rate, or train in float32.") from None

    def evaluate(self, x=None, y=None, **kwargs):
        """Runs `check_data`, then `keras.Model.evaluate`."""
        self.check_data(x, y)
        return super().evaluate(x, y, **kwargs)

    def check_data(self, x, y=None, validation_data=None, num_classes=None):
        """Raises a clear `ValueError` for data that cannot be trained on as given.

        Empty or NaN or infinite inputs, inputs outside the attacks'
        `[clip_min, clip_max]` or of another shape than the base model's, labels
        that are not class indices in `[0, num_classes)`, a model with another
        number of logits than classes, an l2 attack radius beyond the box's
        diameter; warns when the base model returns probabilities instead of
        logits. Arrays are checked whole, a `tf.data.Dataset` through its first
        batch.

        Args:
            x: inputs, or a dataset of `(x, y)` batches.
            y: labels, or None with a dataset.
            validation_data: `(x, y)` or a dataset, or None.
            num_classes: the number of classes; None takes the largest label
                of the training arrays + 1.
        """
        if self.perturb is not None:
            for data in (x, validation_data[0] if isinstance(validation_data, (tuple, list))
                         else validation_data):
                checks.check_perturbed_data(self.perturb, data)
            return
        box = ((min(a.clip_min for a in self.attacks), max(a.clip_max for a in self.attacks))
               if self.attacks else None)
        if num_classes is not None:
            num_classes = checks.integer("num_classes", num_classes, minimum=2)
        common = {"box": box, "attacks": self.attacks, "num_classes": num_classes}
        checks.check_data(self.base_model, x, y, **common)
        if isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2:
            checks.check_data(self.base_model, validation_data[0], validation_data[1],
                              argument="validation_data", all_classes=False, **common)
        elif validation_data is not None:
            checks.check_data(self.base_model, validation_data, None,
                              argument="validation_data", all_classes=False, **common)

    def save_own_variables(self, store):
        """Keras's variables, then the perturbation each carrying term (Free AT) holds,
        so that a saved model or a resumed run continues with it."""
        super().save_own_variables(store)
        for term in self._carrying:
            store[_CARRIED + term.name] = term.delta.numpy()

    def load_own_variables(self, store):
        keys = list(store.keys())
        super().load_own_variables({k: store[k] for k in keys if not k.startswith(_CARRIED)})
        for term in self._carrying:
            if _CARRIED + term.name in keys:  # files saved before it was stored have none
                term.delta.assign(np.asarray(store[_CARRIED + term.name]))

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "seed": self.seed,
                  "stop_on_nonfinite": self.stop_on_nonfinite,
                  "base_model": keras.saving.serialize_keras_object(self.base_model),
                  "objective": [keras.saving.serialize_keras_object(o) for o in self.objectives]}
        if self.weight_perturbation is not None:
            config["weight_perturbation"] = keras.saving.serialize_keras_object(
                self.weight_perturbation)
        if self.perturb is not None:
            config["perturb"] = keras.saving.serialize_keras_object(self.perturb)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        base_model = keras.saving.deserialize_keras_object(config.pop("base_model"))
        objective = [keras.saving.deserialize_keras_object(o) for o in config.pop("objective")]
        if config.get("weight_perturbation") is not None:
            config["weight_perturbation"] = keras.saving.deserialize_keras_object(
                config["weight_perturbation"])
        if config.get("perturb") is not None:
            config["perturb"] = keras.saving.deserialize_keras_object(config["perturb"])
        return cls(base_model, objective, **config)
