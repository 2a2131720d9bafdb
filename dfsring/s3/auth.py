"""Authentication and authorization on the S3 port, answered in S3's error codes.

The pieces are the native API's (dfsring.http.auth): dfsring.core.authparse reads the
credentials, dfsring.core.sigv4 checks a signature against the raw path and raw query as
received, AccessService.signing_key finds the secret, dfsring.core.access.decide makes the
one access decision, FailureLimit bounds failed attempts per source, and every refusal and
every owner action is a line of the ``dfsring.audit`` logger. What differs on S3:

- Errors are S3 codes: an unknown key is InvalidAccessKeyId (after the same work as a wrong
  secret), a bad signature SignatureDoesNotMatch, a clock too far off RequestTimeTooSkewed,
  an expired presigned URL AccessDenied "Request has expired", a malformed header
  AuthorizationHeaderMalformed (query: AuthorizationQueryParametersError), no credentials
  where they are needed AccessDenied (S3 answers 403, not 401), a source past its failure
  budget SlowDown with Retry-After.
- Signature Version 2 (``Authorization: AWS AK:sig``, or ``?AWSAccessKeyId=&Signature=``,
  awscli v1's presign default) is refused with InvalidRequest naming AWS4-HMAC-SHA256 (s3v4).
- Signed aws-chunked bodies (STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]) are accepted:
  the request's signing key, date, scope and signature seed the chunk signature chain
  (``Authn.signing``), which dfsring.s3.chunked checks as the body is read.
- Replays are accepted within the signature's time window, as AWS accepts them. Clients
  re-send an identical signed request when an answer was lost, even after it succeeded:
  rclone (Go's HTTP transport) re-sent a PUT that had got its 200, and a replay cache
  refused it (tests/s3). Every S3 write is idempotent or harmless to repeat (PUT, DELETE,
  an extra multipart upload id), and keeping captured requests from being replayed is
  TLS's job. The native API, whose clients are ours, keeps its replay cache.
- With ``--insecure`` nothing is refused for want of a grant; credentials are still checked
  when they verify (so a signed streaming body is checked), and a failed check falls back to
  anonymous rather than refusing.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from dfsring.core import sigv4
from dfsring.core.access import Need, Principal, Role, decide
from dfsring.core.authparse import UNKNOWN_KEY_SECRET, KeyPair, SigV4Credential, parse_credentials
from dfsring.foundation import errors
from dfsring.foundation.config import NodeConfig
from dfsring.http.auth import MAX_SKEW_S, FailureLimit
from dfsring.replication.access.service import AccessService
from dfsring.s3.chunked import ChunkSigning
from dfsring.s3.errors import S3Error

audit = logging.getLogger("dfsring.audit")
SIGV2_REFUSED = ("Signature Version 2 is not supported: sign with AWS4-HMAC-SHA256 "
                 "(Signature Version 4, 's3v4'); see docs/S3.md")
_MISMATCH = ("The request signature we calculated does not match the signature you "
             "provided. Check your key and signing method.")


@dataclass(frozen=True)
class Authn:
    """What authentication found out about one request."""

    principal: Principal | None
    payload: str | None = None  # the signed x-amz-content-sha256 value (None: not signed)
    signing: ChunkSigning | None = None  # the chunk chain's seed (signed streaming only)


ANONYMOUS = Authn(None)


class S3AuthMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.refusals = Counter("dfsring_s3_auth_refusals", "S3 requests refused by "
                                "authentication or authorization, by reason", ("reason",),
                                registry=registry)


_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, S3AuthMetrics] = \
    weakref.WeakKeyDictionary()


def auth_metrics(registry: CollectorRegistry | None) -> S3AuthMetrics:
    """One set of counters per registry: a second S3 app on the same node's registry (a
    test, a rebuilt app) shares them instead of failing on a duplicate metric name."""
    if registry is None:
        return S3AuthMetrics(None)
    found = _METRICS.get(registry)
    if found is None:
        found = _METRICS[registry] = S3AuthMetrics(registry)
    return found


def is_sigv2(headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    """Whether a request is signed with Signature Version 2 (header or query form)."""
    auth = headers.get("Authorization", "")
    return auth.startswith("AWS ") or ("AWSAccessKeyId" in query and "Signature" in query)


def s3_refusal(exc: errors.Unauthenticated, presigned: bool) -> S3Error:
    """The S3 error for a SigV4 or key-pair refusal (dfsring.core.sigv4's details)."""
    detail = str(exc)
    if detail == sigv4.SIGNATURE_MISMATCH:
        return S3Error("SignatureDoesNotMatch", _MISMATCH)
    if detail == "request time too skewed":
        return S3Error("RequestTimeTooSkewed", "The difference between the request time and "
                       "the server's time is too large.")
    if detail == "presigned URL expired":
        return S3Error("AccessDenied", "Request has expired")
    if "x-amz-content-sha256" in detail:
        return S3Error("InvalidRequest", detail)
    code = "AuthorizationQueryParametersError" if presigned else "AuthorizationHeaderMalformed"
    return S3Error(code, detail)


class S3Auth:
    """One node's S3 authenticator (module docstring); shared by every request."""

    def __init__(self, cfg: NodeConfig, access: AccessService, *,
                 registry: CollectorRegistry | None = None, limit: FailureLimit | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.access = access
        self.metrics = auth_metrics(registry)
        self.failures = limit or FailureLimit()
        self.clock = clock
        self.wall_clock = wall_clock

    @property
    def enforced(self) -> bool:
        return not self.cfg.insecure

    # --- authentication --------------------------------------------------------------------

    async def authenticate(self, request: web.Request) -> Authn:
        """Who sent the request (ANONYMOUS: no credentials); S3Error when refused."""
        query = request.query
        if is_sigv2(request.headers, query):
            raise self._refuse(request, "sigv2", S3Error("InvalidRequest", SIGV2_REFUSED))
        try:
            creds = parse_credentials(request.headers, list(query.items()))
        except errors.Unauthenticated as exc:
            if not self.enforced:
                return ANONYMOUS
            raise self._refuse(request, "malformed",
                               s3_refusal(exc, "X-Amz-Signature" in query)) from None
        if creds is None:
            return ANONYMOUS
        source = request.remote or "-"
        wait = self.failures.blocked_for(source, self.clock())
        if wait > 0:
            raise self._refuse(request, "rate_limited", _slow_down(wait), creds.access_key)
        try:
            return await self._check(request, creds)
        except S3Error as exc:
            if not self.enforced:
                return ANONYMOUS
            wait = self.failures.failed(source, self.clock())
            shown = _slow_down(wait) if wait > 0 else exc
            raise self._refuse(request, "bad_credentials", shown, creds.access_key) from None

    async def _check(self, request: web.Request, creds: KeyPair | SigV4Credential) -> Authn:
        if isinstance(creds, KeyPair):
            try:
                principal = await self.access.authenticate(creds.access_key, creds.secret_key)
            except errors.Unauthenticated:
                raise S3Error("InvalidAccessKeyId", "credentials not accepted") from None
            return Authn(principal)
        return await self._signed(request, creds)

    def _verify(self, request: web.Request, cred: SigV4Credential, secret: str) -> str:
        try:
            return sigv4.verify(cred, method=request.method, raw_path=request.raw_path,
                                raw_query=request.rel_url.raw_query_string,
                                headers=list(request.headers.items()), secret_key=secret,
                                region=self.cfg.s3_region, now_s=self.wall_clock(),
                                max_skew_s=MAX_SKEW_S, streaming=True)
        except errors.Unauthenticated as exc:
            raise s3_refusal(exc, cred.presigned) from None

    async def _signed(self, request: web.Request, cred: SigV4Credential) -> Authn:
        """A SigV4 request's principal. An unknown key is checked against a dummy secret
        (the same work as a wrong one) and then named as unknown, as S3 does; a failed
        check re-reads the key once (rotated on another node)."""
        found = await self.access.signing_key(cred.access_key)
        try:
            payload = self._verify(request, cred, found[1] if found else UNKNOWN_KEY_SECRET)
        except S3Error as exc:
            if exc.code != "SignatureDoesNotMatch" or found is None:
                raise self._unknown(found, exc) from None
            found = await self.access.signing_key(cred.access_key, reread=True)
            payload = self._verify(request, cred, found[1] if found else UNKNOWN_KEY_SECRET)
        if found is None:
            raise S3Error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not "
                          "exist in our records.")
        signing = None
        if payload in sigv4.STREAMING_SIGNED:
            signing = ChunkSigning(
                key=sigv4.signing_key(found[1], cred.date, cred.region, cred.service),
                amz_date=cred.amz_date,
                scope=f"{cred.date}/{cred.region}/{cred.service}/aws4_request",
                seed_signature=cred.signature)
        return Authn(found[0], payload, signing)

    @staticmethod
    def _unknown(found: tuple[Principal, str] | None, exc: S3Error) -> S3Error:
        if found is None and exc.code == "SignatureDoesNotMatch":
            return S3Error("InvalidAccessKeyId", "The AWS Access Key Id you provided does "
                           "not exist in our records.")
        return exc

    # --- authorization ---------------------------------------------------------------------

    async def authorize(self, request: web.Request, authn: Authn, need: Need,
                        bucket: str | None) -> None:
        """Raise AccessDenied unless ``authn`` may do what ``need`` says on ``bucket``."""
        if not self.enforced:
            return
        principal = authn.principal
        settings = None  # read only when it can matter: a read the grants do not allow
        if (need is Need.READ and bucket is not None
                and not (principal and (principal.admin
                                        or principal.grants.get(bucket, 0) >= Role.READ))):
            settings = await self.access.bucket_settings(bucket)
        try:
            decide(principal, need, bucket, settings)
        except errors.Unauthenticated:
            raise self._refuse(request, "missing", S3Error("AccessDenied", "Access Denied"),
                               principal=principal) from None
        except errors.Forbidden as exc:
            raise self._refuse(request, "forbidden", S3Error(
                "AccessDenied", f"Access Denied: this key lacks {exc}"),
                principal=principal) from None

    # --- audit -----------------------------------------------------------------------------

    def _refuse(self, request: web.Request, reason: str, exc: S3Error,
                claimed: str | None = None, principal: Principal | None = None) -> S3Error:
        self.metrics.refusals.labels(reason).inc()
        log_audit(request, principal, "refused", reason, exc.status, claimed)
        return exc


def _slow_down(wait: float) -> S3Error:
    return S3Error("SlowDown", "too many failed authentications from this address",
                   headers={"Retry-After": str(max(1, round(wait)))})


def log_audit(request: web.Request, principal: Principal | None, decision: str, reason: str,
              status: int, claimed: str | None = None, op: str = "-") -> None:
    """One audit line, as the native API writes them (dfsring.http.auth.log_audit), with
    the S3 operation in place of the route; never a secret."""
    audit.info("access", extra={"fields": {
        "who": principal.access_key if principal is not None else "anonymous",
        "claimed": claimed[:64] if claimed else "-", "method": request.method,
        "route": f"s3:{op}", "path": request.path[:200], "peer": request.remote or "-",
        "decision": decision, "reason": reason, "status": status,
        "request_id": request.get("request_id", "-")}})


def owner_of(authn: Authn) -> str:
    """The access key that owns what this request creates ("anonymous" under --insecure)."""
    return authn.principal.access_key if authn.principal is not None else "anonymous"


def visible(principal: Principal | None, names: Sequence[str], enforced: bool) -> set[str]:
    """The buckets ListBuckets shows: every one to root/admin (or under --insecure), else
    those the key holds a grant on."""
    if not enforced or (principal is not None and principal.admin):
        return set(names)
    if principal is None:
        return set()
    return {name for name in names if name in principal.grants}
