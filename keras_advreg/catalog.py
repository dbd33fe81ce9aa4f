"""The names and defaults `keras-advreg --help` shows, readable without TensorFlow.

Copies of what `methods`, `architectures` and `objectives` define, so that
building the command line's parser imports no TensorFlow;
tests/test_catalog.py checks each copy against the real thing.
"""

METHOD_DEFAULTS = {
    "standard": {},
    "madry": {"epsilon": 8 / 255, "step_size": None, "steps": 7, "norm": "linf",
              "clip_min": 0.0, "clip_max": 1.0},
    "fast_at": {"epsilon": 8 / 255, "step_size": None, "norm": "linf", "clip_min": 0.0,
                "clip_max": 1.0},
    "free_at": {"epsilon": 8 / 255, "replays": 8, "step_size": None, "clip_min": 0.0,
                "clip_max": 1.0},
    "mixed": {"epsilon": 8 / 255, "multiplier": 0.2, "mode": "loss", "fraction": 0.5,
              "steps": 1, "step_size": None, "norm": "linf", "clip_min": 0.0, "clip_max": 1.0},
    "trades": {"beta": 6.0, "epsilon": 0.031, "step_size": None, "steps": 10, "norm": "linf",
               "clip_min": 0.0, "clip_max": 1.0},
    "mart": {"beta": 6.0, "epsilon": 8 / 255, "step_size": None, "steps": 10, "norm": "linf",
             "clip_min": 0.0, "clip_max": 1.0},
    "madry_awp": {"gamma": 5e-3, "epsilon": 8 / 255, "step_size": None, "steps": 7,
                  "norm": "linf", "clip_min": 0.0, "clip_max": 1.0},
    "trades_awp": {"gamma": 5e-3, "beta": 6.0, "epsilon": 0.031, "step_size": None, "steps": 10,
                   "norm": "linf", "clip_min": 0.0, "clip_max": 1.0},
    "arr": {"lam": 1.0, "epsilon": 8 / 255, "distance": "kl", "steps": 1, "step_size": None,
            "norm": "linf", "clip_min": 0.0, "clip_max": 1.0},
    "gradient_regularization": {"lam": 0.1, "norm": "l2", "penalty": "double_backprop",
                                "h": 0.01, "scheme": "forward"},
    "hybrid": {"lam": 0.1, "epsilon": 8 / 255, "step_size": None, "steps": 7, "norm": "linf",
               "penalty": "double_backprop", "penalty_norm": "l2", "h": 0.01,
               "scheme": "forward", "clip_min": 0.0, "clip_max": 1.0},
    "gfa": {"lam": 1.0, "layers": ("input",), "layer_weights": None, "form": "tangential",
            "epsilon": 8 / 255, "step_size": None, "steps": 7, "norm": "linf", "clip_min": 0.0,
            "clip_max": 1.0},
    "grad_align": {"lam": 0.2, "epsilon": 8 / 255, "step_size": None, "clip_min": 0.0,
                   "clip_max": 1.0},
    "gaussian_augmentation": {"sigma": 0.25},
}
"""Method name (`methods.METHODS`) -> its keyword arguments and their defaults."""

STEP_SIZES = {"madry": 0.25, "fast_at": 1.25, "free_at": 1.0, "mixed": 1.0, "trades": 0.25, "mart": 0.25, "arr": 1.0,
              "hybrid": 0.25, "gfa": 0.25, "grad_align": 1.25, "madry_awp": 0.25,
              "trades_awp": 0.25}
"""Method name -> its default attack step as a multiple of epsilon (at its default steps)."""

ARCHITECTURES = ("mlp", "small_cnn", "resnet18", "preact_resnet18", "wide_resnet")
"""The names of `architectures.ARCHITECTURES`."""

CHOICES = {
    "norm": ("linf", "l2"),
    "distance": ("kl", "l2_probabilities", "l2_logits"),
    "penalty": ("double_backprop", "finite_difference"),
}
"""Method argument -> the values the methods accept."""
