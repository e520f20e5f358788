"""The intra-op thread choice: the rule, the cgroup quota, the CLI flag and what is recorded."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import weightspace as ws
from weightspace import _threads
from weightspace._threads import cgroup_cpu_limit, choose_threads, parse_threads
from weightspace.cli import main

REPO = Path(__file__).resolve().parents[1]
OUR_ENV = ("WEIGHTSPACE_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME")


@pytest.fixture(autouse=True)
def clean_state(monkeypatch):
    """No thread choice in force and torch's count restored around each test."""
    for name in OUR_ENV[:2]:
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    saved = list(_threads._active)
    _threads._active.clear()
    yield
    _threads._active[:] = saved
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------ the rule
@pytest.mark.parametrize(
    ("affinity", "quota", "load", "machine", "count"),
    [
        (2, None, 0.0, None, 2),  # idle: every CPU
        (2, None, 0.3, None, 2),  # 1.7 free rounds to 2
        (2, None, 1.0, None, 1),
        (2, None, 10.0, None, 1),  # overloaded: never below 1
        (8, 2.5, 0.0, None, 2),  # the quota binds: floor(2.5)
        (8, 0.5, 0.0, None, 1),  # half a CPU is still one thread
        (4, 16.0, 1.0, None, 3),  # a quota above the affinity does not bind
        (4, None, 16.0, 64, 3),  # our 4 of 64 CPUs carry 16 * 4/64 = 1: 3 free
        (4, None, None, None, 4),  # load unknown: every usable CPU
    ],
)
def test_choice_from_cpus_quota_and_load(affinity, quota, load, machine, count):
    choice = choose_threads(affinity, quota, load, machine_cpus=machine)
    assert choice.count == count
    assert choice.cpus == (affinity if quota is None else min(affinity, max(1, int(quota))))
    assert choice.reason.startswith(f"{count} of {choice.cpus} CPUs")
    assert (
        (f"load {load:.1f}" in choice.reason) if load is not None else "load" not in choice.reason
    )
    assert ("no cgroup quota" in choice.reason) == (quota is None)


def test_the_load_seen_is_the_lower_of_the_average_and_the_tasks_runnable_now(tmp_path):
    from weightspace._threads import effective_load, runnable_others

    # a command run right after another: the average still holds the first run's work
    assert effective_load(1.3, 0.0) == 0.0
    assert choose_threads(2, None, effective_load(1.3, 0.0)).count == 2
    # two busy processes: both measures see them
    assert effective_load(2.2, 2.0) == 2.0
    assert choose_threads(2, None, effective_load(2.2, 2.0)).count == 1
    assert effective_load(None, 1.0) == 1.0 and effective_load(0.5, None) == 0.5
    assert effective_load(None, None) is None
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("1.52 0.98 0.77 3/412 12345\n")  # 3 runnable, this process one of them
    assert runnable_others(str(loadavg)) == 2.0
    loadavg.write_text("garbage\n")
    assert runnable_others(str(loadavg)) is None
    assert runnable_others(str(tmp_path / "absent")) is None


def test_override_wins_and_zero_keeps_torch_default():
    assert choose_threads(2, 1.0, 10.0, override=6).count == 6  # the user knows best
    assert choose_threads(2, 1.0, 10.0, override=6, source="--threads").reason == "--threads 6"
    zero = choose_threads(2, None, 0.0, override=0)
    assert zero.count is None and "torch's default" in zero.reason
    assert zero.to_dict()["count"] == torch.get_num_threads()  # recorded as torch's count
    with pytest.raises(ws.WeightspaceError, match=r"^--threads: expected a thread count >= 0"):
        choose_threads(2, None, 0.0, override=-1, source="--threads")


def test_parse_threads():
    assert [parse_threads(v) for v in (None, "auto", " 3 ", "0", 5)] == [None, None, 3, 0, 5]
    with pytest.raises(ws.WeightspaceError, match="WEIGHTSPACE_THREADS: expected a thread"):
        parse_threads("many", "WEIGHTSPACE_THREADS")


