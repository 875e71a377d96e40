"""`pkdot serve --cluster [ADDRESS]`: deploy the service on a Ray cluster and keep it there while this runs.

    --cluster              an embedded single-node Ray started by this process (like `ray start --head`), to try it
    --cluster auto         the cluster `ray start` made on this machine
    --cluster HOST:PORT    the cluster whose head's GCS listens there (`ray start --head --port PORT`)

The application is deployed with `serve.run` under the name `pkdot`, its HTTP ingress on `--host`/`--port`; the
command returns when it is interrupted (Ctrl-C or SIGTERM), after deleting the application (its replicas close
their streams with 1001 first). `serve deploy deploy/serve.yaml` deploys the same application without a
foreground process. Exit status: 0 stopped, 2 bad settings or no cluster extra, 3 the cluster cannot be reached
or the application does not start.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading

from service.cluster.deployment import APP_NAME, ClusterUnavailable, _ray, _serve, build_application
from service.core.config import Settings

log = logging.getLogger(__name__)

LOCAL = "local"
HAPROXY_FLAG = "RAY_SERVE_ENABLE_HA_PROXY"
NICENESS = "RAY_worker_niceness"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connect(address: str) -> None:
    ray = _ray()
    if address == LOCAL:
        # Serve's HAProxy ingress (WebSockets go straight to a replica); the embedded cluster inherits this, and
        # HAProxy's own stats and metrics listeners take free ports, clear of another Ray on the machine
        os.environ.setdefault(HAPROXY_FLAG, "1")
        os.environ.setdefault(NICENESS, "0")  # Ray runs workers at nice 15: the replicas are the service here
        for name in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT"):
            os.environ.setdefault(name, str(_free_port()))
        ray.init(address="local", include_dashboard=False, configure_logging=False, log_to_driver=False)
        return
    if address != "auto":  # Ray would retry an unreachable head for minutes: look first
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=5.0).close()
        except (OSError, ValueError) as exc:
            raise ClusterUnavailable(f"no Ray head answers at {address} ({exc}); start one with `ray start --head "
                                     "--port PORT`, or use --cluster alone for an embedded one") from None
    try:
        ray.init(address=address, configure_logging=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterUnavailable(f"cannot reach the Ray cluster at {address}: {exc}") from None


def run_cluster(settings: Settings, address: str) -> int:
    """Deploy, wait for a signal, delete. Blocking."""
    try:
        serve = _serve()
    except ClusterUnavailable as exc:  # the cluster extra is not installed
        print(f"pkdot serve: error: {exc}", file=sys.stderr)
        return 2
    try:
        _connect(address)
    except ClusterUnavailable as exc:
        print(f"pkdot serve: error: {exc}", file=sys.stderr)
        return 3
    ray = _ray()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(build_application(settings), name=APP_NAME, route_prefix="/", blocking=False)
    except Exception as exc:  # a replica that cannot start (a broken model folder ...) fails the deployment
        print(f"pkdot serve: error: the application did not start on the cluster: {exc}", file=sys.stderr)
        ray.shutdown()
        return 3
    log.info("cluster application ready", extra={"address": address, "url": f"http://{settings.host}:{settings.port}",
                                                 "min_replicas": settings.min_replicas,
                                                 "max_replicas": settings.max_replicas})
    try:
        stop.wait()
    finally:
        log.info("deleting the cluster application")
        serve.delete(APP_NAME)
        if address == LOCAL:
            serve.shutdown()
        ray.shutdown()
    return 0
