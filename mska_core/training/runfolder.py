"""Run folders: one writer at a time, no silent overwrite, and resumes that match what was started.

Both training loops (``mska train`` and ``mska pretrain``) go through this module:

- :class:`RunFolderLock` holds an exclusive ``flock`` on ``<run folder>/.mska.lock`` while a run
  writes the folder. The file names the holder (pid, host, command, start time); a second run into
  the folder is refused in one line that names it. The kernel drops the lock when its process dies,
  so a killed run never leaves a stale lock behind. A start refused before it wrote anything leaves
  no trace: the lock file goes, and so does the folder when the lock created it.
- :func:`check_start` refuses a folder that already holds a checkpoint unless ``--resume`` is given,
  and refuses ``--resume`` of a folder that holds none.
- :func:`check_resume` compares the resolved config of the new invocation with the one stored in the
  run's checkpoint and refuses every change that would make the continuation a different run
  (architecture, data, losses, optimiser, batch size, seed ...), listing the changed keys. Settings
  that only change how the run is watched or where it stops early may change
  (:data:`RESUMABLE_CHANGES`); the number of epochs may grow with ``--extend``.
- :func:`load_training_state` reads the checkpoint a ``--resume`` continues from through
  :func:`~mska_core.checkpoints.read_payload` (kind ``training-state``, the keys the loop needs) and
  runs those checks on it.

:class:`RunFolder` puts these together as both loops use them, over the file names of
:mod:`mska_core.run_files`: :meth:`RunFolder.open` takes the lock and checks the start,
:meth:`RunFolder.read_state` reads and checks the state to resume, :meth:`RunFolder.release` gives
the folder back.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mska_core.errors import ConfigError, RunFolderError
from mska_core.run_files import LOCK, RunFiles

LOCK_NAME = LOCK

#: Dotted config keys (or table prefixes ending in ``.``) that may differ on ``--resume``: they
#: change how a run is watched, where it writes exports or where it stops early, never what it computes.
RESUMABLE_CHANGES: tuple[str, ...] = (
    "run.device",
    "run.loggers",
    "run.name",
    "run.output_dir",
    "plugins.",
    "train.progress",
    "train.log_every",
    "train.num_workers",
    "train.max_steps",
    "train.checkpoint_every",
    "train.beam_size",
    "train.test_beam_size",
    "train.translation_beam_size",
    "train.max_text_length",
    "pretrain.progress",
    "pretrain.num_workers",
    "pretrain.max_steps",
    "pretrain.resume",
    "pretrain.export_checkpoint",
    "pretrain.output_path",
    "pretrain.export_backbone",
    "pretrain.output_dir",
)

#: The tables each loop computes with; changes elsewhere in the config do not concern it.
TABLES: dict[str, tuple[str, ...]] = {
    "train": ("run", "data", "model", "losses", "optim", "train", "plugins"),
    "pretrain": ("run", "pretrain", "plugins"),
}

#: Epoch counts that ``--extend`` lets grow.
EPOCH_KEYS = ("train.epochs", "pretrain.epochs")


def command_line() -> str:
    """The command that is running, as a user would have typed it (for lock holders)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("__main__.py", "mska")):
        argv[0] = "mska"
    return " ".join(argv)[:300]


