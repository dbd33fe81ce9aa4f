"""What a robustness report describes: model, data, threat model, budgets, software."""

import hashlib
import platform


def file_sha256(path):
    """The hex SHA-256 digest of a file."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def versions():
    """The versions of keras_advreg, Keras, TensorFlow, NumPy, SciPy and Python."""
    import keras
    import numpy
    import scipy
    import tensorflow as tf

    from keras_advreg import __version__
    return {"keras_advreg": __version__, "keras": keras.__version__,
            "tensorflow": tf.__version__, "numpy": numpy.__version__,
            "scipy": scipy.__version__, "python": platform.python_version()}


def identity(model, n_examples, epsilon, norm, clip, suite, attack_configs, other_attacks,
             seed, model_path=None, dataset=None, split=None, command_line=None):
    """The `identity` section of a report: enough to tell two reports' setups apart.

    Args:
        model: the evaluated Keras model.
        n_examples: the number of examples (the first ones of the data).
        epsilon: the threat model's radius.
        norm: its norm.
        clip: its box `(clip_min, clip_max)`.
        suite: the suite's name, or the list of its attacks' names.
        attack_configs: each suite attack's name -> `get_config()` (its budget).
        other_attacks: the curve's and the masking checks' attack configs.
        seed: the random seed.
        model_path: the model's file, hashed when given.
        dataset: the data's name, when known.
        split: the data's split, when known.
        command_line: the command that ran the evaluation, when known.

    Returns:
        A JSON-ready dict.
    """
    import keras

    return {
        "model": {"name": model.name, "path": model_path,
                  "sha256": file_sha256(model_path) if model_path else None,
                  "parameters": int(model.count_params())},
        "dataset": {"name": dataset, "split": split},
        "examples": {"count": n_examples, "indices": f"0 to {n_examples - 1} (the first "
                                                     f"{n_examples} of the data)"},
        "threat_model": {"norm": norm, "epsilon": epsilon, "clip_min": clip[0],
                         "clip_max": clip[1]},
        "suite": {"name": suite, "attacks": attack_configs, "other_attacks": other_attacks},
        "seed": seed,
        "precision": {"global_dtype_policy": keras.config.dtype_policy().name,
                      "model_dtype_policy": model.dtype_policy.name},
        "versions": versions(),
        "command_line": command_line,
    }


def markdown_header(identity):
    """The identity as Markdown lines, for the top of report.md."""
    model, data, threat = identity["model"], identity["dataset"], identity["threat_model"]
    budgets = "; ".join(f"{name} ({_budget(config)})"
                        for name, config in identity["suite"]["attacks"].items())
    lines = [f"- Model: {model['name']} ({model['parameters']} parameters)"
             + (f", file `{model['path']}`, sha256 `{model['sha256']}`" if model["path"] else ""),
             f"- Data: {data['name'] or 'arrays'}"
             + (f" ({data['split']} split)" if data["split"] else "")
             + f", examples {identity['examples']['indices']}",
             f"- Threat model: {threat['norm']} ball of radius {threat['epsilon']:g}, inputs in "
             f"[{threat['clip_min']:g}, {threat['clip_max']:g}]",
             f"- Suite: {identity['suite']['name']}: {budgets}",
             f"- Seed {identity['seed']}, precision {identity['precision']['model_dtype_policy']}"
             f" (global policy {identity['precision']['global_dtype_policy']})",
             "- Versions: " + ", ".join(f"{k} {v}" for k, v in identity["versions"].items())]
    if identity.get("command_line"):
        lines.append(f"- Command: `{identity['command_line']}`")
    return lines


def _budget(config):
    keys = ("steps", "restarts", "n_queries")
    return ", ".join(f"{k} {config[k]}" for k in keys if k in config) or "no budget"