# ---------------------------------------------------------------------------- cgroups
def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_of_own_group_and_ancestors(tmp_path):
    root, me = tmp_path / "cg", tmp_path / "self"
    write(me, "0::/jobs/job1\n")
    assert cgroup_cpu_limit(root, me) is None  # no files: no quota
    write(root / "cpu.max", "max 100000\n")
    write(root / "jobs" / "job1" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(root, me) is None  # "max": unlimited
    write(root / "jobs" / "job1" / "cpu.max", "150000 100000\n")
    assert cgroup_cpu_limit(root, me) == 1.5
    write(root / "jobs" / "cpu.max", "50000 100000\n")  # a parent's smaller quota binds
    assert cgroup_cpu_limit(root, me) == 0.5
    write(root / "jobs" / "cpu.max", "garbage\n")  # unreadable: no quota from that file
    assert cgroup_cpu_limit(root, me) == 1.5


def test_cgroup_v1_quota(tmp_path):
    root, me = tmp_path / "cg", tmp_path / "self"
    write(me, "5:memory:/x\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    cpu = root / "cpu,cpuacct" / "docker" / "abc"
    write(cpu / "cpu.cfs_quota_us", "-1\n")
    write(cpu / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(root, me) is None  # -1: unlimited
    write(cpu / "cpu.cfs_quota_us", "300000\n")
    assert cgroup_cpu_limit(root, me) == 3.0
    # a container sees its own group at the hierarchy's root
    write(me, "4:cpu,cpuacct:/\n")
    write(root / "cpu" / "cpu.cfs_quota_us", "200000\n")
    write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(root, me) == 2.0
    assert cgroup_cpu_limit(root, tmp_path / "missing") == 2.0  # no membership file: the root


# ---------------------------------------------------------------------- what is recorded
def test_library_threads_are_left_alone_unless_set(tmp_path, tiny_model):
    torch.set_num_threads(2)
    with ws.Recorder(tiny_model, tmp_path / "plain", every=1) as rec:
        rec.record(0, loss=1.0)
    header = json.loads((tmp_path / "plain" / "run.json").read_text())
    assert "threads" not in header["recorder"] and torch.get_num_threads() == 2
    choice = ws.set_threads(1)
    assert choice.count == 1 and torch.get_num_threads() == 1
    with ws.Recorder(tiny_model, tmp_path / "set", every=1) as rec:
        rec.record(0, loss=1.0)
    header = json.loads((tmp_path / "set" / "run.json").read_text())
    assert header["recorder"]["threads"]["count"] == 1
    assert header["recorder"]["threads"]["reason"] == "threads 1"


def test_cli_threads_flag_is_recorded_and_restored(tmp_path, capsys):
    torch.set_num_threads(2)
    run, line = tmp_path / "run", tmp_path / "line"
    assert main(["record", "--problem", "digits-mlp", "--steps", "4", "--every", "2",
                 "-o", str(run), "--threads", "1", "--no-progress"]) == 0  # fmt: skip
    assert main(["line", "--problem", "digits-mlp", str(run), "--points", "3",
                 "-o", str(line), "--threads", "1", "--no-progress"]) == 0  # fmt: skip
    recorded = json.loads((run / "run.json").read_text())["recorder"]["threads"]
    assert recorded["count"] == 1 and recorded["reason"] == "--threads 1"
    threads = ws.load(line, "line").metadata["threads"]
    assert threads["count"] == 1 and threads["reason"] == "--threads 1"
    assert threads["cpus"] >= 1
    # the caller's torch is as it was, and nothing is recorded any more
    assert torch.get_num_threads() == 2 and _threads.current_threads() is None


def test_cli_threads_from_the_environment_and_bad_values(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WEIGHTSPACE_THREADS", "1")
    line = tmp_path / "line"
    run = tmp_path / "run"
    assert main(["record", "--problem", "digits-mlp", "--steps", "2", "--every", "2",
                 "-o", str(run), "--no-progress"]) == 0  # fmt: skip
    recorded = json.loads((run / "run.json").read_text())["recorder"]["threads"]
    assert recorded["count"] == 1 and recorded["reason"] == "WEIGHTSPACE_THREADS 1"
    assert main(["line", "--problem", "digits-mlp", str(run), "-o", str(line),
                 "--threads", "many"]) == 1  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "weightspace line: error: --threads: expected a thread count (0: torch's default, "
        "or 'auto'), got 'many'"
    ]


SPY = """
import json, os, sys
seen = {}
class Spy:  # the environment at the moment torch is first imported
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            names = ("WEIGHTSPACE_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME")
            seen.update({k: os.environ.get(k) for k in names})
sys.meta_path.insert(0, Spy())
from weightspace.cli import main
assert "torch" not in sys.modules
code = main(["info", sys.argv[1], "--json", *sys.argv[2:]])
import torch
print(json.dumps({"code": code, "seen": seen, "threads": torch.get_num_threads()}))
"""


@pytest.mark.parametrize("flag", ["1", "0"])
def test_openmp_told_not_to_spin_before_torch_starts(tmp_path, recorded_run, flag):
    """In a fresh interpreter the CLI sets the wait policy and count before torch starts;
    ``--threads 0`` leaves torch's defaults (spinning included)."""
    env = {k: v for k, v in os.environ.items() if k not in OUR_ENV}
    env["PYTHONPATH"] = str(REPO / "src")
    proc = subprocess.run(
        [sys.executable, "-c", SPY, str(recorded_run[0]), "--threads", flag],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["code"] == 0
    if flag == "1":
        assert out["seen"] == {
            "WEIGHTSPACE_THREADS": None,
            "OMP_NUM_THREADS": "1",
            "OMP_WAIT_POLICY": "PASSIVE",
            "KMP_BLOCKTIME": "0",
        }
        assert out["threads"] == 1
    else:
        assert set(out["seen"].values()) == {None}
