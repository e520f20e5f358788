"""Progress: a tqdm bar on a terminal, a plain line per interval elsewhere, nothing when off.

The clock is a fake one that moves only when a test says so (or by one second per reading),
and the interval is patched: nothing here sleeps or measures time.
"""

from __future__ import annotations

import io
import itertools
import re

import pytest
import torch
from tqdm.auto import tqdm

import weightspace as ws
from weightspace import _progress
from weightspace._progress import progress_bar, progress_note
from weightspace.cli import main
from weightspace.testing import quadratic_problem, with_spectrum


class Clock:
    """A fake monotonic clock: ``tick`` seconds per reading (0: only ``advance`` moves it)."""

    def __init__(self, tick: float = 0.0) -> None:
        self.now, self.tick = 1000.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Stream(io.StringIO):
    """A stream that is not a terminal and notes the clock at every line written."""

    def __init__(self, clock: Clock, tty: bool = False) -> None:
        super().__init__()
        self.clock, self.tty, self.times = clock, tty, []

    def isatty(self) -> bool:
        return self.tty

    def write(self, s: str) -> int:
        self.times.extend(self.clock.now for _ in range(s.count("\n")))
        return super().write(s)

    def lines(self) -> list[str]:
        return self.getvalue().splitlines()


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(_progress, "clock", c)
    monkeypatch.setattr(_progress, "_last", [float("-inf")])
    monkeypatch.setattr(_progress, "_open", [])
    return c


def test_a_plain_line_at_most_once_per_interval(clock, monkeypatch):
    monkeypatch.setattr(_progress, "INTERVAL", 10.0)
    out = Stream(clock)
    with progress_bar(total=40, desc="spectrum", unit="point", enabled=True, file=out) as bar:
        for _ in range(40):
            clock.advance(1.0)
            bar.update()
            bar.set_postfix(loss="0.5")
    lines = out.lines()
    assert len(lines) == 5  # at 10, 20, 30 and 40 s, then the end of a loop longer than 10 s
    periodic = out.times[:-1]
    assert all(b - a >= 10.0 for a, b in itertools.pairwise(periodic))
    assert lines[0] == (
        "weightspace: spectrum 10/40 points (25%), 10s elapsed, ~30s left, loss=0.5"
    )
    assert lines[-1] == "weightspace: spectrum 40/40 points (100%), done in 40s, loss=0.5"


def test_estimates_in_minutes_and_loops_without_a_total(clock, monkeypatch):
    monkeypatch.setattr(_progress, "INTERVAL", 30.0)
    out = Stream(clock)
    bar = progress_bar(range(13), desc="spectrum", unit="point", enabled=True, file=out)
    for i in bar:
        clock.advance(130.0 / 3 if i < 3 else 1.0)
    line = out.lines()[2]
    assert line.startswith("weightspace: spectrum 3/13 points (23%), 2m10s elapsed, ~7m13s left")
    products = progress_bar(desc="eigenpairs", unit="product", enabled=True, file=out)
    clock.advance(45.0)
    products.update(7)
    products.close()
    assert out.lines()[-2:] == [
        "weightspace: eigenpairs 7 products, 45s elapsed",
        "weightspace: eigenpairs 7 products, done in 45s",
    ]


def test_quick_loops_write_nothing_and_disabled_ones_never(clock, monkeypatch, capsys):
    monkeypatch.setattr(_progress, "INTERVAL", 30.0)
    out = Stream(clock)
    for _ in progress_bar(range(100), desc="quick", unit="step", enabled=True, file=out):
        clock.advance(0.1)
    assert out.getvalue() == ""
    monkeypatch.setattr(_progress, "INTERVAL", 0.0)
    for _ in progress_bar(range(5), desc="off", unit="step", enabled=False, file=out):
        clock.advance(100.0)
    with progress_bar(total=3, desc="off", unit="step", enabled=False) as bar:
        bar.update(3)
        bar.set_postfix_str("x")
    progress_note("demo: stage 1/8 record", enabled=False)
    assert out.getvalue() == "" and capsys.readouterr().err == ""


