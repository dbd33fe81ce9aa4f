"""Robustness curves: accuracy against the attack budget epsilon."""

import functools
import math

import numpy as np

from keras_advreg import checks
from keras_advreg.attacks import PGD

# The default grid, as multiples of the evaluation epsilon.
DEFAULT_MULTIPLES = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
PGD_STEPS = 20


def default_grid(epsilon):
    """0, eps/4, eps/2, eps, 2 eps, 4 eps."""
    return [m * epsilon for m in DEFAULT_MULTIPLES]


def check_grid(epsilons):
    """Returns the grid as floats, or raises unless it is non-negative and strictly increasing."""
    try:
        grid = [float(e) for e in epsilons]
    except (TypeError, ValueError):
        raise ValueError(f"`epsilons` must be a list of numbers, got {epsilons!r}.") from None
    if not grid or any(not math.isfinite(e) or e < 0 for e in grid):
        raise ValueError(f"`epsilons` must be finite numbers >= 0, got {epsilons!r}.")
    if any(b <= a for a, b in zip(grid, grid[1:])):
        raise ValueError(f"`epsilons` must be strictly increasing, got {epsilons!r}.")
    return grid


def unbounded_epsilon(norm, input_shape, clip_min=0.0, clip_max=1.0):
    """A budget that reaches every point of the box: its diameter in `norm`."""
    return checks.box_diameter(norm, clip_min, clip_max, int(np.prod(input_shape)))


def curve_attack(norm, clip_min=0.0, clip_max=1.0):
    """PGD-20 (step 2.5 eps / 20) whose budget is the box width, the largest a
    linf attack may have; run it at radius eps with `scale=eps / attack.epsilon`."""
    width = clip_max - clip_min
    return PGD(epsilon=width, step_size=2.5 * width / PGD_STEPS, steps=PGD_STEPS, norm=norm,
               clip_min=clip_min, clip_max=clip_max)


def accuracy_at(runner, attack, x, y, correct, epsilon=None, stage=None, on_broken=None):
    """Per-example robustness (bool) to `attack` at radius `epsilon`; wrong points stay wrong.

    `epsilon` defaults to the attack's own; another radius runs the attack with
    `scale=epsilon / attack.epsilon`. `stage` names the run in the runner's
    progress display. `on_broken(index, x_adv)`, if given, receives the indices
    of the points the attack broke and their adversarial inputs.
    """
    scale = 1.0 if epsilon is None else epsilon / attack.epsilon
    robust = correct.copy()
    index = np.flatnonzero(robust) if scale > 0 else np.zeros(0, int)
    if stage is not None:
        runner.stage(stage, len(index))
    if len(index):
        fooled, x_adv = runner.fooled(attack, x[index], y[index], scale=scale,
                                      return_adversarial=True, index=index)
        robust[index[fooled]] = False
        if on_broken is not None:
            on_broken(index[fooled], x_adv[fooled])
    return robust


def robustness_curve(runner, x, y, correct, grid, attack, name="curve", on_broken=None):
    """Accuracy under `attack` at each epsilon of `grid`.

    Each epsilon is a progress stage, `"{name} eps={epsilon}"`.
    `on_broken(epsilon, index, x_adv)`, if given, receives each radius's
    broken points as in `accuracy_at`.

    Returns:
        `(curve, robust_by_epsilon)`: a list of `{epsilon, accuracy}` and a dict
        epsilon -> per-example robustness.
    """
    curve, robust_by_epsilon = [], {}
    for epsilon in grid:
        hook = None if on_broken is None else functools.partial(on_broken, epsilon)
        robust = accuracy_at(runner, attack, x, y, correct, epsilon,
                             stage=f"{name} eps={epsilon:g}", on_broken=hook)
        robust_by_epsilon[epsilon] = robust
        curve.append({"epsilon": epsilon, "accuracy": float(robust.mean())})
    return curve, robust_by_epsilon
