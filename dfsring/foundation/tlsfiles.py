"""Loading --tls-cert / --tls-key / --tls-ca into an ssl.SSLContext, with one-line errors.

Kept in the foundation, next to config, because a node must refuse to start on a certificate
it cannot use (a missing file, a key that does not match the certificate, an encrypted key, a
CA file with no certificate in it) with one clear line and exit status 2, not with an OpenSSL
traceback at the first handshake. dfsring.transport.tls builds the live contexts with the same
two loaders, so a reload (SIGHUP) checks new files exactly as start does.

Files are bounded (MAX_PEM_BYTES) before OpenSSL parses them: a PEM chain of a few
certificates is a few KiB, and a path pointing at a huge file is a configuration mistake.
"""

from __future__ import annotations

import os
import ssl

MAX_PEM_BYTES = 1 << 20


class TlsFileError(ValueError):
    """A certificate, key or CA file that cannot be used; the message is one line."""


def _no_password() -> bytes:
    """An encrypted key is refused instead of OpenSSL prompting on the node's terminal."""
    raise TlsFileError("the key is encrypted; give it unencrypted (file mode 0600)")


def _check_file(flag: str, path: str) -> None:
    try:
        size = os.stat(path).st_size
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise TlsFileError(f"{flag} {path}: cannot read: {exc.strerror}") from exc
    if size > MAX_PEM_BYTES:
        raise TlsFileError(f"{flag} {path}: {size} bytes, more than the {MAX_PEM_BYTES} a PEM "
                           "file may have")


def load_identity(ctx: ssl.SSLContext, cert: str, key: str) -> None:
    """Our certificate chain and its private key into `ctx`. On failure `ctx` keeps what it
    had only if OpenSSL failed before replacing it, so callers that must keep serving (a
    reload) load into a scratch context first (check_identity)."""
    _check_file("--tls-cert", cert)
    _check_file("--tls-key", key)
    try:
        ctx.load_cert_chain(cert, key, password=_no_password)
    except TlsFileError as exc:
        raise TlsFileError(f"--tls-key {key}: {exc}") from exc
    except ssl.SSLError as exc:
        raise TlsFileError(_identity_error(cert, key, exc)) from exc
    except OSError as exc:
        raise TlsFileError(f"--tls-cert {cert}: {exc.strerror or exc}") from exc


def _identity_error(cert: str, key: str, exc: ssl.SSLError) -> str:
    reason = (exc.reason or str(exc)).upper()
    if "KEY_VALUES_MISMATCH" in reason:
        return f"--tls-key {key} does not match the certificate in --tls-cert {cert}"
    if "PEM" in reason or "NO_START_LINE" in reason or "ASN1" in reason:
        return f"--tls-cert {cert} / --tls-key {key}: not a PEM certificate and key ({reason})"
    return f"--tls-cert {cert} / --tls-key {key}: unusable ({reason})"


def load_ca(ctx: ssl.SSLContext, ca: str) -> None:
    """Trust the CA certificates in `ca` (PEM). Adds to what `ctx` trusts: OpenSSL has no way
    to forget a CA, so removing one from the trust takes a restart (docs/TLS.md)."""
    _check_file("--tls-ca", ca)
    try:
        ctx.load_verify_locations(cafile=ca)
    except ssl.SSLError as exc:
        raise TlsFileError(f"--tls-ca {ca}: no usable CA certificate in it "
                           f"({exc.reason or exc})") from exc
    except OSError as exc:
        raise TlsFileError(f"--tls-ca {ca}: {exc.strerror or exc}") from exc


def check_identity(cert: str, key: str) -> None:
    """Raise TlsFileError unless `cert` and `key` load together (files readable, PEM, the key
    matching the certificate); touches no live context."""
    load_identity(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), cert, key)


def check_ca(ca: str) -> None:
    load_ca(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), ca)


def check_config(cert: str, key: str, ca: str) -> None:
    """The rules of the three flags together: cert and key go together, and a CA (mutual TLS
    between peers) needs our own certificate to present."""
    if bool(cert) != bool(key):
        raise TlsFileError("--tls-cert and --tls-key go together: give both or neither")
    if ca and not cert:
        raise TlsFileError("--tls-ca needs --tls-cert and --tls-key: peers talk mutual TLS, so "
                           "this node must present a certificate too")
    if cert:
        check_identity(cert, key)
    if ca:
        check_ca(ca)
