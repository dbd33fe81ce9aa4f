"""Multi-input models: which inputs an attack perturbs, and the adapter that packs them.

A Keras model with several inputs (a list, or a dict of named inputs, as
Neural Structured Learning's feature dicts) is attacked on the inputs a
`PerturbSpec` names, each in its own box and optionally under a mask; every
other input passes through unchanged. `PackedModel` turns one batch of such a
model into a single-tensor model: its input is the flat concatenation of the
perturbed (unmasked) features, so every attack, objective and `StepContext`
works unchanged on single-tensor points.

The threat model of a perturbation spanning several inputs is the JOINT norm
over all perturbed features (as NSL normalizes its gradient jointly over the
feature dict): with delta_i the perturbation of input i restricted to its
unmasked features and s_i its `epsilon_scale`,

    ||delta|| = || concat(delta_1 / s_1, ..., delta_k / s_k) ||_p  <=  epsilon.

For linf this is max_i ||delta_i||_inf / s_i, so input i has its own linf
radius s_i * epsilon; for l2 it is sqrt(sum_i ||delta_i||_2^2 / s_i^2); for l1
sum_i ||delta_i||_1 / s_i. Masked features and unnamed inputs never move.
"""

import math
import numbers

import keras
import numpy as np
import tensorflow as tf

from keras_advreg import checks

# No bound (NSL's clip_value_min/max=None): keras_advreg boxes are finite, and
# this is far beyond any real input.
UNBOUNDED = 1e30


def _name(value):
    if isinstance(value, str) or (isinstance(value, numbers.Integral)
                                  and not isinstance(value, bool) and value >= 0):
        return value
    raise ValueError(f"`inputs` must hold input names (str) or positions (int >= 0), "
                     f"got {value!r}.")


def _per_input(argument, value, inputs, default):
    """`value` as a dict over `inputs`: one value for all, or a dict naming some of them."""
    if not isinstance(value, dict):
        return {name: value for name in inputs}
    unknown = [k for k in value if k not in inputs]
    if unknown:
        raise ValueError(f"`{argument}` names {unknown}, which are not perturbed inputs; "
                         f"`inputs` = {list(inputs)}.")
    return {name: value.get(name, default) for name in inputs}


def _bound(argument, name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"`{argument}` of input {name!r} must be a finite number or None "
                         f"(unbounded), got {value!r}.")
    return float(value)


def checked_spec(perturb):
    """`perturb` if it is a `PerturbSpec`, else a ValueError naming the argument."""
    if not isinstance(perturb, PerturbSpec):
        raise ValueError(f"`perturb` must be None or a keras_advreg.inputs.PerturbSpec, "
                         f"got {perturb!r}.")
    return perturb


