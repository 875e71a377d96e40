"""The Docker images and the compose file: static checks, and a real smoke test of the CPU stack.

Static: hadolint on every Dockerfile, `docker-compose config` for every profile, and the requirement list that puts
onnxruntime-gpu in place of onnxruntime. Smoke (marker `docker`): a Docker engine (the running one, or dockerd
started here as root, tests/dockerd.py), a Debian bookworm base made with debootstrap, the CPU image built from it
through compose, the stack brought up with compose, then a real face photo through POST /predict/pain and a few
frames through the WebSocket, answers compared with the same service run in this process. Skipped, with the
reason, where no engine can run. Progress goes to the terminal as it happens; logs land in test-artifacts/docker/.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests import dockerd

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILES = sorted((REPO / "docker").glob("*Dockerfile"))
ARTIFACTS = REPO / "test-artifacts" / "docker"
# services each profile adds to the ones without a profile
PROFILES = {"": {"serve"}, "cpu": {"serve-cpu"}, "train": {"train"}, "triton": {"triton"},
            "cluster": {"ray-head", "ray-worker", "serve-cluster"}}
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")  # where Debian keeps the CA certificates added locally
SMOKE_IMAGE = "pkdot-smoke:cpu"
log = logging.getLogger("pkdot.docker")


# -- static checks -----------------------------------------------------------------------------------------------------


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("hadolint is not installed (it comes with the dev extra: pip install -c constraints.txt -e .[dev])")
    return found


def test_every_image_has_a_dockerfile() -> None:
    assert {p.name for p in DOCKERFILES} == {"service.Dockerfile", "train.Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile: Path) -> None:
    done = subprocess.run([_hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_take_their_base_from_an_argument(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.MULTILINE))
    assert froms and all(f == "${BASE_IMAGE}" or f in stages for f in froms), froms
    default = re.search(r"^ARG BASE_IMAGE=(\S+)", text, flags=re.MULTILINE)
    assert default and ":" in default.group(1)  # a real public image, name:tag
    assert "EXTRA_CA_CERTS" in text and "constraints.txt" in text and re.search(r"^USER ", text, flags=re.MULTILINE)


def test_install_scripts_parse() -> None:
    for script in (REPO / "docker/install-base.sh", REPO / "scripts/docker-smoke.sh"):
        done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_requirements_replace_onnxruntime() -> None:
    requirements = _load(REPO / "docker/requirements.py").requirements
    names = {"cpu": "onnxruntime", "gpu": "onnxruntime-gpu"}
    for ort, wanted in names.items():
        reqs = requirements(REPO / "pyproject.toml", ["serve"], ort)
        ort_lines = [r for r in reqs if r.split(">")[0].split("=")[0] in names.values()]
        assert ort_lines == [f"{wanted}>=1.18"], reqs
        assert "mediapipe==0.10.21" in reqs and not any(r.startswith("torch") for r in reqs)
    train = requirements(REPO / "pyproject.toml", ["serve", "train"], "cpu")
    assert "torch==2.13.0" in train and len(train) == len(set(train))
    with pytest.raises(SystemExit, match="unknown extra"):
        requirements(REPO / "pyproject.toml", ["nope"], "cpu")


@pytest.fixture(scope="module")
def compose() -> list[str]:
    try:
        return dockerd.compose_command()
    except dockerd.Unavailable as exc:
        pytest.skip(f"no docker-compose: {exc}")


@pytest.mark.parametrize("profile", list(PROFILES))
def test_compose_config(compose: list[str], profile: str, tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    empty_env = tmp_path / "empty.env"
    empty_env.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PKDOT_", "COMPOSE_"))}
    args = [*compose, "-f", str(COMPOSE_FILE), "--env-file", str(empty_env), *(["--profile", profile] * bool(profile))]
    done = subprocess.run([*args, "config"], capture_output=True, text=True, env=env, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert PROFILES[profile] | PROFILES[""] <= set(services)
    serve = services["serve"]
    assert serve["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert serve["build"]["args"]["ORT"] == "gpu" and "nvidia/cuda" in serve["build"]["args"]["BASE_IMAGE"]
    assert serve["environment"]["PKDOT_REQUIRE_GPU"] == "true"
    ports = [str(p.get("published", p) if isinstance(p, dict) else p) for p in serve["ports"]]
    assert any("8000" in p for p in ports), ports
    mount = serve["volumes"][0]
    assert Path(mount["source"]) == REPO / "models" and mount["target"] == "/models" and mount["read_only"]
    cpu = services["serve-cpu"]
    assert cpu["build"]["args"]["ORT"] == "cpu" and cpu["environment"]["PKDOT_PROVIDERS"] == "cpu"
    assert "devices" not in json.dumps(cpu.get("deploy", {}))
    assert services["train"]["command"] == ["bash", "scripts/make-models.sh"]
    assert services["triton"]["image"].startswith("nvcr.io/nvidia/tritonserver:")
    if profile == "cluster":
        _check_cluster_profile(services)


def _check_cluster_profile(services: dict) -> None:
    """Ray head + one worker + the Serve app, one image with the cluster extra, the models on every node."""
    head, worker, app = services["ray-head"], services["ray-worker"], services["serve-cluster"]
    for s in (head, worker, app):
        assert s["build"]["args"]["EXTRAS"] == "serve,cluster" and s["build"]["args"]["ORT"] == "cpu"
        assert s["environment"]["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and s["environment"]["RAY_AUTH_MODE"] == "token"
        mount = s["volumes"][0]
        assert mount["target"] == "/models" and mount["read_only"]
    assert head["command"][:4] == ["ray", "start", "--head", "--port=6379"] and "--block" in head["command"]
    assert worker["command"][:3] == ["ray", "start", "--address=ray-head:6379"] and "--block" in worker["command"]
    assert app["command"][:4] == ["pkdot", "serve", "--cluster", "ray-head:6379"]
    assert any("8000" in str(p.get("target", p) if isinstance(p, dict) else p) for p in head["ports"])
    assert {"ray-head", "ray-worker"} <= set(app["depends_on"])


def test_compose_passes_every_service_setting(compose: list[str]) -> None:
    yaml = pytest.importorskip("yaml")
    config = pytest.importorskip("service.core.config")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PKDOT_", "COMPOSE_"))}
    done = subprocess.run([*compose, "-f", str(COMPOSE_FILE), "config"], capture_output=True, text=True, env=env,
                          timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    host_side = {"PKDOT_HOST", "PKDOT_PORT", "PKDOT_MODELS_DIR"}  # where the service is published, which folder
    settings = {f"PKDOT_{name.upper()}" for name in config.Settings.model_fields} - host_side
    for name in ("serve", "serve-cpu"):
        assert set(services[name]["environment"]) == settings, name
    done = subprocess.run([*compose, "-f", str(COMPOSE_FILE), "--profile", "cluster", "config"], capture_output=True,
                          text=True, env=env, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    cluster = yaml.safe_load(done.stdout)["services"]["serve-cluster"]["environment"]
    assert settings <= set(cluster), settings - set(cluster)


def test_without_root_or_engine_the_smoke_test_is_skipped_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dockerd, "_responds", lambda env: False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(dockerd.Unavailable, match="no Docker engine runs and starting dockerd needs root"):
        dockerd.start_engine()
    monkeypatch.setattr(shutil, "which", lambda name, path=None: None)
    with pytest.raises(dockerd.Unavailable, match="install the Debian package.s. docker.io"):
        dockerd.ensure_tools("dockerd", "docker")


# -- the smoke test ----------------------------------------------------------------------------------------------------


class _Terminal(logging.Handler):
    """Progress lines straight to the terminal, past pytest's output capture (no -s needed)."""

    def __init__(self, config: pytest.Config) -> None:
        super().__init__(logging.INFO)
        self.capture = config.pluginmanager.getplugin("capturemanager")
        self.t0 = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        line = f"\n[docker smoke {time.monotonic() - self.t0:5.0f} s] {record.getMessage()}"
        if self.capture is None:
            sys.stderr.write(line)
            return
        with self.capture.global_and_fixture_disabled():
            sys.stderr.write(line)
            sys.stderr.flush()


