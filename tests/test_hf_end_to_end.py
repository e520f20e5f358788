"""Models nobody in this project wrote, end to end: a Hugging Face GPT-2 saved with
``save_pretrained`` through ``weightspace surface|spectrum|report --problem hf-causal-lm:DIR
--data FILE``; the Trainer callback + ``causal_lm`` + project, surface, spectrum and report;
a hand-built ResNet (BasicBlock with BatchNorm) through ``image_classification``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import weightspace as ws
from weightspace.cli import main

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

IGNORE = -100
TEXT = "the cat sat on a mat and the dog ran far away then home " * 4


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one intra-op thread (on a busy machine, more threads spin-wait)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def word_tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    words = sorted(set(TEXT.split()))
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", *words])}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]"
    )


def tiny_gpt2(vocab: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        n_layer=1, n_embd=8, n_head=2, vocab_size=vocab, n_positions=16, bos_token_id=0,
        eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def saved_gpt2(tmp_path):
    """A tiny GPT-2 and its tokenizer saved to ``tmp_path/gpt``, and ``tmp_path/text.txt``."""
    tok = word_tokenizer()
    model = tiny_gpt2(len(tok))
    folder = tmp_path / "gpt"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    (tmp_path / "text.txt").write_text(TEXT)
    return tok, model, folder


def hand_token_mean(model, ids: torch.Tensor, mask: torch.Tensor) -> float:
    """Σ −log p(next token) over the attended next tokens / their number."""
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.double(), -1)
    total, n = 0.0, 0
    for i in range(ids.shape[0]):
        for t in range(ids.shape[1] - 1):
            if mask[i, t + 1]:
                total -= float(logp[i, t, ids[i, t + 1]])
                n += 1
    return total / n


def test_cli_surface_spectrum_report_on_a_saved_gpt2_and_a_text_file(tmp_path):
    tok, model, folder = saved_gpt2(tmp_path)

    # a short run of the same model, recorded from a plain loop on the same tokens
    ids = torch.tensor(tok(TEXT, add_special_tokens=False)["input_ids"])
    n = -(-len(ids) // 8)
    blocks = torch.zeros(n * 8, dtype=torch.long)
    blocks[: len(ids)] = ids
    mask = (torch.arange(n * 8) < len(ids)).long().reshape(n, 8)
    blocks = blocks.reshape(n, 8)
    train = ws.problems.causal_lm(model, {"input_ids": blocks, "attention_mask": mask})
    (inputs, labels) = train.data
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    with ws.Recorder(model, tmp_path / "run", every=1) as rec:
        rec.record(0)
        for step in range(1, 5):
            loss = train.loss_fn(model(**inputs), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.record(step, loss=float(loss))
    final_loss = hand_token_mean(model.eval(), blocks, mask)

    spec = ["--problem", f"hf-causal-lm:{folder}", "--data", str(tmp_path / "text.txt")]
    common = [*spec, "--seq-len", "8", "--no-progress"]
    out = tmp_path / "out"
    assert main(["project", str(tmp_path / "run"), "-o", str(out / "pca"), "--no-progress"]) == 0
    surface = [str(tmp_path / "run"), "--grid", "3", "--span", "-0.5", "0.5", "-o"]
    assert main(["surface", *common, *surface, str(out / "surface")]) == 0
    assert main(["spectrum", *common, str(tmp_path / "run"), "--top-k", "2", "-o",
                 str(out / "spec")]) == 0  # fmt: skip
    page = str(tmp_path / "report.html")
    assert main(["report", str(tmp_path / "run"), "--artifacts", str(out), "-o", page,
                 "--no-animations", "--no-progress"]) == 0  # fmt: skip

    surf = ws.load(out / "surface")
    assert surf.values.shape == (3, 3)
    # the centre is the final snapshot: the mean token loss of the trained model
    assert surf.values[1, 1] == pytest.approx(final_loss, rel=1e-5)
    meta = json.loads((out / "surface.json").read_text())
    assert "causal-lm" in json.dumps(meta)
    spec_result = ws.load(out / "spec")
    eig = np.asarray(spec_result.eigenvalues)
    assert eig.shape[-1] == 2 and np.all(np.isfinite(eig)) and eig.ravel()[0] > 0
    html = (tmp_path / "report.html").read_text()
    assert "Loss landscape" in html and "Curvature" in html


def test_cli_names_the_data_flag_when_a_file_is_missing(tmp_path, capsys):
    folder = tmp_path / "gpt"
    tiny_gpt2(8).save_pretrained(folder)
    argv = ["surface", "--problem", f"hf-causal-lm:{folder}", "--data", "nope.txt",
            str(tmp_path / "run"), "-o", str(tmp_path / "s")]  # fmt: skip
    assert main(argv) == 1
    assert "--data: file 'nope.txt' does not exist" in capsys.readouterr().err


def test_record_fine_tunes_a_saved_model_on_a_data_file(tmp_path, capsys):
    """``record --problem hf-causal-lm:DIR --data FILE``: the run starts at the saved weights
    and training on the file lowers the mean token loss of the file."""
    _, model, folder = saved_gpt2(tmp_path)
    argv = ["record", "--problem", f"hf-causal-lm:{folder}", "--data", str(tmp_path / "text.txt"),
            "--seq-len", "8", "--optimizer", "adam", "--lr", "0.05", "--batch-size", "4",
            "--steps", "6", "--every", "3", "-o", str(tmp_path / "run"),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    run = ws.Trajectory.load(tmp_path / "run")
    assert run.steps.tolist() == [0, 3, 6]
    start = ws.ParamLayout.from_module(model).flatten(model).numpy()
    np.testing.assert_array_equal(run.array()[0], start)
    assert not np.array_equal(run.array()[-1], start)
    meta = run.metadata
    assert meta["data"] == str(tmp_path / "text.txt") and meta["seq_len"] == 8
    # the same data through the objective: the run's last point has a lower loss
    problem = ws.load_problem(f"hf-causal-lm:{folder}", data=tmp_path / "text.txt", seq_len=8)
    obj = ws.Objective(problem)
    first, last = (obj(torch.as_tensor(run.array()[k])).item() for k in (0, -1))
    assert last < first
    # a data file for a problem that brings its own data: one line naming the flag
    bad = ["record", "--problem", "digits-mlp", "--data", str(tmp_path / "text.txt"),
           "-o", str(tmp_path / "r2"), "--steps", "2"]  # fmt: skip
    capsys.readouterr()
    assert main(bad) == 1
    assert capsys.readouterr().err.startswith("weightspace record: error: --data: a data file")
    assert not (tmp_path / "r2").exists()


def test_import_of_trainer_folders_with_an_hf_spec_needs_no_data(tmp_path, capsys):
    """A Trainer's checkpoint-N/ folders, matched against the model folder's model alone."""
    folder = tmp_path / "gpt"
    tiny_gpt2(8).save_pretrained(folder)
    thetas = []
    for step in (10, 20):
        model = tiny_gpt2(8, seed=step)
        model.save_pretrained(tmp_path / "trainer" / f"checkpoint-{step}")
        thetas.append(ws.ParamLayout.from_module(model).flatten(model).numpy())
    argv = ["import", str(tmp_path / "trainer"), "-o", str(tmp_path / "run"),
            "--problem", f"hf-causal-lm:{folder}", "--json"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["steps"] == [10, 20]
    run = ws.Trajectory.load(tmp_path / "run")
    np.testing.assert_array_equal(run.array(), np.stack(thetas))
    # a folder that is not a model: one line naming the flag
    assert main(["import", str(tmp_path / "trainer"), "-o", str(tmp_path / "r2"),
                 "--problem", f"hf-causal-lm:{tmp_path}"]) == 1  # fmt: skip
    assert "--problem:" in capsys.readouterr().err and not (tmp_path / "r2").exists()


def test_trainer_callback_then_causal_lm_project_surface_spectrum_report(tmp_path):
    pytest.importorskip("accelerate")
    from weightspace.integrations.huggingface import WeightspaceTrainerCallback

    model = tiny_gpt2(16)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 16, (12, 8), generator=g)
    mask = torch.ones_like(ids)
    mask[::3, 5:] = 0  # padded sequences: uneven numbers of target tokens per batch
    rows = [
        {"input_ids": ids[i], "attention_mask": mask[i],
         "labels": torch.where(mask[i].bool(), ids[i], IGNORE)}
        for i in range(12)
    ]  # fmt: skip
    cb = WeightspaceTrainerCallback(tmp_path / "run", every=2)
    args = transformers.TrainingArguments(
        str(tmp_path / "trainer"), max_steps=6, per_device_train_batch_size=4, learning_rate=0.05,
        logging_steps=2, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    try:
        transformers.Trainer(model=model, args=args, train_dataset=rows, callbacks=[cb]).train()
    finally:
        cb.close()
    traj = ws.Trajectory.load(tmp_path / "run")
    assert traj.steps.tolist() == [0, 2, 4, 6]

    problem = ws.problems.causal_lm(model, rows, batch_size=5)  # batches of 5, 5 and 2
    obj = ws.Objective(problem)
    assert obj.n_samples == int(mask[:, 1:].sum())
    proj = ws.project_runs([tmp_path / "run"])
    surf = ws.surface_around(obj, tmp_path / "run", grid=3, span=(-0.5, 0.5))
    spec = ws.spectrum_of_run(obj, tmp_path / "run", top_k=2)
    model.load_state_dict(traj.layout.unflatten(traj.theta(-1)), strict=False)
    assert surf.values[1, 1] == pytest.approx(hand_token_mean(model.eval(), ids, mask), rel=1e-5)
    assert np.all(np.isfinite(np.asarray(spec.eigenvalues)))
    summary = ws.report(
        tmp_path / "report.html",
        runs=[tmp_path / "run"],
        results=[("pca", proj), ("surface", surf), ("spectrum", spec)],
        animations=False,
    )
    html = summary.path.read_text()
    assert "Loss landscape" in html and "Curvature" in html and not summary.skipped


# ---------------------------------------------------------------------------- a ResNet block
class BasicBlock(torch.nn.Module):
    """torchvision's ResNet BasicBlock, written here: two 3x3 conv-BN, a projected shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + short)


