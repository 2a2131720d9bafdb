"""`dfsring certs` and the --tls-* checks at start: files on disk, one clear line on failure."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from dfsring.cli.certs import CertsError, make_ca, make_node_cert
from dfsring.cli.main import main as cli_main
from dfsring.foundation.config import ConfigError, load_config


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    make_ca(tmp_path / "ca")
    return tmp_path / "ca"


def _config(tmp_path: Path, *tls: str) -> None:
    load_config(["--data-dir", str(tmp_path / "d"), *tls], environ={})


def test_node_certificate_is_server_and_client_with_sans(ca: Path, tmp_path: Path) -> None:
    paths = make_node_cert(ca, "n1", ["127.0.0.1", "::1"], ["localhost"], tmp_path / "out")
    cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    for key in (paths.key, ca / "ca.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_an_existing_ca_is_not_replaced_without_force(ca: Path) -> None:
    before = (ca / "ca.pem").read_bytes()
    with pytest.raises(CertsError, match="--force"):
        make_ca(ca)
    assert (ca / "ca.pem").read_bytes() == before
    make_ca(ca, force=True)
    assert (ca / "ca.pem").read_bytes() != before


def test_certs_command_exit_statuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ca"
    assert cli_main(["certs", "ca", "--out", str(out)]) == 0
    assert cli_main(["certs", "ca", "--out", str(out)]) == 2
    assert "exists already" in capsys.readouterr().err
    args = ["certs", "node", "--ca", str(out), "--name", "n1", "--out", str(tmp_path / "n")]
    assert cli_main(args) == 2  # no --ip / --dns
    assert cli_main([*args, "--ip", "not-an-ip"]) == 2
    assert cli_main([*args, "--ip", "127.0.0.1"]) == 0
    assert cli_main(["certs", "node", "--ca", str(tmp_path / "none"), "--name", "n2", "--ip",
                     "127.0.0.1", "--out", str(tmp_path / "n")]) == 2


def test_start_refuses_a_key_that_does_not_match_the_certificate(ca: Path,
                                                                 tmp_path: Path) -> None:
    one = make_node_cert(ca, "one", ["127.0.0.1"], [], tmp_path)
    two = make_node_cert(ca, "two", ["127.0.0.1"], [], tmp_path)
    with pytest.raises(ConfigError, match="does not match"):
        _config(tmp_path, "--tls-cert", str(one.cert), "--tls-key", str(two.key))


@pytest.mark.parametrize("flags, message", [
    (("--tls-cert", "{cert}"), "go together"),
    (("--tls-ca", "{ca}"), "needs --tls-cert"),
    (("--tls-cert", "{missing}", "--tls-key", "{key}"), "cannot read"),
    (("--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-ca", "{key}"), "no usable CA"),
])
def test_start_refuses_unusable_tls_flags(ca: Path, tmp_path: Path, flags: tuple[str, ...],
                                          message: str) -> None:
    paths = make_node_cert(ca, "n", ["127.0.0.1"], [], tmp_path)
    names = {"cert": paths.cert, "key": paths.key, "ca": paths.ca, "missing": tmp_path / "x"}
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, *(f.format(**names) for f in flags))


def test_start_accepts_a_complete_tls_configuration(ca: Path, tmp_path: Path) -> None:
    paths = make_node_cert(ca, "n", ["127.0.0.1"], [], tmp_path)
    _config(tmp_path, "--tls-cert", str(paths.cert), "--tls-key", str(paths.key),
            "--tls-ca", str(paths.ca))
