"""Checks for notebook 10, long-running operations."""
from __future__ import annotations

import asyncio
import re
import time
import uuid

import httpx

from ..checks import Context, Suite, expect

# -- challenge 9: a long-running report behind 202 Accepted ---------------------------------------

reports = Suite("10-report-jobs")

STATUSES = {"pending", "running", "completed", "failed"}
FINAL = {"completed", "failed"}
TIMED_OUT = re.compile(r"tim(e|ed|ing)|too long|deadline", re.I)  # what a timed-out job's error says
JOB_TIMEOUT = 6.0     # lab.seconds(600), the exercise's JOB_TIMEOUT (a page takes lab.seconds(5))
SHORT = 3.0           # seconds a check follows a job of a few pages (a few lab seconds each) to its end;
                      # only a job that never ends makes a check wait this long
SECRETS = ("hunter2", "10.0.3.7", "postgresql", "reporter", "replica", "ConnectionError", "Traceback",
           "refused the connection")


def expected_total(region: str, pages: int) -> int:
    """What render_page adds up to: each page sells sum(map(ord, region)) * 100 + page cents."""
    return sum(sum(map(ord, region)) * 100 + page for page in range(1, pages + 1))


def accepted(ctx: Context, region: str, pages: int, client: httpx.Client | None = None) -> tuple[str, httpx.Response]:
    """POST /reports: (the status URL, checked to be a path on the app, and the whole answer)."""
    response = (client or ctx.client).post("/reports", json={"region": region, "pages": pages})
    expect(response.status_code == 202, f"POST /reports answered {response.status_code}, expected 202 Accepted")
    body = response.json()
    status_url = body.get("status_url") if isinstance(body, dict) else None
    expect(isinstance(status_url, str) and status_url.startswith("/") and not status_url.startswith("//"),
           "the 202 answer should hold a status_url, a path on this app such as /reports/jobs/<job id>")
    expect(isinstance(body.get("job_id"), str) and body["job_id"] and body["job_id"] in status_url,
           "the 202 answer should hold the job_id, and the status_url should name it")
    return status_url, response


def start(ctx: Context, region: str, pages: int, client: httpx.Client | None = None) -> str:
    return accepted(ctx, region, pages, client)[0]


def status(ctx: Context, status_url: str, client: httpx.Client | None = None) -> dict:
    response = (client or ctx.client).get(status_url)
    expect(response.status_code == 200, f"GET on the status URL answered {response.status_code}, expected 200")
    body = response.json()
    expect(isinstance(body, dict) and body.get("status") in STATUSES,
           f"the status URL should answer a status among {sorted(STATUSES)}")
    return body


def follow(ctx: Context, status_url: str, wait: float = SHORT, client: httpx.Client | None = None,
           every: float = 0.01) -> tuple[dict, list[dict]]:
    """Poll until the job is completed or failed: (the final answer, every answer seen)."""
    deadline = time.monotonic() + min(wait, ctx.remaining())
    seen = []
    while True:
        body = status(ctx, status_url, client)
        seen.append(body)
        if body["status"] in FINAL:
            return body, seen
        expect(time.monotonic() < deadline, f"the job was still {body['status']!r} after {wait:g} s")
        time.sleep(every)


def result_of(ctx: Context, final: dict, client: httpx.Client | None = None) -> dict:
    """GET the completed job's result_url: the report."""
    url = final.get("result_url")
    expect(isinstance(url, str) and url.startswith("/") and not url.startswith("//"),
           "a completed job's status should hold a result_url, a path on this app")
    response = (client or ctx.client).get(url)
    expect(response.status_code == 200, f"GET on the result_url answered {response.status_code}, expected 200")
    report = response.json()
    expect(isinstance(report, dict), "the result should be the report, a JSON object")
    return report


def expect_report(report: dict, region: str, pages: int, what: str = "the report") -> None:
    expect(report.get("region") == region, f"{what} is for region {report.get('region')!r}, expected {region!r}")
    rendered = report.get("pages")
    expect(isinstance(rendered, list) and len(rendered) == pages,
           f"{what} should hold its {pages} rendered pages")
    expect(report.get("total_cents") == expected_total(region, pages),
           f"{what} has total_cents {report.get('total_cents')!r}, expected {expected_total(region, pages)} "
           "(the sum of its pages' sales_cents)")


