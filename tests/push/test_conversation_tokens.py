"""Conversation batches are checked on the server first, through the conversation's own sync
token: a conversation batch changes every member the *server* has, so it is only sent when
the server lists exactly the members the state DB knows. Both API generations.

The thread used everywhere: ``m0`` and its reply ``m1`` (see ``harness.build_mailbox``),
both unflagged and unread on the server before the first sync.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from axsync.api import ApiClient
from axsync.model import Conversation
from axsync.statedb import MessageRow
from axsync.store import LocalFile
from axsync.sync.local import Edit
from axsync.sync.push import (
    CHUNK,
    Batch,
    MailOp,
    PushContext,
    PushPlan,
    conversations_to_check,
    plan_push,
)

from .conftest import MakeEnv
from .harness import LABELS, PushEnv, client_set_flags, raw_mail

pytestmark = pytest.mark.timeout(120)

M0, M1 = "m0@push.test", "m1@push.test"
CONV_BATCH = "POST /api/v1/batch/conversations/update"
MAIL_BATCH = "POST /api/v1/batch/mails/update"
CONV_GET = "GET /api/v1/conversations/{conversationId}"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, bool]]]:
    """Every ``get_conversation`` call of the run's clients: (conversation id, token_only)."""
    calls: list[tuple[str, bool]] = []
    original = ApiClient.get_conversation

    def spy(self: ApiClient, conversation_id: str, *, token_only: bool = False) -> Conversation:
        calls.append((conversation_id, token_only))
        return original(self, conversation_id, token_only=token_only)

    monkeypatch.setattr(ApiClient, "get_conversation", spy)
    yield calls


def thread_env(make_env: MakeEnv, api_version: str) -> tuple[PushEnv, str]:
    """An env whose m0/m1 thread is one server conversation of exactly those two mails, both
    unread and unflagged, synced once; returns (env, conversation id)."""
    env = make_env(api_version, messages=8, initial_sync=False)
    ids = {k: v.id for k, v in env.server().items()}
    for key in (M0, M1):
        env.mb.set_flags(ids[key], unread=True, flagged=False)
    env.ok()
    env.check()
    [cid] = [c for c, members in env.mb.conversations().items() if ids[M0] in members]
    assert sorted(env.mb.conversations()[cid]) == sorted([ids[M0], ids[M1]])
    with env.db() as db:
        assert db.count_messages("conversation_id = ? AND state = 'present'", (cid,)) == 2
    return env, cid


def flag_both(env: PushEnv, *, on: bool = True) -> None:
    loc = env.local()
    for key in (M0, M1):
        if on:
            client_set_flags(loc[key], add="F")
        else:
            client_set_flags(loc[key], remove="F")


def stored_token(env: PushEnv, cid: str) -> str | None:
    with env.db() as db:
        return db.conversation_token(cid)


def server_token(env: PushEnv, cid: str) -> str:
    return str(env.mb.conversation_view(cid).sync_token)


def counts(env: PushEnv) -> dict[str, int]:
    return {k: v for k, v in env.fake.counters.items() if v}


# ============================================================================ the tests


def test_normal_case_one_conversation_batch_then_token(
        make_env: MakeEnv, api_version: str, reads: list[tuple[str, bool]]) -> None:
    """Every member changed the same way and the server agrees: one conversation batch,
    checked by one full read; the token read again afterwards is stored, and the next push
    over the unchanged conversation checks it with one token-only request."""
    env, cid = thread_env(make_env, api_version)
    assert stored_token(env, cid) is None
    flag_both(env)
    env.fake.reset_counters()
    reads.clear()
    env.ok()
    c = counts(env)
    assert c.get(CONV_BATCH) == 1 and MAIL_BATCH not in c, c
    assert reads == [(cid, False), (cid, False)]  # the check, the read after the batch
    assert c.get(CONV_GET) == 2, c
    srv = env.server()
    assert srv[M0].flagged and srv[M1].flagged
    env.check()
    # the confirming pull saw only the echo of the push: the token survives it
    assert stored_token(env, cid) == server_token(env, cid)
    env.noop()
    assert stored_token(env, cid) == server_token(env, cid)

    flag_both(env, on=False)
    env.fake.reset_counters()
    reads.clear()
    env.ok()
    c = counts(env)
    assert c.get(CONV_BATCH) == 1 and MAIL_BATCH not in c, c
    assert reads == [(cid, True), (cid, False)]  # 1 cheap check instead of the full read
    srv = env.server()
    assert not srv[M0].flagged and not srv[M1].flagged
    assert stored_token(env, cid) == server_token(env, cid)
    env.check()
    env.noop()


