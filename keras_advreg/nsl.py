"""Neural Structured Learning's adversarial regularization, as a keras_advreg objective.

NSL (`neural_structured_learning`) no longer imports on TensorFlow >= 2.16 (its
package imports `tensorflow.estimator`, and its Keras wrapper needs
`add_metric`, gone in Keras 3). `from_nsl_config` turns the fields of its
`AdvRegConfig` into the equivalent keras_advreg objective; see
docs/nsl_migration.md.

NSL's attack (neural_structured_learning 1.4.0, lib/adversarial_neighbor.py,
`_GenAdvNeighbor`; lib/utils.py), with x the clean batch, a = adv_step_size,
k = pgd_iterations, e = pgd_epsilon and u(g) the unit steepest-ascent direction
of the gradient g of the loss (`sign(g)` for "infinity", `g / ||g||_2` per
example over all features for "l2"):

    x_0 = clip(x + U(ball of radius (e or a)))  if random_init, else x
    repeat k times:  d = x_t + a * u(grad at x_t) - x
                     d = project(d, ball of radius e)   only if e is not None
                     x_{t+1} = clip(x + d)              only if clip values are set

so adv_step_size is the length of one step, pgd_epsilon the radius, and with
`pgd_epsilon=None` nothing is projected. keras_advreg's PGD takes the same step
(`geometry.steepest_ascent`: sign for linf, per-example l2 normalization over
all non-batch dimensions), then projects onto the ball and the box in the same
order; NSL's loss is `labeled_loss + multiplier * adversarial_loss`, i.e.
`[CleanLoss(), AdversarialLoss(attack, weight=multiplier)]`.
"""

import math
import numbers

from keras_advreg import checks
from keras_advreg.attacks import FGSM, PGD, geometry
from keras_advreg.attacks.base import register
from keras_advreg.inputs import UNBOUNDED, PerturbSpec
from keras_advreg.objectives import AdversarialLoss, CleanLoss, Objectives

# NSL does not clip when clip_value_min/max is None; keras_advreg attacks always
# clip to a finite box, so None maps to UNBOUNDED (1e30), far beyond any real input.

_NSL_NORMS = {"infinity": "linf", "l2": "l2"}
_NEIGHBOR_FIELDS = ("feature_mask", "adv_step_size", "adv_grad_norm", "clip_value_min",
                    "clip_value_max", "pgd_iterations", "pgd_epsilon", "random_init")


@register
class NSLPGD(PGD):
    """PGD whose random start has its own radius: NSL's `random_init` without `pgd_epsilon`.

    NSL draws the random start from the ball of radius `adv_step_size` when
    `pgd_epsilon` is None and then never projects. Here `start_radius` is the
    start's radius and `epsilon` a ball large enough never to bind
    (`start_radius + steps * step_size`). Built by `from_nsl_config`.

    Args:
        start_radius: the radius of the uniform random start.
        **kwargs: passed to `PGD` (`random_start` is always "uniform").
    """

    def __init__(self, start_radius, **kwargs):
        kwargs["random_start"] = True
        super().__init__(**kwargs)
        self.start_radius = checks.number("start_radius", start_radius, strict=True)

    def _start(self, model, x, epsilon, seed):
        radius = self.start_radius * (epsilon / self.epsilon)  # follows epsilon ramps
        return self.project(geometry.random_start(x, radius, self.norm, "uniform", seed),
                            x, epsilon)

    def get_config(self):
        config = super().get_config()
        del config["random_start"]
        return {**config, "start_radius": self.start_radius}


