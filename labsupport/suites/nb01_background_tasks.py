"""Checks for notebook 01, background tasks."""
from __future__ import annotations

import concurrent.futures
import time

import httpx

from ..checks import Context, Suite, expect
from ..services import seconds

# -- exercise 1: the welcome email, off the request path ----------------------------------------

welcome = Suite("01-welcome-email")

ANSWER_WITHIN = 2.0  # seconds a signup may take while the mail server is busy: it should not wait at all
EMAIL_WITHIN = 5.0   # seconds for the welcome email to arrive once the mail server is free


def _signup(ctx: Context, email: str, name: str, timeout: float = 5.0) -> httpx.Response:
    return ctx.client.post("/users", json={"email": email, "name": name}, timeout=timeout)


def _emails(count: int) -> str:
    return "no email" if count == 0 else "one email" if count == 1 else f"{count} emails"


@welcome.check(points=1, hint=["Return the new user with status_code=201 on the route decorator.",
                               "Delete the raise NotImplementedError() placeholder (it gives 500), keep status_code=201 on @welcome_app.post, and return the NewUser object so the body holds its email and name."])
def creates_the_user(ctx: Context) -> None:
    "POST /users answers 201 with the new user"
    response = _signup(ctx, "ada@example.com", "Ada")
    expect(response.status_code == 201, f"POST /users answered {response.status_code}, expected 201")
    ctx.mail.wait_for(1, timeout=EMAIL_WITHIN)  # its email out, before the next check begins
    body = response.json()
    expect(isinstance(body, dict) and body.get("email") == "ada@example.com" and body.get("name") == "Ada",
           "the response body should hold the new user's email and name")


@welcome.check(points=2, hint=["Don't call send_email in the endpoint (nor inside add_task's arguments): "
                              "pass the function and its arguments to background_tasks.add_task.",
                               "add_task takes the function object, then its arguments separately: add_task(send_email(...)) runs the send during the request. Keep every other call to send_email out of create_user."])
def answers_before_the_email_is_sent(ctx: Context) -> None:
    "the response does not wait for the mail server"
    with ctx.mail.held():
        try:
            response = _signup(ctx, "grace@example.com", "Grace", timeout=ANSWER_WITHIN)
        except httpx.TimeoutException:
            expect(False, f"POST /users gave no answer within {ANSWER_WITHIN:g} s while the mail server was "
                          "busy: the response waits for the email")
    expect(response.status_code == 201, f"POST /users answered {response.status_code}, expected 201")
    ctx.mail.wait_for(1, timeout=EMAIL_WITHIN)  # its email out, before the next check begins


@welcome.check(points=1, hint=["An `async def` task runs on the event loop: a blocking call in it (smtplib) "
                              "stops every other request. Pass the plain function send_email, which "
                              "FastAPI runs in its thread pool.",
                               "Check what you gave add_task: an async def wrapper around send_email blocks the event loop. Pass send_email itself (a plain def runs in the thread pool), or await asyncio.to_thread in the wrapper."])
def stays_responsive_while_mail_is_slow(ctx: Context) -> None:
    "while one welcome email waits for the mail server, the next signup is answered"
    with ctx.mail.held():
        first = _signup(ctx, "edsger@example.com", "Edsger", timeout=ANSWER_WITHIN)
        expect(first.status_code == 201, f"POST /users answered {first.status_code}, expected 201")
        ctx.wait_until(lambda: ctx.mail.attempts >= 1, "the first welcome email reaching the mail server",
                       timeout=EMAIL_WITHIN)
        try:
            second = _signup(ctx, "barbara@example.com", "Barbara", timeout=ANSWER_WITHIN)
        except httpx.TimeoutException:
            expect(False, f"while the first welcome email waited for the mail server, the next POST /users "
                          f"gave no answer within {ANSWER_WITHIN:g} s: the email blocks the event loop")
    expect(second.status_code == 201, f"the second POST /users answered {second.status_code}, expected 201")
    ctx.mail.wait_for(2, timeout=EMAIL_WITHIN)  # both emails out, before the next check begins


@welcome.check(points=1, hint=["Send to the new user's address, with their name in the subject.",
                               "send_email's first argument is the recipient: pass user.email, and build the subject with user.name in it (Welcome, Alan!). Add the task once, and don't also send inline."])
