"""The character language model: vocabulary and baselines against hand-worked values, perplexity of a
uniform model, a short real training run that beats the unigram baseline, checkpoints, sampling, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mnistlab.cli import main
from mnistlab.errors import CheckpointError, ConfigError, DataError
from mnistlab.lessons.lm import DEFAULT_TEXT
from mnistlab.lessons.lm.checkpoint import load_lm, save_lm
from mnistlab.lessons.lm.data import Vocab, read_text, split_text, unigram_perplexity
from mnistlab.lessons.lm.model import CharLM, detach
from mnistlab.lessons.lm.sample import sample_text
from mnistlab.lessons.lm.train import LMConfig, evaluate_lm, train_lm




def test_default_text_is_shipped_with_its_license():
    text = read_text(DEFAULT_TEXT)
    assert 200_000 < len(text.encode()) < 300_000
    assert (DEFAULT_TEXT.parent / "LICENSE").is_file() and "License" in (DEFAULT_TEXT.parent / "README.md").read_text()


def test_vocab_round_trip_and_unknown_characters():
    vocab = Vocab.from_text("héllo wörld 中文 🙂")
    ids = vocab.encode("wörld 🙂")
    assert vocab.decode(ids) == "wörld 🙂"
    assert vocab.unknown("hallo?!?") == ["a", "?", "!"]
    assert vocab.decode(vocab.encode("h?", fallback=" ")) == "h "
    with pytest.raises(KeyError):
        vocab.encode("?")


def test_unigram_baseline_by_hand():
    vocab = Vocab(("a", "b", "c"))
    # train counts a=3, b=1, c=0 -> add-one: a 4/7, b 2/7, c 1/7; validation "ab"
    expected = math.exp(-(math.log(4 / 7) + math.log(2 / 7)) / 2)
    assert unigram_perplexity("aaab", "ab", vocab) == pytest.approx(expected, rel=1e-12)
    assert split_text("0123456789", 0.2) == ("01234567", "89")


def test_a_uniform_model_has_perplexity_equal_to_the_vocabulary_size():
    model = CharLM(7, "gru", hidden_size=8, layers=1, embed_size=4)
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    ids = np.random.default_rng(0).integers(0, 7, 500)
    result = evaluate_lm(model, ids, seq_len=16, unigram=np.log(np.full(7, 1 / 7)))
    assert result["ppl"] == pytest.approx(7.0, rel=1e-6)
    assert result["unigram_ppl"] == pytest.approx(7.0, rel=1e-9)


def test_detach_keeps_values_and_drops_history():
    h = torch.ones(1, 2, 3, requires_grad=True) * 2
    c = torch.ones(1, 2, 3, requires_grad=True) * 3
    for before, after in ((h, detach(h)), ((h, c), detach((h, c)))):
        for a, b in zip(before if isinstance(before, tuple) else [before], after if isinstance(after, tuple) else [after]):
            assert b.grad_fn is None and not b.requires_grad and torch.equal(a, b)


def test_lm_beats_the_unigram_baseline_on_held_out_text(one_thread):
    text = read_text(DEFAULT_TEXT)[:60_000]
    cfg = LMConfig(model="lstm", hidden_size=128, embed_size=32, seq_len=64, batch_size=16, steps=120, lr=1e-2,
                   eval_every=60, device="cpu")
    result = train_lm(text, cfg)
    m = result["metrics"]
    assert m["uniform_ppl"] == len(result["vocab"])
    assert 15 < m["unigram_ppl"] < m["uniform_ppl"]
    assert m["val_ppl"] < 0.6 * m["unigram_ppl"], m  # clearly better than character frequencies alone
    assert [r["step"] for r in result["records"]] == [60, 120]
    assert result["records"][-1]["val_loss"] < result["records"][0]["val_loss"]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_every_cell_trains_and_round_trips(tmp_path, one_thread, cell):
    text = "the quick brown fox jumps over the lazy dog. " * 40 + "über café"
    cfg = LMConfig(model=cell, hidden_size=16, layers=2, embed_size=8, seq_len=8, batch_size=4, steps=6, device="cpu")
    result = train_lm(text, cfg)
    assert math.isfinite(result["metrics"]["val_ppl"])
    path = save_lm(tmp_path / "lm.safetensors", result["model"], cfg, result["vocab"], " ", result["metrics"])
    model, vocab, meta = load_lm(tmp_path)  # the folder works as well as the file
    x = torch.from_numpy(vocab.encode("the lazy dog")).unsqueeze(0)
    with torch.inference_mode():
        assert torch.equal(model(x)[0], result["model"](x)[0])
    assert vocab == result["vocab"] and meta["config"]["model"] == cell and path.read_bytes()[:1] != b"\x80"


def test_sampling_is_seeded_handles_unknown_characters_and_temperature(one_thread):
    vocab = Vocab.from_text("abc \n")
    torch.manual_seed(0)
    model = CharLM(len(vocab), "gru", hidden_size=8, layers=1, embed_size=4)
    a = sample_text(model, vocab, "ab?€", 50, temperature=1.0, seed=3, fallback=" ")
    assert len(a) == 50 and set(a) <= set(vocab.chars)
    assert a == sample_text(model, vocab, "ab?€", 50, temperature=1.0, seed=3, fallback=" ")
    assert a != sample_text(model, vocab, "ab?€", 50, temperature=1.0, seed=4, fallback=" ")
    greedy = sample_text(model, vocab, "", 20, temperature=0.0)
    assert greedy == sample_text(model, vocab, "", 20, temperature=0.0, seed=9)
    with pytest.raises(ConfigError):
        sample_text(model, vocab, "a", 5, temperature=-1)


def test_bad_inputs_are_one_line_errors(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"fine\nna\xefve\n")
    with pytest.raises(DataError, match="line 2: not UTF-8"):
        read_text(bad)
    with pytest.raises(ConfigError, match="too short"):
        train_lm("tiny text", LMConfig(device="cpu"))
    with pytest.raises(ConfigError, match="--model"):
        LMConfig(model="transformer")
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not an mnistlab language-model"):
        load_lm(other)


def test_cli_train_then_sample(tmp_path, capsys, one_thread):
    text = tmp_path / "text.txt"
    text.write_text("Once upon a time, a café sold tea. " * 60, encoding="utf-8")
    out = tmp_path / "run"
    assert main(["lm", "train", "--text", str(text), "--model", "gru", "--hidden-size", "16", "--seq-len", "16",
                 "--batch-size", "4", "--steps", "10", "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "validation perplexity" in printed and "unigram baseline" in printed and "uniform baseline" in printed
    kinds = [json.loads(line)["kind"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert kinds[-1] == "final" and (out / "config.json").is_file()
    assert main(["lm", "sample", str(out / "lm.safetensors"), "--prompt", "Once ✓", "--length", "40", "--seed", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("Once ✓") and len(captured.out.rstrip("\n")) == len("Once ✓") + 40
    assert "never saw" in captured.err
    assert main(["lm", "train", "--text", str(text), "--out", str(out), "-q"]) == 2  # refuses to overwrite a run


LM_FAST = ["--model", "gru", "--hidden-size", "16", "--seq-len", "16", "--batch-size", "4", "--steps", "5", "-q"]


def test_a_failed_lm_start_never_blocks_the_retry_with_the_same_out(tmp_path, capsys, one_thread, monkeypatch):
    text = tmp_path / "text.txt"
    text.write_text("Once upon a time, a café sold tea. " * 60, encoding="utf-8")
    short = tmp_path / "short.txt"
    short.write_text("too short", encoding="utf-8")
    out = tmp_path / "run"
    # Fails inside training (after the folder was made): the folder is removed again.
    assert main(["lm", "train", "--text", str(short), *LM_FAST, "--out", str(out)]) == 2
    assert "too short" in capsys.readouterr().err
    assert not out.exists()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("mnistlab.lessons.lm.train.train_lm", interrupted)  # Ctrl-C during training
    assert main(["lm", "train", "--text", str(text), *LM_FAST, "--out", str(out)]) == 130
    assert not out.exists()
    monkeypatch.undo()

    # What a killed start leaves behind (config.json, metrics.jsonl, no lm.safetensors) is taken over.
    out.mkdir()
    (out / "config.json").write_text('{"model": "lstm"}')
    (out / "metrics.jsonl").write_text('{"kind": "eval", "step": 999}\n')
    assert main(["lm", "train", "--text", str(text), *LM_FAST, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["model"] == "gru"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("step") for r in records if r["kind"] == "eval"][-1] == 5 and all(r.get("step") != 999 for r in records)
    # A finished run, or a folder with anything else in it, is never reused or touched.
    before = (out / "lm.safetensors").read_bytes()
    assert main(["lm", "train", "--text", str(text), *LM_FAST, "--out", str(out)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert (out / "lm.safetensors").read_bytes() == before
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    assert main(["lm", "train", "--text", str(short), *LM_FAST, "--out", str(tmp_path / "notes")]) == 2
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"
