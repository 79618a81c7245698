"""How a model is evaluated: full ranking or sampled negatives; history masking explicit."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ranking: Literal["full", "sampled"] = "full"
    mask_history: bool = Field(
        True, description="full ranking: exclude the user's history items from the candidates"
    )
    num_negatives: int = Field(100, ge=1, description="sampled ranking: negatives per user")
    negative_sampling: Literal["uniform", "popularity"] = "uniform"
    negative_seed: int = 0
    ks: list[int] = Field(default_factory=lambda: [5, 10, 20])
    batch_users: int = Field(1024, ge=1)

    def describe(self) -> str:
        if self.ranking == "full":
            return f"full ranking, history {'masked' if self.mask_history else 'NOT masked'}"
        return f"sampled ranking vs {self.num_negatives} {self.negative_sampling} negatives (seed {self.negative_seed})"
