"""A Docker engine for the tests: the one already running, or a `dockerd` started here and stopped by its PID.

Where no engine runs, the tests start one as root with its own data root, exec root and socket under a temporary
directory (the machine's own Docker setup, if any, is left alone), after installing `docker.io` from Debian when it
is missing. The base image the images build on is a Debian bookworm made with `debootstrap` and `docker import`ed,
so no registry is needed; its root filesystem is cached as a tarball under ~/.cache/pkdot/docker (PKDOT_CACHE_DIR
moves it) and only the first run on a machine pays for it. Anything that makes an engine impossible here raises
`Unavailable`, which the tests report as a skip with its reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("pkdot.docker")

# executable -> the Debian package that provides it
DEBIAN_PACKAGES = {"dockerd": "docker.io", "docker": "docker.io", "docker-compose": "docker-compose",
                   "debootstrap": "debootstrap"}
BASE_IMAGE = "pkdot-base:bookworm"
BASE_TARBALL = "debian-bookworm-minbase-v1.tar"  # bump the suffix to rebuild every machine's cached root filesystem
DEBIAN_MIRROR = os.environ.get("PKDOT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
LOCK_FILE = Path(tempfile.gettempdir()) / "pkdot-docker-tests.lock"


class Unavailable(Exception):
    """No Docker engine can run here; the message says why."""


def cache_dir() -> Path:
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = Path(os.environ.get("PKDOT_CACHE_DIR") or xdg / "pkdot") / "docker"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def ensure_tools(*executables: str) -> None:
    """Install the Debian packages of the missing executables (as root, with apt-get), or raise Unavailable."""
    missing = [e for e in executables if shutil.which(e) is None]
    if not missing:
        return
    packages = sorted({DEBIAN_PACKAGES[e] for e in missing})
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Unavailable(f"{', '.join(missing)} missing and cannot be installed here (apt-get as root): "
                          f"install the Debian package(s) {', '.join(packages)}")
    log.info("installing %s from Debian (apt-get)", ", ".join(packages))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]):
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode:
            raise Unavailable(f"`{' '.join(args)}` failed: {done.stderr.strip()[-500:]}")
    still = [e for e in executables if shutil.which(e) is None]
    if still:
        raise Unavailable(f"{', '.join(still)} still missing after installing {', '.join(packages)}")


def compose_command() -> list[str]:
    """`docker-compose` (v1, Debian's package, installed when missing) or the `docker compose` plugin (v2)."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    ensure_tools("docker-compose")
    return ["docker-compose"]


@contextlib.contextmanager
def machine_lock(wait_s: float = 300.0) -> Iterator[None]:
    """One Docker test session per machine at a time (they would fight over the docker0 bridge and ports)."""
    try:
        f = open(LOCK_FILE, "a+")  # noqa: SIM115  (closed below)
        with contextlib.suppress(PermissionError):
            LOCK_FILE.chmod(0o666)  # any user's session can take it next
    except PermissionError:
        f = open(LOCK_FILE)  # noqa: SIM115  (flock works on a read-only descriptor too)
    with f:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Unavailable(f"another Docker test session holds {LOCK_FILE} since {wait_s:.0f} s") from None
                time.sleep(2)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass
class Engine:
    """How to reach the engine (`env` for docker / docker-compose) and what this session started (to stop it)."""

    env: dict[str, str]
    process: subprocess.Popen | None = None  # the dockerd this session started, if any
    root: Path | None = None  # its data root, exec root, socket and log

    def docker(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode:
            raise RuntimeError(f"docker {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        return done

    def has_image(self, name: str) -> bool:
        return self.docker("image", "inspect", name, check=False).returncode == 0

    def stop(self) -> None:
        """Stop the dockerd this session started: SIGTERM to its PID (it stops its containers and its containerd),
        SIGKILL to its process group after 60 s; then remove its data root."""
        if self.process is None:
            return
        pid, t0 = self.process.pid, time.monotonic()
        log.info("stopping dockerd (pid %d)", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            log.warning("dockerd (pid %d) ignored SIGTERM for 60 s: killing its process group", pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # started with start_new_session: the group is dockerd's own
            self.process.wait(timeout=30)
        self.process = None
        if self.root is not None:
            subprocess.run(["umount", "-R", str(self.root / "data")], capture_output=True)  # leftovers, if any
            shutil.rmtree(self.root, ignore_errors=True)
        log.info("dockerd stopped and its files removed in %.0f s", time.monotonic() - t0)


def _responds(env: dict[str, str]) -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], env=env, capture_output=True,
                          text=True, timeout=30)
    return done.returncode == 0 and bool(done.stdout.strip())


def start_engine() -> Engine:
    """The running engine (DOCKER_HOST or the default socket), else a dockerd started here as root."""
    env = dict(os.environ)
    if _responds(env):
        log.info("using the running Docker engine (%s)", env.get("DOCKER_HOST", "default socket"))
        return Engine(env=env)
    if os.geteuid() != 0:
        raise Unavailable("no Docker engine runs and starting dockerd needs root")
    ensure_tools("dockerd", "docker")
    root = Path(tempfile.mkdtemp(prefix="pkdot-dockerd-"))
    socket = root / "docker.sock"
    logfile = root / "dockerd.log"
    # PKDOT_DOCKER_DATA_ROOT keeps images and build cache between runs (a developer's choice; never removed here)
    data_root = Path(os.environ.get("PKDOT_DOCKER_DATA_ROOT") or root / "data")
    args = ["dockerd", "--data-root", str(data_root), "--exec-root", str(root / "exec"),
            "--pidfile", str(root / "dockerd.pid"), "--host", f"unix://{socket}"]
    log.info("starting dockerd with its data root in %s", data_root)
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    engine = Engine(env={**env, "DOCKER_HOST": f"unix://{socket}"}, process=proc, root=root)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            engine.stop()
            raise Unavailable(f"dockerd exited with {proc.returncode}:\n{_tail(logfile)}")
        if socket.exists() and _responds(engine.env):
            log.info("dockerd is up (pid %d)", proc.pid)
            return engine
        time.sleep(1)
    reason = f"dockerd did not answer within 90 s:\n{_tail(logfile)}"
    engine.stop()
    raise Unavailable(reason)


def debian_base(engine: Engine) -> str:
    """A Debian bookworm base image (`debootstrap --variant=minbase` + `docker import`), from the cache if there."""
    if engine.has_image(BASE_IMAGE):
        return BASE_IMAGE
    tarball = cache_dir() / BASE_TARBALL
    if not tarball.exists():
        if os.geteuid() != 0:
            raise Unavailable("building the Debian base image with debootstrap needs root")
        ensure_tools("debootstrap")
        t0 = time.monotonic()
        log.info("debootstrap: Debian bookworm (minbase) from %s; cached as %s afterwards", DEBIAN_MIRROR, tarball)
        with tempfile.TemporaryDirectory(prefix="pkdot-rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            done = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR],
                                  capture_output=True, text=True, timeout=900)
            if done.returncode:
                raise RuntimeError(f"debootstrap failed: {(done.stdout + done.stderr).strip()[-2000:]}")
            (rootfs / "etc/apt/sources.list").write_text(
                f"deb {DEBIAN_MIRROR} bookworm main\ndeb {DEBIAN_MIRROR} bookworm-updates main\n"
                "deb http://deb.debian.org/debian-security bookworm-security main\n")
            for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for p in (rootfs / cache).glob("*"):
                    if p.is_file():
                        p.unlink()
            partial = tarball.with_suffix(".partial")
            subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=600)
            partial.rename(tarball)
        log.info("debootstrap done in %.0f s (%.0f MB)", time.monotonic() - t0, tarball.stat().st_size / 1e6)
    log.info("docker import %s as %s", tarball, BASE_IMAGE)
    engine.docker("import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                  "--change", 'CMD ["bash"]', str(tarball), BASE_IMAGE)
    return BASE_IMAGE
