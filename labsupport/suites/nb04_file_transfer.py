"""Checks for notebook 04, file upload and download, presigned URLs."""
from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import socket
import ssl
from datetime import datetime, timezone
from urllib.parse import unquote, urlsplit

import httpx

from ..checks import Context, Suite, expect

MAX_UPLOAD_BYTES = 1024 * 1024          # the notebook's setup: the largest file POST /files accepts
MAX_DIRECT_BYTES = 100 * 1024 * 1024    # the largest file POST /uploads hands out a URL for
CHECK_SECONDS = 20.0  # a direct-upload check makes several round trips through moto: room for a loaded machine
HTTP_SECONDS = 15.0   # and each of its requests
PNG = b"\x89PNG\r\n\x1a\n"
PDF = b"%PDF-1.7\n"
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script>"


def payload(size: int, head: bytes = PNG, seed: int = 0) -> bytes:
    """`size` bytes that start with `head` (a file type's signature), the rest pseudo-random."""
    body = random.Random(seed).randbytes(max(0, size - len(head)))
    return (head + body)[:size]


# -- exercise 1: a safe streaming upload, and its download ----------------------------------------

safe_upload = Suite("04-safe-upload")


def _upload(ctx: Context, data: bytes, name: str = "cat.png", content_type: str = "image/png",
            client: httpx.Client | None = None) -> httpx.Response:
    return (client or ctx.client).post("/files", files={"file": (name, data, content_type)})


