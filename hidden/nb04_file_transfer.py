"""Hidden checks for notebook 04: the same rules as the visible ones, on inputs the notebook does not show."""
from __future__ import annotations

import asyncio

from labsupport.checks import Context, expect
from labsupport.suites.nb04_file_transfer import (
    CHECK_SECONDS, _app, _complete, _created, _download, _inside, _new_files, _send_to_storage, _send_wrong_size,
    _started, _stored, _upload, direct_upload, payload, safe_upload,
)


@safe_upload.check(points=1, hidden=True, hint="Any file name the client sends is only a label: long, with "
                                               "folders or backslashes, it never reaches the file system.")
def odd_names_are_stored(ctx: Context) -> None:
    "files named with 300 characters, with folders, or with backslashes are stored in the upload folder"
    for name, shown in (("x" * 296 + ".png", "a 300-character name"), ("a/b/c.png", "a name with folders"),
                        ("..\\..\\win.png", "a name with backslashes"), ("-rf .png", "a name starting with a dash")):
        before = _stored(ctx)
        data = payload(1200, seed=30)
        file_id = _created(ctx, _upload(ctx, data, name=name), f"POST /files with {shown}")["id"]
        new = _new_files(before, _stored(ctx))
        expect(new and all(_inside(p) for p in new), f"the upload with {shown} was not stored in the upload folder")
        got = _download(ctx, file_id)
        expect(got.status_code == 200 and got.content == data, f"the file with {shown} does not download its bytes")


@safe_upload.check(points=1, hidden=True, hint="Each upload gets its own name, even when several arrive at once.")
async def concurrent_uploads_kept_apart(ctx: Context) -> None:
    "five uploads of the same name at once are all kept, each with its own bytes"
    files = [payload(2000 + n, seed=40 + n) for n in range(5)]
    async with ctx.async_client() as client:
        answers = await asyncio.gather(*(client.post("/files", files={"file": ("same.png", data, "image/png")})
                                         for data in files))
        expect(all(a.status_code == 201 for a in answers),
               f"five uploads at once answered {sorted(a.status_code for a in answers)}, expected 201 each")
        ids = [a.json().get("id") for a in answers]
        expect(len(set(ids)) == 5, "five uploads of one name at once got fewer than five ids")
        for file_id, data in zip(ids, files):
            got = await client.get(f"/files/{file_id}")
            expect(got.status_code == 200 and got.content == data,
                   "of five uploads of one name at once, one does not download its own bytes")


@safe_upload.check(points=1, hidden=True, hint="An empty file has no type to sniff: 415, not a 500.")
def empty_or_missing_file(ctx: Context) -> None:
    "an empty file answers 415, a request without a file 422, and neither leaves a file behind"
    before = _stored(ctx)
    response = _upload(ctx, b"")
    expect(response.status_code == 415, f"an empty file answered {response.status_code}, expected 415")
    response = ctx.client.post("/files", data={"note": "no file here"})
    expect(response.status_code == 422, f"a form without a file answered {response.status_code}, expected 422")
    left = _new_files(before, _stored(ctx))
    expect(not left, f"an empty or missing file left {len(left)} file(s) in the folder")


@direct_upload.check(points=1, hidden=True, hint="Only a completed upload gets a download_url.",
                     timeout=CHECK_SECONDS)
def no_download_url_while_pending(ctx: Context) -> None:
    "GET /uploads/{id} before the upload is confirmed says 'pending' and gives no download_url"
    started = _started(ctx)
    _send_to_storage(ctx, started, payload(3000, seed=50))  # uploaded, but not confirmed yet
    response = _app(ctx).get(f"/uploads/{started['id']}")
    expect(response.status_code == 200, f"GET /uploads/{{id}} answered {response.status_code}, expected 200")
    body = response.json()
    expect(body.get("status") == "pending", "GET /uploads/{id} before completing should say 'pending'")
    expect(not body.get("download_url"), "GET /uploads/{id} gave a download_url before the upload was confirmed")


@direct_upload.check(points=1, hidden=True, hint="A second complete of a completed upload answers 200 again: "
                                                 "clients retry when an answer is lost.",
                     timeout=CHECK_SECONDS)
def complete_twice(ctx: Context) -> None:
    "completing a completed upload again answers 200 'complete' again"
    started = _started(ctx)
    _send_to_storage(ctx, started, payload(3000, seed=51))
    for attempt in ("first", "second"):
        response = _complete(ctx, started["id"])
        expect(response.status_code == 200 and response.json().get("status") == "complete",
               f"the {attempt} complete answered {response.status_code}, expected 200 'complete'")


@direct_upload.check(points=1, hidden=True, hint="A rejected upload stays pending: the client may send the right "
                                                 "file with the same presigned POST and complete again.",
                     timeout=CHECK_SECONDS)
def upload_again_after_a_rejection(ctx: Context) -> None:
    "after a 422 for the wrong size, the right file sent with the same presigned POST completes with 200"
    started = _started(ctx, size=3000)
    _send_wrong_size(ctx, started, payload(4000, seed=52))
    expect(_complete(ctx, started["id"]).status_code == 422, "completing a file of the wrong size did not answer 422")
    _send_to_storage(ctx, started, payload(3000, seed=53))
    response = _complete(ctx, started["id"])
    expect(response.status_code == 200, f"completing the right file after a rejection answered "
                                        f"{response.status_code}, expected 200")
