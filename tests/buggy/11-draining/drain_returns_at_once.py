# fails: drain_waits_for_in_flight_requests
# The hook flips readiness and answers at once: the orchestrator then stops the process with
# requests still running.
WORK_SECONDS = lab.seconds(20)   # GET /work takes this long (a report: 20 s in production)
DRAIN_TIMEOUT = lab.seconds(45)  # the longest a drain waits for in-flight requests


class Draining:
    """Whether the app is draining, and how many requests are in flight."""

    def __init__(self):
        self.draining = False
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()


drain_app = FastAPI()
drain_app.state.lifecycle = Draining()


@drain_app.middleware("http")
async def count_in_flight(request: Request, call_next):
    if request.url.path == "/admin/drain":
        return await call_next(request)  # the drain itself must not wait for itself
    state = request.app.state.lifecycle
    state.in_flight += 1
    state.idle.clear()
    try:
        return await call_next(request)
    finally:
        state.in_flight -= 1
        if state.in_flight == 0:
            state.idle.set()


@drain_app.get("/work")
async def work():
    await asyncio.sleep(WORK_SECONDS)
    return {"done": True}


@drain_app.get("/health/live")
async def live():
    return {"status": "alive"}  # draining is not dying: a restart now would cut in-flight work


@drain_app.get("/health/ready")
async def ready(request: Request):
    if request.app.state.lifecycle.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    return {"status": "ready"}


@drain_app.post("/admin/drain")
async def drain(request: Request):
    """The preStop hook: stop taking new traffic, then wait for the requests in flight."""
    if request.client is None or request.client.host not in ("127.0.0.1", "::1"):
        return JSONResponse({"detail": "not allowed"}, status_code=403)  # the pod's own hook only
    state = request.app.state.lifecycle
    state.draining = True
    return {"status": "drained"}
