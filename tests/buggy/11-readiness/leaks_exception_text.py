# fails: reveals_no_internals
# Concurrent checks with timeouts, but the exception text goes into the answer, as in the course
# text: anyone who can reach the probe learns hosts, ports and driver messages.
ready_app = FastAPI(lifespan=connections)
log = logging.getLogger("ready_app")
DEPENDENCIES = {"database": database_answers, "redis": redis_answers}


async def run_check(name: str, app: FastAPI) -> str:
    task = asyncio.create_task(DEPENDENCIES[name](app))
    done, _ = await asyncio.wait({task}, timeout=CHECK_TIMEOUT)
    if not done:
        task.cancel()
        return "timeout"
    if task.exception() is not None:
        return f"error: {task.exception()}"
    return "ok"


@ready_app.get("/health/live")
async def live():
    return {"status": "alive"}


@ready_app.get("/health/ready")
async def ready(request: Request):
    names = list(DEPENDENCIES)
    results = await asyncio.gather(*(run_check(name, request.app) for name in names))
    checks = dict(zip(names, results))
    if all(result == "ok" for result in results):
        return {"status": "ready", "checks": checks}
    return JSONResponse({"status": "not ready", "checks": checks}, status_code=503)
