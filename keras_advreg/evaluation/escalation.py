"""Escalation: when a masking check fails, the suite again with larger budgets.

A failed check says the suite's number may be too high. Rather than only
warning, the evaluation re-runs the suite's attacks on the points still
counted robust with more restarts (PGD, APGD, FAB) and more Square queries, and
reports the accuracy both before and after.
"""

import numpy as np

from keras_advreg.attacks import APGD, FAB, PGD, Square

# The escalated budgets, recorded in the report's `escalation`.
RESTARTS = 5
SQUARE_QUERY_FACTOR = 4
# Square's queries when the suite had none: 4x the masking check's 1000.
SQUARE_QUERIES = 4000


def escalated_attacks(attacks, epsilon, norm, clip, attack_name):
    """The suite's attacks with escalated budgets, keyed by their report names.

    PGD, APGD and FAB get `RESTARTS` restarts (or keep more), Square
    `SQUARE_QUERY_FACTOR` times its queries; a suite without Square gains
    one with `SQUARE_QUERIES` (except for l1, which Square does not support). Other attacks (FGSM, DeepFool) are
    deterministic, so running them again would break nothing new.
    `attack_name` names an attack, as the suite's report does.
    """
    out = {}
    for attack in attacks:
        config = attack.get_config()
        if isinstance(attack, (PGD, APGD, FAB)):
            config["restarts"] = max(attack.restarts, RESTARTS)
        elif isinstance(attack, Square):
            config["n_queries"] = attack.n_queries * SQUARE_QUERY_FACTOR
        else:
            continue
        new = type(attack).from_config(config)
        name = "escalation " + attack_name(new) + (  # PGD's name already has its restarts
            f"_x{new.restarts}" if isinstance(new, (APGD, FAB)) else
            f"_{new.n_queries}q" if isinstance(new, Square) else "")
        out[name if name not in out else f"{name}_{len(out)}"] = new
    if norm != "l1" and not any(isinstance(a, Square) for a in attacks):  # no l1 Square
        out[f"escalation square_{SQUARE_QUERIES}q"] = Square(
            epsilon, n_queries=SQUARE_QUERIES, norm=norm, clip_min=clip[0], clip_max=clip[1])
    return out


def escalate(runner, attacks, x, y, robust, on_broken):
    """Runs `attacks` (a dict) in turn on the points of `robust` still unbroken.

    Returns:
        `(robust, new_breaks)`: the per-example robustness after escalation
        and the number of points each attack newly broke.
    """
    robust, new_breaks = robust.copy(), {}
    for name, attack in attacks.items():
        index = np.flatnonzero(robust)
        runner.stage(name, len(index))
        fooled, x_adv = runner.fooled(attack, x[index], y[index], return_adversarial=True,
                                      index=index)
        on_broken(name, index[fooled], x_adv[fooled])
        robust[index[fooled]] = False
        new_breaks[name] = int(fooled.sum())
    return robust, new_breaks


def not_run(reason):
    """The report's `escalation` when it did not run."""
    return {"run": False, "reason": reason}


def summary(attacks, before, after, new_breaks):
    """The report's `escalation` when it ran: budgets, accuracy, newly broken points."""
    return {"run": True, "reason": "a masking check failed",
            "budgets": {"restarts": RESTARTS, "square_query_factor": SQUARE_QUERY_FACTOR,
                        "square_queries_without_square": SQUARE_QUERIES},
            "attacks": {name: a.get_config() for name, a in attacks.items()},
            "accuracy_before": float(before.mean()), "accuracy": float(after.mean()),
            "new_breaks": new_breaks, "newly_broken": int(np.sum(before & ~after))}
