"""Test-run settings that cover the notebooks in solutions/ and notebooks/ as well as tests/."""

# tests that share one costly module-scoped run go to one worker, so that it runs once
SHARED_RUN = {"tests/test_grading.py": "tiny_run"}
# ... except these, which do not use it
NOT_SHARING = ("test_real_notebooks_grade_from_the_command_line", "test_the_installed_command_runs")


def pytest_xdist_make_scheduler(config, log):
    """Spread tests over xdist's workers one by one, except a notebook's cells (they run in order in
    one kernel, so a notebook goes to one worker whole) and the tests of SHARED_RUN."""
    from xdist.scheduler import LoadScopeScheduling

    class NotebooksWhole(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path, _, test = nodeid.partition("::")
            if path.endswith(".ipynb"):
                return path
            if path in SHARED_RUN and not test.startswith(NOT_SHARING):
                return f"{path}::{SHARED_RUN[path]}"
            return nodeid

    return NotebooksWhole(config, log)


def pytest_configure(config):
    """nbval's kernels start again when one dies before it answers (see _start_kernel_again)."""
    try:
        import nbval.kernel
    except ImportError:
        return
    if not getattr(nbval.kernel.start_new_kernel, "starts_again", False):
        nbval.kernel.start_new_kernel = _start_kernel_again(nbval.kernel.start_new_kernel)


def _start_kernel_again(start, attempts: int = 3):
    """jupyter_client gives a new kernel ports it found free a moment before; on a machine busy with
    loopback connections another process can take one first, and the kernel dies at startup ("Kernel
    died before replying to kernel_info"). No cell has run then, so the kernel is started again; what
    the dead one wrote on stderr is shown as a warning."""
    import tempfile
    import warnings

    def start_again(*args, **kwargs):
        for attempt in range(1, attempts + 1):
            with tempfile.TemporaryFile() as stderr:
                kwargs["stderr"] = stderr
                try:
                    return start(*args, **kwargs)
                except RuntimeError:
                    stderr.seek(0)
                    said = stderr.read()[-1500:].decode(errors="replace")
                    if attempt == attempts:
                        raise
                    warnings.warn(f"a notebook's kernel died while starting (try {attempt}), started again; "
                                  f"it said: {said}")

    start_again.starts_again = True
    return start_again
