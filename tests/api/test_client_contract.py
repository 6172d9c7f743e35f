"""Every ApiClient method against the fake Axigen server over real loopback HTTP, on both
API generations (10.4: no deltas; 10.6: mails and folders delta)."""

from __future__ import annotations

import hashlib
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from axsync.api import ApiClient, Capabilities
from axsync.api.download import vsize_of
from axsync.errors import (
    AuthError,
    BadRequest,
    EndpointMissing,
    MalformedReply,
    NotFound,
    TokenRejected,
)
from axsync.fake.server import FakeAxigen
from axsync.model import Mail

from .conftest import PASSWORD, USER, MakeClient, MakeFake

DELTA = "10.6"


def inbox(fake: FakeAxigen) -> str:
    return fake.mailbox.special_folder_id("inbox")


def mail_folders(fake: FakeAxigen) -> dict[str, object]:
    return {f.id: f for f in fake.mailbox.folders() if f.folder_type == "mails"}


def admin_view(fake: FakeAxigen, folder_id: str) -> dict[str, tuple[object, ...]]:
    return {
        m.id: (
            m.folder_id,
            len(m.raw),
            m.date,
            m.unread,
            m.flagged,
            m.draft,
            tuple(sorted(m.label_ids)),
        )
        for m in fake.mailbox.mails(folder_id)
    }


def client_view(mails: list[Mail]) -> dict[str, tuple[object, ...]]:
    return {
        m.id: (
            m.folder_id,
            m.size,
            m.date,
            m.flags.is_unread,
            m.flags.is_flagged,
            m.flags.is_draft,
            tuple(sorted(m.label_ids)),
        )
        for m in mails
    }


# ---------------------------------------------------------------------------- server, session


def test_server_info_capabilities_and_login(
    client: ApiClient, fake: FakeAxigen, api_version: str
) -> None:
    info = client.server_info()
    assert info.server_version == fake.knobs.server_version
    expected = api_version == DELTA
    assert client.capabilities() == Capabilities(mail_delta=expected, folder_delta=expected)
    assert client.requests == 1  # GET /api/ needs no session; the version is cached
    client.login()
    account = client.account_info()
    assert f"{account.account_name}@{account.domain_name}" == USER
    assert account.folder_container_id == fake.mailbox.container_id
    states = client.index_info(account.folder_container_id, ["conversation"])
    assert [s.id for s in states] == ["conversation"]
    assert client.request_counts["POST /api/v1/login"] == 1
    assert client.requests == fake.total_requests()


def test_wrong_password_is_auth_error(make_fake: MakeFake, api_version: str) -> None:
    fake = make_fake(api_version)
    with ApiClient(fake.url, USER, PASSWORD + "x") as client, pytest.raises(AuthError):
        client.list_folders()


# ---------------------------------------------------------------------------- folders


def test_list_folders_and_token(client: ApiClient, fake: FakeAxigen) -> None:
    listing = client.list_folders()
    admin = mail_folders(fake)
    assert {f.id for f in listing.items} == set(admin)
    for folder in listing.items:
        known = admin[folder.id]
        assert (folder.name, folder.parent_id, folder.role) == (
            known.name,
            known.parent_id,
            known.role,
        )  # type: ignore[attr-defined]
        assert folder.total_items == known.total  # type: ignore[attr-defined]
    assert client.folders_token() == listing.sync_token
    client.create_folder("Fresh")
    assert client.folders_token() != listing.sync_token


def test_folder_crud(client: ApiClient, fake: FakeAxigen) -> None:
    container = client.account_info().folder_container_id
    top = client.create_folder("Clients")
    assert top.parent_id == container and top.folder_type == "mails"
    child = client.create_folder("ACME", top.id)
    assert child.parent_id == top.id
    renamed = client.rename_folder(child.id, "ACME Corp")
    assert renamed.name == "ACME Corp" and fake.mailbox.folder_path(renamed.id)[-1] == "ACME Corp"
    moved = client.move_folder(renamed.id, container)
    assert moved.parent_id == container
    with pytest.raises(BadRequest):
        client.create_folder("Clients")  # the name is taken
    client.delete_folder(top.id)
    trash = fake.mailbox.special_folder_id("trash")
    remaining = {f.id: f for f in client.list_folders().items}
    assert top.id not in remaining or remaining[top.id].parent_id == trash  # deleteToTrash
    special = next(f for f in client.list_folders().items if f.role == "inbox")
    with pytest.raises(Exception) as info:
        client.rename_folder(special.id, "Renamed inbox")
    assert getattr(info.value, "status", None) in (400, 403)


