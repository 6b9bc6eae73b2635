"""Fuzzing: the puzzle and config parsers and the environments hold up under generated
input (hypothesis): every input reads correctly or fails with a clear error."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from hrm_rl.envs.halting import HaltingEnv, HaltingVectorEnv
from hrm_rl.tasks import maze
from hrm_rl.tasks.arc import ARCFormatError, load_tasks
from hrm_rl.tasks.sudoku import (find_conflict, format_grid, generate, is_valid_solution,
                                 parse_grid, read_csv)


HEADER = "source,question,answer,rating\n"
P4, S4, _ = generate(1, 4, np.random.default_rng(0))
GOOD4 = f"x,{format_grid(P4[0])},{format_grid(S4[0])},0"  # a puzzle with one solution


FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
FUZZ_PARSERS = settings(FUZZ, max_examples=100)  # a parser call takes milliseconds
SUDOKU_CHARS = st.sampled_from(list("0123456789.") + ["x", " ", "\u0663", "\u00b2", "-", "\n"])


def _grids_of(alphabet_for_size):
    """Strings of exactly 16, 36 or 81 characters drawn from ``alphabet_for_size(size)``."""
    return st.sampled_from([4, 6, 9]).flatmap(
        lambda n: st.text(alphabet_for_size(n), min_size=n * n, max_size=n * n))


GRID_TEXT = st.one_of(
    st.text(max_size=100),                                       # anything at all
    _grids_of(lambda n: SUDOKU_CHARS),                           # right length, odd characters
    _grids_of(lambda n: st.sampled_from(list("." * n + "123456789"[:n]))),  # mostly blanks
)


@FUZZ
@given(text=GRID_TEXT, size=st.sampled_from([None, 4, 6, 9]))
def test_fuzz_parse_grid_parses_or_raises_value_error(text, size):
    try:
        grid = parse_grid(text, size)
    except ValueError:
        return
    n = len(text)
    side = size or round(math.sqrt(n))
    assert grid.shape == (side * side,) and grid.dtype == np.int64
    assert grid.min() >= 0 and grid.max() <= side
    assert find_conflict(grid, side) is None
    assert format_grid(grid) == text.replace("0", ".")


def _csv_line():
    """A CSV line: random fields, or a real 4x4 row with a few cells mutated."""
    cell = st.one_of(st.text(max_size=20), st.sampled_from(
        ["1...............", "1234341221434321", "................", "11..............",
         "1234341221434312", "2...............", "0", "3.5", "nan", ""]))
    random_fields = st.lists(cell, min_size=0, max_size=5).map(
        lambda fields: ",".join(f.replace("\r", "") for f in fields))
    question, answer = format_grid(P4[0]), format_grid(S4[0])
    mutated = st.tuples(
        st.lists(st.tuples(st.integers(0, 31), SUDOKU_CHARS), max_size=2),
        st.sampled_from(["0", "", "2.5", "x", "1e3"])).map(
        lambda edit: _mutate_row(question + answer, *edit))
    return st.one_of(random_fields, mutated)


def _mutate_row(cells: str, edits: list[tuple[int, str]], rating: str) -> str:
    chars = list(cells)
    for i, ch in edits:
        chars[i] = ch
    text = "".join(chars)
    return f"m,{text[:16]},{text[16:]},{rating}"


@FUZZ
@given(header=st.sampled_from([HEADER, "source,question,answer\n", "", "a,b,c\n",
                               "\ufeff" + HEADER]),
       lines=st.lists(_csv_line(), max_size=5), garbage=st.binary(max_size=8))
def test_fuzz_read_csv_parses_or_raises_value_error(header, lines, garbage):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.csv"
        path.write_bytes(header.encode() + "\n".join(lines).encode() + garbage)
        try:
            records = read_csv(path, check_unique=bool(len(lines) % 2))
        except ValueError as err:
            assert str(err).startswith(str(path))
            return
    size = round(math.sqrt(records.puzzles.shape[1]))
    assert is_valid_solution(records.solutions, size).all()
    assert np.all((records.puzzles == 0) | (records.puzzles == records.solutions))
    for p in records.puzzles:
        assert find_conflict(p, size) is None


# ----------------------------------------------------------------------- Maze CSV files
# An independent model of what ``maze.read_csv`` must accept: it re-reads the file with the
# csv module and checks every maze with a plain-Python BFS, then the parser's verdict (and,
# on a rejection, the line it names) is compared with the model's.

MAZE_GARBAGE = ["?", "O", "s", "g", "0", ".", "\t", "\u00a0", "\u00e9", "\U0001f600", "\x00",
                ","]
MAZE_CHARS = st.sampled_from(list("# SGo") * 3 + MAZE_GARBAGE)


def _maze_row_ok(q: str, a: str, n: int, shortest: bool = True) -> bool:
    """Whether ``q``/``a`` is an ``n x n`` question and an answer marking one S-to-G path
    with ``o`` (a shortest one when ``shortest``), checked without the library."""
    if len(q) != n * n or len(a) != n * n:
        return False
    if set(q) - set("# SG") or set(a) - set("# SGo"):
        return False
    if any(s.count(c) != 1 for s in (q, a) for c in "SG"):
        return False
    if any(x != y and not (x == " " and y == "o") for x, y in zip(q, a)):
        return False

    def nbrs(i):
        r, c = divmod(i, n)
        return [rr * n + cc for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))
                if 0 <= rr < n and 0 <= cc < n]

    def bfs(enter) -> int | None:  # steps from S to G over cells ``enter`` allows
        dist, todo, goal = {q.index("S"): 0}, [q.index("S")], q.index("G")
        for i in todo:
            for j in nbrs(i):
                if j not in dist and enter(j):
                    dist[j] = dist[i] + 1
                    todo.append(j)
        return dist.get(goal)

    k = a.count("o")
    along = bfs(lambda j: a[j] in "oG")
    if shortest:  # a path of k + 1 steps over k 'o' cells uses them all, and is optimal
        return along == k + 1 == bfs(lambda j: q[j] != "#")
    ends = {q.index("S"), q.index("G")}
    degree_ok = all(sum(a[j] in "oSG" for j in nbrs(i)) == (1 if i in ends else 2)
                    for i in range(n * n) if a[i] in "oSG")
    return degree_ok and along is not None and along <= k + 1


def _maze_model(data: bytes, size: int | None, limit: int | None, shortest: bool):
    """What ``maze.read_csv`` must do with ``data``: ``("accept", rows, size)`` with
    ``rows`` the ``(source, question, answer, rating)`` it must return, or ``("reject",
    lines)`` where ``lines`` are the lines the error may name (None: a file-level error).

    A file that is not UTF-8 is ``("reject", "any")``, or ``("maybe", rows, size)`` when
    ``limit`` valid rows come before the first bad byte: the reader may stop before it."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        head = _maze_model_text(data[:err.start].decode("utf-8-sig"), size, limit, shortest)
        if head[0] == "accept" and len(head[1]) == limit:
            return ("maybe", *head[1:])
        return "reject", "any"
    return _maze_model_text(data.decode("utf-8-sig"), size, limit, shortest)


