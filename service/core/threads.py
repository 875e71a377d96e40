"""Blocking work off the event loop (STYLE.md principle 9), keeping the request's or stream's log context."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

T = TypeVar("T")


async def run_blocking(pool: Executor, fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)` in `pool`, awaited; the context variables (request id, stream id) go with it."""
    ctx = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(ctx.run, fn, *args))
