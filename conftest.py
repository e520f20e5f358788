"""Doctests (collected from ``src/weightspace`` by the test command) run in a temporary
directory, so that examples that write files leave nothing in the working tree."""

from __future__ import annotations

import pytest
from _pytest.doctest import DoctestItem


@pytest.fixture(autouse=True)
def _doctests_in_a_temporary_directory(request, tmp_path, monkeypatch):
    if isinstance(request.node, DoctestItem):
        monkeypatch.chdir(tmp_path)
