"""`mnistlab export RUN --format onnx`: a self-contained .onnx file, checked against PyTorch (the `onnx` extra);
`--format web`: a static folder with the draw-a-digit page predicting in the browser (onnxruntime-web)."""

from __future__ import annotations

import argparse

from mnistlab.cli._common import Formatter, out, warn


def cmd_export(args: argparse.Namespace) -> int:
    """Export, print the check's figures (and int8's accuracy and speed change), then what was written."""
    if args.format == "web":
        return _export_web(args)
    from mnistlab.export.onnx_export import DEFAULT_OPSET, export_onnx

    r = export_onnx(args.run, out=args.out, opset=DEFAULT_OPSET if args.opset is None else args.opset,
                    quantize=args.quantize, on_step=out, tta=args.tta)
    _say_check(r)
    if args.quantize:
        change = 100 * (r["int8_accuracy"] - r["onnx_accuracy"])
        out(f"int8: test accuracy {100 * r['int8_accuracy']:.2f}% ({change:+.2f} points vs fp32), same class as fp32 "
            f"{100 * r['int8_agreement']:.2f}%; {r['int8_images_per_s']:,.0f} vs {r['fp32_images_per_s']:,.0f} images/s "
            f"batched ({r['int8_images_per_s'] / r['fp32_images_per_s']:.2f}x); {r['bytes']:,} vs {r['fp32_bytes']:,} bytes")
    out(f"wrote {r['out']} ({r['bytes'] / 1024:,.0f} KiB)")
    return 0


def _export_web(args: argparse.Namespace) -> int:
    from mnistlab.errors import ExportError
    from mnistlab.serve.web import export_web

    if args.quantize:
        raise ExportError("--quantize applies to --format onnx; the web page runs the float32 graph")
    r = export_web(args.run, out=args.out, opset=args.opset, tta=args.tta, on_step=out)
    if r["assumptions"]:
        warn(r["assumptions"])
    if "max_prob_diff" in r:
        _say_check(r)
    out(f"wrote {r['out']}/ ({', '.join(r['files'])}; {r['bytes'] / 2**20:,.1f} MiB)",
        f"serve it with any static server, e.g. python -m http.server -d {r['out']} 8000, and open "
        "http://localhost:8000/ (from file:// the browser cannot load the WebAssembly runtime)")
    return 0


def _say_check(r: dict) -> None:
    out(f"onnxruntime vs PyTorch on {r['test_images']:,} test images: max probability difference {r['max_prob_diff']:.2e}, "
        f"same class {100 * r['agreement']:.2f}%",
        f"test accuracy: PyTorch {100 * r['torch_accuracy']:.2f}%, ONNX fp32 {100 * r['onnx_accuracy']:.2f}%")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mnistlab export` to the CLI."""
    p = subparsers.add_parser(
        "export", help="export a run to ONNX (checked against PyTorch), or as a static draw-a-digit page (--format web)",
        formatter_class=Formatter,
        description="Export a run's model to one .onnx file: float32 images (N, C, H, W) in [0, 1] in, logits out, the "
                    "normalisation inside the graph and the class names, data set, test accuracy and image preparation "
                    "in its metadata. The export is checked on the run's whole test set (onnxruntime against PyTorch) "
                    "and nothing is written unless it matches. Needs the onnx extra: pip install 'mnistlab[onnx]'. "
                    "`mnistlab predict FILE.onnx IMAGE...` and `mnistlab serve FILE.onnx` then run without torch. "
                    "--format web writes a folder instead: serve's draw-a-digit page (index.html), model.onnx and "
                    "onnxruntime-web (vendored, MIT) that predicts in the browser; serve it from any static file "
                    "server. RUN may then also be an .onnx file, used as it is.")
    p.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    p.add_argument("--format", choices=("onnx", "web"), default="onnx",
                   help="onnx: one .onnx file; web: a static folder with the page, the model and onnxruntime-web")
    p.add_argument("--out", metavar="PATH", help="where to write (default: RUN/model.onnx, or model.int8.onnx; for "
                                                 "web, the folder RUN/web, or NAME-web beside an .onnx file; an "
                                                 "earlier web export there is replaced whole)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset version; not given: 17 (with --format web, an .onnx RUN keeps its own)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="the run's test-time augmentation views inside the graph (default: as the run was tested, "
                        "so the file scores the run's accuracy; --no-tta: one pass per image, 5x faster, and the "
                        "accuracy measured here goes in the metadata)")
    p.add_argument("--quantize", choices=("int8",), help="also quantize with onnxruntime (static QDQ; dynamic for "
                                                         "recurrent models) and report accuracy and speed against fp32")
    p.set_defaults(func=cmd_export)
