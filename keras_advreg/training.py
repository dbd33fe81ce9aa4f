"""One training run: `RunConfig` says what to train, `train` runs it.

`keras-advreg train`, the paper examples, the benchmark and the sweep all build
a `RunConfig` and call `train`, so they share one set-up: the method resolver
(`methods.resolve`), the data pipeline (`data.epoch_batches`, resumable at any
epoch), the strategy, seed, precision and determinism, the optimizer and its
learning-rate schedule, the callbacks, the backup and the staged artifacts.
"""

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time

import keras

from keras_advreg import architectures
from keras_advreg.model import AdvRegModel
from keras_advreg.replay import replays_of
from keras_advreg.run_folder import BACKUP_DIR

# Arguments of a run that cannot change its result: a backup of a run that
# differs only in these resumes.
_NOT_IN_BACKUP = ("verbose", "logdir")


@dataclasses.dataclass
class RunConfig:
    """Everything that defines a training run, as plain data (JSON-ready).

    A `None` among `epochs`, `optimizer`, `lr` and `epsilon_warmup` takes the
    dataset's preset (`presets.DATASET_PRESETS`) when `presets` is on, else the
    generic default; with `presets` on, the preset's epsilon (and its attack
    steps, for methods that attack with several steps) also apply when
    `method_kwargs` does not set them.

    Attributes:
        method: a key of `methods.METHODS` or a spec "name:key=value,...".
        method_kwargs: the method's arguments.
        dataset: a dataset name of `data.DATASETS` or a `.npz` path.
        data_dir: the TensorFlow Datasets folder (None: tfds's default).
        arch: a key of `architectures.ARCHITECTURES`.
        arch_kwargs: the architecture's arguments (e.g. `activation`).
        epochs: the number of epochs. An epoch is the optimizer steps of one
            pass over the data, also for Free AT (`methods.free_at`), whose
            batches are each replayed m times: its E epochs cost about E
            plain epochs and are E / m passes (`methods.free_at_epochs`).
            Learning-rate schedules count the same steps.
        batch_size: the GLOBAL batch size (split over the replicas).
        optimizer: "adam", or "sgd" (momentum 0.9).
        lr: the learning rate (the peak of a cyclic schedule).
        lr_schedule: "constant", "cyclic" (a triangle from 0 to `lr` and back
            over the run, peaking at `peak_fraction`) or "piecewise" (`lr`
            times each `milestones` factor from its epoch on).
        milestones: for "piecewise": `((epoch, factor of lr), ...)`.
        peak_fraction: for "cyclic": where the triangle peaks.
        weight_decay: PyTorch's coupled `SGD(weight_decay=wd)`, an L2
            regularizer wd / 2 on every trainable variable.
        augment: "auto" (`data.default_augmentation`), "none" or a key of
            `data.AUGMENTATIONS`.
        epsilon_warmup: epochs of a linear ramp of every attack's epsilon
            from 0 (`callbacks.EpsilonRamp`).
        warmup_epochs: epochs of a linear ramp of a regularizer's weight
            (`callbacks.LambdaWarmup`).
        warmup_start: epochs with that weight at 0 before the ramp.
        warmup_term: the term ramped (default: the method's last term).
        warmup_target: its final weight (default: the term's weight).
        ema: None, or the decay of an exponential moving average of the
            weights (`callbacks.WeightEMA`), which the saved model holds.
        guard: Wong et al.'s check of catastrophic overfitting
            (`callbacks.CatastrophicOverfittingGuard`).
        health_check: `callbacks.TrainingHealthMonitor`.
        validation_examples: test examples evaluated after each epoch (0:
            none; None: all).
        train_examples: None, or train on only the first this many examples.
        strategy: "default", "mirrored" or "multiworker".
        precision: "float32", "mixed_float16" or "mixed_bfloat16".
        jit: XLA-compile the train step.
        deterministic: deterministic TensorFlow ops, so a resumed run ends
            with the weights of an uninterrupted one.
        seed: the random seed.
        presets: fill unset values from the dataset's preset.
    """

    method: str = "madry"
    method_kwargs: dict = dataclasses.field(default_factory=dict)
    dataset: str = "digits"
    data_dir: str = None
    arch: str = "small_cnn"
    arch_kwargs: dict = dataclasses.field(default_factory=dict)
    epochs: int = None
    batch_size: int = 64
    optimizer: str = None
    lr: float = None
    lr_schedule: str = "constant"
    milestones: tuple = ()
    peak_fraction: float = 0.5
    weight_decay: float = 0.0
    augment: str = "auto"
    epsilon_warmup: int = None
    warmup_epochs: int = 0
    warmup_start: int = 0
    warmup_term: str = None
    warmup_target: float = None
    ema: float = None
    guard: bool = False
    health_check: bool = True
    validation_examples: int = 500
    train_examples: int = None
    strategy: str = "default"
    precision: str = "float32"
    jit: bool = False
    deterministic: bool = True
    seed: int = 0
    presets: bool = True
    # How errors name each argument (the command line: its flags); not part of the run.
    labels: dict = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def preset(self):
        """The dataset's preset (`presets.DATASET_PRESETS`); {} without one or `presets`."""
        from keras_advreg import presets

        return presets.DATASET_PRESETS.get(self.dataset, {}) if self.presets else {}

    def resolved(self):
        """`(config, filled)`: unset values filled in, and what the dataset preset set."""
        from keras_advreg import presets

        preset = self.preset
        changes, filled = {}, {}
        for key in ("epochs", "optimizer", "lr", "epsilon_warmup"):
            if getattr(self, key) is None:
                value = preset.get(key, presets.GENERIC[key])
                if key == "epsilon_warmup" and isinstance(changes.get("epochs", self.epochs), int):
                    value = min(value, changes.get("epochs", self.epochs) // 2)
                changes[key] = value
                if key in preset:
                    filled[key] = value
        return dataclasses.replace(self, **changes), filled

    def objective(self, preset=None):
        """`(name, objective, arguments, filled)` of the method (`methods.resolve`)."""
        import inspect

        from keras_advreg import methods

        name, spec_kwargs = methods.parse_spec(self.method)
        given = {**spec_kwargs, **self.method_kwargs}
        accepted = (inspect.signature(methods.METHODS[name]).parameters
                    if name in methods.METHODS else {})
        filled = {}
        preset = preset or {}
        if "epsilon" in preset and "epsilon" in accepted and "epsilon" not in given:
            filled["epsilon"] = preset["epsilon"]
        # Only methods that already attack with several steps (madry, trades, ...).
        if ("attack_steps" in preset and "steps" in accepted and "steps" not in given
                and accepted["steps"].default > 1):
            filled["steps"] = preset["attack_steps"]
        name, objective, arguments = methods.resolve(
            self.method, self.method_kwargs, defaults=filled, labels=self.labels)
        return name, objective, arguments, filled

    def check(self):
        """Validates every value before any data is loaded or any step runs.

        Returns:
            `(config, name, objective, method_arguments, filled)`: the resolved
            config, the method and what the dataset preset filled in.

        Raises:
            ValueError: naming the argument and the allowed values.
        """
        from keras_advreg import checks

        config, filled = self.resolved()
        label = (self.labels or {}).get
        checks.integer(label("epochs", "epochs"), config.epochs)
        checks.integer(label("epsilon_warmup", "epsilon_warmup"), config.epsilon_warmup,
                       minimum=0)
        if config.epsilon_warmup > config.epochs:
            raise ValueError(f"{label('epsilon_warmup', 'epsilon_warmup')} "
                             f"{config.epsilon_warmup} must be at most "
                             f"{label('epochs', 'epochs')} {config.epochs}: the epsilon would "
                             f"never reach its full value.")
        checks.integer(label("batch_size", "batch_size"), config.batch_size)
        checks.number(label("lr", "lr"), config.lr, strict=True)
        checks.choice("optimizer", config.optimizer, ("adam", "sgd"))
        checks.choice("lr_schedule", config.lr_schedule, ("constant", "cyclic", "piecewise"))
        checks.choice("strategy", config.strategy, ("default", "mirrored", "multiworker"))
        checks.choice("precision", config.precision,
                      ("float32", "mixed_float16", "mixed_bfloat16"))
        checks.number("weight_decay", config.weight_decay)
        if config.validation_examples is not None:
            checks.integer(label("validation_examples", "validation_examples"),
                           config.validation_examples, minimum=0)
        if config.train_examples is not None:
            checks.integer("train_examples", config.train_examples)
        checks.integer(label("warmup_epochs", "warmup_epochs"), config.warmup_epochs, minimum=0)
        checks.integer(label("warmup_start", "warmup_start"), config.warmup_start, minimum=0)
        if config.ema is not None:
            checks.number(label("ema", "ema"), config.ema, maximum=1.0)
        if config.jit and config.strategy != "default":
            raise ValueError(f"{label('jit', 'jit')} works only with "
                             f"{label('strategy', 'strategy')} "
                             f"default: XLA compilation fails under MirroredStrategy in "
                             f"TensorFlow 2.21.")
        name, objective, arguments, method_filled = config.objective(config.preset)
        if not arguments.get("epsilon", 1) > 0:
            raise ValueError(f"{label('epsilon', 'epsilon')} must be > 0, got "
                             f"{arguments.get('epsilon')}: {label('method', 'method')} {name} "
                             f"at epsilon 0 is standard training; use "
                             f"{label('method', 'method')} standard for that.")
        warmup = config.warmup_epochs or config.warmup_start
        if warmup and len(objective) < 2 and config.warmup_term is None:
            raise ValueError(f"{label('warmup_epochs', 'warmup_epochs')}/"
                             f"{label('warmup_start', 'warmup_start')} need a regularizer term; "
                             f"{label('method', 'method')} {name} has only "
                             f"{objective[0].name!r}.")
        if config.warmup_term is not None:
            checks.choice("warmup_term", config.warmup_term, [o.name for o in objective])
        return config, name, objective, arguments, {**filled, **method_filled}

    def to_dict(self):
        """The config as JSON-ready data (what a backup must match to resume)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items() if key != "labels"}


@dataclasses.dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        base_model: the trained classifier (what `model.keras` holds).
        model: the compiled `AdvRegModel`.
        history: per log key, its value at each epoch.
        problems: what `callbacks.TrainingHealthMonitor` found.
        config: the resolved `RunConfig`.
        method_arguments: the arguments the method was built with.
        filled: the values the dataset preset filled in.
        dataset: the `data.Dataset` trained on.
        fit_seconds: the wall time of training.
        chief: whether this process wrote the outputs (multi-worker).
    """

    base_model: keras.Model
    model: AdvRegModel
    history: dict
    problems: list
    config: RunConfig
    method_arguments: dict
    filled: dict
    dataset: object
    fit_seconds: float
    chief: bool = True


def train(config, out=None, *, dataset=None, callbacks=(), restart=False, logdir=None,
          verbose=1, record=None):
    """Runs one training run: validation, strategy, data, model, resumable fit, artifacts.

    Every value is checked before anything is loaded. With `out`, the run is
    resumable (an interrupted run keeps its backup in `out/.backup` and the
    same call resumes it; a backup of another config is refused unless
    `restart`), `out` is locked while the run uses it, and `model.keras`,
    `config.json` and `history.json` are written to a staging folder and moved
    into `out` only when the run succeeds. Under multi-worker training only the
    chief writes.

    Args:
        config: a `RunConfig`.
        out: the output folder, or None for no artifacts (the backup then
            lives in a temporary folder).
        dataset: a `data.Dataset` to train on instead of loading
            `config.dataset` (e.g. the sweep's held-out split).
        callbacks: more Keras callbacks (after the run's own).
        restart: discard a backup in `out` and start over.
        logdir: write every epoch's logs to `logdir/training.csv` and, with
            tensorboard installed, as TensorBoard scalars.
        verbose: Keras verbosity.
        record: more entries for `config.json` (e.g. the command's arguments).

    Returns:
        A `TrainResult`.

    Example:

    >>> result = train(RunConfig("madry", {"epsilon": 0.1, "steps": 1}, epochs=1,
    ...                          train_examples=64, validation_examples=0), verbose=0)
    >>> result.base_model.output_shape
    (None, 10)
    """
    import tensorflow as tf

    from keras_advreg import data, distribute, resume, run_folder
    from keras_advreg.evaluation import identity

    config, name, objective, arguments, filled = config.check()
    # MultiWorkerMirroredStrategy must exist before TensorFlow runs any op.
    strategy = distribute.make_strategy(config.strategy)
    distribute.check_batch_size(config.batch_size, strategy)
    chief = strategy.extended.should_checkpoint
    worker = None if chief else distribute.tf_config()["task"]["index"]
    temporary = tempfile.mkdtemp(prefix="keras-advreg-backup-") if out is None else None
    backup = temporary or os.path.join(out, BACKUP_DIR if chief
                                       else f"{BACKUP_DIR}-worker{worker}")
    # What a backup must match to resume: the run and the method's arguments (flat, so a
    # refusal names them: "epsilon 0.1 -> 0.3").
    backup_config = {**{key: value for key, value in config.to_dict().items()
                        if key != "method_kwargs"}, **arguments}
    staged = run_folder.StagedOutput(out, worker) if out is not None else contextlib.nullcontext()
    previous_policy = keras.mixed_precision.global_policy().name
    try:
        with staged as staging:
            if restart:
                shutil.rmtree(backup, ignore_errors=True)
            try:
                resume.check_backup(backup, backup_config)  # before loading anything
            except resume.BackupError as error:
                restart_flag = (config.labels or {}).get("restart", "restart=True")
                raise resume.BackupError(f"{error} {restart_flag} discards it and starts "
                                         f"over.") from None
            dataset = dataset or data.load_dataset(config.dataset, data_dir=config.data_dir)
            x_train, y_train = dataset.x_train, dataset.y_train
            if config.train_examples is not None:
                x_train, y_train = x_train[:config.train_examples], y_train[:config.train_examples]
            augment = (data.default_augmentation(config.dataset) if config.augment == "auto"
                       else None if config.augment == "none" else config.augment)

            keras.utils.set_random_seed(config.seed)
            if config.deterministic:
                tf.config.experimental.enable_op_determinism()
            keras.mixed_precision.set_global_policy(config.precision)
            with strategy.scope():
                base, model = build_classifier(
                    config.arch, dataset, objective, seed=config.seed,
                    optimizer=_optimizer(config, -(-len(x_train) // config.batch_size)),
                    weight_decay=config.weight_decay, jit_compile=config.jit,
                    **config.arch_kwargs)
            n_val = (len(dataset.x_test) if config.validation_examples is None
                     else min(config.validation_examples, len(dataset.x_test)))
            validation = (dataset.x_test[:n_val], dataset.y_test[:n_val]) if n_val else None
            # All arrays are checked here; fit itself checks only the first batch.
            model.check_data(x_train, y_train, validation)
            health = _health_monitor(config, dataset, objective, validation)
            run_callbacks = [*_schedule_callbacks(config, model, x_train, y_train),
                             *([health] if health else []), *callbacks,
                             # last: they see every log key
                             *(_log_callbacks(logdir, resuming=os.path.isdir(backup))
                               if chief and logdir else [])]
            start = time.perf_counter()
            history = resume.resumable_fit(
                model, x_train, y_train, batch_size=config.batch_size, epochs=config.epochs,
                backup_dir=backup, seed=config.seed,
                augment=augment and data.AUGMENTATIONS[augment], callbacks=run_callbacks,
                config=backup_config, replays=replays_of(objective),
                validation_data=(None if validation is None
                                 else data.make_dataset(*validation, config.batch_size)),
                verbose=verbose, delete_backup=False)
            seconds = time.perf_counter() - start
            problems = health.problems if health else []
            if chief and out is not None:
                base.save(os.path.join(staging, "model.keras"))
                run_folder.write_json(os.path.join(staging, "history.json"),
                                      {**history, "health": problems})
                run_folder.write_json(os.path.join(staging, "config.json"), {
                    **(record or {}), **backup_config, "method": name,
                    "method_arguments": arguments, "preset_defaults": filled,
                    "health": problems,
                    "objective": [keras.saving.serialize_keras_object(o)
                                  for o in model.objectives],
                    "versions": identity.versions()})
        # Only now: a crash before this resumes with nothing lost.
        shutil.rmtree(backup, ignore_errors=True)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)
    return TrainResult(base, model, history, problems, config, arguments, filled, dataset,
                       seconds, chief)


def _optimizer(config, steps_per_epoch):
    """The optimizer with the run's learning-rate schedule."""
    from keras_advreg import schedules

    lr = config.lr
    if config.lr_schedule == "cyclic":
        lr = schedules.CyclicLearningRate(config.lr, total_steps=config.epochs * steps_per_epoch,
                                          mode="triangular", peak_fraction=config.peak_fraction)
    elif config.lr_schedule == "piecewise" and config.milestones:
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(
            [int(epoch * steps_per_epoch) for epoch, _ in config.milestones],
            [config.lr] + [config.lr * factor for _, factor in config.milestones])
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9)
    return keras.optimizers.Adam(lr)


def _schedule_callbacks(config, model, x_train, y_train):
    """The EMA, the epsilon warm-up, the regularizer warm-up and the Fast-AT guard, when asked."""
    from keras_advreg import callbacks

    chosen = [callbacks.WeightEMA(decay=config.ema)] if config.ema is not None else []
    if config.epsilon_warmup:
        chosen.append(callbacks.EpsilonRamp(start_epoch=0, ramp_epochs=config.epsilon_warmup))
    if config.warmup_epochs or config.warmup_start:
        # Recipes list the base loss first: the default is the last term.
        term = next((o for o in model.objectives if o.name == config.warmup_term),
                    model.objectives[-1])
        target = term.weight if config.warmup_target is None else config.warmup_target
        chosen.append(callbacks.LambdaWarmup(term.name, target=target,
                                             start_epoch=config.warmup_start,
                                             ramp_epochs=config.warmup_epochs))
    if config.guard:  # Wong et al.'s check: PGD-10 on one fixed training batch per epoch
        attack = getattr(model.objectives[0], "attack", None)
        chosen.append(callbacks.CatastrophicOverfittingGuard(
            x_train[:256], y_train[:256], epsilon=attack.epsilon))
    return chosen


def _health_monitor(config, dataset, objective, validation):
    """The run's `TrainingHealthMonitor` (None without `health_check`).

    Single-step methods (FGSM attacks) also get its PGD check of catastrophic
    overfitting on up to 256 validation examples.
    """
    from keras_advreg import attacks, callbacks

    if not config.health_check:
        return None
    pgd_check = {}
    attack = getattr(objective[0], "attack", None)
    if isinstance(attack, attacks.FGSM) and validation is not None:
        pgd_check = {"x": validation[0][:256], "y": validation[1][:256],
                     "epsilon": attack.epsilon}
    return callbacks.TrainingHealthMonitor(
        dataset.num_classes, reference_accuracy=config.preset.get("standard_accuracy"),
        **pgd_check)


def _tensorboard_installed():
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _log_callbacks(logdir, resuming):
    """A CSVLogger (and a TensorBoard callback when it is installed) writing to `logdir`.

    The CSV appends only when the run resumes from a backup, so a fresh run
    into the same folder starts a new file instead of adding rows under an old
    header. Without tensorboard the CSV is written and a warning says how to
    install it, rather than Keras failing at the end of the first epoch.
    """
    if os.path.exists(logdir) and not os.path.isdir(logdir):
        raise ValueError(f"--logdir {logdir!r} is a file, not a folder.")
    os.makedirs(logdir, exist_ok=True)
    chosen = [keras.callbacks.CSVLogger(os.path.join(logdir, "training.csv"), append=resuming)]
    if _tensorboard_installed():
        chosen.append(keras.callbacks.TensorBoard(logdir, write_graph=False))
    else:
        print(f"keras-advreg train: WARNING: tensorboard is not installed; writing only "
              f"{os.path.join(logdir, 'training.csv')}. For TensorBoard logs: "
              f'pip install "keras-advreg[tensorboard]"', file=sys.stderr)
    return chosen


def build_classifier(arch, dataset, objective, *, seed, optimizer=None, weight_decay=0.0,
                     jit_compile=False, **arch_kwargs):
    """A base model from `architectures.ARCHITECTURES` wrapped and compiled.

    Compiled with sparse cross-entropy from logits and accuracy. Build it inside
    a strategy's scope to train under that strategy.

    Args:
        arch: a key of `architectures.ARCHITECTURES`.
        dataset: a `keras_advreg.data.Dataset` (its input shape and class count).
        objective: the `AdvRegModel` objective.
        seed: the `AdvRegModel` seed of the attacks' randomness.
        optimizer: a Keras optimizer; defaults to Adam with learning rate 1e-3.
        weight_decay: PyTorch's coupled `SGD(weight_decay=wd)`: an L2 regularizer
            of wd / 2 on every trainable variable (gradient + wd * w). Keras's
            own `weight_decay` is decoupled, which differs under momentum.
        jit_compile: whether to XLA-compile the train step.
        **arch_kwargs: passed to the architecture (e.g. `activation`).

    Returns:
        `(base_model, model)`: the classifier to export and the compiled `AdvRegModel`.

    Example:

    >>> from keras_advreg import data, methods
    >>> digits = data.load_dataset("digits")
    >>> base, model = build_classifier("mlp", digits, methods.standard(), seed=0)
    >>> base.output_shape
    (None, 10)
    """
    base = architectures.ARCHITECTURES[arch](dataset.input_shape, dataset.num_classes,
                                             **arch_kwargs)
    if weight_decay:
        for variable in base.trainable_variables:
            variable.regularizer = keras.regularizers.L2(weight_decay / 2)
    model = AdvRegModel(base, objective, seed=seed)
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=jit_compile)
    return base, model
