"""`dfsring put/get/del/ls` as a user runs them: subprocesses against a real single node."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dfsring.cli.launcher import LocalCluster, free_port
from dfsring.client.credentials import ENV_ACCESS, ENV_SECRET

pytestmark = pytest.mark.component

MAIN = "import sys; from dfsring.cli.main import main; sys.exit(main())"
AUTH_ENV: dict[str, str] = {}  # the node's root key, as a user exports it for the CLI


@pytest.fixture(scope="module")
def node_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with LocalCluster(1, tmp_path_factory.mktemp("cli"), n=1, r=1, w=1) as cluster:
        AUTH_ENV.update({ENV_ACCESS: cluster.credentials.access_key,
                         ENV_SECRET: cluster.credentials.secret_key})
        yield cluster.urls[0]
        AUTH_ENV.clear()


@pytest.fixture
def bucket() -> str:
    return f"cli-{secrets.token_hex(4)}"


def dfsring(
    *args: str, url: str | None, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    argv = [sys.executable, "-c", MAIN, *args, *(["--url", url] if url else [])]
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        timeout=60,
        env={**os.environ, **AUTH_ENV, **(env or {})},
        check=False,
    )


def one_line(stderr: bytes) -> str:
    text = stderr.decode()
    assert "Traceback" not in text
    assert text.count("\n") == 1 and text.endswith("\n"), text
    return text.strip()


def test_put_get_ls_del(node_url: str, bucket: str, tmp_path: Path) -> None:
    put = dfsring("put", f"{bucket}/a", "hello", url=node_url)
    assert put.returncode == 0, put.stderr
    assert put.stdout == b"" and put.stderr.strip()  # the new context, on stderr

    got = dfsring("get", f"{bucket}/a", url=node_url)
    assert (got.returncode, got.stdout) == (0, b"hello")

    assert dfsring("put", f"{bucket}/b/1", "-", url=node_url, stdin=b"\x00bin").returncode == 0
    source = tmp_path / "value.bin"
    source.write_bytes(b"from a file")
    shown = dfsring("put", f"{bucket}/b/2", "-f", str(source), "--show-context", url=node_url)
    assert shown.returncode == 0 and shown.stdout.strip()
    target = tmp_path / "out.bin"
    assert dfsring("get", f"{bucket}/b/1", "-o", str(target), url=node_url).returncode == 0
    assert target.read_bytes() == b"\x00bin"

    listed = dfsring("ls", bucket, url=node_url)
    assert listed.stdout.decode().splitlines() == ["a", "b/1", "b/2"]
    prefixed = dfsring("ls", f"{bucket}/b/", "--limit", "1", url=node_url)
    assert prefixed.stdout.decode().splitlines() == ["b/1"]

    assert dfsring("del", f"{bucket}/a", url=node_url).returncode == 0
    gone = dfsring("get", f"{bucket}/a", url=node_url)
    assert gone.returncode == 4 and "not found" in one_line(gone.stderr)


def test_siblings_exit_3_with_values_and_context(node_url: str, bucket: str) -> None:
    context = dfsring("put", f"{bucket}/k", "base", "--show-context", url=node_url).stdout
    for value in ("left", "right"):
        written = dfsring(
            "put", f"{bucket}/k", value, "--context", context.decode().strip(), url=node_url
        )
        assert written.returncode == 0
    got = dfsring("get", f"{bucket}/k", url=node_url)
    assert got.returncode == 3 and got.stdout == b""
    report = got.stderr.decode()
    assert "left" in report and "right" in report and "context: " in report


def test_url_from_environment_and_failover(node_url: str, bucket: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"DFSRING_URL": f"{dead},{node_url}"}
    assert dfsring("put", f"{bucket}/k", "v", url=None, env=env).returncode == 0
    assert dfsring("get", f"{bucket}/k", url=None, env=env).stdout == b"v"


def test_bad_bucket_is_one_line_with_request_id(node_url: str) -> None:
    result = dfsring("get", "Not_A_Bucket/k", url=node_url)
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line.startswith("dfsring get: Invalid bucket or key") and "request_id " in line


def test_usage_and_connection_errors_are_one_line() -> None:
    usage = dfsring("get", "no-key-part", url=None)
    assert usage.returncode == 2 and "BUCKET/KEY" in one_line(usage.stderr)
    dead = dfsring("ls", "b", url=f"http://127.0.0.1:{free_port()}")
    assert dead.returncode == 1 and "no dfsring node answered" in one_line(dead.stderr)
