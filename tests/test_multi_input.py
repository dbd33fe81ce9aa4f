"""Multi-input models: PerturbSpec, the PackedModel adapter, AdvRegModel(perturb=...).

Reference values are computed by hand in float64 NumPy: the joint-norm
projection, and FGSM on a 2-input linear model, where the cross-entropy's input
gradient is (softmax(z) - onehot(y)) W_i^T for input i.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_advreg as kar
from keras_advreg import nsl
from keras_advreg.attacks import FGSM, PGD
from keras_advreg.inputs import PackedModel, PerturbSpec
from keras_advreg.objectives import StepContext

N_NUMERIC, N_IDS, N_CLASSES = 5, 4, 3
RNG = np.random.default_rng(0)
X = {"numeric": RNG.random((24, N_NUMERIC)).astype("float32"),
     "category": RNG.integers(0, N_IDS, (24, 1)).astype("int32")}
Y = np.arange(24) % N_CLASSES


def _dict_model():
    numeric = keras.Input((N_NUMERIC,), name="numeric")
    category = keras.Input((1,), name="category", dtype="int32")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(N_IDS, 3)(category))
    hidden = keras.layers.Dense(8, activation="tanh")(
        keras.layers.Concatenate()([numeric, embedded]))
    return keras.Model({"numeric": numeric, "category": category},
                       keras.layers.Dense(N_CLASSES)(hidden))


def _list_model():
    numeric = keras.Input((N_NUMERIC,))
    category = keras.Input((1,), dtype="int32")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(N_IDS, 3)(category))
    hidden = keras.layers.Dense(8, activation="tanh")(
        keras.layers.Concatenate()([numeric, embedded]))
    return keras.Model([numeric, category], keras.layers.Dense(N_CLASSES)(hidden))


def _compiled(model):
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


METHODS = {"madry": lambda: kar.methods.madry(epsilon=0.1, steps=2),
           "trades": lambda: kar.methods.trades(epsilon=0.1, steps=2),
           "gradient_regularization": lambda: kar.methods.gradient_regularization(lam=0.1)}


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("structure", ["dict", "list"])
def test_multi_input_models_train(method, structure):
    base = _dict_model() if structure == "dict" else _list_model()
    x = X if structure == "dict" else [X["numeric"], X["category"]]
    name = "numeric" if structure == "dict" else 0
    model = _compiled(kar.AdvRegModel(base, METHODS[method](), perturb=PerturbSpec([name]),
                                      seed=1))
    before = [w.copy() for w in base.get_weights()]
    history = model.fit(x, Y, batch_size=8, epochs=1, verbose=0)
    assert all(np.isfinite(v[-1]) for v in history.history.values())
    assert any(not np.array_equal(a, b) for a, b in zip(before, base.get_weights()))


def _adversarial_inputs(base, spec, attack, x=X):
    """The unpacked adversarial batch the training step computes."""
    model = _compiled(kar.AdvRegModel(base, [kar.objectives.AdversarialLoss(attack)],
                                      perturb=spec, seed=3))
    context = StepContext(model, {k: tf.constant(v) for k, v in x.items()}, Y, None,
                          training=False)
    return context.packed.unpack(context.inputs(attack))


def test_untouched_inputs_and_masked_features_are_bit_identical():
    mask = np.array([1, 0, 1, 1, 0])
    spec = PerturbSpec(["numeric"], mask={"numeric": mask})
    adversarial = _adversarial_inputs(_dict_model(), spec, PGD(epsilon=0.2, steps=3))
    np.testing.assert_array_equal(adversarial["category"].numpy(), X["category"])
    numeric = adversarial["numeric"].numpy()
    np.testing.assert_array_equal(numeric[:, mask == 0], X["numeric"][:, mask == 0])
    assert np.abs(numeric[:, mask == 1] - X["numeric"][:, mask == 1]).max() > 0.05


def test_each_input_stays_in_its_own_box():
    numeric = keras.Input((3,), name="a")
    other = keras.Input((2,), name="b")
    base = keras.Model({"a": numeric, "b": other}, keras.layers.Dense(N_CLASSES)(
        keras.layers.Concatenate()([numeric, other])))
    x = {"a": np.full((24, 3), 0.9, "float32"), "b": np.full((24, 2), -1.9, "float32")}
    spec = PerturbSpec(["a", "b"], clip_min={"a": 0.0, "b": -2.0}, clip_max={"a": 1.0, "b": None})
    adversarial = _adversarial_inputs(base, spec, PGD(epsilon=0.5, steps=5), x)
    a, b = adversarial["a"].numpy(), adversarial["b"].numpy()
    # The attacks move in the hull [-2, 1e30]; each input is clipped to its own box.
    assert a.min() >= 0.0 and a.max() == 1.0 and b.min() == -2.0
    assert b.max() > -1.9 + 0.2  # b's box has no upper bound
    assert np.all(np.abs(np.concatenate([a - x["a"], b - x["b"]], 1)) <= 0.5 + 1e-6)


def _two_input_linear(w_a, w_b):
    a, b = keras.Input((w_a.shape[0],), name="a"), keras.Input((w_b.shape[0],), name="b")
    dense = keras.layers.Dense(N_CLASSES, use_bias=False)
    base = keras.Model({"a": a, "b": b}, dense(keras.layers.Concatenate()([a, b])))
    dense.set_weights([np.concatenate([w_a, w_b]).astype("float32")])
    return base


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_joint_norm_projection_matches_hand_computation(norm):
    base = _two_input_linear(RNG.normal(size=(4, 3)), RNG.normal(size=(3, 3)))
    x = {"a": RNG.random((6, 4)).astype("float32"), "b": RNG.random((6, 3)).astype("float32")}
    delta = {"a": RNG.normal(size=(6, 4)) * 0.5, "b": RNG.normal(size=(6, 3)) * 0.5}
    mask, scale, epsilon = np.array([1, 1, 0, 1]), {"a": 1.0, "b": 2.0}, 0.3
    spec = PerturbSpec(["a", "b"], clip_min=-10.0, clip_max=10.0, mask={"a": mask},
                       epsilon_scale=scale)
    clean = PackedModel(base, spec, x)
    moved = PackedModel(base, spec, {k: (x[k] + delta[k]).astype("float32") for k in x})
    attack = PGD(epsilon=epsilon, norm=norm, clip_min=-5.0, clip_max=5.0)
    projected = clean.unpack(attack.project(moved.points, clean.points, epsilon))
    # By hand: the joint vector concat(delta_a[mask] / 1, delta_b / 2).
    d_a = (x["a"] + delta["a"]).astype("float32").astype("float64") - x["a"]
    d_b = (x["b"] + delta["b"]).astype("float32").astype("float64") - x["b"]
    d_a[:, mask == 0] = 0.0
    if norm == "linf":
        want_a, want_b = np.clip(d_a, -epsilon, epsilon), np.clip(d_b, -2 * epsilon, 2 * epsilon)
    else:
        size = np.sqrt((d_a ** 2).sum(1) + ((d_b / 2) ** 2).sum(1))[:, None]
        factor = np.minimum(1.0, epsilon / size)
        want_a, want_b = d_a * factor, d_b * factor
    np.testing.assert_allclose(projected["a"].numpy() - x["a"], want_a, atol=2e-6)
    np.testing.assert_allclose(projected["b"].numpy() - x["b"], want_b, atol=2e-6)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fgsm_on_two_input_linear_model_matches_hand_derivation(norm):
    w_a, w_b = RNG.normal(size=(3, 3)), RNG.normal(size=(2, 3))
    base = _two_input_linear(w_a, w_b)
    x = {"a": np.full((4, 3), 0.5, "float32"), "b": RNG.random((4, 2)).astype("float32")}
    y = np.array([0, 1, 2, 0])
    spec = PerturbSpec(["a", "b"], clip_min=None, clip_max=None, epsilon_scale={"b": 0.5})
    packed = PackedModel(base, spec, x)
    attack = spec.attack_for(FGSM(epsilon=0.1, norm=norm))
    adversarial = packed.unpack(attack(packed, packed.points, y))
    w = np.concatenate([w_a, w_b]).astype("float32").astype("float64")
    z = np.concatenate([x["a"], x["b"]], 1).astype("float64") @ w
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g = (p - np.eye(N_CLASSES)[y]) @ w.T           # d loss / d (a, b)
    s = np.array([1.0, 1.0, 1.0, 0.5, 0.5])         # epsilon scales per feature
    g_packed = g * s                                # d loss / d (a / 1, b / 0.5)
    if norm == "linf":
        step = 0.1 * np.sign(g_packed)
    else:
        step = 0.1 * g_packed / np.linalg.norm(g_packed, axis=1, keepdims=True)
    want = step * s                                 # back to input units
    got = np.concatenate([adversarial["a"].numpy() - x["a"], adversarial["b"].numpy() - x["b"]], 1)
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_save_and_load_round_trip(tmp_path):
    spec = PerturbSpec(["numeric"], clip_min=0.0, clip_max=1.0,
                       mask={"numeric": [1, 1, 0, 1, 1]}, epsilon_scale={"numeric": 0.5})
    model = _compiled(kar.AdvRegModel(_dict_model(), kar.methods.madry(epsilon=0.1, steps=2),
                                      perturb=spec, seed=4))
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True
    assert isinstance(loaded.perturb, PerturbSpec)
    assert loaded.perturb.get_config() == spec.get_config()
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))
    loaded.fit(X, Y, batch_size=8, epochs=1, verbose=0)


def test_list_positions_survive_saving(tmp_path):
    spec = PerturbSpec([0], clip_min={0: -1.0}, mask={0: [0, 1, 1, 1, 1]})
    model = _compiled(kar.AdvRegModel(_list_model(), kar.methods.madry(epsilon=0.1, steps=1),
                                      perturb=spec))
    model.save(str(tmp_path / "m.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "m.keras"))
    assert loaded.perturb.get_config() == spec.get_config()


@pytest.mark.parametrize("make, words", [
    (lambda: kar.AdvRegModel(_dict_model(), perturb=PerturbSpec(["numerc"])),
     ["`perturb`", "'numerc'", "'numeric'"]),
    (lambda: kar.AdvRegModel(_dict_model(), perturb=PerturbSpec(
        ["numeric"], mask={"numeric": np.ones(4)})), ["`mask`", "(4,)", "(5,)"]),
    (lambda: kar.AdvRegModel(keras.Sequential([keras.Input((4,), name="pixels"),
                                               keras.layers.Dense(3)]),
                             perturb=PerturbSpec(["image"])), ["`perturb`", "'image'", "pixels"]),
    (lambda: PerturbSpec(["numeric"], clip_min={"other": 0.0}), ["`clip_min`", "other"]),
    (lambda: PerturbSpec(["numeric"], mask={"numeric": [0.5, 1]}), ["`mask`", "0 and 1"]),
    (lambda: PerturbSpec(["numeric"], epsilon_scale={"numeric": 0}), ["epsilon_scale"]),
    (lambda: kar.AdvRegModel(_dict_model(), perturb={"inputs": ["numeric"]}), ["`perturb`"]),
])
def test_errors_name_the_argument(make, words):
    with pytest.raises(ValueError) as error:
        make()
    for word in words:
        assert word in str(error.value)


def test_integer_inputs_cannot_be_perturbed():
    model = _compiled(kar.AdvRegModel(_dict_model(), kar.methods.madry(epsilon=0.1, steps=1),
                                      perturb=PerturbSpec(["category"])))
    with pytest.raises(ValueError, match="only float inputs"):
        model.fit(X, Y, batch_size=8, verbose=0)


def test_single_input_model_with_a_mask():
    base = keras.Sequential([keras.Input((4,), name="pixels"), keras.layers.Dense(3)])
    x = RNG.random((6, 4)).astype("float32")
    spec = PerturbSpec(["pixels"], mask={"pixels": [1, 0, 0, 1]})
    model = _compiled(kar.AdvRegModel(base, [kar.objectives.AdversarialLoss(
        PGD(epsilon=0.2, steps=2))], perturb=spec))
    context = StepContext(model, tf.constant(x), Y[:6], None, training=False)
    adversarial = context.packed.unpack(context.inputs(model.attacks[0])).numpy()
    np.testing.assert_array_equal(adversarial[:, 1:3], x[:, 1:3])
    assert context.x.shape == (6, 2)


def test_from_nsl_config_maps_feature_mask_and_names():
    mask = np.array([[1, 0, 1, 1, 1]])
    objective = kar.methods.from_nsl_config(multiplier=0.3, adv_step_size=0.05,
                                            adv_grad_norm="infinity", clip_value_min=0.0,
                                            feature_mask={"numeric": mask})
    spec = objective.perturb
    assert spec.inputs == ["numeric"] and spec.box("numeric") == (0.0, 1e30)
    np.testing.assert_array_equal(spec.mask["numeric"], mask.astype(bool))
    assert objective[1].weight == 0.3 and objective[1].attack.epsilon == 0.05
    model = _compiled(kar.AdvRegModel(_dict_model(), objective))
    assert model.perturb is spec
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    # One mask for one named feature; names without a mask: every feature of them.
    single = nsl.from_nsl_config(feature_mask=mask, feature_names="numeric").perturb
    assert single.inputs == ["numeric"] and single.clip_min["numeric"] is None
    assert nsl.from_nsl_config(feature_names=["a", "b"]).perturb.mask == {}
    with pytest.raises(ValueError, match="feature_mask"):
        nsl.from_nsl_config(feature_mask=mask)
    with pytest.raises(ValueError, match="feature_mask"):
        nsl.from_nsl_config(feature_mask=mask, feature_names=["a", "b"])


def test_evaluate_robustness_of_a_dict_input_model(tmp_path):
    from keras_advreg.attacks import APGD, FAB, Square

    base = _dict_model()
    spec = PerturbSpec(["numeric"], mask={"numeric": [1, 1, 1, 0, 1]})
    suite = [APGD(0.2, steps=10), APGD(0.2, steps=10, loss="targeted_dlr", n_target_classes=2),
             FAB(0.2, steps=10, targeted=True, n_target_classes=2), Square(0.2, n_queries=30)]
    report = kar.evaluation.evaluate_robustness(base, (X, Y), 0.2, suite=suite, perturb=spec,
                                                progress=False, batch_size=10)
    assert list(report.attacks) == ["apgd_ce", "apgd_t", "fab_t", "square"]
    assert report.robust_accuracy <= min(report.pgd20, *report.attacks.values())
    assert report.robust_accuracy <= report.clean_accuracy and report.n_examples == 24
    # A whole-box budget breaks every point the numeric features can flip; the
    # fast suite (PGD-20, APGD-CE) runs by name.
    fast = kar.evaluation.evaluate_robustness(base, (X, Y), 1.0, suite="fast", perturb=spec,
                                              progress=False)
    assert fast.robust_accuracy <= report.robust_accuracy
    dataset = tf.data.Dataset.from_tensor_slices((X, Y)).batch(10)
    first = kar.evaluation.evaluate_robustness(base, dataset, 0.2, suite=[PGD(0.2, steps=3)],
                                               perturb=spec, n_examples=20, progress=False)
    assert first.n_examples == 20 and first.robust_accuracy <= first.clean_accuracy
    assert "curve" in first.not_computed
    first.save(str(tmp_path))
    assert "robust_accuracy" in (tmp_path / "report.md").read_text()
    assert kar.evaluation.RobustnessReport.load(str(tmp_path)).n_examples == 20
    with pytest.raises(ValueError, match="perturb"):
        kar.evaluation.evaluate_robustness(base, (X, Y), 0.2, progress=False)
    with pytest.raises(ValueError, match="hessian"):
        kar.evaluation.evaluate_robustness(base, (X, Y), 0.2, perturb=spec, hessian=True)


def test_dict_input_model_without_perturb():
    plain = _compiled(kar.AdvRegModel(_dict_model(), kar.methods.standard()))
    assert np.isfinite(plain.fit(X, Y, batch_size=8, verbose=0).history["loss"][-1])
    attacked = _compiled(kar.AdvRegModel(_dict_model(), kar.methods.madry(epsilon=0.1, steps=1)))
    with pytest.raises(ValueError, match="perturb"):
        attacked.fit(X, Y, batch_size=8, verbose=0)


def _attack_cases():
    """Every exported attack and norm it takes, with small budgets (as the attack contract)."""
    import inspect

    from keras_advreg import attacks, checks

    budgets = {"steps": 3, "n_queries": 12, "binary_search_steps": 2, "restarts": 1,
               "n_target_classes": 2}
    epsilons = {"linf": 0.1, "l2": 0.5, "l1": 1.0}
    classes = sorted((v for v in vars(attacks).values() if inspect.isclass(v)
                      and issubclass(v, attacks.Attack) and v is not attacks.Attack),
                     key=lambda cls: cls.__name__)
    for cls in classes:
        parameters = inspect.signature(cls).parameters
        for norm in (checks.ATTACK_NORMS if "norm" in parameters else ("l2",)):
            kwargs = {k: v for k, v in budgets.items() if k in parameters}
            kwargs.update(epsilon=epsilons[norm], **({"norm": norm} if "norm" in parameters
                                                     else {}))
            for box in ("unit", "unbounded"):
                yield pytest.param(cls, kwargs, box, id=f"{cls.__name__}-{norm}-{box}")


@pytest.mark.parametrize("cls, kwargs, box", list(_attack_cases()))
def test_every_attack_through_the_adapter(cls, kwargs, box):
    try:
        attack = cls(**kwargs)
    except ValueError as error:  # Square has no l1 version
        assert "l1" in str(error)
        pytest.skip(str(error))
    image = keras.Input((4, 4, 1), name="image")
    side = keras.Input((3,), name="side")
    ids = keras.Input((1,), name="ids", dtype="int32")
    features = keras.layers.Concatenate()([
        keras.layers.Flatten()(image), side,
        keras.layers.Flatten()(keras.layers.Embedding(4, 2)(ids))])
    base = keras.Model({"image": image, "side": side, "ids": ids}, keras.layers.Dense(3)(
        keras.layers.Dense(8, activation="relu")(features)))
    x = {"image": RNG.random((8, 4, 4, 1)).astype("float32"),
         "side": RNG.random((8, 3)).astype("float32"),
         "ids": RNG.integers(0, 4, (8, 1)).astype("int32")}
    y = np.arange(8) % 3
    mask = np.ones((4, 4, 1))
    mask[0] = 0  # the first row never moves
    bounds = (0.0, 1.0) if box == "unit" else (None, None)
    spec = PerturbSpec(["image"], clip_min=bounds[0], clip_max=bounds[1], mask={"image": mask})
    if cls.__name__ == "CarliniWagner" and box == "unbounded":
        with pytest.raises(ValueError, match="unbounded"):
            spec.attack_for(attack)
        return
    packed = PackedModel(base, spec, x)
    seed = tf.constant([[5, i] for i in range(8)], tf.int64)
    adversarial = packed.unpack(spec.attack_for(attack)(packed, packed.points, y, scale=0.5,
                                                        seed=seed))
    np.testing.assert_array_equal(adversarial["side"].numpy(), x["side"])
    np.testing.assert_array_equal(adversarial["ids"].numpy(), x["ids"])
    image_adv = adversarial["image"].numpy()
    np.testing.assert_array_equal(image_adv[:, 0], x["image"][:, 0])
    assert np.all(np.isfinite(image_adv))
    if box == "unit":
        assert image_adv.min() >= 0.0 and image_adv.max() <= 1.0
    if attack.epsilon > 0:  # DeepFool and CW without a radius are minimal-distance attacks
        delta = (image_adv - x["image"]).reshape(8, -1).astype(np.float64)
        size = {"linf": np.abs(delta).max(1), "l2": np.linalg.norm(delta, axis=1),
                "l1": np.abs(delta).sum(1)}[attack.norm]
        assert np.all(size <= attack.epsilon * 0.5 * (1 + 1e-5) + 1e-6)


def test_l1_projection_with_an_unbounded_box_equals_the_finite_one():
    from keras_advreg.attacks import geometry

    delta = tf.constant(RNG.normal(size=(4, 20)).astype("float32"))
    ones = tf.ones_like(delta)
    finite = geometry.project_l1_box(delta, 1.0, -10.0 * ones, 10.0 * ones).numpy()
    unbounded = geometry.project_l1_box(delta, 1.0, -1e30 * ones, 1e30 * ones).numpy()
    np.testing.assert_allclose(np.abs(finite).sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(unbounded, finite, atol=1e-6)


def test_fit_on_a_dataset_of_feature_dicts():
    dataset = tf.data.Dataset.from_tensor_slices((X, Y)).batch(8)
    model = _compiled(kar.AdvRegModel(_dict_model(), kar.methods.madry(epsilon=0.1, steps=2),
                                      perturb=PerturbSpec("numeric")))
    history = model.fit(dataset, validation_data=dataset, epochs=1, verbose=0).history
    assert np.isfinite(history["val_loss"][0]) and 0.0 <= history["adv_accuracy"][0] <= 1.0
    outside = {"numeric": X["numeric"] + 1.0, "category": X["category"]}
    with pytest.raises(ValueError, match=r"x\['numeric'\]"):
        model.fit(outside, Y, verbose=0)


def test_trains_under_mirrored_strategy():
    # Reduction through one device, as the other training tests: CPU collectives of
    # several strategies in one test process can collide on their instance keys.
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    with strategy.scope():
        model = _compiled(kar.AdvRegModel(_dict_model(), kar.methods.madry(epsilon=0.1, steps=2),
                                          perturb=PerturbSpec(["numeric"],
                                                              mask={"numeric": [1, 1, 0, 1, 1]})))
    history = model.fit(X, Y, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and 0.0 <= history["adv_accuracy"][0] <= 1.0


def test_robust_accuracy_monitor_refuses_feature_dicts():
    with pytest.raises(ValueError, match="perturb"):
        kar.callbacks.RobustAccuracyMonitor(X, Y, epsilon=0.1)
