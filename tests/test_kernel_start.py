"""nbval's kernels start again when one dies while starting (the root conftest.py)."""
import importlib.util
import warnings
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("root_conftest", Path(__file__).resolve().parent.parent / "conftest.py")
conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(conftest)


def test_a_kernel_that_dies_while_starting_is_started_again():
    calls = []

    def start(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            kwargs["stderr"].write(b"zmq.error.ZMQError: Address already in use")
            raise RuntimeError("Kernel died before replying to kernel_info")
        return "manager", "client"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert conftest._start_kernel_again(start)(kernel_name="python3") == ("manager", "client")
    assert len(calls) == 2 and all(call["kernel_name"] == "python3" for call in calls)
    assert "Address already in use" in str(caught[0].message)


def test_a_kernel_that_never_starts_fails_after_three_tries():
    calls = []

    def start(**kwargs):
        calls.append(kwargs)
        raise RuntimeError("Kernel died before replying to kernel_info")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="Kernel died"):
            conftest._start_kernel_again(start)()
    assert len(calls) == 3


def test_nbval_uses_it():
    import nbval.kernel

    assert getattr(nbval.kernel.start_new_kernel, "starts_again", False)
