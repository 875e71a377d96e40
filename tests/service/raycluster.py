"""A real local Ray cluster for the cluster tests: two Ray nodes on this machine (`ray start --head` and `ray start
--address`, one logical CPU each), and `pkdot serve --cluster` deploying the service on them with two replicas.

Everything runs as its own process, started here and stopped here by its process id: `ray start --block` stays
in the foreground and stops the node's processes when it gets SIGTERM (never `ray stop`, which would stop every
Ray on the machine). The cluster gets its own temporary directory, token, and free ports (GCS, agents, metrics,
Serve's HAProxy and replica ports), so it can run beside another Ray on the same machine.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).parent / "ray"

# replica id (the X-PKDOT-Replica header) -> process id and node, read from the GCS's actor table
_REPLICAS = """
import json, ray
from ray._private import state
ray.init(address={address!r}, log_to_driver=False, configure_logging=False)
out = {{a["Name"].rsplit("#", 1)[1]: {{"pid": a["Pid"], "node": a["Address"]["NodeID"]}}
       for a in state.actors().values() if a["State"] == "ALIVE" and a["Name"].startswith("SERVE_REPLICA::pkdot#")}}
print(json.dumps(out))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayCluster:
    """Two Ray nodes and the service deployed on them; `url` is the HTTP ingress."""

    def __init__(self, models_dir: Path, replicas: int = 2, max_replicas: int | None = None,
                 flags: tuple[str, ...] = ()) -> None:
        self.models_dir, self.replicas, self.flags = models_dir, replicas, flags
        self.max_replicas = max_replicas or replicas
        self.tmp = Path(tempfile.mkdtemp(prefix="pkr", dir="/tmp"))  # short: Unix socket paths have a limit
        self.gcs_port, self.http_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.gcs_port}"
        self.url = f"http://127.0.0.1:{self.http_port}"
        first = random.randrange(20000, 29000, 100)  # replica ports: clear of another cluster's default 30000
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
                    "RAY_USAGE_STATS_ENABLED": "0", "RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_worker_niceness": "0",
                    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
                    "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(first),
                    "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(first + 100),
                    "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(first + 100),
                    "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(first + 200),
                    "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
                    "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
                    "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(self.tmp / "haproxy" / "haproxy.cfg"),
                    "RAY_SERVE_HAPROXY_SOCKET_PATH": str(self.tmp / "haproxy" / "admin.sock"),
                    "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(self.tmp / "haproxy"),
                    "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(self.tmp / "haproxy" / "server-state"),
                    "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(self.tmp / "haproxy" / "metrics.sock"),
                    "PYTHONUNBUFFERED": "1"}
        self.procs: list[subprocess.Popen] = []
        self.serve: subprocess.Popen | None = None
        self.log = self.tmp / "pkdot-serve.log"

    def _node(self, *args: str, name: str) -> None:
        ports = ["--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
                 "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port())]
        log = (self.tmp / f"{name}.log").open("w")
        self.procs.append(subprocess.Popen([str(RAY), "start", *args, "--num-cpus", "1", *ports, "--block"],
                                           env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))

    def start(self, timeout: float = 240.0) -> RayCluster:
        self._node("--head", "--port", str(self.gcs_port), "--include-dashboard=false", "--temp-dir",
                   str(self.tmp / "ray"), "--ray-client-server-port", str(free_port()), name="head")
        self._wait_for_nodes(1, 90.0)
        self._node("--address", self.address, name="worker")
        self._wait_for_nodes(2, 90.0)
        log = self.log.open("w")
        self.serve = subprocess.Popen(
            [sys.executable, "-m", "pkdot", "serve", "--cluster", self.address, "--host", "127.0.0.1", "--port",
             str(self.http_port), "--models-dir", str(self.models_dir), "--min-replicas", str(self.replicas),
             "--max-replicas", str(self.max_replicas), "--log-format", "text", "--log-level", "warning", *self.flags],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.serve.poll() is not None:
                raise RuntimeError(f"pkdot serve --cluster exited with {self.serve.returncode}:\n"
                                   f"{self.log.read_text()[-3000:]}")
            if self.status("/readyz") == 200 and len(self.replica_processes()) == self.replicas:
                return self
            time.sleep(2.0)
        raise RuntimeError(f"the cluster application was not ready in {timeout:g} s:\n{self.log.read_text()[-3000:]}")

    def _wait_for_nodes(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = subprocess.run([str(RAY), "status", "--address", self.address], env=self.env,
                                  capture_output=True, text=True, timeout=60)
            if done.returncode == 0 and done.stdout.count("node_") >= n:
                return
            time.sleep(2.0)
        raise RuntimeError(f"{n} Ray node(s) did not come up in {timeout:g} s (logs in {self.tmp})")

    def status(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    def replica_processes(self) -> dict[str, dict]:
        """{replica id: {"pid", "node"}} of the live replicas."""
        done = subprocess.run([sys.executable, "-c", _REPLICAS.format(address=self.address)], env=self.env,
                              capture_output=True, text=True, timeout=120, cwd=self.tmp)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if done.returncode == 0 and lines else {}

    def kill_replica(self, replica: str) -> int:
        """SIGKILL the replica's process (a crash: nothing in it runs afterwards). Its process id."""
        pid = self.replica_processes()[replica]["pid"]
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self) -> None:
        """The deploying process, then both nodes at once (`ray start --block` stops its node's processes on
        SIGTERM; the env sets Ray's drain on SIGTERM to 0 s and no test here needs Serve's graceful delete)."""
        if self.serve is not None and self.serve.poll() is None:
            self.serve.kill()
            self.serve.wait(timeout=10)
        alive = [p for p in self.procs if p.poll() is None]
        for proc in alive:
            proc.terminate()
        for proc in alive:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)
