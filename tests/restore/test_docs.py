"""docs/migration.md's Dovecot 2.3 snippet is the configuration the interop harness runs."""

from __future__ import annotations

import re
from pathlib import Path

from interop import dovecot

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_dovecot_23_snippet_is_the_harness_config() -> None:
    text = (DOCS / "migration.md").read_text("utf-8")
    block = re.search(r"<!-- dovecot-2.3-begin -->\n```\n(.*?)```\n<!-- dovecot-2.3-end -->",
                      text, re.S)
    assert block is not None
    harness = {line.strip() for line in
               dovecot._CONFIG.replace("{{", "{").replace("}}", "}").splitlines()}
    lines = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    assert lines[0].startswith("mail_location = maildir:")
    assert "mail_location = {mail_location}" in harness
    missing = [line for line in lines[1:] if line not in harness]
    assert missing == []


def test_every_doc_exists_and_names_the_commands() -> None:
    nightly = (DOCS / "nightly.md").read_text("utf-8")
    for needle in ("Type=oneshot", "IOSchedulingClass=idle", "ProtectSystem=strict",
                   "ReadWritePaths=", "NoNewPrivileges=yes", "PrivateTmp=yes", "flock",
                   "--metrics-file", "--healthcheck-url"):
        assert needle in nightly
    scaling = (DOCS / "scaling.md").read_text("utf-8")
    for needle in ("--shard $JOB_COMPLETION_INDEX/", "completionMode: Indexed",
                   "What one machine handles"):
        assert needle in scaling
