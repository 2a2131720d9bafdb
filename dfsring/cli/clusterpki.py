"""The certificates of `dfsring cluster --tls`: one dev CA per data dir, one certificate per node.

Layout under the data dir (docs/TLS.md):

    pki/ca/ca.pem, pki/ca/ca.key     the cluster CA (made once; the key stays here, 0600)
    pki/nodes/NODE.pem, NODE.key     each node's certificate (serverAuth + clientAuth)

Made on the first `--tls` run and reused on later ones, so a restarted cluster keeps its
identities and a client that trusts the CA keeps trusting the nodes. A node certificate is
issued again only when it cannot serve: missing or unreadable, not signed by this CA (the CA
was deleted and made anew), expiring within RENEW_BEFORE, or not naming the host the cluster
now listens on (peers check that name, dfsring.transport.tls). The CA is never replaced: that
would orphan every client that trusts it. Its key may be moved off the machine (docs/TLS.md):
certificates that still fit are then reused, and issuing one fails naming the missing key.

Why the plain `dfsring cluster` makes no CA, although it would take milliseconds: nothing
would use it, a CA key lying around is one more secret to guard, and its ca.pem would be
found by CA discovery (dfsring.client.credentials.discover_ca) for https:// URLs run from
that directory. The first `--tls` run makes it; from then on every run reuses it.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from dfsring.cli.certs import CaPaths, NodePaths, make_ca, make_node_cert

PKI_DIR = "pki"
RENEW_BEFORE = datetime.timedelta(days=30)
LOOPBACK_IPS = ("127.0.0.1",)
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class ClusterPki:
    """What `dfsring cluster --tls` runs the nodes with, and what it did to get there."""

    ca: CaPaths
    nodes: dict[str, NodePaths]
    made: tuple[str, ...]  # one line per file made, for the operator (never a key's content)


def san_names(host: str) -> tuple[list[str], list[str]]:
    """(IP SANs, DNS SANs) for a node listening on `host`: the host itself, and loopback so
    that local tools may dial 127.0.0.1 or localhost whatever --host is."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return list(LOOPBACK_IPS), [*LOOPBACK_NAMES, *([host] if host not in LOOPBACK_NAMES
                                                        else [])]
    return [*LOOPBACK_IPS, *([host] if host not in LOOPBACK_IPS else [])], list(LOOPBACK_NAMES)


def reissue_reason(cert: x509.Certificate, ca: x509.Certificate, host: str,
                   now: datetime.datetime) -> str | None:
    """Why `cert` cannot serve a node on `host` under `ca` at `now`, or None if it can."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "not signed by this CA"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return "expires soon"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "no subject alternative names"
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    if host not in ips and host not in san.get_values_for_type(x509.DNSName):
        return f"does not name {host}"
    return None


def _current(paths: NodePaths, ca: x509.Certificate, host: str,
             now: datetime.datetime) -> str | None:
    """None if the node's files can be reused, else why they are issued again."""
    if not (paths.cert.is_file() and paths.key.is_file()):
        return "missing"
    try:
        cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    except (OSError, ValueError):
        return "unreadable"
    return reissue_reason(cert, ca, host, now)


def ensure_cluster_pki(data_dir: Path, node_ids: Sequence[str], host: str,
                       now: datetime.datetime | None = None) -> ClusterPki:
    """The CA and node certificates for `node_ids` under data_dir/pki, made where missing or
    unfit (see the module docstring). CertsError or OSError if they cannot be made."""
    now = now or datetime.datetime.now(datetime.UTC)
    ca_dir, node_dir = data_dir / PKI_DIR / "ca", data_dir / PKI_DIR / "nodes"
    made: list[str] = []
    ca = CaPaths(cert=ca_dir / "ca.pem", key=ca_dir / "ca.key")
    if not (ca.cert.exists() or ca.key.exists()):  # a CA with its key moved away is kept
        ca = make_ca(ca_dir)
        made.append(f"made a CA: {ca.cert}")
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ips, dns = san_names(host)
    nodes: dict[str, NodePaths] = {}
    for node_id in node_ids:
        paths = NodePaths(cert=node_dir / f"{node_id}.pem", key=node_dir / f"{node_id}.key",
                          ca=ca.cert)
        why = _current(paths, ca_cert, host, now)
        if why is not None:
            paths = make_node_cert(ca_dir, node_id, ips, dns, node_dir, force=True)
            made.append(f"issued {paths.cert} ({why})")
        nodes[node_id] = paths
    return ClusterPki(ca=ca, nodes=nodes, made=tuple(made))
