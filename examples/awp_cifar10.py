"""AT-AWP and TRADES-AWP on CIFAR-10 (Wu, Xia & Wang 2020, arXiv 2004.05884,
"Adversarial weight perturbation helps robust generalization").

Settings (the authors' code, csdongxian/AWP): WRN-34-10; each step's gradient
taken at weights perturbed by one normalized ascent step of size gamma * ||w||
per weight matrix (biases and BatchNorm not perturbed); SGD momentum 0.9,
batch 128, weight decay 5e-4 (PyTorch-style L2), learning rate 0.1 divided by
10 at epochs 100 and 150, 200 epochs; crop+flip. `--variant at` (default):
PGD-10 adversarial training, epsilon 8/255, step 2/255, gamma 5e-3 (the
paper's; the authors' AT script defaults to 1e-2, `--gamma 0.01`).
`--variant trades`: TRADES beta 6, KL attack PGD-10 from x + 0.001 N(0, I),
epsilon 8/255, step 2/255, gamma 5e-3 (the authors' TRADES script, which also
starts AWP only after 10 epochs; not done here). Evaluated with the standard
suite at 8/255; the authors report AutoAttack accuracies of 53.97% (AT-AWP)
and 56.17% (TRADES-AWP), both at 85.36% clean.

Full run:  python examples/awp_cifar10.py --out runs/at_awp_cifar10
           python examples/awp_cifar10.py --variant trades --out runs/trades_awp_cifar10
           (add --strategy mirrored --precision mixed_float16 on GPUs)
Smoke run: python examples/awp_cifar10.py --smoke --out /tmp/awp_cifar10
Cost: the base method's passes plus one forward and one backward per step
(AT-AWP 24, TRADES-AWP 26 passes) on a 46M-parameter WRN-34-10: about 5-6
GPU days on one V100-class GPU in float32.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

# The authors' AutoAttack results (auto_attacks/README.md), WRN-34-10, CIFAR-10, 8/255.
PUBLISHED = {
    "at": {"clean": 0.8536, "robust": 0.5397, "attack": "AutoAttack",
           "source": "Wu et al. 2020, AT-AWP, WRN-34-10 (csdongxian/AWP)"},
    "trades": {"clean": 0.8536, "robust": 0.5617, "attack": "AutoAttack",
               "source": "Wu et al. 2020, TRADES-AWP, WRN-34-10 (csdongxian/AWP)"},
}


def add_arguments(parser):
    parser.add_argument("--variant", default="at", choices=["at", "trades"],
                        help="the base method: at (AT-AWP, madry_awp) or trades (TRADES-AWP)")
    parser.add_argument("--gamma", type=float, default=5e-3,
                        help="the weight perturbation relative to each weight norm "
                             "(default: 5e-3)")


def build(args):
    attack = dict(epsilon=8 / 255, step_size=2 / 255, steps=10)
    method, kwargs = (("madry_awp", dict(gamma=args.gamma, **attack)) if args.variant == "at"
                      else ("trades_awp", dict(gamma=args.gamma, beta=6.0, **attack)))
    return common.Recipe(
        method=method, method_kwargs=kwargs, arch="wide_resnet",
        arch_kwargs=dict(depth=34, width=10), epochs=200, batch_size=128, lr=0.1,
        schedule="piecewise", milestones=((100, 0.1), (150, 0.01)), weight_decay=5e-4,
        eval_epsilon=8 / 255, published=PUBLISHED[args.variant], tolerance=0.03)


def main(argv=None):
    return common.main(argv, __doc__, build, add_arguments=add_arguments)


if __name__ == "__main__":
    main()
