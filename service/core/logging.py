"""Structured logs: one JSON object per line, with the request or stream id of the work that wrote it.

Logs never hold frame, image or signal bytes: callers log sizes, counts and timings only.
"""

from __future__ import annotations

import json
import logging
import re
import time
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
stream_id: ContextVar[str | None] = ContextVar("stream_id", default=None)

# attributes every LogRecord has; anything else was passed through `extra=` and is logged as a field
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName",
                                                                                 "color_message"}  # uvicorn's ANSI copy


class ContextFilter(logging.Filter):
    """Adds `request_id` / `stream_id` from the context of the coroutine that logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        if not hasattr(record, "stream_id"):
            record.stream_id = stream_id.get()
        return True


class SecretsFilter(logging.Filter):
    """Keeps API keys and frame bytes out of the log, whatever the level.

    - At log level debug, `websockets` (through uvicorn's `uvicorn.error` logger) dumps the wire: every handshake
      header as "< name: value" (X-API-Key among them) and every frame as "< BINARY ff d8 ff ... [n bytes]" (the first
      and last bytes of every frame). Those records are dropped; its other debug lines (state, errors) are kept.
    - At level info, uvicorn logs each WebSocket handshake with its query string, where a client may have put
      `?api_key=...`: the value is replaced by `***` in every record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        wire = record.levelno <= logging.DEBUG and record.name.startswith(("uvicorn", "websockets"))
        if wire and isinstance(record.msg, str) and record.msg.startswith(("< ", "> ")):
            return False
        if isinstance(record.msg, str) and _API_KEY.search(record.msg):
            record.msg = _API_KEY.sub(r"\1***", record.msg)
        if isinstance(record.args, tuple) and any(isinstance(a, str) and _API_KEY.search(a) for a in record.args):
            record.args = tuple(_API_KEY.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        return True


_API_KEY = re.compile(r"(api(?:_|%5f)key=)[^&\s\"']*", re.IGNORECASE)  # also percent-encoded, as Starlette decodes it


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and value is not None:
                entry[key] = value if isinstance(value, str | int | float | bool | list | dict) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and v is not None}
        return line + ("  " + " ".join(f"{k}={v}" for k, v in extras.items()) if extras else "")


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Route the service's and uvicorn's loggers to one stderr handler in the chosen format."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(SecretsFilter())
    root = logging.getLogger()
    for h in list(root.handlers):  # ours from an earlier call, and console handlers (the CLI's basicConfig) that
        if getattr(h, "_pkdot", False) or type(h) is logging.StreamHandler:  # would print every line a second time
            root.removeHandler(h)
    handler._pkdot = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # the service logs one line per request itself
