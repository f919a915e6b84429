"""The docs page: served whole by exitd (nothing from another origin), under a content security policy."""

import re
import urllib.request
from html.parser import HTMLParser

import pytest

from exitd.api.docs import CONTENT_SECURITY_POLICY
from tests.support.daemon import DaemonProcess

pytestmark = pytest.mark.bitcoind


class References(HTMLParser):
    """Every src and href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [value for name, value in attrs if name in ("src", "href") and value]


def fetch(daemon: DaemonProcess, path: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}{path}", timeout=30) as resp:
        return resp.status, dict(resp.headers), resp.read()


def test_the_docs_page_loads_nothing_from_elsewhere(daemon: DaemonProcess) -> None:
    status, headers, body = fetch(daemon, "/swagger-ui")
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY and "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert not re.search(r"https?://|//[a-z]", page, re.IGNORECASE)  # no URL of another origin
    assert "<script>" not in page  # no inline script: the policy would block it

    parser = References()
    parser.feed(page)
    assert sorted(parser.found) == [
        "/api-docs/openapi.json",
        "/swagger-ui/start.js",
        "/swagger-ui/swagger-ui-bundle.js",
        "/swagger-ui/swagger-ui.css",
    ]
    expected_types = {".js": "text/javascript", ".css": "text/css", ".json": "application/json"}
    sizes = {}
    for path in parser.found:  # every reference is served, without a token, with its type
        status, headers, body = fetch(daemon, path)
        suffix = path[path.rindex(".") :]
        assert status == 200 and headers["Content-Type"].startswith(expected_types[suffix]), path
        sizes[path] = len(body)
    assert sizes["/swagger-ui/swagger-ui-bundle.js"] > 500_000  # Swagger UI itself, not a stub
    starter = fetch(daemon, "/swagger-ui/start.js")[2].decode()
    assert "validatorUrl: null" in starter and not re.search(r"https?://", starter)
    assert '"/api-docs/openapi.json"' in starter


def test_every_served_operation_has_a_summary(daemon: DaemonProcess) -> None:
    status, document = daemon.request("GET", "/api-docs/openapi.json", auth=False)
    assert status == 200
    operations = [(m, p, op) for p, ops in document["paths"].items() for m, op in ops.items()]
    assert len(operations) > 60
    missing = [f"{m.upper()} {p}" for m, p, op in operations if not op.get("summary", "").strip()]
    assert missing == []
    assert "/swagger-ui/swagger-ui-bundle.js" in document["paths"]
