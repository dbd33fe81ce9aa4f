"""Free adversarial training on CIFAR-10 (Shafahi et al. 2019, arXiv 1904.12843,
"Adversarial Training for Free!").

Settings (the authors' TensorFlow code, ashafahi/free_adv_train, config.py and
free_train.py): the wide ResNet of Madry et al.'s CIFAR-10 challenge code,
which theirs builds on (5 residual units per stage, width 10: WRN-34-10 in
`architectures.wide_resnet`'s depth convention); each minibatch replayed m = 8
times, the perturbation delta carried across replays and minibatches, one
sign step of epsilon = 8/255 per replay, delta clipped to [-8/255, 8/255];
SGD momentum 0.9, batch 128, weight decay 2e-4 (an L2 term wd/2 ||w||^2 as
in their code, which puts it on the kernels only; here on every trainable
variable, as `common` does for every example), 80000 optimizer steps with
the learning rate 0.1, divided by 10 after 40000 and 60000 steps;
crop+flip. 80000 steps of batch 128 are the steps of 80000/391 = 204.6
plain epochs: `--epochs` counts plain-epoch budgets (the run layer replays
each batch m times, so these 205 epochs, 80155 steps, are 205/8 = 25.6
passes over the data) and the milestones are at 40000/391 and 60000/391
epochs. Evaluated with the standard suite at 8/255.

Full run:  python examples/free_at_cifar10.py --out runs/free_at_cifar10
           (add --strategy mirrored --precision mixed_float16 on GPUs)
Smoke run: python examples/free_at_cifar10.py --smoke --out /tmp/free_at_cifar10
Cost: one forward and one backward pass per optimizer step, like natural
training: 80000 steps of a 46M-parameter WRN-34-10 at batch 128, about 1/8
of the passes of PGD-7 training for the same number of steps.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

STEPS_PER_EPOCH = 391  # ceil(50000 / 128)


def add_arguments(parser):
    parser.add_argument("--replays", type=int, default=8,
                        help="m, consecutive steps on each minibatch (default: 8)")


def build(args):
    return common.Recipe(
        method="free_at", method_kwargs=dict(epsilon=8 / 255, replays=args.replays),
        arch="wide_resnet", arch_kwargs=dict(depth=34, width=10),
        epochs=round(80000 / STEPS_PER_EPOCH), batch_size=128, lr=0.1, schedule="piecewise",
        milestones=((40000 / STEPS_PER_EPOCH, 0.1), (60000 / STEPS_PER_EPOCH, 0.01)),
        weight_decay=2e-4, eval_epsilon=8 / 255,
        claim="robustness comparable to PGD adversarial training at about the cost of "
              "natural training (its abstract; see the paper's CIFAR-10 table for numbers)")


def main(argv=None):
    return common.main(argv, __doc__, build, add_arguments=add_arguments)


if __name__ == "__main__":
    main()
