"""A recording cut short keeps its finished batches in ``<out>.partial`` and a rerun of the
same command continues from them, writing the file one uninterrupted run writes."""

from __future__ import annotations

import numpy as np
import pytest

from hrm_rl.checkpoint import load_checkpoint
from hrm_rl.cli import main
from hrm_rl.envs import rollouts
from hrm_rl.envs.rollouts import partial_path, record_rollouts
from hrm_rl.trace import load_trace


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    path = tmp_path_factory.mktemp("split") / "sudoku4.csv"
    ckpt = load_checkpoint("sudoku4")
    ckpt.task.write_csv(path, ckpt.puzzles("test").take(slice(0, 40)))
    return str(path)


def _interrupt_after(monkeypatch, batches: int) -> list[int]:
    """Make the recorder raise KeyboardInterrupt (as Ctrl-C does) when it starts batch
    ``batches + 1``; returns the list of batch sizes it recorded."""
    real, sizes = rollouts.record_trace, []

    def record(model, task, puzzles, *args, **kwargs):
        if len(sizes) == batches:
            raise KeyboardInterrupt
        sizes.append(len(puzzles))
        return real(model, task, puzzles, *args, **kwargs)

    monkeypatch.setattr(rollouts, "record_trace", record)
    return sizes


def test_an_interrupted_recording_continues_to_the_uninterrupted_file(tmp_path, split,
                                                                       monkeypatch):
    whole = record_rollouts("sudoku4", split, tmp_path / "whole.npz", batch_size=16,
                            max_segments=3, latent=True, progress=False)
    out = tmp_path / "cut.npz"
    sizes = _interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        record_rollouts("sudoku4", split, out, batch_size=16, max_segments=3, latent=True,
                        progress=False)
    assert sizes == [16, 16] and not out.exists()
    kept = sorted(p.name for p in partial_path(out).iterdir())
    assert kept == ["chunk_000000.npz", "chunk_000001.npz", "plan.json"]
    monkeypatch.undo()
    sizes = _interrupt_after(monkeypatch, 99)
    record_rollouts("sudoku4", split, out, batch_size=16, max_segments=3, latent=True,
                    progress=False)
    assert sizes == [8]  # only the last batch was left
    assert not partial_path(out).exists()
    (a, _), (b, _) = load_trace(whole), load_trace(out)
    for name, array in a.arrays().items():
        np.testing.assert_array_equal(array, b.arrays()[name], err_msg=name)
    assert a.identity == b.identity


def test_the_cli_says_how_to_continue_and_refuses_other_settings(tmp_path, split, monkeypatch,
                                                                  capsys):
    out = tmp_path / "r.npz"
    args = ["rollouts", "record", "sudoku4", "--split", split, "--out", str(out),
            "--batch-size", "16", "--max-segments", "2", "--no-progress"]
    _interrupt_after(monkeypatch, 1)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert f"{out}.partial" in err and "run the same command again" in err
    monkeypatch.undo()
    other = [a if a != "2" else "3" for a in args]  # another cap: not the same recording
    assert main(other) == 2
    assert "other settings" in capsys.readouterr().err and not out.exists()
    assert main(other + ["--force"]) == 0  # --force starts afresh
    assert load_trace(out)[0].max_segments == 3 and not partial_path(out).exists()
