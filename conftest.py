"""Test-run settings that cover the notebooks in solutions/ and notebooks/ as well as tests/."""


def pytest_xdist_make_scheduler(config, log):
    """Spread tests over xdist's workers one by one, except a notebook's cells: they run in order in
    one kernel, so a notebook goes to one worker whole."""
    from xdist.scheduler import LoadScopeScheduling

    class NotebooksWhole(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path.endswith(".ipynb") else nodeid

    return NotebooksWhole(config, log)