def delivers_the_welcome_email(ctx: Context) -> None:
    "the welcome email reaches the new user, once, greeting them by name"
    response = _signup(ctx, "alan@example.com", "Alan")
    expect(response.status_code == 201, f"POST /users answered {response.status_code}, expected 201")
    ctx.mail.wait_for(1, timeout=EMAIL_WITHIN)
    time.sleep(0.2)  # a second, duplicate email would arrive right behind the first
    received = ctx.mail.to("alan@example.com")
    others = len(ctx.mail.messages) - len(received)
    expect(received or not others, f"the welcome email went to another address ({_emails(others)} to others, "
                                   "none to alan@example.com)")
    expect(len(received) == 1, f"alan@example.com got {_emails(len(received))} within {EMAIL_WITHIN:g} s, "
                               "expected one")
    expect("Alan" in received[0].subject, "the subject should greet the user by name")


@welcome.check(points=1, hint=["Declare the body as a Pydantic model whose email field rejects "
                              "malformed addresses (EmailAddress); FastAPI then answers 422 before your code runs.",
                               "Take the JSON body as user: NewUser with email typed EmailAddress, not str or query parameters; then 'not-an-address' fails validation with 422 and create_user never runs."])
def rejects_a_bad_address_without_mailing(ctx: Context) -> None:
    "a malformed address gets 422 and no email"
    response = _signup(ctx, "not-an-address", "Nobody")
    expect(response.status_code == 422, f"POST /users with email 'not-an-address' answered "
                                        f"{response.status_code}, expected 422")
    marker = _signup(ctx, "marker@example.com", "Marker")  # its email comes after any of the bad request
    expect(marker.status_code == 201, f"POST /users answered {marker.status_code}, expected 201")
    ctx.mail.wait_for(1, timeout=EMAIL_WITHIN)
    time.sleep(0.2)
    strays = [m for m in ctx.mail.messages if "not-an-address" in m.recipients or "Nobody" in m.subject]
    expect(not strays, "the rejected signup (email 'not-an-address', name 'Nobody') was mailed")


UNSENDABLE = [  # each passes a hand-written address pattern, and the mail server cannot take it
    ("a non-ASCII address", {"email": "zoë@example.com", "name": "Zoë"}),
    ("a control character in the address", {"email": "ada\x1c@example.com", "name": "Ada"}),
    ("an angle bracket in the address", {"email": "ada<eve@example.com", "name": "Ada"}),
    ("two dots in a row in the domain", {"email": "ada@example..com", "name": "Ada"}),
    ("a line break in the name", {"email": "lin@example.com", "name": "Lin\nBcc: eve@example.com"}),
    ("a control character in the name", {"email": "lin@example.com", "name": "Lin\x1c"}),
]

MISDELIVERED = {"eve@example.com", "<>"}  # where Python's email package sends some of them instead


def rejects_each(ctx: Context, path: str, bodies, describe) -> None:
    """Each body gets 422 at `path`; `describe(status)` says what answering otherwise means."""
    for what, body in bodies:
        status = ctx.client.post(path, json=body).status_code
        expect(status == 422, f"POST {path} with {what} answered {status}, expected 422: {describe(status)}")


def _lost_after(status: int) -> str:
    return ("it cannot be delivered as given, so the email is lost after the promise" if status < 300
            else "refuse it as invalid input, before anything is promised")


@welcome.check(points=1, hint=["Keep NewUser's types from the setup: EmailAddress (EmailStr, ASCII only) and "
                              "PersonName (no line breaks or control characters).",
                               "Use EmailAddress and PersonName exactly as the setup defines them: plain EmailStr lets zoë@example.com through (ascii_only stops it), plain str lets a line break in the name through (header_safe stops it)."])
def rejects_what_the_mail_server_cannot_take(ctx: Context) -> None:
    "an address or a name the mail server cannot take gets 422 and no email"
    rejects_each(ctx, "/users", UNSENDABLE, _lost_after)
    marker = _signup(ctx, "marker@example.com", "Marker")  # its email comes after any of the rejected ones
    expect(marker.status_code == 201, f"POST /users answered {marker.status_code}, expected 201")
    ctx.mail.wait_for(1, timeout=EMAIL_WITHIN)
    time.sleep(0.2)
    rejected = {body["email"].lower() for _, body in UNSENDABLE} | MISDELIVERED
    strays = [m for m in ctx.mail.messages
              if rejected & set(m.recipients) or any(name in m.subject for name in ("Zoë", "Ada", "Lin"))]
    expect(not strays, "a rejected signup was mailed")


