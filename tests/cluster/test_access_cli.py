"""``dfsring key ...`` and ``dfsring bucket ...`` against a real node with root credentials,
the CLI finding its own credentials in the environment (issue 18 part 8)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from dfsring.cli.main import main
from tests.cluster.accesskit import AuthCluster, bearer, call

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthCluster]:
    with AuthCluster(1, tmp_path_factory.mktemp("access-cli"), n=1, r=1, w=1) as cluster:
        yield cluster


def run(cluster: AuthCluster, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    monkeypatch.setenv("DFSRING_ACCESS_KEY", cluster.root[0])
    monkeypatch.setenv("DFSRING_SECRET_KEY", cluster.root[1])
    code = main([*argv[:2], "--url", cluster.urls[0], *argv[2:]])
    out, err = capsys.readouterr()
    return code, out, err


def test_key_and_bucket_commands_end_to_end(cluster: AuthCluster,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    url = cluster.urls[0]
    code, out, err = run(cluster, monkeypatch, capsys, "key", "create", "--name", "ci")
    assert code == 0 and "shown only this once" in err
    found = re.search(r"access_key: (\S+)\nsecret_key: (\S+)", out)
    assert found is not None, out
    key, secret = found.groups()
    assert run(cluster, monkeypatch, capsys, "bucket", "create", "pub", "--public-read")[0] == 0
    assert run(cluster, monkeypatch, capsys, "key", "allow", key, "pub", "write")[0] == 0
    code, out, _ = run(cluster, monkeypatch, capsys, "key", "list")
    assert code == 0 and key in out and "grants=pub=write" in out and secret not in out
    assert call(url, "PUT", "/v1/kv/pub/x", headers=bearer(key, secret), body=b"1").status == 204
    code, out, _ = run(cluster, monkeypatch, capsys, "bucket", "info", "pub")
    assert code == 0 and "public_read=true" in out and f"{key}=write" in out

    code, out, err = run(cluster, monkeypatch, capsys, "key", "rotate", key)
    new = re.search(r"secret_key: (\S+)", out)
    assert code == 0 and new is not None and "shown only this once" in err
    assert call(url, "GET", "/v1/kv/pub/x", headers=bearer(key, new.group(1))).status == 200
    assert run(cluster, monkeypatch, capsys, "key", "disable", key)[1].count("disabled") == 1
    assert call(url, "PUT", "/v1/kv/pub/x", headers=bearer(key, new.group(1)),
                body=b"2").status == 401
    assert run(cluster, monkeypatch, capsys, "key", "enable", key)[0] == 0
    assert run(cluster, monkeypatch, capsys, "bucket", "deny", "pub", key)[0] == 0
    got = call(url, "PUT", "/v1/kv/pub/x", headers=bearer(key, new.group(1)), body=b"3")
    assert got.status == 403
    assert run(cluster, monkeypatch, capsys, "key", "delete", key)[0] == 0
    code, _, err = run(cluster, monkeypatch, capsys, "key", "show", key)
    assert code == 4 and "404" in err


def test_a_non_admin_key_gets_one_line_naming_the_missing_grant(
        cluster: AuthCluster, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(cluster, monkeypatch, capsys, "key", "create")
    found = re.search(r"access_key: (\S+)\nsecret_key: (\S+)", out)
    assert code == 0 and found is not None
    monkeypatch.setenv("DFSRING_ACCESS_KEY", found.group(1))
    monkeypatch.setenv("DFSRING_SECRET_KEY", found.group(2))
    code = main(["key", "list", "--url", cluster.urls[0]])
    _, err = capsys.readouterr()
    assert code == 1 and "admin" in err and len(err.strip().splitlines()) == 1, err


def test_bucket_cors_sets_shows_and_clears_one_rule(cluster: AuthCluster,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    url = cluster.urls[0]
    code, out, _ = run(cluster, monkeypatch, capsys, "bucket", "cors", "web",
                       "--origin", "https://app.example", "--origin", "https://*.cdn.example",
                       "--method", "get", "--method", "PUT", "--header", "Authorization",
                       "--max-age", "90")
    assert code == 0, out
    assert ("origins=https://*.cdn.example,https://app.example  methods=GET,PUT  "
            "headers=authorization  max_age_s=90") in out
    code, out, _ = run(cluster, monkeypatch, capsys, "bucket", "cors", "web")
    assert code == 0 and "1 rule(s)" in out
    preflight = {"Origin": "https://a.cdn.example", "Access-Control-Request-Method": "PUT",
                 "Access-Control-Request-Headers": "authorization"}
    assert call(url, "OPTIONS", "/v1/kv/web/k", headers=preflight).status == 204
    code, _, err = run(cluster, monkeypatch, capsys, "bucket", "cors", "web",
                       "--origin", "ftp://nope")
    assert code != 0 and "origin" in err
    code, out, _ = run(cluster, monkeypatch, capsys, "bucket", "cors", "web", "--clear")
    assert code == 0 and "no rules of its own" in out
    assert call(url, "OPTIONS", "/v1/kv/web/k", headers=preflight).status == 403


def test_key_limit_sets_and_clears_a_key_s_own_limits(cluster: AuthCluster,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(cluster, monkeypatch, capsys, "key", "create", "--name", "lim")
    found = re.search(r"access_key: (\S+)", out)
    assert code == 0 and found is not None
    key = found.group(1)
    code, out, _ = run(cluster, monkeypatch, capsys, "key", "limit", key, "--rate", "3",
                       "--bandwidth", "1000")
    assert code == 0 and "rate=3.0" in out and "bandwidth=1000" in out, out
    code, out, _ = run(cluster, monkeypatch, capsys, "key", "limit", key, "--rate", "node")
    assert code == 0 and "rate=node" in out and "bandwidth=1000" in out, out
    code, _, err = run(cluster, monkeypatch, capsys, "key", "limit", key, "--rate", "fast")
    assert code == 2 and "not a number or 'node'" in err
