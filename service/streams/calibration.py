"""Calibration: the mean prediction over the next N seconds becomes the person's neutral baseline.

While a calibration runs, each processed frame's prediction (none when no face was found) is collected; the first
frame after the time is up ends it. A stream's results then carry `relative` = smoothed minus that baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Calibration:
    until: float  # monotonic time when it ends
    seconds: float
    predictions: list[dict] = field(default_factory=list)  # the fields of each frame's prediction

    def observe(self, prediction: dict | None, now: float) -> bool:
        """Collect one processed frame's prediction (None: no face); True once the time is up (this frame is not
        collected: the calibration has ended)."""
        if now >= self.until:
            return True
        if prediction is not None:
            self.predictions.append(prediction)
        return False
