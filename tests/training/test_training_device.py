"""Where a run trains: ``train.device``. The GPU cases run wherever torch sees one (a lent
device machine); on a CPU-only machine they are skipped and the CPU path is checked."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llmseqrec.errors import ConfigError
from llmseqrec.training.batches import Batch
from llmseqrec.training.config import build_run_config
from llmseqrec.training.losses import fused_softmax_ce, reference_softmax_ce
from llmseqrec.training.run import Run, train_run
from llmseqrec.training.trainer import Trainer

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
DEVICES = ["cpu", pytest.param("cuda", marks=GPU)]
SMALL = {"backbone": {"max_len": 20, "hidden_size": 16}}


def _config(model: str, device: str, **train):
    return build_run_config(
        "tiny", model, overrides={**SMALL, "train": {"epochs": 2, "device": device, **train}}
    )


def test_device_is_not_part_of_the_run_hash_so_a_paused_run_can_move():
    assert _config("sasrec", "cpu").run_hash() == _config("sasrec", "cuda:0").run_hash()


def test_an_unknown_device_name_is_refused_with_the_field():
    with pytest.raises(Exception, match="device"):
        _config("sasrec", "tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_asked_for_where_there_is_none_is_a_one_line_error(tiny, tmp_path):
    with pytest.raises(ConfigError, match=r"train.device=cuda: torch sees no CUDA device"):
        Trainer(_config("sasrec", "cuda"), tiny, tmp_path / "r", progress=False)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "model,loss", [("sasrec", "ce"), ("bert4rec", "ce"), ("gru4rec", "bce"), ("narm", "ce")]
)
def test_a_backbone_trains_and_ranks_on_the_device(tiny, tmp_path, device, model, loss):
    config = _config(model, device, loss=loss, bf16=device != "cpu")
    result, directory = train_run(config, tiny, root=tmp_path, progress=False)
    assert result["finished"] and np.isfinite(result["test"]["ndcg@10"])
    start = json.loads((directory / "log.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["device"].startswith(device)
    run = Run.load(directory, tiny)  # checkpoints load on the CPU wherever they were written
    assert next(run.model.parameters()).device.type == "cpu"


@pytest.mark.parametrize("device", DEVICES)
def test_fused_ce_matches_plain_autograd_on_the_device(device):
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(600, 8, generator=generator).to(device).requires_grad_()
    table = torch.randn(50, 8, generator=generator).to(device).requires_grad_()
    targets = torch.randint(0, 50, (600,), generator=generator).to(device)
    fused = fused_softmax_ce(hidden, table, targets, chunk_rows=128)
    grads = torch.autograd.grad(fused, [hidden, table])
    plain = reference_softmax_ce(hidden, table, targets)
    expected = torch.autograd.grad(plain, [hidden, table])
    assert fused.item() == pytest.approx(plain.item(), rel=1e-5)
    for got, want in zip(grads, expected, strict=True):
        assert got.device.type == device and torch.allclose(got, want, atol=1e-5)


def test_moving_a_batch_moves_its_views_and_tensor_extras():
    rows = torch.arange(12).view(3, 4)
    batch = Batch(
        users=torch.arange(3),
        inputs=rows,
        targets=rows,
        views={"positive": rows.clone()},
        extras={"pairs": rows.clone(), "note": "kept as is"},
    )
    moved = batch.to(torch.device("meta"))  # any non-CPU device takes the same path as cuda
    assert moved.inputs.is_meta and moved.views["positive"].is_meta
    assert moved.extras["pairs"].is_meta and moved.extras["note"] == "kept as is"
    assert not batch.views["positive"].is_meta  # the CPU batch the enhancer built is untouched
