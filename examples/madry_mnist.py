"""Madry et al. PGD adversarial training on MNIST (arXiv 1706.06083).

Settings: the paper's MNIST setting, PGD-40 from a random start, epsilon 0.3,
step 0.01 (linf); Adam, learning rate 1e-4, batch 50, 100,000 iterations
(= 84 epochs of 60,000 images); no augmentation, no weight decay. Model:
small_cnn with filters (32, 64) and a 1024-unit dense layer (the paper's
network has 5x5 convolutions; ours are 3x3). Evaluated with the standard
suite at epsilon 0.3 (the paper reports ~89% against its strongest attack).

Full run:  python examples/madry_mnist.py --out runs/madry_mnist
Smoke run: python examples/madry_mnist.py --smoke --out /tmp/madry_mnist
Cost: 41 passes per step; about 3-4 GPU hours on one V100-class GPU, roughly
2-3 days on 2 CPU cores.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def build(args):
    return common.Recipe(
        method="madry", method_kwargs=dict(epsilon=0.3, step_size=0.01, steps=40),
        arch="small_cnn", arch_kwargs=dict(filters=(32, 64), dense_units=1024),
        epochs=84, batch_size=50, optimizer="adam", lr=1e-4, schedule="constant",
        weight_decay=0.0, eval_epsilon=0.3)


def main(argv=None):
    return common.main(argv, __doc__, build, datasets=("mnist",))


if __name__ == "__main__":
    main()