# -- exercise 2: reliable delivery with a queue ------------------------------------------------

reliable = Suite("01-reliable-delivery")

MAX_TRIES = 5                  # as the notebook's setup cell defines it
JOB_DEADLINE = seconds(600)    # a job reaches its final status within 10 production minutes
FINAL = {"complete", "failed"}
KNOWN = {"queued", "deferred", "in_progress"} | FINAL
WAREHOUSE = "warehouse@example.com"
WAITING = JOB_DEADLINE + 5     # a check that waits for a job
DOWN_FOR = seconds(50)         # the mail server stays down this long, or until a try has failed


def _order(ctx: Context, customer: str, client: httpx.Client | None = None) -> str:
    response = (client or ctx.client).post("/orders", json={"customer": customer})
    expect(response.status_code == 202, f"POST /orders answered {response.status_code}, expected 202")
    status_url = response.json().get("status_url")
    expect(isinstance(status_url, str) and status_url.startswith("/jobs/"),
           "the 202 response should hold a status_url such as /jobs/<job id>")
    return status_url


def _status(ctx: Context, status_url: str) -> str:
    response = ctx.client.get(status_url)
    expect(response.status_code == 200, f"the status URL answered {response.status_code}, expected 200")
    status = response.json().get("status")
    expect(status in KNOWN, f"the status URL gave status {status!r}; expected one of {sorted(KNOWN)}")
    return status


def _final_status(ctx: Context, status_url: str) -> str:
    deadline = time.monotonic() + JOB_DEADLINE
    while True:
        status = _status(ctx, status_url)
        if status in FINAL:
            return status
        expect(time.monotonic() < deadline, f"the job was still {status!r} after {JOB_DEADLINE:g} s "
                                            "(the exercise's deadline for a job)")
        time.sleep(0.02)


def _count(ctx: Context, address: str) -> int:
    return len(ctx.mail.to(address))


def _exactly_one(ctx: Context, address: str, what: str) -> None:
    got = _count(ctx, address)
    expect(got == 1, f"{what}: {address} got {_emails(got)}, expected one")


@reliable.check(points=1, timeout=WAITING,
                hint=["Enqueue with `await app.state.queue.enqueue_job(...)` and answer 202 "
                     "with status_url=f'/jobs/{job.job_id}'.",
                      "Enqueue 'send_order_emails' with order_id and order.customer and return status_url '/jobs/' + job.job_id; in GET /jobs build Job(job_id, queue, _queue_name=QUEUE), or arq looks in its default queue."])
def accepts_the_order_with_a_status_url(ctx: Context) -> None:
    "POST /orders answers 202 with a status URL that reports the job"
    status = _final_status(ctx, _order(ctx, "ada@example.com"))
    expect(status == "complete", f"with a healthy mail server the job ended {status!r}, expected 'complete'")
    _exactly_one(ctx, "ada@example.com", "the confirmation")
    _exactly_one(ctx, WAREHOUSE, "the packing request")


@reliable.check(points=1, timeout=WAITING,
                hint=["Keep the Order model's EmailAddress type from the setup: an address the mail server "
                     "cannot take gets 422 before any job is queued.",
                      "Leave Order.customer typed EmailAddress (EmailStr plus ascii_only); with str or plain EmailStr, zoë@example.com reaches the queue and gets a 202 that can never be delivered."])
def rejects_an_address_the_mail_server_cannot_take(ctx: Context) -> None:
    "a customer address the mail server cannot take gets 422, and no job sends anything"
    bodies = [(what, {"customer": body["email"]}) for what, body in UNSENDABLE if "name" not in what]
    rejects_each(ctx, "/orders", bodies, _lost_after)
    status = _final_status(ctx, _order(ctx, "marker@example.com"))  # any job of the rejected ones ran before it
    expect(status == "complete", f"with a healthy mail server the job ended {status!r}, expected 'complete'")
    time.sleep(0.2)
    rejected = {body["customer"].lower() for _, body in bodies} | MISDELIVERED
    strays = [m for m in ctx.mail.messages if rejected & set(m.recipients)]
    expect(not strays, "a rejected order was mailed")


