"""`mnistlab predict RUN IMAGE...` or `--csv FILE`: labels for images or pixel rows."""

from __future__ import annotations

import argparse
import json
import sys

from mnistlab.cli._common import EXIT_ERROR, Formatter, check_positive, err, out, warn
from mnistlab.errors import ConfigError, DataError, with_name

# Everything this command writes is complete when it returns: the CLI may end the process at once (cli.entry).
FAST_EXIT = True


def cmd_predict(args: argparse.Namespace) -> int:
    """Print a label per image (or the ImageId,Label table of --csv); one error line per unreadable input.

    Exit 1 when an input could not be read (unless --skip-bad) or when every input read is blank.
    """
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
        return _predict_csv(args, predictor)
    results = predictor.predict_files(args.images, top_k=args.top_k, errors="report")
    report = warn if args.skip_bad else err
    if args.json:
        out(json.dumps(results, indent=2))
        for r in results:
            if "error" in r:
                report(f"{r['file']}: {r['error']}")
    else:
        for r in results:  # stdout and stderr flushed line by line: a terminal shows them in input order
            if "error" in r:
                report(f"{r['file']}: {r['error']}")
            elif r["blank"]:
                out(f"{r['file']}: no digit found (blank image)")
            else:
                top = ", ".join(f"{c['label']} {100 * c['prob']:.1f}%" for c in r["top"])
                out(f"{r['file']}: {r['label']}   ({top})")
    read = [r for r in results if "error" not in r]
    if read and all(r["blank"] for r in read):
        n = len(read)
        err(with_name(read[0]["file"], "no digit found (the image is blank)") if n == 1
            else f"no digit found in any of the {n} {'readable ' if len(read) < len(results) else ''}images (all blank)")
        return EXIT_ERROR
    if not read:
        if args.skip_bad:
            err(f"none of the {len(results)} images could be read" if len(results) > 1 else "the image could not be read")
        return EXIT_ERROR
    if len(read) < len(results) and not args.skip_bad:
        return EXIT_ERROR
    return 0


def _predict_csv(args: argparse.Namespace, predictor) -> int:
    """--csv: the ImageId,Label table, written only when every row was read (or with --skip-bad)."""
    from mnistlab.data.custom import fit_to_model, read_pixel_rows
    from mnistlab.data.images import find_blanks
    from mnistlab.fileio import atomic_write_text

    rows = read_pixel_rows(args.csv)  # a label column, if present, is ignored
    x = fit_to_model(rows.x, predictor.in_shape, args.csv, model=args.run)
    num_bad = int(rows.bad.sum())
    if num_bad:
        if not args.skip_bad or num_bad == len(x):
            raise DataError(f"{rows.message(args.csv)}; nothing written" + ("" if num_bad == len(x) else
                            " (--skip-bad writes the table with those rows labelled as blank images)"))
        warn(f"{rows.message(args.csv)}; --skip-bad: their ImageIds are in the table, labelled as blank images (guesses)")
    # The submission format wants a label on every row: blank rows keep their (guessed) label, and
    # one line says how many there were. An unreadable row is all zeros, so it gets a blank image's label.
    num_blank = int((find_blanks(x) & ~rows.bad).sum())
    num_read = len(x) - num_bad
    preds = predictor.classify(x)
    table = "ImageId,Label\n" + "".join(f"{i},{predictor.class_names[c]}\n" for i, c in enumerate(preds.tolist(), 1))
    if args.out:
        atomic_write_text(args.out, table)
        out(f"wrote {len(preds):,} predictions to {args.out}")
    else:
        sys.stdout.write(table)
        sys.stdout.flush()
    if num_blank:
        warn(f"{args.csv}: {num_blank:,} of {num_read:,} {'readable ' if num_bad else ''}rows are blank (no ink); "
             "their labels are guesses")
    return EXIT_ERROR if num_blank and num_blank == num_read else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mnistlab predict` to the CLI."""
    p = subparsers.add_parser("predict", help="classify image files (PNG, JPEG, ...) prepared like MNIST", formatter_class=Formatter,
                              description="Classify images prepared like MNIST. An image with no ink is reported as blank "
                                          "(\"no digit found\"; JSON \"blank\": true, no class), and the exit status is 1 "
                                          "when every input is blank. --csv rows always get a label (the submission format "
                                          "needs one); blank rows are counted in one warning line.\n\n"
                                          "Unreadable inputs: every readable image is still classified and printed (in the "
                                          "order given); each unreadable one gets a line `mnistlab: error: FILE: reason` on "
                                          "stderr (JSON: {\"file\", \"error\"} in its place), and the exit status is 1. "
                                          "A --csv file with unreadable rows (wrong number of values, not an integer, "
                                          "outside 0..255, NaN) gets one error line counting and listing them, and no table "
                                          "is written (stdout or --out). Rows are numbered as ImageId: the data rows from 1, "
                                          "blank lines not counted; the first bad row's line in the file is given too. "
                                          "--skip-bad goes on past them: unreadable images and rows are warnings, the exit "
                                          "status is 0 if anything was classified, and the --csv table keeps every ImageId, "
                                          "an unreadable row labelled as a blank (all-black) image would be, a guess.")
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
    p.add_argument("--skip-bad", action="store_true",
                   help="go on past unreadable images or --csv rows: warnings instead of errors, exit 0, and the --csv "
                        "table written with every ImageId (an unreadable row gets a blank image's label)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_predict)
