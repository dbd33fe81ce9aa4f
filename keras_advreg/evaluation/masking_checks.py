"""Checks that flag gradient masking (Athalye et al. 2018; Carlini et al. arXiv 1902.06705).

Each check is a function of the evidence gathered by `evaluate_robustness`
returning `{name, passed, detail}`; `ADVICE` says what to do when it fails.
"""

from keras_advreg import checks

# What to do when a check fails, shown in the warning and in report.md.
ADVICE = {
    "accuracy_non_increasing_in_epsilon":
        "Accuracy rose with a larger budget: the attack is failing, not the model succeeding. "
        "Use more steps, restarts and APGD (suite='standard'), and check for masked gradients.",
    "zero_accuracy_unbounded_budget":
        "An attack that may reach every input should reach 0% accuracy. Gradients are likely "
        "masked or obfuscated: try gradient-free attacks (Square) and BPDA for "
        "non-differentiable layers.",
    "more_iterations_no_gain":
        "More steps or restarts raised accuracy, so the attack is noisy or not converged. "
        "Report APGD results and increase steps/restarts until accuracy stops changing.",
    "iterative_not_weaker_than_single_step":
        "Single-step FGSM beat iterative PGD: typical of gradient masking (e.g. catastrophic "
        "overfitting or obfuscation). Evaluate with the standard suite and black-box attacks.",
    "gradient_free_not_stronger":
        "The gradient-free Square attack broke points the white-box attacks could not: "
        "gradients are masked. Do not report white-box accuracy; report the worst case and "
        "investigate the model's non-differentiable or saturating parts.",
    "nonzero_finite_input_gradients":
        "Some input gradients are zero or non-finite (shattered/vanishing gradients, "
        "quantization or saturated softmax). Use the DLR/CW-margin losses, Square, or BPDA.",
    "deterministic_outputs":
        "The model's outputs differ between two identical inference calls (noise or dropout "
        "left on at inference), so single-pass gradients are random and understate the attack. "
        "The suite's gradient attacks averaged each gradient over EOT samples; report that "
        "worst case (suite='rand', AutoAttack's version='rand'), or turn the randomness off.",
    "outputs_are_logits":
        "The model seems to output probabilities: remove the final softmax (attacks and "
        "losses expect logits), otherwise the cross-entropy gradients saturate.",
}


def tolerance(n):
    """Allowed noise in accuracy: 2 percentage points or 2 examples, whichever is larger."""
    return max(0.02, 2.0 / max(n, 1))


def _result(name, passed, detail):
    return {"name": name, "passed": bool(passed), "detail": detail}


def monotone_curve(evidence):
    curve = evidence["curve"]
    rises = [(a["epsilon"], b["epsilon"], b["accuracy"] - a["accuracy"])
             for a, b in zip(curve, curve[1:])]
    worst = max(rises, key=lambda r: r[2], default=(0, 0, 0.0))
    passed = worst[2] <= tolerance(evidence["n"])
    detail = (f"largest rise {worst[2]:+.3f} between eps={worst[0]:.4g} and eps={worst[1]:.4g}"
              if rises else "single-point grid")
    return _result("accuracy_non_increasing_in_epsilon", passed, detail)


def unbounded_zero(evidence):
    point = evidence["unbounded"]
    return _result("zero_accuracy_unbounded_budget", point["accuracy"] == 0.0,
                   f"PGD-20 accuracy {point['accuracy']:.3f} at eps={point['epsilon']:.4g} "
                   "(a budget covering the whole input box)")


def more_iterations(evidence):
    base, steps, restarts = evidence["pgd"], evidence["pgd_more_steps"], evidence["pgd_restarts"]
    tol = tolerance(evidence["n"])
    passed = steps <= base + tol and restarts <= base + tol
    return _result("more_iterations_no_gain", passed,
                   f"PGD-20 {base:.3f}, PGD-40 {steps:.3f}, PGD-20 x2 restarts {restarts:.3f}")


def iterative_vs_single_step(evidence):
    pgd, fgsm = evidence["pgd"], evidence["fgsm"]
    return _result("iterative_not_weaker_than_single_step",
                   pgd <= fgsm + tolerance(evidence["n"]), f"PGD-20 {pgd:.3f}, FGSM {fgsm:.3f}")


def gradient_free(evidence):
    breaks, n = evidence["square_only_breaks"], evidence["n"]
    return _result("gradient_free_not_stronger", breaks / max(n, 1) <= tolerance(n),
                   f"Square broke {breaks} of {n} examples that every white-box attack missed")


def gradients(evidence):
    stats = evidence["gradient_norms"]["cross_entropy"]
    zero, nonfinite = stats["zero_fraction"], stats["nonfinite_fraction"]
    passed = nonfinite == 0 and zero <= max(0.01, 1.0 / max(evidence["n"], 1))
    return _result("nonzero_finite_input_gradients", passed,
                   f"cross-entropy input gradient zero for {zero:.1%} of examples, "
                   f"non-finite for {nonfinite:.1%}")


def logits(evidence):
    z = evidence["logits"]
    probabilities = checks.look_like_probabilities(z)
    return _result("outputs_are_logits", not probabilities,
                   "outputs look like probabilities (in [0, 1], rows sum to 1)" if probabilities
                   else f"outputs in [{z.min():.3g}, {z.max():.3g}], not a probability simplex")


def deterministic(evidence):
    r = evidence["randomness"]
    detail = (f"two calls on the same inputs differ by up to {r['max_logit_difference']:.3g} "
              f"in the logits (tolerance {r['tolerance']:.2g})")
    if r["randomized"]:
        detail += f"; gradient attacks of the suite used EOT over {r['eot_samples']} samples"
    return _result("deterministic_outputs", not r["randomized"], detail)


CHECKS = (monotone_curve, unbounded_zero, more_iterations, iterative_vs_single_step,
          gradient_free, gradients, logits, deterministic)


def run_checks(evidence):
    """Runs every masking check on the gathered evidence; returns the result list."""
    return [check(evidence) for check in CHECKS]


def failure_messages(results, prefix="Possible gradient masking"):
    """One message per failed check, saying what to do."""
    return [f"{prefix} ({r['name']}: {r['detail']}). {ADVICE[r['name']]}"
            for r in results if not r["passed"]]
