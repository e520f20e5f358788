"""Problems for the model families: each objective is the exact mean over its units (target
tokens, masked tokens, sequences, images) across uneven, padded batches, checked against sums
written out by hand, and the Hessian of the causal-LM mean against a dense Hessian."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import weightspace as ws
from weightspace.errors import WeightspaceError

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

IGNORE = -100
VOCAB = 16


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one intra-op thread (on a busy machine, more threads spin-wait)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_gpt2(seed: int = 0, n_embd: int = 8) -> torch.nn.Module:
    """A 1-layer GPT-2 in float64 with eager attention (double backward through it works)."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        n_layer=1,
        n_embd=n_embd,
        n_head=2,
        vocab_size=VOCAB,
        n_positions=16,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation="eager",
    )
    return transformers.GPT2LMHeadModel(config).double().eval()


def uneven_batches() -> list[dict[str, torch.Tensor]]:
    """Three batches of 3, 2 and 1 sequences of lengths 7, 5, 4, right-padded, with some
    labels ignored by hand: every batch has a different number of target tokens."""
    g = torch.Generator().manual_seed(1)
    out = []
    for n, length, lengths in ((3, 7, (7, 4, 2)), (2, 5, (5, 5)), (1, 4, (3,))):
        ids = torch.randint(1, VOCAB, (n, length), generator=g)
        mask = (torch.arange(length)[None] < torch.tensor(lengths)[:, None]).long()
        labels = torch.where(mask.bool(), ids, torch.full_like(ids, IGNORE))
        labels[0, 2] = IGNORE  # a token the user chose not to score
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def hand_token_mean(model, batches, params=None, shift=True) -> torch.Tensor:
    """Σ −log p(target) over every non-ignored target token / their number, token by token."""
    total, n = 0.0, 0
    for batch in batches:
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if params is None:
            logits = model(**inputs).logits
        else:
            logits = torch.func.functional_call(model, params, (), inputs).logits
        labels = batch["labels"]
        for i in range(labels.shape[0]):
            for t in range(labels.shape[1] - (1 if shift else 0)):
                target = int(labels[i, t + 1 if shift else t])
                if target == IGNORE:
                    continue
                row = logits[i, t]
                total = total - (row[target] - torch.logsumexp(row, 0))
                n += 1
    return total / n


def test_causal_lm_objective_is_the_mean_over_target_tokens_of_uneven_batches():
    model, batches = tiny_gpt2(), uneven_batches()
    problem = ws.problems.causal_lm(model, (b for b in batches))  # read once, as a DataLoader
    obj = ws.Objective(problem)
    with torch.no_grad():
        expected = hand_token_mean(model, batches)
        got = obj(obj.theta0)
    assert obj.batch_sizes == (9, 7, 1)  # (6 + 3 + 1, 4 + 4, 2) shifted targets, 1 ignored each
    assert abs(float(got) - float(expected)) < 1e-12
    assert abs(obj.evaluate(obj.theta0).loss - float(expected)) < 1e-12
    assert obj.check() == pytest.approx(float(expected), abs=1e-12)  # the model's own loss too
    # the unweighted mean of batch means is a different number: the weighting matters
    naive = float(np.mean(obj.evaluate(obj.theta0).batch_losses))
    assert abs(naive - float(expected)) > 1e-3


def test_causal_lm_mean_does_not_depend_on_how_sequences_are_batched():
    model, batches = tiny_gpt2(), uneven_batches()
    for b in batches:  # labels: the ids, padding ignored (what causal_lm derives)
        b["labels"] = torch.where(b["attention_mask"].bool(), b["input_ids"], IGNORE)
    with torch.no_grad():
        expected = float(hand_token_mean(model, batches))
    # per-sample dicts of any lengths (a datasets.Dataset): padded here, labels from the ids
    samples = []
    for b in batches:
        for i in range(b["input_ids"].shape[0]):
            keep = b["attention_mask"][i].bool()
            samples.append({"input_ids": b["input_ids"][i][keep].tolist()})
    for batch_size in (None, 1, 4):
        problem = ws.problems.causal_lm(model, samples, batch_size=batch_size)
        obj = ws.Objective(problem)
        with torch.no_grad():
            assert abs(float(obj(obj.theta0)) - expected) < 1e-12, batch_size
    # a dict of sample-major tensors split by the objective
    ids = torch.randint(1, VOCAB, (5, 6), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[2, 3:] = 0
    labels = torch.where(mask.bool(), ids, torch.full_like(ids, IGNORE))
    data = {"input_ids": ids, "attention_mask": mask}
    ref = [{**data, "labels": labels}]
    with torch.no_grad():
        expected = float(hand_token_mean(model, ref))
        for batch_size in (1, 2, 5):
            obj = ws.Objective(ws.problems.causal_lm(model, data), batch_size=batch_size)
            assert abs(float(obj(obj.theta0)) - expected) < 1e-12, batch_size
        obj = ws.Objective(ws.problems.causal_lm(model, ids))  # plain ids: every token a target
        full = [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}]
        assert abs(float(obj(obj.theta0)) - float(hand_token_mean(model, full))) < 1e-12


