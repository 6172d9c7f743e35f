"""The in-memory mailbox, without HTTP: corpus loading, operations, ids, tokens, deltas,
folder events, threading, snapshot."""

from __future__ import annotations

import hashlib

import pytest

from axsync.fake.corpus import Corpus, CorpusFolder, CorpusMessage
from axsync.fake.knobs import Knobs
from axsync.fake.mailbox import (
    ForbiddenError,
    InvalidError,
    Mailbox,
    NotFoundError,
    TokenError,
)

from .conftest import add_mails, raw_message


@pytest.fixture
def mb() -> Mailbox:
    return Mailbox()


def _corpus() -> Corpus:
    return Corpus(
        folders=[
            CorpusFolder(("INBOX",), "inbox"),
            CorpusFolder(("Sent Items",), "sent"),
            CorpusFolder(("Projects", "a/b", ".."), ""),
            CorpusFolder(("Archive",), "archive"),
            CorpusFolder(("INBOX", "Sub"), ""),
        ],
        labels=["Work", "NonJunk"],
        messages=[
            CorpusMessage(("INBOX",), raw_message("one", message_id="1@x"), 100, labels=("Work",)),
            CorpusMessage(("Sent Items",), raw_message("two", message_id="2@x"), 200, unread=False),
            CorpusMessage(("Projects", "a/b", ".."), raw_message("three"), 300, flagged=True, refw="re"),
            CorpusMessage(("Trash",), raw_message("four"), 400, labels=("junk", "New Label")),
            CorpusMessage(("Drafts",), raw_message("five"), 500, draft=True, unread=False),
        ],
    )


# ---------------------------------------------------------------------------- corpus


def test_special_folders_always_exist(mb: Mailbox) -> None:
    roles = {f.name: f.role for f in mb.folders()}
    assert roles == {"INBOX": "inbox", "Drafts": "drafts", "Sent": "sent", "Trash": "trash", "Spam": "junk"}
    assert all(f.parent_id == mb.container_id for f in mb.folders())


def test_corpus_maps_specials_and_builds_hierarchy() -> None:
    mb = Mailbox(_corpus())
    by_path = {mb.folder_path(f.id): f for f in mb.folders()}
    assert by_path[("Sent Items",)].role == "sent"  # the special folder takes the corpus's name
    assert ("Sent",) not in by_path
    assert by_path[("Archive",)].role == "archive"
    assert by_path[("INBOX", "Sub")].parent_id == mb.folder_id("INBOX")
    nested = by_path[("Projects", "a/b", "..")]
    assert mb.folder_id(("Projects", "a/b", "..")) == nested.id
    assert mb.folder_path(nested.parent_id) == ("Projects", "a/b")
    snap = mb.snapshot()
    assert [row[0] for row in snap[("INBOX",)]] == [hashlib.sha256(raw_message("one", message_id="1@x")).hexdigest()]
    assert snap[("INBOX",)][0][1:] == (100, True, False, False, "", False, ("Work",))
    assert snap[("Projects", "a/b", "..")][0][1:7] == (300, True, True, False, "re", False)
    assert snap[("Drafts",)][0][4] is True
    # hidden IMAP keywords are not labels; unknown message labels are created
    assert sorted(name for _, name in mb.labels()) == ["New Label", "Work"]
    assert snap[("Trash",)][0][7] == ("New Label",)


def test_folder_id_lookups(mb: Mailbox) -> None:
    assert mb.folder_id("inbox") == mb.folder_id("INBOX") == mb.folder_id(("INBOX",))
    child = mb.add_folder("Kid", mb.folder_id("INBOX"))
    assert mb.folder_id("INBOX/Kid") == child
    with pytest.raises(NotFoundError):
        mb.folder_id("Nope")


# ---------------------------------------------------------------------------- mails


