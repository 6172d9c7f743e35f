"""The browse app through starlette's TestClient: routes, escaping, CSP, sanitizing,
attachments by number only, unknown ids, the Host check."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator

import pytest

from archive.conftest import PDF, PNG, Built
from axsync.archive.access import Archive
from axsync.browse.app import create_app
from axsync.browse.security import host_allowed

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
BASE = "http://127.0.0.1:8731"


@pytest.fixture(scope="module")
def client(sample: Built) -> Iterator[TestClient]:
    archive = Archive.open(sample.account, shared=True)
    with TestClient(create_app(archive, "test"), base_url=BASE) as c:
        yield c
    archive.close()


def test_inbox_page(client: TestClient, sample: Built) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "Quarterly budget review" in html and "Old archived note" not in html
    assert "Gone for good" not in html
    assert 'href="/?folder=.Archive.2024"' in html  # the folder tree
    assert re.search(r'class="count unread"[^>]*>1<', html)  # INBOX: one unread
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert not re.search(r"<(link|script|img)[^>]+(src|href)=\"(https?:)?//", html)  # no remote assets


def test_everything_is_escaped(client: TestClient, sample: Built) -> None:
    for url in ("/", f"/message/{sample.names['hostile']}", "/?q=hostile",
                f"/thread/{sample.names['hostile']}", "/?q=%3Cscript%3Ealert(2)%3C/script%3E"):
        html = client.get(url).text
        assert "<script>alert" not in html, url
        assert "&lt;script&gt;alert" in html, url


def test_folder_paging_and_unknown_folder(client: TestClient) -> None:
    r = client.get("/", params={"folder": ".Archive.2024"})
    assert r.status_code == 200 and "Old archived note" in r.text and "Quarterly" not in r.text
    assert client.get("/", params={"folder": ".Nope"}).status_code == 404
    assert client.get("/", params={"page": "99"}).status_code == 200
    assert "This folder is empty" in client.get("/", params={"page": "99"}).text
    assert client.get("/", params={"page": "-1"}).status_code == 200


def test_search_page(client: TestClient) -> None:
    html = client.get("/", params={"q": "zurich"}).text
    assert "Quarterly budget review" in html and "<mark>Zürich</mark>" in html
    html = client.get("/", params={"q": "(broken"}).text
    assert "unbalanced parenthesis" in html and 'role="alert"' in html


def test_message_page(client: TestClient, sample: Built) -> None:
    uid = sample.names["hostile"]
    html = client.get(f"/message/{uid}").text
    assert f'src="/message/{uid}/body"' in html and 'sandbox="allow-popups' in html
    assert "allow-scripts" not in html and "allow-same-origin" not in html
    assert "report.pdf" in html and f'href="/message/{uid}/part/4"' in html
    assert f'href="/message/{uid}/part/3"' not in html  # the inline image is not listed
    assert "Show remote images" in html and f'href="/message/{uid}?images=1"' in html
    shown = client.get(f"/message/{uid}", params={"images": "1"}).text
    assert f'src="/message/{uid}/body?images=1"' in shown and "Block them again" in shown
    plain = client.get(f"/message/{sample.names['budget']}").text
    assert "Show remote images" not in plain and "Conversation" not in plain


def test_body_is_sanitized_with_a_strict_csp(client: TestClient, sample: Built) -> None:
    uid = sample.names["hostile"]
    r = client.get(f"/message/{uid}/body")
    csp = r.headers["content-security-policy"]
    assert csp.startswith("default-src 'none'; img-src 'self' data:;")
    assert "style-src 'unsafe-inline'" in csp and "script-src" not in csp and "sandbox" in csp
    assert "https:" not in csp
    body = r.text
    assert "<script" not in body and "__pwned" not in body and "onerror" not in body
    assert "javascript:" not in body and "<form" not in body and "<svg" not in body
    assert "tracker.example.net" not in body  # remote image and CSS url removed
    assert 'src="data:image/png;base64,' in body  # the cid: image, embedded
    assert "Hostile body marker" in body
    remote = client.get(f"/message/{uid}/body", params={"images": "1"})
    assert "https://tracker.example.net/open.gif" in remote.text
    assert "img-src 'self' data: https: http:;" in remote.headers["content-security-policy"]


def test_plain_text_body_is_escaped_and_linked(client: TestClient, sample: Built) -> None:
    body = client.get(f"/message/{sample.names['fromlines']}/body").text
    assert '<pre class="plain">' in body and "&gt;From quoted" in body


def test_attachments_by_number(client: TestClient, sample: Built) -> None:
    uid = sample.names["hostile"]
    r = client.get(f"/message/{uid}/part/4")
    assert r.status_code == 200 and r.content == PDF
    assert r.headers["content-disposition"] == (
        "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf")
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-security-policy"] == "default-src 'none'; sandbox"
    passwd = client.get(f"/message/{uid}/part/5")
    assert passwd.headers["content-disposition"].startswith('attachment; filename="passwd"')
    html = client.get(f"/message/{uid}/part/6")
    assert html.headers["content-type"] == "application/octet-stream"  # never rendered
    image = client.get(f"/message/{uid}/part/3")
    assert image.content == PNG and image.headers["content-type"] == "image/png"
    for bad in ("/part/0", "/part/2", "/part/99", "/part/-1", "/part/../../etc/passwd",
                "/part/%2e%2e%2fetc%2fpasswd", "/part/report.pdf"):
        assert client.get(f"/message/{uid}{bad}").status_code == 404, bad


def test_raw_download(client: TestClient, sample: Built) -> None:
    from archive.conftest import sample_mails

    r = client.get(f"/message/{sample.names['japanese']}/raw")
    assert r.content == sample_mails()["japanese"].raw
    assert r.headers["content-type"] == "message/rfc822"
    assert r.headers["content-disposition"].startswith("attachment; filename=")


def test_thread_page(client: TestClient, sample: Built) -> None:
    html = client.get(f"/thread/{sample.names['t2']}").text
    assert "3 messages in this conversation" in html
    assert html.count("<details") == 3 and "second" in html and "third" in html
    page = client.get(f"/message/{sample.names['t1']}").text
    assert "Conversation (3)" in page


@pytest.mark.parametrize("url", ["/message/999999", f"/message/{2**40}", "/thread/999999",
                                 "/message/999999/body", "/message/999999/raw",
                                 "/message/999999/part/1", "/message/abc", "/nothing/here"])
def test_unknown_ids_are_404_pages(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 404 and "Not found" in r.text and "<!doctype html>" in r.text


def test_tombstoned_message_is_404(client: TestClient, sample: Built) -> None:
    assert client.get(f"/message/{sample.names['gone']}").status_code == 404


def test_read_only_methods(client: TestClient) -> None:
    assert client.post("/").status_code == 405
    assert client.delete("/message/1").status_code == 405


@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1:8731", True), ("localhost", True), ("LOCALHOST:1", True), ("[::1]:8731", True),
    ("evil.example", False), ("127.0.0.1.evil.example", False), ("localhost:80; x", False),
    ("", False), ("127.0.0.2", False),
])
def test_host_check(client: TestClient, host: str, ok: bool) -> None:
    assert host_allowed(host) is ok
    r = client.get("/", headers={"host": host})
    assert (r.status_code == 200) is ok
    if not ok:
        assert r.status_code == 421


@pytest.mark.parametrize("headers, status", [
    ({"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors", "sec-fetch-dest": "image"}, 403),
    ({"sec-fetch-site": "same-site", "sec-fetch-mode": "cors", "sec-fetch-dest": "empty"}, 403),
    ({"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate", "sec-fetch-dest": "iframe"}, 403),
    ({"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate", "sec-fetch-dest": "document"}, 200),
    ({"sec-fetch-site": "same-origin", "sec-fetch-mode": "no-cors", "sec-fetch-dest": "image"}, 200),
    ({"sec-fetch-site": "none"}, 200),
])
def test_other_sites_cannot_probe_the_archive(client: TestClient, sample: Built,
                                              headers: dict[str, str], status: int) -> None:
    uid = sample.names["hostile"]
    assert client.get(f"/message/{uid}/part/3", headers=headers).status_code == status


def test_static_assets(client: TestClient) -> None:
    assert client.get("/static/app.css").status_code == 200
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/../app.py").status_code == 404


def test_served_by_uvicorn_on_loopback(sample: Built) -> None:
    import http.client

    from axsync.browse.server import Running

    archive = Archive.open(sample.account, shared=True)
    try:
        with Running(archive, "test") as ui:
            host, port = ui.url.split("//")[1].rstrip("/").split(":")
            assert host == "127.0.0.1"
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            conn.request("GET", "/")
            ok = conn.getresponse()
            assert ok.status == 200 and b"Quarterly budget review" in ok.read()
            assert ok.getheader("server") is None  # no server banner
            conn.request("GET", "/", headers={"Host": "rebound.example:80"})
            refused = conn.getresponse()
            assert refused.status == 421
            refused.read()
            conn.close()
    finally:
        archive.close()


def test_browse_command_reports_a_busy_port(sample: Built, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from axsync.cli import main

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        with pytest.raises(SystemExit) as info:
            main(["--config", str(sample.config_path), "browse", "--no-open", "--port",
                  str(busy.getsockname()[1])])
    finally:
        busy.close()
    assert info.value.code == 2 and "try --port 0" in capsys.readouterr().err


def test_missing_file_and_empty_archive(tmp_path_factory: pytest.TempPathFactory) -> None:
    from archive.conftest import build_archive, sample_mails

    built = build_archive(tmp_path_factory.mktemp("missing"), list(sample_mails().values())[:2])
    for path in (built.maildir / "cur").iterdir():
        path.unlink()
    archive = Archive.open(built.account, shared=True)
    try:
        with TestClient(create_app(archive, "test"), base_url=BASE) as c:
            page = c.get(f"/message/{built.uids[0]}")
            assert page.status_code == 200 and "missing from the maildir" in page.text
            assert c.get(f"/message/{built.uids[0]}/body").status_code == 404
            assert c.get(f"/message/{built.uids[0]}/raw").status_code == 404
            assert c.get("/").status_code == 200
    finally:
        archive.close()
    empty = build_archive(tmp_path_factory.mktemp("empty"), [])
    archive = Archive.open(empty.account, shared=True)
    try:
        with TestClient(create_app(archive, "test"), base_url=BASE) as c:
            r = c.get("/")
            assert r.status_code == 200 and "This folder is empty" in r.text
    finally:
        archive.close()


def test_message_without_context_lists_its_own_folder(client: TestClient, sample: Built) -> None:
    html = client.get(f"/message/{sample.names['t2']}").text
    assert '<h2 title="Sent">Sent</h2>' in html and 'class=" selected"' in html
    assert 'href="/?folder=.Sent"' in html  # back to the list
    searched = client.get(f"/message/{sample.names['t2']}", params={"q": "thread"}).text
    assert "Search: thread" in searched
