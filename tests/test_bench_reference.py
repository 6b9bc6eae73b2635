"""``hrm-rl bench reference``: the clean skip without a reference, the flash-attn and pydantic
stand-ins, the weight-name mapping, importing a (fake) reference without leaving anything in
``sys.modules``; and, with ``$HRM_REFERENCE_DIR`` set to a checkout of sapientinc/HRM, float64
equality and a short timing run against it."""

from __future__ import annotations

import json
import math
import os
import sys
import types

import pytest
import torch

from hrm_rl.bench import reference as R
from hrm_rl.cli import main
from hrm_rl.config import ModelConfig
from hrm_rl.model import build_model

REFERENCE = os.environ.get(R.ENV_VAR)
needs_reference = pytest.mark.skipif(
    not REFERENCE or bool(R.missing_reference_files(REFERENCE)),
    reason=f"set {R.ENV_VAR} to a checkout of {R.REFERENCE_URL}")


def _bench(capsys, *args: str) -> tuple[int, dict]:
    code = main(["bench", "reference", *args])
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else {}


def test_without_a_reference_dir_it_prints_a_skip_and_exits_0(monkeypatch, capsys):
    monkeypatch.delenv(R.ENV_VAR, raising=False)
    code, out = _bench(capsys)
    assert code == 0 and out["skipped"] is True
    assert "--reference-dir" in out["reason"] and R.REFERENCE_URL in out["how"]


def test_a_dir_without_the_reference_files_is_skipped(tmp_path, capsys):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "layers.py").write_text("")
    code, out = _bench(capsys, "--reference-dir", str(tmp_path))
    assert code == 0 and out["skipped"] is True
    assert "models/hrm/hrm_act_v1.py" in out["reason"] and "models/layers.py" not in out["reason"]
    code, out = _bench(capsys, "--reference-dir", str(tmp_path / "nowhere"))
    assert code == 0 and out["skipped"] is True and "not a directory" in out["reason"]


def test_bad_options_are_refused_before_looking_for_the_reference(monkeypatch, capsys):
    monkeypatch.delenv(R.ENV_VAR, raising=False)
    assert main(["bench", "reference", "--configs", "tiny4,nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["bench", "reference", "--batch", "huge=4"]) == 2
    with pytest.raises(SystemExit):
        main(["bench", "reference", "--batch", "paper9"])


def test_flash_attn_stand_in_is_sdpa_in_flash_attn_layout():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 5, 3, 4, dtype=torch.float64) for _ in range(3))  # (B, S, H, D)
    out = R.flash_attn_func(q=q, k=k, v=v, causal=False)
    assert out.shape == (2, 5, 3, 4) and out.is_contiguous()
    weights = torch.einsum("bshd,bthd->bhst", q, k) / math.sqrt(4)
    expected = torch.einsum("bhst,bthd->bshd", weights.softmax(-1), v)
    torch.testing.assert_close(out, expected)
    out.view(2, 5, 12)  # the reference views the output as (batch, seq, hidden)
    causal = R.flash_attn_func(q, k, v, causal=True)
    torch.testing.assert_close(causal[:, 0], v[:, 0])  # the first position sees only itself
    grouped = R.flash_attn_func(q, k[:, :, :1], v[:, :, :1])  # one key/value head for three
    torch.testing.assert_close(grouped, R.flash_attn_func(q, k[:, :, [0, 0, 0]],
                                                          v[:, :, [0, 0, 0]]))


def test_pydantic_stand_in_takes_fields_defaults_and_ignores_extras():
    class Config(R._ShimBaseModel):
        batch_size: int
        forward_dtype: str = "bfloat16"

    c = Config(batch_size=4, causal=False)
    assert (c.batch_size, c.forward_dtype) == (4, "bfloat16") and not hasattr(c, "causal")
    with pytest.raises(TypeError, match="batch_size"):
        Config()


@pytest.mark.parametrize("extra", [{}, {"puzzle_emb_ndim": 24, "num_puzzle_ids": 3,
                                       "pos_encodings": "learned"}])
def test_weight_names_map_both_ways_and_mismatches_are_named(extra):
    model = build_model(ModelConfig(hidden_size=16, num_heads=2, H_layers=1, L_layers=2,
                                    vocab_size=6, seq_len=16, **extra))
    ours = model.state_dict()
    theirs = {R.reference_name(k): v.clone() for k, v in ours.items()}
    assert all(k.startswith("inner.") for k in theirs)
    assert "inner.embed_tokens.embedding_weight" in theirs
    assert ("inner.puzzle_emb.weights" in theirs) == bool(extra)
    mapped = R.to_project_state(theirs, ours)
    assert set(mapped) == set(ours)
    model.load_state_dict(mapped)  # strict
    del theirs["inner.L_level.layers.1.mlp.down_proj.weight"]
    theirs["inner.extra"] = torch.zeros(1)
    with pytest.raises(ValueError, match="only in ours.*L_level.layers.1.mlp.down_proj"):
        R.to_project_state(theirs, ours)


