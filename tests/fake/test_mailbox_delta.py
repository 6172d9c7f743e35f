"""Property: a client that keeps a replica of each folder from ``mail_delta`` pages (any
page size, tokens resumed) always ends up equal to the mailbox, whatever happened."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from axsync.fake.knobs import Knobs
from axsync.fake.mailbox import FakeMail, Mailbox, TokenError

from .conftest import raw_message

State = tuple[str, bool, bool, tuple[str, ...]]
OPS = ("add", "flag", "read", "label", "unlabel", "move", "copy", "delete", "replace", "sync", "reset")


def _state(mail: FakeMail, digest: str | None = None) -> State:
    return (digest or hashlib.sha256(mail.raw).hexdigest(), mail.unread, mail.flagged, mail.label_ids)


class Replica:
    def __init__(self, mb: Mailbox, folder: str) -> None:
        self.mb, self.folder = mb, folder
        self.items: dict[str, State] = {}
        self.token: str | None = None

    def sync(self, limit: int | None) -> None:
        try:
            self._pages(limit)
        except TokenError:  # a reset folder: start over, as the docs say
            self.items.clear()
            self.token = None
            self._pages(limit)
        expected = {m.id: _state(m) for m in self.mb.mails(self.folder)}
        assert self.items == expected

    def _pages(self, limit: int | None) -> None:
        more = True
        while more:
            page = self.mb.mail_delta(self.folder, self.token, limit)
            for mail in page.new + page.replaced:
                self.items[mail.id] = _state(mail)
            for mail in page.updated:
                assert mail.id in self.items, "an update for a mail the client never saw"
                self.items[mail.id] = _state(mail, self.items[mail.id][0])
            for mail_id, folder_id in page.removed:
                assert folder_id == self.folder
                assert self.items.pop(mail_id, None) is not None, "removal of an unseen mail"
            self.token, more = page.sync_token, page.more
        assert self.token == self.mb.content_token(self.folder)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(OPS), st.integers(0, 10_000), st.sampled_from([None, 1, 2, 5])),
        max_size=40,
    ),
    ids_change=st.booleans(),
)
def test_delta_replicas_converge(steps: list[tuple[str, int, int | None]], ids_change: bool) -> None:
    mb = Mailbox(knobs=Knobs(ids_change_on_move=ids_change))
    folders = [mb.folder_id("INBOX"), mb.add_folder("Work"), mb.folder_id("Trash")]
    label = mb.create_label("L")
    replicas = [Replica(mb, f) for f in folders]
    counter = 0
    for op, pick, limit in steps:
        mails = [m.id for f in folders for m in mb.mails(f)]
        target = folders[pick % 2]
        if op == "add" or not mails:
            counter += 1
            mb.add_mail(target, raw_message(f"m{counter}", message_id=f"{counter}@t"), date=counter)
            continue
        mail = mails[pick % len(mails)]
        if op == "flag":
            mb.set_flags(mail, flagged=not mb.get_mail(mail).flagged)
        elif op == "read":
            mb.set_flags(mail, unread=not mb.get_mail(mail).unread)
        elif op in ("label", "unlabel"):
            (mb.add_label_to_mail if op == "label" else mb.remove_label_from_mail)(mail, label)
        elif op == "move":
            mb.move_mail(mail, target)
        elif op == "copy":
            mb.copy_mail(mail, target)
        elif op == "delete":
            mb.delete_mail(mail)
        elif op == "replace":
            counter += 1
            mb.replace_mail(mail, raw_message(f"replaced {counter}"))
        elif op == "sync":
            replicas[pick % 3].sync(limit)
        elif op == "reset":
            mb.reset_id_validity(folders[pick % 3])
    for replica in replicas:
        replica.sync(steps[-1][2] if steps else None)
