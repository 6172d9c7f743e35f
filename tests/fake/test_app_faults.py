"""Over HTTP: injected faults (503 + Retry-After, dropped bodies, latency), reproducibly."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from axsync.fake.server import FakeAxigen

from .conftest import Api, add_mails


def test_503_with_retry_after_and_counted(api: Api) -> None:
    knobs = api.fake.knobs
    knobs.fail_rate, knobs.retry_after = 1.0, 1.5
    api.fake.reset_counters()
    reply = api.request("GET", "/api/v1/labels")
    assert reply.status_code == 503 and reply.headers["retry-after"] == "2"
    assert reply.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    knobs.retry_after = 0
    assert api.request("POST", "/api/v1/labels", json={"name": "x"}).headers["retry-after"] == "0"
    assert api.fake.mailbox.labels() == []  # a refused request changes nothing
    assert api.fake.counters == {"GET /api/v1/labels": 1, "POST /api/v1/labels": 1}


def _statuses(fake: FakeAxigen, api: Api, count: int) -> list[int]:
    fake.knobs.fault_seed = fake.knobs.fault_seed  # setting the seed restarts the draws
    return [api.request("GET", "/api/").status_code for _ in range(count)]


def test_fail_rate_is_a_reproducible_fraction(api: Api) -> None:
    fake = api.fake
    fake.knobs.fail_rate, fake.knobs.fault_seed = 0.3, 11
    first = _statuses(fake, api, 120)
    assert set(first) == {200, 503} and 15 <= first.count(503) <= 60
    assert _statuses(fake, api, 120) == first
    fake.knobs.fault_seed = 12
    assert _statuses(fake, api, 120) != first


def test_dropped_bodies_make_httpx_raise(api: Api, inbox: str) -> None:
    mail = add_mails(api.fake.mailbox, inbox, 1)[0]
    api.fake.knobs.drop_rate = 1.0
    for path in (f"/api/v1/mails/{mail}/source", f"/api/v1/mails/{mail}", "/api/"):
        with pytest.raises(httpx.RemoteProtocolError):
            api.request("GET", path)
    # a reply without a body has nothing to cut; the request itself took effect
    assert api.request("DELETE", f"/api/v1/mails/{mail}").status_code == 200
    assert api.fake.mailbox.mails(inbox) == []
    api.fake.knobs.drop_rate = 0.0
    assert api.request("GET", "/api/").status_code == 200  # the client reconnects


def test_dropped_body_after_a_change(api: Api) -> None:
    api.fake.knobs.drop_rate = 1.0
    with pytest.raises(httpx.RemoteProtocolError):
        api.request("POST", "/api/v1/labels", json={"name": "made"})
    assert [name for _, name in api.fake.mailbox.labels()] == ["made"]


def test_latency_keeps_concurrency(api: Api) -> None:
    api.fake.knobs.latency = 0.4
    elapsed: list[float] = []

    def one() -> None:
        start = time.monotonic()
        with httpx.Client(base_url=api.fake.url, headers=api.http.headers, verify=False) as http:
            assert http.get("/api/v1/labels").status_code == 200
        elapsed.append(time.monotonic() - start)

    start = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(elapsed) == 6 and min(elapsed) >= 0.4
    assert time.monotonic() - start < 1.5  # six 0.4 s requests overlapped


def _spike_pattern(fake: FakeAxigen, count: int) -> list[bool]:
    """The next ``count`` spike draws after restarting the seed, read off the service."""
    fake.knobs.fault_seed = fake.knobs.fault_seed
    return [fake.service.draw_faults()[2] > 0 for _ in range(count)]


def test_latency_spikes_hit_the_requests_the_seed_picks(api: Api) -> None:
    fake = api.fake
    knobs = fake.knobs
    knobs.spike_rate, knobs.spike_latency, knobs.fault_seed = 0.25, 0.2, 11
    expected = _spike_pattern(fake, 40)
    assert 4 <= sum(expected) <= 18  # about a quarter of the requests
    assert _spike_pattern(fake, 40) == expected  # the same seed, the same spikes
    knobs.fault_seed = 12
    assert _spike_pattern(fake, 40) != expected
    knobs.fault_seed = 11  # restarts the draws: the 40 requests below see `expected`
    slow: list[bool] = []
    for _ in range(40):
        start = time.monotonic()
        assert api.request("GET", "/api/").status_code == 200
        slow.append(time.monotonic() - start >= 0.2)
    assert all(s for s, e in zip(slow, expected, strict=True) if e), (slow, expected)
    # a request without a spike is fast (a loaded machine may stall one now and then)
    assert sum(s for s, e in zip(slow, expected, strict=True) if not e) <= 2, (slow, expected)


def test_spikes_do_not_move_the_other_faults(api: Api) -> None:
    fake = api.fake
    knobs = fake.knobs
    knobs.fail_rate, knobs.drop_rate, knobs.fault_seed = 0.3, 0.1, 5
    plain = [fake.service.draw_faults()[:2] for _ in range(200)]
    knobs.spike_rate, knobs.spike_latency, knobs.fault_seed = 0.5, 1.0, 5
    draws = [fake.service.draw_faults() for _ in range(200)]
    assert [d[:2] for d in draws] == plain
    assert {d[2] for d in draws} == {0.0, 1.0} and 60 <= sum(d[2] > 0 for d in draws) <= 140
    knobs.spike_rate = 0.0
    assert all(fake.service.draw_faults()[2] == 0.0 for _ in range(50))


def test_spike_options_on_the_command_line() -> None:
    from click.testing import CliRunner

    from axsync.cli import cli
    from axsync.cli.fake import register

    register(cli)
    runner = CliRunner()
    help_text = runner.invoke(cli, ["fake-server", "--help"]).output
    assert "--spike-rate" in help_text and "--spike-ms" in help_text
    assert runner.invoke(cli, ["fake-server", "--spike-rate", "1.5"]).exit_code == 2
