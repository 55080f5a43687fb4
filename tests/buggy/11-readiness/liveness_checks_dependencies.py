# fails: liveness_ignores_dependencies
# Liveness runs the dependency checks too: a database blip fails every instance's liveness probe,
# and the orchestrator restarts them all at once.
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
async def live(request: Request):
    results = await asyncio.gather(*(run_check(name, request.app) for name in DEPENDENCIES))
    if all(result == "ok" for result in results):
        return {"status": "alive"}
    return JSONResponse({"status": "dead"}, status_code=503)


@ready_app.get("/health/ready")
async def ready(request: Request):
    names = list(DEPENDENCIES)
    results = await asyncio.gather(*(run_check(name, request.app) for name in names))
    checks = dict(zip(names, results))
    if all(result == "ok" for result in results):
        return {"status": "ready", "checks": checks}
    return JSONResponse({"status": "not ready", "checks": checks}, status_code=503)
