"""ApiClient over httpx.MockTransport: sessions, retries, paging, deltas, downloads, batches."""

from __future__ import annotations

import base64
import io
import threading
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axsync.api import ApiClient, Capabilities
from axsync.errors import (
    ApiError,
    AuthError,
    BadRequest,
    ConfigError,
    EndpointMissing,
    Forbidden,
    IntegrityError,
    MalformedReply,
    NotFound,
    ServerError,
    ServerUnreachable,
    TokenRejected,
    UsageError,
)

from .mockapi import PASSWORD, USER, ChunkStream, CutStream, MockApi, mail, ok, status

MAILS = "/api/v1/mails"
FOLDER = "80_2"


@pytest.fixture
def api() -> MockApi:
    return MockApi()


def page(items: list[dict[str, object]], total: int, token: str = "t1") -> dict[str, object]:
    return {"syncToken": token, "totalItems": total, "items": items}


def connect_error() -> httpx.ConnectError:
    return httpx.ConnectError("connection refused")


def read_error() -> httpx.ReadError:
    return httpx.ReadError("connection reset by peer")


# ---------------------------------------------------------------------------- sessions


def test_lazy_login_and_headers(api: MockApi) -> None:
    api.on("GET", "/api/v1/mails/m1", mail(1))
    client = api.client()
    assert api.requests == []  # nothing sent at construction
    assert client.get_mail("m1").id == "m1"
    login, call = api.requests
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert login.url.path == "/api/v1/login" and login.headers["Authorization"] == expected
    assert call.headers["Authorization"] == expected
    assert call.headers["X-Axigen-Session"] == "s1"
    assert call.headers["Accept"] == "application/json"
    client.get_mail("m1")
    assert api.logins == 1
    assert client.requests == 3
    assert client.request_counts == {"POST /api/v1/login": 1, "GET /api/v1/mails/{id}": 2}


def test_login_refused_is_auth_error(api: MockApi) -> None:
    api.login_reply = status(401)
    with pytest.raises(AuthError, match="login refused"):
        api.client().login()
    assert len(api.requests) == 1


def test_login_retried_on_503_and_malformed_sessid(api: MockApi) -> None:
    api.login_reply = status(503)
    client = api.client(max_retries=2)
    with pytest.raises(ServerError):
        client.login()
    assert client.requests == 3
    api.login_reply = ok({"session": "x"})
    with pytest.raises(MalformedReply, match="sessid"):
        client.login()


def test_relogin_once_on_expired_session(api: MockApi) -> None:
    api.on("GET", "/api/v1/mails/m1", mail(1))
    client = api.client()
    client.get_mail("m1")
    api.expire()
    assert client.get_mail("m1").id == "m1"
    assert api.logins == 2
    assert [r.headers.get("X-Axigen-Session") for r in api.calls("GET", "/api/v1/mails/m1")] == [
        "s1",
        "s1",
        "s2",
    ]


def test_second_401_is_auth_error(api: MockApi) -> None:
    api.on("GET", "/api/v1/mails/m1", status(401))
    client = api.client()
    with pytest.raises(AuthError, match="401 again"):
        client.get_mail("m1")
    assert api.logins == 2  # the lazy login, and one re-login
    assert client.requests == 4


