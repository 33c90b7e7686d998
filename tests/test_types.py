"""The package type-checks (mypy, as `make lint` runs it): ticket.json is read through `TicketInfo`, so a key
misspelt or a summary used as the wrong type fails here, not in a report a day later."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def test_the_package_type_checks():
    pytest.importorskip("mypy")
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Success: no issues found" in done.stdout
