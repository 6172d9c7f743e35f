"""Reply/forward marks set on the server reach the archive on 10.6 too, where the delta's
updatedItems carry no refwFlags: few updates are asked one by one, a folder that mostly
changed is listed."""

from __future__ import annotations

import pytest

from axsync.sync.pull import LISTING_PAGE, REFW_LOOKUPS, REFW_PAGE_COST
from tests.sync.conftest import MakeEnv


@pytest.mark.parametrize(("messages", "count"), [(120, 3), (120, 40), (1400, 45)])
def test_refw_of_updated_mails_is_fetched_cheaply(make_env: MakeEnv, messages: int, count: int) -> None:
    env = make_env("10.6", messages=messages)
    env.ok()
    inbox = sorted(env.mb.mails(env.folder("INBOX")), key=lambda m: m.id)
    pages = -(-len(inbox) // LISTING_PAGE)
    if messages > 1000:  # 45 of a big INBOX: asked one by one, not 2+ listing pages
        assert pages >= 2
    targets = [m for m in inbox if "re" not in m.refw][:count]
    assert len(targets) == count
    for m in targets:
        env.mb.set_flags(m.id, refw="re")
    env.fake.reset_counters()
    report = env.ok()
    assert report.pulled.updated == count
    singles = env.fake.counters.get("GET /api/v1/mails/{mailId}", 0)
    listings = env.fake.counters.get("GET /api/v1/mails", 0)
    if count <= max(REFW_LOOKUPS, REFW_PAGE_COST * pages):
        assert singles == count and listings == 0
    else:
        assert singles == 0 and 1 <= listings <= 3
    env.check()
