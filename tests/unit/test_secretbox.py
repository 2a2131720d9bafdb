"""Secrets at rest (dfsring.replication.access.secretbox): AES-256-GCM under a key derived
from the cluster secret, bound to the access key id."""

from __future__ import annotations

import pytest

from dfsring.replication.access.secretbox import SealError, SecretBox

pytestmark = pytest.mark.unit


def test_a_sealed_secret_opens_on_any_node_of_the_cluster_and_holds_no_clear_text() -> None:
    sealed = SecretBox("cluster-secret").seal("DKAAAAAAAAAAAAAAAAAA", "s3cr3t-value")
    assert b"s3cr3t-value" not in sealed
    assert SecretBox("cluster-secret").open("DKAAAAAAAAAAAAAAAAAA", sealed) == "s3cr3t-value"


def test_two_sealings_of_one_secret_differ() -> None:
    box = SecretBox("x")
    assert box.seal("DKA", "same") != box.seal("DKA", "same")


@pytest.mark.parametrize("how", ["other cluster", "other key", "flipped bit", "short"])
def test_a_sealed_secret_does_not_open_elsewhere(how: str) -> None:
    sealed = SecretBox("cluster").seal("DKAAAAAAAAAAAAAAAAAA", "secret")
    box, key = SecretBox("cluster"), "DKAAAAAAAAAAAAAAAAAA"
    if how == "other cluster":
        box = SecretBox("another")
    elif how == "other key":
        key = "DKBBBBBBBBBBBBBBBBBB"
    elif how == "flipped bit":
        sealed = sealed[:-1] + bytes([sealed[-1] ^ 1])
    else:
        sealed = sealed[:5]
    with pytest.raises(SealError):
        box.open(key, sealed)
