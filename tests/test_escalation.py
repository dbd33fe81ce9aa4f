"""A failed masking check escalates: the suite again with more restarts and queries."""

import warnings

from keras_advreg.attacks import APGD, PGD, Square
from keras_advreg.evaluation import escalation, evaluate_robustness
from keras_advreg.evaluation.report import RobustnessReport
from test_masking_checks import _train

SUITE = [PGD(epsilon=0.1, step_size=0.0125, steps=20),
         APGD(epsilon=0.1, steps=20, loss="targeted_dlr", n_target_classes=3),
         Square(epsilon=0.1, n_queries=300)]


def _evaluate(model, x, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate_robustness(model, (x, y), 0.1, suite=SUITE, batch_size=40,
                                   progress=False, **kwargs)


def test_masked_model_escalates(tmp_path):
    model, x, y = _train(quantize=True)
    report = _evaluate(model, x, y)
    assert report.masking_suspected
    e = report.escalation
    assert e["run"] and e["budgets"]["restarts"] == escalation.RESTARTS
    assert list(e["attacks"]) == ["escalation pgd20_x5", "escalation apgd_t_x5",
                                  "escalation square_1200q"]
    assert e["attacks"]["escalation pgd20_x5"]["restarts"] == 5
    assert e["attacks"]["escalation square_1200q"]["n_queries"] == 4 * 300
    before, after = report.robust_accuracy_before_escalation, report.robust_accuracy
    assert e["accuracy_before"] == before and e["accuracy"] == after
    assert after <= before
    assert e["newly_broken"] == round((before - after) * len(x))
    assert e["newly_broken"] == sum(e["new_breaks"].values())
    # Square with 4x the queries finds what the 300-query run missed.
    assert e["new_breaks"]["escalation square_1200q"] > 0
    low, high = report.intervals["escalation"]
    assert low <= after <= high
    assert report.intervals["robust_accuracy_before_escalation"][0] <= before
    broken_by = report.per_example["broken_by"]
    assert sum(b.startswith("escalation ") for b in broken_by) == e["newly_broken"]
    assert set(e["attacks"]) <= set(report.identity["suite"]["other_attacks"])
    report.save(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "| worst case before escalation |" in text
    assert f"{e['newly_broken']} more points broken" in text
    assert RobustnessReport.load(tmp_path).escalation == e

    skipped = _evaluate(model, x, y, escalate=False)
    assert skipped.escalation == {"run": False, "reason": "escalate=False"}
    # Not compared with `before`: in one process, after other evaluations, the
    # attacks' random draws (and so the suite's number) can differ.
    assert skipped.robust_accuracy == skipped.robust_accuracy_before_escalation
    assert skipped.masking_suspected
    assert skipped.intervals["escalation"] is None
    assert not any(b.startswith("escalation") for b in skipped.per_example["broken_by"])
    assert "before escalation" not in skipped.markdown()


def test_honest_model_does_not_escalate():
    report = _evaluate(*_train(quantize=False))
    assert not report.masking_suspected
    assert report.escalation == {"run": False, "reason": "all masking checks passed"}
    assert report.robust_accuracy == report.robust_accuracy_before_escalation
    assert report.intervals["escalation"] is None


def test_escalated_attacks_budgets():
    attacks = escalation.escalated_attacks(
        [PGD(epsilon=0.1, steps=10, restarts=7), APGD(epsilon=0.1)], 0.1, "linf", (0.0, 1.0),
        lambda a: getattr(a, "name", f"pgd{a.steps}_x{a.restarts}"))
    assert {k: getattr(a, "restarts", None) for k, a in attacks.items()} == {
        "escalation pgd10_x7": 7, "escalation apgd_ce_x5": 5,
        f"escalation square_{escalation.SQUARE_QUERIES}q": None}
    assert attacks[f"escalation square_{escalation.SQUARE_QUERIES}q"].n_queries == 4000


def test_cli_no_escalate():
    from keras_advreg import cli

    parse = cli._build_parser().parse_args
    assert parse(["evaluate", "model.keras", "--out", "out"]).escalate is True
    assert parse(["evaluate", "model.keras", "--out", "out", "--no-escalate"]).escalate is False
