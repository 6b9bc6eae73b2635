"""The run folder: one module owns what a training run keeps on disk.

A run folder (``hrm-rl train --run-dir RUN``, ``ACTTrainer(config, RUN)``) holds:

- ``config.yaml``: the run's config, written when ``fit`` starts and read again on resume
  (its ``train.*`` settings may be edited between sessions);
- ``checkpoints/step_XXXXXXX/``: run checkpoints (``hrm_rl.checkpoint.save_checkpoint``'s
  format, plus ``trainer_state.pt``: see ``ACTTrainer.state_dict``), with ``test.csv``
  written once as ``checkpoints/test.csv`` and hard-linked into each;
- ``checkpoints/latest``: a pointer to the newest checkpoint, updated (atomically) only after
  the folder it names is complete (``config.json`` is written last, so a folder with a
  ``config.json`` is complete);
- ``checkpoints/best``: a pointer to the checkpoint with the best periodic evaluation so far
  (the last known good one). The rotation that keeps the two newest checkpoints never
  removes it, so a run that diverges later still has it. Load it with
  ``load_checkpoint("<run>/checkpoints/best")`` (``hrm-rl eval <run>/checkpoints/best``) and
  continue from it with ``hrm-rl train --resume <run> --from best`` (``rewind_run``: the
  later checkpoints are removed);
- ``metrics.jsonl``: one JSON line per logging window (``append_metrics``), cut back to the
  step a resume continues from (``truncate_metrics``);
- ``summary.json``: the run's final figures (``write_summary``);
- ``.lock``: held (``RunLock``) while a process trains into the folder; TensorBoard events.

Here: creating a run (``check_fresh_run_dir`` refuses a folder that holds one already),
locking it, finding the resume point (``find_resume_checkpoint``, which falls back to the
newest complete checkpoint when a kill left ``latest`` missing or naming a torn folder),
rotation (``save_run_checkpoint``), rewinding to an earlier checkpoint (``rewind_run``),
cleaning what a killed save left (``remove_partial_checkpoints``), the metrics and summary
files, and naming a full disk met while writing the run (``no_space_error``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from hrm_rl.checkpoint import (BEST, CONFIG, LATEST, TEST_PUZZLES, TRAINER_STATE, WEIGHTS,
                               atomic_write, atomic_write_text, save_checkpoint)
from hrm_rl.config import RunConfig
from hrm_rl.model import RecurrentCore
from hrm_rl.tasks import PuzzleBatch, Task


METRICS_FILE = "metrics.jsonl"
"""Per-window training figures, one JSON object per line, in the run folder."""
SUMMARY_FILE = "summary.json"
"""The run's final figures, written when its final evaluation and save are done."""
CONFIG_FILE = "config.yaml"
"""The run's config in its folder, written when ``fit`` starts; read again on resume."""
LOCK = ".lock"
"""The lock file in the run folder (``RunLock``)."""
_KEEP = 2
_STEP_DIR = re.compile(r"step_(\d+)")
_NO_SPACE = {errno.ENOSPC: "no space left", errno.EDQUOT: "disk quota exceeded",
             errno.EFBIG: "file size limit (ulimit -f) reached"}


class RunExistsError(FileExistsError):
    """A fresh run was asked to train into a folder that already holds a run."""


def holds_run(run_dir: str | Path) -> str | None:
    """What in ``run_dir`` shows it holds a run already (its checkpoints, or its
    ``metrics.jsonl``), or None when a fresh run may start there. Debris of a save killed
    before the run's first checkpoint (torn ``step_*`` folders with no ``config.yaml``
    beside them) is no run: a fresh start removes it."""
    run_dir = Path(run_dir)
    root = run_dir / "checkpoints"
    if root.is_dir() and ((run_dir / CONFIG_FILE).is_file()
                          or any(is_complete(p) for _, p in step_folders(root))):
        return f"checkpoints in {root}"
    metrics = run_dir / METRICS_FILE
    if metrics.is_file() and metrics.stat().st_size > 0:
        return f"figures in {metrics}"
    return None


