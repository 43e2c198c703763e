"""The output folder of a training run: one run at a time, never overwritten by accident.

`claim(out, resume=..., overwrite=...)` runs on rank 0 before anything is trained (the other ranks wait for
its verdict, so every rank fails together):

1. creates the folder and checks that it is writable (a probe file is written and removed), so a bad
   ``--out-dir`` fails before the first epoch, not after it;
2. takes an exclusive lock, ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<out>/.fastnoise-train.lock`` (which holds
   the owner's pid and host): a second run into the same folder fails at once with `RunDirError` naming
   the owner. The kernel releases a flock with its file descriptor, so a run killed by SIGKILL never
   leaves a stale lock; the file itself stays (it is reused);
3. refuses a folder that already holds a run (``last.json`` / ``best.json``) unless ``resume`` (continue
   it) or ``overwrite`` (its checkpoint files are deleted first, so a later ``--resume`` cannot pick up
   the old run);
4. removes what a killed run left behind: the temporary files of `checkpoint._atomic`
   (``.<file>.tmp<pid>``) and checkpoint ``.safetensors`` files that no committed JSON refers to.

Files other than fastnoise checkpoints in the folder are never touched.
"""
from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Optional

LOCK_NAME = ".fastnoise-train.lock"
CHECKPOINT_NAMES = ("last", "best")
_TMP = re.compile(r"\..+\.tmp\d+")
_TENSORS = re.compile(r"(last|best)(\.[0-9a-f]{12})?(\.state)?\.safetensors")


class RunDirError(RuntimeError):
    """The output folder cannot be used for this run (locked by another run, holds a run, not writable)."""


class RunLock:
    """The claimed output folder; `release()` (or leaving the ``with`` block) drops the lock."""

    def __init__(self, path: Optional[Path], fd: Optional[int]) -> None:
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd is not None:
            import fcntl
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _writable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise RunDirError(f"out_dir {out} is not a folder (a file of that name exists); choose another --out-dir")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"out_dir {out} cannot be created ({type(e).__name__}: {e}); choose another --out-dir") from None
    probe = out / f".write-test.tmp{os.getpid()}"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"out_dir {out} is not writable ({type(e).__name__}: {e}); checkpoints could not be "
                          f"saved: choose another --out-dir or fix its permissions") from None


def _lock(out: Path) -> RunLock:
    import fcntl
    path = out / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            owner = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise RunDirError(f"out_dir {out} is in use by another fastnoise train run ({owner}); wait for it to end "
                          f"or choose another --out-dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    return RunLock(path, fd)


def existing_run(out: Path) -> Optional[str]:
    """A description of the run that `out` holds ("last.json, epoch 3 of 10"), or None."""
    for name in CHECKPOINT_NAMES:
        j = out / f"{name}.json"
        if j.is_file():
            try:
                meta = json.loads(j.read_text())
                return f"{j.name}, epoch {meta['epoch']} of {meta['config']['epochs']}"
            except (ValueError, KeyError, TypeError):
                return f"{j.name} (unreadable)"
    return None


def _referenced(out: Path) -> Optional[set]:
    """Names of the files the committed JSONs refer to (None when a JSON is unreadable: then keep everything)."""
    names = set()
    for name in CHECKPOINT_NAMES:
        j = out / f"{name}.json"
        if not j.is_file():
            continue
        try:
            files = json.loads(j.read_text()).get("files") or {
                "weights": f"{name}.safetensors", "state": f"{name}.state.safetensors"}
            names.update(str(v) for v in files.values())
        except (ValueError, AttributeError):
            return None
    return names


def remove_leftovers(out: Path) -> list[str]:
    """Delete temporary files and unreferenced checkpoint tensors of a killed run; returns their names."""
    keep = _referenced(out)
    removed = []
    for f in out.iterdir():
        if not f.is_file() or f.name == LOCK_NAME:
            continue
        stale = _TMP.fullmatch(f.name) is not None or (keep is not None and _TENSORS.fullmatch(f.name) is not None
                                                       and f.name not in keep)
        if stale:
            f.unlink(missing_ok=True)
            removed.append(f.name)
    return sorted(removed)


def _delete_run(out: Path) -> None:
    for f in out.iterdir():
        if f.is_file() and (f.name in {f"{n}.json" for n in CHECKPOINT_NAMES} or _TENSORS.fullmatch(f.name)):
            f.unlink(missing_ok=True)


def claim(out: Path, *, resume: bool = False, overwrite: bool = False) -> RunLock:
    """Make `out` this run's folder (see the module docstring); raises `RunDirError` when it cannot be."""
    if resume and overwrite:
        raise ValueError("pass either resume (continue the run in out_dir) or overwrite (replace it), not both")
    out = Path(out)
    _writable(out)
    lock = _lock(out)
    try:
        held = existing_run(out)
        if held is not None and not resume and not overwrite:
            raise RunDirError(f"out_dir {out} already holds a run ({held}); pass --resume to continue it, "
                              f"--overwrite to replace it, or choose another --out-dir")
        if overwrite:
            _delete_run(out)
        remove_leftovers(out)
    except BaseException:
        lock.release()
        raise
    return lock


def claim_distributed(out: Path, *, resume: bool, overwrite: bool, rank: int, world: int) -> RunLock:
    """`claim` on rank 0; every rank raises the same error when it fails (no rank is left waiting)."""
    if world <= 1:
        return claim(out, resume=resume, overwrite=overwrite)
    import torch.distributed as dist
    lock, error = RunLock(None, None), [None]
    if rank == 0:
        try:
            lock = claim(out, resume=resume, overwrite=overwrite)
        except (RunDirError, ValueError) as e:
            error = [f"{type(e).__name__}: {e}"]
    dist.broadcast_object_list(error, src=0)
    if error[0] is not None:
        kind, _, msg = error[0].partition(": ")
        raise (ValueError if kind == "ValueError" else RunDirError)(msg)
    return lock