@reports.check(points=1, hint=["Answer 202 with {'job_id', 'status_url'}, and set the Location header to the "
                              "status URL and Retry-After to a number of seconds (Response.headers).",
                               "Take response: Response in the endpoint; after enqueue_job, set response.headers['Location'] = status_url (same string as in the body) and response.headers['Retry-After'] = '1'."])
def accepts_with_202_location_and_retry_after(ctx: Context) -> None:
    "POST /reports answers 202 with the job id, its status URL, Location and Retry-After"
    status_url, response = accepted(ctx, "north", 1)
    location, retry_after = response.headers.get("location"), response.headers.get("retry-after")
    expect(location is not None, "the 202 answer has no Location header: a client cannot find the job "
                                 "without reading your docs")
    expect(location == status_url, "the Location header should be the status URL")
    expect(retry_after is not None and retry_after.strip().isdigit(),
           "the 202 answer should carry Retry-After, a whole number of seconds: when to poll first")
    body = status(ctx, status_url)
    expect(body.get("job_id") == response.json()["job_id"], "the status answer should hold the job's job_id")


@reports.experiment
def _eight_pages(ctx: Context) -> dict:
    """An 8-page report followed to its end, every status answer kept."""
    status_url = start(ctx, "east", 8)
    final, seen = follow(ctx, status_url, wait=6)
    return {"final": final, "seen": seen}


@reports.check(points=2, hint=["After each page, store the job's progress (0-100) in Redis under a key "
                              "with its job id (ctx['job_id'] in the job), and read it in the status "
                              "endpoint while arq says in_progress.",
                               "In generate_report, after each render_page await ctx['redis'].set(progress_key(ctx['job_id']), page * 100 // pages); in the status endpoint, when job.status() is JobStatus.in_progress, read that key."])
def reports_progress_while_running(ctx: Context) -> None:
    "an 8-page report shows status 'running' with a progress that grows from 0 to 100"
    run = _eight_pages(ctx)
    progress = [s.get("progress") for s in run["seen"] if s["status"] == "running"]
    expect(progress, "the job was never reported as 'running' while its pages were rendered")
    expect(all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 100 for p in progress),
           "while running, progress should be a whole number from 0 to 100")
    expect(progress == sorted(progress), "the progress went backwards while the job ran")
    expect(any(0 < p < 100 for p in progress), "while the 8 pages were rendered, the progress was never "
                                               "between 0 and 100: it should grow page by page")


@reports.check(points=2, hint=["When arq reports the job complete and result_info().success, answer status "
                              "'completed', progress 100 and a result_url that serves info.result.",
                               "Return the report dict from generate_report; when status() is JobStatus.complete and (await job.result_info()).success, answer 'completed', progress 100 and result_url, and have that URL return info.result."])
def completes_with_the_result(ctx: Context) -> None:
    "the report ends 'completed' with progress 100, and its result_url serves the report"
    final = _eight_pages(ctx)["final"]
    expect(final["status"] == "completed", f"a healthy 8-page report ended {final['status']!r}, "
                                           "expected 'completed'")
    expect(final.get("progress") == 100, "a completed job's progress should be 100")
    expect_report(result_of(ctx, final), "east", 8)


@reports.check(points=2, hint=["A failed job is 'complete' to arq with result_info().success False: answer "
                              "'failed' with an error message of your own, never str() of the exception.",
                               "When result_info().success is False, info.result holds the exception: don't put str(info.result) in the answer; return status 'failed' with a fixed message such as 'the report could not be generated', and the progress the job last recorded."])