class RunFolderLock:
    """An exclusive lock on a run folder, held from :meth:`acquire` until :meth:`release`.

    ``with RunFolderLock(folder): ...`` is the usual form. Only the holder writes the folder.
    """

    def __init__(self, folder: str | Path, command: str | None = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command or command_line()
        self._fd: int | None = None
        self._created: list[Path] = []  # folders that acquire() made, deepest last

    def acquire(self) -> RunFolderLock:
        try:
            missing = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
            self.folder.mkdir(parents=True, exist_ok=True)
            self._created = missing[::-1]
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _unwritable(self.folder, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _unwritable(self.folder, exc) from None
            raise RunFolderError(
                f"run folder {self.folder} is in use by {describe_holder(read_holder(self.path))}; wait for "
                "that run to finish, or choose another run folder"
            ) from None
        holder = {
            "pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the folder up. When the run wrote nothing (a refused start), the lock file is removed,
        and the folders :meth:`acquire` created with it."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        unused = False
        with contextlib.suppress(OSError):
            unused = [p.name for p in self.folder.iterdir()] == [LOCK_NAME]
            if unused:
                self.path.unlink()  # still holding the lock, so no other run is inside
        os.close(self._fd)  # closing drops the flock
        self._fd = None
        if unused:
            for folder in reversed(self._created):
                with contextlib.suppress(OSError):  # not empty: someone else wrote there meanwhile
                    folder.rmdir()
        self._created = []

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __del__(self) -> None:  # a run abandoned by an exception gives the folder up with its object
        self.release()

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_holder(path: Path) -> dict[str, Any]:
    """What a lock file says about its holder (empty when it cannot be read)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe_holder(holder: Mapping[str, Any]) -> str:
    if not holder:
        return "another process"
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
            f"({holder.get('command', '?')}, since {holder.get('started', '?')})")


def _unwritable(folder: Path, exc: OSError) -> RunFolderError:
    reason = exc.strerror or type(exc).__name__
    where = exc.filename or folder
    return RunFolderError(
        f"cannot write run folder {folder}: {reason} ({where}); choose a writable folder "
        "(--set run.output_dir=... or --output-dir)"
    )


def check_start(folder: Path, checkpoint: Path, *, resume: bool, flag: str = "--resume") -> None:
    """Refuse to start over a run that exists, and to resume one that does not."""
    if checkpoint.exists() and not resume:
        raise RunFolderError(
            f"{folder} already holds a run ({checkpoint.name}); pass {flag} to continue it, or choose "
            "another run folder"
        )


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` for the nested plain-data config ``data``."""
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        if not data and prefix:
            out[prefix[:-1]] = {}
        return out
    return {prefix[:-1]: data}


def incompatible_changes(stored: Mapping[str, Any], new: Mapping[str, Any], *, loop: str,
                         extend: bool = False) -> list[str]:
    """The dotted keys whose change ``--resume`` refuses, as ``key: old -> new``."""
    tables = TABLES[loop]
    old_flat = {k: v for k, v in flatten(stored).items() if k.split(".")[0] in tables}
    new_flat = {k: v for k, v in flatten(new).items() if k.split(".")[0] in tables}
    changes = []
    for key in sorted(set(old_flat) | set(new_flat)):
        before, after = old_flat.get(key, "<unset>"), new_flat.get(key, "<unset>")
        if _same(before, after) or _resumable(key):
            continue
        if key in EPOCH_KEYS and extend and isinstance(before, int) and isinstance(after, int) \
                and after >= before:
            continue
        changes.append(f"{key}: {_shown(before)} -> {_shown(after)}")
    return changes


def check_resume(stored: Mapping[str, Any] | None, new: Mapping[str, Any], *, loop: str, source: Path,
                 extend: bool = False) -> None:
    """Raise :class:`ConfigError` listing every incompatible change between ``stored`` and ``new``."""
    if stored is None:
        raise RunFolderError(
            f"{source}: the checkpoint holds no config, so a resume cannot be checked against it; start a "
            "new run folder"
        )
    changes = incompatible_changes(stored, new, loop=loop, extend=extend)
    if changes:
        shown = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more" if len(changes) > 8 else "")
        hint = " (--extend lets the number of epochs grow)" if any(c.split(":")[0] in EPOCH_KEYS for c in changes) \
            else ""
        raise ConfigError(
            f"--resume: the config differs from the one {source} was started with: {shown}; resume with the "
            f"stored config ({source.parent / 'config.toml'}){hint}, or start a new run folder"
        )


def _resumable(key: str) -> bool:
    return any(key == allowed or (allowed.endswith(".") and key.startswith(allowed))
               for allowed in RESUMABLE_CHANGES)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def stored_config(data: Any) -> Any:
    """A checkpoint's stored config as plain data with today's defaults filled in (as stored when the
    schema cannot read it)."""
    from mska_core.config import config_from_dict, unstructure
    from mska_core.errors import MskaError

    if not isinstance(data, dict):
        return data
    try:
        return unstructure(config_from_dict(data))
    except MskaError:
        return data


def load_training_state(path: Path, keys: Iterable[str], config: Mapping[str, Any], *, loop: str,
                        registry: Any, extend: bool = False) -> dict[str, Any]:
    """The ``training-state`` payload of ``path`` that a ``--resume`` continues from.

    Read through :func:`~mska_core.checkpoints.read_payload` (never running pickled code); refused in
    one line when it is not one of our training states, lacks one of ``keys``, or was started with a
    config (``config``, the resolved one as plain data) that differs from the new one in a way
    :func:`check_resume` refuses.
    """
    from mska_core.checkpoints import read_payload

    state = read_payload(path, kinds=("training-state",), require=keys, needed_by="a resume",
                         hint="start a new run folder, or restore the file", registry=registry)
    check_resume(stored_config(state["config"]), config, loop=loop, source=path, extend=extend)
    return state


class RunFolder:
    """A run folder as a training loop uses it: its files, its lock, the start check and the state a
    resume continues from. Both loops go through it, so they start, refuse and resume alike.

    ``loop`` (``"train"`` or ``"pretrain"``) chooses the config tables a resume compares; ``flag`` is
    how the user asks for a resume (named in messages); ``lock`` is false on processes other than
    the main one, which never write.
    """

    def __init__(self, files: RunFiles, *, loop: str, flag: str = "--resume", lock: bool = True) -> None:
        self.files = files
        self.loop = loop
        self.flag = flag
        self._lock = RunFolderLock(files.folder) if lock else None

    def open(self, *, resume: bool, missing_ok: bool = False) -> bool:
        """Take the lock and check the start: a folder that holds a training state is refused without
        ``resume``; ``resume`` of a folder without one is refused too, unless ``missing_ok`` (then the
        run starts afresh). Returns whether a state will be resumed. A refusal gives the folder back
        as it was."""
        if self._lock is not None:
            self._lock.acquire()
        try:
            check_start(self.files.folder, self.files.state, resume=resume, flag=self.flag)
            if resume and not self.files.state.exists() and not missing_ok:
                raise ConfigError(f"{self.flag}: no {self.files.state_name} in {self.files.folder}; start the run "
                                  f"without {self.flag}")
        except BaseException:
            self.release()
            raise
        return resume and self.files.state.exists()

    def read_state(self, keys: Iterable[str], config: Mapping[str, Any], *, registry: Any,
                   extend: bool = False) -> dict[str, Any]:
        """The stored training state, checked (:func:`load_training_state`)."""
        return load_training_state(self.files.state, keys, config, loop=self.loop, registry=registry,
                                   extend=extend)

    def release(self) -> None:
        """Give the folder up (see :meth:`RunFolderLock.release`)."""
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
