"""The real S3 clients of the suite, configured for one endpoint: awscli, boto3, s3cmd, rclone
and curl (with presigned URLs).

Each client gets its configuration the way a user would write it (a config file or the
environment), path-style addressing, SigV4 only, no retries (a server error must fail the
suite, not be papered over by a second attempt), and nothing from this machine's own settings
(HOME, AWS_* and proxy variables are replaced), so the suite tests the clients' defaults and
not whatever the CI box has. Every subprocess runs with a timeout; a failing one is reported
with its command line, exit code and output.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.client import Config

MIB = 1 << 20
CLIENT_TIMEOUT_S = 300.0  # one client command, 100 MiB on a loaded 2-core box included
_DROPPED_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                "all_proxy", "AWS_CA_BUNDLE", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
                "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "RCLONE_CONFIG", "S3CMD_CONFIG")


@dataclass(frozen=True)
class Target:
    """One S3 endpoint with the credentials and CA to reach it."""

    url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    ca: Path | None = None  # https: verify the server against this CA

    @property
    def host_port(self) -> str:
        return self.url.split("://", 1)[1].rstrip("/")

    @property
    def https(self) -> bool:
        return self.url.startswith("https://")


def sha256_file(path: Path) -> str:
    """SHA-256 of a file read in 1 MiB pieces (never the whole file in memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while piece := fh.read(MIB):
            digest.update(piece)
    return digest.hexdigest()


def make_file(path: Path, size: int, seed: int) -> str:
    """A file of `size` pseudo-random bytes (no repeated chunk, so dedup cannot flatter a
    transfer); returns its SHA-256. Written in 1 MiB blocks."""
    digest = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    block_seed = hashlib.sha256(f"s3-suite-{seed}".encode()).digest()
    with path.open("wb") as fh:
        left, counter = size, 0
        while left > 0:
            block = _block(block_seed, counter, min(left, MIB))
            fh.write(block)
            digest.update(block)
            left -= len(block)
            counter += 1
    return digest.hexdigest()


def _block(seed: bytes, counter: int, size: int) -> bytes:
    """Fast deterministic non-repeating bytes: SHAKE-256 of (seed, counter)."""
    return hashlib.shake_256(seed + counter.to_bytes(8, "big")).digest(size)


def run(argv: Sequence[str], env: dict[str, str], *, timeout: float = CLIENT_TIMEOUT_S,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a client command; AssertionError with its output if it fails or times out."""
    try:
        proc = subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{' '.join(argv)} did not finish in {timeout:g}s; "
                             f"output so far: {exc.stdout!r} {exc.stderr!r}") from exc
    assert proc.returncode == 0, (f"{' '.join(argv)} exited {proc.returncode}\n"
                                  f"stdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}")
    return proc


def clean_env(home: Path) -> dict[str, str]:
    """This process's environment without proxies and AWS/rclone/s3cmd settings, HOME set to
    `home` (so no ~/.aws, ~/.s3cfg or ~/.config/rclone of the machine is read)."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), NO_PROXY="*", no_proxy="*", AWS_EC2_METADATA_DISABLED="true",
               XDG_CONFIG_HOME=str(home / ".config"))
    return env


def tool(name: str) -> str:
    """The executable `name`: the one next to this interpreter (awscli from the test extra)
    first, then PATH; AssertionError naming the CI step that installs it."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    assert found, f"{name} is not installed (.ci/run installs awscli from PyPI, s3cmd and " \
                  "rclone with apt-get)"
    return found


class Clients:
    """awscli, s3cmd, rclone and boto3 configured for one Target, their files under `home`."""

    def __init__(self, target: Target, home: Path) -> None:
        self.target = target
        self.home = home
        self.env = clean_env(home)
        self.aws_env = self._aws_env()
        self.s3cfg = self._write_s3cfg()
        self.rclone_env = self._rclone_env()
        self._boto3: Any = None

    # --- awscli --------------------------------------------------------------------------

    def _aws_env(self) -> dict[str, str]:
        """awscli v1: path style and SigV4 (its presign would otherwise sign with SigV2)."""
        config = self.home / "aws-config"
        config.write_text("[default]\n"
                          f"region = {self.target.region}\n"
                          "s3 =\n"
                          "    addressing_style = path\n"
                          "    signature_version = s3v4\n")
        env = {**self.env, "AWS_CONFIG_FILE": str(config),
               "AWS_SHARED_CREDENTIALS_FILE": str(self.home / "aws-credentials-none"),
               "AWS_ACCESS_KEY_ID": self.target.access_key,
               "AWS_SECRET_ACCESS_KEY": self.target.secret_key,
               "AWS_DEFAULT_REGION": self.target.region,
               "AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": "1"}
        if self.target.ca is not None:
            env["AWS_CA_BUNDLE"] = str(self.target.ca)
        return env

    def aws(self, *args: str, timeout: float = CLIENT_TIMEOUT_S) -> str:
        """`aws --endpoint-url URL ARGS...`; its stdout."""
        argv = [tool("aws"), "--endpoint-url", self.target.url, *args]
        return run(argv, self.aws_env, timeout=timeout).stdout

    # --- s3cmd ---------------------------------------------------------------------------

    def _write_s3cfg(self) -> Path:
        path = self.home / "s3cfg"
        hp = self.target.host_port
        lines = ["[default]", f"access_key = {self.target.access_key}",
                 f"secret_key = {self.target.secret_key}", f"host_base = {hp}",
                 f"host_bucket = {hp}", f"bucket_location = {self.target.region}",
                 f"use_https = {self.target.https}", "signature_v2 = False",
                 "check_ssl_certificate = True", "check_ssl_hostname = True",
                 f"ca_certs_file = {self.target.ca or ''}", "progress_meter = False",
                 "max_retries = 0", "proxy_host = ", "proxy_port = 0", ""]
        path.write_text("\n".join(lines))
        return path

    def s3cmd(self, *args: str, timeout: float = CLIENT_TIMEOUT_S) -> str:
        argv = [tool("s3cmd"), "-c", str(self.s3cfg), "--no-progress", *args]
        return run(argv, self.env, timeout=timeout).stdout

    # --- rclone --------------------------------------------------------------------------

    def _rclone_env(self) -> dict[str, str]:
        """A remote `dfs`; the upload cutoff is lowered from rclone's 200 MiB so that a
        100 MiB object goes multipart, as with the other clients."""
        path = self.home / "rclone.conf"
        path.write_text("[dfs]\n"
                        "type = s3\n"
                        "provider = Other\n"
                        "env_auth = false\n"
                        f"access_key_id = {self.target.access_key}\n"
                        f"secret_access_key = {self.target.secret_key}\n"
                        f"endpoint = {self.target.url}\n"
                        f"region = {self.target.region}\n"
                        "force_path_style = true\n"
                        "upload_cutoff = 16M\n"
                        "chunk_size = 16M\n")
        env = {**self.env, "RCLONE_CONFIG": str(path)}
        if self.target.ca is not None:
            env["RCLONE_CA_CERT"] = str(self.target.ca)
        return env

    def rclone(self, *args: str, timeout: float = CLIENT_TIMEOUT_S) -> str:
        argv = [tool("rclone"), "--retries", "1", "--low-level-retries", "1", *args]
        return run(argv, self.rclone_env, timeout=timeout).stdout

    # --- boto3 and curl ------------------------------------------------------------------

    def boto3(self, **config: Any) -> Any:
        """A boto3 S3 client: path style, SigV4; `config` adds botocore Config options.
        Without `config` the same client is reused (they are thread safe, and making one
        loads the whole service model)."""
        if not config:
            if self._boto3 is None:
                self._boto3 = self.new_boto3()
            return self._boto3
        return self.new_boto3(**config)

    def new_boto3(self, **config: Any) -> Any:
        """A boto3 S3 client of its own (for a test that hooks its events)."""
        cfg = Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                     retries={"max_attempts": 1, "mode": "standard"},
                     connect_timeout=10, read_timeout=120, max_pool_connections=32,
                     **config)
        return boto3.session.Session().client(
            "s3", endpoint_url=self.target.url, region_name=self.target.region,
            aws_access_key_id=self.target.access_key,
            aws_secret_access_key=self.target.secret_key,
            verify=str(self.target.ca) if self.target.ca else True, config=cfg)

    def curl(self, *args: str, timeout: float = CLIENT_TIMEOUT_S) -> str:
        """curl, failing on HTTP errors (the body kept in the report), no proxy."""
        ca = ("--cacert", str(self.target.ca)) if self.target.ca else ()
        argv = [tool("curl"), "-sS", "--fail-with-body", "--noproxy", "*", *ca, *args]
        return run(argv, self.env, timeout=timeout).stdout