def check_fresh_run_dir(run_dir: str | Path) -> None:
    """Refuse to start a fresh run in ``run_dir`` when it holds one already (``holds_run``).

    Raises:
        RunExistsError: naming the folder, what is in it, and the ways out.
    """
    found = holds_run(run_dir)
    if found is not None:
        raise RunExistsError(
            f"{run_dir} already holds a run ({found}); a fresh run would train over it: "
            f"train into a new folder (--run-dir), or continue this run with "
            f"ACTTrainer.resume({str(run_dir)!r}) (hrm-rl train --resume {run_dir})")


def make_run_dir(config: RunConfig) -> Path:
    """``<out_dir>/<name>-<YYYYmmdd-HHMMSS>-<pid>``, not yet created (the PID keeps two runs
    started in the same second apart)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(config.out_dir) / f"{config.name}-{stamp}-{os.getpid()}"


class RunLockedError(RuntimeError):
    """Another live process is writing this run folder."""


class RunLock:
    """An exclusive lock on a run folder, held while a process trains into it.

    ``<run>/.lock`` is locked with ``flock``: the kernel drops the lock when its process
    ends in any way (kill -9 included), so a lock left by a dead run is never in the way; the
    file holds the holder's PID and host for the message. ``release`` (or process exit)
    frees it.
    """

    def __init__(self, run_dir: str | Path) -> None:
        import fcntl

        self.path = Path(run_dir) / LOCK
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise RunLockedError(f"{self.path.parent} is in use by {holder}; wait for it to end "
                                 "or choose another --run-dir") from None
        self._file.seek(0)
        self._file.truncate()
        import socket
        self._file.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        self._file.flush()

    @property
    def held(self) -> bool:
        """Whether this process still holds the lock."""
        return not self._file.closed

    def release(self) -> None:
        """Free the lock (idempotent)."""
        if not self._file.closed:
            self._file.close()


def step_folders(root: str | Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every ``step_<N>`` folder in a run's ``checkpoints`` folder,
    complete or not, by step."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_DIR.fullmatch(p.name)) and p.is_dir()]
    return sorted(found)


def is_complete(folder: str | Path, resumable: bool = True) -> bool:
    """Whether ``folder`` holds a whole checkpoint: ``config.json`` (written last) and the
    weights, and with ``resumable`` the trainer state."""
    folder = Path(folder)
    names = (CONFIG, WEIGHTS, TRAINER_STATE) if resumable else (CONFIG, WEIGHTS)
    return all((folder / name).is_file() for name in names)


def read_pointer(root: str | Path, name: str) -> str | None:
    """The folder name the pointer file ``root/name`` (``latest``, ``best``) holds, if any."""
    path = Path(root) / name
    try:
        return path.read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def find_resume_checkpoint(run_dir: str | Path, name: str | None = None
                           ) -> tuple[Path | None, list[str]]:
    """The checkpoint a resume of ``run_dir`` continues from, and notes on how it was found.

    ``name`` None (or ``latest``): the folder ``latest`` names when it is complete; else (a
    kill between writing a checkpoint and moving the pointer, or a pointer naming a torn
    folder) the newest complete ``step_*`` folder, with a note; None when there is none (a
    run killed before or while writing its first checkpoint). ``name`` ``best``, or a folder
    name such as ``step_0000500``: that checkpoint.

    Raises:
        FileNotFoundError: ``name`` given but not a complete run checkpoint of ``run_dir``,
            or a checkpoint of the run holds weights without a trainer state (no kill leaves
            that: ``config.json`` is written last), which the resume would remove.
    """
    root = Path(run_dir) / "checkpoints"
    stripped = [p for _, p in step_folders(root)
                if is_complete(p, resumable=False) and not is_complete(p)]
    if stripped:
        raise FileNotFoundError(
            f"{stripped[0] / TRAINER_STATE} is missing: {', '.join(p.name for p in stripped)} "
            f"hold weights without a trainer state, which a resume can neither continue from "
            f"nor keep (it removes or overwrites them); move them out of {root} (they load as "
            f"checkpoints anywhere), then resume again")
    if name not in (None, LATEST):
        target = read_pointer(root, name) if name == BEST else name
        if target is None:
            raise FileNotFoundError(f"{root / BEST}: no best checkpoint in this run yet (it is "
                                    "set at the first evaluation, train.eval_every)")
        folder = root / target
        if _STEP_DIR.fullmatch(folder.name) is None or not is_complete(folder):
            have = ", ".join(p.name for _, p in step_folders(root) if is_complete(p)) or "none"
            raise FileNotFoundError(f"{folder} is not a complete checkpoint of this run "
                                    f"(complete ones: {have}; or use 'best' or 'latest')")
        return folder, []
    notes = []
    latest = read_pointer(root, LATEST)
    if latest is not None and _STEP_DIR.fullmatch(latest) and is_complete(root / latest):
        return root / latest, notes
    complete = [p for _, p in step_folders(root) if is_complete(p)]
    if latest is None:
        why = f"{root / LATEST} is {'unreadable' if (root / LATEST).exists() else 'missing'}"
    else:
        why = f"{root / LATEST} names {latest}, which is not a complete checkpoint"
    if complete:
        notes.append(f"{why} (as a kill while saving leaves it); resuming from the newest "
                     f"complete checkpoint, {complete[-1].name}")
        return complete[-1], notes
    return None, notes


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (replacing it), or copy atomically where links fail."""
    if dst.exists() and os.path.samefile(src, dst):  # already it (a step saved twice):
        return  # rename() between two links of one file does nothing and leaves the temp
    tmp = dst.with_name(f".{dst.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        atomic_write(dst, lambda t: shutil.copyfile(src, t))
        return
    os.replace(tmp, dst)


def save_run_checkpoint(run_dir: str | Path, step: int, model: RecurrentCore, config: RunConfig,
                        meta: dict[str, Any] | None = None,
                        test_puzzles: tuple[Task, PuzzleBatch] | None = None,
                        trainer_state: dict[str, Any] | None = None,
                        best: bool = False) -> Path:
    """Save ``<run_dir>/checkpoints/step_<step>``, point ``latest`` (and with ``best``, the
    ``best`` pointer) at it, prune old ones.

    ``latest`` and ``best`` move only after the new folder is complete, and other folders are
    removed only after that, so a crash at any point leaves both naming loadable checkpoints.
    Kept: the new folder, the ``_KEEP - 1`` newest complete ones before it and the one
    ``best`` names. Removed: older ones, torn ones (no ``config.json``: left by a killed
    process) and ones after ``step`` (left when a kill cut ``rewind_run`` short).
    """
    root = Path(run_dir) / "checkpoints"
    shared = None
    if test_puzzles is not None:  # written once per run, hard-linked into every checkpoint
        shared = root / TEST_PUZZLES  # (ARC at paper scale: hundreds of MB)
        if not shared.is_file():
            root.mkdir(parents=True, exist_ok=True)
            task, puzzles = test_puzzles
            atomic_write(shared, lambda tmp: task.write_csv(tmp, puzzles))
    folder = root / f"step_{step:07d}"
    if shared is not None:
        folder.mkdir(parents=True, exist_ok=True)
        _link_or_copy(shared, folder / TEST_PUZZLES)
    save_checkpoint(folder, model, config, meta, trainer_state=trainer_state)
    atomic_write_text(root / LATEST, folder.name)
    if best:
        atomic_write_text(root / BEST, folder.name)
    protected = {folder.name, read_pointer(root, BEST)}
    earlier = [p for n, p in step_folders(root) if n < step and is_complete(p)]
    protected.update(p.name for p in earlier[len(earlier) - (_KEEP - 1):] if _KEEP > 1)
    for _, stale in step_folders(root):
        if stale.name not in protected:
            shutil.rmtree(stale, ignore_errors=True)
    return folder


def rewind_run(run_dir: str | Path, folder: str | Path) -> tuple[list[str], bool]:
    """Make ``folder`` (a checkpoint of ``run_dir``) the run's present: point ``latest`` at
    it, then delete the checkpoints after its step (and the ``best`` pointer first, when it
    named one of them). Only for the holder of the run's ``RunLock``. Returns the removed
    folder names and whether ``best`` was removed."""
    root = Path(run_dir) / "checkpoints"
    folder = Path(folder)
    step = int(_STEP_DIR.fullmatch(folder.name).group(1))
    atomic_write_text(root / LATEST, folder.name)
    later = [p for n, p in step_folders(root) if n > step]
    best_dropped = read_pointer(root, BEST) in {p.name for p in later}
    if best_dropped:
        (root / BEST).unlink()
    for stale in later:
        shutil.rmtree(stale, ignore_errors=True)
    return [p.name for p in later], best_dropped


def remove_partial_checkpoints(run_dir: str | Path) -> list[str]:
    """Delete what a killed save left in ``<run_dir>/checkpoints``: ``step_*`` folders
    without ``config.json`` and temporary files (``.*.tmp``, ``.*.link``), in the folder and
    in complete checkpoints. Only for the holder of the run's ``RunLock`` (no live writer).
    Returns the removed paths, relative to the checkpoints folder."""
    root = Path(run_dir) / "checkpoints"
    removed = []
    for _, folder in step_folders(root):
        if not (folder / CONFIG).is_file():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name + "/")
    if root.is_dir():
        for folder in [root] + [p for _, p in step_folders(root)]:
            for junk in folder.glob(".*"):
                if junk.is_file() and junk.suffix in (".tmp", ".link"):
                    junk.unlink(missing_ok=True)
                    removed.append(str(junk.relative_to(root)))
    return removed


