"""The fast gradient sign method, with the random start of Fast AT."""

from keras_advreg import checks
from keras_advreg.attacks.base import register
from keras_advreg.attacks.pgd import PGD


@register
class FGSM(PGD):
    """Fast gradient sign method (Goodfellow et al. 2015, arXiv 1412.6572).

    One step along the sign of the input gradient (linf) or the normalized
    gradient (l2); for l1, the exact l1 steepest ascent inside the box (the
    maximizer of the linearized loss over the l1 ball and the box, see
    `geometry.l1_ascent_step`). With `random_start=True` it is FGSM-RS of Fast AT (Wong et
    al. 2020, arXiv 2001.03994): delta ~ U(-epsilon, epsilon), one step of
    1.25 * epsilon, then projection onto the ball and the box.

    Args:
        epsilon: the radius of the ball.
        step_size: the step length; defaults to `epsilon` without random start
            and `1.25 * epsilon` with it.
        norm: "linf", "l2" or "l1".
        random_start: whether to start from a uniform point in the ball.
        loss: "cross_entropy" or "cw_margin".
        targeted: if True, `y` holds target classes and the loss is minimized.
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.
        eot_samples: the number of forward/backward passes the gradient
            averages over (expectation over transformation).

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> x_adv = FGSM(epsilon=0.1)(model, np.full((2, 4), 0.5, "float32"), np.array([0, 1]))
    >>> x_adv.shape
    TensorShape([2, 4])
    """

    def __init__(self, epsilon=8 / 255, step_size=None, norm="linf", random_start=False,
                 loss="cross_entropy", targeted=False, clip_min=0.0, clip_max=1.0,
                 eot_samples=1):
        epsilon = checks.number("epsilon", epsilon)
        if step_size is None:
            step_size = 1.25 * epsilon if random_start else epsilon
        checks.choice("loss", loss, ("cross_entropy", "cw_margin"))
        super().__init__(epsilon=epsilon, step_size=step_size, steps=1, norm=norm,
                         random_start=random_start, restarts=1, loss=loss,
                         targeted=targeted, clip_min=clip_min, clip_max=clip_max,
                         eot_samples=eot_samples)

    def get_config(self):
        config = super().get_config()
        del config["steps"], config["restarts"]
        return config
