"""Helpers shared by test modules (import as ``from _util import ...``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None):
    """Run ``python -m weightspace ARGS`` in a subprocess; returns CompletedProcess."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "weightspace", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=300,
    )


def run_script(path: Path, *args: str) -> str:
    """Run ``python PATH ARGS`` in this process (``__main__``), returning what it printed.

    The interpreter is already warm, so an example costs its own work only. Torch's thread
    count (examples set one thread in quick mode) and ``sys.argv`` are restored afterwards;
    a non-zero ``SystemExit`` fails the calling test.
    """
    import contextlib
    import io
    import runpy

    import torch

    threads, argv = torch.get_num_threads(), sys.argv
    out = io.StringIO()
    sys.argv = [str(path), *args]
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(str(path), run_name="__main__")
    except SystemExit as e:
        if e.code not in (0, None):
            tail = out.getvalue()[-2000:]
            raise AssertionError(f"{path.name} exited with {e.code}: {tail}") from None
    finally:
        sys.argv = argv
        torch.set_num_threads(threads)
    return out.getvalue()