def write_run_config(run_dir: str | Path, config: RunConfig) -> None:
    """Create ``run_dir`` if needed and write the run's ``config.yaml`` (atomically)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(config.to_dict()))


def append_metrics(run_dir: str | Path, record: dict[str, float]) -> None:
    """Append ``record`` as one JSON line to ``<run_dir>/metrics.jsonl``.

    Raises:
        OSError: naming the file (a full disk: a torn last line is dropped on resume).
    """
    path = Path(run_dir) / METRICS_FILE
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as err:  # a full disk: name the file (a torn line is dropped on
        raise OSError(err.errno, err.strerror, str(path)) from err  # resume)


def has_summary(run_dir: str | Path) -> bool:
    """Whether the run wrote its ``summary.json`` (its final evaluation and save are done)."""
    return (Path(run_dir) / SUMMARY_FILE).is_file()


def write_summary(run_dir: str | Path, summary: dict[str, Any]) -> None:
    """Write the run's final figures to ``<run_dir>/summary.json`` (atomically)."""
    atomic_write_text(Path(run_dir) / SUMMARY_FILE, json.dumps(summary, indent=2))


def no_space_error(run_dir: str | Path, err: OSError) -> OSError | None:
    """``err`` (a full disk, a quota or a file-size limit, met while writing the run) as one
    line: what ran out, the file, the checkpoint a resume continues from; None when ``err``
    is another error."""
    if err.errno not in _NO_SPACE:
        return None
    where = err.filename or f"the TensorBoard events in {run_dir}"
    try:
        folder = find_resume_checkpoint(run_dir)[0]
    except FileNotFoundError:
        folder = None
    last = ("no checkpoint is complete yet" if folder is None else
            f"the last complete checkpoint is step {int(folder.name.split('_')[1])}")
    fix = "raise the limit" if err.errno == errno.EFBIG else "free space"
    return OSError(err.errno, f"{_NO_SPACE[err.errno]} while writing {where}; {last}; "
                              f"{fix} and resume: hrm-rl train --resume {run_dir}")


def truncate_metrics(run_dir: str | Path, step: int) -> None:
    """Keep the lines of ``<run_dir>/metrics.jsonl`` up to ``step`` (drops a torn last line
    too), rewriting the file atomically when that changes it."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return
    kept, before = [], path.read_text()
    for line in before.splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    text = "".join(f"{line}\n" for line in kept)
    if text != before:
        atomic_write_text(path, text)
