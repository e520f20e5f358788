"""Checkpoints in every form users have, made here from real small models, imported, and
compared bit for bit with the same weights recorded by ``weightspace.Recorder``."""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import weightspace as ws
from weightspace.cli import main
from weightspace.errors import CorruptRunError, LayoutMismatchError, WeightspaceError

TORCH_2_6 = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 6)

PROBLEM = """
import torch
import weightspace as ws


def make():
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(), torch.nn.Linear(4, 2)
    )
    return ws.Problem(net, torch.nn.functional.cross_entropy, (torch.randn(8, 3), torch.zeros(8)))


def gpt2():
    import transformers

    config = transformers.GPT2Config(
        n_layer=1, n_head=2, n_embd=8, vocab_size=17, n_positions=16, bos_token_id=0,
        eos_token_id=0,
    )
    return ws.Problem(transformers.GPT2LMHeadModel(config), lambda out, y: out.loss, ([], []))
"""


def bn_net(width: int = 4) -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(3, width), torch.nn.BatchNorm1d(width), torch.nn.ReLU(),
        torch.nn.Linear(width, 2),
    )  # fmt: skip


def clone(state):
    return {k: v.detach().clone() for k, v in state.items()}


def train(model, path, steps=3, loss=None):
    """SGD with momentum for ``steps - 1`` updates, recorded at every step by a Recorder;
    returns the recorded trajectory and the state dict at each step."""
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(8, 3, generator=g), torch.randint(0, 2, (8,), generator=g)
    loss = loss or (lambda m: F.cross_entropy(m(X), y))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    states = []
    with ws.Recorder(model, path, every=1) as rec:
        for step in range(steps):
            if step:
                opt.zero_grad()
                loss(model).backward()
                opt.step()
            rec.record(step)
            states.append(clone(model.state_dict()))
    return ws.Trajectory.load(path), states


def assert_same_run(run, reference):
    """The imported run holds exactly the reference's layout, steps, parameters, buffers."""
    imp = ws.Trajectory.load(run)
    assert imp.layout == reference.layout
    assert imp.steps.tolist() == reference.steps.tolist()
    np.testing.assert_array_equal(imp.array(), reference.array())
    assert imp.buffer_layout == reference.buffer_layout
    for i in range(len(reference) if len(reference.buffer_layout) else 0):
        np.testing.assert_array_equal(imp.buffer_array(i), reference.buffer_array(i))


def prefixed(state, prefix):
    return {prefix + k: v for k, v in state.items()}


# ---------------------------------------------------------------- torch.save nestings, wrappers
FORMS = {
    "plain": lambda sd: sd,
    "model": lambda sd: {"model": sd, "epoch": 1},
    "state_dict": lambda sd: {"state_dict": sd, "optimizer": {"state": {}, "lr": 0.1}},
    "model_state_dict": lambda sd: {"model_state_dict": sd, "loss": 0.5},
    "module": lambda sd: {"module": sd, "global_steps": 3},
    "ema": lambda sd: {"ema": sd, "step": 3},
    "nested twice": lambda sd: {"model": {"state_dict": sd, "config": {"width": 4}}, "step": 3},
    "ddp": lambda sd: prefixed(sd, "module."),
    "compile": lambda sd: prefixed(sd, "_orig_mod."),
    "ddp of compiled": lambda sd: prefixed(sd, "module._orig_mod."),
    "compiled ddp": lambda sd: prefixed(sd, "_orig_mod.module."),
    "ddp, nested": lambda sd: {"state_dict": prefixed(sd, "module."), "epoch": 2},
}


@pytest.fixture(scope="module")
def bn_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bn")
    return train(bn_net(), root / "recorded")


@pytest.mark.parametrize("form", list(FORMS))
def test_torch_save_forms_import_as_recorded(tmp_path, bn_run, form):
    reference, states = bn_run
    for step, sd in enumerate(states):
        torch.save(FORMS[form](sd), tmp_path / f"epoch_{step}.pt")
    ws.import_checkpoints(tmp_path, tmp_path / "with-model", model=bn_net())
    assert_same_run(tmp_path / "with-model", reference)
    ws.import_checkpoints(tmp_path / "epoch_*.pt", tmp_path / "without-model")
    assert_same_run(tmp_path / "without-model", reference)  # wrappers dropped from the names


