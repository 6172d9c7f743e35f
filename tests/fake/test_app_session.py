"""Over HTTP: versions, login, sessions, account, index info, counters, error shapes."""

from __future__ import annotations

import base64

import httpx
import pytest

from axsync.fake.server import FakeAxigen

from .conftest import BASIC, PASSWORD, USER, Api, add_mails


@pytest.mark.parametrize(("generation", "server_version"), [("10.4", "10.4.30"), ("10.6", "10.6.20")])
def test_version_needs_no_login(
    fake: FakeAxigen, anon: httpx.Client, generation: str, server_version: str
) -> None:
    fake.knobs.api_version = generation
    reply = anon.get("/api/")
    assert reply.json() == {"apiVersion": "1.2.0", "serverVersion": server_version}


def test_login_forms(fake: FakeAxigen, anon: httpx.Client) -> None:
    api = Api(fake)
    assert api.login(BASIC)
    assert api.login(f"Basic {USER}:{PASSWORD}")  # the literal form the docs print
    for bad in (None, "Basic " + base64.b64encode(f"{USER}:wrong".encode()).decode(), "Bearer x", "Basic !!"):
        headers = {"Authorization": bad} if bad else {}
        reply = anon.post("/api/v1/login", headers=headers)
        assert reply.status_code == 401 and reply.json()["error"]["code"] == "UNAUTHORIZED"
    api.close()


def test_every_call_needs_session_and_same_authorization(
    fake: FakeAxigen, anon: httpx.Client
) -> None:
    api = Api(fake)
    sid = api.login()
    assert api.get("/api/v1/account/info")["accountName"] == "alice"
    cases = [
        {"Authorization": BASIC},  # no session
        {"Authorization": BASIC, "X-Axigen-Session": "unknown"},
        {"X-Axigen-Session": sid},  # no Authorization
        {"Authorization": f"Basic {USER}:{PASSWORD}", "X-Axigen-Session": sid},  # a different one
    ]
    for headers in cases:
        reply = anon.get("/api/v1/account/info", headers=headers)
        assert reply.status_code == 401, headers
    api.close()


def test_session_expires_after_n_requests(api: Api) -> None:
    api.fake.knobs.session_max_requests = 3
    for _ in range(3):
        api.get("/api/v1/labels")
    assert api.error("GET", "/api/v1/labels", 401) == "UNAUTHORIZED"
    api.fake.knobs.session_max_requests = None
    assert api.error("GET", "/api/v1/labels", 401)  # the session is gone for good
    api.login()
    api.get("/api/v1/labels")


def test_account_info_fields(api: Api) -> None:
    add_mails(api.fake.mailbox, api.fake.mailbox.folder_id("INBOX"), 3)
    info = api.get("/api/v1/account/info")
    assert info["accountName"] == "alice" and info["domainName"] == "example.com"
    assert info["folderContainerId"] == api.fake.mailbox.container_id
    assert info["usedMessageCount"] == 3 and info["allowConversationView"] is True
    assert info["isFirstApiLogin"] is True
    for key in ("fullName", "accountClass", "totalQuota", "usedQuota", "remainingQuota", "autopurge",
                "twoFactorAuthConfigured", "restrictions", "remainingMessageCount", "overQuotaThreshold"):
        assert key in info
    api.fake.knobs.conversation_index = "unavailable"
    assert api.get("/api/v1/account/info")["allowConversationView"] is False


def test_index_info(api: Api) -> None:
    container = api.fake.mailbox.container_id
    reply = api.get("/api/v1/account/indexinfo", ids="conversation,sort", scope=container)
    assert reply == [
        {"id": "conversation", "state": "uptodate", "progress": 1.0},
        {"id": "sort", "state": "initialized", "progress": 1.0},
    ]
    api.fake.knobs.conversation_index = "unavailable"
    params = [("ids", "conversation"), ("ids", "search"), ("scope", api.fake.mailbox.folder_id("INBOX"))]
    reply = api.call("GET", "/api/v1/account/indexinfo", params=params)
    assert reply[0] == {"id": "conversation", "state": "unavailable", "progress": 0.0}
    assert reply[1]["id"] == "search"
    api.error("GET", "/api/v1/account/indexinfo", 400, params={"ids": "conversation"})
    api.error("GET", "/api/v1/account/indexinfo", 400, params={"ids": "nope", "scope": container})
    api.error("GET", "/api/v1/account/indexinfo", 400, params={"ids": "sort", "scope": "80_999"})


def test_unread_counter_needs_auth_but_no_session(
    fake: FakeAxigen, anon: httpx.Client, inbox: str
) -> None:
    ids = add_mails(fake.mailbox, inbox, 3)
    fake.mailbox.set_flags(ids[0], unread=False)
    fake.mailbox.add_mail(fake.mailbox.folder_id("Sent"), b"Subject: x\r\n\r\n")
    reply = anon.get("/api/v1/mails/counters", headers={"Authorization": BASIC})
    assert reply.json() == {"unreadCount": 2}
    assert anon.get("/api/v1/mails/counters").status_code == 401


def test_unknown_paths_and_methods(api: Api) -> None:
    assert api.error("GET", "/api/v1/nothing/here", 404) == "NOT_FOUND"
    assert api.error("PUT", "/api/v1/labels", 405) == "METHOD_NOT_ALLOWED"
    assert api.error("GET", "/api/v1/mails/", 404) == "NOT_FOUND"  # no slash redirects


def test_undocumented_parameters_are_refused(api: Api, inbox: str) -> None:
    api.error("GET", "/api/v1/mails", 400, params={"folderId": inbox, "color": "red"})
    api.error("POST", "/api/v1/labels", 400, json={"name": "x", "color": "red"})
    api.error("POST", "/api/v1/labels", 400, content=b"{not json")
    api.error("POST", "/api/v1/labels", 400, json=["name"])
    api.error("GET", "/api/v1/mails", 400, params={"folderId": inbox, "syncTokenOnly": "yes"})
    api.error("GET", "/api/v1/mails", 400, params={"folderId": inbox, "limit": "0"})
    api.error("GET", "/api/v1/mails", 400, params={"folderId": inbox, "start": "-1"})


def test_counters_per_route_template(api: Api, inbox: str) -> None:
    fake = api.fake
    fake.reset_counters()
    mail = add_mails(fake.mailbox, inbox, 1)[0]
    api.request("GET", f"/api/v1/mails/{mail}/source")
    api.request("GET", "/api/v1/mails/nope/source")
    api.request("GET", "/api/v1/folders/")
    api.request("GET", "/api/v1/nothing")
    assert fake.counters == {
        "GET /api/v1/mails/{mailId}/source": 2,
        "GET /api/v1/folders/": 1,
        "GET <unmatched>": 1,
    }
    assert fake.total_requests() == 4
    fake.reset_counters()
    assert fake.total_requests() == 0
