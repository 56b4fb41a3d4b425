"""The wheel carries every prompt file: a non-editable install (`pip install .`) must not fail on the first
question. Builds the wheel without dependencies into a temp folder and lists it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_every_prompt(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {f"prompts/{p.name}" for p in (ROOT / "prompts").glob("*.md")}
    assert want and want <= names, sorted(want - names)
    # The loaders find them next to the agent package, as they would in site-packages.
    assert "agent/prompts.py" in names