def test_folders_delta(client: ApiClient, fake: FakeAxigen, api_version: str) -> None:
    if api_version != DELTA:
        with pytest.raises(EndpointMissing):
            client.folders_delta()
        assert not client.capabilities().folder_delta
        with pytest.raises(EndpointMissing):
            client.folders_delta()
        assert client.request_counts["GET /api/v1/folders/delta"] == 1
        return
    first = client.folders_delta()
    assert {e.id for e in first.events if e.event_type == "newFolder"} >= set(mail_folders(fake))
    # WIRE.md: a folder's content token is the token of its mail listing.
    for event in first.events[:5]:
        assert event.sync_token == client.mails_token(event.id)
    created = client.create_folder("Delta")
    client.rename_folder(created.id, "Delta 2")
    second = client.folders_delta(first.sync_token)
    assert [e.id for e in second.events] == [created.id]
    assert second.events[0].folder is not None and second.events[0].folder.name == "Delta 2"
    assert client.folders_delta(second.sync_token).events == ()
    with pytest.raises(TokenRejected):
        client.folders_delta("not-a-token")


# ---------------------------------------------------------------------------- mail listings


def test_list_all_mails_matches_server_in_every_folder(
    make_fake: MakeFake, make_client: MakeClient, api_version: str
) -> None:
    fake = make_fake(api_version, max_page_size=7)  # the server clamps pages silently
    client = make_client(fake)
    expected_requests = 0
    for folder_id in mail_folders(fake):
        token, mails = client.list_all_mails(folder_id, page_size=50)
        assert client_view(mails) == admin_view(fake, folder_id)
        assert [m.date for m in mails] == sorted(m.date for m in mails)
        assert token == client.mails_token(folder_id)
        expected_requests += max(1, -(-len(mails) // 7)) + 1  # pages of 7, plus the token call
    assert client.request_counts["GET /api/v1/mails"] == expected_requests


class Recorder(httpx.HTTPTransport):
    """A real HTTP transport that remembers every request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return super().handle_request(request)


def test_explicit_sort_beats_the_sticky_default(
    make_fake: MakeFake, make_client: MakeClient, api_version: str
) -> None:
    fake = make_fake(api_version)
    recorder = Recorder()
    client = make_client(fake, transport=recorder)
    folder = inbox(fake)
    page = client.mails_page(folder, 0, 5, sort="size", direction="DESC")  # now sticky: size/DESC
    assert [m.size for m in page.items] == sorted((m.size for m in page.items), reverse=True)
    _, mails = client.list_all_mails(folder, page_size=4)
    assert [m.date for m in mails] == sorted(m.date for m in mails)
    client.mails_token(folder)
    list(client.iter_conversations(folder, page_size=10))
    client.conversations_token(folder)
    listings = [
        r for r in recorder.sent if r.url.path in ("/api/v1/mails", "/api/v1/conversations")
    ]
    assert len(listings) > 5
    for request in listings:
        assert {"sort", "dir", "start", "limit"} <= set(request.url.params), request.url


def test_listing_restarts_when_the_folder_changes_midway(
    make_fake: MakeFake, make_client: MakeClient, api_version: str
) -> None:
    fake = make_fake(api_version)
    folder = inbox(fake)
    victim = sorted(fake.mailbox.mails(folder), key=lambda m: m.date)[0].id
    pages = 0

    class Meddler(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal pages
            if request.url.path == "/api/v1/mails":
                pages += 1
                if pages == 3:  # another client deletes an already-listed mail
                    fake.mailbox.delete_mail(victim)
            return super().handle_request(request)

    client = make_client(fake, transport=Meddler())
    token, mails = client.list_all_mails(folder, page_size=4)
    assert victim not in {m.id for m in mails}
    assert client_view(mails) == admin_view(fake, folder)
    assert token == client.mails_token(folder)
    assert pages > 3


# ---------------------------------------------------------------------------- mails delta


def test_mails_delta(client: ApiClient, fake: FakeAxigen, api_version: str) -> None:
    folder = inbox(fake)
    if api_version != DELTA:
        with pytest.raises(EndpointMissing):
            client.mails_delta(folder, None)
        assert client.capabilities() == Capabilities(mail_delta=False, folder_delta=False)
        return
    pages = list(client.iter_mails_delta(folder, None, limit=5))
    assert len(pages) > 1 and all(p.more_available for p in pages[:-1])
    assert {m.id for p in pages for m in p.new} == set(admin_view(fake, folder))
    token = pages[-1].sync_token
    assert list(client.iter_mails_delta(folder, token))[-1].new == ()
    mails = sorted(fake.mailbox.mails(folder), key=lambda m: m.id)
    client.update_mail(mails[0].id, is_flagged=not mails[0].flagged)
    client.delete_mail(mails[1].id)
    added = fake.mailbox.add_mail(folder, b"Subject: new\r\n\r\nhello\r\n", date=1_700_000_000)
    changes = list(client.iter_mails_delta(folder, token))
    updated = {u.id for p in changes for u in p.updated}
    assert mails[0].id in updated
    assert mails[1].id in {r for p in changes for r in p.removed}
    assert added in {m.id for p in changes for m in p.new}
    fake.mailbox.expire_tokens()
    with pytest.raises(TokenRejected):
        client.mails_delta(folder, changes[-1].sync_token)
    with pytest.raises(TokenRejected):
        client.mails_delta(folder, "garbage")


def test_mails_delta_asks_for_big_pages_and_follows_a_server_that_clamps(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    """The client asks for DELTA_PAGE mails per delta page; a server that hands out
    fewer (here 7) is followed page by page to the same, complete result."""
    from axsync.api.mails import DELTA_PAGE

    fake = make_fake(DELTA, max_page_size=7)
    recorder = Recorder()
    client = make_client(fake, transport=recorder)
    folder = inbox(fake)
    pages = list(client.iter_mails_delta(folder, None))
    expected = set(admin_view(fake, folder))
    assert {m.id for p in pages for m in p.new} == expected
    assert len(pages) == max(1, -(-len(expected) // 7)) > 1
    asked = [r.url.params.get("limit") for r in recorder.sent if r.url.path.endswith("/mails/delta")]
    assert asked == [str(DELTA_PAGE)] * len(pages) and DELTA_PAGE == 1000


# ---------------------------------------------------------------------------- one mail


def test_download_every_source(client: ApiClient, fake: FakeAxigen) -> None:
    mails = fake.mailbox.mails()
    by_id = {m.id: m.raw for m in mails}

    def fetch(mail_id: str) -> tuple[str, str, int, int]:
        out = io.BytesIO()
        result = client.download_source(mail_id, out, expected_size=len(by_id[mail_id]))
        assert out.getvalue() == by_id[mail_id]
        return mail_id, result.sha256, result.size, result.vsize

    with ThreadPoolExecutor(4) as pool:
        for mail_id, sha, size, vsize in pool.map(fetch, by_id):
            raw = by_id[mail_id]
            assert (sha, size, vsize) == (hashlib.sha256(raw).hexdigest(), len(raw), vsize_of(raw))
    assert client.request_counts["GET /api/v1/mails/{id}/source"] == len(by_id)
    assert client.request_counts["POST /api/v1/login"] == 1
    with pytest.raises(NotFound):
        client.download_source("bm9wZQ", io.BytesIO())


def test_get_update_move_copy_delete(client: ApiClient, fake: FakeAxigen) -> None:
    folder = inbox(fake)
    archive = fake.mailbox.folder_id(("Archive",))
    first, second, third = sorted(fake.mailbox.mails(folder), key=lambda m: m.id)[:3]
    got = client.get_mail(first.id)
    assert (got.size, got.date, got.flags.is_unread) == (len(first.raw), first.date, first.unread)
    updated = client.update_mail(first.id, is_unread=True, is_flagged=True)
    assert updated.flags.is_unread and updated.flags.is_flagged
    assert fake.mailbox.get_mail(first.id).flagged
    assert client.update_mail(first.id).flags.is_flagged  # no change requested: just read
    moved = client.move_mail(second.id, archive)
    assert moved.folder_id == archive and fake.mailbox.get_mail(moved.id).folder_id == archive
    copy = client.copy_mail(third.id, archive)
    assert copy.id != third.id and fake.mailbox.get_mail(third.id).folder_id == folder
    client.delete_mail(copy.id)
    assert copy.id not in {m.id for m in fake.mailbox.mails(archive)}
    with pytest.raises(NotFound):
        client.get_mail("bm9wZQ")


def test_mail_labels_and_create(client: ApiClient, fake: FakeAxigen) -> None:
    folder = inbox(fake)
    mail_id = sorted(fake.mailbox.mails(folder), key=lambda m: m.id)[0].id
    label = client.create_label("Contract")
    client.add_mail_label(mail_id, label.id)
    client.add_mail_label(mail_id, label.id)  # absolute state: harmless twice
    assert label.id in client.get_mail(mail_id).label_ids
    client.remove_mail_label(mail_id, label.id)
    assert label.id not in fake.mailbox.get_mail(mail_id).label_ids
    created = client.create_mail(folder, subject="Made by axsync", body_text="hi", is_unread=False)
    assert created.folder_id == folder and created.subject == "Made by axsync"
    assert not fake.mailbox.get_mail(created.id).unread


# ---------------------------------------------------------------------------- labels


def test_labels(client: ApiClient, fake: FakeAxigen) -> None:
    listing = client.list_labels()
    assert {(lb.id, lb.name) for lb in listing.items} == set(fake.mailbox.labels())
    assert client.labels_token() == listing.sync_token
    label = client.create_label("Axsync test")
    assert client.labels_token() != listing.sync_token
    assert client.rename_label(label.id, "Axsync renamed").name == "Axsync renamed"
    for bad in ("axsync RENAMED", "junk", "x" * 129):
        with pytest.raises(BadRequest):
            client.create_label(bad)
    client.delete_label(label.id)
    assert label.id not in {lb.id for lb in client.list_labels().items}
    with pytest.raises(NotFound):
        client.delete_label(label.id)


# ---------------------------------------------------------------------------- conversations


def test_conversations(client: ApiClient, fake: FakeAxigen) -> None:
    folder = inbox(fake)
    conversations = list(client.iter_conversations(folder, page_size=3))
    assert conversations and len({c.id for c in conversations}) == len(conversations)
    assert client.conversations_token(folder) == client.conversations_page(folder, 0, 1).sync_token
    biggest = max(conversations, key=lambda c: c.mail_count)
    full = client.get_conversation(biggest.id)
    assert full.sync_token and {m.mail_id for m in full.members} == {
        m.mail_id for m in biggest.members
    }
    assert client.get_conversation(biggest.id, token_only=True).sync_token == full.sync_token
    member = biggest.members[0].mail_id
    assert client.mail_conversation(member).id == biggest.id


def test_get_conversation_members_and_token(client: ApiClient, fake: FakeAxigen) -> None:
    """The members are the server's (every folder but Spam and Trash), the token is the
    conversation's own: it moves when a member changes or one joins, and the token-only call
    returns the same value as the full read in one request."""
    convs = fake.mailbox.conversations()
    cid = max(convs, key=lambda c: (len(convs[c]), c))
    full = client.get_conversation(cid)
    assert {m.mail_id for m in full.members} == set(convs[cid]) and full.mail_count == len(convs[cid])
    assert all(m.folder_id == fake.mailbox.get_mail(m.mail_id).folder_id for m in full.members)
    before = client.requests
    only = client.get_conversation(cid, token_only=True)
    assert client.requests == before + 1 and only.sync_token == full.sync_token and only.members == ()
    member = fake.mailbox.get_mail(full.members[0].mail_id)
    fake.mailbox.set_flags(member.id, flagged=not member.flagged)
    assert client.get_conversation(cid, token_only=True).sync_token != full.sync_token
    assert client.request_counts["GET /api/v1/conversations/{id}"] >= 3


def test_get_conversation_unknown_id_is_not_found(client: ApiClient) -> None:
    with pytest.raises(NotFound):
        client.get_conversation("bm9wZQ")
    with pytest.raises(NotFound):
        client.get_conversation("bm9wZQ", token_only=True)


@pytest.mark.parametrize(
    "body",
    [
        b"<html>login</html>",
        b'{"totalItems": 1, "items": []}',  # no token
        b'{"syncToken": "t", "totalItems": 1}',  # no member list
        b'{"syncToken": "t", "totalItems": 1, "items": [{"id": 5}]}',  # a member without an id
        b'{"syncToken": 7}',
    ],
)
def test_get_conversation_malformed_reply(
    make_fake: MakeFake, make_client: MakeClient, api_version: str, body: bytes
) -> None:
    """A damaged reply from the real server's route is a MalformedReply naming the route,
    for the full read and the token-only one: never a member list guessed from it."""
    fake = make_fake(api_version)
    cid = next(iter(fake.mailbox.conversations()))

    class Damage(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            resp = super().handle_request(request)
            if request.url.path.startswith("/api/v1/conversations/"):
                resp.read()
                return httpx.Response(200, headers={"content-type": "application/json"},
                                      content=body, request=request)
            return resp

    client = make_client(fake, transport=Damage())
    with pytest.raises(MalformedReply, match=r"GET /api/v1/conversations/\{id\}"):
        client.get_conversation(cid)
    if b"syncToken" not in body or body.startswith(b'{"syncToken": 7'):
        with pytest.raises(MalformedReply):
            client.get_conversation(cid, token_only=True)
    else:
        assert client.get_conversation(cid, token_only=True).sync_token == "t"


# ---------------------------------------------------------------------------- batch


def test_batch_sync(client: ApiClient, fake: FakeAxigen) -> None:
    folder = inbox(fake)
    archive = fake.mailbox.folder_id(("Archive",))
    ids = sorted(m.id for m in fake.mailbox.mails(folder))[:6]
    [result] = client.batch("mails/update", [*ids, "bm9wZQ"], is_unread=False, is_flagged=True)
    assert result.http_status == 200 and not result.is_async and result.failed_items == ("bm9wZQ",)
    assert all(
        fake.mailbox.get_mail(i).flagged and not fake.mailbox.get_mail(i).unread for i in ids
    )
    label = client.create_label("Batch")
    results = client.batch("mails/labels/add", ids, chunk_size=4, label_id=label.id)
    assert [len(r.requested) for r in results] == [4, 2]
    assert all(label.id in fake.mailbox.get_mail(i).label_ids for i in ids)
    client.batch("mails/labels/remove", ids, label_id=label.id)
    client.batch("mails/move", ids[:2], destination_folder_id=archive)
    assert len(fake.mailbox.mails(archive)) >= 2
    conversation = next(iter(client.iter_conversations(folder)))
    [conv_result] = client.batch("conversations/update", [conversation.id], is_flagged=True)
    assert conv_result.failed_items == ()


def test_batch_async(make_fake: MakeFake, make_client: MakeClient, api_version: str) -> None:
    fake = make_fake(api_version, async_batch_threshold=3, async_batch_delay=0.05)
    client = make_client(fake)
    folder = inbox(fake)
    ids = sorted(m.id for m in fake.mailbox.mails(folder))[:5]
    [result] = client.batch("mails/update", ids, is_flagged=True)
    assert result.http_status == 201 and result.is_async and result.job_key
    done = threading.Event()
    for _ in range(100):
        if all(fake.mailbox.get_mail(i).flagged for i in ids):
            done.set()
            break
        done.wait(0.02)
    assert done.is_set()
