"""labsupport: the FastAPI Advanced Patterns workbook's shared package.

In a notebook:  import labsupport as lab
    lab.serve(app)            run an app on a loopback port (see serving.py)
    lab.seconds(60)           a production delay on the lab time scale
    lab.wait_until(lambda: mailbox.messages, timeout=5)   poll until something happens elsewhere
    lab.redis_url(), lab.database_url(), lab.create_engine(), lab.smtp_address(), lab.mailbox(),
    lab.openai_base_url(), lab.s3_endpoint(), lab.s3_bucket(), lab.webhooks_url(), lab.run_id()
    lab.lab_services()        the kernel's services themselves (inbox, fake OpenAI, S3, webhooks)
    lab.check("01-welcome-email")   run an exercise's checks
    lab.hint("01-welcome-email")    the next hint of each check that failed (see progress.py)
    lab.progress_table()      where you stand across the course (also: labsupport progress)
    lab.faults.enable()       make Redis or the database fail, hang or answer slowly (see faults.py)
"""
from . import faults
from .errors import LabError
from .exercises import check, install as _install_recording
from .logs import captured_logs
from .progress import hint, progress as progress_table
from .serving import Server, serve
from .services import (
    create_engine,
    database_url,
    lab_services,
    mailbox,
    openai_base_url,
    redis_url,
    run_id,
    s3_bucket,
    s3_endpoint,
    seconds,
    smtp_address,
    time_scale,
    wait_until,
    webhooks_url,
)

_install_recording()

__all__ = [
    "LabError", "Server", "captured_logs", "check", "create_engine", "database_url", "faults", "hint", "mailbox",
    "lab_services", "openai_base_url", "progress_table", "redis_url", "run_id", "s3_bucket", "s3_endpoint", "seconds", "serve",
    "smtp_address", "time_scale", "wait_until", "webhooks_url",
]