def test_causal_lm_hvp_equals_the_dense_hessian_of_the_token_mean():
    model, batches = tiny_gpt2(n_embd=4), uneven_batches()
    obj = ws.Objective(ws.problems.causal_lm(model, batches))
    layout, theta = obj.layout, obj.theta0
    # the tied embedding (also the LM head) and the attention block: 144 of 380 parameters
    include = ["transformer.wte.weight", "transformer.h.0.attn.*"]
    where = layout.unflatten(torch.arange(layout.numel, dtype=torch.float64))
    chosen = [n for n in layout.names if n == include[0] or n.startswith("transformer.h.0.attn.")]
    idx = torch.cat([where[n].flatten().long() for n in chosen])

    def mean(sub: torch.Tensor) -> torch.Tensor:  # log-softmax gathered at the targets
        params = layout.unflatten(theta.index_put((idx,), sub))
        total, n = 0.0, 0
        for b in batches:
            inputs = {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}
            logits = torch.func.functional_call(model, params, (), inputs).logits
            logp = torch.log_softmax(logits[:, :-1], -1)
            target = b["labels"][:, 1:]
            keep = target != IGNORE
            picked = logp.gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1)
            total, n = total - (picked * keep).sum(), n + int(keep.sum())
        return total / n

    dense = torch.autograd.functional.hessian(mean, theta[idx], vectorize=True)
    assert dense.shape == (144, 144)
    op = ws.HessianOperator(obj, theta, include=include)
    assert op.shape == (144, 144)
    V = torch.randn(144, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = torch.stack([op @ V[:, j] for j in range(3)], 1)
    assert torch.allclose(got, dense @ V, rtol=1e-9, atol=1e-12)
    eig = ws.top_eigenpairs(op, k=2)
    top = torch.linalg.eigvalsh(dense).flip(0)[:2]
    assert np.allclose(np.asarray(eig.eigenvalues), top.numpy(), rtol=1e-7, atol=1e-10)


def test_masked_lm_weights_masked_tokens_and_masks_once_when_asked():
    model = tiny_gpt2()  # any model with (B, T, V) logits; a masked LM predicts in place
    batches = uneven_batches()
    obj = ws.Objective(ws.problems.masked_lm(model, batches))
    with torch.no_grad():
        expected = hand_token_mean(model, batches, shift=False)
        assert abs(float(obj(obj.theta0)) - float(expected)) < 1e-12
    assert obj.batch_sizes == tuple(int((b["labels"] != IGNORE).sum()) for b in batches)

    ids = torch.randint(1, VOCAB - 1, (6, 10), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    masked = ws.problems.masked_lm(
        model, {"input_ids": ids, "attention_mask": mask}, mask_token_id=VOCAB - 1, seed=4
    )
    inputs, labels = masked.data
    chosen = labels != IGNORE
    assert chosen.any() and not chosen[0, 5:].any()  # padding is never masked
    assert torch.equal(inputs["input_ids"][chosen], torch.full_like(ids[chosen], VOCAB - 1))
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(inputs["input_ids"][~chosen], ids[~chosen])
    again = ws.problems.masked_lm(
        model, {"input_ids": ids, "attention_mask": mask}, mask_token_id=VOCAB - 1, seed=4
    )
    assert torch.equal(again.data[1], labels)  # a fixed evaluation set
    with pytest.raises(WeightspaceError, match="^data: a masked LM needs 'labels'"):
        ws.problems.masked_lm(model, {"input_ids": ids})


class BagClassifier(torch.nn.Module):
    """Mean of token embeddings over the attended tokens -> class logits, in a ModelOutput."""

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, 5)
        self.head = torch.nn.Linear(5, n_classes)

    def forward(self, input_ids, attention_mask):
        from transformers.modeling_outputs import SequenceClassifierOutput

        m = attention_mask.unsqueeze(-1).to(self.embed.weight.dtype)
        pooled = (self.embed(input_ids) * m).sum(1) / m.sum(1)
        return SequenceClassifierOutput(logits=self.head(pooled))


def test_sequence_classification_is_the_mean_over_sequences_with_accuracy():
    torch.manual_seed(0)
    model = BagClassifier().double()
    samples = [
        {"input_ids": list(range(1, 2 + k % 5)), "label": k % 3} for k in range(7)
    ]  # lengths 1..5: padded here
    problem = ws.problems.sequence_classification(model, samples, batch_size=3)
    obj = ws.Objective(problem)
    losses, correct = [], 0
    with torch.no_grad():
        for s in samples:
            ids = torch.tensor([s["input_ids"]])
            logits = model(ids, torch.ones_like(ids)).logits[0]
            losses.append(float(torch.logsumexp(logits, 0) - logits[s["label"]]))
            correct += int(logits.argmax()) == s["label"]
        ev = obj.evaluate(obj.theta0)
    assert obj.batch_sizes == (3, 3, 1)
    assert abs(ev.loss - math.fsum(losses) / 7) < 1e-12
    assert ev.accuracy == correct / 7
    with pytest.raises(WeightspaceError, match="needs 'labels'"):
        ws.problems.sequence_classification(model, [{"input_ids": [1, 2]}])


def test_image_classification_any_module_any_data_form():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3)
    ).double()
    X = torch.randn(7, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    with torch.no_grad():
        logits = model(X)
        expected = float((torch.logsumexp(logits, 1) - logits[torch.arange(7), y]).mean())
        accuracy = float((logits.argmax(1) == y).double().mean())
    dataset = [(X[i], y[i]) for i in range(7)]  # a map-style dataset of samples
    loader = [(X[:4], y[:4]), (X[4:], y[4:])]  # uneven batches
    listed = [(X[i], int(y[i])) for i in range(7)]
    forms = ((X, y), 3), (dataset, None), (listed, 4), (loader, None), ((X.numpy(), y), 2)
    for data, batch_size in forms:
        obj = ws.Objective(ws.problems.image_classification(model, data, batch_size=batch_size))
        with torch.no_grad():
            ev = obj.evaluate(obj.theta0)
        assert abs(ev.loss - expected) < 1e-12
        assert ev.accuracy == pytest.approx(accuracy, abs=1e-15)
    with pytest.raises(WeightspaceError, match="^data: expected images"):
        ws.problems.image_classification(model, (torch.randn(4, 3), y[:4]))


def test_a_problem_without_a_target_token_is_refused():
    model = tiny_gpt2()
    ids = torch.tensor([[3], [4]])  # one token each: nothing to predict
    with pytest.raises(WeightspaceError, match="^data: no target token"):
        ws.problems.causal_lm(model, ids)


# ---------------------------------------------------------------------------- hf-* specs
def word_tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    words = "the cat sat on a mat dog ran far away and then home".split()
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[MASK]", *words])}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", mask_token="[MASK]"
    )


