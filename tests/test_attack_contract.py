"""The attack contract, for every attack class `keras_advreg.attacks` exports.

The classes are enumerated from the package, so a new attack is covered as soon
as it is exported: `perturb(model, x, y, scale, seed)` with stateless random
draws (the same seed gives the same output whatever TensorFlow's global seed),
output inside the ball of radius `epsilon * scale` and inside the box, no
state left on the attack by a call, and one `AdvRegModel` training step with
it as the training attack.
"""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_advreg as kar
from keras_advreg import attacks, checks
from keras_advreg.attacks import Attack
from keras_advreg.objectives import AdversarialLoss

ATTACK_CLASSES = sorted(
    (value for value in vars(attacks).values()
     if inspect.isclass(value) and issubclass(value, Attack) and value is not Attack),
    key=lambda cls: cls.__name__)

# Small budgets for whichever of these a constructor takes.
_BUDGETS = {"steps": 3, "n_queries": 12, "binary_search_steps": 2, "restarts": 1,
            "n_restarts": 1, "n_target_classes": 2, "iterations": 3, "max_iterations": 3}
_EPSILON = {"linf": 0.1, "l2": 0.5, "l1": 1.0}
_SHAPE = (8, 4, 4, 1)
_SCALE = 0.5


def _cases():
    for cls in ATTACK_CLASSES:
        takes_norm = "norm" in inspect.signature(cls).parameters
        for norm in (checks.ATTACK_NORMS if takes_norm else (None,)):
            yield pytest.param(cls, norm, id=f"{cls.__name__}-{norm or 'own'}")


def _build(cls, norm):
    """The attack with small budgets, or None if it refuses the norm (with a clear error)."""
    parameters = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in _BUDGETS.items() if k in parameters}
    kwargs["epsilon"] = _EPSILON[norm or "l2"]
    if norm is not None:
        kwargs["norm"] = norm
    try:
        attack = cls(**kwargs)
    except ValueError as error:
        assert "norm" in str(error) or "l1" in str(error), error
        return None
    if norm is None:
        attack = cls(**{**kwargs, "epsilon": _EPSILON[attack.norm]})
    return attack


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input(_SHAPE[1:]), keras.layers.Flatten(),
                             keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])


def _data():
    rng = np.random.default_rng(0)
    return rng.random(_SHAPE).astype("float32"), (np.arange(_SHAPE[0]) % 3).astype("int32")


def _traced(attack, model):
    return tf.function(lambda x, y, seed: attack(model, x, y, scale=_SCALE, seed=seed))


def _norm_of(delta, norm):
    flat = delta.reshape(len(delta), -1).astype(np.float64)
    return {"linf": np.abs(flat).max(1), "l2": np.linalg.norm(flat, axis=1),
            "l1": np.abs(flat).sum(1)}[norm]


def test_every_exported_attack_is_enumerated():
    names = {cls.__name__ for cls in ATTACK_CLASSES}
    assert {"FGSM", "PGD", "APGD", "Square", "DeepFool", "CarliniWagner"} <= names


@pytest.mark.parametrize("cls, norm", list(_cases()))
def test_seeded_output_is_reproducible_in_the_ball_and_box_and_stateless(cls, norm):
    attack = _build(cls, norm)
    if attack is None:
        pytest.skip(f"{cls.__name__} refuses norm {norm!r} with a clear error")
    assert "seed" in inspect.signature(attack.perturb).parameters
    model, (x, y) = _model(), _data()
    state = dict(vars(attack))
    seed = tf.constant([7, 11], tf.int64)
    # A stateful random op draws new numbers on each call of the same graph.
    fn = _traced(attack, model)
    first = fn(x, y, seed).numpy()
    second = fn(x, y, seed).numpy()
    np.testing.assert_array_equal(first, second)
    assert dict(vars(attack)) == state
    assert not any(isinstance(v, tf.Variable) for v in vars(attack).values())
    assert first.shape == x.shape and first.dtype == np.float32
    assert np.all(_norm_of(first - x, attack.norm) <= attack.epsilon * _SCALE * (1 + 1e-5) + 1e-6)
    assert first.min() >= attack.clip_min and first.max() <= attack.clip_max


@pytest.mark.parametrize("cls", ATTACK_CLASSES, ids=lambda cls: cls.__name__)
def test_trains_one_advreg_step_as_the_training_attack(cls):
    attack = next(a for a in (_build(cls, n) for n in (None, "linf", "l2", "l1")
                              if n is None or "norm" in inspect.signature(cls).parameters)
                  if a is not None)
    base, (x, y) = _model(), _data()
    before = [w.copy() for w in base.get_weights()]
    model = kar.AdvRegModel(base, objective=AdversarialLoss(attack), seed=3)
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert any(not np.allclose(b, a) for b, a in zip(before, base.get_weights()))
