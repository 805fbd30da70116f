"""`mnistlab predict RUN IMAGE...` or `--csv FILE`: labels for images or pixel rows."""

from __future__ import annotations

import argparse
import json
import sys

from mnistlab.cli._common import EXIT_ERROR, Formatter, check_positive, err, out, warn
from mnistlab.errors import ConfigError

# Everything this command writes is complete when it returns: the CLI may end the process at once (cli.entry).
FAST_EXIT = True


def cmd_predict(args: argparse.Namespace) -> int:
    """Print a label per image (or the ImageId,Label table of --csv); exit 1 when every input is blank."""
    from mnistlab.data.images import find_blanks
    from mnistlab.export.runtime import load_predictor

    if not args.images and not args.csv:
        raise ConfigError("predict needs IMAGE files or --csv FILE (rows of pixels, e.g. the Digit Recognizer test.csv)")
    if args.images and args.csv:
        raise ConfigError("give IMAGE files or --csv FILE, not both")
    if args.out and not args.csv:
        raise ConfigError("--out writes the ImageId,Label table of --csv; for images use --json")
    check_positive("--top-k", args.top_k)
    predictor = load_predictor(args.run, device=args.device, tta=args.tta)  # an .onnx file runs on onnxruntime, without torch
    if predictor.assumptions():  # an .onnx file from elsewhere
        warn(predictor.assumptions())
    if args.csv:
        from mnistlab.data.custom import fit_to_model, read_pixel_csv
        from mnistlab.fileio import atomic_write_text

        x, _ = read_pixel_csv(args.csv)  # a label column, if present, is ignored
        x = fit_to_model(x, predictor.in_shape, args.csv)
        # The submission format wants a label on every row: blank rows keep their (guessed) label,
        # and one line says how many there were.
        num_blank = int(find_blanks(x).sum())
        preds = predictor.classify(x)
        table = "ImageId,Label\n" + "".join(f"{i},{predictor.class_names[c]}\n" for i, c in enumerate(preds.tolist(), 1))
        if args.out:
            atomic_write_text(args.out, table)
            out(f"wrote {len(preds):,} predictions to {args.out}")
        else:
            sys.stdout.write(table)
            sys.stdout.flush()
        if num_blank:
            warn(f"{args.csv}: {num_blank:,} of {len(preds):,} rows are blank (no ink); their labels are guesses")
        return EXIT_ERROR if num_blank and num_blank == len(preds) else 0
    results = predictor.predict_files(args.images, top_k=args.top_k)
    if args.json:
        out(json.dumps(results, indent=2))
    else:
        for r in results:
            if r["blank"]:
                out(f"{r['file']}: no digit found (blank image)")
                continue
            top = ", ".join(f"{c['label']} {100 * c['prob']:.1f}%" for c in r["top"])
            out(f"{r['file']}: {r['label']}   ({top})")
    if all(r["blank"] for r in results):
        n = len(results)
        err("no digit found (the image is blank)" if n == 1 else f"no digit found in any of the {n} images (all blank)")
        return EXIT_ERROR
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mnistlab predict` to the CLI."""
    p = subparsers.add_parser("predict", help="classify image files (PNG, JPEG, ...) prepared like MNIST", formatter_class=Formatter,
                              description="Classify images prepared like MNIST. An image with no ink is reported as blank "
                                          "(\"no digit found\"; JSON \"blank\": true, no class), and the exit status is 1 "
                                          "when every input is blank. --csv rows always get a label (the submission format "
                                          "needs one); blank rows are counted in one warning line.")
    p.add_argument("run", metavar="RUN_OR_CHECKPOINT", help="a run folder, a .safetensors checkpoint or an exported .onnx file")
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.add_argument("--csv", metavar="FILE", help="classify the rows of a pixel CSV (pixel0..pixelN, label column optional)")
    p.add_argument("--out", metavar="FILE", help="with --csv: write ImageId,Label rows (numbered from 1) here, not to stdout")
    p.add_argument("--top-k", type=int, default=3,
                   help="how many classes to list per image (at least 1; more than the model has lists them all)")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average over the test-time augmentation views (default: as the run was tested, e.g. 5 views "
                        "for fastcnn; --no-tta: one pass per image)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_predict)