TEXT = "the cat sat on a mat and the dog ran far away then home " * 3


@pytest.fixture
def hf_folder(tmp_path):
    folder = tmp_path / "gpt"
    tiny_gpt2().save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    return folder


def test_hf_causal_lm_spec_reads_text_jsonl_and_token_files(hf_folder, tmp_path):
    tok = word_tokenizer()
    stream = tok(TEXT, add_special_tokens=False)["input_ids"]
    (tmp_path / "t.txt").write_text(TEXT)
    problem = ws.load_problem(f"hf-causal-lm:{hf_folder}", data=tmp_path / "t.txt", seq_len=8)
    inputs, labels = problem.data
    n = math.ceil(len(stream) / 8)
    assert inputs["input_ids"].shape == (n, 8)
    assert inputs["input_ids"].flatten()[: len(stream)].tolist() == stream
    assert int(inputs["attention_mask"].sum()) == len(stream)
    assert int((labels != IGNORE).sum()) == len(stream)  # padding of the last block ignored
    assert problem.info["family"] == "causal-lm" and problem.model.config.use_cache is False

    np.save(tmp_path / "ids.npy", np.asarray(stream))
    from_npy = ws.load_problem(f"hf-causal-lm:{hf_folder}", data=tmp_path / "ids.npy", seq_len=8)
    assert torch.equal(from_npy.data[0]["input_ids"], inputs["input_ids"])
    a, b = ws.Objective(problem), ws.Objective(from_npy)
    with torch.no_grad():
        assert float(a(a.theta0)) == float(b(b.theta0))

    lines = ["the cat sat", "a dog ran far away", "home"]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in lines))
    rows = ws.load_problem(f"hf-causal-lm:{hf_folder}", data=tmp_path / "d.jsonl", batch_size=2)
    assert [tuple(x["input_ids"].shape) for x, _ in rows.data] == [(2, 5), (1, 5)]
    obj = ws.Objective(rows)
    assert obj.n_samples == sum(len(t.split()) - 1 for t in lines)  # next-token targets


