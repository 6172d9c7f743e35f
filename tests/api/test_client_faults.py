"""ApiClient against a misbehaving fake Axigen over real loopback HTTP: 503 storms, dropped
bodies, sessions that expire every few requests, missing endpoints, expired tokens, async
batches, timeouts."""

from __future__ import annotations

import hashlib
import io
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from axsync.api import ApiClient, Capabilities
from axsync.errors import EndpointMissing, ServerUnreachable, TokenRejected
from axsync.fake.server import FakeAxigen

from .conftest import MakeClient, MakeFake
from .test_client_contract import admin_view, client_view, inbox, mail_folders


def download_all(client: ApiClient, fake: FakeAxigen, workers: int = 4) -> None:
    """Download every mail and check its bytes and digest against the server's copy."""
    raw = {m.id: m.raw for m in fake.mailbox.mails()}

    def fetch(mail_id: str) -> None:
        out = io.BytesIO()
        result = client.download_source(mail_id, out, expected_size=len(raw[mail_id]))
        assert out.getvalue() == raw[mail_id]
        assert result.sha256 == hashlib.sha256(raw[mail_id]).hexdigest()

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(fetch, sorted(raw)))


def test_503_storm(make_fake: MakeFake, make_client: MakeClient) -> None:
    fake = make_fake(fail_rate=0.3, retry_after=0, fault_seed=11)
    client = make_client(fake)
    archive = fake.mailbox.folder_id(("Archive",))
    folders = client.list_folders()
    assert {f.id for f in folders.items} == set(mail_folders(fake))
    for folder_id in mail_folders(fake):
        _, mails = client.list_all_mails(folder_id, page_size=10)
        assert client_view(mails) == admin_view(fake, folder_id)
    for mail_id in sorted(m.id for m in fake.mailbox.mails(inbox(fake)))[:15]:
        download_all_one = io.BytesIO()
        client.download_source(mail_id, download_all_one)
    # A refused (503) non-idempotent call is safe to send again: exactly one move happens.
    victim = sorted(fake.mailbox.mails(inbox(fake)), key=lambda m: m.id)[0]
    moved = client.move_mail(victim.id, archive)
    assert fake.mailbox.get_mail(moved.id).folder_id == archive
    assert [m.raw for m in fake.mailbox.mails(archive)].count(victim.raw) == 1
    client.batch("mails/update", [moved.id], is_flagged=True)
    assert client.requests == fake.total_requests()
    assert (
        fake.counters.get("GET /api/v1/mails", 0) > client.request_counts["GET /api/v1/mails"] * 0.5
    )
    assert client.requests > len(mail_folders(fake)) + 20  # retries happened and were counted


def test_dropped_bodies(make_fake: MakeFake, make_client: MakeClient) -> None:
    fake = make_fake(drop_rate=0.2, fault_seed=5, big=2)  # 2 of 1-5 MB: cut mid-stream
    client = make_client(fake, max_retries=10, concurrency=4)
    download_all(client, fake)
    for folder_id in list(mail_folders(fake))[:6]:
        _, mails = client.list_all_mails(folder_id, page_size=5)
        assert client_view(mails) == admin_view(fake, folder_id)
    sent = client.request_counts["GET /api/v1/mails/{id}/source"]
    assert sent > len(fake.mailbox.mails())  # some downloads were cut and fetched again
    assert client.requests == fake.total_requests()


def test_cut_download_is_rewound_over_http(make_fake: MakeFake, make_client: MakeClient) -> None:
    fake = make_fake(big=1)
    big = max(fake.mailbox.mails(), key=lambda m: len(m.raw))
    assert len(big.raw) > 1_000_000

    class CutOnce(httpx.HTTPTransport):
        """The first download is cut mid-body by the server; later ones are not."""

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            fake.knobs.drop_rate = 1.0 if request.url.path.endswith("/source") and not seen else 0.0
            if request.url.path.endswith("/source"):
                seen.append(request)
            return super().handle_request(request)

    seen: list[httpx.Request] = []
    client = make_client(fake, transport=CutOnce())

    class Counting(io.BytesIO):
        rewinds = 0

        def truncate(self, size: int | None = None) -> int:
            self.rewinds += 1
            return super().truncate(size)

    out = Counting()
    result = client.download_source(big.id, out, expected_size=len(big.raw))
    assert len(seen) == 2 and out.rewinds == 1
    assert out.getvalue() == big.raw
    assert result.sha256 == hashlib.sha256(big.raw).hexdigest()


