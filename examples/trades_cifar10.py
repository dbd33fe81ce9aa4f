"""TRADES on CIFAR-10 (Zhang et al. 2019, arXiv 1901.08573).

Settings (the authors' train_trades_cifar10.py): WRN-34-10, beta 6, KL attack
PGD-10 from x + 0.001 N(0, I), epsilon 0.031, step 0.007 (linf); SGD momentum
0.9, batch 128, weight decay 2e-4 (PyTorch-style L2), learning rate 0.1
divided by 10 at epoch 75, 76 epochs; crop+flip. Evaluated with the standard
suite at 0.031 (the paper reports ~56.6% under PGD-20, ~53% under AutoAttack).

Full run:  python examples/trades_cifar10.py --out runs/trades_cifar10
           (add --strategy mirrored --precision mixed_float16 on GPUs)
           With weight averaging, evaluated and saved as the model, as current
           robust training does: add --ema (decay 0.999, warm-up), or --ema 0.995.
Smoke run: python examples/trades_cifar10.py --smoke --out /tmp/trades_cifar10
Cost: 12 passes per step on a 46M-parameter WRN-34-10: about 2.5-3 GPU days
on one V100-class GPU in float32.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def build(args):
    return common.Recipe(
        method="trades", method_kwargs=dict(beta=6.0, epsilon=0.031, step_size=0.007, steps=10),
        arch="wide_resnet", arch_kwargs=dict(depth=34, width=10), epochs=76, batch_size=128,
        lr=0.1, schedule="piecewise", milestones=((75, 0.1),), weight_decay=2e-4,
        eval_epsilon=0.031,
        published={"clean": 0.8492, "robust": 0.5308, "attack": "AutoAttack",
                   "source": "Zhang et al. 2019, WRN-34-10, beta 6; AutoAttack by Croce & Hein"},
        tolerance=0.03)


def main(argv=None):
    return common.main(argv, __doc__, build)


if __name__ == "__main__":
    main()
