"""The one trainer every backbone and every method uses.

Resumable: ``state.pt`` (model, optimiser, RNG, early-stopping state) is written atomically after
every epoch, ``checkpoint.pt`` at every validation improvement. Rerunning the same command on the
same run directory continues from the last finished epoch; batch order depends only on
(seed, epoch), so a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from llmseqrec import atomic
from llmseqrec.data.dataset import Dataset
from llmseqrec.enhancers.base import Enhancer
from llmseqrec.errors import ConfigError
from llmseqrec.evaluation.groups import grouped_metrics, item_popularity_groups, user_length_groups
from llmseqrec.evaluation.metrics import metrics_from_ranks
from llmseqrec.evaluation.ranking import rank_users, sample_negatives
from llmseqrec.models.registry import build_backbone
from llmseqrec.training.batches import Batch, iterate_batches, training_windows
from llmseqrec.training.config import RunConfig, protocol_line
from llmseqrec.training.losses import chunk_rows_for, fused_softmax_ce, sampled_bce
from llmseqrec.training.recommender import Recommender

log = logging.getLogger(__name__)


def build_model(
    config: RunConfig, dataset: Dataset, enhancer: Enhancer | None = None
) -> torch.nn.Module:
    torch.manual_seed(config.train.seed)
    backbone = build_backbone(config.model, dataset.n_items, config.backbone)
    model = Recommender(backbone)
    return enhancer.wrap(model) if enhancer is not None else model


def training_device(config: RunConfig) -> torch.device:
    """The run's device; a one-line error for a GPU that is not there. Methods build their views
    on the CPU (``augment_batch``, before the batch moves) and keep their lookup tables there;
    ``extra_loss`` moves what it gathers to the device of the states it is given."""
    device = torch.device(config.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={config.train.device}: torch sees no CUDA device here")
    return device


def mask_for_cloze(
    batch: Batch, mask_token: int, mask_prob: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT4Rec's objective: mask items of the window, predict them (at least one per row)."""
    sequence = batch.targets
    real = sequence > 0
    # Drawn on the CPU generator whatever the device, so the masks follow the run's seed alike.
    chosen = (torch.rand(sequence.shape).to(sequence.device) < mask_prob) & real
    chosen[:, -1] |= ~chosen.any(1) & real[:, -1]
    inputs = torch.where(chosen, torch.full_like(sequence, mask_token), sequence)
    targets = torch.where(chosen, sequence, torch.zeros_like(sequence))
    return inputs, targets


