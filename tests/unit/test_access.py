"""The access decision (dfsring.core.access), checked over every combination of caller, role,
need, bucket visibility and admin flag against the rules of the module docstring written out
as a table, and the exact `missing_grant` of every refusal."""

from __future__ import annotations

import itertools

import pytest

from dfsring.core.access import (
    BucketSettings,
    Need,
    Principal,
    Role,
    decide,
    describe_grants,
    missing_grant,
    role_from_name,
)
from dfsring.foundation.errors import Forbidden, Unauthenticated

BUCKET = "photos"
# What a caller may do, by what it holds on BUCKET (None: no grant), for a private bucket.
ALLOWED: dict[Role | None, set[Need]] = {
    None: {Need.PUBLIC, Need.AUTHENTICATED},
    Role.READ: {Need.PUBLIC, Need.AUTHENTICATED, Need.READ},
    Role.WRITE: {Need.PUBLIC, Need.AUTHENTICATED, Need.READ, Need.WRITE},
    Role.OWNER: {Need.PUBLIC, Need.AUTHENTICATED, Need.READ, Need.WRITE, Need.OWNER},
}
MISSING = {Need.READ: "read on bucket photos", Need.WRITE: "write on bucket photos",
           Need.OWNER: "owner of bucket photos", Need.ADMIN: "admin"}
CALLERS = ["anonymous", *ALLOWED]


def outcome(caller: object, admin: bool, need: Need, public: bool) -> str:
    """"allow", "401" or the missing grant, run through `decide`."""
    principal = None
    if caller != "anonymous":
        grants = {} if caller is None else {BUCKET: caller, "other": Role.OWNER}
        principal = Principal("AK", admin=admin, grants=grants)  # type: ignore[arg-type]
    settings = BucketSettings(public_read=public)
    bucket = BUCKET if need in (Need.READ, Need.WRITE, Need.OWNER) else None
    try:
        decide(principal, need, bucket, settings)
    except Unauthenticated:
        return "401"
    except Forbidden as exc:
        assert exc.extra_fields() == {"missing_grant": exc.missing}
        return exc.missing
    return "allow"


def expected(caller: object, admin: bool, need: Need, public: bool) -> str:
    if need is Need.PUBLIC or (need is Need.READ and public):
        return "allow"
    if caller == "anonymous":
        return "401"
    if admin or need in ALLOWED[caller]:  # type: ignore[index]
        return "allow"
    return MISSING[need]


@pytest.mark.parametrize(("caller", "admin", "need", "public"), [
    c for c in itertools.product(CALLERS, [False, True], list(Need), [False, True])
    if not (c[0] == "anonymous" and c[1])])
def test_every_caller_role_need_and_visibility(caller: object, admin: bool, need: Need,
                                               public: bool) -> None:
    assert outcome(caller, admin, need, public) == expected(caller, admin, need, public)


def test_a_grant_on_another_bucket_does_not_count() -> None:
    principal = Principal("AK", admin=False, grants={"other": Role.OWNER})
    with pytest.raises(Forbidden) as caught:
        decide(principal, Need.READ, BUCKET, None)
    assert caught.value.missing == "read on bucket photos"


def test_anonymous_is_told_nothing_about_the_bucket() -> None:
    """401 whatever the bucket (existing, private, missing), never a 403 naming a grant."""
    for settings in (None, BucketSettings(public_read=False)):
        for need in (Need.READ, Need.WRITE, Need.OWNER):
            with pytest.raises(Unauthenticated):
                decide(None, need, BUCKET, settings)
    with pytest.raises(Unauthenticated):
        decide(None, Need.WRITE, BUCKET, BucketSettings(public_read=True))


def test_a_bucket_need_without_a_bucket_is_a_bug_of_the_route() -> None:
    with pytest.raises(ValueError, match="needs a bucket"):
        decide(Principal("AK", admin=True, grants={}), Need.WRITE, None, None)


def test_missing_grant_texts() -> None:
    assert [missing_grant(r, "b") for r in Role] == [
        "read on bucket b", "write on bucket b", "owner of bucket b"]


def test_role_names() -> None:
    assert [role_from_name(n) for n in ("read", "Write", " OWNER ")] == list(Role)
    for bad in ("admin", "", "reader", "1"):
        with pytest.raises(ValueError, match="use read, write or owner"):
            role_from_name(bad)


def test_roles_include_the_ones_below() -> None:
    assert Role.READ < Role.WRITE < Role.OWNER


def test_describe_grants() -> None:
    assert describe_grants(None) == "anonymous"
    assert describe_grants(Principal("AK", admin=True, grants={"a": Role.READ})) == "admin"
    assert describe_grants(Principal("AK", admin=False, grants={})) == "none"
    assert describe_grants(Principal("AK", admin=False, grants={
        "b": Role.OWNER, "a": Role.READ})) == "a:read,b:owner"