def _maze_model_text(text: str, size: int | None, limit: int | None, shortest: bool):
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, lines = [], []
    try:
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["source", "question",
                                                                  "answer"]:
            return "reject", {1}
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) < 3:
                return "reject", {line}
            if size is None:
                side = round(math.sqrt(len(row[1])))
                if side * side != len(row[1]) or not 4 <= side <= 64:
                    return "reject", {line}
                size = side
            if len(row[1]) != size * size or len(row[2]) != size * size:
                return "reject", {line}
            try:
                rating = float(row[3]) if len(row) > 3 and row[3] != "" else 0.0
            except ValueError:
                return "reject", {line}
            rows.append((row[0], row[1], row[2], rating))
            lines.append(line)
            if limit is not None and len(rows) >= limit:
                break
    except csv.Error:
        return "reject", {reader.line_num}
    if not rows:
        return "reject", None
    bad = {line for line, (_, q, a, _) in zip(lines, rows)
           if not _maze_row_ok(q, a, size, shortest)}
    return ("reject", bad) if bad else ("accept", rows, size)


def _check_maze_read(path: Path, size: int | None, limit: int | None, shortest: bool):
    """Run ``maze.read_csv`` on ``path`` and hold it to ``_maze_model``; returns the records
    (or None after a checked rejection)."""
    expected = _maze_model(path.read_bytes(), size, limit, shortest)
    event(f"maze file: {expected[0]}")
    try:
        records = maze.read_csv(path, size, limit, check_shortest=shortest)
    except (ValueError, FileNotFoundError) as err:
        message = str(err)
        where = re.match(re.escape(str(path)) + r":(?:(\d+):)? ", message)
        assert where, f"message does not start with '<path>:<line>:': {message!r}"
        assert expected[0] != "accept", f"a valid file was refused: {message}"
        lines = expected[1]
        if expected[0] == "reject" and lines != "any":
            line = where.group(1)
            assert (line is None) == (lines is None), message
            assert line is None or int(line) in lines, (message, lines)
        return None
    assert expected[0] in ("accept", "maybe"), f"an invalid file was accepted: {expected}"
    rows, side = expected[1], expected[2]
    task = maze.MazeTask(side)
    assert records.questions.shape == records.answers.shape == (len(rows), side * side)
    assert task.to_strings(records.questions) == [q for _, q, _, _ in rows]
    assert task.to_strings(records.answers) == [a for _, _, a, _ in rows]
    assert records.sources == [s for s, _, _, _ in rows]
    assert np.array_equal(records.ratings, [r for *_, r in rows], equal_nan=True)
    for q, a in zip(records.questions, records.answers):
        assert (q == maze.START).sum() == (q == maze.GOAL).sum() == 1
        assert _maze_row_ok(maze.format_grid(q), maze.format_grid(a), side, shortest)
    # The task's writer gives back the same strings.
    again = path.with_name("again.csv")
    maze.write_csv(again, records)
    back = maze.read_csv(again, side, check_shortest=shortest)
    assert np.array_equal(back.questions, records.questions)
    assert np.array_equal(back.answers, records.answers)
    assert back.sources == records.sources
    return records


