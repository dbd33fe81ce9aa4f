"""The `Objective` contract and the per-step context objectives read from."""

import collections

import keras
import tensorflow as tf

from keras_advreg import backend, checks
from keras_advreg.attacks import losses
from keras_advreg.attacks.base import ATTACK_LOSS_SCALE
from keras_advreg.inputs import PackedModel

_Forward = collections.namedtuple("_Forward", "inputs logits cross_entropy tape scaled_loss")


def register(cls):
    """Registers an objective class for `.keras` serialization."""
    return keras.saving.register_keras_serializable(package="keras_advreg")(cls)


class Objective:
    """One unweighted term of a training objective.

    `AdvRegModel` multiplies the value of each term by its weight (a
    non-trainable variable named after the term, so callbacks can change it)
    and sums the products. A term that needs adversarial points names its
    `attack`; the model computes those points before it opens the gradient
    tape, so the attack is never recorded.

    Args:
        name: the term's name: its key in the logs and in `model.term_weights`.
        weight: the initial multiplier of the term (lambda, beta, ...).
    """

    attack = None

    def __init__(self, name, weight=1.0):
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"`name` must be a Python identifier, got {name!r}.")
        self.name = name
        self.weight = checks.number("weight", weight)

    def __call__(self, context):
        """Returns the term's scalar value (a batch mean) for one step.

        Args:
            context: the `StepContext` of the step.
        """
        raise NotImplementedError

    def get_config(self):
        config = {"name": self.name, "weight": self.weight}
        if self.attack is not None:
            config["attack"] = keras.saving.serialize_keras_object(self.attack)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "attack" in config:
            config["attack"] = keras.saving.deserialize_keras_object(config["attack"])
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r}, weight={self.weight!r})"


class Objectives(list):
    """A recipe's list of objectives with the `AdvRegModel` settings it needs.

    What recipes return when they are more than their terms: `methods.madry_awp`
    and `trades_awp` carry a `weight_perturbation`, `methods.from_nsl_config`
    with NSL feature names a `perturb` spec; `AdvRegModel` uses each when its
    own argument of that name is None.

    Args:
        objectives: the list of `Objective`s.
        weight_perturbation: None, or e.g. an `AdversarialWeightPerturbation`.
        perturb: None, or an `inputs.PerturbSpec`.
    """

    def __init__(self, objectives, weight_perturbation=None, perturb=None):
        super().__init__(objectives)
        self.weight_perturbation = weight_perturbation
        self.perturb = perturb