def test_the_wrapper_prefixes_are_what_torch_writes():
    net = bn_net()
    assert list(torch.compile(net).state_dict()) == list(prefixed(net.state_dict(), "_orig_mod."))


def test_a_model_under_several_prefixes_is_refused_in_one_line(tmp_path, bn_run):
    reference, states = bn_run
    torch.save({**prefixed(states[2], "net."), **prefixed(states[0], "ema.")}, tmp_path / "s_2.pt")
    with pytest.raises(LayoutMismatchError) as e:
        ws.import_checkpoints(tmp_path, tmp_path / "run", model=bn_net())
    assert "several prefixes ('net.', 'ema.'); pass prefix=" in str(e.value)
    assert "\n" not in str(e.value) and "s_2.pt" in str(e.value)
    ws.import_checkpoints(tmp_path, tmp_path / "run", model=bn_net(), prefix="net.")
    np.testing.assert_array_equal(
        ws.Trajectory.load(tmp_path / "run").array(), reference.array()[2:]
    )


def test_frozen_parameters_are_not_imported(tmp_path):
    model = bn_net()
    model[0].requires_grad_(False)
    reference, states = train(model, tmp_path / "recorded")
    assert "0.weight" not in reference.layout.names
    for step, sd in enumerate(states):
        torch.save(sd, tmp_path / f"all_{step}.pt")  # frozen tensors included
        trainable = {k: v for k, v in sd.items() if not k.startswith("0.")}
        torch.save({"model": trainable}, tmp_path / f"trainable_{step}.pt")
    frozen = bn_net()
    frozen[0].requires_grad_(False)
    for which in ("all", "trainable"):
        ws.import_checkpoints(tmp_path / f"{which}_*.pt", tmp_path / which, model=frozen)
        assert_same_run(tmp_path / which, reference)