def _maze_examples():
    """Valid ``(question, answer)`` rows of sides 4-6, plus hand-made corner cases."""
    rows = []
    for side, min_path in ((4, 5), (5, 6), (6, 8)):
        q, a, _ = maze.generate(2, side, np.random.default_rng(side), min_path=min_path)
        rows += [(maze.format_grid(qq), maze.format_grid(aa)) for qq, aa in zip(q, a)]
    open5 = "S G" + " " * 22
    rows.append((open5, "SoG" + " " * 22))                       # a 2-step path
    rows.append(("SG" + " " * 14, "SG" + " " * 14))              # S next to G: no 'o'
    rows.append((open5, "S G  ooo" + " " * 17))  # last: a 4-step detour (valid only
    return rows                                  # when shortest paths are not checked)


MAZE_ROWS = _maze_examples()


def _mutate_maze(row: tuple[str, str], edits: list[tuple]) -> tuple[str, str]:
    """Apply edits to a (question, answer) pair; indices wrap around the grid."""
    cells = {"q": list(row[0]), "a": list(row[1])}
    for kind, which, i, ch in edits:
        grid = cells[which]
        spots = {"flip": range(len(grid)),
                 "wall_o": [j for j, c in enumerate(cells["a"]) if c == "#"],
                 "break": [j for j, c in enumerate(cells["a"]) if c == "o"],
                 "q_path": [j for j, c in enumerate(cells["a"]) if c == "o"],
                 "extra": [j for j, c in enumerate(cells["a"]) if c == " "],
                 "add": [j for j, c in enumerate(grid) if c in " o"],
                 "remove": [j for j, c in enumerate(grid) if c in "SG"]}.get(kind)
        if kind == "truncate":
            del grid[len(grid) - 1 - i % 3:]
        elif kind == "extend":
            grid += [ch] * (1 + i % 3)
        elif kind == "swap":
            cells = {"q": cells["a"], "a": cells["q"]}
        elif spots:
            j = spots[i % len(spots)]
            target = {"wall_o": cells["a"], "break": cells["a"], "extra": cells["a"],
                      "q_path": cells["q"]}.get(kind, grid)
            if j >= min(len(cells["q"]), len(cells["a"])):
                continue  # question and answer no longer have the same length
            target[j] = {"flip": ch, "wall_o": "o", "break": " ", "extra": "o", "q_path": "o",
                         "add": ch if ch in "SG" else "S", "remove": " "}[kind]
            if kind in ("add", "remove") and which == "q":   # keep the answer in step
                cells["a"][j] = target[j]
    return "".join(cells["q"]), "".join(cells["a"])