def test_hf_sequence_classification_and_masked_lm_specs(tmp_path):
    tok = word_tokenizer()
    config = transformers.BertConfig(
        vocab_size=len(tok),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=32,
        num_labels=2,
        id2label={0: "neg", 1: "pos"},
        label2id={"neg": 0, "pos": 1},
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    cls_dir, mlm_dir = tmp_path / "cls", tmp_path / "mlm"
    transformers.BertForSequenceClassification(config).save_pretrained(cls_dir)
    transformers.BertForMaskedLM(config).save_pretrained(mlm_dir)
    for d in (cls_dir, mlm_dir):
        tok.save_pretrained(d)
    rows = [{"text": "the cat sat", "label": "pos"}, {"text": "a dog", "label": 0}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    problem = ws.load_problem(f"hf-sequence-classification:{cls_dir}", data=tmp_path / "c.jsonl")
    assert problem.data[1].tolist() == [1, 0]
    ev = ws.Objective(problem).evaluate(ws.Objective(problem).theta0)
    assert math.isfinite(ev.loss) and ev.accuracy in (0.0, 0.5, 1.0)
    (tmp_path / "bad.jsonl").write_text(json.dumps({"text": "the", "label": "maybe"}))
    with pytest.raises(WeightspaceError, match="^data: line 1 has label 'maybe'"):
        ws.load_problem(f"hf-sequence-classification:{cls_dir}", data=tmp_path / "bad.jsonl")

    (tmp_path / "t.txt").write_text(TEXT * 4)
    mlm = ws.load_problem(f"hf-masked-lm:{mlm_dir}", data=tmp_path / "t.txt", seq_len=16, seed=1)
    inputs, labels = mlm.data
    chosen = labels != IGNORE
    assert chosen.any() and (inputs["input_ids"][chosen] == tok.mask_token_id).all()
    assert ws.Objective(mlm).n_samples == int(chosen.sum())


def test_load_problem_data_errors_name_the_argument(hf_folder, tmp_path):
    with pytest.raises(WeightspaceError, match="^data: 'hf-causal-lm:.*' needs a data file"):
        ws.load_problem(f"hf-causal-lm:{hf_folder}")
    with pytest.raises(WeightspaceError, match="^data: a data file is read only by hf-"):
        ws.load_problem("digits-mlp", data="x.txt")
    with pytest.raises(WeightspaceError, match="^data: file .* does not exist"):
        ws.load_problem(f"hf-causal-lm:{hf_folder}", data=tmp_path / "missing.txt")
    with pytest.raises(WeightspaceError, match="^problem: .* has no config.json"):
        ws.load_problem(f"hf-causal-lm:{tmp_path}", data=tmp_path / "missing.txt")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(WeightspaceError, match=r"^data: .*x.csv'?: expected .txt"):
        ws.load_problem(f"hf-causal-lm:{hf_folder}", data=tmp_path / "x.csv")
