"""Autoscaling on the load that matters for this service: open streams and frames waiting, per replica.

Every replica reports `ServiceContext.load()` to Serve (`record_autoscaling_stats`): its open WebSocket streams
and the frames waiting for it (a stream's slot holding a frame, rows queued at its batchers). Serve averages each
over `look_back_period_s` per replica and calls `StreamLoadPolicy`, which asks for as many replicas as the larger
of the two loads needs:

    wanted = max(ceil(sum(streams) / target_streams), ceil(sum(queued_frames) / target_queued_frames))

clamped to [min_replicas, max_replicas] (Serve narrows those to what the cluster can place). More replicas are
asked for at once; fewer only once `downscale_delay_s` has passed with every decision lower, so that a stream
ending does not take a replica away from the others. Before the first report, Serve's own count of ongoing
requests (a WebSocket is one long request) stands in for the streams.

This module is sent to Serve's controller by value (cloudpickle): it imports only the standard library.
"""

from __future__ import annotations

import math
from typing import Any


def wanted_replicas(streams: float, queued_frames: float, target_streams: float, target_queued_frames: float) -> int:
    """Replicas the load needs (at least one)."""
    return max(1, math.ceil(streams / target_streams - 1e-9), math.ceil(queued_frames / target_queued_frames - 1e-9))


class StreamLoadPolicy:
    """A Serve autoscaling policy (policy_function of the deployment's autoscaling_config)."""

    def __init__(self, target_streams: float = 8.0, target_queued_frames: float = 2.0) -> None:
        self.target_streams, self.target_queued_frames = target_streams, target_queued_frames

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        """ctx: ray.serve.config.AutoscalingContext. Returns (replicas, the policy's state for the next call)."""
        metrics = ctx.aggregated_metrics or {}
        streams = metrics.get("streams")
        if streams is None:  # no replica has reported yet
            total_streams, total_queued = float(ctx.total_num_requests or 0.0), 0.0
        else:
            total_streams = sum(streams.values())
            total_queued = sum((metrics.get("queued_frames") or {}).values())
        wanted = wanted_replicas(total_streams, total_queued, self.target_streams, self.target_queued_frames)
        wanted = min(max(wanted, ctx.capacity_adjusted_min_replicas), ctx.capacity_adjusted_max_replicas)
        state = dict(ctx.policy_state or {})
        current = ctx.target_num_replicas
        now = ctx.current_time
        if wanted >= current or now is None:
            state.pop("lower_since", None)
            return wanted, state
        since = state.setdefault("lower_since", now)
        delay = getattr(ctx.config, "downscale_delay_s", 0.0) if ctx.config is not None else 0.0
        return (wanted, {}) if now - since >= delay else (current, state)
