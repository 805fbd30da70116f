"""`mnistlab bench`: the classic lecture loop and mnistlab's path, side by side on this machine.

(a) classic: a DataLoader over per-sample tensors with ToTensor + Normalize done per item, as the
    lectures write it; (b) mnistlab: the device-resident loader and trainer. Both train the same
    model with the same optimiser, schedule, batch size and seed. Each run happens in a fresh
    subprocess, so that peak RSS and warm-up are measured per run, not shared.

Reported per run: time-to-target (training seconds until the first end-of-epoch test accuracy at or
above the target; evaluation time excluded), training time, training plus one test evaluation,
final accuracy, training images/s, batched inference images/s, single-image latency after load,
peak RSS. Ratios (b)/(a) come from the same run.

With --against NAMES (mnistlab.bench.peers): the whole `mnistlab train --preset speedrun` command
against the peers' published recipes, ported (mnistlab.bench.ports: tuomaso/train_mnist_fast,
pytorch/examples mnist, the lectures' LeNet loop), each run a fresh process timed from start to exit:
time to target, final accuracy, whole-command wall, peak RSS, and the ratios mnistlab / peer.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np
import torch

from mnistlab.config import Config

BURN_IN = 3
REPEATS = 5


# ----------------------------------------------------------------------------- the classic loop


class ClassicDataset(torch.utils.data.Dataset):
    """Per-sample tensors, transformed one at a time: ToTensor (uint8 -> [0,1]) then Normalize."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: float, std: float):
        self.images, self.labels, self.mean, self.std = images, labels, mean, std

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.images[i].copy()).float().div(255.0).unsqueeze(0)  # ToTensor: (1, H, W)
        return (x - self.mean) / self.std, int(self.labels[i])  # Normalize


def classic_train(model: torch.nn.Module, optimizer: Any, loader_for_epoch: Callable[[int], Any],
                  epochs: int, lr_for_step: Callable[[int], float], loss: str = "ce",
                  on_step: Callable[[float], None] | None = None, on_epoch_end: Callable[[int, float], None] | None = None,
                  max_steps: int | None = None, label_smoothing: float = 0.0) -> float:
    """The lectures' loop: for each batch, move it to the model's device, zero_grad, forward, loss, backward,
    step. Returns training seconds (the clock read after the device finished its queued work).

    `max_steps` ends training inside an epoch (for fractional epochs, as the fast path does).
    """
    from mnistlab.device import model_device, timer
    from mnistlab.training.losses import compute_loss

    device = model_device(model) or torch.device("cpu")
    step, seconds = 0, 0.0
    for epoch in range(epochs):
        model.train()
        start = timer(device)
        for x, y in loader_for_epoch(epoch):
            x, y = x.to(device), y.to(device)  # the DataLoader yields CPU tensors, as in the lectures
            for group in optimizer.param_groups:
                group["lr"] = lr_for_step(step)
            optimizer.zero_grad()
            out = model(x)
            batch_loss = compute_loss(out, y, loss, label_smoothing)
            batch_loss.backward()
            optimizer.step()
            step += 1
            if on_step:
                on_step(batch_loss.item())
            if max_steps is not None and step >= max_steps:
                break
        seconds += timer(device) - start
        if on_epoch_end:
            on_epoch_end(epoch, seconds)
        if max_steps is not None and step >= max_steps:
            break
    return seconds


@torch.inference_mode()
def classic_test(model: torch.nn.Module, loader: Any) -> float:
    """Accuracy over a DataLoader, as the lectures' test() computes it (each batch moved to the model's device)."""
    from mnistlab.device import model_device

    device = model_device(model) or torch.device("cpu")
    model.eval()
    correct = total = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        correct += (model(x).argmax(1) == y).sum().item()
        total += len(y)
    return correct / total


