"""The speedrun on a GPU, end to end: time to 99% (training plus the test evaluation) per seed.

    python benchmarks/gpu_speedrun.py                       # cuda, bf16 autocast, 5 seeds
    python benchmarks/gpu_speedrun.py --compile             # and torch.compile (compiled once, in the warm-up)
    python benchmarks/gpu_speedrun.py --device cpu --runs 1 --train-size 2048   # the same path on a CPU (a check)

What runs is mnistlab's own trainer with `--preset speedrun` (fastcnn, 1 epoch, 3 test views) and:
- the data loaded onto the device once (uint8 pixels there, normalised per batch on the device);
- channels_last (the trainer's default for convolutional models);
- bf16 autocast (`--no-bf16` for float32), `--compile` for torch.compile;
- no host sync per step: on a GPU the trainer reads whether the loss is finite every
  FINITE_CHECK_EVERY steps (training/trainer.py), and the clock is read after the device's queue
  has drained.
A first run, not counted, warms up cuDNN's algorithm choice, the allocator and (with --compile) the
compiler; it is reported on its own line. The runs counted follow it, one per seed, in this process:
the timings are of training plus the test evaluation, with the device synchronised before each clock
read; the process's start-up, torch's import and the data's loading are printed separately.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

STARTED = time.perf_counter()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a check of the script")
    p.add_argument("--runs", type=int, default=5, help="seeds 0..RUNS-1, after one warm-up run (default: 5)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (compiled in the warm-up run)")
    p.add_argument("--no-bf16", dest="bf16", action="store_false", help="float32 instead of bf16 autocast")
    p.add_argument("--train-size", type=int, default=None, help="train on the first N images (a quick check, not the benchmark)")
    p.add_argument("--json", default=None, metavar="FILE", help="write the results here as JSON")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")

    import torch

    from mnistlab import Config, Trainer, create_model, load_dataset
    from mnistlab.config import preset_values
    from mnistlab.device import resolve_device, synchronize
    from mnistlab.errors import MnistlabError

    imported = time.perf_counter()
    try:
        device = resolve_device(args.device)
    except MnistlabError as e:
        print(f"gpu_speedrun: error: {e}", file=sys.stderr)
        return 2
    base = Config.from_dict({**preset_values("speedrun", "mnist"), "device": str(device), "bf16": args.bf16,
                             "compile": args.compile, "save_run": False, "figures": False})
    data = load_dataset("mnist", device=device, val_size=0, train_size=args.train_size)
    synchronize(device)
    loaded = time.perf_counter()

    def one(seed: int) -> dict:
        cfg = Config.from_dict({"seed": seed}, base=base)
        torch.manual_seed(seed)
        model = create_model(cfg.model, data.num_classes, data.in_shape, **cfg.model_overrides()).to(device)
        synchronize(device)
        start = time.perf_counter()
        history = Trainer(model, data, cfg).fit()  # the loop `mnistlab train` runs
        synchronize(device)
        wall = time.perf_counter() - start
        if history.test is None:
            raise SystemExit("gpu_speedrun: error: the run has no test result")
        return {"seed": seed, "test_acc": history.test.acc, "train_s": history.train_seconds,
                "test_s": history.test_seconds, "train_plus_test_s": history.train_seconds + history.test_seconds,
                "fit_wall_s": wall}

    warm = one(1000)  # not counted: cuDNN, the allocator, the compiler
    runs = [one(seed) for seed in range(args.runs)]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    bf16 = args.bf16 and device.type == "cuda"  # the trainer autocasts on CUDA only
    total = [r["train_plus_test_s"] for r in runs]
    accs = [r["test_acc"] for r in runs]
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "device": name, "torch": torch.__version__, "bf16": bf16,
        "compile": args.compile, "train_size": len(data.train), "startup_and_imports_s": imported - STARTED,
        "data_s": loaded - imported, "warmup_run": warm, "runs": runs,
        "median_train_plus_test_s": statistics.median(total), "mean_test_acc": statistics.fmean(accs),
        "min_test_acc": min(accs), "command": "python benchmarks/gpu_speedrun.py " + " ".join(argv or sys.argv[1:]),
    }
    print(f"{report['date']}, {name}, torch {torch.__version__}, bf16 autocast {bf16}, compile {args.compile}")
    print(f"start-up and imports {report['startup_and_imports_s']:.2f} s, data onto the device {report['data_s']:.2f} s")
    print(f"warm-up run (not counted): {warm['train_plus_test_s']:.3f} s, {100 * warm['test_acc']:.2f}%")
    for r in runs:
        print(f"seed {r['seed']}: training {r['train_s']:.3f} s + test {r['test_s']:.3f} s = "
              f"{r['train_plus_test_s']:.3f} s, {100 * r['test_acc']:.2f}%")
    print(f"median training + test {report['median_train_plus_test_s']:.3f} s; accuracy mean "
          f"{100 * report['mean_test_acc']:.2f}%, lowest {100 * report['min_test_acc']:.2f}%")
    if args.json:
        from mnistlab.fileio import atomic_write_json

        atomic_write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
