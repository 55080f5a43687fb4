# fails: liveness_holds_while_draining
# Liveness reports the drain too: the orchestrator sees a dead process and kills it mid-drain.
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
async def live(request: Request):
    if request.app.state.lifecycle.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    return {"status": "alive"}


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
    try:
        await asyncio.wait_for(state.idle.wait(), DRAIN_TIMEOUT)
    except asyncio.TimeoutError:
        return JSONResponse({"status": "timeout", "in_flight": state.in_flight}, status_code=504)
    return {"status": "drained"}