class StepContext:
    """What objectives see of one step: the batch, forward passes and attacks.

    Adversarial points are computed at construction, before the caller opens
    its gradient tape. Forward passes are cached per point, so terms sharing a
    point share one pass; each pass is recorded by an inner tape watching its
    inputs, so a term can ask for the input gradient (double backprop).

    With `model.perturb` (a `PerturbSpec`), `x` is the packed batch
    (`PackedModel.points`, the perturbed features flat) and `base_model` the
    adapter, so attacks and objectives see a single-tensor model.

    Args:
        model: the `AdvRegModel`.
        x: the input batch (a tensor, or a dict or list for a multi-input model).
        y: the labels.
        sample_weight: per-example weights or None.
        training: whether the forward passes run in training mode.
        points: precomputed input points, `{key: batch}`, that `inputs(key)`
            and `forward(key)` serve like an attack's (e.g. the carried
            perturbation of `FreeAdversarialLoss`, keyed by the term).
    """

    def __init__(self, model, x, y, sample_weight, training, points=None):
        self.model = model
        spec = getattr(model, "perturb", None)
        # A multi-input model is attacked through its packed single-tensor adapter.
        self.packed = None if spec is None else PackedModel(model.base_model, spec, x)
        if self.packed is not None:
            self.x = self.packed.points
        elif isinstance(x, (dict, list, tuple)):  # a multi-input model with no attack
            if any(o.attack is not None for o in model.objectives):
                raise ValueError("The model takes a dict or list of inputs: pass "
                                 "`perturb=PerturbSpec(...)` to AdvRegModel, naming the inputs "
                                 "the attacks perturb (keras_advreg.inputs).")
            self.x = tf.nest.map_structure(tf.convert_to_tensor, x)
        else:
            self.x = tf.convert_to_tensor(x, dtype=tf.float32)
        self.y = y
        self.sample_weight = sample_weight
        self.training = training
        self._adversarial = {}
        self._forward = {}
        self._input_gradient = {}
        self._step_seed = model.step_seed()
        attacked = 0
        for objective in model.objectives:
            attack = objective.attack
            if attack is not None and id(attack) not in self._adversarial:
                if self.packed is not None:  # the same attack, boxed in packed units
                    attack = model.packed_attacks[id(attack)]
                self._adversarial[id(objective.attack)] = attack(
                    self.base_model, self.x, y, scale=model.epsilon_scale,
                    seed=self.seed(attacked))
                attacked += 1
        for key, batch in (points or {}).items():
            self._adversarial[id(key)] = batch

    def seed(self, salt):
        """A stateless random seed for this step, distinct for each `salt` (an int).

        Derived from the model's seed and the optimizer's iteration count, so
        a resumed run draws the same numbers as an uninterrupted one.
        """
        return backend.fold_in(self._step_seed, salt)

    @property
    def base_model(self):
        """The model objectives call: the base model, or its `PackedModel` adapter."""
        return self.model.base_model if self.packed is None else self.packed

    def inputs(self, point="clean"):
        """The input batch at `point`: "clean", an objective's attack or a `points` key."""
        if isinstance(point, str):
            checks.choice("point", point, ("clean",))
            return self.x
        return self._adversarial[id(point)]

    def forward(self, point="clean"):
        """The (cached) forward pass at `point`, recorded by an inner tape."""
        key = point if isinstance(point, str) else id(point)
        if key not in self._forward:
            inputs = self.inputs(point)
            with backend.input_tape(inputs) as tape:
                logits = self.base_model(inputs, training=self.training)
                cross_entropy = losses.cross_entropy(self.y, logits)
                scaled_loss = tf.reduce_sum(cross_entropy) * self.gradient_scale
            self._forward[key] = _Forward(inputs, logits, cross_entropy, tape, scaled_loss)
        return self._forward[key]

    def forget_forward_passes(self):
        """Drops the cached forward passes, keeping the adversarial points.

        For a step that moves the weights after a first pass (adversarial
        weight perturbation): the terms then run at the new weights.
        """
        self._forward = {}
        self._input_gradient = {}

    def logits(self, point="clean"):
        """The model's logits at `point`."""
        return self.forward(point).logits

    def computed_logits(self, point="clean"):
        """The logits at `point` if a term already computed them, else None."""
        forward = self._forward.get(point if isinstance(point, str) else id(point))
        return None if forward is None else forward.logits

    @property
    def epsilon_scale(self):
        """The multiplier of every attack's epsilon this step (`AdvRegModel.epsilon_scale`)."""
        return tf.cast(self.model.epsilon_scale, tf.float32)

    @property
    def gradient_scale(self):
        """A fixed loss scale that keeps float16 input gradients from underflowing."""
        return ATTACK_LOSS_SCALE if self.base_model.compute_dtype == "float16" else 1.0

    def input_gradient(self, point="clean"):
        """The per-example input gradient of the cross-entropy at `point`, float32.

        Computed from the inner tape of the forward pass, so an enclosing tape
        records it (double backprop). Non-finite entries are zeroed. Cached per
        point: the inner tape is not persistent, so several terms asking for the
        same gradient share one backward pass.
        """
        key = point if isinstance(point, str) else id(point)
        if key not in self._input_gradient:
            forward = self.forward(point)
            gradient = backend.gradient(forward.tape, forward.scaled_loss, forward.inputs)
            gradient = tf.cast(gradient, tf.float32) / self.gradient_scale
            self._input_gradient[key] = backend.finite_or_zero(gradient)
        return self._input_gradient[key]

    def compiled_loss(self, logits):
        """The loss given to `compile`, a sample-weighted batch mean at `logits`."""
        return self.model.compiled_loss_value(self.y, logits, self.sample_weight)

    def mean(self, per_example):
        """A batch mean weighted like Keras's losses: sum(w * v) / batch size."""
        per_example = tf.cast(per_example, tf.float32)
        if self.sample_weight is not None:
            weights = tf.reshape(tf.cast(self.sample_weight, tf.float32), [-1])
            per_example = per_example * weights
        return tf.reduce_mean(per_example)
