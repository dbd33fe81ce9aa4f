"""Adversarial training of a text classifier on its word embeddings, NSL style (l2).

Neural Structured Learning perturbs text models in embedding space: token ids
cannot move, their embeddings can. Here the model takes two inputs, the token
ids "tokens" and "embedding_delta", a float tensor added to the embedded
tokens (zero in the data). The attack perturbs only "embedding_delta", with no
box (clip_min=clip_max=None) under the l2 norm joint over the whole sequence,
so the embedding layer itself is trained too; the ids pass through unchanged.
The objective is NSL's, migrated by `from_nsl_config(multiplier=0.2,
adv_step_size=1.0, adv_grad_norm="l2", feature_names="embedding_delta")`:
loss(x) + 0.2 * loss(x + 1.0 g/||g||). A plain model (same network and
data, cross-entropy only) is trained beside it for comparison.

Data (synthesized, offline; scikit-learn's 20 newsgroups needs a download): a
vocabulary of 60 tokens, sequences of 16; tokens 2-11 are "positive", 12-21
"negative", the rest neutral; the label is whether a sequence holds more
positive than negative tokens (ties dropped). Both models are evaluated with
PGD-20 and the fast suite at l2 radius 1.0 on the embeddings of each
sequence (joint over its 16 x 16 values; a trained token embedding has norm
about 1). Measured (full run, seed 0, 1000 test sequences): see
docs/multi_input.md.

Full run:  python examples/text_embedding_adversarial.py --out runs/text
Smoke run: python examples/text_embedding_adversarial.py --smoke --out /tmp/text
Cost: about three minutes on 2 CPU cores (--smoke: seconds after TensorFlow starts).
"""
import argparse
import json
import os

VOCABULARY, LENGTH, DIMENSION = 60, 16, 16


def make_data(n, seed):
    """Token sequences and labels: more positive (2-11) than negative (12-21) tokens."""
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens = rng.integers(2, VOCABULARY, (3 * n, LENGTH)).astype("int32")
    score = ((tokens >= 2) & (tokens < 12)).sum(1) - ((tokens >= 12) & (tokens < 22)).sum(1)
    keep = np.flatnonzero(score != 0)[:n]
    x = {"tokens": tokens[keep],
         "embedding_delta": np.zeros((len(keep), LENGTH, DIMENSION), "float32")}
    return x, (score[keep] > 0).astype("int32")


def build_model():
    """ids -> embedding (+ delta) -> mean pooling -> dense: the delta is NSL's perturbation."""
    import keras

    tokens = keras.Input((LENGTH,), name="tokens", dtype="int32")
    delta = keras.Input((LENGTH, DIMENSION), name="embedding_delta")
    embedded = keras.layers.Add()([keras.layers.Embedding(VOCABULARY, DIMENSION)(tokens), delta])
    hidden = keras.layers.GlobalAveragePooling1D()(
        keras.layers.Dense(32, activation="relu")(embedded))
    return keras.Model({"tokens": tokens, "embedding_delta": delta},
                       keras.layers.Dense(2)(hidden), name="text")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--smoke", "--quick", action="store_true",
                        help="256 training sequences, 2 epochs, 10 test examples")
    parser.add_argument("--epsilon", type=float, default=1.0, help="l2 radius of the evaluation")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    import keras_advreg as kar

    keras.utils.set_random_seed(args.seed)
    x_train, y_train = make_data(256 if args.smoke else 4000, args.seed)
    x_test, y_test = make_data(10 if args.smoke else 1000, args.seed + 1)
    objective = kar.methods.from_nsl_config(multiplier=0.2, adv_step_size=1.0,
                                            adv_grad_norm="l2",
                                            feature_names="embedding_delta")
    base = build_model()
    model = kar.AdvRegModel(base, objective, seed=args.seed)  # perturb from the objective
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    epochs = 2 if args.smoke else 15
    history = model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=0)
    plain = build_model()
    plain_model = kar.AdvRegModel(plain, kar.methods.standard())
    plain_model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    plain_model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=0)

    def evaluate(classifier):
        return kar.evaluation.evaluate_robustness(classifier, (x_test, y_test), args.epsilon,
                                                  norm="l2", suite="fast",
                                                  perturb=model.perturb, progress=False)

    report, plain_report = evaluate(base), evaluate(plain)
    os.makedirs(args.out, exist_ok=True)
    base.save(os.path.join(args.out, "model.keras"))
    with open(os.path.join(args.out, "history.json"), "w") as f:
        json.dump({k: [float(v) for v in vs] for k, vs in history.history.items()}, f)
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report.to_dict(), f, indent=2)
    with open(os.path.join(args.out, "plain_report.json"), "w") as f:
        json.dump(plain_report.to_dict(), f, indent=2)
    embedding = next(layer for layer in base.layers if isinstance(layer, keras.layers.Embedding))
    mean_norm = float(np.mean(np.linalg.norm(embedding.get_weights()[0], axis=1)))
    print(f"NSL-style adversarial: clean {report.clean_accuracy:.3f}, robust "
          f"{report.robust_accuracy:.3f}; plain: clean {plain_report.clean_accuracy:.3f}, "
          f"robust {plain_report.robust_accuracy:.3f} (l2 eps={args.epsilon} on the "
          f"sequence's embeddings; mean token embedding norm {mean_norm:.2f}; "
          f"{len(y_test)} test examples)")
    return report


if __name__ == "__main__":
    main()
