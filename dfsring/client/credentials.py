"""Where the CLI and the Python client find their access key, so nobody types a secret.

A node refuses unauthenticated requests (issue 18), yet the README's quick start must keep
working with no flags: `dfsring cluster` writes the root credentials to a file and every tool
looks for them in one order, the first found wins:

1. the environment: ``DFSRING_ACCESS_KEY`` and ``DFSRING_SECRET_KEY`` (both, or neither);
2. ``<data dir>/credentials`` when a data dir is given (what `dfsring cluster` writes);
3. ``./dfsring-data/credentials`` (the default data dir of `dfsring cluster`);
4. ``$XDG_CONFIG_HOME/dfsring/credentials`` (default ``~/.config/dfsring/credentials``).

The file is JSON, ``{"access_key": "...", "secret_key": "..."}``, written with mode 0600
and read only if no other user can read it (as ssh does for its keys): a secret that others
could read is already leaked, and saying so beats using it silently.

The CA that verifies https:// nodes is found the same way, so that after `dfsring cluster
--tls` the CLI works from the same directory without flags (docs/TLS.md), first found wins:

1. ``--ca FILE`` (the CLI) or ``ssl=`` (the Python client), then ``DFSRING_CA``;
2. ``<data dir>/pki/ca/ca.pem`` when a data dir is given (what `dfsring cluster --tls` makes);
3. ``./dfsring-data/pki/ca/ca.pem``;
4. ``$XDG_CONFIG_HOME/dfsring/ca.pem`` (default ``~/.config/dfsring/ca.pem``);
5. else the system's trust store.

A CA found trusts that CA only, not the system store as well: which certificates a client
accepts must not depend on two sources at once. It is looked for only when a URL is
https://, so a broken file never stands in the way of plain HTTP. A CA certificate is
public: unlike credentials, its file mode is not checked.
"""

from __future__ import annotations

import json
import os
import ssl
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dfsring.transport.tls import TlsFileError, client_context_for

__all__ = ["ENV_ACCESS", "ENV_SECRET", "FILE_NAME", "Credentials", "CredentialsError",
           "auth_headers", "ca_candidates", "candidates", "discover", "discover_ca",
           "discovered_ca_context", "load_file", "write_file"]

ENV_ACCESS = "DFSRING_ACCESS_KEY"
ENV_SECRET = "DFSRING_SECRET_KEY"
FILE_NAME = "credentials"
ENV_CA = "DFSRING_CA"
CA_PATH = Path("pki", "ca", "ca.pem")  # under a data dir, where `dfsring cluster --tls` puts it
CA_CONFIG_NAME = "ca.pem"
DEFAULT_DATA_DIR = Path("dfsring-data")
MAX_FILE_BYTES = 64 << 10
MAX_FIELD = 256


class CredentialsError(ValueError):
    """A credentials source exists but cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str

    def __post_init__(self) -> None:
        for name, value in (("access_key", self.access_key), ("secret_key", self.secret_key)):
            if not isinstance(value, str) or not value or len(value) > MAX_FIELD:
                raise CredentialsError(f"{name} must be a non-empty string of at most "
                                       f"{MAX_FIELD} characters")
            if ":" in value and name == "access_key":
                raise CredentialsError("access_key must not contain ':'")
            if any(ord(c) < 0x21 or ord(c) > 0x7E for c in value):
                raise CredentialsError(f"{name} must be printable ASCII without spaces")

    def __repr__(self) -> str:  # never print a secret, even in a traceback
        return f"Credentials(access_key={self.access_key!r}, secret_key=***)"


def candidates(data_dir: Path | None, env: Mapping[str, str]) -> list[Path]:
    """The credential files looked at, in order (for messages that say where we looked)."""
    paths = []
    if data_dir is not None:
        paths.append(Path(data_dir) / FILE_NAME)
    paths.append(DEFAULT_DATA_DIR / FILE_NAME)
    paths.append(_config_dir(env) / FILE_NAME)
    return paths


def _config_dir(env: Mapping[str, str]) -> Path:
    config_home = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home())
                                                     / ".config")
    return Path(config_home) / "dfsring"


def ca_candidates(data_dir: Path | None, env: Mapping[str, str]) -> list[Path]:
    """The CA files looked at after DFSRING_CA, in order (see the module docstring)."""
    paths = [Path(data_dir) / CA_PATH] if data_dir is not None else []
    return [*paths, DEFAULT_DATA_DIR / CA_PATH, _config_dir(env) / CA_CONFIG_NAME]


def discover_ca(data_dir: Path | None = None,
                env: Mapping[str, str] | None = None) -> Path | None:
    """DFSRING_CA, else the first CA file that exists, else None (the system store)."""
    env = os.environ if env is None else env
    if env.get(ENV_CA):
        return Path(env[ENV_CA])
    return next((path for path in ca_candidates(data_dir, env) if path.is_file()), None)


def discovered_ca_context(urls: Sequence[str], data_dir: Path | None = None,
                          env: Mapping[str, str] | None = None) -> ssl.SSLContext | None:
    """The context verifying https:// `urls` against the CA discover_ca finds; None when no
    URL is https:// or no CA is found (the system store then verifies). CredentialsError
    for a CA file that is there but does not load, naming it."""
    if not any(url.strip().lower().startswith("https://") for url in urls):
        return None
    path = discover_ca(data_dir, env)
    if path is None:
        return None
    try:
        return client_context_for(path)
    except TlsFileError as exc:
        raise CredentialsError(f"CA file {path}: {str(exc).split(': ', 1)[-1]}") from exc


def discover(data_dir: Path | None = None,
             env: Mapping[str, str] | None = None) -> Credentials | None:
    """The first credentials found (see the module docstring), or None if there are none.
    Raises CredentialsError for a source that exists but is unusable: half-set variables,
    a malformed file, or a file others can read."""
    env = os.environ if env is None else env
    access, secret = env.get(ENV_ACCESS, ""), env.get(ENV_SECRET, "")
    if access or secret:
        if not (access and secret):
            raise CredentialsError(f"set both {ENV_ACCESS} and {ENV_SECRET}, or neither")
        return Credentials(access, secret)
    for path in candidates(data_dir, env):
        if path.is_file():
            return load_file(path)
    return None


def load_file(path: Path) -> Credentials:
    try:
        info = path.stat()
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CredentialsError(f"{path}: readable by other users (mode "
                                   f"{stat.S_IMODE(info.st_mode):o}); chmod 600 it")
        if info.st_size > MAX_FILE_BYTES:
            raise CredentialsError(f"{path}: {info.st_size} bytes, not a credentials file")
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        raise CredentialsError(f"{path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        if isinstance(exc, CredentialsError):
            raise
        raise CredentialsError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise CredentialsError(f"{path}: expected a JSON object")
    try:
        return Credentials(str(doc["access_key"]), str(doc["secret_key"]))
    except KeyError as exc:
        raise CredentialsError(f"{path}: missing {exc.args[0]!r}") from exc
    except CredentialsError as exc:
        raise CredentialsError(f"{path}: {exc}") from exc


def write_file(path: Path, creds: Credentials) -> None:
    """Write atomically with mode 0600 from the first byte (never briefly world-readable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps({"access_key": creds.access_key,
                                 "secret_key": creds.secret_key}).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def auth_headers(creds: Credentials | None) -> dict[str, str]:
    """The header that authenticates a request with these credentials (none without)."""
    if creds is None:
        return {}
    return {"Authorization": f"Bearer {creds.access_key}:{creds.secret_key}"}
