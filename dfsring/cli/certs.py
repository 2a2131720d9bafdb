"""`dfsring certs`: a development CA and node certificates (the `cryptography` package).

    dfsring certs ca   --out DIR                       -> DIR/ca.pem, DIR/ca.key
    dfsring certs node --ca DIR --name NODE --ip 127.0.0.1 --dns localhost --out DIR
                                                       -> DIR/NODE.pem, DIR/NODE.key

Why a CA and not self-signed node certificates: peers talk mutual TLS and trust exactly the
certificates one CA signed (--tls-ca), so adding a node means issuing it a certificate, not
redistributing every node's. The CA's key is the cluster's membership credential: keep it off
the nodes (docs/TLS.md).

Every node certificate is both a server and a client certificate (EKU serverAuth and
clientAuth), because a node answers its peers and calls them with the same identity. Its SANs
must name the address peers dial it by (the host of --advertise, as an IP or DNS SAN): peers
check it (dfsring.transport.tls.peer_client_context).

Keys are EC P-256, written 0600 from the moment the file exists; every file is written to a
temporary name and renamed, so a node reloading on SIGHUP never reads half a file. An existing
CA is never overwritten without --force (that would orphan every certificate it signed), nor is
an existing node certificate.

make_ca and make_node_cert are importable: `dfsring cluster` gives its local cluster a CA
through them.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

PROG = "dfsring certs"
CA_DAYS = 3650
NODE_DAYS = 825  # the longest validity browsers accept for a server certificate
MAX_NAMES = 64  # SANs per certificate; bounded like every input
_BACKDATE = datetime.timedelta(minutes=5)  # clock skew between the machine and the nodes


class CertsError(Exception):
    """A certificate that cannot be made (exists already, unreadable CA, bad name); one line."""


@dataclass(frozen=True)
class CaPaths:
    cert: Path
    key: Path


@dataclass(frozen=True)
class NodePaths:
    cert: Path
    key: Path
    ca: Path  # the CA certificate to give as --tls-ca


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write to a temporary name created with `mode`, then rename over `path`: readers see the
    old file or the new one, and a key is never readable by others, not even for a moment."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _refuse_existing(paths: Sequence[Path], what: str, force: bool) -> None:
    found = [p for p in paths if p.exists()]
    if found and not force:
        raise CertsError(f"{what} exists already ({found[0]}); give --force to replace it")


def make_ca(out: Path, *, name: str = "dfsring dev CA", days: int = CA_DAYS,
            force: bool = False) -> CaPaths:
    """A new CA in `out` (ca.pem, ca.key 0600). Refuses to replace an existing one unless
    `force`: every certificate the old one signed would stop being trusted."""
    paths = CaPaths(cert=out / "ca.pem", key=out / "ca.key")
    _refuse_existing([paths.cert, paths.key], "a CA", force)
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = _now() - _BACKDATE
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    _write(paths.key, _key_pem(key), 0o600)
    _write(paths.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return paths


def _load_ca(ca: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    paths = CaPaths(cert=ca / "ca.pem", key=ca / "ca.key")
    try:
        cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
        key = serialization.load_pem_private_key(paths.key.read_bytes(), password=None)
    except OSError as exc:
        raise CertsError(f"cannot read the CA in {ca}: {exc.strerror}: {exc.filename}") from exc
    except (ValueError, TypeError) as exc:
        raise CertsError(f"the CA in {ca} is not a PEM certificate and key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertsError(f"the CA key in {ca} is not an EC key (make it with dfsring certs ca)")
    return cert, key


def _san(ips: Sequence[str], dns: Sequence[str]) -> x509.SubjectAlternativeName:
    if not ips and not dns:
        raise CertsError("give at least one --ip or --dns: peers check the address they dial "
                         "against the certificate")
    if len(ips) + len(dns) > MAX_NAMES:
        raise CertsError(f"at most {MAX_NAMES} --ip and --dns names")
    names: list[x509.GeneralName] = []
    for ip in ips:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError as exc:
            raise CertsError(f"--ip {ip!r} is not an IP address") from exc
    for name in dns:
        if not name or len(name) > 253 or any(c.isspace() for c in name):
            raise CertsError(f"--dns {name!r} is not a DNS name")
        names.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(names)


def _check_name(name: str) -> None:
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name) \
            or name.startswith("."):
        raise CertsError(f"--name {name!r}: use 1-64 letters, digits, '-', '_' or '.'")


def make_node_cert(ca: Path, name: str, ips: Sequence[str], dns: Sequence[str], out: Path, *,
                   days: int = NODE_DAYS, force: bool = False) -> NodePaths:
    """A certificate for node `name` signed by the CA in directory `ca`: out/NAME.pem and
    out/NAME.key (0600). Usable as server and client certificate (serverAuth + clientAuth);
    SANs `ips` and `dns` must include the host peers dial this node by."""
    _check_name(name)
    san = _san(ips, dns)
    ca_cert, ca_key = _load_ca(ca)
    paths = NodePaths(cert=out / f"{name}.pem", key=out / f"{name}.key", ca=ca / "ca.pem")
    _refuse_existing([paths.cert, paths.key], f"a certificate for {name}", force)
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    start = _now() - _BACKDATE
    end = min(start + datetime.timedelta(days=days), ca_cert.not_valid_after_utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=False, crl_sign=False,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(san, critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(paths.key, _key_pem(key), 0o600)
    _write(paths.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return paths


# --- the command ---------------------------------------------------------------------------------


def _days(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of days") from None
    if not 1 <= value <= 36500:
        raise argparse.ArgumentTypeError(f"{value} days: use 1 to 36500")
    return value


def add_certs(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "certs", help="make a development CA and node certificates for TLS",
        description="Make a CA (certs ca) and certificates signed by it (certs node) for "
        "--tls-cert/--tls-key/--tls-ca. See docs/TLS.md.")
    sub = p.add_subparsers(dest="certs_command", metavar="ca|node", required=True)
    ca = sub.add_parser("ca", help="create a CA: DIR/ca.pem and DIR/ca.key")
    ca.add_argument("--out", type=Path, required=True, metavar="DIR")
    ca.add_argument("--days", type=_days, default=CA_DAYS, help=f"validity ({CA_DAYS})")
    ca.add_argument("--force", action="store_true", help="replace an existing CA in DIR")
    ca.set_defaults(run=run_ca)
    node = sub.add_parser("node", help="issue a node certificate: DIR/NAME.pem, DIR/NAME.key")
    node.add_argument("--ca", type=Path, required=True, metavar="DIR",
                      help="directory of the CA (ca.pem, ca.key)")
    node.add_argument("--name", required=True, help="node name (the certificate's CN)")
    node.add_argument("--ip", action="append", default=[], metavar="IP",
                      help="IP address SAN (repeatable): the host peers dial this node by")
    node.add_argument("--dns", action="append", default=[], metavar="NAME",
                      help="DNS name SAN (repeatable)")
    node.add_argument("--out", type=Path, required=True, metavar="DIR")
    node.add_argument("--days", type=_days, default=NODE_DAYS, help=f"validity ({NODE_DAYS})")
    node.add_argument("--force", action="store_true", help="replace an existing certificate")
    node.set_defaults(run=run_node)


def run_ca(args: argparse.Namespace) -> int:
    try:
        paths = make_ca(args.out, days=args.days, force=args.force)
    except (CertsError, OSError) as exc:
        return _fail(exc)
    print(f"CA certificate {paths.cert} (give it to every node as --tls-ca)")
    print(f"CA key         {paths.key} (0600; keep it off the nodes)")
    return 0


def run_node(args: argparse.Namespace) -> int:
    try:
        paths = make_node_cert(args.ca, args.name, args.ip, args.dns, args.out,
                               days=args.days, force=args.force)
    except (CertsError, OSError) as exc:
        return _fail(exc)
    print(f"certificate {paths.cert} (--tls-cert)")
    print(f"key         {paths.key} (--tls-key, 0600)")
    print(f"CA          {paths.ca} (--tls-ca)")
    return 0


def _fail(exc: Exception) -> int:
    """2 for what the arguments can fix (an existing CA, a bad name), 1 for the file system."""
    if isinstance(exc, OSError):
        print(f"{PROG}: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 1
    print(f"{PROG}: {exc}", file=sys.stderr)
    return 2
