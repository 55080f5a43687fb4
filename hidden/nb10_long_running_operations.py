"""Hidden checks for notebook 10: the grader and the tests run them, the notebook does not."""
from __future__ import annotations

import asyncio
import time

import httpx

from labsupport.checks import Context, expect
from labsupport.suites.nb10_long_running_operations import (
    FINAL, TIMED_OUT, expect_report, expected_total, follow, reports, result_of, start, status,
)


@reports.check(points=2, hidden=True, hint="Keep every job's state in Redis (arq does), name the queue with "
                                           "lab.run_id(), and let the restarted worker pick the job up again.",
               timeout=20)
def survives_a_restart_mid_job(ctx: Context) -> None:
    "the app restarts while a report is being rendered: the job is still known, and completes"
    status_url = start(ctx, "north", 8)
    deadline = time.monotonic() + 3
    while True:
        body = status(ctx, status_url)
        if body["status"] == "running" and (body.get("progress") or 0) > 0 or body["status"] in FINAL:
            break
        expect(time.monotonic() < deadline, f"the job was still {body['status']!r} after 3 s")
        time.sleep(0.005)
    ctx.app.restart()
    response = ctx.client.get(status_url)
    expect(response.status_code == 200, f"after a restart, the status URL of a job started before it answered "
                                        f"{response.status_code}: the job was lost")
    final, _ = follow(ctx, status_url, wait=15)
    expect(final["status"] == "completed", f"the job interrupted by the restart ended {final['status']!r}, "
                                           "expected 'completed'")
    expect_report(result_of(ctx, final), "north", 8)


@reports.check(points=1, hidden=True, hint="Status lives in Redis, which every instance shares: nothing "
                                           "about a job may live in one process's memory.")
def status_visible_from_another_instance(ctx: Context) -> None:
    "a job started on one instance is followed to its result on another"
    other = ctx.http_client(ctx.app.more_instances(1)[0])
    status_url = start(ctx, "east", 3)
    final, _ = follow(ctx, status_url, client=other)
    expect(final["status"] == "completed", f"followed on a second instance, the job ended {final['status']!r}")
    expect_report(result_of(ctx, final, client=other), "east", 3)


async def _thirty_reports(client: httpx.AsyncClient, letter: str) -> list[tuple[str, dict]]:
    """30 one-page reports started at once, followed to their end: (region, final status) of each."""
    regions = [letter + chr(ord("a") + i // 26) + chr(ord("a") + i % 26) for i in range(30)]
    answers = await asyncio.gather(*(client.post("/reports", json={"region": r, "pages": 1}) for r in regions))
    codes = sorted({a.status_code for a in answers})
    expect(codes == [202], f"30 reports started at once were answered {codes}, expected only 202")
    urls = [a.json().get("status_url") for a in answers]
    expect(all(isinstance(u, str) and u.startswith("/") for u in urls) and len(set(urls)) == 30,
           "30 reports started at once should get 30 different status URLs")
    deadline = time.monotonic() + 12
    pending = dict(zip(urls, regions))
    finals = {}
    polls = asyncio.Semaphore(5)  # polling gently: 30 clients polling at once would slow the jobs themselves

    async def poll(url: str) -> httpx.Response:
        async with polls:
            return await client.get(url)

    while pending:
        bodies = await asyncio.gather(*(poll(u) for u in pending))
        for (url, region), answer in zip(list(pending.items()), bodies):
            expect(answer.status_code == 200, f"a status URL answered {answer.status_code}, expected 200")
            body = answer.json()
            if body.get("status") in FINAL:
                finals[url] = body
                del pending[url]
        expect(time.monotonic() < deadline, f"{len(pending)} of 30 reports were not finished after 12 s")
        await asyncio.sleep(0.25)
    return [(region, finals[url]) for url, region in zip(urls, regions)]


def _timed_out(body: dict) -> bool:
    return body.get("status") == "failed" and bool(TIMED_OUT.search(str(body.get("error", ""))))


@reports.check(points=1, hidden=True, hint="Each job has its own id, progress key and result; the worker "
                                           "runs up to max_jobs of them at once.", timeout=40)
async def many_concurrent_jobs(ctx: Context) -> None:
    "30 reports started at once: 30 job ids, each completed with its own report"
    limits = httpx.Limits(max_keepalive_connections=0)
    async with ctx.async_client(timeout=15, limits=limits) as client:
        # a one-page report takes 1/120 of JOB_TIMEOUT; one that timed out was held back by a busy
        # machine, not by the app: then all 30 start again, once (an app that mixes jobs up does it again)
        outcomes = await _thirty_reports(client, "r")
        if any(_timed_out(body) for _, body in outcomes):
            outcomes = await _thirty_reports(client, "s")
        for region, body in outcomes:
            expect(body["status"] == "completed", f"one of 30 reports ended {body['status']!r}")
            response = await client.get(body.get("result_url", ""))
            expect(response.status_code == 200, f"a result_url answered {response.status_code}, expected 200")
            report = response.json()
            expect(report.get("region") == region and report.get("total_cents") == expected_total(region, 1),
                   "with 30 reports at once, a report held another job's result")


@reports.check(points=1, hidden=True, hint="The result URL serves only a completed job's report: answer 409 "
                                           "while it runs or after it failed.")
def no_result_for_an_unfinished_or_failed_job(ctx: Context) -> None:
    "the result URL of a running or failed job answers 409, not a report"
    running_url = start(ctx, "west", 15)
    code = ctx.client.get(f"{running_url}/result").status_code
    body = status(ctx, running_url)
    expect(code == 409 or body["status"] == "completed" and code == 200,
           f"the result URL of a running job answered {code}, expected 409")
    failed_url = start(ctx, "atlantis", 5)
    failed, _ = follow(ctx, failed_url)
    expect(failed["status"] == "failed", f"the atlantis report ended {failed['status']!r}, expected 'failed'")
    code = ctx.client.get(f"{failed_url}/result").status_code
    expect(code == 409, f"the result URL of a failed job answered {code}, expected 409")