def tiny_resnet() -> torch.nn.Module:
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, 1, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        BasicBlock(4, 4), BasicBlock(4, 6, stride=2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3),
    )  # fmt: skip


def test_resnet_blocks_through_image_classification_surface_and_spectrum(tmp_path):
    torch.manual_seed(0)
    model = tiny_resnet()
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(20, 1, 8, 8, generator=g), torch.randint(0, 3, (20,), generator=g)
    problem = ws.problems.image_classification(model, (X, y), batch_size=6)  # 6, 6, 6, 2
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with ws.Recorder(model, tmp_path / "run", every=1) as rec:
        rec.record(0)
        for step in range(1, 5):
            model.train()
            loss = torch.nn.functional.cross_entropy(model(X), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.record(step, loss=float(loss))
    model.eval()
    obj = ws.Objective(problem)
    assert obj.batch_sizes == (6, 6, 6, 2)
    surf = ws.surface_around(obj, tmp_path / "run", grid=3, span=(-0.5, 0.5))
    with torch.no_grad():  # eval mode, the final BatchNorm statistics: the model's own loss
        expected = float(torch.nn.functional.cross_entropy(model(X), y))
        accuracy = float((model(X).argmax(1) == y).double().mean())
    assert surf.values[1, 1] == pytest.approx(expected, rel=1e-5)
    assert obj.evaluate(obj.theta0).accuracy == pytest.approx(accuracy)
    spec = ws.spectrum_of_run(obj, tmp_path / "run", top_k=2)
    eig = np.asarray(spec.eigenvalues).ravel()
    assert np.all(np.isfinite(eig)) and eig[0] >= eig[1]
