"""The check cell's one call: lab.check("01-welcome-email") judges the learner's app over the wire."""
from __future__ import annotations

import sys

from . import services, suites
from .checks import _ADDRESS, Context, Results, check_client, summarize_errors
from .errors import LabError
from .serving import serve


def check(exercise_id: str, app=None) -> Results:
    """Serve the exercise's app (by default the variable the suite names, from the notebook) and
    run its visible checks. Never raises for a broken app: every problem is a failed check."""
    suite = suites.get(exercise_id)
    if app is None:
        app = sys._getframe(1).f_globals.get(suite.app_name)
    if app is None:
        return suite.fail_all(
            f"`{suite.app_name}` is not defined: run the exercise cell above (it may have stopped with an error)"
        )
    try:
        server = serve(app, name=exercise_id)
    except LabError as error:
        return suite.fail_all(_ADDRESS.sub("<app>", str(error)))
    mailbox = None if services.using_real_smtp() else services.mailbox()
    try:
        with check_client(server.url) as client:
            results = suite.run(Context(url=server.url, client=client, mailbox=mailbox))
    finally:
        server.stop()
    if not results.passed:
        results.app_errors = summarize_errors(server.errors)
    return results
