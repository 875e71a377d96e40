"""The skip-or-fail policy shared by the dataset readers.

A broken sample (missing file, unreadable signal, no face in the cache, ...) is skipped with a warning and recorded,
so a run on a real release with a few bad files still trains; `strict=True` turns the first problem into a
`DatasetError` instead. Either way the message names the file and the problem.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from training.errors import DatasetError


@dataclass(frozen=True)
class SkippedSample:
    key: str  # the sample's key (BioVid `<subject>/<sample>`, Aff-Wild2 annotation name)
    reason: str  # short category, e.g. "video missing", "biosignal unreadable", "no face"
    detail: str  # the full message: file and problem


class SkipLog:
    """Collects skipped samples (or raises on the first one when strict); logs a warning for each unless
    `logger` is None."""

    def __init__(self, strict: bool, logger: logging.Logger | None) -> None:
        self.strict = strict
        self.logger = logger
        self.items: list[SkippedSample] = []

    def skip(self, key: str, reason: str, detail: str) -> None:
        if self.strict:
            raise DatasetError(detail)
        if self.logger is not None:
            self.logger.warning("skipping %s (%s): %s", key, reason, detail)
        self.items.append(SkippedSample(key, reason, detail))

    def counts(self) -> dict[str, int]:
        """Number of skipped samples per reason."""
        return dict(Counter(s.reason for s in self.items))