def test_extra_member_on_the_server_is_not_changed(
        make_env: MakeEnv, api_version: str, reads: list[tuple[str, bool]]) -> None:
    """A reply to m0 arrives on the server after the last pull (``--push-only`` skips the
    pull): every member the archive knows changed the same way, but a conversation batch
    would flag the newcomer too. The check sees it: per-mail ids, the newcomer untouched."""
    env, cid = thread_env(make_env, api_version)
    late = env.mb.add_mail(env.folder("Archive"), raw_mail(900, thread=0), date=1_760_000_900, unread=True)
    assert late in env.mb.conversations()[cid]
    flag_both(env)
    env.fake.reset_counters()
    reads.clear()
    env.ok(push_only=True)
    c = counts(env)
    assert CONV_BATCH not in c and c.get(MAIL_BATCH) == 1, c
    assert reads == [(cid, False)]
    srv = env.server()
    assert srv[M0].flagged and srv[M1].flagged
    assert not srv["m900@push.test"].flagged and srv["m900@push.test"].unread, "a mail the archive did not know was changed"
    assert stored_token(env, cid) is None
    env.check()  # the confirming pull fetched the newcomer
    env.noop()


def test_extra_member_arriving_during_the_push_is_not_changed(
        make_env: MakeEnv, api_version: str, reads: list[tuple[str, bool]]) -> None:
    """Same, with a valid stored token and a normal run: the mail arrives after the pull,
    right before the push checks the conversation. The token no longer matches, the full
    read shows the newcomer: per-mail ids."""
    env, cid = thread_env(make_env, api_version)
    flag_both(env)
    env.ok()
    assert stored_token(env, cid) == server_token(env, cid)
    arrived: list[str] = []
    original = ApiClient.get_conversation

    def arrive_first(self: ApiClient, conversation_id: str, *, token_only: bool = False) -> Conversation:
        if not arrived:
            arrived.append(env.mb.add_mail(env.folder("Work"), raw_mail(901, thread=0),
                                           date=1_760_000_901, unread=True))
        return original(self, conversation_id, token_only=token_only)

    flag_both(env, on=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ApiClient, "get_conversation", arrive_first)
        env.fake.reset_counters()
        env.ok()
    c = counts(env)
    assert CONV_BATCH not in c and c.get(MAIL_BATCH) == 1, c
    assert c.get(CONV_GET) == 2, c  # token-only (stale), then the full read
    srv = env.server()
    assert not srv[M0].flagged and not srv[M1].flagged
    assert srv["m901@push.test"].unread and not srv["m901@push.test"].flagged
    env.check()
    env.noop()


def test_stale_token_leads_to_the_full_check(
        make_env: MakeEnv, api_version: str, reads: list[tuple[str, bool]]) -> None:
    """The server changed the conversation (another client marked m1 read) since the token
    was stored, and no pull ran in between (``--push-only``): the token-only answer differs,
    the full read shows the same members, so the conversation batch goes."""
    env, cid = thread_env(make_env, api_version)
    flag_both(env)
    env.ok()
    old = stored_token(env, cid)
    assert old is not None and old == server_token(env, cid)
    env.mb.set_flags(env.server()[M1].id, unread=False)
    assert server_token(env, cid) != old
    flag_both(env, on=False)
    env.fake.reset_counters()
    reads.clear()
    env.ok(push_only=True)
    c = counts(env)
    assert c.get(CONV_BATCH) == 1 and MAIL_BATCH not in c, c
    assert reads == [(cid, True), (cid, False), (cid, False)]
    srv = env.server()
    assert not srv[M0].flagged and not srv[M1].flagged and not srv[M1].unread
    # The token read after the batch was stored, but the confirming pull then saw m1 marked
    # read by the other client (a change the archive had not seen): it voided it again.
    assert stored_token(env, cid) is None
    env.check()
    env.noop()


@pytest.mark.parametrize("change", ["flags", "label", "new member", "moved", "deleted"])
def test_pull_voids_the_token_of_a_changed_conversation(
        make_env: MakeEnv, api_version: str, reads: list[tuple[str, bool]], change: str) -> None:
    """Whatever the pull sees happen to a member (flags, labels, a new member, a move, a
    deletion), it clears the stored token, so the next push reads the conversation in full."""
    env, cid = thread_env(make_env, api_version)
    flag_both(env)
    env.ok()
    assert stored_token(env, cid) is not None
    m1 = env.server()[M1].id
    if change == "flags":
        env.mb.set_flags(m1, unread=False)
    elif change == "label":
        name = next(n for n in LABELS if n not in env.server()[M1].labels)
        env.mb.add_label_to_mail(m1, env.label(name))
    elif change == "new member":
        env.mb.add_mail(env.folder("Work"), raw_mail(902, thread=0), date=1_760_000_902)
    elif change == "moved":
        env.mb.move_mail(m1, env.folder("Archive"))
    else:
        env.mb.delete_mail(m1)  # into Trash: out of the conversation
    env.ok(pull_only=True)
    assert stored_token(env, cid) is None
    env.check()
    flag_both(env, on=False)
    reads.clear()
    env.ok()
    if change in ("new member", "deleted"):
        # m0 and m1 are no longer the whole conversation (m902 joined; m1 left for Trash):
        # per-mail ids, nothing to check
        assert reads == []
    else:
        assert reads and reads[0] == (cid, False), reads
    srv = env.server()
    assert not srv[M0].flagged and not srv[M1].flagged
    env.check()
    env.noop()


