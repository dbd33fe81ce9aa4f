"""`RobustnessReport`: the results of `evaluate_robustness`, saved as JSON, Markdown and PNG."""

import json
import math
import os

import numpy as np

from keras_advreg.evaluation.checks import ADVICE

JSON_NAME, MARKDOWN_NAME, PLOT_NAME = "report.json", "report.md", "robustness_curve.png"


def _jsonable(value):
    """Converts numpy values to Python; non-finite floats become None (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _number(value, spec=".4f"):
    return "n/a" if value is None else format(value, spec)


class RobustnessReport:
    """Robustness results: accuracies, curve, gradient statistics, bounds, masking checks.

    Read keys as attributes (`report.robust_accuracy`) or through `to_dict()`.
    `save(directory)` writes `report.json` (the keys of `to_dict()`),
    `report.md` and `robustness_curve.png`; `load(path)` reads a
    `report.json` back.

    Args:
        results: the JSON-ready dict of results.
    """

    def __init__(self, results):
        self._results = _jsonable(results)

    def __getattr__(self, name):
        results = self.__dict__.get("_results", {})
        if name in results:
            return results[name]
        raise AttributeError(f"RobustnessReport has no field {name!r}.")

    def to_dict(self):
        """A deep copy of the results as plain JSON types."""
        return json.loads(json.dumps(self._results))

    @property
    def masking_suspected(self):
        return any(not c["passed"] for c in self._results.get("checks", []))

    def save(self, directory):
        """Writes report.json, report.md and robustness_curve.png into `directory`."""
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, JSON_NAME), "w") as f:
            json.dump(self._results, f, indent=2)
        with open(os.path.join(directory, MARKDOWN_NAME), "w") as f:
            f.write(self.markdown())
        self.plot(os.path.join(directory, PLOT_NAME))
        return directory

    @classmethod
    def load(cls, path):
        """Reads a saved report from its `report.json` (or the directory holding it)."""
        if os.path.isdir(path):
            path = os.path.join(path, JSON_NAME)
        with open(path) as f:
            return cls(json.load(f))

    def plot(self, path):
        """Saves the robustness curve (accuracy against epsilon) as a PNG, headless."""
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        curve = self._results["curve"]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot([p["epsilon"] for p in curve], [p["accuracy"] for p in curve], "o-",
                label="PGD-20")
        ax.axvline(self._results["epsilon"], color="gray", ls="--", lw=1)
        ax.plot([self._results["epsilon"]], [self._results["robust_accuracy"]], "r*", ms=10,
                label="worst case (all attacks)")
        ax.set(xlabel=f"epsilon ({self._results['norm']})", ylabel="accuracy", ylim=(-0.02, 1.02),
               title="Robustness curve")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)

    def summary_lines(self):
        """Loud masking warnings, one per failed check, each saying what to do."""
        return [f"**WARNING: possible gradient masking** ({c['name']}: {c['detail']}). "
                f"{ADVICE[c['name']]}" for c in self._results["checks"] if not c["passed"]]

    def markdown(self):
        r = self._results
        lines = [f"# Robustness report", "",
                 f"{r['n_examples']} examples, epsilon = {r['epsilon']:g} ({r['norm']}), "
                 f"suite: {r.get('suite')}, seed {r.get('seed')}, "
                 f"{_number(r.get('wall_time_s'), '.1f')} s.", ""]
        warnings = self.summary_lines()
        lines += (warnings or ["All gradient-masking checks passed."]) + [""]
        lines += ["| evaluation | accuracy |", "|---|---|",
                  f"| clean | {r['clean_accuracy']:.4f} |"]
        lines += [f"| after {name} (cumulative) | {acc:.4f} |" for name, acc in r["attacks"].items()]
        lines += [f"| **worst case over every attack** | **{r['robust_accuracy']:.4f}** |", ""]
        lines += ["## Robustness curve (PGD-20)", "", "| epsilon | accuracy |", "|---|---|"]
        lines += [f"| {p['epsilon']:.4g} | {p['accuracy']:.4f} |" for p in r["curve"]]
        unbounded = r.get("unbounded", {})
        lines += [f"| {unbounded.get('epsilon', 0):.4g} (unbounded) | "
                  f"{_number(unbounded.get('accuracy'))} |", ""]
        lines += self._markdown_statistics() + self._markdown_checks()
        return "\n".join(lines) + "\n"

    def _markdown_statistics(self):
        r = self._results
        lines = ["## Regularity statistics", "", "| loss | mean l2 | max l2 | mean dual | max dual |",
                 "|---|---|---|---|---|"]
        for name in ("cross_entropy", "cw_margin"):
            g = r["gradient_norms"].get(name, {})
            lines.append(f"| {name} | {_number(g.get('mean_l2'))} | {_number(g.get('max_l2'))} | "
                         f"{_number(g.get('mean_dual'))} | {_number(g.get('max_dual'))} |")
        lines += ["", f"Mean minimal adversarial distance (DeepFool, {r['norm']}): "
                  f"{_number(r.get('mean_minimal_distance'))}"]
        bounds = r.get("bounds", {})
        for key in ("l_bound", "c_bound"):
            if key in bounds:
                b = bounds[key]
                lines.append(f"{key}: mean {b['mean']:.4g}, held on {b['fraction_held']:.1%} "
                             f"of images against the attacks")
        if r.get("hessian_spectral_norm") is not None:
            lines.append(f"Hessian spectral norm (max): {r['hessian_spectral_norm']:.4g}")
        ratio = (r.get("improvement_ratio") or {}).get("ratio")
        if r.get("improvement_ratio") is not None:
            lines.append(f"Adversarial improvement ratio: {_number(ratio, '.3g')}")
        return lines + [""]

    def _markdown_checks(self):
        lines = ["## Gradient-masking checks", "", "| check | passed | detail |", "|---|---|---|"]
        lines += [f"| {c['name']} | {'yes' if c['passed'] else '**NO**'} | {c['detail']} |"
                  for c in self._results["checks"]]
        return lines

    def __repr__(self):
        r = self._results
        return (f"RobustnessReport(clean_accuracy={r['clean_accuracy']:.4f}, "
                f"robust_accuracy={r['robust_accuracy']:.4f}, epsilon={r['epsilon']:g}, "
                f"norm={r['norm']!r}, masking_suspected={self.masking_suspected})")
