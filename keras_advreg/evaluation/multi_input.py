"""Robust accuracy of multi-input models, through the `PackedModel` adapter.

What `evaluate_robustness(..., perturb=spec)` runs: clean accuracy, the suite
(each attack only on the points still robust, worst case per example) and a
stand-alone PGD-20, all on the packed perturbed features of each batch under
the joint norm (`keras_advreg.inputs`). The curve, the masking checks, the
bounds, DeepFool distances, resuming and `tf.distribute` need single-tensor
inputs and are not run (the report's `not_computed` lists them).
"""

import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_advreg import checks, run_folder
from keras_advreg.attacks.base import logits_of
from keras_advreg.evaluation.report import JSON_NAME, MARKDOWN_NAME, RobustnessReport
from keras_advreg.inputs import PackedModel
from keras_advreg.statistics import wilson_interval

NOT_COMPUTED = ("curve", "unbounded", "masking checks", "gradient_norms", "bounds",
                "minimal distances", "escalation", "per_example", "resume_dir", "strategy")


def _structure(x):
    """`x` as a dict or list of numpy arrays, and its number of examples."""
    if isinstance(x, dict):
        arrays = {k: np.asarray(v) for k, v in x.items()}
    elif isinstance(x, (list, tuple)):
        arrays = [np.asarray(v) for v in x]
    else:
        arrays = np.asarray(x)
    values = list(arrays.values()) if isinstance(arrays, dict) else (
        arrays if isinstance(arrays, list) else [arrays])
    sizes = {len(v) for v in values}
    if len(sizes) != 1:
        raise ValueError(f"The inputs of `data` differ in length: {sorted(sizes)}.")
    return arrays, sizes.pop()


def _take(arrays, index):
    if isinstance(arrays, dict):
        return {k: v[index] for k, v in arrays.items()}
    if isinstance(arrays, list):
        return [v[index] for v in arrays]
    return arrays[index]


def _as_arrays(data, n_examples):
    if isinstance(data, tf.data.Dataset):
        xs, ys = [], []
        for x, y, *_ in data:
            xs.append(tf.nest.map_structure(np.asarray, x)), ys.append(np.asarray(y))
        x = tf.nest.map_structure(lambda *parts: np.concatenate(parts), *xs)
        y = np.concatenate(ys)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise ValueError("`data` must be a pair `(x, y)` (x a dict or list of arrays) or a "
                         f"tf.data.Dataset of `(x, y)` batches, got {type(data).__name__}.")
    x, n = _structure(x)
    y = checks.sparse_labels(y)
    if len(y) != n:
        raise ValueError(f"`x` and `y` differ in length: {n} vs {len(y)}.")
    if n_examples is not None:
        n = min(checks.integer("n_examples", n_examples, minimum=1), n)
        x, y = _take(x, slice(0, n)), y[:n]
    return x, y, n


