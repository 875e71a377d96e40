"""The Ray Serve ingress deployment: every replica runs the whole service, `service.app.create_app(settings)`.

One deployment, `pkdot`: Serve's HTTP ingress (its proxies, or HAProxy with `RAY_SERVE_ENABLE_HA_PROXY=1`) hands
each HTTP request and each WebSocket connection to a replica, so REST, `/ws/stream`, `/predict/teacher`, `/demo`
and `/metrics` are the same routes as in one `pkdot serve` process, and a stream lives on one replica for its whole
connection. A replica is one Ray actor placed by Serve on a node with `replica_num_cpus` / `replica_num_gpus` free
(GPU replicas go to GPU nodes); inside it the app's lifespan loads the models, face detectors and thread pools
once, and its micro-batchers batch the rows of every stream and request the replica holds (see docs/cluster.md
for why these batchers and not `@serve.batch`).

Autoscaling is `service.cluster.autoscaling` on what each replica reports here (`record_autoscaling_stats`).
When a replica dies, Serve closes its connections and starts another; the clients reconnect (docs/cluster.md).
Every response carries `X-PKDOT-Replica`, the Serve replica id that answered (no host name, no process id).
"""

from __future__ import annotations

import logging
from typing import Any

from service.core.config import Settings

log = logging.getLogger(__name__)

DEPLOYMENT = "pkdot"
APP_NAME = "pkdot"
REST_HEADROOM = 16  # REST requests a replica takes beside its max_streams streams
REPLICA_HEADER = b"x-pkdot-replica"


class ClusterUnavailable(Exception):
    """Ray Serve is not installed, or the cluster cannot be reached."""


MISSING = "a cluster needs Ray Serve (the cluster extra): pip install -c constraints.txt -e '.[serve,cluster]'"


def _serve() -> Any:
    """`ray.serve`, or ClusterUnavailable saying which extra installs it."""
    try:
        from ray import serve
    except ImportError:
        raise ClusterUnavailable(MISSING) from None
    return serve


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterUnavailable(MISSING) from None
    return ray


def settings_payload(settings: Settings) -> dict[str, Any]:
    """The settings a replica builds its app from: every field, the API key in clear (Ray passes it to the
    replicas, never to a log), the models folder absolute (each node must have it at that path)."""
    payload = settings.model_dump(mode="json")
    payload["api_key"] = settings.api_key.get_secret_value() if settings.api_key else None
    payload["models_dir"] = str(settings.models_dir.resolve())
    return payload


class ReplicaHeader:
    """ASGI middleware: `X-PKDOT-Replica: <replica id>` on every HTTP response and WebSocket accept."""

    def __init__(self, app: Any, replica: str) -> None:
        self.app, self.value = app, replica.encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: dict) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message = {**message, "headers": [*message.get("headers", []), (REPLICA_HEADER, self.value)]}
            await send(message)

        await self.app(scope, receive, send_with_header)


def replica_settings(settings: Settings) -> Settings:
    """A replica's settings: the thread counts left on auto (0: one per core of the machine) become the CPUs Ray
    reserved for the replica, so that replicas sharing a node do not each start a thread per core."""
    cpus = max(1, round(settings.replica_num_cpus))
    auto = {k: cpus for k in ("ort_intra_op_threads", "preprocess_threads") if getattr(settings, k) == 0}
    return settings.model_copy(update=auto)


class PKDOTReplica:
    """One replica: the service app built from the settings, its load reported to the autoscaler."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self._settings = settings
        self._app: Any = None

    def __serve_build_asgi_app__(self) -> Any:
        from service.app import create_app
        from service.core.logging import configure_logging

        settings = replica_settings(Settings(**self._settings))
        configure_logging(settings.log_level, settings.log_format)
        self._app = create_app(settings)
        replica = _serve().get_replica_context().replica_id.unique_id
        return ReplicaHeader(self._app, replica)

    async def record_autoscaling_stats(self) -> dict[str, float]:
        ctx = self._app.state.ctx if self._app is not None else None
        return ctx.load() if ctx is not None else {"streams": 0.0, "queued_frames": 0.0}

    async def check_health(self) -> None:
        """Serve restarts a replica whose check raises: here, one whose app has no loaded context."""
        if self._app is None or self._app.state.ctx is None:
            raise RuntimeError("the service app is not running in this replica")


def deployment_options(settings: Settings) -> dict[str, Any]:
    """Serve options of the deployment, from the settings."""
    from service.cluster.autoscaling import StreamLoadPolicy

    s = settings
    policy = {"policy_function": f"{StreamLoadPolicy.__module__}:{StreamLoadPolicy.__name__}",
              "policy_kwargs": {"target_streams": s.target_streams, "target_queued_frames": s.target_queued_frames}}
    return {
        "name": DEPLOYMENT,
        "ray_actor_options": {"num_cpus": s.replica_num_cpus, "num_gpus": s.replica_num_gpus},
        "max_ongoing_requests": s.max_streams + REST_HEADROOM,  # a stream is one long request
        "autoscaling_config": {"min_replicas": s.min_replicas, "max_replicas": s.max_replicas,
                               "initial_replicas": s.min_replicas, "target_ongoing_requests": s.target_streams,
                               "upscale_delay_s": 5.0, "downscale_delay_s": 60.0, "look_back_period_s": 15.0,
                               "policy": policy},
        "health_check_period_s": 2.0,
        "health_check_timeout_s": 10.0,
        "graceful_shutdown_timeout_s": s.shutdown_timeout_s + 5.0,  # the lifespan closes streams with 1001 first
    }


def build_application(settings: Settings) -> Any:
    """The Serve application (`serve.run(build_application(settings))`)."""
    serve = _serve()
    ingress = serve.deployment(serve.ingress(None)(PKDOTReplica), **deployment_options(settings))
    return ingress.bind(settings_payload(settings))


def app_builder(args: dict[str, Any]) -> Any:
    """`serve deploy deploy/serve.yaml`: the application from the config file's `args` (settings fields; the
    nodes' PKDOT_* environment fills in the rest)."""
    return build_application(Settings(**(args or {})))
