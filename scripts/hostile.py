"""The hostile catalogue (issues R #35 and R2 #38): hostile inputs over every public entry
point of hrm-rl, each run as a user would, each result classified.

    .venv/bin/python scripts/hostile.py                 # every case (about 12 min, 1 core)
    .venv/bin/python scripts/hostile.py --quick         # a cross-section (under 3 min)
    .venv/bin/python scripts/hostile.py --out hostile.json -k trace --keep

Groups: config files, CSV data, checkpoints, recordings (trace files), envs (the Python
API), the command line, and faults (kill -9 at random times during training and during a
recording, then resume or rerun, compared with an uninterrupted run; SIGINT, SIGTERM; a full
disk and a file-size limit; closed and full stdout; two processes on one run). Each case
declares what is due, an error (and what its message must name) or a result (and how to
check it), and its result is classified:

  clear         an error (exit code != 0; for the Python API an exception) whose message
                names what was wrong, without a traceback
  ok            it worked and the result checks
  unclear       a traceback, a raw exception type, a message that does not name the problem,
                or a valid input refused
  crash         killed by a signal, or hung
  silent-wrong  exit 0 (no exception) where an error was due, or a wrong result
  data-loss     an existing file changed or lost, or a run that cannot continue

Command-line and Python cases run in a child forked from this process, which has imported
the package: the child runs ``hrm_rl.cli.main(argv)`` as the ``hrm-rl`` script does, with its
own working folder, stdin, stdout and stderr, so a case costs a fraction of a second instead
of an interpreter start. This process never computes with torch, so forking it is safe. The
faults (and closed or full stdout, and resource limits) run the real ``hrm-rl`` script in a
fresh process. Exit status 0 when crash, silent-wrong and data-loss are 0 and unclear is at
most 5 (the acceptance of both issues), else 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported, here and in children
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent
HRM_RL = str(Path(sys.executable).parent / "hrm-rl")
CLASSES = ("clear", "ok", "unclear", "crash", "silent-wrong", "data-loss")
BOUNDS = {"crash": 0, "silent-wrong": 0, "data-loss": 0, "unclear": 5}
"""The most of each class a run may hold and pass."""
PRELUDE = "import numpy as np\nimport gymnasium as gym\nimport hrm_rl\nfrom pathlib import Path\n"
"""What a Python case's code starts with."""
RAW = ("UnicodeDecodeError", "JSONDecodeError", "KeyError", "IndexError", "AttributeError",
       "AssertionError", "ZeroDivisionError", "RecursionError", "NameError", "error")
"""Exception types that are no message of ours (a ValueError subclass among them too)."""


# ================================================================================ cases
@dataclass
class Outcome:
    """What a case did: exit code (negative: killed by that signal; None: hung), output."""

    rc: int | None
    out: str
    err: str
    folder: Path
    seconds: float = 0.0


@dataclass
class Case:
    """One hostile input.

    ``argv`` (an ``hrm-rl`` command line) or ``code`` (Python, after ``PRELUDE``; a failed
    ``assert`` in it means a wrong result) or ``fault`` (a scenario run here with real
    processes; it returns its class and a note). ``expect`` is ``error``, ``ok`` or ``any``
    (either, as long as an error is clear); ``names`` are what a clear error's text must
    contain; ``check`` finds a problem with a result; ``keep`` are files (in the case's
    folder) that must be the same afterwards."""

    name: str
    group: str
    argv: list[str] | None = None
    code: str | None = None
    fault: Callable[[Fixtures, Path], tuple[str, str]] | None = None
    expect: str = "error"
    names: tuple[str, ...] = ()
    setup: Callable[[Fixtures, Path], None] | None = None
    check: Callable[[Outcome], str | None] | None = None
    keep: tuple[str, ...] = ()
    quick: bool = False
    timeout: float = 240.0


@dataclass
class Result:
    name: str
    group: str
    klass: str
    note: str
    rc: int | None = None
    seconds: float = 0.0
    stderr_tail: str = ""


# ========================================================================= fixtures
@dataclass
class Fixtures:
    """Shared inputs, made once: a finished tiny run, a recording, CSV files of each task,
    and a fault run's uninterrupted reference."""

    root: Path
    cache: Path = field(init=False)
    tiny: Path = field(init=False)
    run: Path = field(init=False)
    rec: Path = field(init=False)
    fault_yaml: Path = field(init=False)
    fault_ref: Path = field(init=False)
    fault_seconds: float = 10.0

    def __post_init__(self) -> None:
        self.cache = self.root / "data"
        self.tiny = self.root / "tiny.yaml"
        self.run = self.root / "run"
        self.rec = self.root / "rec.npz"
        self.fault_yaml = self.root / "fault.yaml"
        self.fault_ref = self.root / "fault-ref"

    def csv(self, core: str, rows: int = 6) -> str:
        """The header and first ``rows`` rows of a bundled core's test.csv."""
        lines = (REPO / "hrm_rl" / "checkpoints" / core / "test.csv").read_text().splitlines()
        return "\n".join(lines[:rows + 1]) + "\n"

    def make(self) -> None:
        recipe = REPO / "configs" / "sudoku4-tiny.yaml"
        self.tiny.write_text(
            f"extends: {recipe}\nname: hostile-tiny\n"
            f"data: {{train_size: 200, test_size: 40, cache_dir: {self.cache}}}\n"
            "train: {steps: 6, max_time_s: null, checkpoint_every: 3, eval_every: 1000,\n"
            "        eval_size: 16, threads: 1, log_every: 1}\n")
        self.fault_yaml.write_text(
            f"extends: {recipe}\nname: hostile-fault\n"
            "model: {hidden_size: 32, num_heads: 2}\n"
            f"data: {{train_size: 200, test_size: 40, cache_dir: {self.cache}}}\n"
            "train: {steps: 40, max_time_s: null, checkpoint_every: 8, eval_every: 16,\n"
            "        eval_size: 16, threads: 1, log_every: 1, batch_size: 16}\n")
        for argv in (["train", str(self.tiny), "--run-dir", str(self.run), "--no-progress"],
                     ["rollouts", "record", "sudoku4", "--split", "test", "--episodes", "8",
                      "--max-segments", "4", "--latent", "--out", str(self.rec),
                      "--no-progress"]):
            done = fork_case(Case("fixture", "fixture", argv=argv), self.root)
            if done.rc != 0:
                raise SystemExit(f"fixture {' '.join(argv)} failed:\n{done.err}")
        (self.root / "s4.csv").write_text(self.csv("sudoku4", 6))

    def make_fault_reference(self) -> None:
        """The fault run, uninterrupted (what a killed and resumed one must equal)."""
        start_t = time.perf_counter()
        done = real(["train", str(self.fault_yaml), "--run-dir", str(self.fault_ref),
                     "--no-progress"], self.root)
        if done.rc != 0:
            raise SystemExit(f"the fault reference run failed:\n{done.err}")
        self.fault_seconds = time.perf_counter() - start_t

    def checkpoint(self) -> Path:
        return self.run / "checkpoints" / "step_0000006"


