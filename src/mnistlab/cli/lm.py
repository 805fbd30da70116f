"""`mnistlab lm train` and `mnistlab lm sample`: the character language model's commands (they print)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import typing
from pathlib import Path

from mnistlab.cli._common import out as _out
from mnistlab.errors import ConfigError
from mnistlab.lessons.lm.config import LMConfig


def _add_lm_options(parser: argparse.ArgumentParser) -> None:
    """One option per LMConfig field, typed from its annotation (defaults shown by the formatter)."""
    hints = typing.get_type_hints(LMConfig)
    for f in dataclasses.fields(LMConfig):
        base = next((a for a in typing.get_args(hints[f.name]) if a is not type(None)), hints[f.name])
        kwargs: dict = {"dest": f.name, "type": base, "default": f.default, "help": f.metadata["help"]}
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def _run_dir(out: str | None, cfg: LMConfig) -> tuple[Path, bool, int | None]:
    """(folder, whether it was made here, its lock) for a new LM run.

    An existing folder is taken only when empty or a failed start (config.json and metrics.jsonl but no
    lm.safetensors, and no live process training in it); its stale files are removed first.
    """
    from mnistlab.runs.rundir import is_failed_start, lock_folder, remove_failed_start

    path = Path(out) if out else Path("runs") / f"lm-{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    reuse = path.exists()
    if reuse and not path.is_dir():
        raise ConfigError(f"{path} exists and is not a folder: choose another --out")
    if reuse and not is_failed_start(path):
        raise ConfigError(f"{path} already exists and is not empty: choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create {path}: {e.strerror or e}") from None
    lock = lock_folder(path)
    if reuse and not remove_failed_start(path, remove_folder=False):  # checked again under the lock
        if lock is not None:
            os.close(lock)
        raise ConfigError(f"{path} already exists and is not empty: choose another --out")
    return path, not reuse, lock


def cmd_lm_train(args: argparse.Namespace) -> int:
    import torch

    from mnistlab.fileio import append_jsonl, atomic_write_json
    from mnistlab.runs.rundir import remove_failed_start
    from mnistlab.lessons.lm import DEFAULT_TEXT
    from mnistlab.lessons.lm.checkpoint import FILENAME, save_lm
    from mnistlab.lessons.lm.data import read_text
    from mnistlab.lessons.lm.train import train_lm

    cfg = LMConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(LMConfig)})
    if args.threads:
        torch.set_num_threads(args.threads)
    text_path = Path(cfg.text) if cfg.text else DEFAULT_TEXT
    text = read_text(text_path)
    run, made, lock = _run_dir(args.out, cfg)

    def on_eval(record: dict) -> None:
        append_jsonl(run / "metrics.jsonl", record)
        if not args.quiet:
            _out(f"step {record['step']:>6}  epoch {record['epoch']:6.2f}  train loss {record['train_loss']:.4f}"
                 f"  | val loss {record['val_loss']:.4f} perplexity {record['val_ppl']:7.3f}  | {record['time_s']:7.1f} s")

    try:
        atomic_write_json(run / "config.json", cfg.to_dict())
        if not args.quiet:
            _out(f"{cfg.model} language model on {text_path} ({len(text):,} characters); run {run}")
        result = train_lm(text, cfg, on_eval=on_eval)
        m = result["metrics"]
        append_jsonl(run / "metrics.jsonl", {"kind": "final", **m})
        path = save_lm(run / FILENAME, result["model"], cfg, result["vocab"], result["most_common"], m)
    except BaseException:
        # Failed (too short a text, divergence, Ctrl-C, an error) before lm.safetensors was written: remove
        # the folder unless it logged evaluations (kept to read; the same --out still reuses it).
        remove_failed_start(run, remove_folder=made, keep_records=True)
        raise
    finally:
        if lock is not None:
            os.close(lock)
    _out(
        f"vocabulary {len(result['vocab'])} characters; {result['num_train_chars']:,} train, "
        f"{result['num_val_chars']:,} validation characters",
        f"validation perplexity {m['val_ppl']:.3f}   (uniform baseline {m['uniform_ppl']:.0f}, "
        f"unigram baseline {m['unigram_ppl']:.3f}; {m['val_nll'] / 0.6931471805599453:.3f} bits/char)",
        f"training time {m['train_seconds']:.1f} s over {m['steps']} steps",
        f"saved {path}   (sample: mnistlab lm sample {path} --prompt \"The \")",
    )
    return 0


def cmd_lm_sample(args: argparse.Namespace) -> int:
    from mnistlab.lessons.lm.checkpoint import load_lm
    from mnistlab.lessons.lm.sample import sample_text

    model, vocab, meta = load_lm(args.checkpoint)
    unknown = vocab.unknown(args.prompt)
    if unknown:
        shown = "".join(unknown[:10])
        print(f"mnistlab: note: {len(unknown)} prompt character(s) the model never saw ({shown!r}) "
              f"are read as {meta.get('fallback', ' ')!r}", file=sys.stderr, flush=True)
    text = sample_text(model, vocab, args.prompt, args.length, args.temperature, args.seed, meta.get("fallback"))
    if args.json:
        _out(json.dumps({"prompt": args.prompt, "generated": text}, ensure_ascii=False))
    else:
        _out(args.prompt + text)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mnistlab lm train|sample` to the CLI."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    lm = subparsers.add_parser("lm", help="character-level language model: train (perplexity) and sample", formatter_class=fmt,
                               description="A character RNN/LSTM/GRU trained with truncated BPTT; perplexity vs baselines.")
    sub = lm.add_subparsers(dest="lm_command", metavar="ACTION", required=True)

    p = sub.add_parser("train", help="train on a UTF-8 text; report validation perplexity", formatter_class=fmt)
    _add_lm_options(p)
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/lm-<model>-<time>)")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-evaluation lines")
    p.set_defaults(func=cmd_lm_train)

    p = sub.add_parser("sample", help="generate text from a trained checkpoint", formatter_class=fmt)
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="lm.safetensors, or the run folder holding it")
    p.add_argument("--prompt", default="", help="text to start from (characters it never saw are replaced)")
    p.add_argument("--length", type=int, default=300, help="characters to generate")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (0: always the likeliest)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--json", action="store_true", help="print the prompt and generated text as JSON")
    p.set_defaults(func=cmd_lm_sample)
