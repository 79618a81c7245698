"""Atomic writes: a failed write keeps the old file and leaves no temporary file behind."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llmseqrec import atomic


def test_each_writer_round_trips(tmp_path):
    atomic.write_json(tmp_path / "a.json", {"x": np.float32(0.5), "t": "café"})
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8")) == {"x": 0.5, "t": "café"}
    atomic.save_npy(tmp_path / "a.npy", np.arange(3))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.arange(3))
    atomic.save_npz(tmp_path / "a.npz", left=np.ones(2), right=np.zeros(1))
    with np.load(tmp_path / "a.npz") as both:
        assert sorted(both.files) == ["left", "right"]
    atomic.torch_save(tmp_path / "a.pt", {"w": torch.ones(2)})
    assert torch.load(tmp_path / "a.pt", weights_only=True)["w"].sum() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.npy", "a.npz", "a.pt"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "record.json"
    atomic.write_json(target, {"epoch": 1})
    with pytest.raises(TypeError):
        atomic.write_json(target, {"epoch": object()}, default=None)
    assert json.loads(target.read_text()) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]

    def crash(handle):
        handle.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic.replace_with(target, crash)
    assert json.loads(target.read_text()) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]