def failure_gives_a_safe_error(ctx: Context) -> None:
    "a report whose data source fails ends 'failed', with an error that tells no secrets"
    final, _ = follow(ctx, start(ctx, "atlantis", 5))
    expect(final["status"] == "failed", f"the atlantis report (its data source is down) ended "
                                        f"{final['status']!r}, expected 'failed'")
    error = final.get("error")
    expect(isinstance(error, str) and error.strip(), "a failed job's status should hold an error message")
    progress = final.get("progress")
    expect(isinstance(progress, int) and not isinstance(progress, bool) and 0 <= progress <= 100,
           "a failed job's status should hold its progress too, like every status (a whole number from 0 to "
           "100: how far the job got)")
    text = str(final)
    leaked = [secret for secret in SECRETS if secret.lower() in text.lower()]
    expect(not leaked, "the failed job's status repeats the exception's text (a database address, user or "
                       "password): show a message of your own and keep the details in the log")


@reports.check(points=2, hint=["Give the job a timeout (arq's func(..., timeout=JOB_TIMEOUT)); a timed-out "
                              "job's result is a TimeoutError: say so in the error message.",
                               "Register func(generate_report, timeout=JOB_TIMEOUT) in job_functions(); when info.result is a TimeoutError (isinstance), choose an error message that says the report timed out."],
               timeout=JOB_TIMEOUT + 7)
def times_out_and_fails(ctx: Context) -> None:
    "a report that runs past JOB_TIMEOUT ends 'failed' and says it timed out"
    final, seen = follow(ctx, start(ctx, "south", 1000), wait=JOB_TIMEOUT + 4)
    expect(final["status"] == "failed", f"a report that needs 50 s, with a timeout of {JOB_TIMEOUT:g} s, ended "
                                        f"{final['status']!r}, expected 'failed'")
    error = final.get("error")
    expect(isinstance(error, str) and TIMED_OUT.search(error),
           "the error of a timed-out job should say that it timed out (it mentions no time)")
    expect(not any(secret.lower() in str(final).lower() for secret in SECRETS),
           "the timed-out job's status repeats internal details")


@reports.check(points=1, hint=["arq's Job.status() is JobStatus.not_found for an id it never saw: "
                              "raise HTTPException(404).",
                               "In both GET /reports/jobs/{id} and .../result, build Job(job_id, redis, _queue_name=QUEUE) and raise HTTPException(404) when await job.status() == JobStatus.not_found, before reading any result."])
def unknown_job_is_404(ctx: Context) -> None:
    "GET on the status URL or result URL of an unknown job answers 404"
    unknown = uuid.uuid4().hex
    for path in (f"/reports/jobs/{unknown}", f"/reports/jobs/{unknown}/result"):
        code = ctx.client.get(path).status_code
        expect(code == 404, f"GET {path.replace(unknown, '<unknown id>')} answered {code}, expected 404")


@reports.check(points=2, hint=["Key everything by job id (progress, result), and let the worker run several "
                              "jobs at once (arq's max_jobs, default 10).",
                               "Don't limit the Worker to max_jobs=1 or block its loop with time.sleep: await render_page. Keep progress under progress_key(job_id) and read each result via its own Job, never a shared variable."], timeout=15)
def concurrent_jobs_are_independent(ctx: Context) -> None:
    "a short report started after a long one finishes first, and each gets its own result"
    long_url = start(ctx, "west", 12)
    short_url = start(ctx, "centre", 1)
    failing_url = start(ctx, "atlantis", 5)
    short, _ = follow(ctx, short_url)
    long_now = status(ctx, long_url)
    expect(short["status"] == "completed", f"the short report ended {short['status']!r}, expected 'completed'")
    expect(long_now["status"] not in FINAL,
           "the 1-page report finished only after the 12-page one: jobs wait for each other")
    expect_report(result_of(ctx, short), "centre", 1, "the short report")
    failing, _ = follow(ctx, failing_url)
    expect(failing["status"] == "failed", f"the atlantis report ended {failing['status']!r}, expected 'failed'")
    long_final, _ = follow(ctx, long_url, wait=5)
    expect(long_final["status"] == "completed", f"the long report ended {long_final['status']!r} while "
                                                "others ran beside it, expected 'completed'")
    expect_report(result_of(ctx, long_final), "west", 12, "the long report")
