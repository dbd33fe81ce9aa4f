"""Argument validation shared by attacks, objectives, callbacks and the CLI.

Every check raises `ValueError` naming the argument and the allowed values, so a
bad hyperparameter fails when the object is built, before any training step.
"""

import math
import numbers
import warnings

import numpy as np

# Every spelling users reach for, mapped to one canonical name.
_NORM_ALIASES = {
    "linf": "linf", "inf": "linf", "l_inf": "linf", np.inf: "linf",
    "l2": "l2", 2: "l2", "2": "l2",
    "l1": "l1", 1: "l1", "1": "l1",
}

# The threat models attacks and evaluation support. Objectives that need a dual
# norm (gradient penalties) support only the default ("linf", "l2") of `norm`.
ATTACK_NORMS = ("linf", "l2", "l1")


def number(name, value, *, minimum=0.0, strict=False, maximum=None):
    """Returns `value` as a float, or raises if it is not a finite number in range.

    Args:
        name: the argument's name, used in the error message.
        value: the value to check.
        minimum: the smallest allowed value.
        strict: if True, `minimum` itself is not allowed.
        maximum: the largest allowed value, or None.

    Returns:
        `float(value)`.
    """
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}.")
    bound = f"> {minimum}" if strict else f">= {minimum}"
    if (value <= minimum) if strict else (value < minimum):
        raise ValueError(f"`{name}` must be {bound}, got {value!r}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}, got {value!r}.")
    return float(value)


def integer(name, value, *, minimum=1):
    """Returns `value` as an int, or raises if it is not an integer >= `minimum`."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def choice(name, value, allowed):
    """Returns `value` if it is one of `allowed`, or raises listing them."""
    if value not in allowed:
        raise ValueError(
            f"`{name}` must be one of {list(allowed)}, got {value!r}.")
    return value


def norm(value, allowed=("linf", "l2"), name="norm"):
    """Returns the canonical name ("linf", "l2" or "l1") of a norm spelling.

    Args:
        value: "linf"/"inf"/`np.inf`, "l2"/2 or "l1"/1.
        allowed: the canonical norms this caller supports (`ATTACK_NORMS`
            for attacks and evaluation, which also take "l1").
        name: the argument's name, used in the error message.

    Returns:
        The canonical norm name.
    """
    try:
        canonical = _NORM_ALIASES.get(value.lower() if isinstance(value, str) else value)
    except TypeError:  # unhashable
        canonical = None
    if canonical not in allowed:
        raise ValueError(
            f"`{name}` must be one of {list(allowed)} (also np.inf, 2, 1), got {value!r}.")
    return canonical


def box(clip_min, clip_max):
    """Checks that `[clip_min, clip_max]` is a non-empty interval."""
    clip_min = number("clip_min", clip_min, minimum=-math.inf)
    clip_max = number("clip_max", clip_max, minimum=-math.inf)
    if clip_max <= clip_min:
        raise ValueError(
            f"`clip_max` must be > `clip_min`, got clip_min={clip_min}, clip_max={clip_max}.")
    return clip_min, clip_max


def box_diameter(norm, clip_min, clip_max, input_size=None):
    """The largest distance between two points of the box, in `norm`.

    Args:
        norm: a canonical norm name ("linf", "l2" or "l1").
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.
        input_size: the number of values of one input; needed for "l2" and "l1".

    Returns:
        The diameter, or None when it depends on an unknown `input_size`.
    """
    width = clip_max - clip_min
    if norm == "linf":
        return width
    if input_size is None:
        return None
    return width * {"l2": math.sqrt(input_size), "l1": input_size}[norm]


def radius(epsilon, norm, clip_min, clip_max, input_size=None, name="epsilon"):
    """Raises if the threat model's radius `epsilon` exceeds the box's diameter.

    Such a ball holds every valid input, so robust accuracy is 0 by
    construction: almost always a unit mistake, e.g. `8` for `8/255`.
    For "l2" and "l1" the diameter needs `input_size`; without it nothing is
    checked.

    Returns:
        `epsilon`.
    """
    diameter = box_diameter(norm, clip_min, clip_max, input_size)
    if diameter is None or epsilon <= diameter:
        return epsilon
    width = clip_max - clip_min
    intended = epsilon / 255 * width
    hint = ""
    if epsilon >= 1 and intended <= diameter:
        fraction = f"{epsilon:g}/255" if width == 1 else f"{epsilon:g}/255 of the box width"
        hint = f" Did you mean {fraction} = {intended:.4f}?"
    raise ValueError(
        f"`{name}` = {epsilon:g} is larger than the {norm} diameter {diameter:.4g} of the "
        f"input box [{clip_min:g}, {clip_max:g}]: the ball would hold every valid input. "
        f"`{name}` is in input units.{hint}")


def step_size(step, epsilon, steps, name="step_size"):
    """Warns when a multi-step attack's `step_size` exceeds its radius `epsilon`.

    Every step would then overshoot the ball and be projected back, so the
    iterates jump between its faces instead of ascending the loss. A single
    step (FGSM, FGSM-RS's 1.25 epsilon) is left alone.
    """
    if steps > 1 and step > epsilon:
        warnings.warn(
            f"`{name}` = {step:g} is larger than `epsilon` = {epsilon:g} for a {steps}-step "
            f"attack: each step leaves the ball and is projected back. `{name}` is one "
            f"step's length (e.g. epsilon / 4), not the radius.", stacklevel=3)
    return step