def test_move_changes_id_by_default_and_keeps_it_when_told(mb: Mailbox) -> None:
    inbox, sent = mb.folder_id("INBOX"), mb.folder_id("Sent")
    mail = mb.add_mail(inbox, raw_message(), date=5)
    moved = mb.move_mail(mail, sent)
    assert moved != mail and mb.get_mail(moved).folder_id == sent
    with pytest.raises(NotFoundError):
        mb.get_mail(mail)
    mb.knobs.ids_change_on_move = False
    again = mb.move_mail(moved, inbox)
    assert again == moved and mb.get_mail(again).folder_id == inbox


def test_delete_goes_to_trash_then_permanently(mb: Mailbox) -> None:
    inbox = mb.folder_id("INBOX")
    mail = mb.add_mail(inbox, raw_message(), date=5, flagged=True)
    in_trash = mb.delete_mail(mail)
    assert in_trash is not None and in_trash != mail
    copy = mb.get_mail(in_trash)
    assert copy.folder_id == mb.folder_id("Trash") and copy.flagged and copy.date == 5
    assert mb.delete_mail(in_trash) is None
    assert mb.mails() == []


def test_copy_keeps_content_flags_labels_and_date(mb: Mailbox) -> None:
    label = mb.create_label("L")
    mail = mb.add_mail(mb.folder_id("INBOX"), raw_message(), date=7, unread=False, labels=[label])
    copy = mb.copy_mail(mail, mb.folder_id("Sent"))
    a, b = mb.get_mail(mail), mb.get_mail(copy)
    assert (a.raw, a.date, a.unread, a.label_ids) == (b.raw, b.date, b.unread, b.label_ids)
    assert a.id != b.id


def test_flags_validation_and_no_op(mb: Mailbox) -> None:
    inbox = mb.folder_id("INBOX")
    mail = mb.add_mail(inbox, raw_message())
    token = mb.content_token(inbox)
    mb.set_flags(mail, unread=True)  # already unread: not a change
    assert mb.content_token(inbox) == token
    with pytest.raises(InvalidError):
        mb.set_flags(mail, refw="both")
    mb.set_flags(mail, refw="refw", deleted=True, draft=True)
    got = mb.get_mail(mail)
    assert (got.refw, got.deleted, got.draft) == ("refw", True, True)


def test_unknown_things_raise_not_found(mb: Mailbox) -> None:
    with pytest.raises(NotFoundError):
        mb.add_mail("80_999", raw_message())
    with pytest.raises(NotFoundError):
        mb.set_flags("nope", unread=False)
    mail = mb.add_mail(mb.folder_id("INBOX"), raw_message())
    with pytest.raises(NotFoundError):
        mb.add_label_to_mail(mail, "80_999")


# ---------------------------------------------------------------------------- folders


def test_folder_rules(mb: Mailbox) -> None:
    inbox = mb.folder_id("INBOX")
    for op in (lambda: mb.rename_folder(inbox, "X"), lambda: mb.delete_folder(inbox),
               lambda: mb.move_folder(mb.folder_id("Trash"), inbox)):
        with pytest.raises(ForbiddenError):
            op()
    work = mb.add_folder("Work")
    with pytest.raises(InvalidError):
        mb.add_folder("Work")  # same name, same parent
    with pytest.raises(InvalidError):
        mb.add_folder("x" * 256)
    with pytest.raises(InvalidError):
        mb.add_folder("")
    with pytest.raises(InvalidError):
        mb.add_folder("y", role="inbox")
    child = mb.add_folder("Child", work)
    with pytest.raises(InvalidError):
        mb.move_folder(work, child)  # below itself
    mb.add_folder("Tab\there. ~/..", work)  # opaque names are fine
    with pytest.raises(InvalidError):
        mb.add_folder("Cal", work, folder_type="events")  # type must match the parent's