MAZE_EDIT = st.tuples(
    st.sampled_from(["flip", "flip", "wall_o", "break", "extra", "q_path", "add", "remove",
                     "truncate", "extend", "swap"]),
    st.sampled_from(["q", "a"]), st.integers(0, 1000), MAZE_CHARS)


@FUZZ_PARSERS
@example(base=len(MAZE_ROWS) - 1, edits=[], before=1, after=1, given_size=False,
         shortest=True, rating="0")  # the detour: refused as not shortest ...
@example(base=len(MAZE_ROWS) - 1, edits=[], before=1, after=1, given_size=False,
         shortest=False, rating="0")  # ... loads when shortest paths are not checked
@example(base=0, edits=[("q_path", "q", 0, "o")], before=0, after=1, given_size=True,
         shortest=True, rating="0")  # the path copied into the question
@given(base=st.integers(0, len(MAZE_ROWS) - 1), edits=st.lists(MAZE_EDIT, max_size=3),
       before=st.integers(0, 2), after=st.integers(0, 2), given_size=st.booleans(),
       shortest=st.booleans(), rating=st.sampled_from(["0", "", "7", "1e3", "nan", "-2.5"]))
def test_fuzz_maze_csv_mutations_parse_or_name_their_line(base, edits, before, after,
                                                          given_size, shortest, rating):
    """A valid maze row with a few edits (a flipped cell, an added or removed S/G, a cut or
    lengthened string, 'o' on a wall or in the question, a broken path, a stray 'o', question
    and answer swapped; or a detour that is not a shortest path) among valid rows of its size:
    the file loads exactly when the edited row is still a valid maze, else the error names
    the edited row's line. ``MazeTask.encode`` gives the same verdict on the strings."""
    q0, a0 = MAZE_ROWS[base]
    side = round(math.sqrt(len(q0)))
    good = [f"g{i},{q},{a},1" for i, (q, a) in enumerate(MAZE_ROWS)
            if len(q) == len(q0) and _maze_row_ok(q, a, side)]
    q, a = _mutate_maze((q0, a0), edits)
    bad_line = 2 + before
    rows = good[:before] + [f"m,{q},{a},{rating}"] + good[:after]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "maze.csv"
        path.write_text(HEADER + "\n".join(rows) + "\n")
        size = side if given_size else None
        expected = _maze_model(path.read_bytes(), size, None, shortest)
        assert expected[0] == "accept" or expected[1] == {bad_line}
        records = _check_maze_read(path, size, None, shortest)
    if "," in q + a:
        return
    task = maze.MazeTask(side)
    try:
        batch = task.encode([q], [a], check_shortest=shortest)
    except ValueError as err:
        assert str(err).startswith(f"{task.name} row 0: ")
        assert records is None, f"encode refuses what read_csv accepts: {err}"
        return
    assert records is not None, "encode accepts what read_csv refuses"
    assert task.to_strings(batch.inputs) == [q] and task.to_strings(batch.labels) == [a]