def test_dropped_reply_to_a_move_is_reported_not_repeated(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    fake = make_fake()
    client = make_client(fake)
    client.login()
    archive = fake.mailbox.folder_id(("Archive",))
    victim = sorted(fake.mailbox.mails(inbox(fake)), key=lambda m: m.id)[0]
    fake.knobs.drop_rate = 1.0
    with pytest.raises(ServerUnreachable, match="NOT retried") as info:
        client.move_mail(victim.id, archive)
    assert info.value.details["maybe_applied"]
    assert client.request_counts["POST /api/v1/mails/{id}/move"] == 1
    assert [m.raw for m in fake.mailbox.mails(archive)].count(victim.raw) == 1  # it did happen


class StatusRecorder(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[tuple[str, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.statuses.append((request.url.path, response.status_code))
        return response


def test_session_expiring_every_5_requests(make_fake: MakeFake, make_client: MakeClient) -> None:
    fake = make_fake(session_max_requests=5)
    recorder = StatusRecorder()
    client = make_client(fake, concurrency=8, transport=recorder)
    for folder_id in mail_folders(fake):
        _, mails = client.list_all_mails(folder_id, page_size=9)
        assert client_view(mails) == admin_view(fake, folder_id)
    label = client.create_label("Expiring")
    client.batch(
        "mails/labels/add", [m.id for m in fake.mailbox.mails(inbox(fake))], label_id=label.id
    )
    download_all(client, fake)
    logins = client.request_counts["POST /api/v1/login"]
    served = sum(1 for path, code in recorder.statuses if code == 200 and path != "/api/v1/login")
    # Each session serves exactly 5 requests; threads that hit the same dead session share
    # one re-login, so no login is wasted.
    assert served // 5 <= logins <= served // 5 + 1
    assert client.requests == fake.total_requests() == len(recorder.statuses)


def test_tiny_sessions_under_eight_workers(make_fake: MakeFake, make_client: MakeClient) -> None:
    """Sessions die after 2 requests while 8 workers download: every worker gets through,
    and the workers that see the same session die share one re-login."""
    fake = make_fake(session_max_requests=2, drop_rate=0.05, fault_seed=3)
    client = make_client(fake, concurrency=8, max_retries=10)
    download_all(client, fake, workers=8)
    downloads = len(fake.mailbox.mails())
    assert client.request_counts["POST /api/v1/login"] < downloads
    assert client.requests == fake.total_requests()


def test_delta_404_on_10_4_downgrades(make_fake: MakeFake, make_client: MakeClient) -> None:
    fake = make_fake("10.4")
    client = make_client(fake)
    folder = inbox(fake)
    with pytest.raises(EndpointMissing):
        client.mails_delta(folder, None)
    with pytest.raises(EndpointMissing):
        client.folders_delta("")
    assert client.capabilities() == Capabilities(mail_delta=False, folder_delta=False)
    before = client.requests
    for _ in range(3):
        with pytest.raises(EndpointMissing):
            client.mails_delta(folder, "t")
    assert client.requests == before  # downgraded: nothing more is sent
    _, mails = client.list_all_mails(folder)  # the fallback works
    assert client_view(mails) == admin_view(fake, folder)


def test_expired_tokens_are_rejected(make_fake: MakeFake, make_client: MakeClient) -> None:
    fake = make_fake(delta_retention=3)
    client = make_client(fake)
    folder = inbox(fake)
    mail_token = list(client.iter_mails_delta(folder, None))[-1].sync_token
    folder_token = client.folders_delta().sync_token
    assert client.mails_delta(folder, mail_token).new == ()
    ids = sorted(m.id for m in fake.mailbox.mails(folder))[:5]
    for mail_id in ids:  # more changes than the server keeps
        client.update_mail(mail_id, is_flagged=True, is_unread=False)
        client.create_folder(f"F {mail_id}")
    with pytest.raises(TokenRejected):
        client.mails_delta(folder, mail_token)
    with pytest.raises(TokenRejected):
        client.folders_delta(folder_token)
    fresh = list(client.iter_mails_delta(folder, None))[-1].sync_token
    fake.mailbox.expire_tokens()
    with pytest.raises(TokenRejected):
        client.mails_delta(folder, fresh)
    assert client.capabilities().mail_delta  # a refused token is no missing endpoint


def test_async_batches_reported(make_fake: MakeFake, make_client: MakeClient) -> None:
    fake = make_fake(async_batch_threshold=4, async_batch_delay=0.05)
    client = make_client(fake)
    ids = sorted(m.id for m in fake.mailbox.mails(inbox(fake)))[:9]
    results = client.batch("mails/update", ids, chunk_size=5, is_unread=True)
    assert [(r.http_status, r.is_async, len(r.requested)) for r in results] == [
        (201, True, 5),
        (200, False, 4),
    ]
    assert results[0].job_key and results[0].status == "inProgress"
    deadline = time.monotonic() + 3
    while not all(fake.mailbox.get_mail(i).unread for i in ids):
        assert time.monotonic() < deadline, "the async batch was never applied"
        time.sleep(0.02)


def test_timeouts(make_fake: MakeFake, make_client: MakeClient) -> None:
    fake = make_fake()
    client = make_client(fake, timeout=0.2, max_retries=1)
    client.login()
    archive = fake.mailbox.folder_id(("Archive",))
    fake.knobs.latency = 0.5
    with pytest.raises(ServerUnreachable, match="after 2 attempts"):
        client.list_labels()
    assert client.request_counts["GET /api/v1/labels"] == 2
    mail_id = sorted(m.id for m in fake.mailbox.mails(inbox(fake)))[0]
    with pytest.raises(ServerUnreachable, match="may have reached the server"):
        client.copy_mail(mail_id, archive)
    assert client.request_counts["POST /api/v1/mails/{id}/copy"] == 1
