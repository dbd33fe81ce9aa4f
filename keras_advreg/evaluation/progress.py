"""`StageProgress`: the named stages of an evaluation, each with its own bar."""

import keras


class StageProgress:
    """Prints each stage's name, then a `keras.utils.Progbar` over its batches.

    The stages of an evaluation differ in cost by two orders of magnitude
    (APGD-T runs one attack per target class; the curve's PGD-20 at epsilon 0
    runs nothing), so one bar over stages extrapolates the first, slowest
    stages to the whole run. Here each stage's estimate comes from its own
    batches, and Keras leaves the first batch, which traces the attack's
    graph, out of the time per batch.

    Args:
        n_stages: the number of stages, for the `[i/n]` counter.
        batch_size: the examples per batch, to size each stage's bar.

    Example:

    >>> progress = StageProgress(2, batch_size=64)
    >>> progress.start("curve pgd20 eps=0", n_examples=0)
    [1/2] curve pgd20 eps=0: nothing to attack
    """

    def __init__(self, n_stages, batch_size):
        self.n_stages = n_stages
        self.batch_size = batch_size
        self.index = 0
        self.bar = None

    def start(self, name, n_examples, calls=1):
        """Starts stage `name`, which runs `calls` passes over `n_examples` examples."""
        self.index += 1
        batches = calls * -(-n_examples // self.batch_size)
        detail = f"{n_examples} examples" if batches else "nothing to attack"
        print(f"[{self.index}/{self.n_stages}] {name}: {detail}", flush=True)
        self.bar = keras.utils.Progbar(batches, unit_name="batch") if batches else None

    def advance(self):
        """Marks one batch of the current stage done."""
        if self.bar is not None:
            self.bar.add(1)
