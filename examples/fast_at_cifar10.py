"""Fast adversarial training, FGSM-RS (Wong et al. 2020, arXiv 2001.03994).

Settings (the paper's CIFAR-10 run): PreAct ResNet-18, FGSM from a uniform
random start, epsilon 8/255, step 10/255 (1.25 epsilon), linf; SGD momentum
0.9, batch 128, weight decay 5e-4 (PyTorch-style L2), 15 epochs, cyclic
learning rate: one triangular cycle 0 -> 0.2 -> 0 peaking at 2/5 of the run
(the paper's schedule; schedules.CyclicLearningRate mode "triangular",
peak_fraction 0.4, not the cosine "one_cycle" mode); crop+flip. With
CatastrophicOverfittingGuard: PGD-10 on a fixed training batch after every
epoch; on a collapse it restores the previous epoch and stops (the paper's
early stopping). The paper trains in mixed precision (apex O1/O2): use
--precision mixed_float16 on GPUs. It reports ~46% PGD-50 accuracy at 8/255
(~43% under AutoAttack). Evaluated with the standard suite at 8/255.

Full run:  python examples/fast_at_cifar10.py --precision mixed_float16 --out runs/fast_at
Smoke run: python examples/fast_at_cifar10.py --smoke --out /tmp/fast_at
Cost: ~2 passes per step, 15 epochs: ~15 GPU minutes on one V100-class GPU
(the paper: 12 minutes), a few hours on 2 CPU cores.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def build(args):
    return common.Recipe(
        method="fast_at", method_kwargs=dict(epsilon=8 / 255, step_size=10 / 255),
        arch="preact_resnet18", epochs=15, batch_size=128, lr=0.2, schedule="cyclic",
        peak_fraction=0.4, weight_decay=5e-4, eval_epsilon=8 / 255, guard=True,
        published={"clean": 0.8381, "robust": 0.4606, "attack": "PGD-50, 10 restarts",
                   "source": "Wong et al. 2020, PreAct ResNet-18, step 10/255"}, tolerance=0.04)


def main(argv=None):
    return common.main(argv, __doc__, build)


if __name__ == "__main__":
    main()