def test_delete_folder_to_trash_then_permanently(mb: Mailbox) -> None:
    trash = mb.folder_id("Trash")
    first = mb.add_folder("Old")
    mb.delete_folder(first)
    second = mb.add_folder("Old")
    kid = mb.add_folder("Kid", second)
    add_mails(mb, kid, 2)
    mb.delete_folder(second)
    assert mb.folder_path(first) == ("Trash", "Old")
    assert mb.folder_path(second) == ("Trash", "Old (2)")
    assert mb.folder_path(kid) == ("Trash", "Old (2)", "Kid")
    assert mb.folder(trash).total == 0
    mb.delete_folder(second)
    with pytest.raises(NotFoundError):
        mb.folder_path(kid)
    assert mb.mails() == []


# ---------------------------------------------------------------------------- labels


def test_label_rules(mb: Mailbox) -> None:
    work = mb.create_label("Work")
    for bad in ("work", "JUNK", "NotJunk", "nonjunk", "", "x" * 129):
        with pytest.raises(InvalidError):
            mb.create_label(bad)
    mb.create_label("x" * 128)
    mb.rename_label(work, "WORK")  # its own name in another case is fine
    assert mb.label_id("work") == work
    mail = mb.add_mail(mb.folder_id("INBOX"), raw_message(), labels=[work])
    mb.delete_label(work)
    assert mb.get_mail(mail).label_ids == ()


# ---------------------------------------------------------------------------- tokens and deltas


def test_content_token_changes_iff_content_changes(mb: Mailbox) -> None:
    inbox, sent = mb.folder_id("INBOX"), mb.folder_id("Sent")
    t0 = mb.content_token(inbox)
    mb.add_mail(sent, raw_message())
    mb.create_label("L")
    mb.add_folder("Other")
    assert mb.content_token(inbox) == t0
    mail = mb.add_mail(inbox, raw_message())
    t1 = mb.content_token(inbox)
    assert t1 != t0
    mb.set_flags(mail, flagged=True)
    assert mb.content_token(inbox) != t1


def test_delta_kinds_and_order(mb: Mailbox) -> None:
    inbox = mb.folder_id("INBOX")
    a, b, c = add_mails(mb, inbox, 3)
    token = mb.mail_delta(inbox, None).sync_token
    assert token == mb.content_token(inbox)
    mb.set_flags(b, unread=False)
    mb.replace_mail(c, raw_message("new content"))
    moved = mb.move_mail(a, mb.folder_id("Sent"))
    d = mb.add_mail(inbox, raw_message("d"))
    gone = mb.add_mail(inbox, raw_message("gone"))
    mb.delete_mail(gone)  # added and removed since the token: not reported
    page = mb.mail_delta(inbox, token)
    assert [m.id for m in page.updated] == [b] and not page.updated[0].unread
    assert [m.id for m in page.replaced] == [c] and page.replaced[0].raw.endswith(b"Hello there\r\n")
    assert page.removed == [(a, inbox)]
    assert [m.id for m in page.new] == [d]
    assert page.sync_token == mb.content_token(inbox) and not page.more
    sent_page = mb.mail_delta(mb.folder_id("Sent"), None)
    assert [m.id for m in sent_page.new] == [moved]
    assert mb.mail_delta(inbox, page.sync_token).new == []


def test_delta_pages_with_intermediate_tokens(mb: Mailbox) -> None:
    inbox = mb.folder_id("INBOX")
    ids = add_mails(mb, inbox, 5)
    token = mb.content_token(inbox)
    for mail in ids:
        mb.set_flags(mail, flagged=True)
    seen: list[str] = []
    more = True
    pages = 0
    while more:
        page = mb.mail_delta(inbox, token, limit=2)
        assert not page.new and len(page.updated) <= 2
        seen += [m.id for m in page.updated]
        token, more, pages = page.sync_token, page.more, pages + 1
    assert seen == ids and pages == 3
    assert token == mb.content_token(inbox)
    # a first round without a token: every mail is new, in modification order
    first = mb.mail_delta(inbox, None, limit=3)
    assert first.more and [m.id for m in first.new] == ids[:3]
    rest = mb.mail_delta(inbox, first.sync_token, limit=3)
    assert not rest.more and [m.id for m in rest.new] == ids[3:]


