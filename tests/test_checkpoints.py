import numpy as np
import pytest
import torch

import weightspace as ws
from weightspace.checkpoints import natural_key
from weightspace.errors import CorruptRunError, LayoutMismatchError, WeightspaceError


def bn_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(), torch.nn.Linear(8, 3)
    )


def train_and_save(tmp_path, nested=False):
    """Train a BN CNN, recording it and saving checkpoints at the same steps."""
    model = bn_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(16, 1, 4, 4, generator=g), torch.randint(0, 3, (16,), generator=g)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    with ws.Recorder(model, tmp_path / "recorded", every=5) as rec:
        for step in range(21):
            if step:
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(X), y).backward()
                opt.step()
            rec.record(step)
            if step % 5 == 0:
                state = model.state_dict()
                torch.save(
                    {"model": state, "epoch": step} if nested else state, ckpt / f"epoch_{step}.pt"
                )
    return model, ckpt


@pytest.mark.parametrize("nested", [False, True])
def test_import_reproduces_the_recorded_trajectory(tmp_path, nested):
    model, ckpt = train_and_save(tmp_path, nested)
    for with_model in (True, False):
        out = tmp_path / f"imported-{with_model}"
        ws.import_checkpoints(ckpt / "epoch_*.pt", out, model=model if with_model else None)
        rec, imp = ws.Trajectory.load(tmp_path / "recorded"), ws.Trajectory.load(out)
        assert imp.steps.tolist() == rec.steps.tolist() == [0, 5, 10, 15, 20]  # natural order
        assert imp.layout == rec.layout
        np.testing.assert_array_equal(imp.array(), rec.array())


def test_safetensors_import(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    model, ckpt = train_and_save(tmp_path)
    for i, f in enumerate(sorted(ckpt.glob("*.pt"), key=natural_key)):
        safetensors.save_file(torch.load(f, weights_only=True), str(tmp_path / f"s{i}.safetensors"))
    out = ws.import_checkpoints(
        sorted(tmp_path.glob("s*.safetensors")),
        tmp_path / "st",
        model=model,
        steps=[0, 5, 10, 15, 20],
    )
    np.testing.assert_array_equal(
        ws.Trajectory.load(out).array(), ws.Trajectory.load(tmp_path / "recorded").array()
    )


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.save(torch.nn.Linear(2, 2).state_dict(), ckpt / "a_0.pt")
    torch.save({"weight": Payload(marker)}, ckpt / "a_1.pt")  # a real torch.save file
    with pytest.raises(CorruptRunError, match=r"a_1\.pt: refused or unreadable"):
        ws.import_checkpoints(ckpt, tmp_path / "run")
    assert not marker.exists()
    assert not (tmp_path / "run").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    # the payload is real: unpickling without weights_only would have run the command
    torch.load(ckpt / "a_1.pt", weights_only=False)
    assert marker.exists()


def test_layout_mismatch_names_the_file_and_tensor(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.save(torch.nn.Linear(3, 2).state_dict(), ckpt / "c_0.pt")
    torch.save(torch.nn.Linear(4, 2).state_dict(), ckpt / "c_1.pt")
    with pytest.raises(LayoutMismatchError, match=r"c_1\.pt: tensor 'weight'"):
        ws.import_checkpoints(ckpt, tmp_path / "run")
    with pytest.raises(LayoutMismatchError, match=r"c_0\.pt: tensor 'weight'"):
        ws.import_checkpoints(ckpt, tmp_path / "run", model=torch.nn.Linear(5, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_steps_from_names_order_and_errors(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for name in ("final.pt", "best.pt"):
        torch.save(torch.nn.Linear(2, 1).state_dict(), ckpt / name)
    with pytest.raises(WeightspaceError, match="has no step number; use steps='order'"):
        ws.import_checkpoints(ckpt, tmp_path / "run")
    ws.import_checkpoints(ckpt, tmp_path / "run", steps="order")
    assert ws.Trajectory.load(tmp_path / "run").steps.tolist() == [0, 1]
    with pytest.raises(WeightspaceError, match="already exists"):
        ws.import_checkpoints(ckpt, tmp_path / "run", steps="order")
    with pytest.raises(WeightspaceError, match="matched no checkpoint file"):
        ws.import_checkpoints(str(tmp_path / "nothing_*.pt"), tmp_path / "run2")


def test_ddp_prefixed_state_dict_with_a_model(tmp_path):
    model = torch.nn.Linear(3, 2)
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "s_3.pt")
    ws.import_checkpoints(tmp_path / "s_3.pt", tmp_path / "run", model=model)
    traj = ws.Trajectory.load(tmp_path / "run")
    assert traj.steps.tolist() == [3]
    np.testing.assert_array_equal(
        traj.snapshot(0), ws.ParamLayout.from_module(model).flatten(model).numpy()
    )