@reliable.check(points=1, hint=["arq's Job.status() is JobStatus.not_found for an unknown id: answer 404.",
                                "In job_status, await Job(job_id, queue, _queue_name=QUEUE).status(); when it equals JobStatus.not_found, raise HTTPException(404) instead of returning a status."])
def unknown_job_is_404(ctx: Context) -> None:
    "GET /jobs/<unknown id> answers 404"
    response = ctx.client.get("/jobs/no-such-job")
    expect(response.status_code == 404, f"GET /jobs/no-such-job answered {response.status_code}, expected 404")


@reliable.check(points=2, timeout=WAITING,
                description=f"a mail server that refuses {MAX_TRIES - 1} times (451), then accepts: both emails arrive",
                hint=["Catch the failed send (an OSError) and, unless is_permanent(error) or it was the last "
                     "try, raise arq.worker.Retry(defer=...) so that arq runs the job again later.",
                      "Wrap each send in try/except OSError; if not is_permanent(error) and ctx['job_try'] < MAX_TRIES, raise Retry(defer=...) with a short back-off in lab.seconds (2, 4, 8, 16), well within the 600 s deadline."])
def retries_temporary_failures(ctx: Context) -> None:
    ctx.mail.fail_next(MAX_TRIES - 1)
    status = _final_status(ctx, _order(ctx, "grace@example.com"))
    expect(status == "complete", f"the mail server refused {MAX_TRIES - 1} times and then accepted, within "
                                 f"MAX_TRIES = {MAX_TRIES} tries, yet the job ended {status!r}")
    _exactly_one(ctx, "grace@example.com", "the confirmation")
    _exactly_one(ctx, WAREHOUSE, "the packing request")


@reliable.check(points=1, timeout=WAITING,
                hint=["A mail server that is down refuses the connection (ConnectionRefusedError, an OSError): "
                     "that is temporary too, so retry it.",
                      "ConnectionRefusedError is not an smtplib.SMTPException: catch OSError, the base of both. is_permanent gives False for it, so raise Retry just as for a 451."])
def retries_a_mail_server_that_is_down(ctx: Context) -> None:
    "the mail server is down (connections refused), then comes back: both emails arrive"
    ctx.mail.refuse()
    status_url = _order(ctx, "barbara@example.com")
    down_until = time.monotonic() + DOWN_FOR
    status = _status(ctx, status_url)
    while status in ("queued", "in_progress") and time.monotonic() < down_until:  # until a try has failed
        time.sleep(0.005)
        status = _status(ctx, status_url)
    ctx.mail.restore()
    if status not in FINAL:
        status = _final_status(ctx, status_url)
    expect(status == "complete", f"the mail server was down for the first try and up again after it, yet the "
                                 f"job ended {status!r}")
    _exactly_one(ctx, "barbara@example.com", "the confirmation")


@reliable.check(points=2, timeout=WAITING,
                hint=["A retry runs the whole job again: remember each email that went out "
                     "(a Redis key per order and recipient) and skip it on the next try.",
                      "Before each send, check a Redis key for that order and recipient with await ctx['redis'].exists(...); set it right after the send succeeds, so a retry skips the customer and resends only the warehouse email."])
def never_resends_a_delivered_email(ctx: Context) -> None:
    "a retry does not send the customer's email again"
    ctx.mail.fail_next(2, after=1)  # the customer's email goes through, the warehouse's fails twice
    status = _final_status(ctx, _order(ctx, "alan@example.com"))
    expect(status == "complete", f"the job ended {status!r} though the mail server recovered")
    got = _count(ctx, "alan@example.com")
    expect(got == 1, f"the customer got {_emails(got)}: each retry re-sent an email that had already "
                     "been delivered" if got > 1 else f"the customer got {_emails(got)}, expected one")
    _exactly_one(ctx, WAREHOUSE, "the packing request")


@reliable.check(points=1, timeout=2 * WAITING,
                hint=["Remember what was sent per order (and recipient), not per customer: a second order "
                     "deserves its own confirmation.",
                      "Put order_id in the 'already sent' key (order_id plus recipient); a key made of the customer address alone makes the second order skip its confirmation."])
def a_second_order_gets_its_own_emails(ctx: Context) -> None:
    "two orders from the same customer, one after the other: two confirmations"
    for _ in range(2):
        status = _final_status(ctx, _order(ctx, "ken@example.com"))
        expect(status == "complete", f"an order ended {status!r} with a healthy mail server")
    got = _count(ctx, "ken@example.com")
    expect(got == 2, f"two orders from the same customer brought {_emails(got)}, expected two")