def from_nsl_config(multiplier=0.2, adv_step_size=0.001, adv_grad_norm="l2",
                    clip_value_min=None, clip_value_max=None, pgd_iterations=1,
                    pgd_epsilon=None, random_init=False, feature_mask=None,
                    adv_neighbor_config=None, feature_names=None):
    """The keras_advreg objective equivalent to an NSL `AdvRegConfig`.

    The defaults are NSL's (`nsl.configs.make_adv_reg_config()`). Mapping:

    ==================  ===========================================================
    NSL field           keras_advreg
    ==================  ===========================================================
    multiplier          `AdversarialLoss(..., weight=multiplier)` next to
                        `CleanLoss()`: loss(x) + multiplier * loss(x_adv)
    adv_step_size       the attack's `step_size`: the length of ONE step (NSL's
                        per-step scale of the normalized gradient), not a radius
    pgd_epsilon         the attack's `epsilon`: the RADIUS of the ball NSL
                        projects onto. None (NSL: no projection at all) becomes
                        `pgd_iterations * adv_step_size`, a ball the iterates
                        can never leave, so nothing is projected either; with
                        `random_init` it is that plus the start radius
    pgd_iterations      1 (and no random_init): `FGSM`; more: `PGD(steps=...)`
    adv_grad_norm       `norm`: "infinity" -> "linf", "l2" -> "l2"; "l1" is not
                        supported (ValueError)
    clip_value_min/max  `clip_min` / `clip_max` (scalars only); None (NSL: no
                        clipping) becomes -/+ `UNBOUNDED` (1e30), no clipping
    random_init         `random_start=True`: uniform in the ball of radius
                        `pgd_epsilon`, or `adv_step_size` if that is None (as
                        NSL), then `pgd_iterations` gradient steps
    feature_mask        `PerturbSpec(mask=...)`: a dict from feature name to a 0/1
                        mask (or one mask with one `feature_names` entry);
                        masked features never move (NSL multiplies the gradient
                        by the mask: the same for 0/1 masks)
    (feature dict)      `feature_names`: the features NSL perturbs (its input
                        dict minus `label_keys`) -> `PerturbSpec(inputs=...)`;
                        the norm is joint over all of them, as NSL's
    ==================  ===========================================================

    With `feature_names` or `feature_mask`, the returned list also carries
    `perturb`, a `PerturbSpec` with NSL's clip values as every feature's box
    (None: unbounded), which `AdvRegModel` uses when its own `perturb` is None.

    Remaining differences from NSL: the attack maximizes the softmax
    cross-entropy of the base model's logits with the model in inference mode
    (NSL: the compiled loss, in training mode, the first step reusing the
    training forward pass), and l2 normalization guards zero gradients with
    1e-12 (NSL: 1e-6).

    Args:
        multiplier: NSL's weight of the adversarial loss (>= 0).
        adv_step_size: the step length (> 0).
        adv_grad_norm: "l2" or "infinity" (or an `nsl.configs.NormType`).
        clip_value_min: the smallest input value after perturbation, or None.
        clip_value_max: the largest input value after perturbation, or None.
        pgd_iterations: the number of gradient steps (>= 1).
        pgd_epsilon: the radius of the ball (> 0), or None.
        random_init: whether to start from a random point in the ball.
        feature_mask: None, a dict from feature name to a 0/1 mask
            broadcastable to one example of that feature, or one such mask
            when `feature_names` names one feature.
        adv_neighbor_config: an NSL `AdvNeighborConfig` (or a dict of its
            fields), so that `from_nsl_config(**vars(adv_reg_config))` works on
            an `AdvRegConfig`; its fields are then not passed as keywords.
        feature_names: None (a single-tensor model: every feature is
            perturbed), or the names (or list positions) of the model's
            inputs NSL perturbed; default with a dict `feature_mask`: its keys.

    Returns:
        `[CleanLoss(), AdversarialLoss(FGSM or PGD, weight=multiplier)]`;
        with `feature_names` or `feature_mask`, a list with a `perturb`
        attribute (`objectives.Objectives`).

    Example:

    >>> objective = from_nsl_config(multiplier=0.2, adv_step_size=0.05,
    ...                             pgd_iterations=3, pgd_epsilon=0.1)
    >>> attack = objective[1].attack
    >>> type(attack).__name__, attack.epsilon, attack.step_size, attack.steps
    ('PGD', 0.1, 0.05, 3)
    >>> objective[1].weight
    0.2
    """
    fields = {"adv_step_size": adv_step_size, "adv_grad_norm": adv_grad_norm,
              "clip_value_min": clip_value_min, "clip_value_max": clip_value_max,
              "pgd_iterations": pgd_iterations, "pgd_epsilon": pgd_epsilon,
              "random_init": random_init, "feature_mask": feature_mask}
    if adv_neighbor_config is not None:
        fields = _merge_neighbor_config(fields, adv_neighbor_config)
    multiplier = _number("multiplier", multiplier)
    step = _number("adv_step_size", fields["adv_step_size"], strict=True)
    norm = _norm(fields["adv_grad_norm"])
    clip_min = _clip("clip_value_min", fields["clip_value_min"], -UNBOUNDED)
    clip_max = _clip("clip_value_max", fields["clip_value_max"], UNBOUNDED)
    if clip_max <= clip_min:
        raise ValueError(f"`clip_value_max` must be > `clip_value_min`, got "
                         f"clip_value_min={clip_min}, clip_value_max={clip_max}.")
    steps = fields["pgd_iterations"]
    if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"NSL field `pgd_iterations` must be an integer >= 1, got {steps!r}.")
    steps = int(steps)
    epsilon = fields["pgd_epsilon"]
    if epsilon is not None:
        epsilon = _number("pgd_epsilon", epsilon, strict=True)
    random_init = fields["random_init"]
    if not isinstance(random_init, bool):
        raise ValueError(f"NSL field `random_init` must be True or False, got {random_init!r}.")
    perturb = _perturb_spec(feature_names, fields["feature_mask"], fields["clip_value_min"],
                            fields["clip_value_max"])

    box = {"norm": norm, "clip_min": clip_min, "clip_max": clip_max}
    # Without `pgd_epsilon` NSL never projects onto a ball. In linf the box's width
    # is a ball that never binds, and the largest radius an attack accepts.
    never_binds = clip_max - clip_min if norm == "linf" else math.inf
    if random_init and epsilon is None:
        # NSL: start in the ball of radius adv_step_size, then never project.
        attack = NSLPGD(start_radius=step, epsilon=min((steps + 1) * step, never_binds),
                        step_size=step, steps=steps, **box)
    elif random_init:
        attack = PGD(epsilon=epsilon, step_size=step, steps=steps, random_start=True, **box)
    else:
        radius = min(steps * step, never_binds) if epsilon is None else epsilon
        if steps == 1:
            attack = FGSM(epsilon=radius, step_size=step, **box)
        else:
            attack = PGD(epsilon=radius, step_size=step, steps=steps, random_start=False, **box)
    objective = [CleanLoss(), AdversarialLoss(attack, weight=multiplier)]
    return objective if perturb is None else Objectives(objective, perturb=perturb)


