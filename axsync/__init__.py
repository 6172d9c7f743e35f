"""axsync: keep an Axigen mailbox and a local zstd-compressed Maildir archive in step."""

__version__ = "0.1.0"