def _maze_csv_line():
    """A line of a maze CSV file: random text, random fields, or a (mutated) valid row."""
    chars = st.one_of(MAZE_CHARS, st.sampled_from(['"', "\n", "\r", ","]))
    grid = st.one_of(st.text(chars, max_size=60),
                     st.integers(3, 7).flatmap(lambda n: st.text(MAZE_CHARS, min_size=n * n,
                                                                 max_size=n * n)))
    fields = st.tuples(st.text(chars, max_size=4), grid, grid,
                       st.sampled_from(["", "0", "3.5", "x", "nan"])).map(",".join)
    mutated = st.tuples(st.sampled_from(MAZE_ROWS), st.lists(MAZE_EDIT, max_size=2)).map(
        lambda r: "m,{},{},0".format(*_mutate_maze(*r)))
    valid = st.sampled_from([f"v,{q},{a},0" for q, a in MAZE_ROWS])
    return st.one_of(st.text(chars, max_size=80), fields, mutated, valid, valid, valid,
                     st.just(""))


@FUZZ_PARSERS
@given(header=st.sampled_from([HEADER, "source,question,answer\n", "", "a,b,c\n",
                               "\ufeff" + HEADER, " source , question,answer,x\r\n"]),
       lines=st.lists(_maze_csv_line(), max_size=5),
       newline=st.sampled_from(["\n", "\r\n", "\r"]), garbage=st.binary(max_size=4),
       size=st.sampled_from([None, None, 4, 5, 6]), limit=st.sampled_from([None, None, 1, 2]),
       shortest=st.booleans())
def test_fuzz_maze_read_csv_parses_or_raises_value_error(header, lines, newline, garbage,
                                                          size, limit, shortest):
    """Arbitrary text over the maze alphabet and garbage: ``read_csv`` returns exactly the
    mazes of a valid file (round trip through ``to_strings`` and ``write_csv``; one S, one G,
    a shortest path) or raises ValueError starting with ``<path>:<line>:`` naming a bad line
    (``<path>:`` for a file-level fault) -- never any other exception."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "maze.csv"
        path.write_bytes(header.encode() + newline.join(lines).encode() + garbage)
        _check_maze_read(path, size, limit, shortest)


def test_fuzz_maze_read_csv_of_a_missing_file():
    with tempfile.TemporaryDirectory() as tmp:
        with pytest.raises(FileNotFoundError, match="no such maze file"):
            maze.read_csv(Path(tmp) / "nope.csv")


# ----------------------------------------------------------------------- ARC JSON files

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-20, 20) | st.integers() | st.floats()
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["train", "test", "input", "output"]) | st.text(max_size=5),
        children, max_size=4),
    max_leaves=25)
ARC_ODD_CELLS = st.sampled_from([-1, 10, 11, 1.0, True, None, "3", [1], 2**70])


def _arc_grid(h: int, w: int, fill: int = 0, edits: tuple = ()) -> list:
    rows = [[fill] * w for _ in range(h)]
    for r, c, value in edits:
        rows[r % h][c % w] = value
    return rows


VALID_GRIDS = st.builds(_arc_grid, st.integers(1, 30), st.integers(1, 30), st.integers(0, 9),
                        st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29),
                                           st.integers(0, 9)), max_size=3))
VALID_PAIRS = st.builds(lambda i, o: {"input": i, "output": o}, VALID_GRIDS, VALID_GRIDS)
VALID_TASKS = st.fixed_dictionaries({"train": st.lists(VALID_PAIRS, min_size=1, max_size=3),
                                     "test": st.lists(VALID_PAIRS, min_size=1, max_size=2)})


def _arc_fault(task: dict, fault: tuple) -> dict:
    """Break a valid task one way: a cell out of 0-9 or not an int, a ragged row, a grid of
    0 or 31-32 rows/columns, a missing key, an empty list, a part replaced by any JSON."""
    kind, i, j, odd, value = fault
    pairs = [(key, p) for key in ("train", "test") for p in task[key]]
    key, pair = pairs[i % len(pairs)]
    io_key = ("input", "output")[j % 2]
    grid = pair[io_key]
    r, c = divmod(j, 7)
    if kind == "cell":
        grid[r % len(grid)][c % len(grid[0])] = odd
    elif kind == "ragged":
        row = grid[r % len(grid)]
        grid[r % len(grid)] = row[:-1] if j % 3 else row + [0]
    elif kind == "size":
        h, w = [0, 1, 30, 31, 32][i % 5], [0, 1, 30, 31, 32][j % 5]
        pair[io_key] = _arc_grid(h, w) if h and w else [[]] * h
    elif kind == "row":
        grid[r % len(grid)] = value
    elif kind == "drop_io":
        del pair[io_key]
    elif kind == "drop_key":
        del task[("train", "test")[j % 2]]
    elif kind == "empty":
        task[("train", "test")[j % 2]] = []
    elif kind == "replace_grid":
        pair[io_key] = value
    elif kind == "replace_pair":
        task[key][0] = value
    elif kind == "replace_list":
        task[key] = value
    return task


ARC_FAULTS = st.tuples(
    st.sampled_from(["cell", "cell", "ragged", "size", "row", "drop_io", "drop_key", "empty",
                     "replace_grid", "replace_pair", "replace_list"]),
    st.integers(0, 1000), st.integers(0, 1000), st.integers(-1, 11) | ARC_ODD_CELLS,
    JSON_VALUES)


def _break_task(task: dict, faults: list[tuple]) -> dict:
    for fault in faults:
        try:
            task = _arc_fault(task, fault)
        except (KeyError, IndexError, TypeError, AttributeError, ZeroDivisionError):
            pass  # an earlier fault already took away what this one would break
    return task


ARC_TASKS = st.builds(_break_task, VALID_TASKS, st.lists(ARC_FAULTS, max_size=2))


def _json_bytes(value, ascii_only: bool) -> bytes:
    """``value`` as JSON; without ``ensure_ascii`` a lone surrogate gives bytes that are
    not UTF-8 (another way for a file to be broken)."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


