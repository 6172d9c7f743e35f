"""Config: TOML, loaded once into frozen objects; every problem reported at once, by key.

Location: ``--config PATH``, else ``$AXSYNC_CONFIG``, else
``$XDG_CONFIG_HOME/axsync/config.toml`` (``~/.config/axsync/config.toml``). Written 0600.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import subprocess
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from axsync.errors import AuthError, ConfigError

MODES = ("backup", "mirror", "sync")
COMPRESSIONS = ("zstd", "gzip", "none")
CONFLICT_POLICIES = ("server", "local", "newest")
#: Connections (downloads in flight) an account may use: one request per message, so a link
#: with tens of ms of latency wants many; the ceiling keeps a typo from opening thousands.
MAX_CONCURRENCY = 256
_SHELL_CHARS = set("|&;<>()$`\\\"'*?[]#~=%\n")


@dataclass(frozen=True)
class MaxDelete:
    """``max_delete``: an absolute count or a percentage of the archive."""

    count: int | None = None
    percent: float | None = 10.0

    def limit(self, total: int) -> int:
        if self.count is not None:
            return self.count
        assert self.percent is not None
        return int(total * self.percent / 100.0)

    def __str__(self) -> str:
        return str(self.count) if self.count is not None else f"{self.percent:g}%"


@dataclass(frozen=True)
class Account:
    name: str
    server: str
    username: str
    maildir: Path
    password_command: str | None = None
    mode: str = "sync"
    compression: str = "zstd"
    concurrency: int = 8
    max_delete: MaxDelete = field(default_factory=MaxDelete)
    exclude: tuple[str, ...] = ("Junk",)
    state_db: Path | None = None
    conflict: str = "server"
    insecure: bool = False
    ca_bundle: Path | None = None
    timeout: float = 60.0
    index: bool = True

    @property
    def state_path(self) -> Path:
        return self.state_db or (self.maildir / "axsync.sqlite")

    @property
    def verify(self) -> bool | str:
        if self.ca_bundle is not None:
            return str(self.ca_bundle)
        return True


@dataclass(frozen=True)
class Config:
    path: Path
    accounts: Mapping[str, Account]

    def account(self, name: str) -> Account:
        try:
            return self.accounts[name]
        except KeyError:
            known = ", ".join(sorted(self.accounts)) or "none"
            raise ConfigError(f"no account named {name!r} in {self.path} (accounts: {known})") from None


def default_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("AXSYNC_CONFIG"):
        return Path(env["AXSYNC_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "axsync" / "config.toml"


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_max_delete(value: object, key: str, problems: list[str]) -> MaxDelete:
    if isinstance(value, bool):
        problems.append(f"{key}: expected a count or a percentage like \"10%\", got {value!r}")
        return MaxDelete()
    if isinstance(value, int):
        if value < 0:
            problems.append(f"{key}: must not be negative")
        return MaxDelete(count=value, percent=None)
    if isinstance(value, str):
        text = value.strip()
        try:
            if text.endswith("%"):
                pct = float(text[:-1])
                if not 0 <= pct <= 100:
                    raise ValueError
                return MaxDelete(count=None, percent=pct)
            return MaxDelete(count=int(text), percent=None)
        except ValueError:
            pass
    problems.append(f"{key}: expected a count or a percentage like \"10%\", got {value!r}")
    return MaxDelete()


_FIELDS = {
    "server": str, "username": str, "maildir": str, "password_command": str, "mode": str,
    "compression": str, "concurrency": int, "max_delete": object, "exclude": list,
    "state_db": str, "conflict": str, "insecure": bool, "ca_bundle": str, "timeout": float,
    "index": bool,
}


def parse_account(name: str, raw: Mapping[str, Any], base_dir: Path) -> tuple[Account | None, list[str]]:
    """Validate one ``[accounts.NAME]`` table; every problem is reported, each naming its key."""
    problems: list[str] = []
    prefix = f"accounts.{name}"
    for key in raw:
        if key not in _FIELDS:
            problems.append(f"{prefix}.{key}: unknown key (known: {', '.join(sorted(_FIELDS))})")
    bad: set[str] = set()
    for key, typ in _FIELDS.items():
        if key not in raw or typ is object:
            continue
        value = raw[key]
        ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
        if typ is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            bad.add(key)
            problems.append(f"{prefix}.{key}: expected {typ.__name__}, got {type(value).__name__}")
    for key in ("server", "username", "maildir"):
        if not raw.get(key) and key not in bad:
            bad.add(key)
            problems.append(f"{prefix}.{key}: required")

    def get(key: str, default: Any) -> Any:
        return default if key in bad else raw.get(key, default)

    server = str(get("server", "")).rstrip("/")
    insecure = bool(get("insecure", False))
    if "server" not in bad:
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"{prefix}.server: expected an http(s) URL, got {server!r}")
        elif parts.scheme == "http" and not insecure and not _is_loopback(parts.hostname):
            problems.append(
                f"{prefix}.server: plain http:// to {parts.hostname} would send the password in "
                "clear; use https:// or set insecure = true"
            )
    mode = get("mode", "sync")
    if mode not in MODES:
        problems.append(f"{prefix}.mode: expected one of {', '.join(MODES)}, got {mode!r}")
    compression = get("compression", "zstd")
    if compression not in COMPRESSIONS:
        problems.append(f"{prefix}.compression: expected one of {', '.join(COMPRESSIONS)}, got {compression!r}")
    conflict = get("conflict", "server")
    if conflict not in CONFLICT_POLICIES:
        problems.append(f"{prefix}.conflict: expected one of {', '.join(CONFLICT_POLICIES)}, got {conflict!r}")
    concurrency = get("concurrency", 8)
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        problems.append(f"{prefix}.concurrency: must be between 1 and {MAX_CONCURRENCY}, got {concurrency}")
    exclude = get("exclude", ["Junk"])
    if not all(isinstance(x, str) for x in exclude):
        problems.append(f"{prefix}.exclude: expected a list of strings")
    max_delete = parse_max_delete(raw.get("max_delete", "10%"), f"{prefix}.max_delete", problems)
    timeout = float(get("timeout", 60.0))
    if timeout <= 0:
        problems.append(f"{prefix}.timeout: must be positive")
    if problems:
        return None, problems

    def path(value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (base_dir / p)

    return Account(
        name=name, server=server, username=str(raw["username"]), maildir=path(raw["maildir"]),
        password_command=raw.get("password_command"), mode=mode, compression=compression,
        concurrency=concurrency, max_delete=max_delete, exclude=tuple(exclude),
        state_db=path(raw["state_db"]) if raw.get("state_db") else None, conflict=conflict,
        insecure=insecure, ca_bundle=path(raw["ca_bundle"]) if raw.get("ca_bundle") else None,
        timeout=timeout, index=bool(get("index", True)),
    ), []


def load_config(path: Path | None = None, *, must_exist: bool = True) -> Config:
    """Read and validate the config; ``ConfigError`` lists every problem, each naming its key."""
    path = path or default_path()
    if not path.exists():
        if must_exist:
            raise ConfigError(f"no config file at {path}; create one with `axsync init`")
        return Config(path, {})
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc
    problems: list[str] = []
    for key in data:
        if key != "accounts":
            problems.append(f"{key}: unknown top-level key (expected [accounts.NAME] tables)")
    accounts: dict[str, Account] = {}
    raw_accounts = data.get("accounts", {})
    if not isinstance(raw_accounts, dict):
        problems.append("accounts: expected tables [accounts.NAME]")
        raw_accounts = {}
    for name, raw in raw_accounts.items():
        if not isinstance(raw, dict):
            problems.append(f"accounts.{name}: expected a table")
            continue
        account, errs = parse_account(name, raw, path.parent)
        problems.extend(errs)
        if account:
            accounts[name] = account
    if problems:
        raise ConfigError(f"config {path} has problems:", problems)
    return Config(path, accounts)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _toml_key(key: str) -> str:
    if key and all(c.isalnum() or c in "-_" for c in key) and key.isascii():
        return key
    return json.dumps(key, ensure_ascii=False)


def save_account(path: Path, name: str, values: Mapping[str, Any]) -> None:
    """Add or update ``[accounts.NAME]`` keeping the other accounts; atomic, mode 0600."""
    existing: dict[str, Any] = {}
    if path.exists():
        existing = tomllib.loads(path.read_text("utf-8"))
    accounts = dict(existing.get("accounts", {}))
    merged = dict(accounts.get(name, {}))
    merged.update({k: v for k, v in values.items() if v is not None})
    accounts[name] = merged
    lines = ["# axsync configuration (see docs/usage.md)", ""]
    for acc_name, acc in accounts.items():
        lines.append(f"[accounts.{_toml_key(acc_name)}]")
        lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in acc.items())
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    os.chmod(path, 0o600)


def command_argv(command: str) -> list[str]:
    """argv for a password command: run directly, through /bin/sh only when it uses shell syntax."""
    if any(c in _SHELL_CHARS for c in command):
        return ["/bin/sh", "-c", command]
    return shlex.split(command)


def run_password_command(command: str, what: str) -> str:
    try:
        proc = subprocess.run(command_argv(command), capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AuthError(f"{what}: password command could not run: {exc.__class__.__name__}") from None
    if proc.returncode != 0:
        raise AuthError(f"{what}: password command exited with status {proc.returncode}")
    out = proc.stdout.decode("utf-8", "replace")
    password = out.split("\n", 1)[0].rstrip("\r")
    if not password:
        raise AuthError(f"{what}: password command printed nothing")
    return password


def resolve_password(account: Account, env: Mapping[str, str] | None = None) -> str:
    """env AXSYNC_PASSWORD > password_command > OS keyring (if the keyring package is installed)."""
    env = os.environ if env is None else env
    if env.get("AXSYNC_PASSWORD"):
        return env["AXSYNC_PASSWORD"]
    if account.password_command:
        return run_password_command(account.password_command, f"account {account.name}")
    try:
        import keyring  # optional extra
    except ImportError:
        keyring = None
    if keyring is not None:
        secret = keyring.get_password("axsync", f"{account.username}@{account.server}")
        if secret:
            return str(secret)
    raise AuthError(
        f"account {account.name}: no password (set AXSYNC_PASSWORD or password_command)"
    )


def with_overrides(account: Account, **changes: Any) -> Account:
    return replace(account, **changes)
