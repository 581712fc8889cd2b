"""The deterministic core stays type-checked and lint-clean: `mypy --strict` and `ruff` over consensus/ and
contracts/ (issue #2 acceptance). Runs the tools as the developer would, from the repository root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ["consensus", "contracts"]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_mypy_strict_on_the_core() -> None:
    r = _run([sys.executable, "-m", "mypy", "--strict", *CORE])
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_on_the_core() -> None:
    r = _run([sys.executable, "-m", "ruff", "check", *CORE])
    assert r.returncode == 0, r.stdout + r.stderr
