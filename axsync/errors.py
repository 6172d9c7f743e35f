"""The one exception tree of axsync, and the exit code of each branch.

::

    AxsyncError                      exit 5  fatal unless a subclass says otherwise
    ├── UsageError                   exit 2  bad command line or arguments
    │   └── ConfigError              exit 2  bad config file; ``problems`` names each key
    ├── AuthError                    exit 3  login refused (401 on login)
    ├── DeletionGuardError           exit 4  a run would delete more than ``max_delete``
    ├── PartialFailure               exit 1  the run finished, some items failed (listed)
    ├── ApiError                     exit 5  anything that went wrong talking to the server
    │   ├── ServerUnreachable                connection failures that survived the retries
    │   ├── MalformedReply                   the reply is not what the API documents
    │   ├── IntegrityError                   a download's size or sha256 did not match
    │   └── HttpStatusError                  a non-2xx reply (``status``, ``body``)
    │       ├── BadRequest          (400)
    │       │   └── TokenRejected             a sync token the server no longer accepts
    │       ├── Forbidden           (403)
    │       ├── NotFound            (404)
    │       │   └── EndpointMissing           the endpoint itself is absent (older server)
    │       └── ServerError         (5xx)
    ├── StateError                   exit 5  the state DB is unusable
    │   └── SchemaTooNew                     written by a newer axsync
    └── StoreError                   exit 5  the Maildir cannot be written or read
        └── UnsafeName                       a name that would escape the maildir root

Foreign exceptions (httpx, sqlite3, OSError) are translated at the boundary of the room
that sees them and re-raised ``from`` the original, so the CLI maps errors in one place.
"""

from __future__ import annotations

from collections.abc import Sequence


class AxsyncError(Exception):
    """Root of every error axsync raises on purpose."""

    exit_code = 5

    def __init__(self, message: str = "", **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message or self.__class__.__name__


class UsageError(AxsyncError):
    exit_code = 2


class ConfigError(UsageError):
    """A config problem. ``problems`` holds one line per bad key, each naming the key."""

    def __init__(self, message: str, problems: Sequence[str] = (), **details: object) -> None:
        super().__init__(message, **details)
        self.problems = list(problems)

    def __str__(self) -> str:
        if not self.problems:
            return self.message
        return self.message + "\n" + "\n".join(f"  - {p}" for p in self.problems)


class AuthError(AxsyncError):
    exit_code = 3


class DeletionGuardError(AxsyncError):
    exit_code = 4


class PartialFailure(AxsyncError):
    exit_code = 1


class ApiError(AxsyncError):
    exit_code = 5


class ServerUnreachable(ApiError):
    pass


class MalformedReply(ApiError):
    pass


class IntegrityError(ApiError):
    pass


class HttpStatusError(ApiError):
    def __init__(self, message: str, status: int = 0, body: str = "", **details: object) -> None:
        super().__init__(message, **details)
        self.status = status
        self.body = body


class BadRequest(HttpStatusError):
    pass


class TokenRejected(BadRequest):
    pass


class Forbidden(HttpStatusError):
    pass


class NotFound(HttpStatusError):
    pass


class EndpointMissing(NotFound):
    pass


class ServerError(HttpStatusError):
    pass


class StateError(AxsyncError):
    exit_code = 5


class SchemaTooNew(StateError):
    pass


class StoreError(AxsyncError):
    exit_code = 5


class UnsafeName(StoreError):
    pass


def exit_code_for(exc: BaseException) -> int:
    """The process exit code for an exception (5 for anything unexpected)."""
    if isinstance(exc, AxsyncError):
        return exc.exit_code
    return 5
