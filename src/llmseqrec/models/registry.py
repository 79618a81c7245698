"""Name -> backbone class. Modules register themselves with ``@register("name")``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmseqrec.errors import ConfigError
from llmseqrec.models.base import Backbone, BackboneConfig

BACKBONES: dict[str, type[Backbone]] = {}


def register(name: str) -> Callable[[type[Backbone]], type[Backbone]]:
    def decorate(cls: type[Backbone]) -> type[Backbone]:
        BACKBONES[name] = cls
        return cls

    return decorate


def _load_all() -> None:
    import importlib
    import pkgutil

    import llmseqrec.models as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in ("base", "registry"):
            importlib.import_module(f"llmseqrec.models.{module.name}")


def backbone_class(name: str) -> type[Backbone]:
    _load_all()
    if name not in BACKBONES:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name]


def make_config(name: str, overrides: dict[str, Any] | None = None) -> BackboneConfig:
    cls = backbone_class(name)
    return cls.config_class(name=name, **(overrides or {}))


def build_backbone(name: str, n_items: int, overrides: dict[str, Any] | None = None) -> Backbone:
    cls = backbone_class(name)
    return cls(n_items, make_config(name, overrides))
