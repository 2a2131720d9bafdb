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
    discover_ca,
    discovered_ca_context,
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


# --- the CA for https:// URLs (discover_ca) ----------------------------------------------------


def _ca(path: Path) -> Path:
    from dfsring.cli.certs import make_ca
    return make_ca(path).cert


def test_ca_is_found_in_the_documented_order(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    env = {"HOME": str(home)}
    assert discover_ca(None, env) is None
    user = _ca(home / ".config" / "dfsring")
    assert discover_ca(None, env) == user
    local = _ca(tmp_path / "dfsring-data" / "pki" / "ca")
    assert discover_ca(None, env) == Path("dfsring-data/pki/ca/ca.pem")
    assert discover_ca(None, env).resolve() == local.resolve()  # type: ignore[union-attr]
    given = _ca(tmp_path / "d" / "pki" / "ca")
    assert discover_ca(tmp_path / "d", env) == given
    assert discover_ca(tmp_path / "d", {**env, "DFSRING_CA": "/x/ca.pem"}) == Path("/x/ca.pem")


def test_a_ca_is_looked_for_only_for_https_urls(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "dfsring-data" / "pki" / "ca" / "ca.pem"
    broken.parent.mkdir(parents=True)
    broken.write_text("not a certificate\n")
    env = {"HOME": str(tmp_path / "home")}
    assert discovered_ca_context(["http://127.0.0.1:7070"], env=env) is None
    with pytest.raises(CredentialsError, match=r"CA file dfsring-data/pki/ca/ca.pem"):
        discovered_ca_context(["http://a:1", "HTTPS://b:2"], env=env)


def test_a_found_ca_is_the_only_trust(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _ca(tmp_path / "dfsring-data" / "pki" / "ca")
    ctx = discovered_ca_context(["https://127.0.0.1:7070"], env={"HOME": str(tmp_path)})
    assert ctx is not None and len(ctx.get_ca_certs()) == 1
    assert discovered_ca_context(["https://h:1"], env={"HOME": str(tmp_path / "nohome"),
                                                       "DFSRING_CA": ""}) is not None