def test_delta_token_rejections(mb: Mailbox) -> None:
    inbox, sent = mb.folder_id("INBOX"), mb.folder_id("Sent")
    add_mails(mb, inbox, 3)
    token = mb.content_token(inbox)
    for garbage in ("garbage", "!!", mb.content_token(sent), mb.folders_token()):
        with pytest.raises(TokenError):
            mb.mail_delta(inbox, garbage)
    mb.expire_tokens()
    with pytest.raises(TokenError):
        mb.mail_delta(inbox, token)
    fresh = mb.content_token(inbox)
    assert fresh != token and mb.mail_delta(inbox, fresh).updated == []
    mb.reset_id_validity(inbox)
    with pytest.raises(TokenError):
        mb.mail_delta(inbox, fresh)


def test_reset_id_validity_renumbers(mb: Mailbox) -> None:
    inbox = mb.folder_id("INBOX")
    before = add_mails(mb, inbox, 3)
    validity = next(f.id_validity for f in mb.folders() if f.id == inbox)
    mb.reset_id_validity(inbox)
    after = [m.id for m in mb.mails(inbox)]
    assert len(after) == 3 and not set(after) & set(before)
    assert next(f.id_validity for f in mb.folders() if f.id == inbox) != validity
    assert [m.id for m in mb.mail_delta(inbox, None).new] == after


def test_delta_retention_counts_changes_in_the_folder(mb: Mailbox) -> None:
    mb.knobs.delta_retention = 3
    inbox, sent = mb.folder_id("INBOX"), mb.folder_id("Sent")
    mail = add_mails(mb, inbox, 1)[0]
    token = mb.content_token(inbox)
    add_mails(mb, sent, 10)  # other folders' changes do not age this token
    assert mb.mail_delta(inbox, token).updated == []
    for flagged in (True, False, True):
        mb.set_flags(mail, flagged=flagged)
    assert len(mb.mail_delta(inbox, token).updated) == 1
    mb.set_flags(mail, flagged=False)
    with pytest.raises(TokenError):
        mb.mail_delta(inbox, token)


def test_folder_delta_events(mb: Mailbox) -> None:
    inbox = mb.folder_id("INBOX")
    first_token, first = mb.folder_delta(None)
    assert [e.kind for e in first] == ["newFolder"] * 5
    assert mb.folder_delta(first_token) == (first_token, [])
    work = mb.add_folder("Work")
    kid = mb.add_folder("Kid", work)
    token, events = mb.folder_delta(first_token)
    assert [(e.kind, e.folder_id) for e in events] == [("newFolder", work), ("newFolder", kid)]
    mail = mb.add_mail(inbox, raw_message())
    mb.move_folder(kid, inbox)
    mb.rename_folder(work, "Job")
    token2, events = mb.folder_delta(token)
    kinds = {e.folder_id: e for e in events}
    assert kinds[inbox].kind == "changedFolder" and not kinds[inbox].path_changed
    assert kinds[inbox].folder is not None and kinds[inbox].folder.sync_token == mb.content_token(inbox)
    assert kinds[kid].path_changed and kinds[kid].old_parent_id == work
    assert kinds[work].path_changed and kinds[work].old_parent_id == mb.container_id
    assert [e.folder_id for e in events] == [inbox, kid, work]  # modification order
    mb.delete_folder(work)  # into Trash: a move
    mb.delete_mail(mail)
    trash = mb.folder_id("Trash")
    mb.delete_folder(work)  # now permanent
    _, events = mb.folder_delta(token2)
    assert ("removedFolder", work) in [(e.kind, e.folder_id) for e in events]
    assert {e.folder_id for e in events if e.kind == "changedFolder"} == {inbox, trash}
    mb.knobs.delta_retention = 2
    with pytest.raises(TokenError):
        mb.folder_delta(first_token)
    mb.knobs.delta_retention = None
    current, _ = mb.folder_delta(first_token)
    mb.expire_tokens()
    with pytest.raises(TokenError):
        mb.folder_delta(current)
    fresh, events = mb.folder_delta(None)
    assert fresh != current and mb.folder_delta(fresh) == (fresh, [])


