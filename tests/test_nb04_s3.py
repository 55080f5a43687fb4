"""The lab's S3 (labsupport/services/s3.py), which notebook 04 and its checks stand on: moto's
server in this process, a bucket per run, bounded for apps the grader does not trust, quiet, and
quick to reset and to stop."""
from __future__ import annotations

import logging
import time

import httpx
import pytest

from labsupport.services import s3 as lab_s3


@pytest.fixture
def s3():
    service = lab_s3.S3()
    yield service
    service.close()


def test_each_service_has_a_bucket_of_its_own(s3):
    other = lab_s3.S3()
    try:
        assert other.bucket != s3.bucket
        s3.client().put_object(Bucket=s3.bucket, Key="a", Body=b"1")
        assert other.sizes() == {} and s3.sizes() == {"a": 1}
    finally:
        other.close()


def test_reset_removes_objects_and_unfinished_multipart_uploads(s3):
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key="a", Body=b"12")
    client.create_multipart_upload(Bucket=s3.bucket, Key="b")
    assert not s3._looks_empty()
    s3.reset()
    assert s3.sizes() == {}
    assert client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []) == []
    assert s3._looks_empty()


def test_presigned_urls_are_served_but_not_verified(s3):
    """What the notebook teaches about moto: it serves presigned URLs and ignores their signature
    and expiry, so apps must confirm what was uploaded."""
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key="a", Body=b"data")
    url = client.generate_presigned_url("get_object", Params={"Bucket": s3.bucket, "Key": "a"}, ExpiresIn=-60)
    assert httpx.get(url[:-4] + "0000").content == b"data"


def test_a_body_over_the_request_limit_is_refused(s3, monkeypatch):
    monkeypatch.setattr(lab_s3, "MAX_REQUEST_BYTES", 1024)
    url = s3.client().generate_presigned_url("put_object", Params={"Bucket": s3.bucket, "Key": "big"})
    assert httpx.put(url, content=b"x" * 2048).status_code == 413

    def chunks():  # no Content-Length: counted as it is read
        for _ in range(4):
            yield b"x" * 1024

    assert httpx.put(url, content=chunks()).status_code >= 400
    assert s3.sizes() == {}


def test_writes_stop_once_the_budget_is_spent(s3, monkeypatch):
    monkeypatch.setattr(lab_s3, "MAX_STORED_BYTES", 4096)
    client = s3.client()
    url = client.generate_presigned_url("put_object", Params={"Bucket": s3.bucket, "Key": "k"})
    assert httpx.put(url, content=b"x" * 3000).status_code == 200
    assert httpx.put(url, content=b"x" * 3000).status_code >= 400  # the budget counts bytes received
    assert httpx.put(url, content=b"x").status_code == 507


def test_moto_errors_do_not_reach_stderr(s3, capsys, caplog):
    """A request moto cannot handle (a POST to an object's URL) is a 500 for the client, not a
    traceback in the notebook's stderr."""
    url = s3.client().generate_presigned_url("put_object", Params={"Bucket": s3.bucket, "Key": "k"})
    with caplog.at_level(logging.INFO):
        assert httpx.post(url, data={"a": "b"}).status_code == 500
    assert capsys.readouterr().err == ""
    assert not [r for r in caplog.records if r.name == "werkzeug"]


def test_it_stops_quickly():
    service = lab_s3.S3()
    start = time.monotonic()
    service.close()
    assert time.monotonic() - start < 0.4  # moto's own threaded server polls every 0.5 s


def test_credentials_come_from_the_environment_when_set(monkeypatch):
    for name in ("LAB_S3_ACCESS_KEY", "LAB_S3_SECRET_KEY", "LAB_S3_REGION"):
        monkeypatch.delenv(name, raising=False)
    assert lab_s3.credentials() == lab_s3.CREDENTIALS
    monkeypatch.setenv("LAB_S3_ACCESS_KEY", "minio")
    monkeypatch.setenv("LAB_S3_SECRET_KEY", "minio-secret")
    monkeypatch.setenv("LAB_S3_REGION", "eu-west-1")
    assert lab_s3.credentials() == {"aws_access_key_id": "minio", "aws_secret_access_key": "minio-secret",
                                    "region_name": "eu-west-1"}
