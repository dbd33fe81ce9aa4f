"""`RobustnessReport`: the results of `evaluate_robustness`, as JSON, Markdown, HTML and plots."""

import html as html_lib
import io
import json
import math
import os

import numpy as np

from keras_advreg import run_folder
from keras_advreg.evaluation import comparison, per_example
from keras_advreg.evaluation.masking_checks import failure_messages
from keras_advreg.evaluation.identity import markdown_header

JSON_NAME, MARKDOWN_NAME, HTML_NAME = "report.json", "report.md", "report.html"
PLOT_NAME = "robustness_curve.png"
PLOT_FORMATS = ("png", "svg", "pdf")


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


def _with_interval(value, interval):
    """`0.5000 [0.4038, 0.5962]`, or the bare value when there is no interval."""
    if interval is None:
        return _number(value)
    return f"{_number(value)} [{interval[0]:.4f}, {interval[1]:.4f}]"


class RobustnessReport:
    """Robustness results: accuracies, curve, gradient statistics, bounds, masking checks.

    Read keys as attributes (`report.robust_accuracy`) or through `to_dict()`.
    `save(directory)` writes `report.json` (the keys of `to_dict()`),
    `report.md`, a self-contained `report.html`, the robustness curve as
    PNG, SVG and PDF, `per_example.csv` and, when the adversarial inputs were
    kept, `adversarial.npz`; `load(path)` reads a `report.json` back.

    Args:
        results: the JSON-ready dict of results.
        adversarial: None, or `{"index": ..., "x_adv": ...}`: the adversarial
            inputs of the broken points, not part of `to_dict()`.
    """

    def __init__(self, results, adversarial=None):
        self._results = _jsonable(results)
        # Derived here only, from the checks, so the stored field cannot disagree with them.
        self._results["masking_suspected"] = any(
            not c["passed"] for c in self._results.get("checks", []))
        self.adversarial = adversarial

    def __getattr__(self, name):
        results = self.__dict__.get("_results", {})
        if name in results:
            return results[name]
        raise AttributeError(f"RobustnessReport has no field {name!r}.")

    def to_dict(self):
        """A deep copy of the results as plain JSON types."""
        return json.loads(json.dumps(self._results))

    def save(self, directory):
        """Writes the report's files (see the class docstring) into `directory`."""
        os.makedirs(directory, exist_ok=True)
        run_folder.write_json(os.path.join(directory, JSON_NAME), self._results)
        with open(os.path.join(directory, MARKDOWN_NAME), "w") as f:
            f.write(self.markdown())
        with open(os.path.join(directory, HTML_NAME), "w") as f:
            f.write(self.html())
        stem = os.path.join(directory, os.path.splitext(PLOT_NAME)[0])
        fig = self._figure()
        for extension in PLOT_FORMATS:
            fig.savefig(f"{stem}.{extension}", dpi=100)
        _close(fig)
        if self._results.get("per_example"):
            per_example.write_csv(self._results["per_example"],
                                  os.path.join(directory, per_example.CSV_NAME))
        if self.adversarial is not None:
            np.savez_compressed(os.path.join(directory, per_example.ADVERSARIAL_NAME),
                                **self.adversarial)
        return directory

    @classmethod
    def load(cls, path):
        """Reads a saved report from its `report.json` (or the directory holding it)."""
        if os.path.isdir(path):
            path = os.path.join(path, JSON_NAME)
        with open(path) as f:
            return cls(json.load(f))

    def plot(self, path):
        """Saves the robustness curve (accuracy against epsilon) with its 95% intervals.

        The format follows the extension of `path` (.png, .svg, .pdf, or any
        matplotlib reads); headless.
        """
        fig = self._figure()
        fig.savefig(path, dpi=100)
        _close(fig)

    def _figure(self):
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        r = self._results
        curve = r["curve"]
        epsilons, accuracy = [p["epsilon"] for p in curve], [p["accuracy"] for p in curve]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(epsilons, accuracy, "o-", label="PGD-20")
        if all("interval" in p for p in curve):
            ax.fill_between(epsilons, [p["interval"][0] for p in curve],
                            [p["interval"][1] for p in curve], alpha=0.25,
                            label=f"{self._interval_name()} interval")
        ax.axvline(r["epsilon"], color="gray", ls="--", lw=1)
        robust_interval = r.get("intervals", {}).get("robust_accuracy")
        error = (None if robust_interval is None else
                 [[r["robust_accuracy"] - robust_interval[0]],
                  [robust_interval[1] - r["robust_accuracy"]]])
        ax.errorbar([r["epsilon"]], [r["robust_accuracy"]], yerr=error, fmt="r*", ms=10,
                    capsize=3, label="worst case (all attacks)")
        ax.set(xlabel=f"epsilon ({r['norm']})", ylabel="accuracy", ylim=(-0.02, 1.02),
               title=self._title())
        ax.legend()
        fig.tight_layout()
        return fig

    def _title(self):
        r = self._results
        model = r.get("identity", {}).get("model", {})
        if model.get("path"):  # runs/madry/model.keras -> madry/model.keras
            path = os.path.normpath(model["path"])
            model = os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))
        else:
            model = model.get("name")
        return ((f"{model}: " if model else "")
                + f"robustness at {r['norm']} epsilon {r['epsilon']:g}")

    def _interval_name(self):
        intervals = self._results.get("intervals")
        if not intervals:
            return None
        return f"{intervals['confidence']:.0%} {intervals['method'].capitalize()}"

    def html(self):
        """The report as one self-contained HTML page: the Markdown's tables, the curve inline."""
        import markdown as markdown_lib

        fig = self._figure()
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg")
        _close(fig)
        svg = buffer.getvalue()
        svg = svg[svg.index("<svg"):]  # drop the XML prologue, invalid inside HTML
        body = markdown_lib.markdown(self.markdown(), extensions=["tables"])
        return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                f"<title>{html_lib.escape(self._title())}</title><style>{_CSS}</style>"
                "</head><body>\n"
                f"{body}\n<h2>Robustness curve</h2>\n{svg}\n</body></html>\n")

    def summary_lines(self):
        """Loud masking warnings, one per failed check, each saying what to do."""
        return failure_messages(self._results["checks"],
                                prefix="**WARNING: possible gradient masking**")

    def markdown(self):
        r = self._results
        lines = ["# Robustness report", "",
                 f"{r['n_examples']} examples, epsilon = {r['epsilon']:g} ({r['norm']}), "
                 f"suite: {r.get('suite')}, seed {r.get('seed')}, "
                 f"{_number(r.get('wall_time_s'), '.1f')} s.", ""]
        if r.get("suite_note"):
            lines += [r["suite_note"], ""]
        if r.get("identity"):
            lines += markdown_header(r["identity"]) + [""]
        if r.get("randomized"):
            random = r["randomness"]
            lines += [f"**Randomized model**: two identical calls' logits differ by up to "
                      f"{random['max_logit_difference']:.3g}; the suite's gradient attacks "
                      f"averaged each gradient over {random['eot_samples']} samples (EOT). "
                      f"Suite used: {r.get('suite_used')}.", ""]
        warnings = self.summary_lines()
        lines += (warnings or ["All gradient-masking checks passed."]) + [""]
        lines += self._markdown_accuracies()
        if r.get("paired_test"):
            lines += comparison.markdown(r["paired_test"])
        lines += self._markdown_statistics() + self._markdown_checks()
        return "\n".join(lines) + "\n"

    def _markdown_accuracies(self):
        r = self._results
        intervals = r.get("intervals") or {}
        attacks, alone = intervals.get("attacks", {}), r.get("individual") or {}
        header = "accuracy" + (f" [{self._interval_name()} interval]" if intervals else "")
        lines = []
        if intervals:
            lines += [f"Brackets: {self._interval_name()} score intervals over the "
                      f"{r['n_examples']} examples.", ""]
        if alone:
            lines += [f"| evaluation | {header} | alone, on every clean-correct point |",
                      "|---|---|---|"]
        else:
            lines += [f"| evaluation | {header} |", "|---|---|"]
        extra = " |" if alone else ""
        clean = _with_interval(r["clean_accuracy"], intervals.get("clean_accuracy"))
        lines.append(f"| clean | {clean} |" + extra)
        for name, accuracy in r["attacks"].items():
            row = f"| after {name} (cumulative) | {_with_interval(accuracy, attacks.get(name))} |"
            if alone:
                row += f" {_with_interval(alone.get(name), intervals['individual'].get(name))} |"
            lines.append(row)
        escalated = r.get("escalation") or {}
        if escalated.get("run"):
            before = _with_interval(r["robust_accuracy_before_escalation"],
                                    intervals.get("robust_accuracy_before_escalation"))
            lines.append(f"| worst case before escalation | {before} |" + extra)
            for name, count in escalated["new_breaks"].items():
                lines.append(f"| {name} (on the points still robust) | {count} newly broken |"
                             + extra)
        robust = _with_interval(r["robust_accuracy"], intervals.get("robust_accuracy"))
        lines += [f"| **worst case over every attack** | **{robust}** |" + extra, ""]
        if escalated.get("run"):
            budgets = escalated["budgets"]
            lines += [f"A masking check failed, so the suite ran again with larger budgets "
                      f"({budgets['restarts']} restarts, {budgets['square_query_factor']}x "
                      f"Square's queries): {escalated['newly_broken']} more points broken, "
                      f"robust accuracy {escalated['accuracy_before']:.4f} before escalation, "
                      f"{escalated['accuracy']:.4f} after.", ""]
        lines += ["## Robustness curve (PGD-20)", "", f"| epsilon | {header} |", "|---|---|"]
        lines += [f"| {p['epsilon']:.4g} | {_with_interval(p['accuracy'], p.get('interval'))} |"
                  for p in r["curve"]]
        unbounded = r.get("unbounded", {})
        lines += [f"| {unbounded.get('epsilon', 0):.4g} (unbounded) | "
                  f"{_with_interval(unbounded.get('accuracy'), intervals.get('unbounded'))} |", ""]
        return lines

    def _markdown_statistics(self):
        r = self._results
        lines = ["## Regularity statistics", "", "| loss | mean l2 | max l2 | mean dual | max dual |",
                 "|---|---|---|---|---|"]
        for name in ("cross_entropy", "cw_margin"):
            g = r["gradient_norms"].get(name, {})
            lines.append(f"| {name} | {_number(g.get('mean_l2'))} | {_number(g.get('max_l2'))} | "
                         f"{_number(g.get('mean_dual'))} | {_number(g.get('max_dual'))} |")
        lines += [""] + self._markdown_minimal()
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

    def _markdown_minimal(self):
        """The minimal-distance table: each attack's results and the per-example minimum."""
        r = self._results
        section = r.get("minimal_distances")
        if not section:  # a report saved before the minimal-distance section
            return [f"Mean minimal adversarial distance (DeepFool, {r['norm']}): "
                    f"{_number(r.get('mean_minimal_distance'))}"]
        lines = [f"Minimal adversarial distances ({r['norm']}, unbounded attacks, budget "
                 f"{section['budget']!r}; mean and median over the clean-correct points "
                 "where the attack found one):", "",
                 "| attack | found | mean | median | smallest of all on |", "|---|---|---|---|---|"]
        for name, stats in section["attacks"].items():
            lines.append(f"| {name} | {stats['found_fraction']:.1%} | {_number(stats['mean'])} | "
                         f"{_number(stats['median'])} | {section['found_by'].get(name, 0)} |")
        best = section["minimum"]
        lines += [f"| **per-example minimum** | {best['found_fraction']:.1%} | "
                  f"**{_number(best['mean'])}** | {_number(best['median'])} | |"]
        return lines

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


def _close(fig):
    from matplotlib import pyplot as plt
    plt.close(fig)


_CSS = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:.2em .6em}")
