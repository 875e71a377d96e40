"""The registry of open streams: the concurrency limit, and closing every stream at shutdown."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.core.workers import SharedStreamCount
    from service.streams.session import StreamSession

log = logging.getLogger(__name__)


class StreamRegistry:
    """Open streams: the concurrency limit, and closing every stream at shutdown. `shared`: the count over every
    worker process of the server (`pkdot serve --workers N`), which the limit then applies to."""

    def __init__(self, limit: int, shared: SharedStreamCount | None = None) -> None:
        self.limit = limit
        self.shared = shared
        self._open: set[StreamSession] = set()
        self.accepting = True

    def __len__(self) -> int:
        return len(self._open)

    def try_add(self, stream: StreamSession) -> bool:
        """Admit a stream unless the limit is reached or the server is shutting down (no await: atomic)."""
        if not self.accepting or len(self._open) >= self.limit:
            return False
        if self.shared is not None and not self.shared.try_add(self.limit):  # a short file lock, no await
            return False
        self._open.add(stream)
        return True

    def waiting_frames(self) -> int:
        """Frames that arrived and wait for their stream's processor (at most one per stream)."""
        return sum(s.frame_waiting for s in self._open)

    def discard(self, stream: StreamSession) -> None:
        if stream in self._open:
            self._open.discard(stream)
            if self.shared is not None:
                self.shared.remove()

    async def close_all(self, code: int, reason: str, timeout: float = 5.0) -> int:
        """Refuse new streams, close the open ones with `code`, and wait (bounded) until their sessions end."""
        self.accepting = False
        streams = list(self._open)
        if not streams:
            return 0
        log.info("closing streams", extra={"streams": len(streams), "code": code})
        await asyncio.gather(*(s.close(code, reason) for s in streams), return_exceptions=True)
        await asyncio.wait([asyncio.ensure_future(s.finished.wait()) for s in streams], timeout=timeout)
        return len(streams)
