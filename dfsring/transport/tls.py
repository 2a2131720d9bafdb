"""TLS contexts for the node's listeners, its peer calls and our clients, and their reload.

Four contexts, each from the configuration (--tls-cert, --tls-key, --tls-ca), None where TLS
is not configured so that the caller serves or dials plain HTTP:

- client_server_context: HTTPS for clients. Our certificate; no client certificate asked for
  (clients authenticate with keys, issue 18).
- peer_server_context: mutual TLS for peers. Our certificate, and a client certificate is
  required and must chain to --tls-ca, the cluster CA, and to nothing else (not the system
  store): a node with a certificate from another CA fails the handshake before any peer
  message is read. The CA is the membership credential; the cluster secret still applies on
  top.
- peer_client_context: what a node dials its peers with. It presents our certificate and
  verifies the peer's against --tls-ca, including the host: a peer's certificate must carry
  the host of that peer's advertised address (--advertise, the HOST of HOST:PORT that gossip
  spreads) as an IP SAN when it is an address or as a DNS SAN when it is a name. `dfsring
  certs node --ip/--dns` issues them so; a certificate for 127.0.0.1 does not vouch for
  10.0.0.5.
- client_context_for: our CLI and Python client, verifying a node against a CA file (a dev
  CA) or, without one, the system store.

All of them speak TLS 1.2 or later. Reloading (TlsReloader, on SIGHUP) loads new files into
the live contexts: OpenSSL reads a context's certificate at each new handshake, so new
connections get the new certificate and established ones keep theirs. New files are checked
in a scratch context first, so a bad file changes nothing.
"""

from __future__ import annotations

import datetime
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509

from dfsring.foundation.tlsfiles import (
    TlsFileError,
    check_ca,
    check_identity,
    load_ca,
    load_identity,
)

__all__ = ["CertInfo", "TlsConfig", "TlsFileError", "TlsReloader", "cert_info",
           "client_context_for", "client_server_context", "peer_client_context",
           "peer_server_context"]


log = logging.getLogger("dfsring.tls")


class TlsConfig(Protocol):
    """The part of NodeConfig these functions read."""

    @property
    def tls_cert(self) -> str: ...
    @property
    def tls_key(self) -> str: ...
    @property
    def tls_ca(self) -> str: ...


def _base(purpose: ssl._SSLMethod) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def client_server_context(cfg: TlsConfig) -> ssl.SSLContext | None:
    """HTTPS for clients: our certificate, no client certificate asked for. None without
    --tls-cert."""
    if not cfg.tls_cert:
        return None
    ctx = _base(ssl.PROTOCOL_TLS_SERVER)
    load_identity(ctx, cfg.tls_cert, cfg.tls_key)
    return ctx


def peer_server_context(cfg: TlsConfig) -> ssl.SSLContext | None:
    """Mutual TLS for peers: a client certificate signed by --tls-ca is required (and only
    that CA is trusted). None without --tls-ca."""
    if not cfg.tls_ca:
        return None
    ctx = _base(ssl.PROTOCOL_TLS_SERVER)
    load_identity(ctx, cfg.tls_cert, cfg.tls_key)
    load_ca(ctx, cfg.tls_ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def peer_client_context(cfg: TlsConfig) -> ssl.SSLContext | None:
    """Dialling peers: present our certificate, verify theirs against --tls-ca only, and check
    the dialled host against its SANs (see the module docstring for how SANs must be issued).
    None without --tls-ca."""
    if not cfg.tls_ca:
        return None
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
    load_identity(ctx, cfg.tls_cert, cfg.tls_key)
    load_ca(ctx, cfg.tls_ca)
    return ctx


def client_context_for(ca_path: Path | str | None, *, cert: Path | str | None = None,
                       key: Path | str | None = None) -> ssl.SSLContext:
    """Our clients (CLI, Python client, tests): verify the node against the CA in `ca_path`,
    or the system store when None. `cert`/`key`: a client certificate to present, for a
    listener that asks for one (the peer listener)."""
    if ca_path is None:
        ctx = ssl.create_default_context()
    else:
        ctx = _base(ssl.PROTOCOL_TLS_CLIENT)
        load_ca(ctx, str(ca_path))
    if cert is not None:
        load_identity(ctx, str(cert), str(key if key is not None else cert))
    return ctx


@dataclass(frozen=True)
class CertInfo:
    """What an operator checks after a reload: which certificate is now served, until when."""

    subject: str
    serial: int
    not_after: datetime.datetime


def cert_info(path: str) -> CertInfo:
    """The first (leaf) certificate of a PEM chain file."""
    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise TlsFileError(f"--tls-cert {path}: {exc}") from exc
    return CertInfo(subject=cert.subject.rfc4514_string(), serial=cert.serial_number,
                    not_after=cert.not_valid_after_utc)


class TlsReloader:
    """Re-reads --tls-cert/--tls-key (and --tls-ca) into every live context of the node.

    `servers` and `clients` are the contexts built from the same configuration: listeners
    and the peer RpcClient. A CA is added to a context's trust, never removed (OpenSSL cannot
    forget one), so rotating the CA away from an old one takes a restart.
    """

    def __init__(self, cfg: TlsConfig, contexts: Sequence[ssl.SSLContext | None]) -> None:
        self._cfg = cfg
        self._contexts = [ctx for ctx in contexts if ctx is not None]

    @property
    def enabled(self) -> bool:
        return bool(self._contexts)

    def reload(self) -> CertInfo:
        """Check the files, then load them into every context; TlsFileError (and nothing
        changed) if a file is missing, unreadable or does not match."""
        cfg = self._cfg
        check_identity(cfg.tls_cert, cfg.tls_key)
        if cfg.tls_ca:
            check_ca(cfg.tls_ca)
        info = cert_info(cfg.tls_cert)
        for ctx in self._contexts:
            load_identity(ctx, cfg.tls_cert, cfg.tls_key)
            if cfg.tls_ca and ctx.verify_mode == ssl.CERT_REQUIRED:
                load_ca(ctx, cfg.tls_ca)
        return info

    def reload_and_log(self) -> None:
        """The SIGHUP handler: reload, and say what is served now, or why nothing changed.
        A failed reload keeps the certificates in use and the node serving."""
        if not self.enabled:
            log.info("SIGHUP: no TLS configured, nothing to reload")
            return
        try:
            info = self.reload()
        except TlsFileError as exc:
            log.error("TLS reload failed; the certificates in use are kept",
                      extra={"fields": {"error": str(exc)}})
            return
        log.info("TLS certificates reloaded", extra={"fields": {
            "subject": info.subject, "serial": f"{info.serial:x}",
            "not_after": info.not_after.isoformat()}})