def evaluate_multi_input(model, data, perturb, epsilon, attacks, norm, n_examples=None,
                         batch_size=128, seed=0, suite_name=None, attack_name=None):
    """Robust accuracy of a multi-input `model` under `attacks` and PGD-20.

    Args:
        model: a Keras classifier on a dict or list of inputs, returning logits.
        data: `(x, y)` with x a dict or list of arrays, or a dataset of such batches.
        perturb: the `PerturbSpec`.
        epsilon: the radius of the joint norm.
        attacks: the suite's attacks (their boxes are replaced by the spec's).
        norm: the threat model's norm.
        n_examples: evaluate the first n examples (None: all).
        batch_size: examples per call.
        seed: the global Keras/TF seed, set here.
        suite_name: the suite's name for the report.
        attack_name: the function naming an attack (`suite.attack_name`).

    Returns:
        A dict: `clean_accuracy`, `robust_accuracy` (worst case per example
        over the suite and PGD-20), `attacks` (cumulative accuracy after each),
        `pgd20` (PGD-20 alone), `epsilon`, `norm`, `n_examples`, `intervals`,
        `multi_input` (the spec and the norm's definition), `not_computed`.
    """
    from keras_advreg.evaluation.suite import _pgd  # the evaluation's PGD-20

    start = time.time()
    keras.utils.set_random_seed(seed)
    perturb.bind(model)
    x, y, n = _as_arrays(data, n_examples)
    packed_attacks = [perturb.attack_for(a) for a in attacks]
    pgd = perturb.attack_for(_pgd(epsilon, norm, perturb.hull()))

    # One trace per attack: a None batch dimension serves every batch and subset.
    x_spec = tf.nest.map_structure(lambda v: tf.TensorSpec([None, *v.shape[1:]], v.dtype), x)
    signature = [x_spec, tf.TensorSpec([None], tf.int32)]

    def fooled_fn(attack):
        @tf.function(input_signature=signature)
        def fooled(xb, yb):
            adapter = PackedModel(model, perturb, xb)
            logits = logits_of(adapter, attack(adapter, adapter.points, yb))
            return tf.not_equal(tf.argmax(logits, axis=1, output_type=tf.int32), yb)
        return fooled

    def run(fn, mask):
        """Per example of `mask`'s True entries: fooled; batched."""
        index = np.flatnonzero(mask)
        out = np.zeros(n, bool)
        for i in range(0, len(index), batch_size):
            part = index[i:i + batch_size]
            out[part] = fn(tf.nest.map_structure(tf.constant, _take(x, part)),
                           tf.constant(y[part], tf.int32)).numpy()
        return out

    logits = np.concatenate([np.asarray(logits_of(model, tf.nest.map_structure(
        tf.constant, _take(x, slice(i, i + batch_size))))) for i in range(0, n, batch_size)])
    y = checks.checked_labels(y, logits.shape[1], "data")
    correct = np.argmax(logits, axis=1) == y
    robust, accuracy_after = correct.copy(), {}
    for attack in packed_attacks:
        name = attack_name(attack)
        name = name if name not in accuracy_after else f"{name}_{len(accuracy_after)}"
        robust &= ~run(fooled_fn(attack), robust)
        accuracy_after[name] = float(robust.mean())
    pgd_robust = correct & ~run(fooled_fn(pgd), correct)
    worst = robust & pgd_robust
    results = {
        "clean_accuracy": float(correct.mean()), "robust_accuracy": float(worst.mean()),
        "suite_accuracy": float(robust.mean()), "attacks": accuracy_after,
        "pgd20": float(pgd_robust.mean()), "epsilon": epsilon, "norm": norm,
        "n_examples": n, "suite": suite_name,
        "attack_configs": {name: a.get_config() for name, a in zip(accuracy_after,
                                                                    packed_attacks)},
        "multi_input": {"perturb": perturb.get_config(),
                        "norm": "joint: ||concat(delta_i / epsilon_scale_i)||_p over the "
                                "unmasked features of every perturbed input"},
        "not_computed": list(NOT_COMPUTED), "seed": seed}
    results["intervals"] = {key: list(wilson_interval(results[key], n))
                            for key in ("clean_accuracy", "robust_accuracy", "pgd20")}
    results["wall_time_s"] = time.time() - start
    return results


class MultiInputReport(RobustnessReport):
    """The results of `evaluate_robustness(..., perturb=...)`: accuracies only.

    `save(directory)` writes `report.json` (the keys of `to_dict()`) and a
    short `report.md`; there is no curve to plot.
    """

    def markdown(self):
        r = self._results
        lines = [f"# Robustness of a multi-input model ({r['norm']}, epsilon {r['epsilon']:g}, "
                 f"{r['n_examples']} examples)", "",
                 f"Perturbed inputs: {r['multi_input']['perturb']['inputs']}; norm: "
                 f"{r['multi_input']['norm']}.", "",
                 "| | accuracy | 95% interval |", "|---|---|---|"]
        for key in ("clean_accuracy", "robust_accuracy", "pgd20"):
            low, high = r["intervals"][key]
            lines.append(f"| {key} | {r[key]:.4f} | [{low:.4f}, {high:.4f}] |")
        lines += [f"| after {name} | {value:.4f} | |" for name, value in r["attacks"].items()]
        lines += ["", f"Not computed for multi-input models: {', '.join(r['not_computed'])}."]
        return "\n".join(lines) + "\n"

    def save(self, directory):
        """Writes `report.json` and `report.md` into `directory`."""
        os.makedirs(directory, exist_ok=True)
        run_folder.write_json(os.path.join(directory, JSON_NAME), self._results)
        with open(os.path.join(directory, MARKDOWN_NAME), "w") as f:
            f.write(self.markdown())
        return directory
