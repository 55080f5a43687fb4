"""S3: moto's server on a loopback port (or a real S3-compatible service: LAB_S3_ENDPOINT).

moto keeps one store per process, shared by every server in it, so each run works in a bucket of
its own (`service.bucket`, LAB_S3_BUCKET for apps). moto serves presigned URLs, POST policies and
multipart uploads, but checks neither signatures, nor expiry, nor a POST policy's conditions (its
content-length-range included): an app that relies on them must confirm what was uploaded.

Apps and checks sign with `credentials()`: the lab's keys, which moto accepts like any others; a
real service (MinIO, Ceph, a cloud bucket) needs its own, in LAB_S3_ACCESS_KEY and
LAB_S3_SECRET_KEY (and LAB_S3_REGION, default us-east-1).

The embedded server holds what it is sent in this process's memory, and the grader runs it for
apps it does not trust: it refuses a request body over MAX_REQUEST_BYTES and, once MAX_STORED_BYTES
were written to it in all, every further write (507), so no app can fill the grader's memory.
"""
from __future__ import annotations

import os
import threading
import uuid

CREDENTIALS = {"aws_access_key_id": "lab", "aws_secret_access_key": "lab-secret", "region_name": "us-east-1"}
MAX_REQUEST_BYTES = 64 * 1024 * 1024
MAX_STORED_BYTES = 256 * 1024 * 1024


def credentials() -> dict[str, str]:
    """Keyword arguments for boto3.client("s3", ...): the keys apps and checks sign with."""
    return {"aws_access_key_id": os.environ.get("LAB_S3_ACCESS_KEY") or CREDENTIALS["aws_access_key_id"],
            "aws_secret_access_key": os.environ.get("LAB_S3_SECRET_KEY") or CREDENTIALS["aws_secret_access_key"],
            "region_name": os.environ.get("LAB_S3_REGION") or CREDENTIALS["region_name"]}


class _Budget:
    """What one embedded server was sent, in bytes of request bodies."""

    def __init__(self):
        self.received = 0
        self.lock = threading.Lock()

    def take(self, size: int) -> bool:
        """Count `size` more bytes; False once the total passes MAX_STORED_BYTES (and from then on)."""
        with self.lock:
            self.received += size
            return self.received <= MAX_STORED_BYTES


class _LimitedInput:
    """A request body that stops the request (with 413) past MAX_REQUEST_BYTES or the budget."""

    def __init__(self, stream, budget: _Budget):
        self._stream, self._budget, self._read = stream, budget, 0

    def _count(self, data):
        size = data if isinstance(data, int) else len(data or b"")
        self._read += size
        if self._read > MAX_REQUEST_BYTES or not self._budget.take(size):
            raise _TooLarge()
        return data

    def readinto(self, buffer) -> int:
        return self._count(self._stream.readinto(buffer) or 0)

    def read(self, *args):
        return self._count(self._stream.read(*args))

    def readline(self, *args):
        return self._count(self._stream.readline(*args))

    def __iter__(self):
        return iter(self.readline, b"")


class _TooLarge(OSError):
    pass


def _limited(app, budget: _Budget):
    """The WSGI app, behind the size limits."""

    def refuse(start_response, status: str, why: bytes):
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(why))),
                                ("Connection", "close")])
        return [why]

    def limited_app(environ, start_response):
        try:
            declared = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > MAX_REQUEST_BYTES:
            return refuse(start_response, "413 Content Too Large", b"the lab's S3 takes bodies up to 64 MB")
        if budget.received >= MAX_STORED_BYTES and environ.get("REQUEST_METHOD") in ("PUT", "POST"):
            return refuse(start_response, "507 Insufficient Storage", b"the lab's S3 is full for this run")
        environ["wsgi.input"] = _LimitedInput(environ["wsgi.input"], budget)
        try:
            return app(environ, start_response)
        except _TooLarge:
            return refuse(start_response, "413 Content Too Large", b"too much data for the lab's S3")

    return limited_app


class _Server:
    """moto's server app on a threaded werkzeug server in a daemon thread (as moto's
    ThreadedMotoServer, with a short poll interval, so that stopping it takes milliseconds)."""

    def __init__(self):
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        class QuietHandler(MotoRequestHandler):
            def log(self, type: str, message: str, *args) -> None:
                pass  # werkzeug would print every request, and moto's errors, to the notebook's stderr

        self.budget = _Budget()
        app = _limited(DomainDispatcherApplication(create_backend_app), self.budget)
        self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
        self._server.daemon_threads = True
        self._server.log = lambda *args, **kwargs: None  # "Error on request" tracebacks, likewise
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="lab-s3", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(2.0)


class S3:
    def __init__(self, endpoint: str | None = None):
        self._server = None
        self._client = None
        if endpoint is None:
            self._server = _Server()
            endpoint = self._server.endpoint
        self.endpoint = endpoint
        self.bucket = f"lab-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=self.bucket)

    def client(self):
        """A boto3 S3 client on this endpoint, with the lab's credentials (made once: making one takes
        tens of milliseconds, and a client may be shared by threads)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client("s3", endpoint_url=self.endpoint, config=Config(signature_version="s3v4"),
                                        **credentials())
        return self._client

    def objects(self) -> dict[str, bytes]:
        """Every object in the run's bucket, by key."""
        client = self.client()
        listing = client.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return {item["Key"]: client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read() for item in listing}

    def sizes(self) -> dict[str, int]:
        """The size of every object in the run's bucket, by key (nothing downloaded)."""
        listing = self.client().list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return {item["Key"]: item["Size"] for item in listing}

    def _looks_empty(self) -> bool:
        """Whether the embedded server's bucket holds no object and no multipart upload, read from
        moto's store in this process (no request); False when that cannot be told."""
        if self._server is None:
            return False
        try:
            from moto.s3.models import s3_backends

            for backends in s3_backends.values():
                for backend in backends.values():
                    bucket = backend.buckets.get(self.bucket)
                    if bucket is not None:
                        return not len(bucket.keys) and not bucket.multiparts
        except Exception:  # moto's store is not an API: when it changes, ask over HTTP
            pass
        return False

    def reset(self) -> None:
        """Between checks: every object and every unfinished multipart upload of the bucket removed."""
        if self._looks_empty():
            return
        client = self.client()
        for item in client.list_objects_v2(Bucket=self.bucket).get("Contents", []):
            client.delete_object(Bucket=self.bucket, Key=item["Key"])
        for upload in client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []):
            client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])

    def close(self) -> None:
        try:
            self.reset()
            self.client().delete_bucket(Bucket=self.bucket)
        except Exception:
            pass
        if self._server is not None:
            self._server.stop()