def _upload_chunked(ctx: Context, data: bytes, name: str = "cat.png") -> httpx.Response:
    """The same upload without a Content-Length: the body arrives in chunks of unknown total size."""
    boundary = "lab04-boundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode()

    def body():
        yield head
        for start in range(0, len(data), 64 * 1024):
            yield data[start:start + 64 * 1024]
        yield f"\r\n--{boundary}--\r\n".encode()

    return ctx.client.post("/files", content=body(),
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


def _stored(ctx: Context) -> dict[str, int]:
    """Every file in the app's folder (GET /lab/storage): path relative to it -> size."""
    response = ctx.client.get("/lab/storage")
    expect(response.status_code == 200, f"GET /lab/storage answered {response.status_code}: keep "
                                        "`files_app.include_router(storage_report)` in the exercise cell")
    files = response.json().get("files")
    expect(isinstance(files, dict), "GET /lab/storage should answer {'files': {...}}")
    return files


def _new_files(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {path: size for path, size in after.items() if before.get(path) != size}


def _inside(path: str) -> bool:
    return path.startswith("uploads/")


def _created(ctx: Context, response: httpx.Response, what: str) -> dict:
    expect(response.status_code == 201, f"{what} answered {response.status_code}, expected 201")
    body = response.json()
    expect(isinstance(body, dict) and isinstance(body.get("id"), str) and body["id"],
           f"the answer to {what} should hold the new file's id (a string)")
    return body


def _download(ctx: Context, file_id: str, **kwargs) -> httpx.Response:
    return ctx.client.get(f"/files/{file_id}", **kwargs)


@safe_upload.check(points=1, hint=["Stream the file into app.state.upload_dir under a name of your own, and "
                                  "answer 201 {'id', 'size', 'sha256', 'content_type'}.",
                                   "Loop over await file.read(READ_SIZE), feeding each chunk to hashlib.sha256() and writing it to upload_dir / uuid4().hex; answer size as the byte count, sha256 as hexdigest(), content_type as sniff()'s result."])
def stores_an_upload(ctx: Context) -> None:
    "POST /files with a 3000-byte PNG answers 201 with its id, size, SHA-256 and type, and stores it"
    data = payload(3000)
    before = _stored(ctx)
    body = _created(ctx, _upload(ctx, data), "POST /files with a 3000-byte PNG")
    expect(body.get("size") == 3000, f"the answer's size was {body.get('size')!r}, expected 3000")
    expect(body.get("sha256") == hashlib.sha256(data).hexdigest(),
           "the answer's sha256 is not the SHA-256 of the uploaded bytes (hex digest)")
    expect(body.get("content_type") == "image/png",
           f"the answer's content_type was {str(body.get('content_type'))[:40]!r}, expected 'image/png'")
    new = _new_files(before, _stored(ctx))
    expect(any(_inside(p) and size == 3000 for p, size in new.items()),
           "no new 3000-byte file appeared in the upload folder (app.state.upload_dir)")
    expect(all(_inside(p) for p in new), "the upload wrote a file outside the upload folder")


@safe_upload.check(points=1, hint=["Return FileResponse(path, media_type=..., headers={'X-Content-Type-Options': "
                                  "'nosniff'}) with the type you sniffed at upload.",
                                   "Record the sniffed type in app.state.files[id] at upload time and pass it as FileResponse's media_type (the file on disk has no extension to guess from); X-Content-Type-Options must be set explicitly."])
def downloads_what_was_stored(ctx: Context) -> None:
    "GET /files/{id} answers the same bytes as image/png, with X-Content-Type-Options: nosniff"
    data = payload(5000, seed=1)
    file_id = _created(ctx, _upload(ctx, data), "POST /files")["id"]
    response = _download(ctx, file_id)
    expect(response.status_code == 200, f"GET /files/{{id}} answered {response.status_code}, expected 200")
    expect(response.content == data, f"GET /files/{{id}} answered {len(response.content)} bytes that are not "
                                     "the uploaded file")
    media_type = response.headers.get("content-type", "").split(";")[0].strip()
    expect(media_type == "image/png", f"the download's Content-Type was {media_type[:40]!r}, expected 'image/png'")
    expect(response.headers.get("x-content-type-options", "").lower() == "nosniff",
           "the download should carry X-Content-Type-Options: nosniff, so that browsers never run it as HTML")


@safe_upload.check(points=2, hint=["Never build a path from file.filename: name the file yourself "
                                  "(uuid4().hex) and keep the client's name aside, for the download.",
                                   "Write to upload_dir / file_id with file_id = uuid4().hex; keep only Path(file.filename).name in app.state.files for the download. Any path joined with '../escaped.png' lands outside the folder."])
def client_name_is_not_a_path(ctx: Context) -> None:
    "a file named ../escaped.png is stored inside the upload folder, and downloads intact"
    data = payload(2000, seed=2)
    before = _stored(ctx)
    file_id = _created(ctx, _upload(ctx, data, name="../escaped.png"), "POST /files for ../escaped.png")["id"]
    new = _new_files(before, _stored(ctx))
    outside = [p for p in new if not _inside(p)]
    expect(not outside, "the upload named ../escaped.png wrote a file outside the upload folder: the "
                        "client's file name went into the path")
    expect(any(size == 2000 for size in new.values()), "the upload named ../escaped.png left no file of its "
                                                       "size in the upload folder")
    response = _download(ctx, file_id)
    expect(response.status_code == 200 and response.content == data,
           f"downloading the file named ../escaped.png answered {response.status_code}, not its bytes")


@safe_upload.check(points=1, hint=["Two clients may pick the same name: the id (and the file on disk) must be "
                                  "the server's, unique per upload.",
                                   "Make a fresh uuid4().hex for every POST and use it both as the returned id and as the file name on disk; opening the file with mode 'xb' makes an accidental overwrite fail instead of replacing silently."])
def same_name_does_not_overwrite(ctx: Context) -> None:
    "two different files both named report.png are both kept, each with its own bytes"
    first, second = payload(1500, seed=3), payload(1700, seed=4)
    id_1 = _created(ctx, _upload(ctx, first, name="report.png"), "the first POST /files of report.png")["id"]
    id_2 = _created(ctx, _upload(ctx, second, name="report.png"), "the second POST /files of report.png")["id"]
    expect(id_1 != id_2, "both uploads named report.png got the same id: the second replaced the first")
    got = _download(ctx, id_1)
    expect(got.status_code == 200 and got.content == first,
           "after a second upload named report.png, the first one no longer downloads its own bytes")
    got = _download(ctx, id_2)
    expect(got.status_code == 200 and got.content == second, "the second report.png does not download its bytes")


@safe_upload.check(points=1, hint=["Count the bytes as you copy them: more than MAX_UPLOAD_BYTES is 413. The "
                                  "route's max_body_size needs room for the multipart envelope (ENVELOPE_BYTES).",
                                   "Raise HTTPException(413) only when the running byte total is > MAX_UPLOAD_BYTES (not >=), and keep max_body_size=MAX_UPLOAD_BYTES + ENVELOPE_BYTES so exactly 1 MiB plus its multipart headers still gets in."])
def limit_is_exact(ctx: Context) -> None:
    "a file of exactly MAX_UPLOAD_BYTES is stored; one byte more answers 413"
    response = _upload(ctx, payload(MAX_UPLOAD_BYTES, seed=5))
    expect(response.status_code == 201, f"a file of exactly MAX_UPLOAD_BYTES answered {response.status_code}, "
                                        "expected 201")
    response = _upload(ctx, payload(MAX_UPLOAD_BYTES + 1, seed=6))
    expect(response.status_code == 413, f"a file one byte over MAX_UPLOAD_BYTES answered {response.status_code}, "
                                        "expected 413")


@safe_upload.check(points=1, hint=["Delete the file you were writing when the upload fails for any reason "
                                  "(try/except around the copy, then unlink and re-raise).",
                                   "A file just over the limit passes max_body_size (ENVELOPE_BYTES of slack) and reaches your loop: when your 413 is raised mid-copy, close and unlink(missing_ok=True) the target in an except block, then re-raise."])
def oversize_leaves_nothing_behind(ctx: Context) -> None:
    "after a 413 (with or without Content-Length) no file, not even a partial one, is left behind"
    before = _stored(ctx)
    data = payload(MAX_UPLOAD_BYTES + 5000, seed=7)
    for send, how in ((_upload, "with"), (_upload_chunked, "without")):
        response = send(ctx, data)
        expect(response.status_code == 413, f"a file 5000 bytes over the limit, sent {how} a Content-Length, "
                                            f"answered {response.status_code}, expected 413")
        left = _new_files(before, _stored(ctx))
        expect(not left, f"after the 413 to an upload sent {how} a Content-Length, {len(left)} file(s) "
                         "stayed in the folder: delete the partial file")


def _status_while_sending(ctx: Context, chunked: bool, send_bytes: int, wait: float) -> int | None:
    """Send the head of a 50 MiB upload (`send_bytes` of it), then wait for an answer without sending
    more: the status code the app answered with, or None if it said nothing (or closed)."""
    import select

    url = urlsplit(ctx.url)
    port = url.port or (443 if url.scheme == "https" else 80)
    sock = socket.create_connection((url.hostname, port), timeout=max(0.5, min(5.0, ctx.remaining())))
    if url.scheme == "https":
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=url.hostname)
    boundary = "lab04-boundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode() + PNG
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {50 * 1024 * 1024}"
    request = (f"POST {url.path.rstrip('/')}/files HTTP/1.1\r\nHost: {url.netloc}\r\n"
               f"Content-Type: multipart/form-data; boundary={boundary}\r\n{framing}\r\n\r\n").encode()

    def frame(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data

    answer = b""
    try:
        sock.sendall(request + frame(head))
        sent, piece = 0, b"\0" * (64 * 1024)
        while sent < send_bytes and not select.select([sock], [], [], 0)[0]:
            sock.sendall(frame(piece))
            sent += len(piece)
        sock.settimeout(wait)
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    except OSError:  # the app closed the connection (after answering, or without)
        pass
    finally:
        sock.close()
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


@safe_upload.check(points=2, timeout=15, hint=["Limit the request body as it arrives: the route's "
                                              "max_body_size (FastAPI 0.165) answers 413 before the rest is read.",
                                               "Keep max_body_size=MAX_UPLOAD_BYTES + ENVELOPE_BYTES in the @files_app.post decorator: a size check in the handler comes too late, as FastAPI parses the whole form first. A 2000-byte PNG must still get 201."])
def stops_reading_past_the_limit(ctx: Context) -> None:
    "a 50 MiB upload gets its 413 while it is still being sent, with and without Content-Length"
    response = _upload(ctx, payload(2000, seed=8))
    expect(response.status_code == 201, f"a 2000-byte PNG answered {response.status_code}, expected 201: the "
                                        "limit must let small files through")
    for chunked, how in ((False, "with a Content-Length of 50 MiB"), (True, "in chunks, without Content-Length")):
        status = _status_while_sending(ctx, chunked, 3 * MAX_UPLOAD_BYTES, wait=3.0)
        expect(status == 413, f"an upload sent {how} got "
                              f"{'no answer' if status is None else status} after 3 MiB, expected 413 at once: "
                              "the app reads the whole upload before it looks at its size")


@safe_upload.check(points=2, hint=["Sniff the first chunk with sniff(): its bytes, not file.content_type "
                                  "(which the client chose), decide the type; answer 415 for anything else.",
                                   "Call sniff() on the first chunk read; if it returns None raise HTTPException(415) and delete the partial file, else store and return that type. Never read file.content_type at all."])
def trusts_the_bytes_not_the_header(ctx: Context) -> None:
    "HTML sent as image/png answers 415 and stores nothing; a PDF sent as application/octet-stream is a PDF"
    before = _stored(ctx)
    response = _upload(ctx, payload(3000, head=HTML, seed=9), name="cat.png", content_type="image/png")
    expect(response.status_code == 415, f"an HTML page named cat.png and sent as image/png answered "
                                        f"{response.status_code}, expected 415")
    left = _new_files(before, _stored(ctx))
    expect(not left, f"after the 415, {len(left)} file(s) stayed in the folder")
    data = payload(4000, head=PDF, seed=10)
    body = _created(ctx, _upload(ctx, data, name="scan.bin", content_type="application/octet-stream"),
                    "POST /files with a PDF sent as application/octet-stream")
    expect(body.get("content_type") == "application/pdf",
           f"a PDF sent as application/octet-stream was stored as {str(body.get('content_type'))[:40]!r}, "
           "expected 'application/pdf'")
    media_type = _download(ctx, body["id"]).headers.get("content-type", "").split(";")[0].strip()
    expect(media_type == "application/pdf", f"the PDF downloads as {media_type[:40]!r}, expected 'application/pdf'")


@safe_upload.check(points=1, hint=["FileResponse answers Range requests by itself; StreamingResponse does not.",
                                   "Return FileResponse(upload_dir / file_id, ...) instead of reading the bytes into a Response or StreamingResponse: it answers Range: bytes=1000- with 206 and Content-Range by itself."])
def resumes_with_range(ctx: Context) -> None:
    "GET /files/{id} with Range: bytes=1000- answers 206 with the rest of the file"
    data = payload(6000, seed=11)
    file_id = _created(ctx, _upload(ctx, data), "POST /files")["id"]
    response = _download(ctx, file_id, headers={"Range": "bytes=1000-"})
    expect(response.status_code == 206, f"GET /files/{{id}} with Range: bytes=1000- answered "
                                        f"{response.status_code}, expected 206 Partial Content")
    expect(response.content == data[1000:], f"the 206 answer held {len(response.content)} bytes, not the "
                                            "file's last 5000")
    expect(response.headers.get("content-range") == "bytes 1000-5999/6000",
           "the 206 answer's Content-Range should be 'bytes 1000-5999/6000'")


_PARAM = re.compile(r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')


def _disposition_name(value: str) -> str | None:
    """The file name a Content-Disposition value gives, as RFC 6266 reads it: filename* (RFC 8187:
    charset'language'percent-encoded) before filename."""
    params: dict[str, str] = {}
    for name, raw in _PARAM.findall(value):
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params.setdefault(name.lower(), raw)
    if "filename*" in params:
        charset, _, rest = params["filename*"].partition("'")
        encoded = rest.partition("'")[2]
        try:
            return unquote(encoded, encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            return None
    return params.get("filename")


@safe_upload.check(points=1, hint=["Let FileResponse(filename=...) write Content-Disposition: it encodes any "
                                  "name as filename*=utf-8''..., which an f-string does not.",
                                   "Pass filename=<the client's original name, kept in app.state.files> to FileResponse (its Content-Disposition defaults to attachment) and do not set Content-Disposition yourself."])
def safe_download_name(ctx: Context) -> None:
    "Content-Disposition is plain ASCII and gives back names such as résumé.png and 報告.png"
    for name in ("résumé.png", "報告 2026.png"):
        file_id = _created(ctx, _upload(ctx, payload(1000, seed=12), name=name), f"POST /files of {name}")["id"]
        response = _download(ctx, file_id)
        expect(response.status_code == 200, f"downloading {name} answered {response.status_code}, expected 200")
        raw = dict(response.headers.raw).get(b"content-disposition", b"")
        expect(raw, f"downloading {name} has no Content-Disposition header")
        expect(raw.isascii(), f"the Content-Disposition of {name} holds raw non-ASCII bytes, which "
                              "browsers decode differently: encode the name (RFC 6266: filename*=utf-8''...)")
        expect(raw.lower().startswith(b"attachment"), f"the Content-Disposition of {name} should start with "
                                                      "'attachment', so that browsers save the file")
        got = _disposition_name(raw.decode("ascii"))
        expect(got == name, f"the Content-Disposition of {name} gives the file name "
                            f"{'nothing' if got is None else repr(got[:40])}")


@safe_upload.check(points=1, hint=["Look the id up among the files you stored; anything else is 404 (never a "
                                  "path built from the id).",
                                   "Raise HTTPException(404) when app.state.files.get(file_id) is None, before opening anything; only ids your upload put in that dict may reach upload_dir / file_id."])
def unknown_ids_are_404(ctx: Context) -> None:
    "GET /files/{id} answers 404 for an unknown id, for .. and for a NUL byte"
    _created(ctx, _upload(ctx, payload(1000, seed=13)), "POST /files")
    for raw, shown in (("0123456789abcdef0123456789abcdef", "an unknown id"), ("%2e%2e", ".."),
                       ("a%00b", "a NUL byte"), ("uploads", "'uploads'")):
        response = ctx.client.get(f"/files/{raw}")
        expect(response.status_code == 404, f"GET /files/ with {shown} answered {response.status_code}, "
                                            "expected 404")


# -- exercise 2: uploads straight to storage --------------------------------------------------------

direct_upload = Suite("04-direct-upload")


def _on_lab_s3(ctx: Context, url: str) -> bool:
    """Whether `url` is on the lab's S3 (the checks send nothing anywhere else)."""
    endpoint = ctx.s3.endpoint.rstrip("/")
    return url == endpoint or url.startswith(endpoint + "/")


def _app(ctx: Context):
    """A capped client on the app, one per check, as patient as the check (moto is slow on a loaded
    machine, and the app waits for it)."""
    if getattr(ctx, "_lab04_app", None) is None:
        ctx._lab04_app = ctx.http_client(timeout=HTTP_SECONDS)
    return ctx._lab04_app


def _declare(ctx: Context, size: int = 3000, filename: str = "cat.png", content_type: str = "image/png"):
    return _app(ctx).post("/uploads", json={"filename": filename, "size": size, "content_type": content_type})


def _started(ctx: Context, size: int = 3000, filename: str = "cat.png", content_type: str = "image/png") -> dict:
    """A new upload's answer: {'id', 'url', 'fields'}, checked for its shape."""
    response = _declare(ctx, size, filename, content_type)
    what = f"POST /uploads for a {size}-byte {content_type} file"
    expect(response.status_code == 201, f"{what} answered {response.status_code}, expected 201")
    body = response.json()
    expect(isinstance(body, dict) and isinstance(body.get("id"), str) and body["id"],
           f"the answer to {what} should hold the upload's id (a string)")
    expect(isinstance(body.get("url"), str) and isinstance(body.get("fields"), dict),
           f"the answer to {what} should hold 'url' and 'fields': a presigned POST "
           "(s3.generate_presigned_post gives both)")
    expect(_on_lab_s3(ctx, body["url"]), "the presigned POST's url should point to the lab's S3 (lab.s3_endpoint())")
    expect(isinstance(body["fields"].get("key"), str) and body["fields"]["key"],
           "the presigned POST's fields should hold the object's key")
    return body


def _storage(ctx: Context):
    """A capped client on the lab's S3, one per check."""
    if getattr(ctx, "_lab04_storage", None) is None:
        ctx._lab04_storage = ctx.http_client(ctx.s3.endpoint, timeout=HTTP_SECONDS)
    return ctx._lab04_storage


def _post_form(ctx: Context, started: dict, data: bytes, content_type: str) -> httpx.Response:
    """What a browser does with a presigned POST: a form with the fields, then the file."""
    fields = {str(k): str(v) for k, v in started["fields"].items()}
    return _storage(ctx).post(started["url"], data=fields, files={"file": ("upload", data, content_type)})


def _send_to_storage(ctx: Context, started: dict, data: bytes, content_type: str = "image/png") -> None:
    """The file, sent to storage with the app's presigned POST."""
    response = _post_form(ctx, started, data, content_type)
    expect(response.status_code in (200, 201, 204), f"the lab's S3 answered the presigned POST with "
                                                    f"{response.status_code}, expected 204")


def _send_wrong_size(ctx: Context, started: dict, data: bytes, content_type: str = "image/png") -> None:
    """A file of another size than the declared one, in storage under the form's key. moto takes it
    through the form (it ignores the policy). A storage that enforces the policy refuses it (400
    EntityTooLarge or EntityTooSmall); then the check puts it there with the lab's own keys, as any
    writer that bypasses the policy could. Either way the app's confirmation has to notice."""
    response = _post_form(ctx, started, data, content_type)
    if response.status_code in (200, 201, 204):
        return
    refused = response.status_code == 400 and re.search(rb"<Code>EntityToo(Large|Small)</Code>", response.content)
    expect(refused, f"the lab's S3 answered the presigned POST with {response.status_code}, expected 204 (or "
                    "400 EntityTooLarge, from a storage that enforces the policy's size)")
    ctx.s3.client().put_object(Bucket=ctx.s3.bucket, Key=started["fields"]["key"], Body=data, ContentType=content_type)


def _complete(ctx: Context, upload_id: str) -> httpx.Response:
    return _app(ctx).post(f"/uploads/{upload_id}/complete")


@direct_upload.check(points=2, hint=["Answer {'id', 'url', 'fields'} from s3.generate_presigned_post(bucket, key, "
                                    "Fields=..., Conditions=..., ExpiresIn=URL_SECONDS).",
                                     "Build a key, call state.s3.generate_presigned_post(state.bucket, key, ...) and answer 201 {'id': your upload id, 'url': post['url'], 'fields': post['fields']}; the fields already hold the key the form uploads to."],
                     timeout=CHECK_SECONDS)
def hands_out_a_presigned_post(ctx: Context) -> None:
    "POST /uploads answers 201 with a presigned POST, and a browser's form upload to it stores the file"
    data = payload(3000, seed=20)
    started = _started(ctx)
    _send_to_storage(ctx, started, data)
    stored = ctx.s3.objects()
    expect(started["fields"]["key"] in stored, "after the upload, the bucket holds no object under the "
                                               "fields' key")
    expect(stored[started["fields"]["key"]] == data, "the object in the bucket is not the uploaded file")


def _policy(started: dict) -> dict:
    raw = started["fields"].get("policy") or started["fields"].get("Policy")
    expect(isinstance(raw, str), "the presigned POST's fields hold no policy")
    try:
        policy = json.loads(base64.b64decode(raw))
    except ValueError:
        expect(False, "the presigned POST's policy is not base64-encoded JSON")
    expect(isinstance(policy, dict) and isinstance(policy.get("conditions"), list),
           "the presigned POST's policy holds no conditions")
    return policy


def _length_ranges(policy: dict) -> list[tuple]:
    return [tuple(c[1:]) for c in policy["conditions"]
            if isinstance(c, list) and len(c) == 3 and str(c[0]).lower() == "content-length-range"]


def _requires_type(policy: dict, content_type: str) -> bool:
    for condition in policy["conditions"]:
        if isinstance(condition, dict):
            if {str(k).lower(): v for k, v in condition.items()}.get("content-type") == content_type:
                return True
        if (isinstance(condition, list) and len(condition) == 3 and condition[0] == "eq"
                and str(condition[1]).lower() == "$content-type" and condition[2] == content_type):
            return True
    return False


@direct_upload.check(points=2, hint=["Add the condition ['content-length-range', size, size] (and the Content-Type) "
                                    "to the POST policy: the text's presigned PUT leaves the size open.",
                                     "The policy (base64 JSON in fields['policy']) must hold ['content-length-range', size, size] and {'Content-Type': declared type}, both passed via Conditions=, plus ExpiresIn=URL_SECONDS (600 s)."],
                     timeout=CHECK_SECONDS)
def policy_bounds_the_size(ctx: Context) -> None:
    "the POST policy caps the size at the declared size, fixes the type and expires within an hour"
    policy = _policy(_started(ctx, size=3000))
    ranges = _length_ranges(policy)
    expect(ranges, "the POST policy has no content-length-range condition: storage takes a file of any size")
    expect(all(isinstance(low, int) and isinstance(high, int) and 0 <= low <= high <= 3000 for low, high in ranges),
           "the POST policy's content-length-range lets more than the declared 3000 bytes through")
    expect(_requires_type(policy, "image/png"), "the POST policy does not require the declared Content-Type "
                                                "(a condition {'Content-Type': 'image/png'})")
    try:
        expires = datetime.fromisoformat(str(policy.get("expiration")).replace("Z", "+00:00"))
    except ValueError:
        expect(False, "the POST policy has no expiration time")
    left = (expires - datetime.now(timezone.utc)).total_seconds()
    expect(0 < left <= 3600 + 60, "the POST policy should expire within an hour")


@direct_upload.check(points=1, hint=["Make the key yourself (f'uploads/{uuid4().hex}'); keep the client's file "
                                    "name in your records, not in the key.",
                                     "Make upload_id = uuid4().hex per request and a key such as 'uploads/' + upload_id; store new.filename only in state.uploads[upload_id], never in the key."],
                     timeout=CHECK_SECONDS)
def key_is_chosen_by_the_server(ctx: Context) -> None:
    "the object key holds nothing of the client's file name, and two uploads of one name get two keys"
    key_1 = _started(ctx, filename="../../escape/evil.png")["fields"]["key"]
    expect(".." not in key_1 and "evil" not in key_1 and not key_1.startswith("/"),
           "the key for a file named ../../escape/evil.png holds the client's file name")
    key_2 = _started(ctx, filename="../../escape/evil.png")["fields"]["key"]
    expect(key_1 != key_2, "two uploads of the same file name got the same key: the second would replace the first")


@direct_upload.check(points=1, hint=["413 above MAX_DIRECT_BYTES, 422 for size 0 (and for a bad body), 415 for a "
                                    "type that is not one of SIGNATURES' types.",
                                     "Before presigning: size > MAX_DIRECT_BYTES -> HTTPException(413), size == 0 -> 422, content_type not in SIGNATURES.values() -> 415; NewUpload's max_length=255 already gives 422 for the long name."],
                     timeout=CHECK_SECONDS)
def refuses_bad_declarations(ctx: Context) -> None:
    "POST /uploads answers 413 over MAX_DIRECT_BYTES, 422 for 0 bytes or a 300-character name, 415 for text/html"
    for size, filename, content_type, status, what in (
            (MAX_DIRECT_BYTES + 1, "big.png", "image/png", 413, "one byte over MAX_DIRECT_BYTES"),
            (0, "empty.png", "image/png", 422, "an empty file"),
            (3000, "x" * 296 + ".png", "image/png", 422, "a 300-character file name"),
            (3000, "page.html", "text/html", 415, "a text/html file")):
        response = _declare(ctx, size, filename, content_type)
        expect(response.status_code == status, f"POST /uploads for {what} answered {response.status_code}, "
                                               f"expected {status}")


@direct_upload.check(points=1, hint=["head_object tells whether the object is there: a ClientError with code "
                                    "404 means not yet (409); then answer 200 {'status': 'complete', ...}.",
                                     "Wrap state.s3.head_object(Bucket=..., Key=record['key']) in try/except botocore ClientError: a code of '404' (or NoSuchKey/NotFound) means HTTPException(409); else mark the record complete and answer its size."],
                     timeout=CHECK_SECONDS)
def complete_waits_for_the_object(ctx: Context) -> None:
    "POST /uploads/{id}/complete answers 409 before the upload and 200 'complete' after it"
    started = _started(ctx)
    response = _complete(ctx, started["id"])
    expect(response.status_code == 409, f"completing before anything was uploaded answered "
                                        f"{response.status_code}, expected 409")
    _send_to_storage(ctx, started, payload(3000, seed=21))
    response = _complete(ctx, started["id"])
    expect(response.status_code == 200, f"completing after the upload answered {response.status_code}, "
                                        "expected 200")
    body = response.json()
    expect(body.get("status") == "complete" and body.get("size") == 3000,
           "completing should answer {'status': 'complete', 'size': 3000, ...}")


@direct_upload.check(points=2, hint=["Storage did not enforce the policy (moto never does): compare head_object's "
                                    "ContentLength with the declared size, delete the object on a mismatch, 422.",
                                     "Compare head_object(...)['ContentLength'] with record['size'] before marking the upload complete; on a mismatch call the given reject(state, record, 422, ...), which deletes the object and raises."],
                     timeout=CHECK_SECONDS)
def complete_rejects_a_different_size(ctx: Context) -> None:
    "a 5000-byte file uploaded for a declared 3000 bytes: complete answers 422 and the object is deleted"
    started = _started(ctx, size=3000)
    _send_wrong_size(ctx, started, payload(5000, seed=22))
    response = _complete(ctx, started["id"])
    expect(response.status_code == 422, f"completing a 5000-byte upload declared as 3000 bytes answered "
                                        f"{response.status_code}, expected 422")
    expect(started["fields"]["key"] not in ctx.s3.sizes(), "after the 422 the object is still in the bucket: "
                                                           "delete it")


@direct_upload.check(points=1, hint=["Read the object's first bytes (get_object with Range='bytes=0-15'), sniff() "
                                    "them, and reject a type other than the declared one (415), deleting it.",
                                     "After the size check, read get_object(..., Range='bytes=0-15')['Body'].read() and compare sniff() of those bytes with record['content_type']; on a mismatch (None for HTML) call reject(state, record, 415, ...)."],
                     timeout=CHECK_SECONDS)
def complete_sniffs_the_bytes(ctx: Context) -> None:
    "an HTML page uploaded as image/png: complete answers 415 and the object is deleted"
    started = _started(ctx, size=3000)
    _send_to_storage(ctx, started, payload(3000, head=HTML, seed=23))
    response = _complete(ctx, started["id"])
    expect(response.status_code == 415, f"completing an HTML page declared as image/png answered "
                                        f"{response.status_code}, expected 415")
    expect(started["fields"]["key"] not in ctx.s3.sizes(), "after the 415 the object is still in the bucket: "
                                                           "delete it")


@direct_upload.check(points=1, hint=["Once complete, add 'download_url': s3.generate_presigned_url('get_object', ...).",
                                     "complete must save status 'complete' in state.uploads[id]; then GET adds download_url from state.s3.generate_presigned_url('get_object', Params={'Bucket': ..., 'Key': record['key']}, ExpiresIn=URL_SECONDS)."],
                     timeout=CHECK_SECONDS)
def download_url_once_complete(ctx: Context) -> None:
    "GET /uploads/{id} of a completed upload answers 'complete' and a download_url that gives the file"
    data = payload(3000, seed=24)
    started = _started(ctx)
    _send_to_storage(ctx, started, data)
    expect(_complete(ctx, started["id"]).status_code == 200, "completing the upload did not answer 200")
    response = _app(ctx).get(f"/uploads/{started['id']}")
    expect(response.status_code == 200, f"GET /uploads/{{id}} answered {response.status_code}, expected 200")
    body = response.json()
    expect(body.get("status") == "complete", "GET /uploads/{id} of a completed upload should say 'complete'")
    url = body.get("download_url")
    expect(isinstance(url, str) and _on_lab_s3(ctx, url), "GET /uploads/{id} should hold a download_url on the "
                                                          "lab's S3")
    got = _storage(ctx).get(url)
    expect(got.status_code == 200 and got.content == data, f"the download_url answered {got.status_code}, "
                                                           "not the uploaded file")


@direct_upload.check(points=1, hint=["Look the id up in your records: unknown ids are 404.",
                                     "Keep every started upload in state.uploads under the id you returned; in both GET /uploads/{id} and POST .../complete raise HTTPException(404) when state.uploads.get(upload_id) is None, before calling S3."],
                     timeout=CHECK_SECONDS)
def unknown_uploads_are_404(ctx: Context) -> None:
    "GET /uploads/{id} and POST /uploads/{id}/complete answer 404 for an unknown id"
    unknown = "0123456789abcdef0123456789abcdef"
    for response, what in ((_app(ctx).get(f"/uploads/{unknown}"), "GET /uploads/{id}"),
                           (_complete(ctx, unknown), "POST /uploads/{id}/complete")):
        expect(response.status_code == 404, f"{what} with an unknown id answered {response.status_code}, "
                                            "expected 404")