# =========================================================================== running
def fork_case(case: Case, folder: Path) -> Outcome:
    """Run ``case.argv`` or ``case.code`` in a child forked from this process."""
    logs = folder.parent / f".{folder.name}.log"
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / "stdout", logs / "stderr"
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.chdir(folder)
            for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                                    (1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                    (2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
                new = os.open(path, flags, 0o644)
                os.dup2(new, fd)
                os.close(new)
            code = _run_cli(case.argv) if case.argv is not None else _run_code(case.code)
        except BaseException:
            traceback.print_exc()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    rc = _wait(pid, case.timeout)
    outcome = Outcome(rc, out.read_text(errors="replace"), err.read_text(errors="replace"),
                      folder, time.perf_counter() - start)
    shutil.rmtree(logs, ignore_errors=True)
    return outcome


def _run_cli(argv: list[str]) -> int:
    """What the ``hrm-rl`` script does: ``sys.exit(main())``; an exception escapes (and the
    child prints its traceback, exit 1, as Python would)."""
    from hrm_rl.cli import main

    sys.argv = ["hrm-rl", *argv]
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1


def _run_code(code: str) -> int:
    """Exit 0 when the code ran, 3 when an ``assert`` in it failed (a wrong result), 2 when
    it raised (the exception's type and message on stderr)."""
    try:
        exec(compile(PRELUDE + code, "<case>", "exec"), {"__name__": "__case__"})
    except AssertionError as err:
        print(f"WRONG: {err}", file=sys.stderr)
        return 3
    except Exception as err:
        print(f"RAISED {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    return 0


def _wait(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.005)


def real(argv: list[str], cwd: Path, timeout: float = 300, fsize: int | None = None,
         stdout: int | None = subprocess.PIPE, close_stdout: bool = False) -> Outcome:
    """The ``hrm-rl`` script in a fresh process (``fsize``: a file-size limit in bytes)."""
    def limits() -> None:
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        if close_stdout:
            os.close(1)

    start = time.perf_counter()
    try:
        done = subprocess.run([HRM_RL, *argv], cwd=cwd, stdout=stdout, stderr=subprocess.PIPE,
                              text=True, timeout=timeout, preexec_fn=limits)
    except subprocess.TimeoutExpired as err:
        return Outcome(None, "", str(err.stderr or ""), cwd, timeout)
    return Outcome(done.returncode, done.stdout or "", done.stderr, cwd,
                   time.perf_counter() - start)


def start(argv: list[str], cwd: Path) -> subprocess.Popen:
    """``hrm-rl argv`` in ``cwd``, with SIGINT at its default as a terminal gives it (run from
    a background shell, the catalogue would otherwise pass on SIGINT ignored)."""
    return subprocess.Popen([HRM_RL, *argv], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


# ======================================================================= classifying
def _last(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _digest(path: Path) -> str | None:
    if path.is_dir():
        return hashlib.sha256("".join(f"{p.relative_to(path)}:{_digest(p)}" for p in
                                      sorted(path.rglob("*")) if p.is_file()).encode()
                              ).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def classify(case: Case, o: Outcome, kept: dict[str, str | None]) -> tuple[str, str]:
    if o.rc is None:
        return "crash", f"hung: killed after {case.timeout:.0f} s"
    if o.rc < 0:
        return "crash", f"killed by {signal.Signals(-o.rc).name}"
    changed = [name for name, before in kept.items() if _digest(o.folder / name) != before]
    if changed:
        return "data-loss", f"changed or lost: {', '.join(changed)}"
    traced = "Traceback (most recent call last)" in o.err or "Exception in thread" in o.err
    if o.rc == 3 and o.err.startswith("WRONG"):
        return "silent-wrong", _last(o.err)
    if o.rc == 0:
        problem = case.check(o) if case.check is not None else None
        if case.expect == "error":
            return "silent-wrong", "exit 0 where an error was due" + (
                f" ({problem})" if problem else f": {_last(o.out) or '(no output)'}")
        if problem:
            return "silent-wrong", problem
        if traced:
            return "unclear", f"worked, with a traceback on stderr: {_last(o.err)}"
        return "ok", ""
    if traced:
        return "unclear", f"traceback: {_last(o.err)}"
    if case.code is not None:
        raised = o.err.split(":", 1)[0].removeprefix("RAISED ").strip()
        if raised in RAW:
            return "unclear", f"raw {raised}: {_last(o.err)}"
    if case.expect == "ok":
        return "unclear", f"refused a valid input: {_last(o.err)}"
    missing = [n for n in case.names if n not in o.err]
    if missing:
        return "unclear", f"does not name {missing}: {_last(o.err)}"
    return "clear", _last(o.err)


def run_case(case: Case, fx: Fixtures, folder: Path) -> Result:
    folder.mkdir(parents=True)
    try:
        if case.setup is not None:
            case.setup(fx, folder)
        if case.fault is not None:
            start_t = time.perf_counter()
            klass, note = case.fault(fx, folder)
            return Result(case.name, case.group, klass, note,
                          seconds=time.perf_counter() - start_t)
        kept = {name: _digest(folder / name) for name in case.keep}
        o = fork_case(case, folder)
        klass, note = classify(case, o, kept)
        return Result(case.name, case.group, klass, note, o.rc, round(o.seconds, 2),
                      o.err[-600:])
    except Skip as why:
        return Result(case.name, case.group, "skipped", str(why))
    except Exception:
        return Result(case.name, case.group, "unclear", "the catalogue's own setup or fault "
                      f"failed: {traceback.format_exc(limit=3)[-500:]}")


class Skip(Exception):
    """A case this machine cannot run (e.g. no tmpfs mount without root)."""


# ======================================================================== file tools
def write(folder: Path, name: str, data: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


def copy(src: Path, dst: Path) -> Path:
    if src.is_dir():
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    return dst


def json_check(**expected) -> Callable[[Outcome], str | None]:
    """A check that stdout is one JSON object holding ``expected`` (``key=value``)."""
    def check(o: Outcome) -> str | None:
        try:
            data = json.loads(o.out)
        except ValueError as err:
            return f"stdout is not JSON ({err})"
        wrong = {k: data.get(k) for k, v in expected.items() if data.get(k) != v}
        return f"expected {expected}, got {wrong}" if wrong else None
    return check


def flip_weights(folder: Path, count: int, seed: int, header: bool = False) -> None:
    """Flip ``count`` bytes of ``folder/model.safetensors``: in its tensor data, or in its
    JSON header."""
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    rng = random.Random(seed)
    lo, hi = (8, start - 1) if header else (start, len(data) - 1)
    for _ in range(count):
        data[rng.randint(lo, hi)] ^= 0xFF
    path.write_bytes(bytes(data))


def poison_weights(folder: Path, value: float) -> None:
    """Set one tensor of the weights to ``value`` (NaN, inf) and record the new file's
    SHA-256 in config.json: a checkpoint saved that way, not a corrupted one."""
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    path = folder / "model.safetensors"
    with safe_open(str(path), framework="np") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    name = sorted(k for k, v in tensors.items() if v.dtype.kind == "f")[0]
    tensors[name] = np.full_like(tensors[name], value)
    save_file(tensors, path, metadata=metadata)
    edit_json(folder / "config.json", lambda c: c["meta"].__setitem__(
        "weights_sha256", hashlib.sha256(path.read_bytes()).hexdigest()))


def edit_json(path: Path, edit: Callable[[dict], object]) -> None:
    payload = json.loads(path.read_text())
    edit(payload)
    path.write_text(json.dumps(payload, indent=2))


def tamper_trace(src: Path, dst: Path, recompute: bool = True, identity=None, drop=(),
                 **arrays) -> None:
    """A copy of a trace file with ``arrays`` replaced, ``drop`` removed, ``identity``
    (a function of the identity dict, or a str to store as it is) applied, and (with
    ``recompute``) a checksum that fits: a deliberate edit, not a torn write."""
    import numpy as np

    from hrm_rl.trace import arrays_sha256

    with np.load(src, allow_pickle=False) as data:
        files = {k: data[k] for k in data.files}
    ident = json.loads(str(files.pop("identity")))
    files.update(arrays)
    for name in drop:
        files.pop(name, None)
    if recompute:
        ident["arrays_sha256"] = arrays_sha256({k: v for k, v in files.items()
                                                if k != "puzzles_csv"})
    if callable(identity):
        identity(ident)
    text = identity if isinstance(identity, str) else json.dumps(ident)
    if identity is not None or "identity" not in drop:
        files["identity"] = np.array(text)
    if "identity" in drop:
        files.pop("identity", None)
    np.savez(dst, **files)


# ============================================================================ config
BAD_VALUES = {
    "train.lr": ["abc", "-1", "[1, 2]", "{a: 1}", ".nan", ".inf", "true"],
    "train.batch_size": ["0", "-4", "2.5", "abc", "true", "[16]"],
    "train.steps": ["-1", "1.5", "abc", "true"],
    "train.max_segments": ["0", "-1", "2.5", "abc"],
    "model.hidden_size": ["0", "-8", "12.5", "abc"],
    "model.num_heads": ["0", "3", "-1"],
    "model.H_cycles": ["0", "-1", "x"],
    "task.size": ["5", "0", "-4", "abc"],
    "task.name": ["nosuch", "3", "null"],
    "train.precision": ["fp8", "16"],
    "train.optimizer": ["sgdx"],
    "data.train_size": ["0", "-5", "abc"],
    "data.max_givens": ["100", "-1"],
    "train.eval_every": ["0", "-1"],
    "train.grad_clip": ["-1", "abc"],
    "train.ema_decay": ["1.5", "-0.1"],
    "train.device": ["tpu", "7"],
}


def _yaml_with(key: str, value: str) -> str:
    section, name = key.split(".")
    base = {"task": "task: {name: sudoku, size: 4}\n", "model": "", "train": "", "data": ""}
    if section == "task":
        other = "size: 4" if name == "name" else "name: sudoku"
        base["task"] = f"task: {{{other}, {name}: {value}}}\n"
    else:
        base[section] = f"{section}: {{{name}: {value}}}\n"
    return "".join(base.values())


def config_cases() -> list[Case]:
    cases = []
    for key, values in BAD_VALUES.items():
        for i, value in enumerate(values):
            text = _yaml_with(key, value)
            cases.append(Case(f"config {key}: {value}", "config", ["params", "bad.yaml"],
                              names=("bad.yaml", key),
                              setup=lambda fx, f, t=text: write(f, "bad.yaml", t),
                              quick=i == 0 and key in ("train.lr", "task.size")))
    files = {
        "unknown train key": ("task: {name: sudoku, size: 4}\ntrain: {lrr: 1}\n", "train.lrr"),
        "unknown model key": ("model: {hiden_size: 64}\n", "hiden_size"),
        "unknown section": ("trian: {steps: 1}\n", "trian"),
        "unknown data key": ("data: {foo: 1}\n", "foo"),
        "unknown task key": ("task: {name: sudoku, size: 4, colour: red}\n", "colour"),
        "section not a mapping": ("train: 5\n", "train"),
        "top level a list": ("- 1\n- 2\n", "mapping"),
        "top level a scalar": ("42\n", "mapping"),
        "YAML syntax error": ("train: {lr: 1\n", "YAML"),
        "duplicate key": ("train: {lr: 1}\ntrain: {lr: 2}\n", "twice"),
        "tab indentation": ("train:\n\tlr: 1\n", "bad.yaml"),
        "empty file": ("", "empty"),
        "only a comment": ("# nothing\n", "empty"),
        "extends a missing file": ("extends: nosuch.yaml\n", "nosuch.yaml"),
        "extends itself": ("extends: bad.yaml\n", "cycle"),
        "extends a number": ("extends: 3\n", "extends"),
        "extends an empty name": ("extends: ''\n", "extends"),
    }
    for name, (text, what) in files.items():
        cases.append(Case(f"config {name}", "config", ["params", "bad.yaml"],
                          names=("bad.yaml", what),
                          setup=lambda fx, f, t=text: write(f, "bad.yaml", t),
                          quick=name in ("empty file", "unknown train key")))
    binaries = {"binary bytes": b"\x00\xff\xfe\x80\x81" * 20,
                "latin-1 text": "train: {name: caf\xe9}\n".encode("latin-1")}
    for name, data in binaries.items():
        cases.append(Case(f"config {name}", "config", ["params", "bad.yaml"],
                          names=("bad.yaml", "UTF-8"),
                          setup=lambda fx, f, d=data: write(f, "bad.yaml", d)))
    bases = {"a typo": "task: {name: sudoku, size: 4}\ntrian: {steps: 1}\n",
             "a bad value": "train: {lr: -1}\n",
             "binary bytes": b"\xff\xfe\x00\x81"}
    for name, data in bases.items():
        cases.append(Case(f"config extends a base with {name}", "config",
                          ["params", "child.yaml"], names=("base.yaml",),
                          setup=lambda fx, f, d=data: (
                              write(f, "base.yaml", d),
                              write(f, "child.yaml", "extends: base.yaml\nname: x\n"))))
    cases.append(Case("config extends a cycle of two", "config", ["params", "a.yaml"],
                      names=("cycle",), setup=lambda fx, f: (
                          write(f, "a.yaml", "extends: b.yaml\n"),
                          write(f, "b.yaml", "extends: a.yaml\n"))))
    cases.append(Case("config file not found", "config", ["params", "nosuch.yaml"],
                      names=("nosuch.yaml",)))
    cases.append(Case("config a folder as the file", "config", ["params", "."], names=(".",)))
    overrides = {"train.lr": "train.lr", ".lr=1": ".lr", "train.=1": "train.",
                 "=1": "=1", "train.lr=[": "train.lr", "nosuch.key=1": "nosuch",
                 "train.nosuch=1": "nosuch", "train.lr.x=1": "train.lr",
                 "train.lr=abc": "train.lr", "model.hidden_size=-3": "model.hidden_size",
                 "task.size=7": "task.size", "train.batch_size=1e3": "train.batch_size"}
    for i, (item, what) in enumerate(overrides.items()):
        cases.append(Case(f"config --set {item}", "config",
                          ["params", "sudoku4-tiny", "--set", item], names=(what,),
                          quick=i == 1))
    cases.append(Case("config --set train.device=tpu on train", "config",
                      ["train", "{tiny}", "--set", "train.device=tpu", "--run-dir", "r",
                       "--no-progress"], names=("tpu",)))
    cases.append(Case("config recipe name unknown", "config", ["params", "sudoku5-tiny"],
                      names=("sudoku5-tiny",)))
    cases.append(Case("config a valid recipe by name", "config", ["params", "maze6-tiny"],
                      expect="ok", check=lambda o: None if o.out.strip().replace(",", "")
                      .split()[0].isdigit() else f"not a count: {o.out!r}"))
    return cases


# =============================================================================== csv
def _edit_row(text: str, row: int, edit: Callable[[list[str]], list[str]]) -> str:
    lines = text.splitlines()
    lines[row] = ",".join(edit(lines[row].split(",")))
    return "\n".join(lines) + "\n"


def _set_char(field_: str, index: int, char: str) -> str:
    return field_[:index] + char + field_[index + 1:]


def _swap(field_: str, i: int, j: int) -> str:
    chars = list(field_)
    chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


def _given(question: str) -> int:
    return next(i for i, c in enumerate(question) if c not in ". ")


def grid_variants(core: str, fx: Fixtures) -> dict[str, tuple[str | bytes, str, tuple]]:
    """``{variant: (file content, expect, names)}`` for a Sudoku or maze core's CSV."""
    good = fx.csv(core)
    question = good.splitlines()[1].split(",")[1]
    g = _given(question)
    wrong_char = "z"
    other = "9" if core.startswith("sudoku") else "X"
    out: dict[str, tuple[str | bytes, str, tuple]] = {
        "good": (good, "ok", ()),
        "with a BOM": ("\ufeff" + good, "ok", ()),
        "with CRLF line ends": (good.replace("\n", "\r\n"), "ok", ()),
        "with trailing blank lines": (good + "\n\n", "any", ("bad.csv",)),
        "with duplicate rows": (good + "\n".join(good.splitlines()[1:]) + "\n", "any",
                                ("bad.csv",)),
        "with a bad header": (good.replace("question", "qestion", 1), "error", ("bad.csv",)),
        "header only": (good.splitlines()[0] + "\n", "error", ("bad.csv",)),
        "empty": ("", "error", ("bad.csv",)),
        "binary": (bytes(range(256)) * 4, "error", ("bad.csv",)),
        "with a NUL byte": (_edit_row(good, 2, lambda r: [r[0], _set_char(r[1], 1, "\x00"),
                                                          *r[2:]]), "error", ("bad.csv:3",)),
        "with a short question": (_edit_row(good, 1, lambda r: [r[0], r[1][:-1], *r[2:]]),
                                  "error", ("bad.csv:2",)),
        "with a long answer": (_edit_row(good, 1, lambda r: [r[0], r[1], r[2] + r[2][:1],
                                                             *r[3:]]),
                               "error", ("bad.csv:2",)),
        "with a bad character": (_edit_row(good, 1, lambda r: [r[0], _set_char(
            r[1], g, wrong_char), *r[2:]]), "error", ("bad.csv:2",)),
        "with an out-of-range symbol": (_edit_row(good, 1, lambda r: [r[0], _set_char(
            r[1], g, other), *r[2:]]), "error", ("bad.csv:2",)),
        "with a missing column": ("\n".join(",".join(line.split(",")[:2]) for line in
                                            good.splitlines()) + "\n", "error", ("bad.csv",)),
        "with a row of fewer fields": (_edit_row(good, 3, lambda r: r[:1]), "error",
                                       ("bad.csv:4",)),
        "with a giant line": (good + "x" * 200_000 + "\n", "error", ("bad.csv",)),
    }
    if core.startswith("sudoku"):
        answer = good.splitlines()[1].split(",")[2]
        a, b = 0, next(i for i in range(1, len(answer)) if answer[i] != answer[0])
        out["with givens the answer contradicts"] = (_edit_row(good, 1, lambda r: [
            r[0], _set_char(r[1], g, str(int(r[2][g]) % 4 + 1)), *r[2:]]), "error",
            ("bad.csv:2",))
        out["with an answer that breaks the rules"] = (_edit_row(good, 1, lambda r: [
            r[0], r[1], _swap(r[2], a, b), *r[3:]]), "error", ("bad.csv:2",))
    else:
        out["with two starts"] = (_edit_row(good, 1, lambda r: [
            r[0], _set_char(r[1], r[1].index(" "), "S"), r[2], *r[3:]]), "error",
            ("bad.csv:2",))
        out["with an answer that walks through a wall"] = (_edit_row(good, 1, lambda r: [
            r[0], r[1], r[2].replace("#", "o", 1), *r[3:]]), "error", ("bad.csv:2",))
    return out


def arc_variants(fx: Fixtures) -> dict[str, tuple[str | bytes, str, tuple]]:
    good = fx.csv("arc-tiny", 3)
    header = good.splitlines()[0]
    return {
        "good": (good, "ok", ()),
        "with a BOM": ("\ufeff" + good, "ok", ()),
        "with a bad header": (good.replace("input", "inptu", 1), "error", ("bad.csv",)),
        "header only": (header + "\n", "error", ("bad.csv",)),
        "empty": ("", "error", ("bad.csv",)),
        "binary": (bytes(range(256)) * 4, "error", ("bad.csv",)),
        "with a NUL byte": (good.replace("/", "\x00", 1), "error", ("bad.csv",)),
        "with a colour out of range": (_edit_row(good, 1, lambda r: [
            r[0], "x" + r[1][1:], *r[2:]]), "error", ("bad.csv:2",)),
        "with ragged grid rows": (_edit_row(good, 1, lambda r: [
            r[0], r[1] + "/0", *r[2:]]), "error", ("bad.csv:2",)),
        "with a 31x31 grid": (_edit_row(good, 1, lambda r: [
            r[0], "/".join(["0" * 31] * 31), *r[2:]]), "error", ("bad.csv:2",)),
        "with a missing output": (_edit_row(good, 1, lambda r: [r[0], r[1], "", r[3]]),
                                  "error", ("bad.csv:2",)),
        "with a negative puzzle id": (_edit_row(good, 1, lambda r: [*r[:3], "-4"]), "error",
                                      ("bad.csv:2",)),
        "with a text puzzle id": (_edit_row(good, 1, lambda r: [*r[:3], "seven"]), "error",
                                  ("bad.csv:2",)),
    }


def csv_cases(fx: Fixtures) -> list[Case]:
    cases = []
    variants = {"sudoku4": grid_variants("sudoku4", fx), "maze6": grid_variants("maze6", fx),
                "arc-tiny": arc_variants(fx)}
    for core, table in variants.items():
        for i, (name, (data, expect, names)) in enumerate(table.items()):
            n = 3 if core == "arc-tiny" else 6
            check = (json_check(n=n) if name in ("good", "with a BOM", "with CRLF line ends")
                     else None)
            cases.append(Case(f"csv {core} {name}", "csv",
                              ["eval", core, "--data", "bad.csv", "--no-progress"],
                              expect=expect, names=names or ("bad.csv",), check=check,
                              setup=lambda fx, f, d=data: write(f, "bad.csv", d),
                              quick=i in (1, 9)))
    s4 = grid_variants("sudoku4", fx)
    entry_points = {  # the same refusals through the other commands that read a CSV
        "holdout --data": ["holdout", "--data", "bad.csv", "--trained-on", "sudoku4",
                           "--out", "clean.csv", "--no-progress"],
        "rollouts record --split": ["rollouts", "record", "sudoku4", "--split", "bad.csv",
                                    "--out", "r.npz", "--no-progress"],
        "halt eval --split": ["halt", "eval", "--split", "bad.csv", "--policies", "qhead",
                              "--no-progress", "--out-dir", "figs"],
        "train data.train_path": ["train", "{tiny}", "--set", "data.train_path=bad.csv",
                                  "--set", "data.test_path=bad.csv", "--run-dir", "r",
                                  "--no-progress"],
    }
    for entry, argv in entry_points.items():
        for name in ("with a NUL byte", "with a short question", "binary", "header only"):
            data, _, names = s4[name]
            cases.append(Case(f"csv {entry} {name}", "csv", argv, names=names,
                              setup=lambda fx, f, d=data: write(f, "bad.csv", d),
                              quick=name == "binary" and entry == "holdout --data"))
    for name in ("with a bad character", "empty", "with a BOM"):
        data, expect, names = s4[name]
        cases.append(Case(f"csv task.read_csv {name}", "csv", code=(
            "from hrm_rl.tasks import make_task\nfrom hrm_rl.config import TaskConfig\n"
            "b = make_task(TaskConfig(name='sudoku', size=4)).read_csv('bad.csv')\n"
            "assert len(b) == 6, len(b)\n"), expect=expect, names=names,
            setup=lambda fx, f, d=data: write(f, "bad.csv", d)))
        cases.append(Case(f"csv env split= {name}", "csv", code=(
            "env = gym.make('HRM-Sudoku-v0', split='bad.csv')\nobs, _ = env.reset(seed=0)\n"
            "assert env.observation_space.contains(obs)\n"), expect=expect, names=names,
            setup=lambda fx, f, d=data: write(f, "bad.csv", d)))
    return cases


# ======================================================================= checkpoints
def checkpoint_cases(fx: Fixtures) -> list[Case]:
    ck = lambda fx, f: copy(fx.checkpoint(), f / "ck")  # noqa: E731
    eval_ck = ["eval", "ck", "--data", "test", "--limit", "4", "--no-progress"]

    def then(*steps):
        def setup(fx, f):
            ck(fx, f)
            for step in steps:
                step(f / "ck")
        return setup

    variants = {
        "missing folder": (None, ("nosuch",), ["eval", "nosuch", "--data", "test"]),
        "empty folder": (lambda fx, f: (f / "ck").mkdir(), ("ck",), eval_ck),
        "without weights": (then(lambda c: (c / "model.safetensors").unlink()),
                            ("model.safetensors",), eval_ck),
        "without config.json": (then(lambda c: (c / "config.json").unlink()), ("ck",), eval_ck),
        "with zero-length weights": (then(lambda c: (c / "model.safetensors").write_bytes(b"")),
                                     ("model.safetensors",), eval_ck),
        "with weights cut in half": (then(lambda c: (c / "model.safetensors").write_bytes(
            (c / "model.safetensors").read_bytes()[:(c / "model.safetensors").stat().st_size
                                                   // 2])), ("model.safetensors",), eval_ck),
        "with weights of text": (then(lambda c: (c / "model.safetensors").write_text("hi")),
                                 ("model.safetensors",), eval_ck),
        "with flipped header bytes": (then(lambda c: flip_weights(c, 4, 0, header=True)),
                                      ("model.safetensors",), eval_ck),
        "with NaN weights (hash restamped)": (then(lambda c: poison_weights(c, float("nan"))),
                                              ("model.safetensors", "NaN"), eval_ck),
        "with inf weights (hash restamped)": (then(lambda c: poison_weights(c, float("inf"))),
                                              ("model.safetensors",), eval_ck),
        "with config.json not JSON": (then(lambda c: (c / "config.json").write_text("{x")),
                                      ("config.json",), eval_ck),
        "with an empty config.json": (then(lambda c: (c / "config.json").write_text("")),
                                      ("config.json",), eval_ck),
        "with binary config.json": (then(lambda c: (c / "config.json").write_bytes(
            b"\xff\x00\xfe")), ("config.json",), eval_ck),
        "with config.json lacking 'run'": (then(lambda c: edit_json(
            c / "config.json", lambda p: p.pop("run"))), ("config.json",), eval_ck),
        "with config.json for a maze": (then(lambda c: edit_json(
            c / "config.json", lambda p: p["run"]["task"].update(name="maze", size=6))),
            ("config.json",), eval_ck),
        "with H_cycles edited": (then(lambda c: edit_json(
            c / "config.json", lambda p: p["model"].update(H_cycles=5))), ("H_cycles",),
            eval_ck),
        "with an unknown key in config.json": (then(lambda c: edit_json(
            c / "config.json", lambda p: p["run"]["train"].update(lrr=1))), ("lrr",), eval_ck),
        "with its weights hash edited": (then(lambda c: edit_json(
            c / "config.json", lambda p: p["meta"].update(weights_sha256="0" * 64))),
            ("model.safetensors", "SHA-256"), eval_ck),
        "with sudoku6's weights": (then(lambda c: shutil.copy(
            REPO / "hrm_rl/checkpoints/sudoku6/model.safetensors", c / "model.safetensors")),
            ("model.safetensors",), eval_ck),
    }
    for seed in range(4):
        variants[f"with 64 flipped weight bytes (seed {seed})"] = (
            then(lambda c, s=seed: flip_weights(c, 64, s)), ("model.safetensors", "SHA-256"),
            eval_ck)
    cases = []
    for i, (name, (setup, names, argv)) in enumerate(variants.items()):
        cases.append(Case(f"checkpoint {name}", "checkpoint", argv, names=names, setup=setup,
                          quick=i in (3, 8)))
    run = lambda fx, f: copy(fx.run, f / "run")  # noqa: E731
    pointers = {
        "a binary latest pointer": (b"\x00\xff\xfe\x80", "latest"),
        "an empty latest pointer": (b"", "latest"),
        "a latest naming a missing folder": (b"step_0000099\n", "latest"),
        "a latest naming another path": (b"../../etc\n", "latest"),
    }
    for i, (name, (data, what)) in enumerate(pointers.items()):
        setup = (lambda fx, f, d=data: (run(fx, f), write(f, "run/checkpoints/latest", d)))
        cases.append(Case(f"checkpoint run with {name} (eval)", "checkpoint",
                          ["eval", "run", "--data", "test", "--limit", "4", "--no-progress"],
                          names=(what,), setup=setup, quick=i == 0))
        cases.append(Case(f"checkpoint run with {name} (--resume)", "checkpoint",
                          ["train", "--resume", "run", "--set", "train.steps=9",
                           "--no-progress"], expect="ok", setup=setup,
                          check=json_check(steps=9)))
    cases += [
        Case("checkpoint best naming a missing folder", "checkpoint",
             ["eval", "run/checkpoints/best", "--data", "test", "--no-progress"],
             names=("best",), setup=lambda fx, f: (
                 run(fx, f), write(f, "run/checkpoints/best", "step_0000042\n"))),
        Case("checkpoint a corrupt trainer_state.pt on --resume", "checkpoint",
             ["train", "--resume", "run", "--no-progress"], names=("trainer_state.pt",),
             setup=lambda fx, f: (run(fx, f), write(
                 f, "run/checkpoints/step_0000006/trainer_state.pt", b"\x00garbage"))),
        Case("checkpoint --resume a bundled core", "checkpoint",
             ["train", "--resume", str(REPO / "hrm_rl/checkpoints/sudoku4"), "--no-progress"],
             names=("sudoku4",)),
        Case("checkpoint --resume a folder that is no run", "checkpoint",
             ["train", "--resume", "nosuch", "--no-progress"], names=("nosuch",)),
        Case("checkpoint --resume --from a missing step", "checkpoint",
             ["train", "--resume", "run", "--from", "step_0000042", "--no-progress"],
             names=("step_0000042",), setup=run, keep=("run/checkpoints",)),
        Case("checkpoint --resume with model.* changed", "checkpoint",
             ["train", "--resume", "run", "--set", "model.hidden_size=64", "--no-progress"],
             names=("model.hidden_size",), setup=run, keep=("run/checkpoints",)),
        Case("checkpoint --resume changing the batch size", "checkpoint",
             ["train", "--resume", "run", "--set", "train.batch_size=8", "--no-progress"],
             names=("batch_size",), setup=run, keep=("run/checkpoints",)),
        Case("checkpoint --resume with every trainer state gone", "checkpoint",
             ["train", "--resume", "run", "--no-progress"], names=("trainer_state.pt",),
             keep=("run/checkpoints",),
             setup=lambda fx, f: (run(fx, f), [p.unlink() for p in
                                               (f / "run").rglob("trainer_state.pt")])),
        Case("checkpoint train into a folder holding a run", "checkpoint",
             ["train", "{tiny}", "--run-dir", "run", "--no-progress"], names=("run",),
             setup=run, keep=("run/checkpoints", "run/summary.json")),
        Case("checkpoint init_from a flipped checkpoint", "checkpoint",
             ["train", "{tiny}", "--set", "train.init_from=ck", "--run-dir", "r",
              "--no-progress"], names=("ck", "model.safetensors"),
             setup=then(lambda c: flip_weights(c, 64, 9))),
        Case("checkpoint gym.make with a NaN checkpoint", "checkpoint",
             code="gym.make('HRM-Sudoku-v0', checkpoint='ck')\n",
             names=("model.safetensors",), setup=then(lambda c: poison_weights(c, float("nan"))),
             quick=True),
        Case("checkpoint load_checkpoint of flipped bytes", "checkpoint",
             code="from hrm_rl.checkpoint import load_checkpoint\nload_checkpoint('ck')\n",
             names=("model.safetensors", "SHA-256"), setup=then(lambda c: flip_weights(c, 8, 3))),
        Case("checkpoint halt eval on a checkpoint of another task", "checkpoint",
             ["halt", "eval", "--env", "HRM-Maze-v0", "--env-kwargs", "checkpoint=sudoku4",
              "--policies", "qhead", "--no-progress", "--out-dir", "figs"],
             names=("sudoku",)),
    ]
    return cases


# ============================================================================ traces
def trace_cases(fx: Fixtures) -> list[Case]:
    import numpy as np

    def tamper(**kw):
        return lambda fx, f: tamper_trace(fx.rec, f / "t.npz", **kw)

    with np.load(fx.rec) as data:
        a = {k: data[k] for k in data.files}
    nan = a["features"].copy()
    nan[1, 1, 2] = np.nan
    inf = a["q_halt"].copy()
    inf[0, 0] = np.inf
    lat = a["latent"].copy()
    lat[0, 0, 0] = np.nan
    csv = str(a["puzzles_csv"])
    variants = {
        "not a zip": (lambda fx, f: write(f, "t.npz", "hello"), ("t.npz",)),
        "empty": (lambda fx, f: write(f, "t.npz", b""), ("t.npz",)),
        "cut in half": (lambda fx, f: write(f, "t.npz", fx.rec.read_bytes()[
            :fx.rec.stat().st_size // 2]), ("t.npz",)),
        "without identity": (tamper(drop=("identity",)), ("t.npz", "identity")),
        "with an identity not JSON": (tamper(identity="{nope"), ("t.npz", "JSON")),
        "with an identity list": (tamper(identity="[1, 2]"), ("t.npz", "object")),
        "of another format": (tamper(identity=lambda i: i.update(format="v0")), ("t.npz",)),
        "without a run config": (tamper(identity=lambda i: i.pop("config")),
                                 ("t.npz", "config")),
        "with a run config of no task": (tamper(identity=lambda i: i["config"]["task"].update(
            name="nosuch")), ("t.npz",)),
        "edited without its checksum": (tamper(recompute=False, cell=a["cell"] * 0.5),
                                        ("t.npz", "checksum")),
        "with correct all True": (tamper(correct=np.ones_like(a["correct"])),
                                  ("t.npz", "correct")),
        "with float64 features": (tamper(features=a["features"].astype(np.float64)),
                                  ("t.npz", "float64")),
        "with NaN features": (tamper(features=nan), ("t.npz", "non-finite")),
        "with inf q_halt": (tamper(q_halt=inf), ("t.npz", "q_halt")),
        "with NaN latents": (tamper(latent=lat), ("t.npz", "latent")),
        "with shapes that disagree": (tamper(features=a["features"][:, :2]),
                                      ("t.npz", "shape")),
        "with fewer rows of q_halt": (tamper(q_halt=a["q_halt"][:-1]), ("t.npz", "q_halt")),
        "with puzzle keys out of range": (tamper(puzzle=a["puzzle"] + 100), ("t.npz",)),
        "with predictions of another length": (tamper(pred=a["pred"][:, :, :9]),
                                               ("t.npz", "cells")),
        "with int64 predictions": (tamper(pred=a["pred"].astype(np.int64)), ("t.npz", "pred")),
        "with an unknown array": (tamper(extra=np.zeros(3)), ("t.npz", "extra")),
        "with broken puzzles": (tamper(puzzles_csv=np.array(csv.replace(",", ";"))),
                                ("t.npz",)),
        "without puzzles": (tamper(drop=("puzzles_csv",)), ("t.npz", "puzzles_csv")),
        "with a wrong segment count": (tamper(identity=lambda i: i.update(max_segments=9)),
                                       ("t.npz", "segments")),
        "with predictions of the other puzzles": (tamper(pred=a["pred"][::-1].copy()),
                                                  ("t.npz", "correct")),
    }
    cases = []
    for i, (name, (setup, names)) in enumerate(variants.items()):
        cases.append(Case(f"trace {name} (halt eval)", "trace",
                          ["halt", "eval", "--trace", "t.npz", "--policies", "qhead,fixed:2",
                           "--no-progress", "--out-dir", "figs"], names=names, setup=setup,
                          quick=i in (0, 10)))
        cases.append(Case(f"trace {name} (gym.make)", "trace",
                          code="gym.make('HRM-Sudoku-v0', rollouts='t.npz')\n", names=names,
                          setup=setup, quick=i == 15))
    rec = lambda fx, f: copy(fx.rec, f / "t.npz")  # noqa: E731
    cases += [
        Case(f"trace replayed with checkpoint={other}", "trace", code=(
            f"gym.make('HRM-Sudoku-v0', checkpoint='{other}', rollouts='t.npz')\n"),
            names=("t.npz", other), setup=rec, quick=other == "sudoku6")
        for other in ("sudoku6", "sudoku4-trm", "maze6")]
    cases += [
        Case("trace replayed as a maze env", "trace",
             code="gym.make('HRM-Maze-v0', rollouts='t.npz')\n", names=("t.npz", "maze"),
             setup=rec),
        Case("trace replayed on another split", "trace",
             code="gym.make('HRM-Sudoku-v0', rollouts='t.npz', split='val')\n",
             names=("t.npz", "split"), setup=rec),
        Case("trace replayed past its segments", "trace",
             code="gym.make('HRM-Sudoku-v0', rollouts='t.npz', max_segments=9)\n",
             names=("max_segments",), setup=rec),
        Case("trace replayed with latents it lacks", "trace",
             code="gym.make('HRM-Sudoku-v0', rollouts='t.npz', obs_mode='latent')\n",
             names=("t.npz", "latent"), setup=lambda fx, f: tamper_trace(
                 fx.rec, f / "t.npz", drop=("latent",),
                 identity=lambda i: i.update(latent=False))),
        Case("trace halt eval --env-kwargs checkpoint=sudoku6", "trace",
             ["halt", "eval", "--trace", "t.npz", "--env-kwargs", "checkpoint=sudoku6",
              "--policies", "qhead", "--no-progress", "--out-dir", "figs"],
             names=("t.npz", "sudoku6"), setup=rec),
        Case("trace halt eval --tune-on the same split", "trace",
             ["halt", "eval", "--trace", "t.npz", "--tune-on", "t.npz", "--policies",
              "fixed", "--no-progress", "--out-dir", "figs"], names=("--tune-on",), setup=rec),
        Case("trace halt eval --split other than recorded", "trace",
             ["halt", "eval", "--trace", "t.npz", "--split", "val", "--policies", "qhead",
              "--no-progress", "--out-dir", "figs"], names=("t.npz", "split"), setup=rec),
        Case("trace halt eval --episodes past its puzzles", "trace",
             ["halt", "eval", "--trace", "t.npz", "--episodes", "99", "--policies", "qhead",
              "--no-progress", "--out-dir", "figs"], names=("--episodes",), setup=rec),
        Case("trace halt train --val-rollouts on test", "trace",
             ["halt", "train", "--val-rollouts", "t.npz", "--timesteps", "64",
              "--num-envs", "4", "--no-progress"], names=("--val-rollouts",), setup=rec),
        Case("trace halt eval on a valid recording", "trace",
             ["halt", "eval", "--trace", "t.npz", "--policies", "qhead,fixed:2,oracle",
              "--json", "--no-progress", "--out-dir", "figs"], expect="ok", setup=rec,
             check=json_check(episodes=8), quick=True),
        Case("trace rollouts record over an existing recording", "trace",
             ["rollouts", "record", "sudoku4", "--split", "test", "--episodes", "4",
              "--out", "t.npz", "--no-progress"], names=("t.npz", "--force"), setup=rec,
             keep=("t.npz",), quick=True),
        Case("trace rollouts record --force", "trace",
             ["rollouts", "record", "sudoku4", "--split", "test", "--episodes", "4",
              "--max-segments", "2", "--out", "t.npz", "--force", "--no-progress"],
             expect="ok", setup=rec, check=lambda o: None if _trace_n(o.folder / "t.npz") == 4
             else "the forced recording does not hold 4 puzzles"),
        Case("trace rollouts record --episodes past the split", "trace",
             ["rollouts", "record", "sudoku4", "--split", "test", "--episodes", "99999",
              "--out", "r.npz", "--no-progress"], names=("episodes",)),
        Case("trace rollouts record an unknown split", "trace",
             ["rollouts", "record", "sudoku4", "--split", "nosuch", "--out", "r.npz",
              "--no-progress"], names=("nosuch",)),
        Case("trace rollouts record into a missing folder", "trace",
             ["rollouts", "record", "sudoku4", "--split", "test", "--episodes", "2",
              "--max-segments", "2", "--out", "deep/er/r.npz", "--no-progress"], expect="any",
             names=("deep",)),
    ]
    return cases


def _trace_n(path: Path) -> int | None:
    import numpy as np

    try:
        with np.load(path) as data:
            return int(data["correct"].shape[0])
    except Exception:
        return None


# ============================================================================== envs
def env_cases() -> list[Case]:
    bad_kwargs = {
        "an unknown kwarg": ("foo=1", ("foo",)),
        "step_cost=-1": ("step_cost=-1", ("step_cost",)),
        "step_cost=2": ("step_cost=2", ("step_cost",)),
        "step_cost=nan": ("step_cost=float('nan')", ("step_cost",)),
        "step_cost='abc'": ("step_cost='abc'", ("step_cost",)),
        "step_cost=None": ("step_cost=None", ("step_cost",)),
        "step_cost=True": ("step_cost=True", ("step_cost",)),
        "max_segments=0": ("max_segments=0", ("max_segments",)),
        "max_segments=-1": ("max_segments=-1", ("max_segments",)),
        "max_segments=1.5": ("max_segments=1.5", ("max_segments",)),
        "max_segments=True": ("max_segments=True", ("max_segments",)),
        "max_segments='4'": ("max_segments='4'", ("max_segments",)),
        "reward='foo'": ("reward='foo'", ("reward",)),
        "obs_mode='foo'": ("obs_mode='foo'", ("obs_mode",)),
        "track='checker'": ("track='checker'", ("track",)),
        "split='nosuch'": ("split='nosuch'", ("nosuch",)),
        "checkpoint='nosuch'": ("checkpoint='nosuch'", ("nosuch",)),
        "checkpoint=3": ("checkpoint=3", ("checkpoint",)),
        "device='tpu'": ("device='tpu'", ("tpu",)),
        "device='cuda:9'": ("device='cuda:9'", ("cuda:9",)),
        "render_mode='video'": ("render_mode='video'", ("render_mode",)),
        "rollouts='nosuch.npz'": ("rollouts='nosuch.npz'", ("nosuch.npz",)),
    }
    cases = []
    for i, (name, (kwargs, names)) in enumerate(bad_kwargs.items()):
        cases.append(Case(f"env gym.make {name}", "env",
                          code=f"gym.make('HRM-Sudoku-v0', {kwargs})\n", names=names,
                          quick=i in (3, 18)))
        if i % 3 == 0:
            cases.append(Case(f"env gym.make_vec {name}", "env",
                              code=f"gym.make_vec('HRM-Sudoku-v0', num_envs=2, {kwargs})\n",
                              names=names))
    for n in ("0", "-1", "2.5"):
        cases.append(Case(f"env make_vec num_envs={n}", "env",
                          code=f"gym.make_vec('HRM-Sudoku-v0', num_envs={n})\n",
                          names=("num_envs",)))
    cases.append(Case("env gym.make of an unknown id", "env",
                      code="gym.make('HRM-Sudokuu-v0')\n", names=("HRM-Sudokuu",)))
    numpy_ok = {
        "numpy float32 step_cost": "step_cost=np.float32(0.01)",
        "numpy float64 step_cost": "step_cost=np.float64(0.5)",
        "numpy int64 max_segments": "max_segments=np.int64(3)",
        "numpy int32 max_segments": "max_segments=np.int32(2)",
    }
    for name, kwargs in numpy_ok.items():
        cases.append(Case(f"env {name}", "env", expect="ok", quick=name.startswith("numpy f"),
                          code=(f"env = gym.make('HRM-Sudoku-v0', {kwargs})\n"
                                "obs, info = env.reset(seed=0)\n"
                                "assert env.observation_space.contains(obs)\n"
                                "obs, r, term, trunc, info = env.step(np.int64(1))\n"
                                "assert term and np.isfinite(r), (term, r)\n")))
    actions = {"2": ("env.step(2)", ("2",)), "-1": ("env.step(-1)", ("-1",)),
               "'a'": ("env.step('a')", ("action",)), "None": ("env.step(None)", ("action",)),
               "0.5": ("env.step(0.5)", ("action",)),
               "an array of two": ("env.step(np.array([0, 1]))", ("action",))}
    for name, (call, names) in actions.items():
        cases.append(Case(f"env step({name})", "env", names=names, quick=name == "2", code=(
            f"env = gym.make('HRM-Sudoku-v0')\nenv.reset(seed=0)\n{call}\n")))
    vactions = {"of the wrong length": "np.zeros(3, dtype=np.int64)",
                "of 2s": "np.full(2, 2)", "of floats 0.5": "np.full(2, 0.5)",
                "a scalar": "0", "of a 2-D shape": "np.zeros((2, 1), dtype=np.int64)"}
    for name, actions_ in vactions.items():
        cases.append(Case(f"env vector step with actions {name}", "env", names=("action",),
                          code=("venv = gym.make_vec('HRM-Sudoku-v0', num_envs=2)\n"
                                f"venv.reset(seed=0)\nvenv.step({actions_})\n")))
    cases += [
        Case("env step before reset", "env", names=("reset",),
             code="env = gym.make('HRM-Sudoku-v0')\nenv.unwrapped.step(0)\n"),
        Case("env reset(seed=-1)", "env", names=("Seed",), expect="any",
             code="env = gym.make('HRM-Sudoku-v0')\nenv.reset(seed=-1)\n"),
        Case("env reset(seed='a')", "env", names=("Seed",),
             code="env = gym.make('HRM-Sudoku-v0')\nenv.reset(seed='a')\n"),
        Case("env an episode ends in the space and finite", "env", expect="ok", quick=True,
             code=("for env_id in ('HRM-Sudoku-v0', 'HRM-Maze-v0', 'HRM-ARC-v0'):\n"
                   "    env = gym.make(env_id, max_segments=3)\n"
                   "    obs, _ = env.reset(seed=1)\n"
                   "    for _ in range(3):\n"
                   "        assert env.observation_space.contains(obs), env_id\n"
                   "        obs, r, term, trunc, info = env.step(0)\n"
                   "        assert np.isfinite(r)\n"
                   "        if term: break\n"
                   "    assert term, env_id\n")),
    ]
    return cases


# =============================================================================== cli
def cli_cases() -> list[Case]:
    bad = {
        "no command": ([], ("command",)),
        "an unknown command": (["trian"], ("trian",)),
        "eval --batch-size 0": (["eval", "sudoku4", "--data", "test", "--batch-size", "0"],
                                ("--batch-size",)),
        "eval --batch-size -1": (["eval", "sudoku4", "--data", "test", "--batch-size", "-1"],
                                 ("--batch-size",)),
        "eval --batch-size abc": (["eval", "sudoku4", "--data", "test", "--batch-size", "x"],
                                  ("--batch-size",)),
        "eval --limit 0": (["eval", "sudoku4", "--data", "test", "--limit", "0"],
                           ("--limit",)),
        "eval --max-segments 0": (["eval", "sudoku4", "--data", "test", "--max-segments", "0"],
                                  ("--max-segments",)),
        "eval --max-segments -3": (["eval", "sudoku4", "--data", "test",
                                    "--max-segments", "-3"], ("--max-segments",)),
        "eval --threads 0": (["eval", "sudoku4", "--data", "test", "--threads", "0"],
                             ("--threads",)),
        "eval --device tpu": (["eval", "sudoku4", "--data", "test", "--device", "tpu"],
                              ("--device", "tpu")),
        "eval --device cuda:9": (["eval", "sudoku4", "--data", "test", "--device", "cuda:9"],
                                 ("--device",)),
        "eval --check-unique on a maze": (["eval", "maze6", "--data", "test",
                                           "--check-unique"], ("--check-unique",)),
        "eval --data val --check-unique (generated)": (["eval", "{run}", "--data", "val",
                                                        "--check-unique"],
                                                       ("--check-unique",)),
        "eval a missing --data file": (["eval", "sudoku4", "--data", "nosuch.csv"],
                                       ("nosuch.csv",)),
        "demo --train-seconds -1": (["demo", "--train-seconds", "-1"], ("--train-seconds",)),
        "demo --train-seconds nan": (["demo", "--train-seconds", "nan"],
                                     ("--train-seconds",)),
        "demo --threads 0": (["demo", "--threads", "0"], ("--threads",)),
        "cores --step-costs 2": (["cores", "sudoku4", "--step-costs", "2"],
                                 ("--step-costs",)),
        "cores --step-costs abc": (["cores", "sudoku4", "--step-costs", "abc"],
                                   ("--step-costs",)),
        "cores of a missing core": (["cores", "nosuch", "--no-progress"], ("nosuch",)),
        "bench env --seconds 0": (["bench", "env", "--seconds", "0"], ("--seconds",)),
        "bench env --seconds -1": (["bench", "env", "--seconds", "-1"], ("--seconds",)),
        "bench env --threads -3": (["bench", "env", "--threads", "-3"], ("--threads",)),
        "bench train --rounds 0": (["bench", "train", "--rounds", "0"], ("--rounds",)),
        "bench reference --threads -1": (["bench", "reference", "--threads", "-1"],
                                         ("--threads",)),
        "bench an unknown benchmark": (["bench", "nosuch"], ("nosuch",)),
        "halt train --timesteps 0": (["halt", "train", "--timesteps", "0"], ("--timesteps",)),
        "halt train --num-envs 0": (["halt", "train", "--num-envs", "0"], ("--num-envs",)),
        "halt train --env CartPole-v1": (["halt", "train", "--env", "CartPole-v1",
                                          "--timesteps", "8", "--no-eval"],
                                         ("CartPole-v1", "HRM-Sudoku-v0")),
        "halt eval --env CartPole-v1": (["halt", "eval", "--env", "CartPole-v1"],
                                        ("CartPole-v1", "HRM-Sudoku-v0")),
        "halt eval --env nosuch": (["halt", "eval", "--env", "Nosuch-v0"], ("Nosuch-v0",)),
        "halt train --algo-kwargs learning_rate=nan": (
            ["halt", "train", "--algo-kwargs", "learning_rate=.nan", "--no-eval"],
            ("learning_rate",)),
        "halt train --algo-kwargs nosuch=1": (["halt", "train", "--algo-kwargs", "nosuch=1",
                                               "--no-eval"], ("nosuch",)),
        "halt eval --policies ''": (["halt", "eval", "--policies", ""], ("--policies",)),
        "halt eval --policies bogus": (["halt", "eval", "--policies", "bogus"], ("bogus",)),
        "halt eval --policies fixed:0": (["halt", "eval", "--policies", "fixed:0"],
                                         ("fixed:0",)),
        "halt eval --policies threshold:2": (["halt", "eval", "--policies", "threshold:2"],
                                             ("threshold:2",)),
        "halt eval --policies ppo:nosuch.zip": (["halt", "eval", "--policies",
                                                 "ppo:nosuch.zip"], ("nosuch.zip",)),
        "halt eval --policies checker (verifier-free)": (["halt", "eval", "--policies",
                                                          "checker"], ("checker",)),
        "halt eval --baseline bogus": (["halt", "eval", "--policies", "qhead",
                                        "--baseline", "bogus"], ("bogus",)),
        "halt eval --episodes 0": (["halt", "eval", "--episodes", "0"], ("--episodes",)),
        "halt eval --env-kwargs step_cost=abc": (["halt", "eval", "--env-kwargs",
                                                  "step_cost=abc"], ("step_cost",)),
        "halt eval --env-kwargs nokey": (["halt", "eval", "--env-kwargs", "nokey"],
                                         ("nokey",)),
        "halt eval --env-kwargs foo=1": (["halt", "eval", "--env-kwargs", "foo=1"],
                                         ("foo",)),
        "halt eval --env-kwargs split=val": (["halt", "eval", "--env-kwargs", "split=val"],
                                             ("--split",)),
        "halt eval --env-kwargs max_segments=0": (["halt", "eval", "--env-kwargs",
                                                   "max_segments=0"], ("max_segments",)),
        "halt eval --tune-on a missing file": (["halt", "eval", "--policies", "fixed",
                                                "--tune-on", "nosuch.npz"], ("nosuch.npz",)),
        "rollouts record --episodes 0": (["rollouts", "record", "sudoku4", "--episodes", "0",
                                          "--out", "r.npz"], ("--episodes",)),
        "rollouts record --device cuda:9": (["rollouts", "record", "sudoku4", "--out",
                                             "r.npz", "--device", "cuda:9"], ("--device",)),
        "rollouts record --device tpu": (["rollouts", "record", "sudoku4", "--out", "r.npz",
                                          "--device", "tpu"], ("--device", "tpu")),
        "rollouts without a subcommand": (["rollouts"], ("rollouts",)),
        "train without a config": (["train"], ("CONFIG",)),
        "train --resume with a config": (["train", "{tiny}", "--resume", "x"], ("--resume",)),
        "train --from without --resume": (["train", "{tiny}", "--from", "best"], ("--from",)),
        "holdout --trained-on of two tasks": (["holdout", "--data", "{s4}", "--trained-on",
                                               "sudoku4", "--trained-on", "maze6", "--out",
                                               "o.csv", "--no-progress"], ("maze6",)),
    }
    cases = []
    for i, (name, (argv, names)) in enumerate(bad.items()):
        cases.append(Case(f"cli {name}", "cli", argv, names=names,
                          quick=i % 8 == 0 or "CartPole" in name))
    prior = "an earlier result\n"
    cases += [
        Case("cli holdout over an existing --out", "cli",
             ["holdout", "--data", "{s4}", "--trained-on", "{tiny}", "--out", "o.csv",
              "--no-progress"], names=("o.csv",), keep=("o.csv",),
             setup=lambda fx, f: write(f, "o.csv", prior), quick=True),
        Case("cli halt eval --per-puzzle over an existing file", "cli",
             ["halt", "eval", "--trace", "{rec}", "--policies", "qhead", "--per-puzzle",
              "p.csv", "--no-progress", "--out-dir", "figs"], names=("p.csv", "--force"),
             keep=("p.csv",), setup=lambda fx, f: write(f, "p.csv", prior)),
        Case("cli halt train into a folder with a model.zip", "cli",
             ["halt", "train", "--run-dir", "h", "--timesteps", "64", "--num-envs", "4",
              "--no-eval", "--no-progress"], names=("model.zip",), keep=("h/model.zip",),
             setup=lambda fx, f: write(f, "h/model.zip", b"an earlier model")),
        Case("cli holdout writes a clean file", "cli",
             ["holdout", "--data", "{s4}", "--trained-on", "{tiny}", "--out", "o.csv",
              "--no-progress"], expect="ok", check=_holdout_wrote),
        Case("cli halt eval --per-puzzle --force replaces", "cli",
             ["halt", "eval", "--trace", "{rec}", "--policies", "qhead", "--per-puzzle",
              "p.csv", "--force", "--no-progress", "--out-dir", "figs"], expect="ok",
             setup=lambda fx, f: write(f, "p.csv", prior),
             check=lambda o: None if (o.folder / "p.csv").read_text().startswith("puzzle,")
             else "p.csv was not replaced"),
        Case("cli a tiny training run", "cli",
             ["train", "{tiny}", "--run-dir", "r", "--no-progress"], expect="ok",
             check=json_check(steps=6)),
        Case("cli params of a paper config", "cli",
             ["params", str(REPO / "configs/sudoku9-extreme.yaml")], expect="ok"),
    ]
    return cases


def _holdout_wrote(o: Outcome) -> str | None:
    try:
        kept = json.loads(o.out)["kept"]
    except (ValueError, KeyError) as err:
        return f"no JSON report ({err})"
    rows = len((o.folder / "o.csv").read_text().splitlines()) - 1
    return None if rows == kept else f"o.csv holds {rows} puzzles, the report says {kept}"


# ============================================================================ faults
def _same_run(run: Path, ref: Path) -> str | None:
    """A difference between a finished run and the uninterrupted reference, or None."""
    def rows(path: Path) -> list[str]:
        return (path / "metrics.jsonl").read_text().splitlines()

    if not (run / "summary.json").is_file():
        return "no summary.json"
    if rows(run) != rows(ref):
        got, want = rows(run), rows(ref)
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                     min(len(got), len(want)))
        return f"metrics.jsonl differs from the uninterrupted run from row {first + 1}"
    def final(p: Path) -> Path:
        return p / "checkpoints" / (p / "checkpoints" / "latest").read_text().strip() / \
            "model.safetensors"

    if not _same_tensors(final(run), final(ref)):
        return "the final weights differ from the uninterrupted run's"
    return None


def _same_tensors(a: Path, b: Path) -> bool:
    """Whether two weights files hold the same tensors bit for bit (their bytes may differ:
    safetensors orders the header's metadata differently from process to process)."""
    from safetensors.numpy import load_file

    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(
        x[k].dtype == y[k].dtype and x[k].shape == y[k].shape
        and x[k].tobytes() == y[k].tobytes() for k in x)


def _finish(fx: Fixtures, folder: Path, run: Path, first: list[str]) -> tuple[str, str]:
    """Continue ``run`` as a user would (``--resume``; the first command again when there
    is no run to resume), then compare with the uninterrupted reference."""
    done = real(["train", "--resume", str(run), "--no-progress"], folder)
    if done.rc == 2 and ("not a run folder" in done.err or "no checkpoint at" in done.err):
        shutil.rmtree(run, ignore_errors=True)
        done = real(first, folder)
    if done.rc != 0:
        return "data-loss", f"the run cannot continue: {_last(done.err)}"
    if "Traceback" in done.err:
        return "unclear", f"resumed with a traceback: {_last(done.err)}"
    problem = _same_run(run, fx.fault_ref)
    return ("silent-wrong", problem) if problem else ("ok", "")


def _train_argv(fx: Fixtures, run: Path) -> list[str]:
    return ["train", str(fx.fault_yaml), "--run-dir", str(run), "--no-progress"]


def kill_training(seed: int) -> Callable[[Fixtures, Path], tuple[str, str]]:
    def fault(fx: Fixtures, folder: Path) -> tuple[str, str]:
        delay = random.Random(seed).uniform(0.3, 0.9 * fx.fault_seconds)
        run = folder / "run"
        proc = start(_train_argv(fx, run), folder)
        time.sleep(delay)
        if proc.poll() is not None:
            return "ok", f"finished before the kill at {delay:.1f} s"
        proc.kill()
        proc.communicate()
        klass, note = _finish(fx, folder, run, _train_argv(fx, run))
        return klass, f"killed at {delay:.1f} s; {note}".strip("; ")
    return fault


RECORD = ["rollouts", "record", "sudoku4", "--split", "test", "--episodes", "600",
          "--max-segments", "8", "--out", "r.npz", "--no-progress"]


def _same_trace(a: Path, b: Path) -> str | None:
    """A difference between two trace files' arrays and identities, or None."""
    import numpy as np

    with np.load(a) as x, np.load(b) as y:
        if sorted(x.files) != sorted(y.files):
            return f"arrays {sorted(x.files)} against {sorted(y.files)}"
        differ = [k for k in x.files if x[k].dtype != y[k].dtype or x[k].shape != y[k].shape
                  or x[k].tobytes() != y[k].tobytes()]
    return f"{', '.join(differ)} differ from an uninterrupted recording" if differ else None


def kill_recording(seed: int, sig: int = signal.SIGKILL
                   ) -> Callable[[Fixtures, Path], tuple[str, str]]:
    """Stop a recording with ``sig`` at a random time (a SIGINT once it records, after
    the start-up); no partial file may stand at ``--out``; the rerun finishes it, equal to
    an uninterrupted recording."""
    def fault(fx: Fixtures, folder: Path) -> tuple[str, str]:
        reference = fx.root / "record-ref" / "r.npz"
        if not reference.is_file():
            reference.parent.mkdir(exist_ok=True)
            real(RECORD, reference.parent)
        argv = RECORD
        delay = random.Random(seed).uniform(0.5, 8.0 if sig == signal.SIGKILL else 2.0)
        proc = start(argv, folder)
        if sig != signal.SIGKILL:
            while proc.poll() is None and not (folder / "r.npz.partial").exists():
                time.sleep(0.005)
        time.sleep(delay)
        finished = proc.poll() is not None
        proc.send_signal(sig)
        _, err = proc.communicate()
        if sig != signal.SIGKILL and not finished and (proc.returncode != 128 + sig or
                                                         "Traceback" in err):
            name = signal.Signals(sig).name
            return "unclear", f"exit {proc.returncode} on {name}: {_last(err)}"
        out = folder / "r.npz"
        if out.exists() and not finished and _trace_n(out) != 600:
            return "silent-wrong", f"killed at {delay:.1f} s: a partial r.npz is in place"
        if not finished:
            for junk in folder.glob(".r.npz.*"):
                junk.unlink()  # a killed process cannot remove its temporary file
            done = real(argv, folder)
            if done.rc != 0:
                return "data-loss", f"the rerun after the kill fails: {_last(done.err)}"
        problem = _same_trace(out, reference)
        if problem:
            return "silent-wrong", f"killed at {delay:.1f} s: {problem}"
        return "ok", f"killed at {delay:.1f} s" if not finished else "finished first"
    return fault


def startup_interrupt(fx: Fixtures, folder: Path) -> tuple[str, str]:
    """Ctrl-C at random times in the first second, while the interpreter imports."""
    for delay in (0.2, 0.5, 0.8, 1.1, 1.4):
        proc = start(["params", "sudoku4-tiny"], folder)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate()
        if proc.returncode not in (0, 130) or "Traceback" in err:
            return "unclear", f"Ctrl-C at {delay:.1f} s: exit {proc.returncode}: {_last(err)}"
    return "clear", "exit 130 with one line (or finished) at every time tried"


def interrupt_training(signals: tuple[int, ...], code: int) -> Callable:
    def fault(fx: Fixtures, folder: Path) -> tuple[str, str]:
        run = folder / "run"
        proc = start(_train_argv(fx, run), folder)
        metrics = run / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and not (
                metrics.is_file() and len(metrics.read_text().splitlines()) >= 10):
            time.sleep(0.01)
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(0.002)
        _, err = proc.communicate(timeout=120)
        if proc.returncode != code:
            return ("crash" if proc.returncode < 0 else "unclear",
                    f"exit {proc.returncode}, not {code}: {_last(err)}")
        if "Traceback" in err or "--resume" not in _last(err):
            return "unclear", f"the message: {_last(err)}"
        return _finish(fx, folder, run, _train_argv(fx, run))
    return fault


def _sizes(fx: Fixtures) -> dict[str, int]:
    step = fx.fault_ref / "checkpoints" / "step_0000040"
    return {p.name: p.stat().st_size for p in step.iterdir()}


def limited_training(fx: Fixtures, folder: Path) -> tuple[str, str]:
    """ulimit -f below trainer_state.pt: a clear line naming it, then --resume (no limit)
    gives the uninterrupted run."""
    run = folder / "run"
    limit = _sizes(fx)["trainer_state.pt"] - 100
    done = real(_train_argv(fx, run), folder, fsize=limit)
    if done.rc == 0:
        return "silent-wrong", "exit 0 under a file-size limit its checkpoint cannot fit"
    last = _last(done.err)
    if "Traceback" in done.err or "Exception in thread" in done.err or \
            "file size limit" not in last or "trainer_state.pt" not in last:
        return "unclear", f"the message: {last}"
    return _finish(fx, folder, run, _train_argv(fx, run))


def full_disk_training(fx: Fixtures, folder: Path) -> tuple[str, str]:
    """A tmpfs that holds one checkpoint and a half: the second does not fit; the message
    names the step before; --resume after space is freed gives the uninterrupted run."""
    disk = folder / "disk"
    disk.mkdir()
    one = sum(_sizes(fx).values())
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(one * 1.5) // 1024}k",
                            "tmpfs", str(disk)], capture_output=True)
    if mount.returncode != 0:
        raise Skip("cannot mount a tmpfs (needs root)")
    try:
        run = disk / "run"
        done = real(_train_argv(fx, run), folder)
        last = _last(done.err)
        if done.rc == 0:
            return "silent-wrong", "exit 0 on a full disk"
        if "Traceback" in done.err or "Exception in thread" in done.err or \
                "no space left" not in last or "last complete checkpoint is step" not in last:
            return "unclear", f"the message: {last}"
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        klass, note = _finish(fx, folder, run, _train_argv(fx, run))
        return klass, note or last
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def limited_output(argv: list[str], out: str, fsize: int) -> Callable:
    """A command whose output file cannot fit under ``ulimit -f``: a clear error naming it,
    no file (torn or not) left at ``out``, and the rerun without the limit works."""
    def fault(fx: Fixtures, folder: Path) -> tuple[str, str]:
        args = [a.format(s4=folder / "s4.csv") for a in argv]
        (folder / "s4.csv").write_text(fx.csv("sudoku4", 300))
        done = real(args, folder, fsize=fsize)
        if done.rc == 0:
            return "silent-wrong", "exit 0 under a file-size limit"
        if (folder / out).exists():
            return "data-loss", f"a torn {out} is left for a rerun to trip on"
        last = _last(done.err)
        if "Traceback" in done.err or out not in last:
            return "unclear", f"the message: {last}"
        again = real(args, folder)
        if again.rc != 0:
            return "data-loss", f"the rerun fails: {_last(again.err)}"
        return "clear", last
    return fault


def kill_final_evaluation(fx: Fixtures, folder: Path) -> tuple[str, str]:
    """Kill -9 after the last checkpoint, during the final evaluation: --resume finishes
    what the run owed (summary.json)."""
    run = folder / "run"
    argv = ["train", str(fx.tiny), "--run-dir", str(run), "--set", "train.eval_size=40",
            "--set", "train.max_segments=16", "--no-progress"]
    proc = start(argv, folder)
    latest, summary = run / "checkpoints" / "latest", run / "summary.json"
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        if latest.is_file() and latest.read_text().strip() == "step_0000006" \
                and not summary.exists():
            proc.kill()
            break
        time.sleep(0.002)
    proc.communicate()
    if proc.returncode != -signal.SIGKILL:
        return "ok", "the run finished before the kill"
    done = real(["train", "--resume", str(run), "--no-progress"], folder)
    if done.rc != 0 or not summary.is_file():
        return "data-loss", f"the resume did not finish the run: {_last(done.err)}"
    return "ok", "killed during the final evaluation; the resume wrote summary.json"


def two_processes_on_one_run(fx: Fixtures, folder: Path) -> tuple[str, str]:
    """A second process resumes a run the first is training (a longer one): refused,
    naming the holder; the first finishes."""
    run = folder / "run"
    first = start(_train_argv(fx, run) + ["--set", "train.steps=300"], folder)
    deadline = time.monotonic() + 120
    while first.poll() is None and not (run / "config.yaml").is_file() and \
            time.monotonic() < deadline:
        time.sleep(0.01)
    second = real(["train", "--resume", str(run), "--no-progress"], folder)
    running = first.poll() is None
    first.communicate()
    if first.returncode != 0:
        return "data-loss", "the first run failed beside a second process"
    if second.rc == 0:
        return ("silent-wrong" if running else "ok"), "the second process trained too"
    if "in use by" not in second.err or "Traceback" in second.err:
        return "unclear", f"the second process: {_last(second.err)}"
    return "clear", _last(second.err)


def stdout_fault(argv: list[str], mode: str) -> Callable:
    def fault(fx: Fixtures, folder: Path) -> tuple[str, str]:
        if mode == "closed":
            done = real(argv, folder, stdout=None, close_stdout=True)
            want = "standard output is closed"
        else:
            with open("/dev/full", "w") as full:
                done = real(argv, folder, stdout=full.fileno())
            want = "could not write standard output"
        if done.rc == 0:
            return "silent-wrong", "exit 0 with nowhere to write the results"
        if "Traceback" in done.err or want not in done.err:
            return "unclear", f"the message: {_last(done.err)}"
        return "clear", _last(done.err)
    return fault


def fault_cases(kills: int, fx_tiny: Path) -> list[Case]:
    cases = [Case(f"fault kill -9 during training #{i + 1}, then --resume", "fault",
                  fault=kill_training(i), quick=i == 0) for i in range(kills)]
    cases += [Case(f"fault kill -9 during a recording #{i + 1}, then rerun", "fault",
                   fault=kill_recording(100 + i)) for i in range(max(2, kills // 3))]
    cases.append(Case("fault SIGINT during a recording, then rerun", "fault",
                      fault=kill_recording(200, signal.SIGINT)))
    cases.append(Case("fault SIGINT during start-up (Python still importing)", "fault",
                      fault=startup_interrupt))
    cases += [
        Case("fault SIGINT during training, then --resume", "fault",
             fault=interrupt_training((signal.SIGINT,), 130), quick=True),
        Case("fault SIGTERM during training, then --resume", "fault",
             fault=interrupt_training((signal.SIGTERM,), 143)),
        Case("fault two SIGINTs during training, then --resume", "fault",
             fault=interrupt_training((signal.SIGINT, signal.SIGINT), 130)),
        Case("fault ulimit -f during a checkpoint, then --resume", "fault",
             fault=limited_training, quick=True),
        Case("fault a full disk during the second checkpoint, then --resume", "fault",
             fault=full_disk_training),
        Case("fault kill -9 during the final evaluation, then --resume", "fault",
             fault=kill_final_evaluation),
        Case("fault two processes on one run", "fault", fault=two_processes_on_one_run),
        Case("fault ulimit -f during rollouts record", "fault", fault=limited_output(
            ["rollouts", "record", "sudoku4", "--split", "test", "--episodes", "300",
             "--out", "r.npz", "--no-progress"], "r.npz", 20_000), quick=True),
        Case("fault ulimit -f during holdout", "fault", fault=limited_output(
            ["holdout", "--data", "{s4}", "--trained-on", str(fx_tiny), "--out", "o.csv",
             "--no-progress"], "o.csv", 2_000)),
        Case("fault eval with stdout closed", "fault", quick=True, fault=stdout_fault(
            ["eval", "sudoku4", "--data", "test", "--limit", "4", "--no-progress"], "closed")),
        Case("fault params with stdout closed", "fault",
             fault=stdout_fault(["params", "sudoku4-tiny"], "closed")),
        Case("fault eval with stdout on a full device", "fault", fault=stdout_fault(
            ["eval", "sudoku4", "--data", "test", "--limit", "4", "--no-progress"], "full")),
    ]
    return cases


# ============================================================================ report
def catalogue(fx: Fixtures, kills: int) -> list[Case]:
    return (config_cases() + csv_cases(fx) + checkpoint_cases(fx) + trace_cases(fx)
            + env_cases() + cli_cases() + fault_cases(kills, fx.tiny))


def _expand(case: Case, fx: Fixtures) -> Case:
    """``{tiny}``, ``{rec}``, ``{s4}``, ``{run}`` in an argv: the shared fixtures."""
    if case.argv is not None:
        s4 = fx.root / "s4.csv"
        case.argv = [a.format(tiny=fx.tiny, rec=fx.rec, s4=s4, run=fx.run) if "{" in a else a
                     for a in case.argv]
    return case


def report(results: list[Result], seconds: float) -> str:
    counts = {k: sum(r.klass == k for r in results) for k in CLASSES}
    lines = ["| " + " | ".join(CLASSES) + " |", "|" + "---|" * len(CLASSES),
             "| " + " | ".join(str(counts[k]) for k in CLASSES) + " |", ""]
    groups = sorted({r.group for r in results})
    lines.append("by group: " + "; ".join(
        f"{g} {sum(r.group == g for r in results)}" for g in groups))
    skipped = [r for r in results if r.klass == "skipped"]
    why = "; ".join(f"{r.name}: {r.note}" for r in skipped)
    lines.append(f"{len(results) - len(skipped)} cases classified in {seconds / 60:.1f} min"
                 + (f"; {len(skipped)} skipped ({why})" if skipped else ""))
    bad = [r for r in results if r.klass not in ("clear", "ok", "skipped")]
    if bad:
        lines += ["", "not clean:"] + [f"  [{r.klass}] {r.name}: {r.note}" for r in bad]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the cross-section (< 3 min)")
    parser.add_argument("--out", help="write every result as JSON here")
    parser.add_argument("-k", dest="keyword", help="only cases whose name contains this")
    parser.add_argument("--kills", type=int, default=6, help="kill -9s during training")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    import hrm_rl.agents.sb3  # noqa: F401  (what the children use, imported once)
    import hrm_rl.cli  # noqa: F401
    import hrm_rl.cli_halt  # noqa: F401
    import stable_baselines3  # noqa: F401

    root = Path(tempfile.mkdtemp(prefix="hrm-rl-hostile-"))
    try:
        fx = Fixtures(root)
        fx.make()
        kills = 1 if args.quick else args.kills
        cases = [c for c in catalogue(fx, kills) if (c.quick or not args.quick)
                 and (args.keyword is None or args.keyword in c.name)]
        if any(c.group == "fault" for c in cases):
            fx.make_fault_reference()
        print(f"{len(cases)} cases; fixtures ready in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr)
        results = []
        for i, case in enumerate(cases):
            result = run_case(_expand(case, fx), fx, root / "cases" / f"{i:03d}")
            results.append(result)
            mark = "" if result.klass in ("clear", "ok") else f"  <- {result.note[:160]}"
            print(f"[{i + 1}/{len(cases)}] {result.klass:12s} {case.name}{mark}",
                  file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"work folder kept: {root}", file=sys.stderr)
    seconds = time.perf_counter() - t0
    print(report(results, seconds))
    counts = {k: sum(r.klass == k for r in results) for k in CLASSES}
    if args.out:
        from hrm_rl.checkpoint import atomic_write_text

        atomic_write_text(args.out, json.dumps(
            {"counts": counts, "seconds": round(seconds, 1), "quick": args.quick,
             "results": [r.__dict__ for r in results]}, indent=1))
    return 0 if all(counts[k] <= n for k, n in BOUNDS.items()) else 1


if __name__ == "__main__":
    sys.exit(main())
