"""Madry et al. PGD adversarial training on CIFAR-10 (arXiv 1706.06083).

Settings: PreAct ResNet-18 (the model of Rice et al., arXiv 2002.11569, and
Wong et al.; Madry et al. used a WRN-34-10), PGD-7 from a random start,
epsilon 8/255, step 2/255 (linf); SGD momentum 0.9, batch 128, weight decay
5e-4 applied as PyTorch's coupled L2 (see common.py); our choice of learning
rate schedule: piecewise, 0.1 divided by 10 at epochs 100 and 150, 200 epochs
(Rice et al.'s PGD-AT schedule); crop+flip augmentation. Evaluated with the
standard suite (APGD-CE, APGD-T, FAB-T, Square) at 8/255. Rice et al. report ~53%
PGD accuracy at the best epoch and fewer at epoch 200 (robust overfitting).

Full run:  python examples/madry_cifar10.py --out runs/madry_cifar10
           (add --strategy mirrored --precision mixed_float16 on GPUs)
Smoke run: python examples/madry_cifar10.py --smoke --out /tmp/madry_cifar10
Cost: 8 forward/backward passes per step (~5x plain training): about 0.9 GPU
days on one V100-class GPU in float32 (about half in mixed precision), plus
~1-2 h for the full evaluation on 10,000 test images. Not feasible on CPU.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def build(args):
    return common.Recipe(
        method="madry", method_kwargs=dict(epsilon=8 / 255, step_size=2 / 255, steps=7),
        arch="preact_resnet18", epochs=200, batch_size=128, lr=0.1, schedule="piecewise",
        milestones=((100, 0.1), (150, 0.01)), weight_decay=5e-4, eval_epsilon=8 / 255,
        published={"clean": 0.873, "robust": 0.458, "attack": "PGD-20",
                   "source": "Madry et al. 2018, wide ResNet"}, tolerance=0.06)


def main(argv=None):
    return common.main(argv, __doc__, build)


if __name__ == "__main__":
    main()
