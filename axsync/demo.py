"""``axsync demo``: the whole thing on the embedded fake server, no setup.

Starts a fake Axigen server with a generated mailbox, pulls it into a fresh archive, makes a
few changes on the server the way another client would, syncs again, and reports.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from axsync.api import ApiClient
from axsync.config import Account, save_account
from axsync.fake.corpus import generate
from axsync.fake.server import FakeAxigen, Knobs
from axsync.statedb import StateDB
from axsync.sync.engine import SyncOptions, run_account
from axsync.sync.report import Progress, RunReport

DEMO_USER = "demo@example.com"
DEMO_PASSWORD = "demo-password"


@dataclass
class DemoResult:
    workdir: Path
    config_path: Path
    first: RunReport
    second: RunReport
    changes: list[str]
    folders: list[tuple[str, int]]
    labels: list[str]


def server_changes(fake: FakeAxigen) -> list[str]:
    """A handful of changes another mail client could make between two runs."""
    mb = fake.mailbox
    done: list[str] = []
    inbox = mb.folder_id(("INBOX",))
    mails = sorted(mb.mails(inbox), key=lambda m: m.id)
    if len(mails) >= 4:
        mb.set_flags(mails[0].id, unread=False, flagged=True)
        done.append("flagged and read one message in INBOX")
        labels = mb.labels()
        if labels:
            mb.add_label_to_mail(mails[1].id, labels[0][0])
            done.append(f"labelled one message {labels[0][1]!r}")
        paths = {f_path(mb, f.id): f.id for f in mb.folders()}
        archive = paths.get(("Archive",))
        if archive:
            mb.move_mail(mails[2].id, archive)
            done.append("moved one message from INBOX to Archive")
        mb.delete_mail(mails[3].id)
        done.append("deleted one message (to Trash)")
    mb.add_mail(inbox, b"From: Demo <demo@example.com>\r\nTo: demo@example.com\r\n"
                b"Subject: Hello from the demo\r\nMessage-ID: <demo-new@example.com>\r\n"
                b"Date: Sat, 21 Nov 2026 09:00:00 +0000\r\n\r\nA new message arrived.\r\n")
    done.append("delivered one new message")
    for folder in mb.folders():
        if f_path(mb, folder.id) == ("Receipts",):
            mb.rename_folder(folder.id, "Receipts 2026")
            done.append("renamed folder Receipts to 'Receipts 2026'")
    return done


def f_path(mb: object, folder_id: str) -> tuple[str, ...]:
    return tuple(mb.folder_path(folder_id))  # type: ignore[attr-defined]


def run_demo(
    workdir: Path | None = None,
    *,
    messages: int = 400,
    seed: int = 7,
    progress_factory: Callable[[str], Progress] | None = None,
    api_version: str = "10.6",
) -> DemoResult:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="axsync-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    corpus = generate(seed=seed, messages=messages)
    with FakeAxigen(corpus, user=DEMO_USER, password=DEMO_PASSWORD,
                    knobs=Knobs(api_version=api_version)) as fake:
        config_path = workdir / "config.toml"
        maildir = workdir / "Mail"
        save_account(config_path, "demo", {
            "server": fake.url, "username": DEMO_USER, "maildir": str(maildir),
            "password_command": f"printf %s {DEMO_PASSWORD}", "mode": "sync",
        })
        account = Account(name="demo", server=fake.url, username=DEMO_USER, maildir=maildir,
                          mode="sync", exclude=())

        def client(acc: Account) -> ApiClient:
            return ApiClient(acc.server, acc.username, DEMO_PASSWORD,
                             concurrency=acc.concurrency)

        def progress(label: str) -> Progress | None:
            return progress_factory(label) if progress_factory else None

        first = run_account(account, SyncOptions(), progress=progress("first sync"),
                            client_factory=client)
        changes = server_changes(fake)
        second = run_account(account, SyncOptions(), progress=progress("second sync"),
                             client_factory=client)
        labels = sorted(name for _id, name in fake.mailbox.labels())
    db = StateDB.open(account.state_path, readonly=True)
    try:
        folders = [
            ("/".join(f.path), db.count_messages("folder_id = ? AND state = 'present'", (f.id,)))
            for f in db.folders() if f.state == "present"
        ]
    finally:
        db.close()
    return DemoResult(workdir, config_path, first, second, changes, sorted(folders), labels)