# ----------------------------------------------------------------------------- one measured run


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def digit_png(image: np.ndarray) -> bytes:
    """An MNIST digit as a user would send it: black on white, 280x280 (10x), encoded as PNG."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(255 - image).resize((280, 280)).save(buf, format="PNG")
    return buf.getvalue()


def png_to_class_ms(predictor: Any, png: bytes, repeats: int = 200, burn_in: int = 20) -> float:
    """The single-image latency after load: median ms of `predictor.predict_files([png])` (decode,
    prepare, blank rule, model, top-k), for any ImagePredictor (torch or onnxruntime)."""
    return 1000 * statistics.median(_timed(lambda: predictor.predict_files([png]), repeats=repeats, burn_in=burn_in))


def _timed(fn: Callable[[], Any], repeats: int = REPEATS, burn_in: int = BURN_IN) -> list[float]:
    for _ in range(burn_in):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def run_one(path: str, cfg: Config, target: float) -> dict[str, Any]:
    """Train and measure one path ('classic' or 'mnistlab') in this process."""
    from mnistlab.data.loader import build_bundle, num_batches
    from mnistlab.data.raw import load_raw
    from mnistlab.runs.session import build_model
    from mnistlab.device import resolve_device
    from mnistlab.training.trainer import Trainer, lr_at

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    raw = load_raw(cfg.dataset, data_dir=cfg.data_dir)
    data = build_bundle(raw.train_x, raw.train_y, raw.test_x, raw.test_y, raw.class_names, name=cfg.dataset,
                        val_size=0, normalize="standard", device=device, seed=cfg.seed)
    model = build_model(cfg, data).to(device)
    total = cfg.total_steps(num_batches(len(data.train), cfg.batch_size))
    epochs = math.ceil(total / num_batches(len(data.train), cfg.batch_size))
    curve: list[tuple[int, float, float]] = []  # (epoch, train seconds so far, test accuracy)
    result: dict[str, Any] = {"path": path, "seed": cfg.seed, "model": cfg.model, "dataset": cfg.dataset}

    if path == "classic":
        from mnistlab.training.trainer import build_optimizer

        mean, std = data.mean[0], data.std[0]
        train_ds = ClassicDataset(raw.train_x, raw.train_y, mean, std)
        test_loader = torch.utils.data.DataLoader(ClassicDataset(raw.test_x, raw.test_y, mean, std), batch_size=1000)
        opt = build_optimizer(model, cfg)
        steps_per_epoch = math.ceil(len(train_ds) / cfg.batch_size)

        def lr_for_step(step: int) -> float:
            return lr_at(step, total, cfg.peak_lr, cfg.schedule, cfg.warmup, steps_per_epoch, cfg.step_every, cfg.gamma)

        def loader_for_epoch(epoch: int):
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
            return torch.utils.data.DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, generator=g)

        def on_epoch_end(epoch: int, seconds: float) -> None:
            curve.append((epoch + 1, seconds, classic_test(model, test_loader)))

        train_s = classic_train(model, opt, loader_for_epoch, epochs, lr_for_step, cfg.loss, on_epoch_end=on_epoch_end,
                                max_steps=total, label_smoothing=cfg.effective_label_smoothing)
        infer = _timed(lambda: classic_test(model, test_loader), repeats=3, burn_in=1)
        model.eval()
    else:
        trainer = Trainer(model, data, cfg)
        from mnistlab.training.trainer import Hooks

        def on_epoch_end(record: dict) -> None:
            curve.append((record["epoch"], trainer.state.train_seconds, trainer.evaluate(data.test, tta=cfg.effective_tta).acc))

        trainer.fit(Hooks(on_epoch_end=on_epoch_end))
        train_s = trainer.state.train_seconds
        infer = _timed(lambda: trainer.evaluate(data.test), repeats=3, burn_in=1)
        if cfg.effective_tta:
            result["tta_test_seconds"] = trainer.evaluate(data.test, tta=True).seconds
    result["infer_images_per_s"] = len(data.test) / statistics.median(infer)
    # The test evaluation that a run ends with: with TTA when the config asks for it.
    result["test_seconds"] = result.get("tta_test_seconds", statistics.median(infer))

    # Single-image latency after load: one PNG through the predictor (decode, prepare, forward).
    result["single_image_ms"] = _single_image_latency(model, data, cfg, raw.test_x[0])
    run_epochs = cfg.epochs if cfg.epochs is not None else total / num_batches(len(data.train), cfg.batch_size)
    images_seen = len(data.train) * min(run_epochs, len(curve)) if not cfg.steps else cfg.steps * cfg.batch_size
    reached = next((c for c in curve if c[2] >= target), None)
    result.update(
        train_seconds=train_s,
        train_plus_test_s=train_s + result["test_seconds"],
        train_images_per_s=images_seen / train_s,
        final_acc=curve[-1][2] if curve else None,
        curve=curve,
        target=target,
        time_to_target_s=reached[1] if reached else None,
        epochs_to_target=reached[0] if reached else None,
        peak_rss_mb=_peak_rss_mb(),
    )
    return result


def _single_image_latency(model: torch.nn.Module, data: Any, cfg: Config, image: np.ndarray) -> float:
    from mnistlab.evaluation.predict import Predictor
    from mnistlab.training.trainer import uses_convolutions

    dev = torch.device("cpu")
    model = model.to(dev).eval()
    if uses_convolutions(model):
        model.to(memory_format=torch.channels_last)
    c = data.in_shape[0]
    predictor = Predictor(model, data.class_names, torch.tensor(data.mean).view(1, c, 1, 1),
                          torch.tensor(data.std).view(1, c, 1, 1), data.in_shape, cfg.loss, dev)
    return png_to_class_ms(predictor, digit_png(image), repeats=50, burn_in=10)


# ----------------------------------------------------------------------------- driver


def _worker_main() -> int:
    """The subprocess of run_in_subprocess: the spec as JSON on stdin, the result as JSON to the spec's "out" file."""
    from pathlib import Path

    spec = json.loads(sys.stdin.read())
    cfg = Config.from_dict(spec["config"])
    Path(spec["out"]).write_text(json.dumps(run_one(spec["path"], cfg, spec["target"])))
    return 0


