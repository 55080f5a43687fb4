"""Checks for notebook 01, background tasks."""
from __future__ import annotations

import time

import httpx

from ..checks import Context, Suite, expect

WAIT = 10.0  # seconds a check waits for email or a job; generous, since only a failure waits this long

# -- exercise 1: the welcome email, off the request path ----------------------------------------

welcome = Suite("01-welcome-email", app_name="welcome_app", title="Send the welcome email after the response")


@welcome.setup
def _fresh_mailbox(ctx: Context) -> None:
    expect(ctx.mailbox is not None, "these checks read the lab's mailbox; unset LAB_SMTP_URL to run them")
    ctx.mailbox.reset()


def _create(ctx: Context, email: str, name: str, timeout: float = 5.0) -> httpx.Response:
    return ctx.client.post("/users", json={"email": email, "name": name}, timeout=timeout)


@welcome.check(points=1, hint="Return the new user with status_code=201 on the route decorator.")
def creates_the_user(ctx: Context) -> None:
    "POST /users answers 201 with the new user"
    response = _create(ctx, "ada@example.com", "Ada")
    expect(response.status_code == 201, f"POST /users answered {response.status_code}, expected 201")
    body = response.json()
    expect(body.get("email") == "ada@example.com" and body.get("name") == "Ada",
           "the response body should hold the new user's email and name")


@welcome.check(points=2, hint="Don't call send_email in the endpoint (nor inside add_task's arguments): "
                              "pass the function and its arguments to background_tasks.add_task.")
def answers_before_the_email_is_sent(ctx: Context) -> None:
    "the response does not wait for the mail server"
    with ctx.mailbox.held():
        try:
            response = _create(ctx, "grace@example.com", "Grace", timeout=3.0)
        except httpx.TimeoutException:
            expect(False, "POST /users did not answer while the mail server was busy: "
                          "the response waits for the email")
    expect(response.status_code == 201, f"POST /users answered {response.status_code}, expected 201")


@welcome.check(points=1, hint="Send to the new user's address, with their name in the subject.")
def delivers_the_welcome_email(ctx: Context) -> None:
    "the welcome email reaches the new user, once"
    response = _create(ctx, "alan@example.com", "Alan")
    expect(response.status_code == 201, f"POST /users answered {response.status_code}, expected 201")
    ctx.mailbox.wait_for(1, timeout=WAIT)
    time.sleep(0.2)  # a second, duplicate email would arrive right behind the first
    received = ctx.mailbox.to("alan@example.com")
    expect(received, "no email reached alan@example.com")
    expect(len(received) == 1, f"alan@example.com got {len(received)} emails, expected one")
    expect("Alan" in (received[0]["Subject"] or ""), "the subject should greet the user by name")


@welcome.check(points=1, hint="Declare the body as a Pydantic model whose email field rejects "
                              "malformed addresses; FastAPI then answers 422 before your code runs.")
def rejects_a_bad_address_without_mailing(ctx: Context) -> None:
    "a malformed address gets 422 and no email"
    response = _create(ctx, "not-an-address", "Nobody")
    expect(response.status_code == 422, f"POST /users with email 'not-an-address' answered "
                                        f"{response.status_code}, expected 422")
    marker = _create(ctx, "marker@example.com", "Marker")  # its email comes after any of the bad request
    expect(marker.status_code == 201, f"POST /users answered {marker.status_code}, expected 201")
    expect(ctx.mailbox.wait_for(1, timeout=WAIT), "no email reached marker@example.com")
    strays = [m for m in ctx.mailbox.messages if "marker@example.com" not in m["X-Lab-Rcpt-To"]]
    expect(not strays, "an email was sent for the rejected request")


# -- exercise 2: reliable delivery with a queue ------------------------------------------------

reliable = Suite("01-reliable-delivery", app_name="orders_app",
                 title="Deliver order emails reliably with ARQ")

FINAL = {"complete", "failed"}
KNOWN = {"queued", "deferred", "in_progress"} | FINAL


@reliable.setup
def _fresh_mail_server(ctx: Context) -> None:
    expect(ctx.mailbox is not None, "these checks read the lab's mailbox; unset LAB_SMTP_URL to run them")
    ctx.mailbox.reset()