def test_members_riding_along_in_a_per_mail_batch_are_not_checked(
        make_env: MakeEnv, api_version: str, reads: list[tuple[str, bool]]) -> None:
    """Another mail gets the same change: its per-mail batch is sent anyway and carries the
    conversation's members at no extra request, so nothing is checked and no conversation
    batch is sent (it would cost a request more, plus the check)."""
    env, cid = thread_env(make_env, api_version)
    loc = env.local()
    other = next(m for k, m in sorted(loc.items()) if k not in (M0, M1) and "F" not in m.letters
                 and m.folder not in (("Trash",), ("Junk",)))
    flag_both(env)
    client_set_flags(other, add="F")
    env.fake.reset_counters()
    reads.clear()
    env.ok()
    c = counts(env)
    assert CONV_BATCH not in c and c.get(MAIL_BATCH) == 1, c
    assert reads == []
    srv = env.server()
    assert srv[M0].flagged and srv[M1].flagged and srv[other.msgid].flagged
    env.check()
    env.noop()


# ============================================================================ pure parts


def _plan(*batches: Batch) -> PushPlan:
    return PushPlan(batches=list(batches))


def _conv_batch(params: dict[str, object], convs: dict[str, list[str]], op: str = "conversations/update") -> Batch:
    members = [MailOp(i, mid, "update", "{}", cid) for cid, mids in convs.items() for i, mid in enumerate(mids)]
    return Batch(op, params, sorted(convs), members)


def _mail_batch(params: dict[str, object], mids: list[str], op: str = "mails/update") -> Batch:
    return Batch(op, params, mids, [MailOp(i, mid, "update", "{}") for i, mid in enumerate(mids)])


def test_which_conversations_are_checked() -> None:
    flag = {"is_flagged": True}
    read = {"is_unread": False}
    # only conversations make up the change: checked (all of them, or none over `limit`)
    plan = _plan(_conv_batch(flag, {"c1": ["a", "b"], "c2": ["c", "d", "e"]}))
    assert [(c.conversation_id, sorted(c.mail_ids)) for c in conversations_to_check(plan)] == [
        ("c1", ["a", "b"]), ("c2", ["c", "d", "e"])]
    assert conversations_to_check(plan, limit=2) != []
    assert conversations_to_check(plan, limit=1) == []
    assert conversations_to_check(plan, limit=0) == []
    # a per-mail batch of the same change is sent anyway: the members ride along
    plan = _plan(_mail_batch(flag, ["x"]), _conv_batch(flag, {"c1": ["a", "b"]}))
    assert conversations_to_check(plan) == []
    plan = _plan(_mail_batch(flag, [f"x{i}" for i in range(CHUNK)]), _conv_batch(flag, {"c1": ["a", "b"]}))
    assert conversations_to_check(plan) == []  # one more chunk still beats a check + a batch
    # a per-mail batch of another change does not count
    plan = _plan(_mail_batch(read, ["x"]), _conv_batch(flag, {"c1": ["a", "b"]}))
    assert [c.conversation_id for c in conversations_to_check(plan)] == ["c1"]
    # a conversation riding along in one of its changes is not checked at all
    plan = _plan(_mail_batch(flag, ["x"]), _conv_batch(flag, {"c1": ["a", "b"]}),
                 _conv_batch({"label_id": "l1"}, {"c1": ["a", "b"]}, "conversations/labels/add"))
    assert conversations_to_check(plan) == []


def test_planner_sends_only_verified_conversations() -> None:
    rows = [MessageRow(u, f"mail-{u}", "f-inbox", "", f"b{u}", f"b{u}:2,", 1, 1, 1, "0" * 64, "zstd", "", "",
                       (), 0, f"<{u}@x>", "c1" if u < 3 else "c2", "", "", "present", 0, 0, None)
            for u in (1, 2, 3, 4)]
    edits = [Edit(r, LocalFile("", "cur", f"{r.base}:2,F", r.base, "F", 1, 1), "F", ()) for r in rows]
    base = PushContext({"": "f-inbox"}, {"f-inbox": "inbox"},
                       {"c1": frozenset({1, 2}), "c2": frozenset({3, 4})}, {})
    assert [(b.op, b.ids) for b in plan_push(edits, base).batches] == [("conversations/update", ["c1", "c2"])]
    only_c2 = plan_push(edits, replace(base, verified=frozenset({"c2"})))
    assert [(b.op, b.ids) for b in only_c2.batches] == [
        ("mails/update", ["mail-1", "mail-2"]), ("conversations/update", ["c2"])]
    none = plan_push(edits, replace(base, verified=frozenset()))
    assert [(b.op, b.ids) for b in none.batches] == [("mails/update", ["mail-1", "mail-2", "mail-3", "mail-4"])]