def run_in_subprocess(path: str, cfg: Config, target: float, timeout: float = 3600) -> dict[str, Any]:
    """Run one measured training in a fresh Python process and return its JSON result."""
    with tempfile.TemporaryDirectory(prefix="mnistlab-bench-") as tmp:
        result_file = os.path.join(tmp, "result.json")
        spec = json.dumps({"path": path, "config": cfg.to_dict(), "target": target, "out": result_file})
        proc = subprocess.run([sys.executable, "-m", "mnistlab.bench"], input=spec, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0 or not os.path.exists(result_file):
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"bench worker ({path}, seed {cfg.seed}) failed: {tail}")
        with open(result_file, encoding="utf-8") as f:
            return json.load(f)


def summarize(runs: list[dict]) -> dict[str, Any]:
    """Mean and std over seeds of each numeric measure."""
    out: dict[str, Any] = {"seeds": [r["seed"] for r in runs]}
    for key in ("time_to_target_s", "train_seconds", "train_plus_test_s", "final_acc", "train_images_per_s",
                "infer_images_per_s", "single_image_ms", "peak_rss_mb"):
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = {"mean": statistics.fmean(values) if values else None,
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "min": min(values) if values else None, "max": max(values) if values else None,
                    "n": len(values), "of": len(runs)}
    return out


def environment() -> dict[str, Any]:
    """Machine, torch version and threads: printed with every result."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(), "processor": platform.processor(),
        "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def benchmark(cfg: Config, target: float, seeds: list[int], baseline_seeds: list[int],
              on_result: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Run the baseline and mnistlab for the given seeds (interleaved) and summarise both."""
    results: dict[str, list[dict]] = {"classic": [], "mnistlab": []}
    for seed in sorted(set(seeds) | set(baseline_seeds)):
        seeded = Config.from_dict({"seed": seed, "save_run": False, "figures": False}, base=cfg)
        for path in ("classic", "mnistlab"):
            if (path == "classic" and seed in baseline_seeds) or (path == "mnistlab" and seed in seeds):
                r = run_in_subprocess(path, seeded, target)
                results[path].append(r)
                if on_result:
                    on_result(r)
    summary = {path: summarize(runs) for path, runs in results.items() if runs}
    ratios = {}
    if "classic" in summary and "mnistlab" in summary:
        for key in ("time_to_target_s", "train_seconds", "train_plus_test_s", "train_images_per_s", "infer_images_per_s",
                    "single_image_ms", "peak_rss_mb"):
            a, b = summary["classic"][key]["mean"], summary["mnistlab"][key]["mean"]
            ratios[key] = b / a if a and b else None
    return {"environment": environment(), "config": cfg.to_dict(), "target": target, "runs": results,
            "summary": summary, "ratios_b_over_a": ratios}


def format_table(report: dict[str, Any]) -> str:
    """A Markdown table of the summary, with the (b)/(a) ratio column."""
    def cell(s: dict | None, spec: str, scale: float = 1.0) -> str:
        if not s or s.get("mean") is None:
            return "not reached" if s and s.get("of") else "-"
        text = f"{s['mean'] * scale:{spec}} ± {s['std'] * scale:{spec}}"
        if s["n"] < s["of"]:
            text += f" ({s['n']}/{s['of']} reached)"
        return text

    rows = [
        ("time to target (s)", "time_to_target_s", ".2f", 1.0),
        ("training time (s)", "train_seconds", ".2f", 1.0),
        ("training + test evaluation (s)", "train_plus_test_s", ".2f", 1.0),
        ("final test accuracy (%)", "final_acc", ".2f", 100.0),
        ("training images/s", "train_images_per_s", ",.0f", 1.0),
        ("inference images/s (batched)", "infer_images_per_s", ",.0f", 1.0),
        ("single image, PNG to class (ms)", "single_image_ms", ".2f", 1.0),
        ("peak RSS (MB)", "peak_rss_mb", ",.0f", 1.0),
    ]
    s = report["summary"]
    ratios = report["ratios_b_over_a"]
    lines = ["| measure | (a) classic loop | (b) mnistlab | (b)/(a) |", "|---|---|---|---|"]
    for label, key, spec, scale in rows:
        ratio = ratios.get(key)
        lines.append(f"| {label} | {cell(s.get('classic', {}).get(key), spec, scale)} | "
                     f"{cell(s.get('mnistlab', {}).get(key), spec, scale)} | {'-' if ratio is None else f'{ratio:.2f}'} |")
    return "\n".join(lines)

