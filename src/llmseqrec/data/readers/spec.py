"""What a user tells ``prepare``: the format, the path, and the side files."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class SourceSpec(BaseModel):
    """A raw dataset on disk. Paths may be a directory (readers find their files) or a file."""

    model_config = ConfigDict(extra="forbid")

    format: str
    path: Path
    item_text: list[Path] = Field(default_factory=list, description="side tables of item text")
    meta: Path | None = Field(
        None, description="item metadata file (movies.dat, u.item, Amazon meta, .item)"
    )
    text_fields: dict[str, str] = Field(
        default_factory=dict,
        description="source text column -> canonical field (title, brand, ...)",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="generic tables: user/item/timestamp/order -> source column",
    )
    separator: str | None = None
    numeric_ids: bool = Field(True, description="numeric formats reject non-integer ids")
