"""Sealing key secrets at rest: AES-256-GCM (NIST SP 800-38D) under a key derived from the
cluster secret with HKDF-SHA256 (RFC 5869) and a fixed label.

A sealed secret is ``nonce (12 random bytes) || ciphertext || tag``; the associated data is
the access key id, so a sealed secret copied onto another key's record does not open. A
random 96-bit nonce per sealing keeps the chance of a repeat negligible for the number of
keys and rotations a cluster will ever make (far below 2**32, SP 800-38D §8.3).

Every node derives the same key from the same cluster secret, so any node can check any
key. Changing the cluster secret makes every sealed secret unreadable: rotate the keys (or
recreate them) after it (docs/SECURITY.md).
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

INFO = b"dfsring access-key secrets v1"
NONCE_BYTES = 12


class SealError(ValueError):
    """A sealed secret that does not open: damaged, another key's, or another cluster's."""


class SecretBox:
    def __init__(self, cluster_secret: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=INFO).derive(cluster_secret.encode("utf-8"))
        self._aead = AESGCM(key)

    def seal(self, access_key: str, secret: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret.encode("utf-8"),
                                          access_key.encode("utf-8"))

    def open(self, access_key: str, sealed: bytes) -> str:
        if len(sealed) <= NONCE_BYTES:
            raise SealError("sealed secret too short")
        try:
            clear = self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:],
                                       access_key.encode("utf-8"))
        except InvalidTag as exc:
            raise SealError("sealed secret does not open under this cluster's key") from exc
        return clear.decode("utf-8")