def test_setups_match_the_brief_and_paper9_has_the_papers_parameter_count():
    paper = R.project_config(R.SETUPS["paper9"])
    from hrm_rl.tasks import make_task

    with torch.device("meta"):  # shapes only: no memory, no init time
        model = build_model(paper.model.fit_to(make_task(paper.task)))
    assert model.num_parameters() == 27_275_266
    ref = R.reference_config(paper)
    assert (ref["seq_len"], ref["vocab_size"], ref["batch_size"]) == (81, 11, 32)
    assert [R.SETUPS[n].batch_size for n in ("tiny4", "tiny9", "paper9")] == [128, 64, 32]


FAKE = {
    "models/common.py": "",
    "models/sparse_embedding.py": "",
    "models/layers.py": "from flash_attn_interface import flash_attn_func\n",
    "models/losses.py": ("class ACTLossHead:\n"
                         "    def __init__(self, model, loss_type):\n"
                         "        self.model, self.loss_type = model, loss_type\n"),
    "models/hrm/hrm_act_v1.py": ("from pydantic import BaseModel\n"
                                 "from models.layers import flash_attn_func\n"
                                 "class HierarchicalReasoningModel_ACTV1:\n"
                                 "    attention = staticmethod(flash_attn_func)\n"
                                 "    base = BaseModel\n"
                                 "    def __init__(self, config):\n"
                                 "        self.config = config\n"),
}


def _write(root, files):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_a_fake_reference_imports_with_the_stand_ins_and_leaves_sys_modules_as_it_was(
        tmp_path, monkeypatch):
    _write(tmp_path, FAKE)
    unrelated = types.ModuleType("models")  # someone else's top-level "models"
    monkeypatch.setitem(sys.modules, "models", unrelated)
    path_before = list(sys.path)
    ref = R.load_reference(tmp_path)
    assert ref.act_model.attention is R.flash_attn_func
    assert "flash_attn" in ref.shims and "flash_attn_interface" in ref.shims
    assert sys.modules["models"] is unrelated and "models.hrm.hrm_act_v1" not in sys.modules
    for name in ("flash_attn", "flash_attn_interface"):
        assert getattr(sys.modules.get(name), "flash_attn_func", None) is not R.flash_attn_func
    if "pydantic" in ref.shims:
        assert "pydantic" not in sys.modules
    assert sys.path == path_before
    head = ref.build({"x": 1}, "softmax")
    assert head.loss_type == "softmax_cross_entropy" and head.model.config == {"x": 1}
    assert ref.commit is None and len(ref.files_sha256) == 16


def test_a_reference_that_does_not_import_is_an_error_naming_it(tmp_path, capsys):
    _write(tmp_path, {**FAKE, "models/losses.py": "import no_such_module_for_hrm_rl\n"})
    with pytest.raises(ValueError, match="no_such_module_for_hrm_rl"):
        R.load_reference(tmp_path)
    assert "models.losses" not in sys.modules and "models.hrm.hrm_act_v1" not in sys.modules
    assert main(["bench", "reference", "--reference-dir", str(tmp_path), "--no-timing"]) == 2
    assert "could not import the reference" in capsys.readouterr().err


@needs_reference
def test_float64_training_steps_equal_the_reference():
    torch.set_num_threads(1)
    out = R.check_equality(R.load_reference(REFERENCE), "cpu", steps=3)
    assert out["equal"], out["per_step"]
    assert out["logits_dtype"] == {"project": "float64", "reference": "float64"}
    assert out["parameters"]["project"] == out["parameters"]["reference"]
    assert out["parameters"]["tensors"] == 20
    assert all(d["max_rel"] <= 1e-6 for d in out["first_training_step"]["gradients"].values())
    assert sum(s["halted"] for s in out["per_step"]) > 0  # halting was exercised


@needs_reference
def test_short_timing_run_prints_ratios(capsys):
    code, out = _bench(capsys, "--reference-dir", REFERENCE, "--configs", "tiny4",
                       "--batch", "tiny4=8", "--seconds", "0.2", "--rounds", "2",
                       "--eval-segments", "1", "--check-steps", "1", "--threads", "1")
    assert code == 0 and out["equality"]["equal"]
    tiny = out["configs"]["tiny4"]
    assert tiny["parameters"]["project"] == tiny["parameters"]["reference"] == 1_050_370
    for mode in ("train", "eval"):
        assert len(tiny[mode]["project"]["rounds"]) == 2
        assert tiny[mode]["project"]["segments_per_s"] > 0
        assert tiny[mode]["reference"]["segments_per_s"] > 0
    assert set(out["ratios"]["tiny4"]) == {"train", "eval"} and out["ratios"]["tiny4"]["train"] > 0
    assert out["matmul_peak_gflops_fp32"]["gflops"] > 0
