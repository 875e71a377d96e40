"""The WebSocket side of `pkdot stream`: send frames with at most `window` of them unanswered, match answers.

The server answers every frame it processes with a JSON message carrying the frame's `seq` (its 0-based number
among the binary messages of the connection). A frame that waited while a newer one arrived is dropped by the
server and never answered, and the server answers in order, so an answer for `seq` settles every earlier frame
still in flight: those were dropped.

When the connection breaks (lost without a close frame, as when a cluster replica dies; or closed with 1001
going away, 1011 internal error, 1012 restart) the streamer reconnects on its own, waiting 0.5, 1, 2, 4, 8 s
between tries (`reconnect` tries in a row; a connection that gets an answer starts the count again), and goes on
with the source's next frames on the new connection, whose `seq` starts again at 0. The frames in flight on the
broken connection were not answered and never will be: they are counted as `lost`. Refusals (1003, 1008, 1009,
1013) end the stream. At the end, sent == answered + errors + dropped + lost + unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from service.client.sources import FrameSource, encode_jpeg

REFUSALS = {1003: "unsupported data", 1008: "policy", 1009: "message too big", 1013: "try again later"}
RETRY_CODES = {1001, 1006, 1011, 1012}  # going away, lost (no close frame), internal error, service restart
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # waits before the 1st, 2nd, ... try; the last repeats
MAX_MESSAGE = 4 * 1024 * 1024  # answers are small; this only bounds a misbehaving server


class StreamFailed(Exception):
    """The stream could not start or did not finish. `kind`: unreachable, refused or lost."""

    def __init__(self, kind: str, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.code = kind, message, code


@dataclass
class StreamOptions:
    url: str  # ws[s]://host:port/ws/stream?task=...
    api_key: str | None = None  # sent as the X-API-Key header of the handshake
    fps: float | None = None  # frames sent per second of source time; None: every frame
    window: int = 1  # frames sent and not yet answered, at most
    realtime: bool = True  # play a file at its own speed (a camera is always live)
    max_frames: int | None = None  # stop after sending this many
    duration: float | None = None  # stop after this many seconds
    max_width: int = 640  # frames are scaled down to this width before JPEG encoding
    quality: int = 85  # JPEG quality
    timeout: float = 10.0  # give up when frames wait this long without any answer
    open_timeout: float = 10.0
    calibrate: float | None = None  # ask for a baseline over the first N seconds
    reconnect: int = 5  # tries in a row to reconnect after the connection breaks; 0: never


@dataclass
class StreamStats:
    frames_read: int = 0  # from the source
    sent: int = 0
    answered: int = 0  # results
    faces: int = 0  # results with a face
    dropped: int = 0  # dropped by the server (a newer frame replaced them)
    errors: int = 0  # frames the server refused (undecodable, too large, inference failed)
    unanswered: int = 0  # still in flight when the stream ended
    skipped: int = 0  # not sent: the window was full when a live frame was due
    server_dropped: int = 0  # the `dropped` field of the last result (of all connections)
    lost: int = 0  # in flight when a connection broke: never answered
    reconnects: int = 0  # connections after the first
    replicas: list[str] = field(default_factory=list)  # X-PKDOT-Replica of each connection (a cluster's replica)
    latencies_ms: list[float] = field(default_factory=list)
    duration_s: float = 0.0

    def summary(self) -> dict:
        lat = np.asarray(self.latencies_ms, dtype=float)
        latency = {k: None for k in ("p50", "p95", "p99", "mean", "max")}
        if lat.size:
            p50, p95, p99 = np.percentile(lat, [50, 95, 99])
            latency = {"p50": p50, "p95": p95, "p99": p99, "mean": lat.mean(), "max": lat.max()}
            latency = {k: round(float(v), 2) for k, v in latency.items()}
        return {"type": "summary", "frames_read": self.frames_read, "sent": self.sent, "answered": self.answered,
                "faces": self.faces, "dropped": self.dropped, "errors": self.errors, "unanswered": self.unanswered,
                "skipped": self.skipped, "server_dropped": self.server_dropped, "lost": self.lost,
                "reconnects": self.reconnects, "replicas": self.replicas, "latency_ms": latency,
                "duration_s": round(self.duration_s, 3),
                "answers_per_s": round(self.answered / self.duration_s, 2) if self.duration_s > 0 else None}


# on_message(message, latency_ms): every JSON message of the server; latency for answers to a frame
MessageHandler = Callable[[dict, float | None], None]


class _Closed(Exception):
    """The connection closed while the client was waiting."""


class Streamer:
    def __init__(self, source: FrameSource, options: StreamOptions, on_message: MessageHandler) -> None:
        self.source, self.options, self.on_message = source, options, on_message
        self.stats = StreamStats()
        self.inflight: dict[int, float] = {}  # seq -> perf_counter() when sent
        self._changed = asyncio.Event()  # an answer arrived or the connection closed
        self._closed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._last_answer = time.monotonic()
        self._seq = 0  # the next frame's seq on the current connection

    def stop(self) -> None:
        """Finish gracefully: send no more frames, wait for the ones in flight, close."""
        self._stopping.set()

    async def run(self) -> StreamStats:
        t0 = time.perf_counter()
        try:
            ws = await self._connect()
            tries = 0
            while True:
                answered = self.stats.answered + self.stats.errors
                broken = await self._session(ws)
                if broken is None:
                    return self.stats
                if self.stats.answered + self.stats.errors > answered:
                    tries = 0  # the connection worked: a new run of tries
                if broken.code not in RETRY_CODES or self._stopping.is_set() or tries >= self.options.reconnect:
                    raise broken
                ws, tries = await self._reconnect(broken, tries)
        finally:
            self.stats.duration_s = time.perf_counter() - t0
            self.stats.unanswered = len(self.inflight)

    async def _session(self, ws: ClientConnection) -> StreamFailed | None:
        """Stream on one connection until the source ends (None) or the connection breaks (the failure)."""
        self._closed = asyncio.Event()
        self.inflight.clear()
        self._seq = 0
        replica = ws.response.headers.get("x-pkdot-replica") if ws.response is not None else None
        if replica:
            self.stats.replicas.append(replica)
        receiver = asyncio.create_task(self._receive(ws))
        server_closed = False  # the server (or the network) closed the connection before this side did
        try:
            if self.options.calibrate and not self.stats.reconnects:
                await ws.send(json.dumps({"type": "calibrate", "seconds": self.options.calibrate}))
            await self._send_frames(ws)
            await self._wait(lambda: not self.inflight)
        except (ConnectionClosed, _Closed):
            server_closed = True
        finally:
            server_closed = server_closed or self._closed.is_set()
            await ws.close(1000, "end of stream")
            with contextlib.suppress(TimeoutError):  # wait_for cancels the receiver then
                await asyncio.wait_for(receiver, timeout=self.options.timeout)
        return self._closed_by_server(ws) if server_closed else None

    async def _reconnect(self, broken: StreamFailed, tries: int) -> tuple[ClientConnection, int]:
        """A new connection after `broken`, with backoff; the frames in flight on the old one are lost."""
        self.stats.lost += len(self.inflight)
        self.inflight.clear()
        while True:
            delay = BACKOFF_S[min(tries, len(BACKOFF_S) - 1)]
            tries += 1
            self.on_message({"type": "reconnecting", "attempt": tries, "delay_s": delay, "reason": broken.message},
                            None)
            await self._sleep(delay)
            if self._stopping.is_set():
                raise broken
            try:
                ws = await self._connect()
            except StreamFailed as exc:
                if exc.kind != "unreachable" or tries >= self.options.reconnect:
                    raise StreamFailed(broken.kind, f"{broken.message}; {tries} reconnect tries failed, the last: "
                                                    f"{exc.message}", broken.code) from None
                continue
            self.stats.reconnects += 1
            self.on_message({"type": "reconnected", "attempt": tries,
                             "replica": ws.response.headers.get("x-pkdot-replica") if ws.response else None}, None)
            return ws, tries

    async def _connect(self) -> ClientConnection:
        o = self.options
        headers = {"X-API-Key": o.api_key} if o.api_key else None
        try:
            return await connect(o.url, compression=None, max_size=MAX_MESSAGE, open_timeout=o.open_timeout,
                                 additional_headers=headers, close_timeout=5)
        except InvalidURI as exc:
            raise StreamFailed("usage", f"invalid server URL {o.url!r}: {exc}") from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise StreamFailed("unreachable", f"{o.url} answered HTTP {status} instead of a WebSocket "
                                              "(is this a PKDOT server, and the URL its /ws/stream?)") from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            why = "no answer in time" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            raise StreamFailed("unreachable", f"cannot reach the server at {o.url}: {why}") from None

    @staticmethod
    def _closed_by_server(ws: ClientConnection) -> StreamFailed:
        code, reason = ws.close_code, ws.close_reason or "no reason given"  # the server's close frame; 1006: none
        if code is None or code == 1006:
            return StreamFailed("lost", "the connection to the server was lost (closed without a close frame)", 1006)
        if code in REFUSALS:
            return StreamFailed("refused", f"the server refused the stream ({code} {REFUSALS[code]}): {reason}", code)
        return StreamFailed("lost", f"the server closed the stream ({code}): {reason}", code)

    # -- sending -----------------------------------------------------------------------------------------------------

    async def _send_frames(self, ws: ClientConnection) -> None:
        o, stats = self.options, self.stats
        period = 1.0 / o.fps if o.fps else 0.0
        due = 0.0  # source time at which the next frame is to be sent
        started = time.monotonic()
        live = self.source.live or o.realtime  # frames come at their own pace: a full window skips them
        while not self._stopping.is_set() and not self._closed.is_set():
            if o.max_frames is not None and stats.sent >= o.max_frames:
                return
            if o.duration is not None and time.monotonic() - started >= o.duration:
                return
            frame = await asyncio.to_thread(self.source.read)
            if frame is None:
                return
            stats.frames_read += 1
            if frame.t < due - 1e-6:
                continue  # between two sampling instants of --fps
            due = due + period if frame.t - due < period else frame.t + period
            if o.realtime and not self.source.live:  # play the file at its own speed
                await self._sleep(started + frame.t - time.monotonic())
            if len(self.inflight) >= o.window:
                if live:
                    stats.skipped += 1
                    continue
                await self._wait(lambda: len(self.inflight) < o.window)
            data = await asyncio.to_thread(encode_jpeg, frame.bgr, o.max_width, o.quality)
            if not self.inflight:
                self._last_answer = time.monotonic()  # the answer timeout counts from here
            seq = self._seq
            self.inflight[seq] = time.perf_counter()  # before sending: the answer may come at once
            try:
                await ws.send(data)
            except ConnectionClosed:
                del self.inflight[seq]  # not sent
                raise
            self._seq += 1
            stats.sent += 1

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _wait(self, done: Callable[[], bool]) -> None:
        """Until `done()`; fails when frames in flight get no answer for `timeout` seconds."""
        while not done():
            if self._closed.is_set():
                raise _Closed
            remaining = self.options.timeout - (time.monotonic() - self._last_answer)
            if remaining <= 0:
                raise StreamFailed("lost", f"the server sent no answer for {self.options.timeout:g} s "
                                           f"({len(self.inflight)} frame(s) in flight)")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    # -- receiving ---------------------------------------------------------------------------------------------------

    async def _receive(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    continue
                try:
                    msg = json.loads(message)
                except json.JSONDecodeError:
                    continue
                if isinstance(msg, dict):
                    self._answer(msg)
                    self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self._closed.set()
            self._changed.set()

    def _answer(self, msg: dict) -> None:
        now = time.perf_counter()
        stats, seq, latency = self.stats, msg.get("seq"), None
        if msg.get("type") in ("result", "error") and isinstance(seq, int):
            self._last_answer = time.monotonic()
            sent_at = self.inflight.get(seq)
            for s in [s for s in self.inflight if s <= seq]:
                if s < seq:  # answers come in order: an earlier frame still waiting was dropped
                    stats.dropped += 1
                del self.inflight[s]
            if sent_at is not None:
                latency = (now - sent_at) * 1000.0
            if msg["type"] == "result":
                stats.answered += 1
                stats.faces += bool(msg.get("face_detected"))
                stats.server_dropped = int(msg.get("dropped") or 0)
                if latency is not None:
                    stats.latencies_ms.append(latency)
            else:
                stats.errors += 1
        self.on_message(msg, latency)
