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
