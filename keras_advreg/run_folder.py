"""The output folder of a command: checked before any work, locked while a run uses it.

A run's files must survive a crash at any instant and never mix with another
run's: `check_output` refuses an unusable `--out` up front, `FolderLock` keeps a
second run out of a folder in use, `replace_durably` moves a finished file
into place so that readers see either the old file or the new one, whole,
`write_json` writes every JSON file of a run that way, and `StagedOutput` puts
them together for a command's outputs.
"""

import contextlib
import fcntl
import json
import os
import shutil
import sys

# The backup folder of a resumable run, inside its output folder.
BACKUP_DIR = ".backup"


def check_output(out, flag="--out"):
    """Raises `ValueError` unless `out` is, or can be created as, a writable folder.

    Args:
        out: the folder.
        flag: the command-line flag named in the message.
    """
    path = os.path.abspath(out)
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "" if existing == path else f" (its parent {existing!r} is a file)"
        raise ValueError(f"{flag} {out!r} must be a folder: it is a file{where}.")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" (its parent {existing!r} cannot be written)"
        raise ValueError(f"{flag} {out!r} is not writable{where}: check its permissions, or "
                         f"whether it is on a read-only file system.")


class FolderLock:
    """An exclusive, non-blocking lock on a folder, held through a lock file in it.

    The lock file holds the owner's pid and is removed when the lock is
    released, so a finished or failed run leaves nothing behind. A run killed
    with SIGKILL leaves the file, but the kernel releases the lock: the next run
    takes it.

    Args:
        folder: an existing folder.
        name: the lock file's name.

    Example:

    >>> with FolderLock("runs/madry"):  # doctest: +SKIP
    ...     train()
    """

    def __init__(self, folder, name=".keras-advreg.lock"):
        self.folder = folder
        self.path = os.path.join(folder, name)

    def __enter__(self):
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise ValueError(f"--out {self.folder} is in use by another keras-advreg run "
                                 f"(pid {pid}).") from None
            # The owner removes the file on release; a file we opened just before
            # that is no longer the lock: take the new one.
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *error):
        with contextlib.suppress(FileNotFoundError):  # the folder was deleted under us
            os.remove(self.path)  # before unlocking: see __enter__
        os.close(self._fd)
        return False


def replace_durably(source, target):
    """Renames `source` over `target` after syncing it, then syncs the folder.

    A crash at any instant leaves `target` either as it was or as `source`,
    complete: never a partly written file.
    """
    if os.path.isfile(source):
        with open(source, "rb") as f:
            os.fsync(f.fileno())
    os.replace(source, target)
    fsync_folder(os.path.dirname(os.path.abspath(target)))


def write_json(path, payload, indent=2):
    """Writes `payload` as JSON to `path`, whole or not at all (`replace_durably`).

    NumPy scalars and arrays become numbers and lists, tuples and sets lists,
    other objects their `str` (a path, a dtype, a policy).
    """
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump(payload, f, indent=indent, default=_plain)
    replace_durably(temporary, path)


def _plain(value):
    if hasattr(value, "numpy"):  # eager tensors
        value = value.numpy()
    if hasattr(value, "tolist"):  # NumPy scalars and arrays
        return value.tolist()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    return str(value)


def fsync_folder(folder):
    """Syncs a folder's entries (its renames and removals) to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StagedOutput:
    """The folder `out`, checked and locked, and a staging folder in it for the outputs.

    Entering raises `ValueError` before any work when `out` cannot be a
    writable folder or another run holds it. The outputs are written to the
    staging folder and, only when the run succeeds, each renamed into `out`
    (after a sync, so each file is the old one or the new one, whole): a failed
    run destroys nothing already there. The staging folder, the lock and an
    `out` created for a run that wrote nothing are removed on any exit.

    Args:
        out: the output folder.
        worker: None, or the index of a multi-worker task, which then gets a
            lock and a staging folder of its own.
    """

    def __init__(self, out, worker=None):
        self.out = os.path.abspath(out)
        self.name = ".keras-advreg" + ("" if worker is None else f"-worker{worker}")

    def __enter__(self):
        check_output(self.out)
        self.created = not os.path.isdir(self.out)
        os.makedirs(self.out, exist_ok=True)
        self.lock = None
        try:
            self.lock = FolderLock(self.out, self.name + ".lock").__enter__()
            self.path = os.path.join(self.out, self.name + ".staging")
            shutil.rmtree(self.path, ignore_errors=True)  # left by a killed run
            os.mkdir(self.path)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self.path

    def __exit__(self, error_type, error, traceback):
        try:
            if error_type is None:
                for name in os.listdir(self.path):
                    target = os.path.join(self.out, name)
                    if os.path.isdir(target):
                        shutil.rmtree(target)
                    replace_durably(os.path.join(self.path, name), target)
        finally:
            if self.lock is not None:
                shutil.rmtree(self.path, ignore_errors=True)
                self.lock.__exit__(None, None, None)
            if self.created and not os.listdir(self.out):
                os.rmdir(self.out)
        return False
