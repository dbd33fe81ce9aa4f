"""Per-example results: which attack broke each point first, how far it moved it, and the
minimal adversarial distance found and by which attack."""

import csv

import numpy as np

CSV_NAME, ADVERSARIAL_NAME = "per_example.csv", "adversarial.npz"
COLUMNS = ("index", "label", "clean_correct", "robust", "broken_by", "perturbation_norm",
           "minimal_distance", "minimal_distance_by")
MISCLASSIFIED = "misclassified"

_ORDS = {"linf": np.inf, "l2": 2, "l1": 1}


def perturbation_norms(delta, norm):
    """The `norm` ("linf", "l2" or "l1") of each example's perturbation `delta`."""
    return np.linalg.norm(delta.reshape(len(delta), int(np.prod(delta.shape[1:]))),
                          ord=_ORDS[norm], axis=1)


class Breaks:
    """Records, per example, the first attack (in the order run) that broke it.

    Attacks report through `recorder(name)`, a callback taking the indices of
    the points they broke and their adversarial inputs, as
    `curves.accuracy_at(on_broken=...)` calls it.

    Args:
        x: the clean inputs.
        norm: the threat model's norm, in which perturbations are measured.
        keep_adversarial: keep each broken point's adversarial input.
    """

    def __init__(self, x, norm, keep_adversarial=False):
        self.x, self.norm = x, norm
        self.broken_by = np.full(len(x), "", dtype=object)
        self.perturbation_norm = np.full(len(x), np.nan)
        self.x_adv = np.zeros_like(x) if keep_adversarial else None

    def recorder(self, name):
        return lambda index, x_adv: self.record(name, index, x_adv)

    def record(self, name, index, x_adv):
        new = self.broken_by[index] == ""
        index, x_adv = index[new], x_adv[new]
        self.broken_by[index] = name
        self.perturbation_norm[index] = perturbation_norms(x_adv - self.x[index], self.norm)
        if self.x_adv is not None:
            self.x_adv[index] = x_adv

    def results(self, y, correct, robust, minimal_columns):
        """The per-example columns of the report (see `COLUMNS`).

        `minimal_columns` holds the minimal-distance columns
        (`evaluation.minimal.columns`): `minimal_distance` (the smallest
        distance any minimal-distance attack found), `minimal_distance_by`
        (which attack) and `minimal_distance_<attack>` per attack.
        """
        return {"index": np.arange(len(y)), "label": y, "clean_correct": correct,
                "robust": robust,
                "broken_by": np.where(correct, self.broken_by, MISCLASSIFIED).tolist(),
                "perturbation_norm": self.perturbation_norm, **minimal_columns}

    def adversarial(self, robust, correct):
        """`{index, x_adv}` of the broken points, or None unless kept."""
        if self.x_adv is None:
            return None
        index = np.flatnonzero(correct & ~robust)
        return {"index": index, "x_adv": self.x_adv[index]}


def write_csv(per_example, path):
    """Writes the per-example columns present in `per_example` as CSV; None and NaN are empty.

    Load it with `pandas.read_csv(path)` or `numpy.genfromtxt(path, delimiter=",",
    names=True, dtype=None, encoding="utf-8")`.
    """
    columns = [c for c in COLUMNS if c in per_example]
    columns += [c for c in per_example if c not in columns]
    rows = zip(*(per_example[c] for c in columns))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if v is None or (isinstance(v, float) and np.isnan(v)) else v
                             for v in row])
