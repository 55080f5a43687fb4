# fails: names_the_failing_check, answers_in_time_when_redis_hangs, answers_in_time_when_the_database_hangs
# Every check reported, but always with 200: the load balancer keeps sending traffic to an
# instance that cannot serve it.
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
    names = list(DEPENDENCIES)
    results = await asyncio.gather(*(run_check(name, request.app) for name in names))
    status = "ready" if all(result == "ok" for result in results) else "degraded"
    return {"status": status, "checks": dict(zip(names, results))}
