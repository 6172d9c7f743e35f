"""Run-time switches of the fake Axigen server.

Every field can be changed while the server runs (tests flip them between requests); the
mailbox and the HTTP layer read them on each use. Defaults are what a real server does;
see ``docs/fake-server.md`` for the reasoning behind each one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: ``GET /api/`` serverVersion per API generation the fake can play.
SERVER_VERSIONS = {"10.4": "10.4.30", "10.6": "10.6.20"}
#: The Mailbox REST API version string (semver) the fake reports.
API_VERSION = "1.2.0"


@dataclass
class Knobs:
    api_version: str = "10.6"
    default_page_size: int = 20
    max_page_size: int = 1000
    sticky_sort: bool = True
    ids_change_on_move: bool = True
    async_batch_threshold: int = 200
    async_batch_delay: float = 0.3
    session_max_requests: int | None = None
    delta_retention: int | None = None
    fail_rate: float = 0.0
    retry_after: float = 0.0
    drop_rate: float = 0.0
    latency: float = 0.0
    #: With probability ``spike_rate`` a request is held ``spike_latency`` more seconds.
    spike_rate: float = 0.0
    spike_latency: float = 0.0
    conversation_index: str = "uptodate"
    fault_seed: int = 0
    #: Bumped on every assignment to ``fault_seed`` (even of the same value): the fault
    #: generator starts over from the seed each time it is set.
    seed_generation: int = field(default=0, init=False, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "fault_seed":
            super().__setattr__("seed_generation", getattr(self, "seed_generation", 0) + 1)

    @property
    def server_version(self) -> str:
        try:
            return SERVER_VERSIONS[self.api_version]
        except KeyError:
            raise ValueError(f"unknown api_version {self.api_version!r}") from None

    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.server_version.split("."))

    def has_version(self, minimum: tuple[int, ...]) -> bool:
        """True when the server played is at least ``minimum`` (e.g. ``(10, 6, 6)``)."""
        return self.version_tuple() >= minimum

    @property
    def conversations_enabled(self) -> bool:
        return self.conversation_index != "unavailable"
