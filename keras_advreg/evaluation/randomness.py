"""Randomized models: detect outputs that change between identical calls, attack with EOT.

A model with noise or dropout at inference has random logits, so a single-pass
gradient points a different way on every call and fools PGD into reporting a
robust accuracy it does not have (Athalye et al. 2018, arXiv 1802.00420, sec. 4.1.3,
stochastic gradients). Expectation over transformation (EOT) averages the
gradient over `EOT_SAMPLES` passes, as AutoAttack's version="rand".
"""

import numpy as np

from keras_advreg.attacks import APGD, EOT_SAMPLES, PGD

# Two identical float32 calls of a deterministic model agree to rounding; the
# tolerance is relative to the logits' scale.
RELATIVE_TOLERANCE = 1e-5


def randomness(first, second, eot_samples=EOT_SAMPLES):
    """Compares two calls' logits on the same batch.

    Args:
        first: the logits of one call, a numpy array.
        second: the logits of a second call on the same inputs.
        eot_samples: the EOT samples the gradient attacks use if the model is
            randomized.

    Returns:
        `{"randomized", "max_logit_difference", "tolerance", "eot_samples"}`,
        `eot_samples` 1 for a deterministic model.

    Example:

    >>> import numpy as np
    >>> z = np.ones((2, 3), "float32")
    >>> randomness(z, z)["randomized"], randomness(z, z + 0.1)["randomized"]
    (False, True)
    """
    difference = float(np.max(np.abs(first - second), initial=0.0))
    tolerance = RELATIVE_TOLERANCE * (1.0 + float(np.max(np.abs(first), initial=0.0)))
    randomized = not difference <= tolerance  # NaN logits count as random
    return {"randomized": randomized, "max_logit_difference": difference,
            "tolerance": tolerance, "eot_samples": eot_samples if randomized else 1}


def rand_suite(epsilon, norm, clip, eot_samples=EOT_SAMPLES):
    """AutoAttack's version="rand": APGD-CE and APGD-DLR, each gradient an EOT mean.

    Args:
        epsilon: the radius of the threat model.
        norm: "linf" or "l2".
        clip: the `(clip_min, clip_max)` box.
        eot_samples: the passes each gradient averages over.

    Returns:
        A list of two `APGD` attacks.
    """
    return [APGD(epsilon, norm=norm, loss=loss, clip_min=clip[0], clip_max=clip[1],
                 eot_samples=eot_samples) for loss in ("cross_entropy", "dlr")]


def with_eot(attacks, eot_samples=EOT_SAMPLES):
    """The attacks with every single-pass PGD or APGD (FGSM too) rebuilt with EOT.

    Attacks already using EOT, and gradient-free ones (Square), are kept.

    Args:
        attacks: a list of `Attack` objects.
        eot_samples: the passes each gradient averages over.

    Returns:
        A new list; unchanged attacks are the same objects.
    """
    return [type(a).from_config({**a.get_config(), "eot_samples": eot_samples})
            if isinstance(a, (PGD, APGD)) and a.eot_samples == 1 else a
            for a in attacks]
