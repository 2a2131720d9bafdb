"""S3 errors: the standard code, its HTTP status and a message (rendered as S3 XML by the edge).

Clients branch on the code, so the codes and statuses are exactly AWS's
(https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html). Anything raised below
the S3 edge that is not an S3Error is translated by the edge (dfsring.s3.app), never shown
as a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping

STATUS: Mapping[str, int] = {
    "AccessDenied": 403,
    "AuthorizationHeaderMalformed": 400,
    "BadDigest": 400,
    "BucketAlreadyExists": 409,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "ExpiredToken": 400,
    "IncompleteBody": 400,
    "InternalError": 500,
    "InvalidAccessKeyId": 403,
    "InvalidArgument": 400,
    "InvalidBucketName": 400,
    "InvalidBucketState": 409,
    "InvalidDigest": 400,
    "InvalidLocationConstraint": 400,
    "InvalidObjectState": 403,
    "InvalidPart": 400,
    "InvalidPartOrder": 400,
    "InvalidRange": 416,
    "InvalidRequest": 400,
    "KeyTooLongError": 400,
    "MalformedXML": 400,
    "MaxMessageLengthExceeded": 400,
    "MetadataTooLarge": 400,
    "MethodNotAllowed": 405,
    "MissingContentLength": 411,
    "MissingSecurityHeader": 400,
    "NoSuchBucket": 404,
    "NoSuchCORSConfiguration": 404,
    "NoSuchKey": 404,
    "NoSuchUpload": 404,
    "NoSuchVersion": 404,
    "NotImplemented": 501,
    "NotModified": 304,
    "PreconditionFailed": 412,
    "RequestTimeout": 400,
    "RequestTimeTooSkewed": 403,
    "ServiceUnavailable": 503,
    "SignatureDoesNotMatch": 403,
    "SlowDown": 503,
    "XAmzContentSHA256Mismatch": 400,
}


class S3Error(Exception):
    """An S3 error reply. ``headers`` are added to the reply (e.g. x-amz-delete-marker on
    the 404 of a key whose current version is a delete marker)."""

    def __init__(self, code: str, message: str, *, resource: str = "",
                 headers: Mapping[str, str] | None = None) -> None:
        if code not in STATUS:
            raise ValueError(f"unknown S3 error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.resource = resource
        self.headers = dict(headers or {})

    @property
    def status(self) -> int:
        return STATUS[self.code]
