"""Training-framework callbacks: runs that Trajectory reads, equal to the model's parameters.

Each framework's tests are skipped when it is not installed. The recorded vectors are checked
against an independent plain-PyTorch replica of the same training (float64), and against
parameters copied by a second, test-only callback at the same hooks.
"""

from __future__ import annotations

import copy
import importlib
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import weightspace as ws
from _util import REPO
from weightspace.errors import WeightspaceError

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*LeafSpec.*",
    "ignore:.*max_grad_norm.*",
)

LR, MOMENTUM = 0.1, 0.9


def digits64(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    X, y = ws.zoo.digits("train")
    return X[:n].double(), y[:n]


def small_net(seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(64, 6), torch.nn.Tanh(), torch.nn.Linear(6, 10))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return net.double()


def flat(module: torch.nn.Module) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()]).numpy().copy()


def plain_sgd(net, batches, n_steps, *, accumulate=1, momentum=MOMENTUM):
    """The same training in a plain loop: parameters after each step, and each step's loss.

    Returns ``thetas[k]`` (parameters after ``k`` optimizer steps) and ``losses[k]`` (loss of
    the last micro-batch of step ``k``, computed before its update; NaN for ``k = 0``).
    """
    net = copy.deepcopy(net)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=momentum)
    thetas, losses, i = [flat(net)], [np.nan], 0
    for _ in range(n_steps):
        opt.zero_grad()
        for _ in range(accumulate):
            x, y = batches[i % len(batches)]
            i += 1
            loss = F.cross_entropy(net(x), y)
            (loss / accumulate).backward()
        opt.step()
        thetas.append(flat(net))
        losses.append(loss.item())
    return np.array(thetas), np.array(losses)


# ---------------------------------------------------------------------------- Lightning
@pytest.fixture(scope="module")
def pl():
    try:
        return importlib.import_module("lightning.pytorch")
    except ImportError:
        return pytest.importorskip("pytorch_lightning")


def lit_module(pl, net, crash_at=None):
    class Classifier(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = copy.deepcopy(net)

        def training_step(self, batch, batch_idx):
            if crash_at is not None and self.trainer.global_step == crash_at:
                raise RuntimeError("boom")
            loss = F.cross_entropy(self.net(batch[0]), batch[1])
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=LR, momentum=MOMENTUM)

    return Classifier()


def lit_capture(pl):
    class Capture(pl.Callback):
        """Copies the parameters at the hooks the recorder uses, keyed by global step."""

        def __init__(self):
            self.thetas = {}

        def on_train_start(self, trainer, module):
            self.thetas[trainer.global_step] = flat(module)

        def on_train_batch_end(self, trainer, module, *args):
            self.thetas[trainer.global_step] = flat(module)

    return Capture()


