import json

import numpy as np
import pytest
import torch

import minidiff3d


def test_get_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert minidiff3d.get_device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert minidiff3d.get_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert minidiff3d.get_device() == torch.device("cuda")


def test_seed_everything_makes_draws_repeat():
    minidiff3d.seed_everything(7)
    first = torch.rand(3)
    generator = minidiff3d.seed_everything(7)
    assert torch.equal(first, torch.rand(3))
    assert torch.equal(torch.rand(3, generator=generator), torch.rand(3, generator=torch.Generator().manual_seed(7)))
    with pytest.raises(ValueError, match="seed: expected a non-negative integer"):
        minidiff3d.seed_everything(-1)


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("0", False), ("", False)])
def test_quick_mode_reads_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("MINIDIFF3D_QUICK", value)
    assert minidiff3d.quick_mode() is expected


def test_assert_bar_logs_and_fails_below_bar(tmp_path, monkeypatch, capsys):
    log = tmp_path / "results.jsonl"
    monkeypatch.setenv("MINIDIFF3D_RESULTS", str(log))
    minidiff3d.assert_bar("psnr", 30.0, bar=28.0)
    with pytest.raises(AssertionError, match="error"):
        minidiff3d.assert_bar("error", 0.5, bar=0.1, higher_is_better=False)
    minidiff3d.assert_bar("mean", np.float64(0.9), bar=np.float64(0.7))  # numpy scalars log as plain JSON too
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["name"], r["passed"]) for r in rows] == [("psnr", True), ("error", False), ("mean", True)]
    assert "psnr: 30 (bar: ≥ 28) ✔" in capsys.readouterr().out