ARC_GOOD = {"train": [{"input": [[1, 0]], "output": [[0, 1]]}],
            "test": [{"input": [[2, 0]], "output": [[0, 2]]}]}
ARC_FILE_BYTES = st.one_of(
    *[st.builds(_json_bytes, ARC_TASKS, st.booleans())] * 3,
    st.builds(_json_bytes, JSON_VALUES, st.booleans()),
    st.binary(max_size=64),
    st.tuples(st.sampled_from([b"\xef\xbb\xbf", b"\xff", b"", b"{", b'{"train": ']),
              st.builds(_json_bytes, st.just(ARC_GOOD), st.just(True))).map(b"".join),
)


@FUZZ_PARSERS
@given(content=ARC_FILE_BYTES, split=st.sampled_from(["training", "evaluation"]))
def test_fuzz_arc_task_file_loads_or_raises_arc_format_error(content, split):
    """Any JSON value (or bytes that are not JSON) as one task file: ``load_tasks`` either
    loads it, every grid then a 2-D int array of colours 0-9 with sides 1-30 holding exactly
    the file's numbers, or raises ARCFormatError naming the file -- never anything else."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for folder in ("training", "evaluation"):
            (root / folder).mkdir()
            (root / folder / "good.json").write_text(json.dumps(ARC_GOOD))
        path = root / split / "fuzz.json"
        path.write_bytes(content)
        try:
            puzzles = load_tasks(data_dir=root)
            event("ARC file: loads")
        except ARCFormatError as err:
            event(f"ARC file: {str(err)[len(str(path)) + 2:][:18]}")
            assert str(err).startswith(f"{path}: "), str(err)
            return
    names = {"training": ["good"], "evaluation": ["good"]}
    names[split].insert(0, "fuzz")  # sorted by name within each split, training first
    assert [(p.split, p.name) for p in puzzles] == [
        (s, n) for s in ("training", "evaluation") for n in names[s]]
    value = json.loads(content)
    (puzzle,) = [p for p in puzzles if p.name == "fuzz"]
    for key, pairs in (("train", puzzle.train), ("test", puzzle.test)):
        assert len(pairs) == len(value[key]) >= 1
        for pair, item in zip(pairs, value[key]):
            for grid, raw in zip(pair, (item["input"], item["output"])):
                assert isinstance(grid, np.ndarray) and grid.ndim == 2
                assert grid.dtype.kind in "iu"
                assert 1 <= grid.shape[0] <= 30 and 1 <= grid.shape[1] <= 30
                assert grid.min() >= 0 and grid.max() <= 9
                assert grid.tolist() == raw


@pytest.mark.parametrize("content", ["1" * 4301, "[" * 100_000],
                         ids=["4301-digit-int", "nested-100000"])
def test_fuzz_arc_pathological_json_is_an_arc_format_error(content):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "evaluation").mkdir()
        (root / "evaluation" / "good.json").write_text(json.dumps(ARC_GOOD))
        (root / "training").mkdir()
        path = root / "training" / "bad.json"
        path.write_text(content)
        with pytest.raises(ARCFormatError, match=re.escape(str(path))):
            load_tasks(data_dir=root)


STEP_COST, MAX_SEGMENTS = 0.05, 4


@pytest.fixture(scope="module", params=["sudoku4", "maze6", "arc-tiny"])
def envs(request):
    """Two single and two vector envs (twins, for determinism) on each bundled core."""
    kwargs = dict(checkpoint=request.param, step_cost=STEP_COST, max_segments=MAX_SEGMENTS)
    return (HaltingEnv(**kwargs), HaltingEnv(**kwargs),
            HaltingVectorEnv(num_envs=3, **kwargs), HaltingVectorEnv(num_envs=3, **kwargs))


def _check_reward(reward: float, ret: float) -> None:
    low = -STEP_COST * MAX_SEGMENTS - STEP_COST  # documented bound for any step
    assert low <= reward <= 1
    assert -2 * STEP_COST - 1e-9 <= reward <= 1 - STEP_COST + 1e-9  # tighter, per step
    assert -STEP_COST * MAX_SEGMENTS - 1e-9 <= ret <= 1 - STEP_COST + 1e-9


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), actions=st.lists(st.integers(0, 1), max_size=25))
def test_fuzz_single_env_random_actions(envs, seed, actions):
    torch.set_num_threads(1)  # batch-1 forwards: extra threads only add contention
    env, twin = envs[:2]
    obs, info = env.reset(seed=seed)
    twin_obs, _ = twin.reset(seed=seed)
    assert np.array_equal(obs, twin_obs)
    ret = 0.0
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        t_obs, t_r, *_ = twin.step(a)
        assert np.array_equal(obs, t_obs) and r == t_r  # same seed, same actions: same trace
        assert env.observation_space.contains(obs) and not trunc
        ret += r
        _check_reward(r, ret)
        assert 1 <= info["segments"] <= MAX_SEGMENTS
        assert term == (a == 1 or info["segments"] == MAX_SEGMENTS)
        if term:
            env.reset(), twin.reset()
            ret = 0.0


@pytest.mark.slow
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1),
       actions=st.lists(st.lists(st.integers(0, 1), min_size=3, max_size=3), max_size=20))
def test_fuzz_vector_env_random_actions(envs, seed, actions):
    torch.set_num_threads(1)
    venv, twin = envs[2:]
    obs, _ = venv.reset(seed=seed)
    assert np.array_equal(obs, twin.reset(seed=seed)[0])
    returns = np.zeros(3)
    for a in actions:
        obs, r, term, trunc, info = venv.step(np.array(a))
        t_obs, t_r, *_ = twin.step(np.array(a))
        assert np.array_equal(obs, t_obs) and np.array_equal(r, t_r)
        assert venv.observation_space.contains(obs) and not trunc.any()
        returns += r
        for i in range(3):
            _check_reward(r[i], returns[i])
        assert np.all(info["segments"] <= MAX_SEGMENTS)  # a row at the limit was replaced
        assert np.all(term >= np.array(a, dtype=bool))
        if term.any():
            assert np.all(info["final_info"]["segments"][term] <= MAX_SEGMENTS)
            returns[term] = 0.0
