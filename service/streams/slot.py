"""Newest frame wins: one slot between a stream's receiver and its processor.

The receiver puts every frame in the slot as it arrives; a frame still waiting there is replaced (dropped, and
counted by the caller), so a slow server or a fast client never builds a queue. The processor takes whatever frame is
there when it is ready for the next one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True)
class Frame:
    seq: int  # arrival number of the binary message on this connection, from 0
    ts: float  # wall-clock time of arrival (time.time())
    arrival: float  # time.perf_counter() at arrival, for the latency
    data: bytes  # the encoded image (JPEG or PNG)


class FrameSlot:
    """Holds at most one frame; `put` replaces a waiting one, `take` waits for one. One event loop, no locks."""

    def __init__(self) -> None:
        self._frame: Frame | None = None
        self._ready = asyncio.Event()

    @property
    def waiting(self) -> bool:
        """A frame is waiting to be taken."""
        return self._frame is not None

    def put(self, frame: Frame) -> bool:
        """Leave `frame` in the slot; True when it replaced a frame that was still waiting (that one is dropped)."""
        replaced = self._frame is not None
        self._frame = frame
        self._ready.set()
        return replaced

    async def take(self) -> Frame:
        """The waiting frame (waits until there is one), leaving the slot empty."""
        while self._frame is None:
            self._ready.clear()
            await self._ready.wait()
        frame, self._frame = self._frame, None
        return frame
