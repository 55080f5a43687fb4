import os

# The test suite's notebooks/ and solutions/ are collected by nbval (see pytest.ini options);
# everything under tests/ that looks like a notebook is data, not a test.
collect_ignore_glob = ["**/*.ipynb"]
