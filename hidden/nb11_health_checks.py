"""Hidden checks for notebook 11: the grader and the tests run them, the notebook does not."""
from __future__ import annotations

from labsupport.checks import Context, expect
from labsupport.suites.nb11_health_checks import OUTSIDE, _drain, draining


@draining.check(points=1, hidden=True)
def drain_refuses_a_standard_forwarded_header_too(ctx: Context) -> None:
    "POST /admin/drain through a proxy that sends the standard Forwarded header gets 403 too"
    ctx.app.restart()  # a fresh app: the drains above cannot be undone
    hook = _drain(ctx, {"Forwarded": f"for={OUTSIDE};proto=https"})
    hook.start()
    hook.finish()
    expect(hook.status == 403, f"POST /admin/drain with a Forwarded header (RFC 7239) {hook.outcome()}; expected "
                               "403: it came through a proxy")
    status = ctx.client.get("/health/ready").status_code
    expect(status == 200, f"after a refused drain, GET /health/ready answered {status}, expected 200")