def test_fresh_session_used_by_other_threads_may_expire_again(api: MockApi) -> None:
    client = api.client()
    attempts = 0

    def reply(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        if attempts == 2:  # other workers used the session this call just opened; it expired
            assert client._http._session is not None
            client._http._session.sent += 2
        return status(401) if attempts < 3 else ok(mail(1))

    api.on("GET", "/api/v1/mails/m1", reply)
    assert client.get_mail("m1").id == "m1"
    assert api.logins == 3


def test_401_is_not_a_retry_of_a_non_idempotent_call(api: MockApi) -> None:
    api.on("POST", "/api/v1/mails/m1/move", mail(1, folder="80_9"))
    client = api.client()
    client.login()
    api.expire()
    assert client.move_mail("m1", "80_9").folder_id == "80_9"
    assert len(api.calls("POST", "/api/v1/mails/m1/move")) == 2


def test_concurrent_401s_cause_one_relogin(api: MockApi) -> None:
    workers = 8
    barrier = threading.Barrier(workers)
    api.on("GET", "/api/v1/mails/m1/source", status(200, b"body"))
    client = api.client(concurrency=workers)
    client.login()
    api.expire()
    gate = threading.Event()
    original = api.__call__

    def slow_login(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/login":
            gate.wait(2)  # keep the re-login open while the other threads get their 401s
        return original(request)

    # every thread sends through its own httpx.Client, made from these options on first use
    client._http._client_options["transport"] = httpx.MockTransport(slow_login)
    errors: list[BaseException] = []

    def work() -> None:
        barrier.wait()
        try:
            client.download_source("m1", io.BytesIO())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    threading.Timer(0.3, gate.set).start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert api.logins == 2


def test_server_info_without_session_then_with(api: MockApi) -> None:
    api.on("GET", "/api/", ok({"apiVersion": "1.2.0", "serverVersion": "10.6.20"}))
    client = api.client()
    assert client.server_info().server_version == "10.6.20"
    assert api.logins == 0 and "X-Axigen-Session" not in api.requests[0].headers
    assert client.capabilities() == Capabilities(mail_delta=True, folder_delta=True)
    api.on("GET", "/api/", status(401), ok({"apiVersion": "1.2.0", "serverVersion": "10.4.30"}))
    client = api.client()
    assert client.capabilities() == Capabilities(mail_delta=False, folder_delta=False)
    assert api.logins == 1


def test_capabilities_unknown_version_is_optimistic(api: MockApi) -> None:
    assert api.client().capabilities() == Capabilities(mail_delta=True, folder_delta=True)


# ---------------------------------------------------------------------------- retries


def test_get_retried_on_5xx_and_honours_retry_after(api: MockApi) -> None:
    api.on(
        "GET",
        "/api/v1/mails/m1",
        status(503, headers_retry := b"busy", **{"Retry-After": "0.0005"}),
        status(502),
        status(429, **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        mail(1),
    )
    assert headers_retry == b"busy"
    client = api.client(max_retries=5, backoff_max=0.001)
    sleeps: list[float] = []
    client._http.sleep = sleeps.append
    assert client.get_mail("m1").id == "m1"
    assert len(sleeps) == 3
    assert sleeps[0] == 0.0005 and sleeps[2] == 0.0  # seconds form; a date in the past
    assert 0 <= sleeps[1] <= 0.0002  # full jitter: uniform(0, base * 2**1)
    assert client.request_counts["GET /api/v1/mails/{id}"] == 4


def test_retry_after_capped_at_backoff_max(api: MockApi) -> None:
    api.on("GET", "/api/v1/mails/m1", status(503, **{"Retry-After": "3600"}), mail(1))
    client = api.client(backoff_max=2.0)
    sleeps: list[float] = []
    client._http.sleep = sleeps.append
    client.get_mail("m1")
    assert sleeps == [2.0]


def test_retries_exhausted(api: MockApi) -> None:
    api.on("GET", "/api/v1/mails/m1", status(500, b'{"error": {"message": "boom"}}'))
    client = api.client(max_retries=2)
    with pytest.raises(ServerError, match=r"HTTP 500: boom \(after 3 attempts\)") as info:
        client.get_mail("m1")
    assert info.value.status == 500 and "boom" in info.value.body
    assert client.request_counts["GET /api/v1/mails/{id}"] == 3
    api.on("GET", "/api/v1/mails/m1", status(429))
    with pytest.raises(ServerError) as info:
        client.get_mail("m1")
    assert info.value.status == 429
    api.on("GET", "/api/v1/mails/m1", connect_error())
    with pytest.raises(ServerUnreachable, match="after 3 attempts"):
        client.get_mail("m1")


@pytest.mark.parametrize(
    ("code", "error"), [(400, BadRequest), (403, Forbidden), (404, NotFound), (409, ApiError)]
)
def test_client_errors_are_not_retried(api: MockApi, code: int, error: type[Exception]) -> None:
    api.on("GET", "/api/v1/mails/m1", status(code, b"<html>oops</html>"))
    client = api.client()
    with pytest.raises(error, match=f"HTTP {code}"):
        client.get_mail("m1")
    assert client.request_counts["GET /api/v1/mails/{id}"] == 1


@pytest.mark.parametrize("failure", [read_error, lambda: httpx.ReadTimeout("slow")])
def test_get_retried_on_connection_failures(api: MockApi, failure: Any) -> None:
    api.on("GET", "/api/v1/mails/m1", failure(), connect_error(), mail(1))
    client = api.client()
    assert client.get_mail("m1").id == "m1"
    assert client.request_counts["GET /api/v1/mails/{id}"] == 3


def test_non_idempotent_not_retried_after_it_may_have_been_sent(api: MockApi) -> None:
    api.on("POST", "/api/v1/mails/m1/move", read_error(), mail(1, folder="80_9"))
    client = api.client()
    with pytest.raises(ServerUnreachable, match="NOT retried") as info:
        client.move_mail("m1", "80_9")
    assert info.value.details["maybe_applied"] is True
    assert len(api.calls("POST", "/api/v1/mails/m1/move")) == 1


def test_non_idempotent_body_cut_off_is_not_retried(api: MockApi) -> None:
    cut = httpx.Response(200, stream=CutStream([b'{"id": "m1", ']))
    api.on("POST", MAILS, cut, mail(1))
    client = api.client()
    with pytest.raises(ServerUnreachable, match="may have reached the server"):
        client.create_mail(FOLDER, subject="x")
    assert len(api.calls("POST", MAILS)) == 1


def test_non_idempotent_retried_when_refused_or_never_sent(api: MockApi) -> None:
    api.on(
        "POST",
        "/api/v1/mails/m1/copy",
        status(503, **{"Retry-After": "0"}),
        status(429),
        connect_error(),
        httpx.ConnectTimeout("connect timeout"),
        mail(2, folder="80_9"),
    )
    client = api.client(max_retries=6)
    assert client.copy_mail("m1", "80_9").id == "m2"
    assert len(api.calls("POST", "/api/v1/mails/m1/copy")) == 5


@pytest.mark.parametrize("code", [500, 502, 504])
def test_non_idempotent_not_retried_on_ambiguous_5xx(api: MockApi, code: int) -> None:
    api.on("POST", "/api/v1/mails/m1/move", status(code), mail(1))
    client = api.client()
    with pytest.raises(ServerError):
        client.move_mail("m1", "x")
    assert len(api.calls("POST", "/api/v1/mails/m1/move")) == 1


def test_delete_mail_and_folder_not_retried_but_label_ops_are(api: MockApi) -> None:
    api.on("DELETE", "/api/v1/mails/m1", read_error(), status(200))
    api.on("DELETE", "/api/v1/folders/80_5", read_error(), status(200))
    api.on("DELETE", "/api/v1/labels/40_1", read_error(), status(404))
    api.on("DELETE", "/api/v1/mails/m1/labels/40_1", read_error(), status(200))
    api.on("POST", "/api/v1/mails/m1/labels", read_error(), status(200))
    api.on("PATCH", "/api/v1/mails/m1", read_error(), mail(1, isFlagged=True))
    client = api.client()
    with pytest.raises(ServerUnreachable):
        client.delete_mail("m1")
    with pytest.raises(ServerUnreachable):
        client.delete_folder("80_5")
    client.delete_label("40_1")  # the 404 after an ambiguous attempt means "already gone"
    client.remove_mail_label("m1", "40_1")
    client.add_mail_label("m1", "40_1")
    assert client.update_mail("m1", is_flagged=True).flags.is_flagged
    assert len(api.calls("DELETE", "/api/v1/labels/40_1")) == 2
    assert api.calls("POST", "/api/v1/mails/m1/labels")[-1].content == b'{"labelId":"40_1"}'


def test_clean_404_on_delete_is_not_found(api: MockApi) -> None:
    api.on("DELETE", "/api/v1/labels/40_1", status(404))
    with pytest.raises(NotFound):
        api.client().delete_label("40_1")


def test_permanent_transport_errors_fail_fast(api: MockApi) -> None:
    api.on("GET", "/api/v1/mails/m1", httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] nope"))
    client = api.client()
    with pytest.raises(ServerUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
        client.get_mail("m1")
    assert client.request_counts["GET /api/v1/mails/{id}"] == 1


def test_html_page_with_200_is_malformed(api: MockApi) -> None:
    api.on("GET", "/api/v1/mails/m1", status(200, b"<html><body>Login</body></html>"))
    with pytest.raises(MalformedReply, match=r"GET /api/v1/mails/\{id\}: reply is not JSON"):
        api.client().get_mail("m1")
    api.on("GET", "/api/v1/mails/m1", ok({"id": "m1", "size": 1}))
    with pytest.raises(MalformedReply, match="folderId"):
        api.client().get_mail("m1")


def test_redirect_names_its_target(api: MockApi) -> None:
    api.on("GET", "/api/v1/mails/m1", status(302, Location="https://axigen.test/login"))
    with pytest.raises(ApiError, match="redirected to https://axigen.test/login") as info:
        api.client().get_mail("m1")
    assert getattr(info.value, "status", None) == 302


def test_bad_ca_bundle_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="CA bundle"):
        ApiClient("https://axigen.test", "u", "p", verify="/nonexistent/ca.pem")


def test_verify_accepts_a_ca_bundle_path(api: MockApi) -> None:
    import certifi

    client = ApiClient("https://axigen.test", "u", "p", verify=certifi.where())
    client.close()
    with ApiClient("https://axigen.test/", "u", "p", verify=False) as other:
        assert str(other._http.client.base_url) == "https://axigen.test"


# ---------------------------------------------------------------------------- listings


def clamped_folder(ids: list[str], clamp: int, token: Any = "t1") -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        q = request.url.params
        assert {"folderId", "start", "limit", "sort", "dir"} <= set(q)
        assert (q["sort"], q["dir"]) == ("date", "ASC")
        start, limit = int(q["start"]), min(int(q["limit"]), clamp)
        items = [mail(i) for i in ids[start : start + limit]]
        return ok(page(items, len(ids), token() if callable(token) else token))

    return handler


def test_list_all_mails_clamped(api: MockApi) -> None:
    ids = [str(i) for i in range(23)]
    api.on("GET", MAILS, clamped_folder(ids, clamp=5))
    client = api.client()
    token, mails = client.list_all_mails(FOLDER, page_size=500)
    assert token == "t1" and [m.id for m in mails] == [f"m{i}" for i in ids]
    starts = [int(r.url.params["start"]) for r in api.calls("GET", MAILS)]
    assert starts == [0, 5, 10, 15, 20]


def test_list_all_mails_restarts_when_token_moves(api: MockApi) -> None:
    tokens = iter(["t1", "t2", "t2", "t2"])
    api.on("GET", MAILS, clamped_folder(["a", "b", "c", "d"], clamp=2, token=lambda: next(tokens)))
    token, mails = api.client().list_all_mails(FOLDER, page_size=2)
    assert token == "t2" and len(mails) == 4
    assert [r.url.params["start"] for r in api.calls("GET", MAILS)] == ["0", "2", "0", "2"]


def test_list_all_mails_dedupes(api: MockApi) -> None:
    api.on(
        "GET",
        MAILS,
        ok(page([mail(1), mail(2)], 3)),
        ok(page([mail(2), mail(3)], 3)),
    )
    _, mails = api.client().list_all_mails(FOLDER, page_size=2)
    assert [m.id for m in mails] == ["m1", "m2", "m3"]


def test_list_all_mails_never_returns_a_short_listing(api: MockApi) -> None:
    api.on("GET", MAILS, ok(page([mail(1)], 2)), ok(page([], 2)))
    with pytest.raises(ApiError, match="folder 80_2: no consistent listing"):
        api.client().list_all_mails(FOLDER)


def test_mails_page_sends_explicit_sort_and_token_call(api: MockApi) -> None:
    api.on("GET", MAILS, ok({"syncToken": "tk"}))
    client = api.client()
    assert client.mails_token(FOLDER) == "tk"
    q = api.calls("GET", MAILS)[0].url.params
    assert q["syncTokenOnly"] == "true" and q["sort"] == "date" and q["dir"] == "ASC"
    api.on("GET", MAILS, ok(page([mail(1)], 1)))
    p = client.mails_page(FOLDER, 10, 20, sort="size", direction="desc")
    q = api.calls("GET", MAILS)[-1].url.params
    assert (q["start"], q["limit"], q["sort"], q["dir"]) == ("10", "20", "size", "DESC")
    assert p.items[0].folder_id == FOLDER


def test_iter_conversations_and_get_conversation(api: MockApi) -> None:
    conv = {"id": "c1", "subject": "S", "mailCount": "1", "mails": [{"mailId": "m1"}]}
    api.on(
        "GET",
        "/api/v1/conversations",
        ok({"syncToken": "c", "totalItems": 3, "items": [conv, {**conv, "id": "c2"}]}),
        ok(
            {
                "syncToken": "c",
                "totalItems": 3,
                "items": [{**conv, "id": "c2"}, {**conv, "id": "c3"}],
            }
        ),
    )
    client = api.client()
    assert [c.id for c in client.iter_conversations(FOLDER, page_size=2)] == ["c1", "c2", "c3"]
    assert [r.url.params["start"] for r in api.calls("GET", "/api/v1/conversations")] == ["0", "2"]
    api.on(
        "GET",
        "/api/v1/conversations/c1",
        ok({"syncToken": "x", "totalItems": 2, "items": [mail(1, subject="Hi")]}),
        ok({"syncToken": "x", "totalItems": 2, "items": [mail(2, folder="80_3")]}),
    )
    conversation = client.get_conversation("c1")
    assert conversation.sync_token == "x" and conversation.subject == "Hi"
    assert [(m.mail_id, m.folder_id) for m in conversation.members] == [
        ("m1", FOLDER),
        ("m2", "80_3"),
    ]
    api.on("GET", "/api/v1/conversations/c1", ok({"syncToken": "y", "totalItems": 2}))
    token_only = client.get_conversation("c1", token_only=True)
    assert token_only.sync_token == "y" and token_only.members == ()
    assert api.calls("GET", "/api/v1/conversations/c1")[-1].url.params["syncTokenOnly"] == "true"


# ---------------------------------------------------------------------------- deltas


def test_mails_delta_404_downgrades_for_good(api: MockApi) -> None:
    api.on("GET", "/api/", ok({"apiVersion": "1", "serverVersion": "10.6.20"}))
    client = api.client()
    assert client.capabilities().mail_delta
    with pytest.raises(EndpointMissing):
        client.mails_delta(FOLDER, None)
    assert client.capabilities() == Capabilities(mail_delta=False, folder_delta=True)
    with pytest.raises(EndpointMissing):
        client.mails_delta(FOLDER, "t")
    assert client.request_counts["GET /api/v1/mails/delta"] == 1


@pytest.mark.parametrize(
    ("code", "token", "error"),
    [
        (400, "old", TokenRejected),
        (410, "old", TokenRejected),
        (400, None, BadRequest),
        (403, "old", Forbidden),
    ],
)
def test_mails_delta_token_errors(
    api: MockApi, code: int, token: str | None, error: type[Exception]
) -> None:
    api.on("GET", "/api/v1/mails/delta", status(code))
    with pytest.raises(error) as info:
        api.client().mails_delta(FOLDER, token)
    assert type(info.value) is error


def test_iter_mails_delta_follows_more_available(api: MockApi) -> None:
    api.on(
        "GET",
        "/api/v1/mails/delta",
        ok({"syncToken": "i1", "moreAvailable": True, "newItems": [mail(1)]}),
        ok(
            {
                "syncToken": "i2",
                "moreAvailable": True,
                "removedItems": [{"id": "m0", "folderId": FOLDER}],
            }
        ),
        ok({"syncToken": "final", "moreAvailable": False}),
    )
    pages = list(api.client().iter_mails_delta(FOLDER, None, limit=1))
    assert [p.sync_token for p in pages] == ["i1", "i2", "final"]
    sent = [r.url.params.get("syncToken") for r in api.calls("GET", "/api/v1/mails/delta")]
    assert sent == [None, "i1", "i2"]
    assert all(r.url.params["limit"] == "1" for r in api.calls("GET", "/api/v1/mails/delta"))


def test_iter_mails_delta_without_progress_is_malformed(api: MockApi) -> None:
    api.on("GET", "/api/v1/mails/delta", ok({"syncToken": "same", "moreAvailable": True}))
    with pytest.raises(MalformedReply, match="without a new sync token"):
        list(api.client().iter_mails_delta(FOLDER, "same"))
    api.on(
        "GET",
        "/api/v1/mails/delta",
        ok({"syncToken": "t2", "moreAvailable": True, "newItems": [mail(1)]}),
    )
    with pytest.raises(MalformedReply, match="without a new sync token"):
        list(api.client().iter_mails_delta(FOLDER, None))


def test_folders_delta(api: MockApi) -> None:
    folder = {"id": "80_5", "name": "Work", "parentId": "80_1", "folderType": "mails"}
    api.on(
        "GET",
        "/api/v1/folders/delta",
        ok(
            {
                "syncToken": "F",
                "events": [
                    {"eventType": "newFolder", **folder},
                    {"eventType": "newFolder", **folder, "id": "80_6", "folderType": "events"},
                    {"eventType": "removedFolder", "id": "80_7"},
                ],
            }
        ),
        status(400),
    )
    client = api.client()
    delta = client.folders_delta()
    assert [e.id for e in delta.events] == ["80_5", "80_7"]
    assert api.calls("GET", "/api/v1/folders/delta")[0].url.params["syncToken"] == ""
    with pytest.raises(TokenRejected):
        client.folders_delta("F")
    api.on("GET", "/api/v1/folders/delta", status(404))
    with pytest.raises(EndpointMissing):
        client.folders_delta("F")
    assert not client.capabilities().folder_delta


def test_list_folders_filters_non_mail(api: MockApi) -> None:
    api.on(
        "GET",
        "/api/v1/folders/",
        ok(
            {
                "syncToken": "L",
                "items": [
                    {"id": "80_2", "name": "Inbox", "parentId": "80_1", "role": "inbox"},
                    {"id": "80_3", "name": "Calendar", "parentId": "80_1", "folderType": "events"},
                ],
            }
        ),
    )
    client = api.client()
    assert [f.id for f in client.list_folders().items] == ["80_2"]
    q = api.calls("GET", "/api/v1/folders/")[0].url.params
    assert q["type"] == "mails"


# ---------------------------------------------------------------------------- downloads

BODY = b"Subject: x\n\nline\r\nmore\n" * 1000


def test_download_streams_and_digests(api: MockApi) -> None:
    chunks = [BODY[i : i + 777] for i in range(0, len(BODY), 777)]
    api.on("GET", "/api/v1/mails/m1/source", httpx.Response(200, stream=ChunkStream(chunks)))
    out = io.BytesIO()
    result = api.client().download_source("m1", out, expected_size=len(BODY))
    assert out.getvalue() == BODY
    assert api.calls("GET", "/api/v1/mails/m1/source")[0].headers["Accept"] == "message/rfc822, */*"
    assert result.size == len(BODY) and result.vsize == len(BODY) + BODY.count(b"\n") - BODY.count(
        b"\r\n"
    )


class Rewindable(io.BytesIO):
    """Counts the rewinds the client asks for."""

    rewinds = 0

    def truncate(self, size: int | None = None) -> int:
        self.rewinds += 1
        return super().truncate(size)


def test_download_retry_rewinds_and_truncates(api: MockApi) -> None:
    big = BODY * 10  # > 64 KiB: the cut attempt writes a first chunk before failing
    cut = httpx.Response(
        200, headers={"Content-Length": str(len(big))}, stream=CutStream([big[:100_000]])
    )
    api.on("GET", "/api/v1/mails/m1/source", cut, status(503), status(200, big))
    out = Rewindable()
    result = api.client().download_source("m1", out)
    assert out.getvalue() == big and result.size == len(big)
    assert out.rewinds == 1  # the 503 wrote nothing; only the cut attempt needed undoing
    clean = Rewindable()
    api.on("GET", "/api/v1/mails/m1/source", status(200, big))
    api.client().download_source("m1", clean)
    assert clean.rewinds == 0  # no retry, no rewind


def test_download_content_length_mismatch(api: MockApi) -> None:
    short = httpx.Response(200, headers={"Content-Length": "999999"}, stream=ChunkStream([BODY]))
    api.on("GET", "/api/v1/mails/m1/source", short, status(200, BODY))
    client = api.client()
    assert client.download_source("m1", io.BytesIO()).size == len(BODY)  # retried once
    api.on("GET", "/api/v1/mails/m1/source", short)
    with pytest.raises(IntegrityError, match="Content-Length 999999"):
        client.download_source("m1", io.BytesIO())
    assert client.request_counts["GET /api/v1/mails/{id}/source"] == 2 + 4


def test_download_expected_size(api: MockApi) -> None:
    api.on("GET", "/api/v1/mails/m1/source", status(200, BODY))
    client = api.client()
    with pytest.raises(IntegrityError, match="expected 5 bytes"):
        client.download_source("m1", io.BytesIO(), expected_size=5)
    assert client.request_counts["GET /api/v1/mails/{id}/source"] == 1  # complete body: no retry
    api.on("GET", "/api/v1/mails/m1/source", httpx.Response(200, stream=ChunkStream([BODY])))
    with pytest.raises(IntegrityError):
        client.download_source("m1", io.BytesIO(), expected_size=5)
    assert client.request_counts["GET /api/v1/mails/{id}/source"] == 1 + 4  # no length: retried


class Pipe(io.RawIOBase):
    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.data += bytes(b)
        return len(b)


def test_download_to_non_seekable_output(api: MockApi) -> None:
    api.on("GET", "/api/v1/mails/m1/source", status(503), status(200, BODY))
    pipe = Pipe()
    api.client().download_source("m1", pipe)  # type: ignore[arg-type]
    assert bytes(pipe.data) == BODY
    api.on(
        "GET",
        "/api/v1/mails/m1/source",
        httpx.Response(200, stream=CutStream([b"x" * 70_000])),
        status(200, BODY),
    )
    with pytest.raises(ServerUnreachable, match="cannot be rewound"):
        api.client().download_source("m1", Pipe())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- labels, mails


def test_labels(api: MockApi) -> None:
    api.on("GET", "/api/v1/labels", ok([{"id": "1", "name": "A"}]))
    client = api.client()
    assert client.list_labels().sync_token == client.labels_token()
    api.on("PATCH", "/api/v1/labels/1", status(405))
    api.on("PUT", "/api/v1/labels/1", status(200))
    assert client.rename_label("1", "B").name == "B"
    client.rename_label("1", "C")
    assert len(api.calls("PATCH", "/api/v1/labels/1")) == 1
    assert len(api.calls("PUT", "/api/v1/labels/1")) == 2
    api.on("POST", "/api/v1/labels", ok({"id": "2", "name": "New"}))
    assert client.create_label("New").id == "2"


def test_create_mail_camel_cases_fields(api: MockApi) -> None:
    api.on("POST", MAILS, mail(9))
    api.client().create_mail(
        FOLDER, subject="s", body_text="b", is_unread=False, from_="a@b", replyTo="r"
    )
    import json

    body = json.loads(api.calls("POST", MAILS)[0].content)
    assert body == {
        "subject": "s",
        "bodyText": "b",
        "isUnread": False,
        "from": "a@b",
        "replyTo": "r",
        "folderId": FOLDER,
    }


def test_update_mail_without_flags_reads(api: MockApi) -> None:
    api.on("GET", "/api/v1/mails/m1", mail(1))
    api.on("PATCH", "/api/v1/mails/m1", status(200))
    client = api.client()
    assert client.update_mail("m1").id == "m1"
    assert client.update_mail("m1", is_unread=True).id == "m1"  # empty reply: read back
    assert client.request_counts["GET /api/v1/mails/{id}"] == 2


# ---------------------------------------------------------------------------- batch


def test_batch_chunks_dedupes_and_reports(api: MockApi) -> None:
    api.on(
        "POST",
        "/api/v1/batch/mails/move",
        ok(
            {
                "batchOperationDetails": {"failedItems": ["b"]},
                "status": "completed",
                "progress": 100,
            }
        ),
        ok(
            {"jobKey": "J", "status": "inProgress", "progress": 0, "failedItems": ["d"]}, status=201
        ),
    )
    results = api.client().batch(
        "mails/move", ["a", "b", "a", "c", "d"], chunk_size=3, destination_folder_id="80_9"
    )
    assert [r.requested for r in results] == [("a", "b", "c"), ("d",)]
    assert results[0].failed_items == ("b",) and not results[0].is_async
    assert results[1].is_async and results[1].job_key == "J" and results[1].failed_items == ("d",)
    import json

    body = json.loads(api.calls("POST", "/api/v1/batch/mails/move")[0].content)
    assert body == {"destinationFolderId": "80_9", "ids": ["a", "b", "c"]}
    assert api.client().batch("mails/delete", []) == []


def test_batch_failure_keeps_completed_chunks_and_is_not_retried(api: MockApi) -> None:
    api.on("POST", "/api/v1/batch/mails/update", ok({"status": "completed"}), read_error())
    with pytest.raises(ServerUnreachable) as info:
        api.client().batch("mails/update", ["a", "b"], chunk_size=1, is_unread=False)
    assert len(info.value.details["completed"]) == 1
    assert len(api.calls("POST", "/api/v1/batch/mails/update")) == 2


@pytest.mark.parametrize(
    ("op", "params"),
    [
        ("mails/explode", {}),
        ("mails/move", {}),
        ("mails/update", {}),
        ("mails/update", {"is_unread": "yes"}),
        ("mails/labels/add", {"destination_folder_id": "x"}),
        ("mails/delete", {"label_id": "x"}),
        ("mails/delete", {"colour": "red"}),
    ],
)
def test_batch_bad_arguments(api: MockApi, op: str, params: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        api.client().batch(op, ["a"], **params)
    assert api.requests == []


# ---------------------------------------------------------------------------- fuzzing

CALLS: list[Any] = [
    lambda c: c.server_info(),
    lambda c: c.capabilities(),
    lambda c: c.account_info(),
    lambda c: c.index_info("80_1"),
    lambda c: c.list_folders(),
    lambda c: c.folders_token(),
    lambda c: c.folders_delta("t"),
    lambda c: c.create_folder("x"),
    lambda c: c.rename_folder("f", "x"),
    lambda c: c.mails_token(FOLDER),
    lambda c: c.mails_page(FOLDER, 0, 10),
    lambda c: c.list_all_mails(FOLDER),
    lambda c: list(c.iter_mails_delta(FOLDER, None)),
    lambda c: c.get_mail("m1"),
    lambda c: c.update_mail("m1", is_unread=True),
    lambda c: c.move_mail("m1", "f"),
    lambda c: c.create_mail(FOLDER, subject="s"),
    lambda c: c.list_labels(),
    lambda c: c.labels_token(),
    lambda c: c.create_label("x"),
    lambda c: c.rename_label("l", "x"),
    lambda c: list(c.iter_conversations(FOLDER)),
    lambda c: c.get_conversation("c"),
    lambda c: c.get_conversation("c", token_only=True),
    lambda c: c.mail_conversation("m1"),
    lambda c: c.batch("mails/delete", ["a"]),
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "syncToken",
                    "totalItems",
                    "items",
                    "id",
                    "name",
                    "moreAvailable",
                    "mails",
                    "sessid",
                    "size",
                    "date",
                    "folderId",
                    "parentId",
                    "events",
                    "mailId",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CALLS), json_values)
def test_any_json_reply_gives_a_model_or_an_api_error(call: Any, data: object) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/login":
            return ok({"sessid": "s"})
        return ok(data)

    client = ApiClient(
        "http://axigen.test", "u", "p", transport=httpx.MockTransport(reply), max_retries=0
    )
    try:
        call(client)
    except ApiError:
        pass