@pytest.fixture(scope="module")
def progress(request: pytest.FixtureRequest) -> Iterator[None]:
    handler = _Terminal(request.config)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield
    log.removeHandler(handler)


@pytest.fixture(scope="module")
def engine(progress: None) -> Iterator[dockerd.Engine]:
    try:
        with dockerd.machine_lock():
            engine = dockerd.start_engine()
            try:
                yield engine
            finally:
                engine.stop()
    except dockerd.Unavailable as exc:
        pytest.skip(f"no Docker engine can run here: {exc}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _extra_ca_certs() -> str:
    """The CA certificates this machine added locally (a TLS-intercepting proxy's), so the build trusts them too."""
    if os.environ.get("PKDOT_EXTRA_CA_CERTS"):
        return os.environ["PKDOT_EXTRA_CA_CERTS"]
    files = sorted(LOCAL_CA_DIR.rglob("*.crt")) if LOCAL_CA_DIR.is_dir() else []
    if files:
        log.info("passing %d locally added CA certificate file(s) from %s to the build", len(files), LOCAL_CA_DIR)
    return "".join(f.read_text() for f in files)


def _models_dir(tmp: Path) -> Path | None:
    """The bundled models/ when it holds a pain student; else the test suite's tiny models, written to tmp.
    None means: compose's default mount (./models)."""
    for manifest in (REPO / "models").glob("*/manifest.json"):
        m = json.loads(manifest.read_text())
        if m.get("task") == "pain" and m.get("role") == "student":
            log.info("serving the bundled models in %s", REPO / "models")
            return None
    pytest.importorskip("torch", reason="no bundled pain student in models/, and the test models need torch")
    from tests.service.conftest import build_models

    root = tmp / "models"
    root.mkdir()
    build_models(root)
    for path in [root, *root.rglob("*")]:  # the service runs as a non-root user in the container
        path.chmod(0o755 if path.is_dir() else 0o644)
    log.info("serving the test models (tiny random ONNX graphs) from %s", root)
    return root


@dataclass
class Stack:
    url: str
    ws: str
    models_dir: Path
    container: str


def _stream_build(args: list[str], env: dict[str, str], logfile: Path, timeout: float) -> None:
    """Run the build, its output to logfile and its `Step n/m` lines to the progress log."""
    deadline = time.monotonic() + timeout
    with open(logfile, "w") as out:
        proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            out.write(line)
            if re.match(r"(Step \d+/\d+ : |Successfully built [0-9a-f]{12}|#\d+ \[)", line):
                log.info("build: %s", line.strip()[:110])
            if time.monotonic() > deadline:
                proc.kill()
        proc.wait()
    if proc.returncode:
        raise AssertionError(f"image build failed ({proc.returncode}); last lines of {logfile}:\n"
                             + "\n".join(logfile.read_text().splitlines()[-30:]))


def _wait_ready(url: str, container_state, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            last = f"{exc.code} {exc.read()[:300]!r}"
        except OSError as exc:
            last = str(exc)
        state = container_state()
        if state not in ("running", "restarting", "created"):
            raise AssertionError(f"the service container is {state}; last /readyz: {last}")
        time.sleep(2)
    raise AssertionError(f"/readyz not 200 within {timeout:.0f} s; last: {last}")


@pytest.fixture(scope="module")
def stack(engine: dockerd.Engine) -> Iterator[Stack]:
    """Build the CPU image on the debootstrapped base through compose, bring the `cpu` profile up, wait for /readyz."""
    t0 = time.monotonic()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = os.environ.get("PKDOT_SMOKE_BASE_IMAGE") or dockerd.debian_base(engine)
    compose = dockerd.compose_command()
    tmp = Path(tempfile.mkdtemp(prefix="pkdot-smoke-"))
    tmp.chmod(0o755)
    models_dir = _models_dir(tmp)
    port = _free_port()
    empty_env = tmp / "empty.env"
    empty_env.touch()
    env = {k: v for k, v in engine.env.items() if not k.startswith(("PKDOT_", "COMPOSE_"))}
    env.update(PKDOT_CPU_BASE_IMAGE=base, PKDOT_CPU_IMAGE=SMOKE_IMAGE, PKDOT_HOST="127.0.0.1", PKDOT_PORT=str(port),
               PKDOT_EXTRA_CA_CERTS=_extra_ca_certs(), PKDOT_LOG_FORMAT="text")
    if models_dir is not None:
        env["PKDOT_MODELS_DIR"] = str(models_dir)
    project = f"pkdot-smoke-{os.getpid()}"
    base_args = [*compose, "-f", str(COMPOSE_FILE), "--project-directory", str(REPO), "--env-file", str(empty_env),
                 "-p", project, "--profile", "cpu"]

    def run(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([*base_args, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode:
            raise AssertionError(f"{' '.join(args)} failed: {done.stderr[-2000:]}")
        return done

    proxies = [a for k in PROXY_VARIABLES if os.environ.get(k) for a in ("--build-arg", f"{k}={os.environ[k]}")]
    try:
        log.info("building %s from %s with %s (log: %s)", SMOKE_IMAGE, base, " ".join(compose), ARTIFACTS / "build.log")
        t_build = time.monotonic()
        _stream_build([*base_args, "build", *proxies, "serve-cpu"], env, ARTIFACTS / "build.log", timeout=720)
        size = engine.docker("image", "inspect", "--format", "{{.Size}}", SMOKE_IMAGE).stdout.strip()
        log.info("built in %.0f s: %s, %.2f GB", time.monotonic() - t_build, SMOKE_IMAGE, int(size) / 1e9)
        log.info("docker compose up: serve-cpu on 127.0.0.1:%d", port)
        run("up", "-d", "--no-build", "serve-cpu")
        container = run("ps", "-q", "serve-cpu").stdout.strip()
        assert container, "compose started no serve-cpu container"

        def state() -> str:
            return engine.docker("inspect", "--format", "{{.State.Status}}", container, check=False).stdout.strip()

        url = f"http://127.0.0.1:{port}"
        ready = _wait_ready(url, state, timeout=240)
        log.info("ready after %.0f s in all: %s", time.monotonic() - t0,
                 ", ".join(f"{m['name']} on {m['provider']}" for m in ready["models"]))
        yield Stack(url=url, ws=f"ws://127.0.0.1:{port}", models_dir=models_dir or REPO / "models", container=container)
    finally:
        logs = run("logs", "--no-color", "--timestamps", "serve-cpu", check=False)
        (ARTIFACTS / "service.log").write_text(logs.stdout + logs.stderr)
        log.info("docker compose down (service log: %s)", ARTIFACTS / "service.log")
        run("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)
        if engine.process is None:  # the user's own engine: leave no image behind either
            engine.docker("image", "rm", SMOKE_IMAGE, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def reference(stack: Stack) -> Iterator:
    """The same service in this process, on the same models: the answers the container must give."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from tests.service.conftest import make_settings

    with TestClient(create_app(make_settings(stack.models_dir, providers="cpu"))) as client:
        yield client


def _request(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _multipart(name: str, filename: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    boundary = "pkdot-smoke-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_stack_is_ready_and_healthy(stack: Stack, engine: dockerd.Engine) -> None:
    status, ready = _request(f"{stack.url}/readyz")
    assert status == 200 and ready["status"] == "ready" and ready["require_gpu"] is False
    assert ready["models"] and {m["provider"] for m in ready["models"]} == {"CPU"}
    assert any(m["task"] == "pain" and m["role"] == "student" for m in ready["models"])
    deadline = time.monotonic() + 90  # the image's HEALTHCHECK runs every 15 s
    health = ""
    while time.monotonic() < deadline:
        health = engine.docker("inspect", "--format", "{{.State.Health.Status}}", stack.container).stdout.strip()
        if health == "healthy":
            break
        time.sleep(3)
    assert health == "healthy"
    user = engine.docker("inspect", "--format", "{{.Config.User}}", stack.container).stdout.strip()
    assert user not in ("", "0", "root")
    env = engine.docker("exec", stack.container, "env").stdout.splitlines()
    passed = sorted(line.split("=")[0] for line in env if line.startswith("PKDOT_"))
    assert passed == ["PKDOT_HOST", "PKDOT_LOG_FORMAT", "PKDOT_MODELS_DIR", "PKDOT_PORT", "PKDOT_PROVIDERS",
                      "PKDOT_REQUIRE_GPU"]  # unset settings stay unset (an empty PKDOT_API_KEY would turn auth on)
    has_torch = engine.docker("exec", stack.container, "python", "-c",
                              "import importlib.util as u; print(u.find_spec('torch') is not None)").stdout.strip()
    assert has_torch == "False"


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_predict_pain_on_a_real_face(stack: Stack, reference, face_jpeg: bytes) -> None:
    body, content_type = _multipart("file", "astronaut.jpg", face_jpeg, "image/jpeg")
    status, answer = _request(f"{stack.url}/predict/pain", body, {"Content-Type": content_type})
    assert status == 200, answer
    log.info("POST /predict/pain: %s", json.dumps(answer["prediction"]))
    assert answer["face_detected"] is True and answer["frames_used"] == 1
    x, y, w, h = answer["face"]["box"]
    assert 0 <= x < 512 and 0 <= y < 512 and 50 < w < 400 and 50 < h < 400 and answer["face"]["score"] > 0.5
    p = answer["prediction"]
    assert len(p["probabilities"]) == 5 and sum(p["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    assert p["pain_level"] == int(np.argmax(p["probabilities"]))
    expected = reference.post("/predict/pain", files=[("file", ("astronaut.jpg", face_jpeg, "image/jpeg"))]).json()
    assert answer["model"] == expected["model"]
    assert answer["face"]["box"] == pytest.approx(expected["face"]["box"], abs=1.0)
    assert p["probabilities"] == pytest.approx(expected["prediction"]["probabilities"], abs=1e-4)
    assert p["pain_level"] == expected["prediction"]["pain_level"]


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_websocket_stream(stack: Stack, face_rgb: np.ndarray, face_jpeg: bytes) -> None:
    from websockets.sync.client import connect

    from tests.service.conftest import encode_jpeg, shifted

    frames = [face_jpeg] + [encode_jpeg(shifted(face_rgb, 3 * i)) for i in range(1, 6)]
    results = []
    with connect(f"{stack.ws}/ws/stream?task=pain", compression=None, open_timeout=20) as ws:
        for frame in frames:
            ws.send(frame)
            results.append(json.loads(ws.recv(timeout=60)))
        ws.send(json.dumps({"type": "ping"}))
        pong = json.loads(ws.recv(timeout=30))
    log.info("WebSocket: %d frames, last smoothed %s", len(results), json.dumps(results[-1]["smoothed"]))
    assert [r["seq"] for r in results] == list(range(len(frames)))
    assert all(r["face_detected"] and r["prediction"] and r["dropped"] == 0 for r in results)
    assert all(sum(r["prediction"]["probabilities"]) == pytest.approx(1.0, abs=1e-5) for r in results)
    assert all(r["smoothed"] is not None for r in results)
    assert pong["type"] == "pong"
    body, content_type = _multipart("file", "astronaut.jpg", face_jpeg, "image/jpeg")
    _, rest = _request(f"{stack.url}/predict/pain", body, {"Content-Type": content_type})
    assert results[0]["prediction"]["probabilities"] == pytest.approx(rest["prediction"]["probabilities"], abs=1e-6)
