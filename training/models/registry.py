"""The one way models are built from names: `build(REGISTRY, name, **cfg)` with clear errors for bad options."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch.nn as nn

from training.errors import ConfigError


def build(registry: dict[str, Callable[..., nn.Module]], name: str, what: str, cfg: dict) -> nn.Module:
    """registry[name](**cfg); an unknown name or option raises ConfigError naming `what` was being built."""
    if name not in registry:
        raise ConfigError(f"unknown {what} {name!r}; expected one of {sorted(registry)}")
    builder = registry[name]
    try:
        inspect.signature(builder).bind(**cfg)
    except TypeError as exc:
        raise ConfigError(f"invalid options for {what} {name!r}: {exc}") from exc
    return builder(**cfg)
