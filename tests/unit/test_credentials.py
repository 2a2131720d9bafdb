"""Credential discovery for the CLI and the client (dfsring.client.credentials)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dfsring.client.credentials import (
    Credentials,
    CredentialsError,
    auth_headers,
    discover,
    write_file,
)


def test_environment_wins_over_files(tmp_path: Path) -> None:
    write_file(tmp_path / "credentials", Credentials("filekey", "filesecret"))
    env = {"DFSRING_ACCESS_KEY": "envkey", "DFSRING_SECRET_KEY": "envsecret",
           "HOME": str(tmp_path)}
    assert discover(tmp_path, env) == Credentials("envkey", "envsecret")


def test_half_set_environment_is_an_error_not_a_silent_fallback(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="both"):
        discover(tmp_path, {"DFSRING_ACCESS_KEY": "k", "HOME": str(tmp_path)})


def test_data_dir_file_then_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    env = {"HOME": str(home)}
    assert discover(None, env) is None
    write_file(home / ".config" / "dfsring" / "credentials", Credentials("user", "s1"))
    assert discover(None, env) == Credentials("user", "s1")
    write_file(tmp_path / "dfsring-data" / "credentials", Credentials("local", "s2"))
    assert discover(None, env) == Credentials("local", "s2")
    write_file(tmp_path / "d" / "credentials", Credentials("given", "s3"))
    assert discover(tmp_path / "d", env) == Credentials("given", "s3")


def test_written_file_is_private_and_a_readable_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    write_file(path, Credentials("k", "s"))
    assert (path.stat().st_mode & 0o777) == 0o600
    os.chmod(path, 0o644)
    with pytest.raises(CredentialsError, match="chmod 600"):
        discover(tmp_path, {"HOME": str(tmp_path)})


@pytest.mark.parametrize("content", [b"not json", b"[]", b'{"access_key": "k"}',
                                     b'{"access_key": "a:b", "secret_key": "s"}',
                                     b'{"access_key": "", "secret_key": "s"}'])
def test_malformed_file_says_which_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "credentials"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(CredentialsError, match="credentials"):
        discover(tmp_path, {"HOME": str(tmp_path)})


def test_secret_never_in_repr_and_bearer_header() -> None:
    creds = Credentials("AKID", "s3cr3t")
    assert "s3cr3t" not in repr(creds)
    assert auth_headers(creds) == {"Authorization": "Bearer AKID:s3cr3t"}
    assert auth_headers(None) == {}