def _perturb_spec(feature_names, feature_mask, clip_value_min, clip_value_max):
    """The `PerturbSpec` of NSL's perturbed features and `feature_mask`, or None."""
    if feature_names is None and feature_mask is None:
        return None
    if feature_names is None:
        if not isinstance(feature_mask, dict):
            raise ValueError("NSL field `feature_mask` must be a dict from feature name to "
                             "mask, or come with `feature_names` naming the one feature it "
                             f"masks; got {type(feature_mask).__name__} without feature_names.")
        feature_names = list(feature_mask)
    names = feature_names if isinstance(feature_names, (list, tuple)) else [feature_names]
    if feature_mask is not None and not isinstance(feature_mask, dict):
        if len(names) != 1:
            raise ValueError(f"NSL field `feature_mask` is one mask but `feature_names` names "
                             f"{len(names)} features {list(names)}: give a dict of masks.")
        feature_mask = {names[0]: feature_mask}
    return PerturbSpec(list(names), clip_min=clip_value_min, clip_max=clip_value_max,
                       mask=feature_mask)


def _merge_neighbor_config(fields, config):
    """Reads an `AdvNeighborConfig` (object or dict) into `fields`."""
    values = dict(config) if isinstance(config, dict) else dict(vars(config))
    unknown = sorted(set(values) - set(_NEIGHBOR_FIELDS))
    if unknown:
        raise ValueError(f"Unknown NSL `adv_neighbor_config` fields {unknown}; known: "
                         f"{list(_NEIGHBOR_FIELDS)}.")
    defaults = dict(zip(_NEIGHBOR_FIELDS, (None, 0.001, "l2", None, None, 1, None, False)))
    for name, value in values.items():
        given, default = fields[name], defaults[name]
        if given is not default and not (isinstance(given, (str, int, float)) and given == default):
            raise ValueError(f"NSL field `{name}` was given both as a keyword and in "
                             f"`adv_neighbor_config`; give it once.")
        fields[name] = value
    return fields


def _number(name, value, strict=False):
    try:
        return checks.number(name, value, strict=strict)
    except ValueError as error:
        raise ValueError(f"NSL field {error}") from None


def _norm(value):
    name = getattr(value, "value", value)  # an nsl.configs.NormType has .value
    if isinstance(name, str) and name.lower() == "l1":
        raise ValueError("NSL field `adv_grad_norm`='l1' is not supported: keras_advreg "
                         "attacks support 'infinity' (linf) and 'l2'.")
    key = name.lower() if isinstance(name, str) else name
    if key not in _NSL_NORMS:
        raise ValueError(f"NSL field `adv_grad_norm` must be 'l2' or 'infinity', got {value!r}.")
    return _NSL_NORMS[key]


def _clip(name, value, default):
    if value is None:
        return default
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value):
        raise ValueError(f"NSL field `{name}` must be None or a finite number (keras_advreg "
                         f"boxes are scalars, not per-feature tensors), got {value!r}.")
    return float(value)