@keras.saving.register_keras_serializable(package="keras_advreg")
class PerturbSpec:
    """Which inputs of a multi-input model an attack perturbs, each in its own box.

    Args:
        inputs: the perturbed inputs: names (a model called on a dict of named
            inputs; the keys of the dict or the `keras.Input` names) or
            positions (a model called on a list). A single name or position is
            accepted. Every other input passes through unchanged.
        clip_min: the smallest valid value of the perturbed inputs: a number,
            None (unbounded, e.g. an embedding), or a dict from input to
            either (inputs it leaves out get 0).
        clip_max: the largest valid value, likewise (default 1).
        mask: None, or a dict from input to a 0/1 (or boolean) array
            broadcastable to one example of that input (no batch axis, or a
            leading axis of 1): only its 1 entries are perturbed. NSL's
            `feature_mask`.
        epsilon_scale: None, or a dict from input to a positive number s_i:
            the joint norm divides input i's perturbation by s_i, so in linf
            it may move by up to s_i * epsilon (default 1 for every input).

    The joint norm (see the module docstring): ||concat(delta_i / s_i)||_p over
    the unmasked features of every perturbed input. With `AdvRegModel(...,
    perturb=spec)` these boxes replace the attacks' own `clip_min`/`clip_max`.

    Example:

    >>> spec = PerturbSpec(["numeric"], clip_min=0.0, clip_max=1.0)
    >>> spec.inputs
    ['numeric']
    """

    def __init__(self, inputs, clip_min=0.0, clip_max=1.0, mask=None, epsilon_scale=None):
        names = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        self.inputs = [_name(n) for n in names]
        if not self.inputs:
            raise ValueError("`inputs` must name at least one input to perturb, got [].")
        if len(set(self.inputs)) != len(self.inputs):
            raise ValueError(f"`inputs` must not repeat an input, got {self.inputs}.")
        if len({type(n) is str for n in self.inputs}) != 1:
            raise ValueError(f"`inputs` must be all names or all positions, got {self.inputs}.")
        lows = _per_input("clip_min", clip_min, self.inputs, 0.0)
        highs = _per_input("clip_max", clip_max, self.inputs, 1.0)
        self.clip_min = {n: _bound("clip_min", n, lows[n]) for n in self.inputs}
        self.clip_max = {n: _bound("clip_max", n, highs[n]) for n in self.inputs}
        for n in self.inputs:
            low, high = self.clip_min[n], self.clip_max[n]
            if low is not None and high is not None and high <= low:
                raise ValueError(f"`clip_max` must be > `clip_min` for input {n!r}, got "
                                 f"clip_min={low}, clip_max={high}.")
        for argument, value in (("mask", mask), ("epsilon_scale", epsilon_scale)):
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"`{argument}` must be None or a dict from input name (or "
                                 f"position) to its value, got {type(value).__name__}.")
        masks = _per_input("mask", mask or {}, self.inputs, None)
        self.mask = {n: self._checked_mask(n, m) for n, m in masks.items() if m is not None}
        scales = _per_input("epsilon_scale", epsilon_scale or {}, self.inputs, 1.0)
        self.epsilon_scale = {n: checks.number(f"epsilon_scale[{n!r}]", s, strict=True)
                              for n, s in scales.items()}

    @staticmethod
    def _checked_mask(name, mask):
        array = np.asarray(mask)
        if array.dtype != bool:
            if not np.issubdtype(array.dtype, np.number) or not np.all(np.isin(array, (0, 1))):
                raise ValueError(f"`mask` of input {name!r} must hold only 0 and 1 (or "
                                 f"booleans), got values {np.unique(array)[:5].tolist()}.")
            array = array.astype(bool)
        if not array.any():
            raise ValueError(f"`mask` of input {name!r} selects no feature (all zeros): "
                             f"leave the input out of `inputs` instead.")
        return array

    def box(self, name):
        """`(low, high)` of input `name` in its own units, UNBOUNDED for None."""
        low, high = self.clip_min[name], self.clip_max[name]
        return (-UNBOUNDED if low is None else low, UNBOUNDED if high is None else high)

    def packed_box(self, name):
        """The box of input `name` in packed units (divided by its epsilon scale)."""
        low, high = self.box(name)
        scale = self.epsilon_scale[name]
        return low / scale, high / scale

    def hull(self):
        """The smallest box holding every perturbed input's packed box: the attacks' box."""
        boxes = [self.packed_box(n) for n in self.inputs]
        return min(b[0] for b in boxes), max(b[1] for b in boxes)

    def unbounded(self):
        """Whether some perturbed input has no finite box."""
        return any(abs(v) >= UNBOUNDED for n in self.inputs for v in self.box(n))

    def feature_mask(self, name, shape):
        """The flat boolean mask of input `name` for examples of `shape`, or None (all)."""
        if name not in self.mask:
            return None
        mask = self.mask[name]
        if mask.ndim == len(shape) + 1 and mask.shape[0] == 1:
            mask = mask[0]
        try:
            return np.broadcast_to(mask, tuple(shape)).reshape(-1)
        except ValueError:
            raise ValueError(f"`mask` of input {name!r} has shape {mask.shape}, which does "
                             f"not broadcast to one example of shape {tuple(shape)}.") from None

    def attack_for(self, attack):
        """A copy of `attack` whose box is `hull()`: it then attacks packed points."""
        from keras_advreg.attacks import CarliniWagner

        low, high = self.hull()
        if isinstance(attack, CarliniWagner) and self.unbounded():
            raise ValueError("`perturb` leaves an input unbounded (clip_min or clip_max None), "
                             "which CarliniWagner's tanh box parametrization cannot "
                             "represent: give finite boxes or another attack.")
        if (attack.clip_min, attack.clip_max) == (low, high):
            return attack
        return type(attack).from_config({**attack.get_config(), "clip_min": low,
                                         "clip_max": high})

    def bind(self, model):
        """Checks the names, positions and masks against the inputs `model` declares.

        Models that declare no inputs (subclassed, unbuilt) are checked at the
        first batch instead.
        """
        declared = declared_inputs(model)
        if declared is None:
            return
        valid = list(declared)
        for name in self.inputs:
            if name not in declared:
                raise ValueError(
                    f"`perturb` names input {name!r}, which model {model.name!r} does not "
                    f"have; its inputs are {valid}" + (
                        " (positions of a list input)" if isinstance(name, int) else "")
                    + ".")
            shape = declared[name]
            if None not in shape:
                self.feature_mask(name, shape)

    def get_config(self):
        return {"inputs": list(self.inputs), "clip_min": dict(self.clip_min),
                "clip_max": dict(self.clip_max),
                "mask": {n: m.astype(int).tolist() for n, m in self.mask.items()} or None,
                "epsilon_scale": dict(self.epsilon_scale)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # JSON turns int keys (list positions) into strings: map them back.
        positions = all(isinstance(n, int) for n in config["inputs"])
        for key in ("clip_min", "clip_max", "mask", "epsilon_scale"):
            if isinstance(config.get(key), dict) and positions:
                config[key] = {int(k): v for k, v in config[key].items()}
        return cls(**config)

    def __repr__(self):
        return f"PerturbSpec(inputs={self.inputs!r})"


def declared_inputs(model):
    """Input name (or position) -> per-example shape, from a functional model; else None."""
    inputs = getattr(model, "inputs", None) if getattr(model, "built", False) else None
    if not inputs:
        return None
    shapes = [tuple(t.shape[1:]) for t in inputs]
    structure = getattr(model, "_inputs_struct", None)
    if isinstance(structure, dict):
        return {key: tuple(tensor.shape[1:]) for key, tensor in structure.items()}
    if isinstance(structure, (list, tuple)) or len(inputs) > 1:
        declared = dict(enumerate(shapes))
        declared.update({t.name: s for t, s in zip(inputs, shapes)})
        return declared
    return {inputs[0].name: shapes[0], 0: shapes[0]}


class PackedModel:
    """One batch of a multi-input model as a model of one flat tensor.

    `points` is the batch's packed clean point: per perturbed input (in the
    spec's order) its unmasked features divided by its epsilon scale, flat and
    concatenated, float32 of shape (batch, n). Calling the adapter on packed
    points `z` rebuilds the inputs (`unpack`) and calls the base model; it
    behaves as a Keras model for the attacks and objectives (`compute_dtype`,
    `name`).

    When the perturbed inputs have different packed boxes, the attacks move in
    their hull (`PerturbSpec.hull`) and `unpack` clips each input to its own
    box; the clipped point's perturbation is no larger than the attack's in
    any norm, and the logits are those of the clipped point.

    Args:
        base_model: the multi-input Keras model (returns logits).
        spec: the `PerturbSpec`.
        inputs: the batch: a dict or a list/tuple of tensors or arrays.
    """

    def __init__(self, base_model, spec, inputs):
        self.base_model = base_model
        self.spec = spec
        # A single-input model: the one input the spec names (a mask on it, NSL style).
        self._single = not isinstance(inputs, (dict, list, tuple))
        if self._single:
            if len(spec.inputs) != 1:
                raise ValueError(f"`perturb` names {spec.inputs}, but the model takes one "
                                 f"input: name that one (or position 0).")
            inputs = {spec.inputs[0]: inputs}
        # Keras refuses a mix of tensors and arrays: every input becomes a tensor (same values).
        self.inputs = (dict if isinstance(inputs, dict) else type(inputs))(
            tf.nest.map_structure(tf.convert_to_tensor, dict(inputs) if isinstance(
                inputs, dict) else list(inputs)))
        inputs = self.inputs
        keys = list(inputs) if isinstance(inputs, dict) else list(range(len(inputs)))
        for name in spec.inputs:
            if name not in keys:
                raise ValueError(f"`perturb` names input {name!r}, which the data does not "
                                 f"hold; its inputs are {keys}.")
        hull = spec.hull()
        self._parts, pieces = [], []
        for name in spec.inputs:
            value = tf.convert_to_tensor(inputs[name])
            if not value.dtype.is_floating:
                raise ValueError(f"`perturb` names input {name!r} of dtype {value.dtype.name}: "
                                 f"only float inputs can be perturbed (perturb an embedding "
                                 f"of integer ids, not the ids).")
            shape = tuple(value.shape[1:])
            if None in shape:
                raise ValueError(f"Input {name!r} must have a fixed per-example shape to be "
                                 f"perturbed, got {shape}.")
            flat = tf.reshape(tf.cast(value, tf.float32), [-1, int(np.prod(shape, dtype=int))])
            mask = spec.feature_mask(name, shape)
            index = None if mask is None else np.flatnonzero(mask)
            # Position of each feature in the packed part (0 for masked ones, unused).
            inverse = None if mask is None else np.maximum(np.cumsum(mask) - 1, 0)
            box = spec.packed_box(name)
            self._parts.append(dict(name=name, value=value, flat=flat, mask=mask, inverse=inverse,
                                    size=flat.shape[1] if mask is None else len(index),
                                    scale=spec.epsilon_scale[name],
                                    box=None if box == hull else box))
            part = flat if index is None else tf.gather(flat, index, axis=1)
            pieces.append(part if spec.epsilon_scale[name] == 1.0
                          else part / spec.epsilon_scale[name])
        self.points = pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis=1)

    @property
    def compute_dtype(self):
        return self.base_model.compute_dtype

    @property
    def name(self):
        return self.base_model.name

    def unpack(self, z):
        """The model's inputs at packed points `z` (same structure as the batch)."""
        z = tf.convert_to_tensor(z, tf.float32)
        out = dict(self.inputs) if isinstance(self.inputs, dict) else list(self.inputs)
        offset = 0
        for part in self._parts:
            values = z if len(self._parts) == 1 else z[:, offset:offset + part["size"]]
            offset += part["size"]
            if part["box"] is not None:
                values = tf.clip_by_value(values, *part["box"])
            if part["scale"] != 1.0:
                values = values * part["scale"]
            if part["mask"] is not None:
                values = tf.where(part["mask"][None, :],
                                  tf.gather(values, part["inverse"], axis=1), part["flat"])
            value = part["value"]
            out[part["name"]] = tf.cast(tf.reshape(values, tf.shape(value)), value.dtype)
        if self._single:
            return out[self.spec.inputs[0]]
        return out if isinstance(self.inputs, dict) else type(self.inputs)(out)

    def __call__(self, z, training=None):
        return self.base_model(self.unpack(z), training=training)
