"""The demo page's route and files, without a browser (tests/service/test_demo_browser.py runs it in Chromium)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from service.api.demo import STATIC
from service.app import create_app
from tests.service.conftest import make_settings


def test_demo_page_and_its_files(client) -> None:
    page = client.get("/demo")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert '<script src="/demo/demo.js"' in page.text and 'href="/demo/demo.css"' in page.text
    js = client.get("/demo/demo.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "/ws/stream" in js.text
    css = client.get("/demo/demo.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_only_the_demo_files_are_served(client) -> None:
    for path in ("/demo/demo.html.bak", "/demo/..%2Fapp.py", "/demo/%2E%2E%2F%2E%2E%2Fpyproject.toml", "/demo/x"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "error" in r.json()


def test_every_element_the_script_uses_is_on_the_page() -> None:
    html = (STATIC / "demo.html").read_text()
    js = (STATIC / "demo.js").read_text()
    ids = set(re.findall(r'\bid="([\w-]+)"', html))
    used = set(re.findall(r'\$\("([\w-]+)"\)', js))
    assert used and used <= ids, f"the script uses ids the page lacks: {sorted(used - ids)}"


def test_the_page_loads_without_the_api_key(students_root) -> None:
    """The page holds no secret: it loads without a key, and asks for one where the API needs it."""
    with TestClient(create_app(make_settings(students_root, api_key="k3y"))) as c:
        assert c.get("/demo").status_code == 200
        assert c.get("/demo/demo.js").status_code == 200
        assert c.get("/v1/models").status_code == 401  # what the page checks to show its API key hint
        assert c.get("/v1/models", headers={"X-API-Key": "k3y"}).status_code == 200
