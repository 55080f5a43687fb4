#!/usr/bin/env python3
"""The workbook's two entry points, for a machine that has only Python 3.11+.

    python3 workbook.py lab     install what is missing, then open JupyterLab on notebooks/
    python3 workbook.py test    install what is missing, then run the whole test suite

Everything goes into .venv/ beside this file, from requirements.lock (exact versions, hashes);
run with another Python version than the one .venv/ was made with, it goes into .venv-X.Y/
instead, so that one checkout can be tested on several Pythons. Extra arguments after `test` go
to pytest; after `lab`, to JupyterLab.
"""
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _venv_for_this_python() -> Path:
    default = ROOT / ".venv"
    config = default / "pyvenv.cfg"
    if not config.exists():
        return default
    made_with = next((line.split("=", 1)[1].strip() for line in config.read_text().splitlines()
                      if line.startswith("version")), "")
    this = f"{sys.version_info.major}.{sys.version_info.minor}"
    return default if made_with.startswith(this + ".") or made_with == this else ROOT / f".venv-{this}"


VENV = _venv_for_this_python()
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / "installed-lock.sha256"


def lock_digest() -> str:
    digest = hashlib.sha256()
    for name in ("requirements.lock", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_installed() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"The workbook needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    wanted = lock_digest()
    if STAMP.exists() and STAMP.read_text() == wanted and PYTHON.exists():
        return
    if not PYTHON.exists():
        print("Creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("Installing the locked packages into .venv (the first time takes a few minutes) ...", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["--require-hashes", "-r", str(ROOT / "requirements.lock")], check=True)
    subprocess.run(pip + ["--no-deps", "-e", str(ROOT)], check=True)
    STAMP.write_text(wanted)


def main() -> None:
    command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if command not in ("lab", "test"):
        sys.exit(__doc__)
    ensure_installed()
    os.chdir(ROOT)
    if command == "lab":
        argv = [str(PYTHON), "-m", "jupyter", "lab", str(ROOT / "notebooks"), *args]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            argv.append("--allow-root")  # containers and CI machines often run as root
    else:
        argv = [str(PYTHON), "-m", "pytest", *args]
    if os.name == "nt":
        sys.exit(subprocess.call(argv))
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