def test_a_terminal_gets_a_tqdm_bar(clock):
    term = Stream(clock, tty=True)
    bar = progress_bar(range(3), desc="train", unit="step", enabled=True, file=term)
    assert isinstance(bar, tqdm) and not bar.disable
    assert list(bar) == [0, 1, 2] and bar.n == 3
    assert "train" in term.getvalue() and "0/3 [00:00<?, ?step/s]" in term.getvalue()
    progress_note("demo: stage 2/8 pca", enabled=True, file=term)
    assert "weightspace: demo: stage 2/8 pca\n" in term.getvalue()
    plain = Stream(clock)
    assert not isinstance(progress_bar(desc="x", unit="step", enabled=True, file=plain), tqdm)
    progress_note("demo: stage 2/8 pca", enabled=True, file=plain)
    assert plain.getvalue() == "weightspace: demo: stage 2/8 pca\n"


def test_nested_bars_share_one_limiter(clock, monkeypatch):
    """Lanczos products, SLQ probes and steps, trace probes inside a loop over points: one
    line per interval in all, each naming the open bars from the outermost in."""
    monkeypatch.setattr(_progress, "INTERVAL", 25.0)
    clock.tick = 1.0  # every reading of the clock is a second later
    out = Stream(clock)
    A = with_spectrum(torch.linspace(-1.0, 5.0, 40), seed=3)
    monkeypatch.setattr("sys.stderr", out)
    with progress_bar(total=2, desc="curvature", unit="point", enabled=True) as points:
        for _ in range(2):
            ws.top_eigenpairs(A, k=2, max_basis=12, progress=True)
            ws.spectral_density(A, n_probes=3, n_steps=10, probes_per_pass=1, progress=True)
            ws.hutchinson_trace(A, n_probes=20, progress=True)
            points.update()
    lines = out.lines()
    assert len(lines) >= 4
    periodic = out.times[:-1]  # then the end of the outer loop
    assert all(b - a >= 25.0 for a, b in itertools.pairwise(periodic))
    assert all(line.startswith("weightspace: curvature ") for line in lines)
    inner = "\n".join(lines)
    for name in ("; eigenpairs ", "; slq ", "; trace "):
        assert name in inner, name
    assert re.search(r"; slq \d/3 probes [^;]*; lanczos \d+/10 steps", inner)
    assert lines[-1].startswith("weightspace: curvature 2/2 points (100%), done in ")


def test_curvature_at_points_reports_its_inner_loops(clock, monkeypatch):
    monkeypatch.setattr(_progress, "INTERVAL", 0.0)  # every update writes a line
    problem, _, _ = quadratic_problem(with_spectrum(torch.linspace(0.5, 4.0, 8), seed=1))
    obj = ws.Objective(problem)
    out = Stream(clock)
    monkeypatch.setattr("sys.stderr", out)
    points = [(0, obj.theta0), (1, obj.theta0)]
    ws.curvature_at(
        obj, points, top_k=2, trace_probes=3, density=True, n_probes=2, n_steps=4, progress=True
    )
    lines = out.lines()
    for inner in ("eigenpairs", "trace", "slq", "lanczos"):
        assert any(f"; {inner} " in line for line in lines), inner
    assert all(line.startswith("weightspace: curvature ") for line in lines)
    assert lines[-1].startswith("weightspace: curvature 2/2 points (100%), done in")


@pytest.mark.parametrize("flag", [[], ["--no-progress"]])
def test_the_command_line_reports_when_stderr_is_not_a_terminal(
    flag, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(_progress, "INTERVAL", 0.0)
    monkeypatch.setattr(_progress, "_last", [float("-inf")])
    monkeypatch.setattr(_progress, "_open", [])
    argv = ["record", "--problem", "digits-mlp", "--steps", "30", "--every", "10"]
    assert main([*argv, "-o", str(tmp_path / "run"), *flag]) == 0
    err = capsys.readouterr().err.splitlines()
    if flag:
        assert err == []
    else:
        assert len(err) >= 30 and all(line.startswith("weightspace: train run ") for line in err)
        assert any(re.search(r" 15/30 steps \(50%\), \d+s elapsed, ~\d+s left", e) for e in err)
