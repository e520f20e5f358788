"""Shared fixtures: small models and recorded runs built in temporary directories."""

from __future__ import annotations

import os

import pytest
import torch

import weightspace as ws

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one intra-op thread each, so that the
    # workers do not oversubscribe the cores (torch's threads spin while they wait); the
    # commands called in process use the same one thread, so that their numbers equal the
    # library's bit for bit (reductions over other thread counts round differently)
    torch.set_num_threads(1)
    os.environ.setdefault("WEIGHTSPACE_THREADS", "1")


@pytest.fixture
def tiny_model() -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model


@pytest.fixture
def recorded_run(tmp_path, tiny_model):
    """A run of 6 snapshots of ``tiny_model`` moved by known steps; returns (path, thetas)."""
    thetas = []
    layout = ws.ParamLayout.from_module(tiny_model)
    with ws.Recorder(tiny_model, tmp_path / "run", every=1, metadata={"lr": 0.1}) as rec:
        for step in range(6):
            with torch.no_grad():
                for p in tiny_model.parameters():
                    p.add_(0.01 * (step + 1))
            thetas.append(layout.flatten(tiny_model).clone())
            rec.record(step, loss=1.0 / (step + 1))
    return tmp_path / "run", torch.stack(thetas)
