# fails: answers_in_time_when_the_database_hangs
# asyncio.wait_for cancels a hung check and then waits for it to end; cleaning up a cancelled query
# needs the stuck database too, so the probe hangs as long as the database does.
ready_app = FastAPI(lifespan=connections)
log = logging.getLogger("ready_app")
DEPENDENCIES = {"database": database_answers, "redis": redis_answers}


async def run_check(name: str, app: FastAPI) -> str:
    try:
        await asyncio.wait_for(DEPENDENCIES[name](app), CHECK_TIMEOUT)
        return "ok"
    except asyncio.TimeoutError:
        log.warning("readiness: %s timed out", name)
        return "timeout"
    except Exception as error:
        log.warning("readiness: %s failed: %r", name, error)
        return "error"


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
