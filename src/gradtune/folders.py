"""Folders that never lose work: written in full or not at all (atomic_dir), flushed to disk before
they count (fsync), owned by one live process at a time (FolderLock), and checked for writing
before any work starts (writable_folder, writable_file)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradtune.errors import GradtuneError

LOCK_FILE = ".gradtune.lock"


def writable_folder(path: str | Path, what: str) -> Path:
    """`path` as a folder that exists and takes files (created if missing); else an error naming
    `what` (the config key or option that chose it)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GradtuneError(f"{what} {path} is a file, not a folder; choose another folder")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise GradtuneError(f"{what} {path}: {blocker} is a file, not a folder; choose another folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".gradtune-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise GradtuneError(f"{what} {path}: cannot write there ({err.strerror or err}); choose a folder you can "
                            "write to") from None
    return path


def writable_file(path: str | Path, what: str, suffixes: tuple[str, ...] = ()) -> Path:
    """`path` as a file that can be written (its folder created if missing), of one of `suffixes`."""
    path = Path(path)
    if path.is_dir():
        kinds = f" ({', '.join(suffixes)})" if suffixes else ""
        raise GradtuneError(f"{what} {path} is a folder; give a file name{kinds}")
    if suffixes and path.suffix.lower() not in suffixes:
        raise GradtuneError(f"{what} {path}: use a {' or '.join(suffixes)} file")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise GradtuneError(f"{what} {path}: {blocker} is a file, not a folder; choose another place")
    writable_folder(path.parent, f"the folder of {what}")
    return path


def fsync_tree(folder: Path) -> None:
    """Flush every file of `folder` (and the folder entries themselves) to disk, so that a power cut
    after a rename cannot leave the renamed folder holding empty files."""
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(Path(root) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(root))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform without directory fds: the files themselves are flushed
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def recover(final: Path) -> None:
    """Finish or undo a replacement of `final` that a crash interrupted (see atomic_dir): a complete
    new folder (`.new`) goes into place, else the previous one (`.old`) comes back; leftovers go."""
    final = Path(final)
    new, old, tmp = (final.with_name(final.name + s) for s in (".new", ".old", ".tmp"))
    if not final.exists():
        for complete in (new, old):
            if complete.is_dir():
                os.replace(complete, final)
                break
    for leftover in (tmp, new, old):
        if leftover.exists():
            shutil.rmtree(leftover, ignore_errors=True)


def atomic_dir(final: Path, write: Callable[[Path], None]) -> Path:
    """Write a folder so that `final` is always either the old complete folder or the new complete
    one: `write(tmp)`, flush it to disk, rename it to `.new` (now known complete), move the old one
    aside to `.old`, rename `.new` into place, drop `.old`. A crash at any point is undone or
    finished by `recover` (called here first, and by the readers of a run)."""
    final = Path(final)
    recover(final)
    tmp, new, old = (final.with_name(final.name + s) for s in (".tmp", ".new", ".old"))
    tmp.mkdir(parents=True)
    write(tmp)
    fsync_tree(tmp)
    os.replace(tmp, new)
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    _fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _describe(owner: dict[str, Any]) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("started", 0)))
    return f"`{owner.get('command', '?')}` (pid {owner.get('pid', '?')} on {owner.get('host', '?')}, since {started})"


class FolderLock:
    """Ownership of a folder by one live process: an OS lock (flock) on `<folder>/.gradtune.lock`,
    which holds the owner's host, pid and command. The operating system releases the lock when the
    process ends, however it ends; a lock file still holding an owner's details when the lock is
    free was left by a process that died (kill -9, power cut), and is taken over with a note."""

    def __init__(self, folder: str | Path, what: str, say: Callable[[str], None] | None = None, wait: bool = False):
        self.folder, self.what, self.say, self.wait = Path(folder), what, say, wait
        self.fd: int | None = None

    def _read(self) -> dict[str, Any]:
        os.lseek(self.fd, 0, os.SEEK_SET)
        raw = os.read(self.fd, 65536)
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError:
            return {"command": "an unknown process"}

    def __enter__(self) -> FolderLock:
        import fcntl

        folder = writable_folder(self.folder, self.what)
        self.fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            owner = self._read()
            os.close(self.fd)
            self.fd = None
            raise GradtuneError(f"{self.what} {folder} is in use by another gradtune process: {_describe(owner)}. "
                                f"Wait for it to finish, or choose another {self.what}") from None
        previous = self._read()
        if previous and self.say is not None:
            self.say(f"{folder}: the gradtune process that worked here before, {_describe(previous)}, ended without "
                     "releasing it (killed?); taking it over")
        mine = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                "command": " ".join(["gradtune", *sys.argv[1:]]) if sys.argv[0].endswith("gradtune")
                else " ".join(sys.argv) or "python"}
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.write(self.fd, json.dumps(mine).encode())
        os.fsync(self.fd)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)  # an empty lock file: released in good order
        os.close(self.fd)  # closing releases the OS lock
        self.fd = None
