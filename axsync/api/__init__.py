"""Client for the Axigen Mailbox REST API (``/api/v1/...``)."""

from __future__ import annotations

from axsync.api.base import Capabilities
from axsync.api.client import ApiClient

__all__ = ["ApiClient", "Capabilities"]