def lit_fit(pl, module, callbacks, *, max_steps, accumulate=1, batch_size=16, n=64):
    X, y = digits64(n)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X, y), batch_size=batch_size, shuffle=False
    )
    trainer = pl.Trainer(
        max_steps=max_steps,
        accumulate_grad_batches=accumulate,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    trainer.fit(module, loader)
    return [(X[i : i + batch_size], y[i : i + batch_size]) for i in range(0, n, batch_size)]


@pytest.mark.parametrize("accumulate", [1, 2])
def test_lightning_run_equals_plain_loop_at_optimizer_steps(pl, tmp_path, accumulate):
    from weightspace.integrations.lightning import WeightspaceCallback

    net = small_net()
    steps, every = 7, 3
    cb = WeightspaceCallback(tmp_path / "run", every=every, dtype="float64", metadata={"x": 1})
    batches = lit_fit(pl, lit_module(pl, net), [cb], max_steps=steps, accumulate=accumulate)
    thetas, losses = plain_sgd(net, batches, steps, accumulate=accumulate)

    traj = ws.Trajectory.load(tmp_path / "run")
    assert traj.steps.tolist() == [0, 3, 6]
    assert traj.layout.names == ("net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias")
    for i, step in enumerate(traj.steps):
        np.testing.assert_allclose(traj.snapshot(i), thetas[step], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(traj.metrics["loss"], losses[traj.steps], rtol=1e-12)
    np.testing.assert_allclose(traj.metrics["train_loss"][1:], losses[traj.steps][1:], rtol=1e-12)
    meta = traj.metadata
    assert (meta["optimizer"], meta["lr"], meta["momentum"]) == ("sgd", LR, MOMENTUM)
    assert meta["accumulate_grad_batches"] == accumulate and meta["x"] == 1


def test_lightning_crash_leaves_recorded_steps(pl, tmp_path):
    from weightspace.integrations.lightning import WeightspaceCallback

    cb, capture = WeightspaceCallback(tmp_path / "run", every=2), lit_capture(pl)
    with pytest.raises(RuntimeError, match="boom"):
        lit_fit(pl, lit_module(pl, small_net(), crash_at=5), [cb, capture], max_steps=20)
    traj = ws.Trajectory.load(tmp_path / "run")  # closed by on_exception: no wait, no close()
    assert traj.steps.tolist() == [0, 2, 4]
    assert sorted(capture.thetas) == [0, 1, 2, 3, 4, 5]
    for i, step in enumerate(traj.steps):
        np.testing.assert_array_equal(
            traj.snapshot(i), capture.thetas[step]
        )  # float64 model: float64 snapshots


def test_lightning_only_global_zero_writes(pl, tmp_path):
    from weightspace.integrations.lightning import WeightspaceCallback

    cb = WeightspaceCallback(tmp_path / "run", every=1)
    trainer = SimpleNamespace(is_global_zero=False, global_step=0)
    module = small_net()
    cb.on_train_start(trainer, module)
    trainer.global_step = 1
    cb.on_train_batch_end(trainer, module, {"loss": torch.tensor(1.0)}, None, 0)
    cb.on_train_end(trainer, module)
    assert not (tmp_path / "run").exists()


def test_lightning_callback_validates_and_imports_lazily(pl, tmp_path):
    from weightspace.integrations import WeightspaceCallback as lazy
    from weightspace.integrations.lightning import WeightspaceCallback

    assert lazy is WeightspaceCallback and isinstance(WeightspaceCallback(tmp_path), pl.Callback)
    with pytest.raises(WeightspaceError, match="every: expected a positive integer"):
        WeightspaceCallback(tmp_path / "run", every=0)
    with pytest.raises(WeightspaceError, match="dtype: expected one of"):
        WeightspaceCallback(tmp_path / "run", dtype="int8")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- Hugging Face
HF_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, torch, torch.nn.functional as F
    from transformers import Trainer, TrainingArguments, TrainerCallback
    import weightspace as ws
    from weightspace.integrations.huggingface import WeightspaceTrainerCallback

    X, y = ws.zoo.digits("train")
    X, y = X[:32].double(), y[:32]

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return {"x": X[i], "labels": y[i]}

    class Net(torch.nn.Module):
        def __init__(self, state, crash_at):
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(64, 6), torch.nn.Tanh(), torch.nn.Linear(6, 10)
            ).double()
            self.net.load_state_dict(state)
            self.calls, self.crash_at = 0, crash_at

        def forward(self, x, labels=None):
            self.calls += 1
            if self.calls == self.crash_at:
                raise RuntimeError("boom")
            return {"loss": F.cross_entropy(self.net(x), labels)}

    class Capture(TrainerCallback):
        def __init__(self):
            self.thetas = {}

        def _copy(self, state, model):
            flat = [p.detach().reshape(-1) for p in model.parameters()]
            self.thetas[state.global_step] = torch.cat(flat).numpy().copy()

        def on_train_begin(self, args, state, control, model=None, **kw):
            self._copy(state, model)

        def on_step_end(self, args, state, control, model=None, **kw):
            self._copy(state, model)

    class CrashOnLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if state.global_step == 4:
                raise RuntimeError("boom")

    def hf_train(run_dir, out_dir, state, *, steps, every, accumulate=1, crash_at=None,
                 extra=(), **opts):
        cb, capture = WeightspaceTrainerCallback(run_dir, every=every, **opts), Capture()
        args = TrainingArguments(
            output_dir=str(out_dir), max_steps=steps, report_to=[], save_strategy="no",
            use_cpu=True, per_device_train_batch_size=32 // accumulate,
            gradient_accumulation_steps=accumulate, optim="sgd", learning_rate=0.1,
            optim_args="momentum=0.9", lr_scheduler_type="constant", max_grad_norm=0.0,
            logging_steps=2, seed=0, disable_tqdm=True, log_level="error",
        )
        model = Net(state, crash_at)
        callbacks = [cb, capture, *extra]
        Trainer(model=model, args=args, train_dataset=Rows(), callbacks=callbacks).train()
        return cb, capture

    if __name__ == "__main__":  # an uncaught exception while step 4 is logged
        run_dir, out_dir = sys.argv[1], sys.argv[2]
        init = torch.load(out_dir + "/init.pt", weights_only=True)
        hf_train(run_dir, out_dir, init, steps=20, every=2, extra=[CrashOnLog()])
    """
)


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    path = tmp_path_factory.mktemp("hf") / "hf_train.py"
    path.write_text(HF_SCRIPT)
    spec = importlib.util.spec_from_file_location("hf_train", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("accumulate", [1, 2])
def test_hf_run_equals_plain_loop_at_optimizer_steps(hf, tmp_path, accumulate):
    net = small_net()
    steps = 7
    _, capture = hf.hf_train(
        tmp_path / "run",
        tmp_path / "out",
        net.state_dict(),
        steps=steps,
        every=2,
        accumulate=accumulate,
        dtype="float64",
        metadata={"x": 1},
    )
    X, y = digits64(32)
    # full-batch steps: the Trainer's shuffling cannot change the gradient
    thetas, losses = plain_sgd(net, [(X, y)], steps)

    traj = ws.Trajectory.load(tmp_path / "run")
    assert traj.steps.tolist() == [0, 2, 4, 6]
    for i, step in enumerate(traj.steps):
        np.testing.assert_allclose(traj.snapshot(i), thetas[step], rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(traj.snapshot(i), capture.thetas[step])
    # logging_steps=2: the Trainer's loss is the mean over the two steps before each log
    s = traj.steps[1:]
    logged = (losses[s] + losses[s - 1]) / 2
    np.testing.assert_allclose(traj.metrics["loss"][1:], logged, rtol=1e-5)
    assert np.isnan(traj.metrics["loss"][0]) and "train_runtime" not in traj.metrics
    meta = traj.metadata
    assert (meta["optimizer"], meta["learning_rate"], meta["momentum"]) == ("sgd", LR, MOMENTUM)
    assert (meta["optim"], meta["seed"], meta["x"]) == ("sgd", 0, 1)
    assert meta["gradient_accumulation_steps"] == accumulate


def test_hf_crash_in_process_keeps_steps_after_close(hf, tmp_path):
    net = small_net()
    cb = hf.WeightspaceTrainerCallback(tmp_path / "run", every=2)
    capture = hf.Capture()
    args = hf.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=20,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        per_device_train_batch_size=32,
        optim="sgd",
        learning_rate=LR,
        disable_tqdm=True,
        log_level="error",
    )
    model = hf.Net(net.state_dict(), crash_at=6)  # the 6th forward: during step 6
    trainer = hf.Trainer(model=model, args=args, train_dataset=hf.Rows(), callbacks=[cb, capture])
    try:
        with pytest.raises(RuntimeError, match="boom"):
            trainer.train()
    finally:
        cb.close()
    traj = ws.Trajectory.load(tmp_path / "run")
    assert traj.steps.tolist() == [0, 2, 4]
    for i, step in enumerate(traj.steps):
        np.testing.assert_array_equal(
            traj.snapshot(i), capture.thetas[step]
        )  # float64 model: float64 snapshots


def test_hf_uncaught_crash_leaves_readable_run(hf, tmp_path):
    torch.save(small_net().state_dict(), tmp_path / "init.pt")
    script = tmp_path / "crash.py"
    script.write_text(HF_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode != 0 and "RuntimeError: boom" in proc.stderr
    traj = ws.Trajectory.load(tmp_path / "run")
    # step 4 was still waiting for its logs: written at interpreter exit, with its loss
    assert traj.steps.tolist() == [0, 2, 4] and np.isfinite(traj.metrics["loss"][1:]).all()
    np.testing.assert_array_equal(traj.snapshot(0), flat(small_net()).astype(np.float32))
    assert traj.metadata["optimizer"] == "sgd"


def test_hf_only_world_process_zero_writes(hf, tmp_path):
    cb = hf.WeightspaceTrainerCallback(tmp_path / "run", every=1)
    args = SimpleNamespace(logging_strategy="steps", logging_steps=1)
    state = SimpleNamespace(is_world_process_zero=False, global_step=0, max_steps=1)
    cb.on_train_begin(args, state, None, model=small_net())
    state.global_step = 1
    cb.on_step_end(args, state, None)
    cb.on_log(args, state, None, logs={"loss": 1.0})
    cb.on_train_end(args, state, None)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- without frameworks
@pytest.mark.parametrize(
    ("module", "hidden", "pip"),
    [
        (
            "lightning",
            ("lightning", "lightning.pytorch", "pytorch_lightning"),
            "pip install lightning",
        ),
        ("huggingface", ("transformers",), "pip install transformers accelerate"),
    ],
)
def test_import_without_framework_names_the_package(monkeypatch, module, hidden, pip):
    from weightspace.integrations import MissingFrameworkError

    for name in hidden:
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` fail
    monkeypatch.delitem(sys.modules, f"weightspace.integrations.{module}", raising=False)
    with pytest.raises(ImportError) as info:
        importlib.import_module(f"weightspace.integrations.{module}")
    err = info.value
    assert isinstance(err, MissingFrameworkError) and isinstance(err, WeightspaceError)
    assert pip in str(err) and "\n" not in str(err)


def test_import_weightspace_imports_no_framework():
    code = (
        "import sys, weightspace, weightspace.integrations; "
        "print([m for m in ('lightning', 'pytorch_lightning', 'transformers') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------- optimizer names
class Wrapped(torch.nn.Module):
    """``small_net`` under the attribute the callbacks' models use (``net``), for analyses."""

    def __init__(self):
        super().__init__()
        self.net = small_net()

    def forward(self, x):
        return self.net(x)


def momentum_threshold_and_sampling(run_dir, tmp_path, n: int) -> None:
    """The run's λ_max·lr is compared with (2+2β), and jump-and-retrain reads its settings."""
    problem = ws.Problem(Wrapped(), torch.nn.CrossEntropyLoss(), digits64(n), name="small")
    traj = ws.Trajectory.load(run_dir)
    assert traj.metadata["optimizer"] == "sgd"  # a class name (SGD) becomes the canonical one
    out = ws.curvature_along(ws.Objective(problem), traj, indices=[-1], top_k=1)
    assert out.stability_threshold == pytest.approx(2 + 2 * MOMENTUM)
    assert "heavy-ball" in out.metadata["stability_rule"]
    np.testing.assert_allclose(out.lambda_max_lr, out.eigenvalues[:, 0] * LR)
    samples = ws.jump_and_retrain(
        problem, run_dir, tmp_path / "jumps", sizes=(0.5,), seeds=(0,), retrain_steps=2
    )
    assert (samples.settings["optimizer"], samples.settings["momentum"]) == ("sgd", MOMENTUM)
    assert np.isfinite(samples.final_losses).all()


def test_lightning_momentum_run_gets_the_heavy_ball_threshold(pl, tmp_path):
    from weightspace.integrations.lightning import WeightspaceCallback

    cb = WeightspaceCallback(tmp_path / "run", every=2)
    lit_fit(pl, lit_module(pl, small_net()), [cb], max_steps=4)
    momentum_threshold_and_sampling(tmp_path / "run", tmp_path, 64)


def test_hf_momentum_run_gets_the_heavy_ball_threshold(hf, tmp_path):
    hf.hf_train(tmp_path / "run", tmp_path / "out", small_net().state_dict(), steps=4, every=2)
    momentum_threshold_and_sampling(tmp_path / "run", tmp_path, 32)
