# fails: records_a_permanent_failure
# The status endpoint reports arq's JobStatus as is, and arq calls a failed job 'complete'.
QUEUE = f"orders-{uuid.uuid4().hex[:8]}"  # this cell's own queue: jobs from an earlier run stay out of it
MAX_TRIES = 5
WAREHOUSE = "warehouse@example.com"


async def send_order_emails(ctx: dict, order_id: str, customer: str) -> str:
    """The job: confirm the order to the customer, then ask the warehouse to pack it."""
    emails = [
        (customer, f"Order {order_id} confirmed", "Thank you for your order."),
        (WAREHOUSE, f"Pack order {order_id}", f"Ship it to {customer}."),
    ]
    redis = ctx["redis"]
    for to, subject, body in emails:
        sent = f"{QUEUE}:sent:{order_id}:{to}"
        if await redis.exists(sent):
            continue  # delivered on an earlier try: a retry must not send it again
        try:
            await asyncio.to_thread(send_email, to, subject, body)
        except smtplib.SMTPResponseException as error:
            if 400 <= error.smtp_code < 500 and ctx["job_try"] < MAX_TRIES:
                raise Retry(defer=lab.seconds(2 ** ctx["job_try"])) from error
            raise  # permanent, or out of tries: arq records the job as failed
        await redis.set(sent, 1, ex=7 * 24 * 3600)
    return "delivered"


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.queue = await create_pool(REDIS, default_queue_name=QUEUE)
    worker = Worker(
        functions=[func(send_order_emails, max_tries=MAX_TRIES)],
        redis_settings=REDIS, queue_name=QUEUE, handle_signals=False,
        poll_delay=lab.seconds(5),  # how often it looks for due jobs; arq default 0.5 s
    )
    running = asyncio.create_task(worker.async_run())
    yield
    await worker.close()
    running.cancel()
    await app.state.queue.aclose()


orders_app = FastAPI(lifespan=lifespan)


class Order(BaseModel):
    customer: str = Field(max_length=254, pattern=EMAIL_PATTERN)


@orders_app.post("/orders", status_code=202)
async def place_order(order: Order) -> dict:
    order_id = uuid.uuid4().hex[:12]
    job = await orders_app.state.queue.enqueue_job("send_order_emails", order_id, order.customer)
    return {"order_id": order_id, "job_id": job.job_id, "status_url": f"/jobs/{job.job_id}"}


@orders_app.get("/jobs/{job_id}")
async def job_status(job_id: str) -> dict:
    job = Job(job_id, orders_app.state.queue, _queue_name=QUEUE)
    status = await job.status()
    if status == JobStatus.not_found:
        raise HTTPException(404, "No such job")
    return {"job_id": job_id, "status": status.value}  # arq says 'complete' for failed jobs too
