"""Locust load test for dfsring: the native API, and S3 through boto3 (issue 22 item 8).

Mixed traffic of small key/value objects, large files, listings and reads, the shape the users
described. Run it against any cluster (loadtest/README.md has the recipes)::

    export DFSRING_ACCESS_KEY=... DFSRING_SECRET_KEY=...        # the root key, or any key
    locust -f loadtest/locustfile.py --host http://127.0.0.1:7071 \
        --headless -u 50 -r 10 -t 5m

Settings (environment):

- ``DFSRING_ACCESS_KEY`` / ``DFSRING_SECRET_KEY``: credentials (Bearer on the native API,
  SigV4 on S3). Empty: anonymous, for a node started with ``--insecure``.
- ``DFSRING_LOCUST_BUCKET`` (``locust``): the bucket written to (created on the S3 side).
- ``DFSRING_LOCUST_KEYS`` (1000): distinct small keys per bucket; reads pick among them.
- ``DFSRING_LOCUST_SMALL`` (1024) / ``DFSRING_LOCUST_LARGE`` (4 MiB): object sizes in bytes.
- ``DFSRING_S3_URL``: the S3 endpoint (``http://HOST:9000``). Unset: the S3 user does not run
  (it is abstract), so the native half works on a cluster without ``--s3-port``.
- ``DFSRING_S3_REGION`` (``us-east-1``): the region the nodes were started with.

Every request is bounded by a timeout, and the run by Locust's ``-t``; each user keeps its
own bounded key space, so a long run overwrites rather than grows without limit.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from locust import FastHttpUser, User, between, events, task

ACCESS_KEY = os.environ.get("DFSRING_ACCESS_KEY", "")
SECRET_KEY = os.environ.get("DFSRING_SECRET_KEY", "")
BUCKET = os.environ.get("DFSRING_LOCUST_BUCKET", "locust")
KEYS = max(1, int(os.environ.get("DFSRING_LOCUST_KEYS", "1000")))
SMALL = max(1, int(os.environ.get("DFSRING_LOCUST_SMALL", "1024")))
LARGE = max(1, int(os.environ.get("DFSRING_LOCUST_LARGE", str(4 * 1024 * 1024))))
S3_URL = os.environ.get("DFSRING_S3_URL", "")
S3_REGION = os.environ.get("DFSRING_S3_REGION", "us-east-1")
TIMEOUT = 30.0

# Payloads made once: the load generator should spend its CPU sending, not on random bytes.
SMALL_BODY = os.urandom(SMALL)
LARGE_BODY = os.urandom(LARGE)


def _key(prefix: str) -> str:
    return f"{prefix}/{random.randrange(KEYS):06d}"


class NativeUser(FastHttpUser):
    """The native API: key/value reads and writes, large files, listings."""

    wait_time = between(0.05, 0.2)
    network_timeout = TIMEOUT
    connection_timeout = TIMEOUT

    def on_start(self) -> None:
        self.auth = ({"Authorization": f"Bearer {ACCESS_KEY}:{SECRET_KEY}"}
                     if ACCESS_KEY else {})
        # One file for file_get to read (versions, not siblings: every user may write it).
        self.client.put(f"/v1/files/{BUCKET}/files/000000", data=LARGE_BODY,
                        headers=self.auth, name="file put (large)")

    @task(6)
    def kv_put(self) -> None:
        """An update as dfsring clients make it: read the key's context, write with it, so
        the new value replaces what was read instead of piling up siblings (a blind PUT is
        concurrent with everything stored: past --max-siblings it is refused, 409)."""
        path = f"/v1/kv/{BUCKET}/{_key('kv')}"
        context = self._context(path)
        headers = {**self.auth, **({"Dfs-Context": context} if context else {})}
        self.client.put(path, data=SMALL_BODY, headers=headers, name="kv put")

    def _context(self, path: str) -> str | None:
        with self.client.get(path, headers=self.auth, name="kv put: read context",
                             catch_response=True) as resp:
            if resp.status_code == 300:  # siblings: the context is in the body
                resp.success()
                try:
                    return str(resp.json()["context"])
                except (ValueError, KeyError, TypeError):
                    resp.failure("300 without a context")
                    return None
            if resp.status_code in (200, 404):
                resp.success()
                return resp.headers.get("Dfs-Context")
        return None

    @task(10)
    def kv_get(self) -> None:
        # 404: never written yet; 300: concurrent writes left siblings (a put resolves
        # them). Both are normal outcomes here, not failures.
        with self.client.get(f"/v1/kv/{BUCKET}/{_key('kv')}", headers=self.auth,
                             name="kv get", catch_response=True) as resp:
            if resp.status_code in (200, 300, 404):
                resp.success()

    @task(2)
    def kv_list(self) -> None:
        self.client.get(f"/v1/kv/{BUCKET}?prefix=kv/00&limit=100", headers=self.auth,
                        name="kv list")

    @task(1)
    def file_put_large(self) -> None:
        path = f"files/{random.randrange(max(1, KEYS // 100)):06d}"
        self.client.put(f"/v1/files/{BUCKET}/{path}", data=LARGE_BODY, headers=self.auth,
                        name="file put (large)")

    @task(2)
    def file_get(self) -> None:
        with self.client.get(f"/v1/files/{BUCKET}/files/000000", headers=self.auth,
                             name="file get (large)", catch_response=True) as resp:
            if resp.status_code == 200 and len(resp.content or b"") != LARGE:
                resp.failure(f"file of {len(resp.content or b'')} bytes, not {LARGE}")

    @task(1)
    def file_list(self) -> None:
        self.client.get(f"/v1/files/{BUCKET}?prefix=files/&limit=100", headers=self.auth,
                        name="file list")


class S3User(User):
    """S3 through boto3: small PUT/GET, a large multipart upload, ListObjectsV2.

    Abstract (not run) unless DFSRING_S3_URL names an endpoint. boto3 is not Locust-aware,
    so every call is timed here and reported through Locust's request event."""

    abstract = not S3_URL
    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        import boto3  # only when S3 runs: the native half needs no AWS SDK
        from botocore.config import Config

        self.s3 = boto3.client(
            "s3", endpoint_url=S3_URL, region_name=S3_REGION,
            aws_access_key_id=ACCESS_KEY or "anonymous",
            aws_secret_access_key=SECRET_KEY or "anonymous",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                          connect_timeout=TIMEOUT, read_timeout=TIMEOUT))
        self._call("create bucket", self._create_bucket)

    def _create_bucket(self) -> Any:
        try:
            return self.s3.create_bucket(Bucket=BUCKET)
        except self.s3.exceptions.BucketAlreadyOwnedByYou:
            return None

    def _call(self, name: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result: Any = None
        error: BaseException | None = None
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            error = exc
        self.environment.events.request.fire(
            request_type="S3", name=name, response_time=(time.perf_counter() - started) * 1000,
            response_length=0, exception=error, context={})
        return result

    @task(6)
    def put_small(self) -> None:
        self._call("s3 put", self.s3.put_object, Bucket=BUCKET, Key=_key("s3"), Body=SMALL_BODY)

    @task(10)
    def get_small(self) -> None:
        key = _key("s3")

        def get() -> Any:
            try:
                return self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            except self.s3.exceptions.NoSuchKey:
                return None  # never written yet: a normal outcome under random keys

        self._call("s3 get", get)

    @task(2)
    def list_v2(self) -> None:
        self._call("s3 list", self.s3.list_objects_v2, Bucket=BUCKET, Prefix="s3/00",
                   MaxKeys=100)

    @task(1)
    def put_large(self) -> None:
        # upload_fileobj splits above 8 MiB by default: multipart for the larger sizes.
        import io
        self._call("s3 put (large)", self.s3.upload_fileobj, io.BytesIO(LARGE_BODY), BUCKET,
                   f"s3large/{random.randrange(max(1, KEYS // 100)):06d}")


@events.init.add_listener
def _announce(environment: Any, **_: Any) -> None:
    if not S3_URL:
        print("locustfile: DFSRING_S3_URL not set, the S3 user does not run")
