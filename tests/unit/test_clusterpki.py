"""The certificates of `dfsring cluster --tls` (dfsring.cli.clusterpki): made once, reused,
issued again only when a node certificate cannot serve."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509

from dfsring.cli.certs import CertsError, make_ca, make_node_cert
from dfsring.cli.clusterpki import ensure_cluster_pki, reissue_reason, san_names

NODES = ["node1", "node2"]


def _serial(path: Path) -> int:
    return int(x509.load_pem_x509_certificate(path.read_bytes()).serial_number)


def test_first_run_makes_a_ca_and_one_certificate_per_node(tmp_path: Path) -> None:
    pki = ensure_cluster_pki(tmp_path, NODES, "127.0.0.1")
    assert pki.ca.cert == tmp_path / "pki" / "ca" / "ca.pem"
    assert sorted(pki.nodes) == NODES
    assert len(pki.made) == 3
    assert all(p.key.stat().st_mode & 0o077 == 0 for p in pki.nodes.values())
    assert all("PRIVATE" not in line for line in pki.made)


def test_a_later_run_reuses_everything(tmp_path: Path) -> None:
    first = ensure_cluster_pki(tmp_path, NODES, "127.0.0.1")
    again = ensure_cluster_pki(tmp_path, NODES, "127.0.0.1")
    assert again.made == ()
    assert _serial(again.ca.cert) == _serial(first.ca.cert)
    assert _serial(again.nodes["node2"].cert) == _serial(first.nodes["node2"].cert)


def test_a_missing_node_certificate_is_issued_again_and_only_it(tmp_path: Path) -> None:
    first = ensure_cluster_pki(tmp_path, NODES, "127.0.0.1")
    first.nodes["node1"].key.unlink()
    again = ensure_cluster_pki(tmp_path, [*NODES, "node3"], "127.0.0.1")
    assert [line.split()[1] for line in again.made] == [
        str(again.nodes["node1"].cert), str(again.nodes["node3"].cert)]
    assert _serial(again.nodes["node2"].cert) == _serial(first.nodes["node2"].cert)


def test_certificates_of_a_lost_ca_are_issued_again(tmp_path: Path) -> None:
    first = ensure_cluster_pki(tmp_path, NODES, "127.0.0.1")
    first.ca.key.unlink()
    first.ca.cert.unlink()
    again = ensure_cluster_pki(tmp_path, NODES, "127.0.0.1")
    assert again.made[0].startswith("made a CA")
    assert all("not signed by this CA" in line for line in again.made[1:])
    assert len(again.made) == 3


def test_a_new_host_gets_certificates_that_name_it(tmp_path: Path) -> None:
    ensure_cluster_pki(tmp_path, NODES, "127.0.0.1")
    again = ensure_cluster_pki(tmp_path, NODES, "10.1.2.3")
    assert all("does not name 10.1.2.3" in line for line in again.made)
    cert = x509.load_pem_x509_certificate(again.nodes["node1"].cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1",
                                                                          "10.1.2.3"}


def test_san_names_keep_loopback_and_add_the_host() -> None:
    assert san_names("127.0.0.1") == (["127.0.0.1"], ["localhost"])
    assert san_names("localhost") == (["127.0.0.1"], ["localhost"])
    assert san_names("db.example") == (["127.0.0.1"], ["localhost", "db.example"])


def test_a_certificate_expiring_soon_is_issued_again(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    paths = make_node_cert(tmp_path / "ca", "node1", ["127.0.0.1"], [], tmp_path, days=10)
    cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    now = datetime.datetime.now(datetime.UTC)
    assert reissue_reason(cert, ca_cert, "127.0.0.1", now) == "expires soon"
    assert reissue_reason(cert, ca_cert, "127.0.0.1", now - datetime.timedelta(days=60)) is None


def test_a_ca_whose_key_was_moved_away_still_serves_fitting_certificates(tmp_path: Path) -> None:
    first = ensure_cluster_pki(tmp_path, NODES, "127.0.0.1")
    first.ca.key.unlink()
    assert ensure_cluster_pki(tmp_path, NODES, "127.0.0.1").made == ()
    with pytest.raises(CertsError, match="cannot read the CA"):
        ensure_cluster_pki(tmp_path, [*NODES, "node3"], "127.0.0.1")
