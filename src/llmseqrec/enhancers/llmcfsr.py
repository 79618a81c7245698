"""LLM-CFSR: contrastively fine-tuned semantic item embeddings + dual-view modelling with causal
cross-attention fusion at the embedding, sequence and prediction layers.

Stage 1 (``prepare``, offline, cached): attribute-level views of every item and contrastive
fine-tuning of the sentence encoder on them, then one embedding per item
(:mod:`llmseqrec.enhancers.llmcfsr_finetune`). Only item attributes are read: no interaction,
so no leakage through the text stage; the PCA initialisation of the ID embeddings reads only
these item embeddings.

Stage 2 (``wrap``): :class:`llmseqrec.enhancers.dualview.DualViewRecommender` with all three
fusion levels on (causal cross-attention everywhere), trained by the shared trainer with the
backbone's own loss. No extra loss.

The semantic embeddings are cached under ``<cache>/<dataset>/semantic/semantic-<hash>/`` (next
to the method's workdir, so LLM-ESR and the ablations reuse the same raw-encoder embeddings).

Ablations (``ablation=...``): ``no_finetune`` (raw encoder embeddings), ``no_emb_fusion``,
``no_seq_fusion``, ``no_pred_fusion``, ``no_fusion`` (all three off: summed logits),
``semantic_only`` / ``collaborative_only`` (one branch, no fusion).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field
from torch import nn

from llmseqrec.data.dataset import Dataset
from llmseqrec.enhancers.base import Enhancer, parse_options, register_enhancer
from llmseqrec.enhancers.dualview import DualViewOptions, DualViewRecommender
from llmseqrec.enhancers.llmcfsr_finetune import FinetuneOptions, semantic_item_embeddings
from llmseqrec.errors import ConfigError

ABLATIONS = (
    "none",
    "no_finetune",
    "no_emb_fusion",
    "no_seq_fusion",
    "no_pred_fusion",
    "no_fusion",
    "semantic_only",
    "collaborative_only",
)


class LLMCFSROptions(DualViewOptions):
    fusion_embedding: bool = True
    fusion_sequence: bool = True
    fusion_prediction: bool = True
    finetune: FinetuneOptions = Field(default_factory=FinetuneOptions)
    ablation: Literal[ABLATIONS] = "none"  # type: ignore[valid-type]
    progress: bool | None = Field(None, description="progress bars of the offline stage")

    def effective(self) -> LLMCFSROptions:
        """The options with the ablation applied."""
        update: dict[str, Any] = {}
        a = self.ablation
        if a == "no_finetune":
            update["finetune"] = self.finetune.model_copy(update={"enabled": False})
        elif a == "no_emb_fusion":
            update["fusion_embedding"] = False
        elif a == "no_seq_fusion":
            update["fusion_sequence"] = False
        elif a == "no_pred_fusion":
            update["fusion_prediction"] = False
        elif a in ("no_fusion", "semantic_only", "collaborative_only"):
            update.update(fusion_embedding=False, fusion_sequence=False, fusion_prediction=False)
            if a != "no_fusion":
                update["views"] = a.removesuffix("_only")
        return self.model_copy(update=update)


def semantic_root(workdir: Path) -> Path:
    """Semantic embeddings are shared between the dual-view methods of one dataset."""
    return Path(workdir).parent / "semantic"


@register_enhancer
class LLMCFSR(Enhancer):
    name = "llmcfsr"
    ablations = {name: {"ablation": name} for name in ABLATIONS if name != "none"}

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.opts: LLMCFSROptions = parse_options(
            LLMCFSROptions, self.options, self.name
        ).effective()
        self.embeddings: np.ndarray | None = None
        self.artefact_dir: Path | None = None

    def prepare(self, dataset: Dataset, workdir: Path) -> None:
        self.embeddings, self.artefact_dir = semantic_item_embeddings(
            dataset, semantic_root(workdir), self.opts.finetune, progress=self.opts.progress
        )

    def wrap(self, recommender: nn.Module) -> nn.Module:
        if self.embeddings is None:
            raise ConfigError(f"{self.name}: prepare() must run before the model is built")
        return DualViewRecommender(recommender, self.embeddings, self.opts)