def _order(ctx: Context, customer: str) -> str:
    response = ctx.client.post("/orders", json={"customer": customer})
    expect(response.status_code == 202, f"POST /orders answered {response.status_code}, expected 202")
    status_url = response.json().get("status_url")
    expect(isinstance(status_url, str) and status_url.startswith("/jobs/"),
           "the 202 response should hold a status_url such as /jobs/<job id>")
    return status_url


def _final_status(ctx: Context, status_url: str) -> str:
    deadline = time.monotonic() + WAIT
    while True:
        response = ctx.client.get(status_url)
        expect(response.status_code == 200, f"the status URL answered {response.status_code}, expected 200")
        status = response.json().get("status")
        expect(status in KNOWN, f"the status URL gave status {status!r}; expected one of {sorted(KNOWN)}")
        if status in FINAL:
            return status
        expect(time.monotonic() < deadline, f"the job was still {status!r} after {WAIT:.0f} s")
        time.sleep(0.02)


def _count(ctx: Context, address: str) -> int:
    return len(ctx.mailbox.to(address))


@reliable.check(points=1, hint="Enqueue with `await app.state.queue.enqueue_job(...)` and answer 202 "
                               "with status_url=f'/jobs/{job.job_id}'.")
def accepts_the_order_with_a_status_url(ctx: Context) -> None:
    "POST /orders answers 202 with a status URL that reports the job"
    status = _final_status(ctx, _order(ctx, "ada@example.com"))
    expect(status == "complete", f"with a healthy mail server the job ended {status!r}, expected 'complete'")
    expect(_count(ctx, "ada@example.com") == 1, "the customer's confirmation did not arrive")
    expect(_count(ctx, "warehouse@example.com") == 1, "the warehouse's notice did not arrive")


@reliable.check(points=2, hint="Catch smtplib.SMTPResponseException with a 4xx code and raise "
                               "arq.worker.Retry(defer=...) so that arq runs the job again later.")
def retries_temporary_failures(ctx: Context) -> None:
    "a mail server that refuses twice, then accepts: both emails arrive"
    ctx.mailbox.fail_next(2)
    status = _final_status(ctx, _order(ctx, "grace@example.com"))
    expect(status == "complete", f"the job ended {status!r} though the mail server recovered")
    expect(_count(ctx, "grace@example.com") == 1, "the customer's confirmation did not arrive")
    expect(_count(ctx, "warehouse@example.com") == 1, "the warehouse's notice did not arrive")


@reliable.check(points=2, hint="A retry runs the whole job again: remember each email that went out "
                               "(a Redis key per order and recipient) and skip it on the next try.")
def never_resends_a_delivered_email(ctx: Context) -> None:
    "a retry does not send the customer's email again"
    ctx.mailbox.fail_next(2, after=1)  # the customer's email goes through, the warehouse's fails twice
    status = _final_status(ctx, _order(ctx, "alan@example.com"))
    expect(status == "complete", f"the job ended {status!r} though the mail server recovered")
    got = _count(ctx, "alan@example.com")
    expect(got == 1, f"the customer got {got} confirmation emails: each retry re-sent an email "
                     "that had already been delivered")
    expect(_count(ctx, "warehouse@example.com") == 1, "the warehouse's notice did not arrive")


@reliable.check(points=2, hint="Let the last try's exception propagate (don't return normally), and map "
                               "arq's result_info().success == False to status 'failed'.")
def records_a_permanent_failure(ctx: Context) -> None:
    "a mail server that never recovers: the job ends 'failed', not lost"
    ctx.mailbox.fail_next(1000)
    status = _final_status(ctx, _order(ctx, "edsger@example.com"))
    expect(status == "failed", f"nothing was delivered, yet the job ended {status!r}: "
                               "the failure was swallowed instead of recorded")


@reliable.check(points=1, hint="arq's Job.status() is JobStatus.not_found for an unknown id: answer 404.")
def unknown_job_is_404(ctx: Context) -> None:
    "GET /jobs/<unknown id> answers 404"
    response = ctx.client.get("/jobs/no-such-job")
    expect(response.status_code == 404, f"GET /jobs/no-such-job answered {response.status_code}, expected 404")
