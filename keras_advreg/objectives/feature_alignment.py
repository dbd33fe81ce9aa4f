"""Gradient-Feature Alignment (GFA): our reconstruction from the DeepDefense abstract."""

import keras
import tensorflow as tf

from keras_advreg import backend, checks
from keras_advreg.attacks import losses
from keras_advreg.objectives.base import Objective, register
from keras_advreg.objectives.gradient_penalty import flatten

FORMS = ("tangential", "cosine")
INPUT = "input"


def feature_model(base_model, layers):
    """A model mapping the base model's inputs to `[features of layers..., logits]`.

    Args:
        base_model: a functional or Sequential Keras model.
        layers: layer names (without "input").

    Raises:
        ValueError: for a subclassed model, or a name that is not a layer.
    """
    try:
        inputs, outputs = base_model.inputs, base_model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise ValueError(
            f"GradientFeatureAlignment needs a functional or Sequential base model with "
            f"defined inputs, got {type(base_model).__name__} {base_model.name!r} (subclassed "
            f"or not built). Use layers=('input',) only, or build the model functionally.")
    names = [layer.name for layer in base_model.layers]
    unknown = [name for name in layers if name not in names]
    if unknown:
        raise ValueError(f"GradientFeatureAlignment `layers` {unknown} are not layers of "
                         f"{base_model.name!r}; valid names: {[INPUT] + names}.")
    features = [base_model.get_layer(name).output for name in layers]
    return keras.Model(inputs, features + list(outputs), name=f"{base_model.name}_features")


def _per_example_misalignment(g, h, form):
    """Per example: ||g - (g.h^)h^||^2 ("tangential") or 1 - cos^2(g, h) ("cosine")."""
    g, h = flatten(g), flatten(h)
    gh = tf.reduce_sum(g * h, axis=1)
    hh = tf.maximum(tf.reduce_sum(tf.square(h), axis=1), backend.TINY)
    gg = tf.reduce_sum(tf.square(g), axis=1)
    if form == "tangential":
        return gg - tf.square(gh) / hh
    return 1.0 - tf.square(gh) / (tf.maximum(gg, backend.TINY) * hh)


@register
class GradientFeatureAlignment(Objective):
    """Gradient-Feature Alignment regularizer, reconstructed (DeepDefense, arXiv 2511.13749).

    RECONSTRUCTION: the paper publishes only an abstract
    (DeepDefense, arXiv 2511.13749) -- no formula
    and no code. The abstract says that GFA decomposes an input perturbation
    into radial and tangential components and aligns the loss gradients with
    the features across layers, so that the loss varies little in tangential
    directions. This is our reading of that sentence, not the authors' method.

    For each layer l in `layers` ("input" is the input itself), with features
    h_l (per example, flattened), g_l = d loss / d h_l (per-example softmax
    cross-entropy) and h^_l = h_l / ||h_l||:

        form="tangential":  R_l = mean_i ||g_l - (g_l . h^_l) h^_l||^2
        form="cosine":      R_l = mean_i (1 - cos^2(g_l, h_l))

    and R = sum_l w_l R_l. The features come from a second forward pass of a
    feature model `keras.Model(base.inputs, [base.get_layer(n).output, ...,
    logits])` (built once, so the base model must be functional or
    Sequential); g_l comes from an inner tape and is recorded by the model's
    tape (double backprop). Zero features or gradients give finite values.

    The abstract's claims (20-30x larger DeepFool distances) are what gradient
    masking would also produce: always evaluate a GFA model with the full
    attack suite, including a gradient-free attack.

    Args:
        layers: names of layers of the base model, and/or "input".
        layer_weights: one non-negative weight w_l per layer (default all 1).
        form: "tangential" or "cosine".
        name: the term's name in the logs and in `model.term_weights`.
        weight: lambda.
    """

    def __init__(self, layers=(INPUT,), layer_weights=None, form="tangential", name="gfa",
                 weight=1.0):
        super().__init__(name, weight)
        if isinstance(layers, str):
            layers = (layers,)
        self.layers = tuple(layers)
        if not self.layers or not all(isinstance(n, str) for n in self.layers):
            raise ValueError(f"`layers` must be a non-empty list of layer names or 'input', "
                             f"got {layers!r}.")
        if layer_weights is None:
            layer_weights = [1.0] * len(self.layers)
        if len(layer_weights) != len(self.layers):
            raise ValueError(f"`layer_weights` must have one weight per layer "
                             f"({len(self.layers)}), got {layer_weights!r}.")
        self.layer_weights = tuple(checks.number("layer_weights", w) for w in layer_weights)
        self.form = checks.choice("form", form, FORMS)
        self._feature_models = {}

    def feature_model(self, base_model):
        """The (cached) feature model of `base_model`; validates the layer names."""
        key = id(base_model)
        if key not in self._feature_models:
            hidden = [n for n in self.layers if n != INPUT]
            self._feature_models[key] = feature_model(base_model, hidden) if hidden else None
        return self._feature_models[key]

    def __call__(self, context):
        x = context.inputs("clean")
        model = self.feature_model(context.base_model)
        if model is None:  # input only: share the step's clean forward pass
            points = [x] * len(self.layers)
            gradients = [context.input_gradient("clean")] * len(self.layers)
        else:
            with backend.input_tape(x) as tape:
                *hidden, logits = model(x, training=context.training)
                scaled = (tf.reduce_sum(losses.cross_entropy(context.y, logits))
                          * context.gradient_scale)
            features = iter(hidden)
            points = [x if n == INPUT else next(features) for n in self.layers]
            gradients = [tf.cast(g, tf.float32) / context.gradient_scale
                         for g in backend.gradient(tape, scaled, points)]
        total = 0.0
        for w, h, g in zip(self.layer_weights, points, gradients):
            g = backend.finite_or_zero(g)
            total += w * context.mean(_per_example_misalignment(g, tf.cast(h, tf.float32),
                                                                self.form))
        return total

    def get_config(self):
        return {**super().get_config(), "layers": list(self.layers),
                "layer_weights": list(self.layer_weights), "form": self.form}