# ---------------------------------------------------------------- Lightning
@pytest.fixture(scope="module")
def lightning_ckpts(tmp_path_factory):
    """A real Trainer's checkpoints of a LightningModule wrapping a net as ``self.net``, and
    the net's weights captured by a callback at the steps they were saved."""
    pl = pytest.importorskip("lightning.pytorch")
    root = tmp_path_factory.mktemp("lightning")

    class Lit(pl.LightningModule):
        def __init__(self, lr: float = 0.1):
            super().__init__()
            self.save_hyperparameters()
            self.net = bn_net()

        def training_step(self, batch, _):
            return F.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)

    class Capture(pl.Callback):
        def __init__(self):
            self.states = {}

        def on_train_batch_end(self, trainer, module, *_):
            self.states[trainer.global_step] = clone(module.net.state_dict())

    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(
        torch.randn(32, 3, generator=g), torch.randint(0, 2, (32,), generator=g)
    )
    capture = Capture()
    from weightspace.integrations.lightning import WeightspaceCallback

    recorder = WeightspaceCallback(root / "callback", every=1)
    checkpoints = pl.callbacks.ModelCheckpoint(
        dirpath=root / "ckpt", every_n_train_steps=1, save_top_k=-1
    )
    trainer = pl.Trainer(
        max_steps=3, callbacks=[capture, recorder, checkpoints], accelerator="cpu", logger=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(Lit(), torch.utils.data.DataLoader(data, batch_size=8))
    net = bn_net()
    with ws.Recorder(net, root / "captured", every=1) as rec:
        for step, state in sorted(capture.states.items()):
            net.load_state_dict(state)
            rec.record(step)
    return root / "ckpt", ws.Trajectory.load(root / "captured")


def test_lightning_checkpoints_import_as_captured(tmp_path, lightning_ckpts):
    ckpt, reference = lightning_ckpts
    names = sorted(p.name for p in ckpt.iterdir())
    assert names == ["epoch=0-step=1.ckpt", "epoch=0-step=2.ckpt", "epoch=0-step=3.ckpt"]
    full = torch.load(ckpt / names[0], weights_only=True)
    assert {"optimizer_states", "loops", "callbacks", "hyper_parameters"} <= set(full)
    assert "net.0.weight" in full["state_dict"]
    ws.import_checkpoints(ckpt, tmp_path / "run", model=bn_net())
    assert reference.steps.tolist() == [1, 2, 3]
    assert_same_run(tmp_path / "run", reference)


def test_lightning_checkpoints_import_as_weightspace_callback_recorded(tmp_path, lightning_ckpts):
    """The .ckpt files Lightning saved and weightspace's own callback on the same Trainer
    give the same points: the callback records the LightningModule (names ``net.*``), the
    import matches the checkpoints' ``net.`` prefix against the bare net."""
    ckpt, _ = lightning_ckpts
    recorded = ws.Trajectory.load(ckpt.parent / "callback")
    assert recorded.steps.tolist() == [0, 1, 2, 3]
    assert recorded.layout.names == tuple("net." + n for n in bn_net_layout_names())
    imported = ws.Trajectory.load(ws.import_checkpoints(ckpt, tmp_path / "run", model=bn_net()))
    for i, step in enumerate(imported.steps.tolist()):
        j = recorded.steps.tolist().index(step)
        np.testing.assert_array_equal(imported.array()[i], recorded.array()[j])
        np.testing.assert_array_equal(imported.buffer_array(i), recorded.buffer_array(j))


def bn_net_layout_names() -> tuple[str, ...]:
    return tuple(ws.ParamLayout.from_module(bn_net()).names)


def test_lightning_import_through_the_cli(tmp_path, lightning_ckpts, capsys):
    ckpt, reference = lightning_ckpts
    (tmp_path / "problem.py").write_text(PROBLEM)
    args = ["import", str(ckpt), "-o", str(tmp_path / "run"), "--json"]
    assert main([*args, "--problem", f"{tmp_path / 'problem.py'}:make"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["steps"] == [1, 2, 3]
    assert_same_run(tmp_path / "run", reference)


def test_a_wrong_model_is_named_in_one_line(tmp_path, lightning_ckpts):
    ckpt, _ = lightning_ckpts
    wider = bn_net(width=5)
    with pytest.raises(LayoutMismatchError) as e:
        ws.import_checkpoints(ckpt, tmp_path / "run", model=wider)
    assert (
        "epoch=0-step=1.ckpt: tensor '0.weight' (as 'net.0.weight') has shape (4, 3), "
        "the model (5, 3); pass the model the checkpoints were saved from"
    ) in str(e.value)
    deeper = torch.nn.Sequential(*bn_net(), torch.nn.Linear(2, 2))
    with pytest.raises(LayoutMismatchError) as f:
        ws.import_checkpoints(ckpt, tmp_path / "run", model=deeper)
    assert "tensor '4.weight' is missing (looked for 'net.4.weight')" in str(f.value)
    assert "\n" not in str(e.value) + str(f.value)
    assert not (tmp_path / "run").exists()


def lightning_like(path, hyper_parameters):
    net = bn_net()
    torch.save(
        {"state_dict": prefixed(net.state_dict(), "model."), "hyper_parameters": hyper_parameters,
         "global_step": 7, "optimizer_states": [], "callbacks": {}},
        path,
    )  # fmt: skip
    return net


@pytest.mark.skipif(not TORCH_2_6, reason="allow-listing stand-ins needs torch >= 2.6")
def test_lightning_hyper_parameter_containers_load_without_their_classes(tmp_path):
    import argparse

    AttributeDict = pytest.importorskip("lightning.fabric.utilities.data").AttributeDict

    hp = AttributeDict(lr=0.1, sub=AttributeDict(width=4), args=argparse.Namespace(seed=0))
    net = lightning_like(tmp_path / "epoch=0-step=7.ckpt", hp)
    ws.import_checkpoints(tmp_path, tmp_path / "run", model=bn_net())
    np.testing.assert_array_equal(
        ws.Trajectory.load(tmp_path / "run").snapshot(0),
        ws.ParamLayout.from_module(net).flatten(net).numpy(),
    )


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_code_in_lightning_hyper_parameters_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "ckpt").mkdir()
    lightning_like(tmp_path / "ckpt" / "epoch=0-step=7.ckpt", {"lr": Payload(marker)})
    refused = r"step=7\.ckpt: refused or unreadable \(it holds a (posix|os|nt)\.system object\)"
    with pytest.raises(CorruptRunError, match=refused):
        ws.import_checkpoints(tmp_path / "ckpt", tmp_path / "run", model=bn_net())
    assert not marker.exists() and not (tmp_path / "run").exists()


# ---------------------------------------------------------------- Hugging Face folders
def gpt2():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=1, n_head=2, n_embd=8, vocab_size=17, n_positions=16, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def save_bin_shards(state, folder, n=2):
    """The sharded ``pytorch_model.bin`` layout (transformers >= 5 saves only safetensors)."""
    folder.mkdir(parents=True)
    names, weight_map = list(state), {}
    for i in range(n):
        shard = f"pytorch_model-{i + 1:05d}-of-{n:05d}.bin"
        part = {k: state[k] for k in names[i::n]}
        torch.save(part, folder / shard)
        weight_map.update(dict.fromkeys(part, shard))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory):
    """A tiny GPT-2 trained 2 steps; every step saved as a Trainer would (``checkpoint-N/``)
    with save_pretrained (sharded safetensors), as pytorch_model.bin and as sharded .bin."""
    root = tmp_path_factory.mktemp("hf")
    model = gpt2()
    ids = torch.randint(0, 17, (2, 8), generator=torch.Generator().manual_seed(0))
    reference, states = train(model, root / "recorded", loss=lambda m: m(ids, labels=ids).loss)
    for step, sd in enumerate(states):
        model.load_state_dict(sd)
        model.save_pretrained(root / "st" / f"checkpoint-{step}", max_shard_size="1KB")
        (root / "bin" / f"checkpoint-{step}").mkdir(parents=True)
        torch.save(model.state_dict(), root / "bin" / f"checkpoint-{step}" / "pytorch_model.bin")
        save_bin_shards(model.state_dict(), root / "binshards" / f"checkpoint-{step}")
    return root, reference


@pytest.mark.parametrize("form", ["st", "bin", "binshards"])
def test_hugging_face_folders_import_as_recorded(tmp_path, hf_run, form):
    root, reference = hf_run
    folder = root / form / "checkpoint-1"
    if form == "st":
        shards = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
        assert len(set(shards.values())) > 1 and "lm_head.weight" not in shards  # tied: once
    ws.import_checkpoints(root / form, tmp_path / "parent", model=gpt2())  # folder of folders
    assert_same_run(tmp_path / "parent", reference)
    ws.import_checkpoints(str(root / form / "checkpoint-*"), tmp_path / "glob", model=gpt2())
    assert_same_run(tmp_path / "glob", reference)
    assert "lm_head.weight" not in reference.layout.names
    assert reference.n_params == sum(p.numel() for p in gpt2().parameters())


def test_tied_weights_saved_twice_by_torch_save_are_counted_once_without_a_model(tmp_path, hf_run):
    root, reference = hf_run
    ws.import_checkpoints(root / "bin", tmp_path / "run")
    assert_same_run(tmp_path / "run", reference)


def test_tied_weights_under_either_name(tmp_path, hf_run):
    _, reference = hf_run
    sd = gpt2().state_dict()  # the recorded step 0
    for dropped in ("transformer.wte.weight", "lm_head.weight"):
        torch.save({k: v.clone() for k, v in sd.items() if k != dropped}, tmp_path / "one.pt")
        out = ws.import_checkpoints(
            tmp_path / "one.pt", tmp_path / dropped, model=gpt2(), steps=[0]
        )
        np.testing.assert_array_equal(ws.Trajectory.load(out).snapshot(0), reference.snapshot(0))
    sd = {k: v.clone() for k, v in sd.items()}
    sd["lm_head.weight"] += 1
    torch.save(sd, tmp_path / "differ.pt")
    tied = "'transformer.wte.weight' and 'lm_head.weight' are one tied parameter"
    with pytest.raises(LayoutMismatchError, match=tied):
        ws.import_checkpoints(tmp_path / "differ.pt", tmp_path / "bad", model=gpt2(), steps=[0])


def test_hugging_face_errors(tmp_path, hf_run):
    import shutil

    import transformers

    root, _ = hf_run
    config = transformers.GPT2Config(
        n_layer=1, n_head=2, n_embd=16, vocab_size=17, n_positions=16, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    wider = r"tensor 'transformer.wte.weight' has shape \(17, 8\), the model \(17, 16\)"
    with pytest.raises(LayoutMismatchError, match=wider):
        ws.import_checkpoints(
            root / "st", tmp_path / "run", model=transformers.GPT2LMHeadModel(config)
        )
    out = tmp_path / "out"  # a Trainer's output_dir with its final model beside the checkpoints
    shutil.copytree(root / "st", out)
    shutil.copy(root / "bin" / "checkpoint-2" / "pytorch_model.bin", out)
    with pytest.raises(WeightspaceError, match="is a checkpoint and also holds checkpoint folders"):
        ws.import_checkpoints(out, tmp_path / "run", model=gpt2())
    broken = tmp_path / "broken" / "checkpoint-3"
    shutil.copytree(root / "st" / "checkpoint-1", broken)
    next(broken.glob("model-00002-*")).unlink()
    missing = r"model-00002-of-\d+\.safetensors: shard listed in model.safetensors.index.json"
    with pytest.raises(CorruptRunError, match=missing):
        ws.import_checkpoints(broken, tmp_path / "run", model=gpt2())


def test_hugging_face_import_through_the_cli(tmp_path, hf_run, capsys):
    pytest.importorskip("transformers")
    root, reference = hf_run
    (tmp_path / "problem.py").write_text(PROBLEM)
    args = ["import", str(root / "st" / "checkpoint-2"), "-o", str(tmp_path / "run"), "--json"]
    assert main([*args, "--problem", f"{tmp_path / 'problem.py'}:gpt2"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["steps"] == [2]
    imp = ws.Trajectory.load(tmp_path / "run")
    assert imp.layout == reference.layout
    np.testing.assert_array_equal(imp.snapshot(0), reference.snapshot(2))


# ---------------------------------------------------------------- torch.distributed.checkpoint
def dcp_save(state, folder):
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "assuming the intent is to save in a single process"
        dcp.save(state, checkpoint_id=folder)


def test_distributed_checkpoints_import_as_recorded(tmp_path, bn_run):
    reference, states = bn_run
    for step, sd in enumerate(states):
        dcp_save({"model": sd, "step": step}, tmp_path / "train" / f"step_{step}")
        dcp_save(sd, tmp_path / "flat" / f"step_{step}")
    assert (tmp_path / "train" / "step_0" / ".metadata").is_file()
    for form in ("train", "flat"):
        ws.import_checkpoints(tmp_path / form, tmp_path / f"run-{form}", model=bn_net())
        assert_same_run(tmp_path / f"run-{form}", reference)
    needs = "step_0: a torch.distributed.checkpoint directory is imported with its model"
    with pytest.raises(WeightspaceError, match=needs):
        ws.import_checkpoints(tmp_path / "flat", tmp_path / "no-model")


def test_distributed_checkpoint_metadata_that_would_run_code_is_refused(tmp_path, bn_run):
    _, states = bn_run
    folder = tmp_path / "step_0"
    dcp_save(states[0], folder)
    marker = tmp_path / "pwned"
    (folder / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    refused = r"\.metadata: refused or unreadable \(it references (posix|os|nt)\.system\)"
    with pytest.raises(CorruptRunError, match=refused):
        ws.import_checkpoints(folder, tmp_path / "run", model=bn_net())
    assert not marker.exists()
