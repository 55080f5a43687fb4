"""Hidden checks for notebook 01: the grader and the tests run them, the notebook does not."""
from __future__ import annotations

import time

from labsupport.checks import Context, expect
from labsupport.suites.nb01_background_tasks import EMAIL_WITHIN, _lost_after, _signup, rejects_each, welcome

# more of what a fuzzer finds: every line break Python's email package knows, other control characters
ODD_NAMES = [("a carriage return", "Lin\rBcc: eve@example.com"), ("a next-line character (U+0085)", "Lin\x85X"),
             ("a line separator (U+2028)", "Lin\u2028X"), ("a paragraph separator (U+2029)", "Lin\u2029X"),
             ("a form feed", "Lin\x0cX"), ("a DEL character", "Lin\x7fX"), ("a NUL character", "Lin\x00X")]
ODD_ADDRESSES = [("a DEL character", "lin\x7f@example.com"), ("a trailing line break", "lin@example.com\n"),
                 ("a space", "lin lovelace@example.com"), ("a non-ASCII local part", "lïn@example.com")]


@welcome.check(points=1, hidden=True)
def rejects_every_name_and_address_that_breaks_a_header(ctx: Context) -> None:
    "line breaks of every kind and control characters in names and addresses get 422"
    bodies = [(f"a name with {what}", {"email": "lin@example.com", "name": name}) for what, name in ODD_NAMES]
    bodies += [(f"an address with {what}", {"email": address, "name": "Lin"}) for what, address in ODD_ADDRESSES]
    rejects_each(ctx, "/users", bodies, _lost_after)
    marker = _signup(ctx, "marker@example.com", "Marker")
    expect(marker.status_code == 201, f"POST /users answered {marker.status_code}, expected 201")
    ctx.mail.wait_for(1, timeout=EMAIL_WITHIN)
    time.sleep(0.2)
    strays = [m for m in ctx.mail.messages if "Lin" in m.subject or any(r.startswith(("lin", "lï")) for r in m.recipients)]
    expect(not strays, "a rejected signup was mailed")
