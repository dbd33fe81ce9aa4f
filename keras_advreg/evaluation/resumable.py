"""Resumable evaluation: per-example results written chunk by chunk as they are computed.

`evaluate_robustness(..., resume_dir=DIR)` keeps, for every attack stage, each
chunk's per-example results (which points the attack broke, and their
adversarial inputs) in DIR as soon as the chunk is done, each file moved into
place whole (`run_folder.replace_durably`). A killed evaluation run again with
the same arguments reads the chunks back instead of attacking again; since
every example's attack randomness comes from its own stateless seed (see
`runner`), it gives the per-example results and the report of an uninterrupted
run. DIR's `fingerprint.json` records what the chunks belong to: the
arguments, the model's weights (and file SHA-256), the data; a different
fingerprint is refused (`ResumeError`) unless `restart=True` discards the
chunks.

Randomized models (noise or dropout at inference) draw from TensorFlow's
global generator inside the model, which no seed here fixes: their resumed
results are valid but not bit-identical to an uninterrupted run's.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil

import numpy as np

from keras_advreg import run_folder

FINGERPRINT_NAME = "fingerprint.json"


class ResumeError(ValueError):
    """The stored chunks belong to another evaluation (arguments, model or data)."""


def array_sha256(*arrays):
    """The SHA-256 of arrays' shapes, dtypes and bytes."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def fingerprint(model, x, y, model_path=None, **arguments):
    """What a resumed evaluation must share with the stored one, as JSON-ready dict.

    Args:
        model: the evaluated model; its weights are hashed.
        x: the evaluated inputs (after `n_examples`).
        y: their labels.
        model_path: the model's file, whose SHA-256 is recorded when given.
        **arguments: every argument that changes the results (JSON-ready).
    """
    from keras_advreg.evaluation import identity

    versions = identity.versions()
    return {"arguments": json.loads(json.dumps(arguments, default=str)),
            "model": {"weights_sha256": array_sha256(*model.get_weights()),
                      "file_sha256": identity.file_sha256(model_path) if model_path else None},
            "data": {"examples": int(len(x)), "sha256": array_sha256(x, y)},
            "versions": {k: versions[k] for k in ("keras_advreg", "tensorflow", "keras")}}


def _differences(stored, current, prefix=""):
    """The dotted keys whose values differ between two nested dicts."""
    keys = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key} ({a!r} stored, {b!r} now)")
    return keys


@contextlib.contextmanager
def chunk_store(directory, restart=False):
    """The `ChunkStore` of `directory` (None for None), locked while the evaluation runs.

    Args:
        directory: the folder of the chunks, created if missing.
        restart: discard the chunks already there.
    """
    if directory is None:
        yield None
        return
    run_folder.check_output(directory, flag="resume_dir")
    os.makedirs(directory, exist_ok=True)
    with run_folder.FolderLock(directory):
        if restart:
            for name in os.listdir(directory):
                path = os.path.join(directory, name)
                if os.path.isdir(path):
                    shutil.rmtree(path)
                elif not name.endswith(".lock"):
                    os.remove(path)
        yield ChunkStore(directory)


class ChunkStore:
    """Per-example results of each stored call of an evaluation, chunk by chunk.

    Call `open(fingerprint)` first; `run` then computes or reads back a call's
    chunks. Each call is a subfolder, named by its number in the evaluation and
    its stage; each chunk a `chunk-NNNNN.npz` holding the chunk's example
    indices (checked on reading) and the call's arrays.

    Args:
        directory: an existing folder, locked by the caller.
        chunk_size: the examples per chunk.
    """

    def __init__(self, directory, chunk_size=128):
        self.directory = directory
        self.chunk_size = chunk_size
        self.reused = 0  # chunks read back, for tests and messages
        self.computed = 0

    def open(self, fingerprint, chunk_size=None):
        """Checks (or records) what the chunks belong to; returns self.

        Raises:
            ResumeError: naming what differs, when the folder holds another
                evaluation's chunks.
        """
        self.chunk_size = chunk_size or self.chunk_size
        fingerprint = {**fingerprint, "chunk_size": self.chunk_size}
        path = os.path.join(self.directory, FINGERPRINT_NAME)
        if os.path.isfile(path):
            with open(path) as f:
                stored = json.load(f)
            if stored != fingerprint:
                raise ResumeError(
                    f"{self.directory} holds the results of another evaluation: "
                    f"{'; '.join(_differences(stored, fingerprint))}. Evaluate with the same "
                    f"arguments, model and data to resume, or discard them (restart=True; "
                    f"the CLI's --restart).")
        else:
            run_folder.write_json(path, fingerprint)
        return self

    def run(self, key, index, compute, on_reused=None):
        """The per-example arrays of a call over examples `index`, one chunk at a time.

        Args:
            key: the call's name, unique in the evaluation.
            index: the examples' indices (numpy), stored with each chunk.
            compute: `compute(part) -> {name: array}` for a slice `part` of the
                call's examples: per-example arrays, or rows of some of them.
            on_reused: called with a reused chunk's number of examples.

        Returns:
            `{name: array}`: each array concatenated over the chunks.
        """
        folder = os.path.join(self.directory, re.sub(r"[^A-Za-z0-9._=-]+", "_", key))
        os.makedirs(folder, exist_ok=True)
        chunks = []
        for number, start in enumerate(range(0, len(index), self.chunk_size)):
            part = slice(start, start + self.chunk_size)
            path = os.path.join(folder, f"chunk-{number:05d}.npz")
            if os.path.isfile(path):
                with np.load(path) as stored:
                    arrays = {k: stored[k] for k in stored.files}
                if not np.array_equal(arrays.pop("index"), index[part]):
                    raise ResumeError(f"{path} holds other examples than this evaluation "
                                      f"attacks at {key!r}: discard the stored results "
                                      f"(restart=True; the CLI's --restart).")
                self.reused += 1
                if on_reused is not None:
                    on_reused(len(index[part]))
            else:
                arrays = {k: np.asarray(v) for k, v in compute(part).items()}
                temporary = path + ".tmp"
                with open(temporary, "wb") as f:
                    np.savez(f, index=index[part], **arrays)
                run_folder.replace_durably(temporary, path)
                self.computed += 1
            chunks.append(arrays)
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


