import os

import pytest

# The notebooks in solutions/ and notebooks/ are collected by nbval (pyproject's addopts);
# everything under tests/ that looks like a notebook is data, not a test.
collect_ignore_glob = ["**/*.ipynb"]


@pytest.fixture(autouse=True)
def _lab_environment_restored():
    """No test may leave LAB_* variables behind: later tests, and the kernels nbval starts,
    would inherit services that no longer exist."""
    saved = {name: value for name, value in os.environ.items() if name.startswith("LAB_")}
    yield
    for name in [name for name in os.environ if name.startswith("LAB_")]:
        if name not in saved:
            del os.environ[name]
    os.environ.update(saved)



@pytest.fixture
def fresh_kernel_services(monkeypatch):
    """The kernel's own services as a fresh kernel has them (started on first use from the LAB_*
    environment of the test), closed after the test."""
    from labsupport import services

    monkeypatch.setattr(services, "_kernel_set", None)
    yield
    if services._kernel_set is not None:
        services._kernel_set.close()