class Trainer:
    def __init__(
        self,
        config: RunConfig,
        dataset: Dataset,
        run_dir: Path,
        enhancer: Enhancer | None = None,
        progress: bool | None = None,
    ) -> None:
        self.config = config
        self.dataset = dataset
        self.run_dir = Path(run_dir)
        self.enhancer = enhancer or Enhancer()
        self.progress = progress
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        self.device = training_device(config)
        self.model = build_model(config, dataset, self.enhancer).to(self.device)
        self.max_len = (
            self.model.backbone.config.max_len
            if hasattr(self.model, "backbone")
            else config.backbone.get("max_len", 50)
        )
        self.enhancer.bind(dataset, self.max_len, config.train.seed)
        params = list(self.model.parameters())
        for module in self.enhancer.trainable_modules():
            params += list(module.to(self.device).parameters())
        optimiser_cls = torch.optim.AdamW if config.train.optimizer == "adamw" else torch.optim.Adam
        self.optimiser = optimiser_cls(
            params, lr=config.train.lr, weight_decay=config.train.weight_decay
        )
        split = dataset.split
        self.windows, self.window_users = training_windows(
            split.train_offsets, split.train_items, self.max_len, config.train.windows
        )
        self._negatives: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ losses
    def recommendation_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss on every non-padding target position; per-sequence weights when given."""
        model = self.model
        if model.objective == "masked":
            mask_prob = getattr(model.backbone.config, "mask_prob", 0.2)
            inputs, targets = mask_for_cloze(batch, model.backbone.mask_token, mask_prob)
        else:
            inputs, targets = batch.inputs, batch.targets
        states = model.encode(inputs)
        where = targets > 0
        hidden = states[where]
        target = targets[where]
        weights = (
            batch.weights[:, None].expand_as(targets)[where] if batch.weights is not None else None
        )
        normaliser = float(where.sum())
        hidden, table = model.head(hidden)
        if self.config.train.loss == "ce":
            dtype = torch.bfloat16 if self.config.train.bf16 else torch.float32
            loss = fused_softmax_ce(
                hidden,
                table[1:],
                target - 1,
                weights,
                normaliser,
                compute_dtype=dtype,
                chunk_rows=chunk_rows_for(self.device),
            )
        else:
            k = self.config.train.bce_negatives
            negatives = torch.randint(1, self.dataset.n_items + 1, (len(target), k))
            negatives = negatives.to(target.device)
            clash = negatives == target[:, None]
            negatives[clash] = negatives[clash] % self.dataset.n_items + 1
            loss = sampled_bce(
                hidden.float(), table.float(), target, negatives, weights, normaliser
            )
        return loss, states

    # ------------------------------------------------------------- evaluation
    def evaluate(self, stage: str) -> np.ndarray:
        negatives = None
        if self.config.eval.ranking == "sampled":
            if stage not in self._negatives:
                self._negatives[stage] = sample_negatives(self.dataset, self.config.eval, stage)
            negatives = self._negatives[stage]
        return rank_users(
            self.model,
            self.dataset,
            self.config.eval,
            stage,
            self.max_len,
            negatives,
            self.config.train.bf16,
        )

    # ------------------------------------------------------------------- state
    def _state(self, epoch: int, best: dict[str, Any], history: list[dict]) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "enhancer": self.enhancer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            # dropout on a GPU draws from its own generator
            "cuda_rng": (
                torch.cuda.get_rng_state(self.device)
                if self.device.type == "cuda"
                else torch.empty(0, dtype=torch.uint8)
            ),
            "enhancer_rng": self.enhancer.generator.get_state(),
            "enhancer_np_rng": json.dumps(self.enhancer.rng.bit_generator.state),
            "best": best,
            "history": json.dumps(history),
        }

    def _drop_logged_epochs_from(self, epoch: int) -> None:
        """A process killed after logging an epoch but before saving its state redoes that
        epoch on resume: drop its line so that the log holds each epoch once."""
        path = self.run_dir / "log.jsonl"
        if not path.exists():
            return
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)

        def keep(line: str) -> bool:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # torn by the kill mid-write
                return False
            return not (record.get("event") == "epoch" and record.get("epoch", -1) >= epoch)

        kept = [line for line in lines if keep(line)]
        if len(kept) != len(lines):
            atomic.write_text(path, "".join(kept))

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.run_dir / "log.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=float) + "\n")

    # --------------------------------------------------------------------- fit
    def fit(self) -> dict[str, Any]:
        cfg = self.config.train
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state_path = self.run_dir / "state.pt"
        best: dict[str, Any] = {"value": -1.0, "epoch": -1, "bad_epochs": 0}
        history: list[dict] = []
        start_epoch = 0
        if state_path.exists():
            # map to the CPU first: a run paused on one device may continue on another
            state = torch.load(state_path, map_location="cpu", weights_only=True)
            self.model.load_state_dict(state["model"])
            self.optimiser.load_state_dict(state["optimiser"])
            self.enhancer.load_state_dict(state["enhancer"])
            torch.set_rng_state(state["torch_rng"])
            cuda_rng = state.get("cuda_rng")
            if self.device.type == "cuda" and cuda_rng is not None and cuda_rng.numel():
                torch.cuda.set_rng_state(cuda_rng, self.device)
            self.enhancer.generator.set_state(state["enhancer_rng"])
            self.enhancer.rng.bit_generator.state = json.loads(state["enhancer_np_rng"])
            best = state["best"]
            history = json.loads(state["history"])
            start_epoch = state["epoch"] + 1
            self._drop_logged_epochs_from(start_epoch)
            self._log({"event": "resume", "epoch": start_epoch, "device": str(self.device)})
            log.info("resuming %s at epoch %d", self.run_dir, start_epoch)
        else:
            torch.manual_seed(cfg.seed + 1)
            self._log(
                {
                    "event": "start",
                    "device": str(self.device),
                    "protocol": protocol_line(self.config, self.dataset.metadata, self.run_dir),
                }
            )
        started = time.perf_counter()
        stopped_early = best["bad_epochs"] >= cfg.patience
        step = start_epoch * ((len(self.windows) + cfg.batch_size - 1) // cfg.batch_size)
        epoch = start_epoch
        for epoch in range(start_epoch, cfg.epochs):
            if stopped_early:
                break
            self.model.train()
            epoch_start = time.perf_counter()
            totals: dict[str, float] = {}
            batches = iterate_batches(
                self.windows,
                self.window_users,
                cfg.batch_size,
                np.random.default_rng([cfg.seed, epoch]),
                bucket=cfg.bucket_by_length,
            )
            n_batches = (len(self.windows) + cfg.batch_size - 1) // cfg.batch_size
            bar = tqdm(
                batches,
                total=n_batches,
                desc=f"epoch {epoch + 1}",
                leave=False,
                disable=None if self.progress is None else not self.progress,
                mininterval=1.0,
            )
            for batch in bar:
                batch = self.enhancer.augment_batch(batch, step).to(self.device)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                    rec, states = self.recommendation_loss(batch)
                    extras = self.enhancer.extra_loss(self.model, batch, states)
                loss = rec + sum(extras.values()) if extras else rec
                self.optimiser.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.optimiser.step()
                step += 1
                totals["loss"] = totals.get("loss", 0.0) + float(loss.detach())
                totals["rec"] = totals.get("rec", 0.0) + float(rec.detach())
                for name, value in extras.items():
                    totals[name] = totals.get(name, 0.0) + float(value.detach())
            record: dict[str, Any] = {
                "event": "epoch",
                "epoch": epoch,
                "seconds": time.perf_counter() - epoch_start,
            }
            record.update({k: v / max(n_batches, 1) for k, v in totals.items()})
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                eval_start = time.perf_counter()
                metrics = metrics_from_ranks(self.evaluate("valid"), self.config.eval.ks)
                record["valid"] = metrics
                record["eval_seconds"] = time.perf_counter() - eval_start
                value = metrics[cfg.select_metric]
                if value > best["value"]:
                    best = {"value": value, "epoch": epoch, "bad_epochs": 0}
                    atomic.torch_save(self.run_dir / "checkpoint.pt", self.model.state_dict())
                else:
                    best["bad_epochs"] += 1
                stopped_early = best["bad_epochs"] >= cfg.patience
            history.append(record)
            self._log(record)
            atomic.torch_save(state_path, self._state(epoch, best, history))
            if (
                cfg.max_minutes
                and (time.perf_counter() - started) / 60 > cfg.max_minutes
                and epoch + 1 < cfg.epochs
                and not stopped_early
            ):
                self._log({"event": "paused", "epoch": epoch})
                return {"finished": False, "epoch": epoch, "best": best}
        return self.finish(best, history)

    def finish(self, best: dict[str, Any], history: list[dict]) -> dict[str, Any]:
        self.model.load_state_dict(
            torch.load(self.run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
        )
        valid_ranks = self.evaluate("valid")
        test_ranks = self.evaluate("test")
        np.save(self.run_dir / "ranks_valid.npy", valid_ranks)
        np.save(self.run_dir / "ranks_test.npy", test_ranks)
        ks = self.config.eval.ks
        epochs = [h for h in history if h.get("event") == "epoch"]
        result = {
            "finished": True,
            "protocol": protocol_line(self.config, self.dataset.metadata, self.run_dir),
            "best_epoch": best["epoch"],
            "epochs_run": len(epochs),
            "seconds_per_epoch": float(np.mean([h["seconds"] for h in epochs])) if epochs else 0.0,
            "valid": metrics_from_ranks(valid_ranks, ks),
            "test": metrics_from_ranks(test_ranks, ks),
            "test_groups": {
                "user_length": grouped_metrics(test_ranks, user_length_groups(self.dataset)),
                "item_popularity": grouped_metrics(
                    test_ranks, item_popularity_groups(self.dataset, self.dataset.split.test_target)
                ),
            },
        }
        atomic.write_json(self.run_dir / "metrics.json", result)
        self._log({"event": "finished", "test": result["test"]})
        return result
