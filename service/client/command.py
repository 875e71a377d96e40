"""Stream a webcam or a video file to a PKDOT server and print the results live (`pkdot stream`).

A broken connection (a cluster replica that died, a server restarting) is reconnected with backoff
(--reconnect). Exit status: 0 the stream ended (end of the file, --max-frames, --duration or Ctrl-C); 2 bad arguments
or a source that cannot be read; 3 the server cannot be reached; 4 the server refused the stream (API key, unknown
task or model, server full); 5 the stream broke off (connection lost, server shutting down, or no answer for
--timeout s), and reconnecting did not help.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

EXIT = {"usage": 2, "source": 2, "unreachable": 3, "refused": 4, "lost": 5}
SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}
CAMERA_FPS = 10.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = ("exit status: 0 the stream ended (end of file, --max-frames, --duration, Ctrl-C); 2 bad arguments or "
                "an unreadable source; 3 server unreachable; 4 stream refused (API key, task, model, server full); "
                "5 stream broken off (connection lost, server shutting down, no answer for --timeout s)")
    p.add_argument("source", nargs="?", default="0",
                   help="a webcam's OpenCV device index (default 0) or a video file")
    p.add_argument("--url", default=os.environ.get("PKDOT_URL", "ws://127.0.0.1:8000"),
                   help="the server (default ws://127.0.0.1:8000 or $PKDOT_URL; http:// and https:// work too)")
    p.add_argument("--task", choices=["pain", "affect"], default="pain", help="default pain")
    p.add_argument("--model", help="a loaded model's name (default: the server's default for the task)")
    p.add_argument("--api-key", default=os.environ.get("PKDOT_API_KEY"),
                   help="the server's API key, if it has one (default $PKDOT_API_KEY); sent as a header")
    p.add_argument("--fps", type=_positive(float), help=f"frames sent per second (default: every frame of a file, "
                                                        f"{CAMERA_FPS:g} for a camera)")
    p.add_argument("--window", type=_positive(int), default=1,
                   help="frames sent and not yet answered, at most (default 1: wait for each answer)")
    p.add_argument("--fast", action="store_true",
                   help="a file: send each frame as soon as the window allows, not at the video's own speed")
    p.add_argument("--max-frames", type=_positive(int), help="stop after sending this many frames")
    p.add_argument("--duration", type=_positive(float), help="stop after this many seconds")
    p.add_argument("--width", type=_positive(int), default=640, help="scale frames down to this width (default 640)")
    p.add_argument("--quality", type=int, choices=range(1, 101), metavar="1-100", default=85,
                   help="JPEG quality (default 85)")
    p.add_argument("--calibrate", type=_positive(float), metavar="SECONDS",
                   help="take the first SECONDS as the person's neutral baseline; results then show the change")
    p.add_argument("--timeout", type=_positive(float), default=10.0,
                   help="give up when frames get no answer for this many seconds (default 10)")
    p.add_argument("--reconnect", type=int, default=5, metavar="N",
                   help="when the connection breaks (a cluster replica died, the server restarted), reconnect with "
                        "backoff up to N tries in a row (default 5; 0: never)")
    p.add_argument("--json", action="store_true",
                   help="print every server message as one JSON line (with latency_ms), then a summary line")


def _positive(kind: type) -> object:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def stream_url(base: str, task: str, model: str | None, fps: float | None = None) -> str:
    """`ws://host:port` (or http://...) -> the stream URL with its task (and model, and the rate frames are sent at)
    query."""
    parts = urlsplit(base if "://" in base else f"ws://{base}")
    scheme = SCHEMES.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"invalid server URL {base!r}: use ws://HOST:PORT (or wss://, http://, https://)")
    path = parts.path if parts.path not in ("", "/") else "/ws/stream"
    query = {**dict(parse_qsl(parts.query)), "task": task, **({"model": model} if model else {}),
             **({"fps": f"{fps:g}"} if fps else {})}
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


class Printer:
    """Live output: one updating line on a terminal, a table row per result otherwise, or JSON lines."""

    def __init__(self, task: str, as_json: bool, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.task, self.json = task, as_json
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.tty = self.out.isatty() and not as_json
        self.header_done = False
        self.line_open = False

    def message(self, msg: dict, latency_ms: float | None) -> None:
        if self.json:
            self.out.write(json.dumps({**msg, "latency_ms": None if latency_ms is None else round(latency_ms, 2)})
                           + "\n")
            self.out.flush()
            return
        kind = msg.get("type")
        if kind == "result":
            self._result(msg, latency_ms)
        elif kind == "error":
            where = f"frame {msg['seq']}" if "seq" in msg else "server"
            self._note(f"{where}: {msg.get('error', {}).get('message', 'error')}")
        elif kind == "calibrating":
            self._note(f"calibrating for {msg.get('seconds'):g} s: keep a neutral face")
        elif kind == "reconnecting":
            self._note(f"{msg.get('reason')}; reconnecting in {msg.get('delay_s'):g} s (try {msg.get('attempt')})")
        elif kind == "reconnected":
            where = f" (replica {msg['replica']})" if msg.get("replica") else ""
            self._note(f"reconnected{where}; the window and any baseline start afresh")
        elif kind == "calibrated":
            self._note(f"baseline set from {msg.get('frames')} frames; 'vs base' is the change from it")

    def _note(self, text: str) -> None:
        self._end_line()
        print(f"pkdot stream: {text}", file=self.err, flush=True)

    def _end_line(self) -> None:
        if self.line_open:
            self.out.write("\n")
            self.line_open = False

    def _result(self, msg: dict, latency_ms: float | None) -> None:
        p, rel = msg.get("smoothed"), msg.get("relative")
        face = "face" if msg.get("face_detected") else "-"
        if self.task == "pain":
            cells = ([p["label"], f"{p['probabilities'][p['pain_level']]:.2f}", f"{p['expected_level']:.2f}"]
                     if p else ["-", "-", "-"])
            cells.append(f"{rel['expected_level']:+.2f}" if rel else "")
            columns = [("level", 6), ("p", 5), ("expected", 8), ("vs base", 7)]
        else:
            cells = [f"{p['valence']:+.2f}", f"{p['arousal']:+.2f}"] if p else ["-", "-"]
            cells.append(f"{rel['valence']:+.2f} {rel['arousal']:+.2f}" if rel else "")
            columns = [("valence", 7), ("arousal", 7), ("vs base", 11)]
        latency = "-" if latency_ms is None else f"{latency_ms:.1f}"
        values = [str(msg["seq"]), face, *cells, latency, str(msg.get("dropped", 0))]
        widths = [("seq", 6), ("face", 4), *columns, ("latency_ms", 10), ("dropped", 7)]
        row = " ".join(v.rjust(w) for v, (_, w) in zip(values, widths, strict=True))
        if not self.header_done:
            self.out.write(" ".join(name.rjust(w) for name, w in widths) + "   (smoothed over the window)\n")
            self.header_done = True
        if self.tty:  # one line, rewritten in place
            self.out.write("\r\x1b[2K" + row)
            self.line_open = True
        else:
            self.out.write(row + "\n")
        self.out.flush()

    def summary(self, summary: dict) -> None:
        self._end_line()
        if self.json:
            self.out.write(json.dumps(summary) + "\n")
            self.out.flush()
            return
        s, lat = summary, summary["latency_ms"]
        lines = [f"frames: read {s['frames_read']}, sent {s['sent']}, answered {s['answered']} ({s['faces']} with a "
                 f"face), dropped {s['dropped']}, errors {s['errors']}, unanswered {s['unanswered']}, "
                 f"skipped {s['skipped']}"]
        if s["reconnects"]:
            lines.append(f"reconnects: {s['reconnects']}; {s['lost']} frame(s) in flight on broken connections were "
                         "never answered")
        if lat["p50"] is not None:
            lines.append(f"latency ms: p50 {lat['p50']:.1f}  p95 {lat['p95']:.1f}  p99 {lat['p99']:.1f}  "
                         f"mean {lat['mean']:.1f}  max {lat['max']:.1f}")
        if s["answers_per_s"] is not None:
            lines.append(f"rate: {s['answers_per_s']:.1f} answers/s over {s['duration_s']:.1f} s")
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()


def run(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    import signal

    from service.client.sources import FrameSource, SourceError
    from service.client.streamer import Streamer, StreamFailed, StreamOptions

    def fail(kind: str, message: str) -> int:
        print(f"pkdot stream: error: {message}", file=sys.stderr)
        return EXIT[kind]

    try:
        stream_url(args.url, args.task, args.model)
    except ValueError as exc:
        return fail("usage", str(exc))
    try:
        source = FrameSource(args.source)
    except SourceError as exc:
        return fail("source", str(exc))
    fps = args.fps or (CAMERA_FPS if source.live else None)
    url = stream_url(args.url, args.task, args.model, fps or source.fps)  # the rate the frames are sent at
    options = StreamOptions(url=url, api_key=args.api_key, fps=fps, window=args.window, realtime=not args.fast,
                            max_frames=args.max_frames, duration=args.duration, max_width=args.width,
                            quality=args.quality, timeout=args.timeout, calibrate=args.calibrate,
                            reconnect=max(args.reconnect, 0))
    printer = Printer(args.task, args.json)
    streamer = Streamer(source, options, printer.message)

    no_signals = (NotImplementedError, RuntimeError, ValueError)  # not the main thread, or no signals here

    def first_interrupt() -> None:  # the first Ctrl-C ends the stream gracefully; a second one interrupts
        streamer.stop()
        with contextlib.suppress(*no_signals):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(*no_signals):
            loop.add_signal_handler(signal.SIGINT, first_interrupt)
        try:
            await streamer.run()
        finally:
            with contextlib.suppress(*no_signals):
                loop.remove_signal_handler(signal.SIGINT)

    outcome, code, message = "completed", 0, None
    with source:
        try:
            asyncio.run(main())
        except StreamFailed as exc:
            outcome, code, message = exc.kind, EXIT.get(exc.kind, 1), exc.message
        except SourceError as exc:
            outcome, code, message = "source", EXIT["source"], str(exc)
    summary = {**streamer.stats.summary(), "outcome": outcome}
    if args.json or outcome == "completed" or streamer.stats.sent:
        printer.summary(summary)
    if message:
        print(f"pkdot stream: error: {message}", file=sys.stderr)
    return code
