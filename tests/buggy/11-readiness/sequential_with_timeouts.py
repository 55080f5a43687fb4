# fails: checks_run_concurrently
# Each check has its timeout, but they run one after the other: two slow dependencies cost two timeouts.
ready_app = FastAPI(lifespan=connections)
log = logging.getLogger("ready_app")
DEPENDENCIES = {"database": database_answers, "redis": redis_answers}


async def run_check(name: str, app: FastAPI) -> str:
    task = asyncio.create_task(DEPENDENCIES[name](app))
    done, _ = await asyncio.wait({task}, timeout=CHECK_TIMEOUT)
    if not done:
        task.cancel()
        return "timeout"
    return "ok" if task.exception() is None else "error"


@ready_app.get("/health/live")
async def live():
    return {"status": "alive"}


@ready_app.get("/health/ready")
async def ready(request: Request):
    checks = {name: await run_check(name, request.app) for name in DEPENDENCIES}
    if all(result == "ok" for result in checks.values()):
        return {"status": "ready", "checks": checks}
    return JSONResponse({"status": "not ready", "checks": checks}, status_code=503)
