# fails: answers_in_time_when_redis_hangs, answers_in_time_when_the_database_hangs, checks_run_concurrently
# The course text's structure with the leak fixed: one check after the other and no timeouts, so a
# dependency that stops answering makes the probe stop answering.
ready_app = FastAPI(lifespan=connections)
log = logging.getLogger("ready_app")
DEPENDENCIES = {"database": database_answers, "redis": redis_answers}


@ready_app.get("/health/live")
async def live():
    return {"status": "alive"}


@ready_app.get("/health/ready")
async def ready(request: Request):
    checks = {}
    for name, probe in DEPENDENCIES.items():
        try:
            await probe(request.app)
            checks[name] = "ok"
        except Exception as error:
            log.warning("readiness: %s failed: %r", name, error)
            checks[name] = "error"
    if all(result == "ok" for result in checks.values()):
        return {"status": "ready", "checks": checks}
    return JSONResponse({"status": "not ready", "checks": checks}, status_code=503)
