"""labsupport: the FastAPI Advanced Patterns workbook's shared package.

In a notebook:  import labsupport as lab
    lab.serve(app)            run an app on a loopback port (see serving.py)
    lab.seconds(60)           a production delay on the lab time scale
    lab.wait_until(lambda: mailbox.messages, timeout=5)   poll until something happens elsewhere
    lab.redis_url(), lab.database_url(), lab.create_engine(), lab.mailbox(), lab.smtp_address()
    lab.check("01-welcome-email")   run an exercise's checks
    lab.faults.enable()       make Redis or the database fail, hang or answer slowly (see faults.py)
"""
from . import faults
from .errors import LabError
from .exercises import check
from .logs import captured_logs
from .serving import Server, serve
from .services import (
    create_engine,
    database_url,
    mailbox,
    redis_url,
    seconds,
    smtp_address,
    time_scale,
    wait_until,
)

__all__ = [
    "LabError", "Server", "captured_logs", "check", "create_engine", "database_url", "mailbox", "redis_url",
    "seconds", "serve", "smtp_address", "time_scale", "wait_until",
]