# ---------------------------------------------------------------------------- conversations


def test_threading_union_find_and_exclusions(mb: Mailbox) -> None:
    inbox, sent = mb.folder_id("INBOX"), mb.folder_id("Sent")
    root = mb.add_mail(inbox, raw_message("topic", message_id="r@x"), date=1)
    reply = mb.add_mail(sent, raw_message("Re: topic", message_id="s@x", in_reply_to="r@x"), date=2)
    other = mb.add_mail(inbox, raw_message("other", message_id="o@x"), date=3)
    convs = mb.conversations()
    conv = mb.get_mail(root).conversation_id
    assert conv is not None and convs[conv] == [root, reply]
    # a late message referring to both joins the two threads; the older id survives
    bridge = mb.add_mail(inbox, raw_message("both", references=("o@x", "r@x")), date=4)
    assert mb.conversations() == {conv: [root, reply, other, bridge]}
    spam = mb.move_mail(other, mb.folder_id("Spam"))
    assert mb.get_mail(spam).conversation_id is None
    assert mb.conversations()[conv] == [root, reply, bridge]
    trashed = mb.delete_mail(root)
    assert trashed is not None
    assert mb.conversations()[conv] == [reply, bridge]


def test_conversation_operations(mb: Mailbox) -> None:
    inbox, sent = mb.folder_id("INBOX"), mb.folder_id("Sent")
    a = mb.add_mail(inbox, raw_message("t", message_id="a@x"), date=1)
    b = mb.add_mail(sent, raw_message("Re: t", message_id="b@x", in_reply_to="a@x"), date=2, unread=True)
    conv = mb.conversation_of_mail(a)
    mb.update_conversation(conv, unread=False, flagged=True)
    assert (mb.get_mail(a).unread, mb.get_mail(a).flagged) == (False, True)
    assert (mb.get_mail(b).unread, mb.get_mail(b).flagged) == (True, True)  # Sent keeps isUnread
    archive = mb.add_folder("Archive")
    mb.move_conversation(conv, archive)
    assert mb.conversations()[conv][1] == b  # Sent members do not move
    assert mb.get_mail(mb.conversations()[conv][0]).folder_id == archive
    label = mb.create_label("L")
    mb.label_conversation(conv, label, True)
    assert all(label in mb.get_mail(i).label_ids for i in mb.conversations()[conv])
    mb.delete_conversation(conv)
    assert conv not in mb.conversations()
    with pytest.raises(NotFoundError):
        mb.conversation_view(conv)


def test_ranges_follow_the_sort(mb: Mailbox) -> None:
    inbox = mb.folder_id("INBOX")
    ids = add_mails(mb, inbox, 6)
    assert mb.mail_range(ids[4], 3, "date", "DESC") == [ids[4], ids[3], ids[2]]
    assert mb.mail_range(ids[4], 3, "date", "ASC") == [ids[4], ids[5]]
    with pytest.raises(InvalidError):
        mb.mail_range(ids[0], 1, "folderName", "ASC")


def test_knobs_object_is_shared_and_live() -> None:
    knobs = Knobs()
    mb = Mailbox(knobs=knobs)
    inbox, sent = mb.folder_id("INBOX"), mb.folder_id("Sent")
    mail = mb.add_mail(inbox, raw_message())
    knobs.ids_change_on_move = False
    assert mb.move_mail(mail, sent) == mail


def test_warm_works_out_every_message_once() -> None:
    """Benchmarks warm the fake before the first measured run (Mailbox.warm): afterwards
    every message's listing info is there, and later listings reuse it."""
    mb = Mailbox(_corpus())
    contents = [m.content for m in mb.mails()]
    assert contents and all(c._info is None for c in contents)
    assert mb.warm() == len(contents)
    infos = [c._info for c in contents]
    assert all(i is not None for i in infos)
    assert all(c.info is info for c, info in zip(contents, infos, strict=True))