@reliable.check(points=1, timeout=WAITING,
                hint=["Give every order its own job (its own job id); the worker runs them independently.",
                      "Call enqueue_job without a fixed _job_id (arq then makes a unique one) and return that job's own job_id; keep no global or shared job between orders, and key sent-markers by order_id."])
def concurrent_orders_each_complete(ctx: Context) -> None:
    "five orders placed at the same time: five jobs, each complete, each customer confirmed once"
    customers = [f"buyer{n}@example.com" for n in range(5)]
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        clients = [ctx.http_client() for _ in customers]
        urls = list(pool.map(lambda pair: _order(ctx, pair[0], pair[1]), zip(customers, clients)))
    expect(len(set(urls)) == 5, f"five orders got {len(set(urls))} different status URLs, expected five")
    for url in urls:
        status = _final_status(ctx, url)
        expect(status == "complete", f"an order placed with four others ended {status!r}")
    for customer in customers:
        _exactly_one(ctx, customer, "each concurrent order's confirmation")


@reliable.check(points=2, timeout=WAITING,
                description=f"a mail server that refuses every try (451): after {MAX_TRIES} tries the job ends 'failed'",
                hint=["Let the last try's exception propagate (don't return normally), and map "
                     "arq's result_info().success == False to status 'failed'.",
                      "When ctx['job_try'] >= MAX_TRIES, re-raise the OSError (no Retry, no return). JobStatus.complete covers failed jobs too: read (await job.result_info()).success and answer 'failed' if False."])
def records_a_failure_after_the_last_try(ctx: Context) -> None:
    ctx.mail.fail_next(1000)
    status = _final_status(ctx, _order(ctx, "edsger@example.com"))
    expect(status == "failed", f"nothing was delivered, yet the job ended {status!r}: "
                               "the failure was swallowed instead of recorded")
    expect(ctx.mail.attempts == MAX_TRIES, f"the job tried {ctx.mail.attempts} times before it failed, "
                                           f"expected MAX_TRIES = {MAX_TRIES}")


@reliable.check(points=1, timeout=WAITING,
                hint=["A 5xx reply (550: no such mailbox) is permanent (is_permanent says so): retrying "
                     "cannot help, so let it fail at once.",
                      "In the except OSError branch, test is_permanent(error) first and re-raise at once when it is True (a 550 SMTPResponseException); only other errors, before the last try, may raise Retry."])
def a_permanent_refusal_is_not_retried(ctx: Context) -> None:
    "a permanent refusal (550): the job ends 'failed' after one try"
    ctx.mail.fail_next(1000, permanent=True)
    status = _final_status(ctx, _order(ctx, "nobody@example.com"))
    expect(status == "failed", f"the mail server answered 550 (no such mailbox), yet the job ended {status!r}")
    expect(ctx.mail.attempts == 1, f"the job tried {ctx.mail.attempts} times after a permanent refusal, "
                                   "expected one")


@reliable.check(points=3, timeout=WAITING,
                hint=["An in-memory list or dict dies with the process: keep the job in Redis (arq does) "
                     "and read its status from there.",
                      "Enqueue through app.state.queue (the given lifespan's arq pool) and read the status from Redis with Job(..., _queue_name=QUEUE); keep no dict of jobs in the process, and keep QUEUE as given."])
def survives_a_restart(ctx: Context) -> None:
    "an order accepted before the app restarts is still tracked and delivered after it"
    ctx.mail.fail_next(1000)  # the mail server refuses until the restart is over
    status_url = _order(ctx, "grace@example.com")
    ctx.wait_until(lambda: ctx.mail.attempts >= 1, "the job's first try", timeout=JOB_DEADLINE)
    ctx.app.restart()
    ctx.mail.restore()
    response = ctx.client.get(status_url)
    expect(response.status_code == 200, f"after a restart, the status URL of an accepted order answered "
                                        f"{response.status_code}: the job was lost with the process")
    status = _final_status(ctx, status_url)
    expect(status == "complete", f"after a restart the job ended {status!r}, expected 'complete'")
    _exactly_one(ctx, "grace@example.com", "after the restart, the confirmation")
