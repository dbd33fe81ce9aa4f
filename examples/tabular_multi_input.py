"""A two-input tabular model: numeric features attacked in their box, a categorical input untouched.

Data: scikit-learn's breast cancer data (569 examples, bundled, offline). 29 of
its 30 numeric features, min-max scaled to [0, 1] on the training split, are
the input "numeric"; the 30th, "worst area", is binned into quartiles and fed
as the integer input "size_bin" through an embedding, a stand-in for a
categorical or id column. The attack perturbs only "numeric" (linf, epsilon
0.05 in scaled units, box [0, 1]); "size_bin" passes through unchanged,
which the script checks. Trained with Madry PGD-7 AT, evaluated with the
fast suite (PGD-20, APGD-CE) and PGD-20 through the multi-input adapter.

Full run:  python examples/tabular_multi_input.py --out runs/tabular
Smoke run: python examples/tabular_multi_input.py --smoke --out /tmp/tabular
Cost: about a minute on 2 CPU cores (--smoke: a few seconds after TensorFlow starts).
"""
import argparse
import json
import os


def load_data(seed=0):
    """`(x_train, y_train), (x_test, y_test)`, x dicts {"numeric", "size_bin"}."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    area = list(data.feature_names).index("worst area")
    numeric = np.delete(data.data, area, axis=1)
    train, test = train_test_split(np.arange(len(data.target)), test_size=0.3,
                                   random_state=seed, stratify=data.target)
    low, high = numeric[train].min(0), numeric[train].max(0)
    scaled = np.clip((numeric - low) / (high - low), 0.0, 1.0).astype("float32")
    edges = np.quantile(data.data[train, area], [0.25, 0.5, 0.75])
    bins = np.digitize(data.data[:, area], edges).astype("int32")[:, None]

    def split(index):
        return {"numeric": scaled[index], "size_bin": bins[index]}, data.target[index]

    return split(train), split(test)


def build_model(n_numeric, n_bins=4):
    import keras

    numeric = keras.Input((n_numeric,), name="numeric")
    size_bin = keras.Input((1,), name="size_bin", dtype="int32")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(n_bins, 4)(size_bin))
    hidden = keras.layers.Concatenate()([numeric, embedded])
    hidden = keras.layers.Dense(32, activation="relu")(hidden)
    return keras.Model({"numeric": numeric, "size_bin": size_bin},
                       keras.layers.Dense(2)(hidden), name="tabular")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--smoke", "--quick", action="store_true",
                        help="2 epochs, PGD-2 training, 10 test examples")
    parser.add_argument("--epsilon", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    import keras_advreg as kar
    from keras_advreg.inputs import PackedModel, PerturbSpec

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_data(args.seed)
    spec = PerturbSpec(["numeric"], clip_min=0.0, clip_max=1.0)  # "size_bin" untouched
    base = build_model(x_train["numeric"].shape[1])
    model = kar.AdvRegModel(base, kar.methods.madry(epsilon=args.epsilon,
                                                    steps=2 if args.smoke else 7),
                            perturb=spec, seed=args.seed)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=32, epochs=2 if args.smoke else 60,
                        verbose=0)

    n = 10 if args.smoke else len(y_test)
    test = ({k: v[:n] for k, v in x_test.items()}, y_test[:n])
    # The adversarial points keep the categorical input bit for bit.
    adapter = PackedModel(base, spec, test[0])
    attack = spec.attack_for(kar.attacks.PGD(epsilon=args.epsilon, steps=20))
    adversarial = adapter.unpack(attack(adapter, adapter.points, test[1]))
    assert np.array_equal(np.asarray(adversarial["size_bin"]), test[0]["size_bin"])
    report = kar.evaluation.evaluate_robustness(base, test, args.epsilon, suite="fast",
                                                perturb=spec, progress=False)
    os.makedirs(args.out, exist_ok=True)
    base.save(os.path.join(args.out, "model.keras"))
    with open(os.path.join(args.out, "history.json"), "w") as f:
        json.dump({k: [float(v) for v in vs] for k, vs in history.history.items()}, f)
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report.to_dict(), f, indent=2)
    print(f"clean {report.clean_accuracy:.3f}, robust {report.robust_accuracy:.3f} "
          f"(linf eps={args.epsilon} on 'numeric' only, {n} test examples)")
    return report


if __name__ == "__main__":
    main()
