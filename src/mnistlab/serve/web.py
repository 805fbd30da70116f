"""`mnistlab export RUN --format web`: the draw-a-digit page as a static folder, predicting in the browser.

The folder holds `index.html` (serve's own page.html, in its "web" mode: the drawing is prepared by
the page's JavaScript port of `prepare_image` and classified by onnxruntime-web, with no request to
any server), the run's `model.onnx`, onnxruntime-web's wasm build (vendored in `web_vendor/`, checked
against the sha256 sums pinned here), its licence, and `mnistlab-web.json` (what was written, which
also marks the folder as an export that a later export may replace).

The folder is built in a temporary sibling and renamed into place: an error leaves nothing behind and
an older export stays whole until the new one is complete. Importing this module imports neither
torch nor Starlette; exporting a checkpoint (not an .onnx file) imports torch through `onnx_export`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import lzma
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from mnistlab.errors import ExportError
from mnistlab.export.runtime import OnnxPredictor, is_onnx_path

ORT_WEB_VERSION = "1.31.1"
# The vendored files (web_vendor/README.md says where each comes from): name in the folder -> sha256.
RUNTIME = {
    "ort.wasm.min.js": "b8a78c408c40da65fdc8ba0846f7b2948e92a4c6d6b23cc8e4165e428ad95443",
    "ort-wasm-simd-threaded.mjs": "30ed0b5cd1182ede931fea448afb567d4dc705ec957af09f108a2be5f770dac3",
    "ort-wasm-simd-threaded.wasm": "4b884c203b0fa48d057be3332c65513ff85aa3c5bddd6946acc0fab7ecda001d",
}
MANIFEST = "mnistlab-web.json"
LICENSE_NAME = "LICENSE-onnxruntime-web.txt"
RUNTIME_MARK = "<!--mnistlab-runtime-->"
OPTIONS_DEFAULT = '<script id="mnistlab-options" type="application/json">{"mode": "server"}</script>'
# The static page loads nothing from anywhere else either; 'wasm-unsafe-eval' lets it compile onnxruntime's wasm.
CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; connect-src 'self'; "
       "style-src 'unsafe-inline'; img-src 'self' data: blob:; form-action 'none'; base-uri 'none'")
README = """This folder is mnistlab's draw-a-digit page for {model} on {dataset}, predicting in the browser
with onnxruntime-web {version} (WebAssembly, MIT licence: {license}). No Python runs behind it.

Serve it from any static file server and open the address it prints, for example, in this folder:

    python -m http.server 8000      # then open http://localhost:8000/

Opening index.html straight from the disk (file://) does not work: browsers refuse to load the
WebAssembly runtime from file:// pages, and the page says so.
"""


def default_web_out(source: str | os.PathLike) -> Path:
    """RUN/web for a run folder (or a checkpoint in it); NAME-web beside an .onnx file."""
    p = Path(source)
    if is_onnx_path(p):
        return p.with_name(p.stem + "-web")
    return (p if p.is_dir() else p.parent) / "web"


def vendored_runtime() -> dict[str, bytes]:
    """The onnxruntime-web files, decompressed and checked against the pinned sums."""
    folder = resources.files("mnistlab.serve").joinpath("web_vendor")
    out = {}
    for name, digest in RUNTIME.items():
        stored = name + ".xz" if name.endswith(".wasm") else name
        try:
            data = folder.joinpath(stored).read_bytes()
            if stored.endswith(".xz"):
                data = lzma.decompress(data)
        except (OSError, lzma.LZMAError) as e:
            raise ExportError(f"the vendored onnxruntime-web file {stored} is missing or unreadable ({e}); "
                              "reinstall mnistlab") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise ExportError(f"the vendored onnxruntime-web file {name} does not have its pinned sha256; "
                              "reinstall mnistlab (or run tools/vendor_onnxruntime_web.py)")
        out[name] = data
    return out


def render_page(options: dict[str, Any]) -> str:
    """serve's page.html in web mode: `options` embedded as JSON, onnxruntime-web loaded before the page's script."""
    page = resources.files("mnistlab.serve").joinpath("page.html").read_text(encoding="utf-8")
    if OPTIONS_DEFAULT not in page or RUNTIME_MARK not in page:
        raise ExportError("page.html lacks its options block or runtime mark (a broken install?)")
    blob = json.dumps(options).replace("<", "\\u003c")  # nothing in it can close the script element
    page = page.replace(OPTIONS_DEFAULT, f'<script id="mnistlab-options" type="application/json">{blob}</script>')
    page = page.replace(RUNTIME_MARK, '<script src="ort.wasm.min.js"></script>')
    return page.replace('<meta charset="utf-8">',
                        f'<meta charset="utf-8">\n<meta http-equiv="Content-Security-Policy" content="{CSP}">', 1)


def _check_target(out: Path) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ExportError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ExportError(f"--out {out}: a folder that is neither empty nor an earlier web export (no {MANIFEST}); "
                          "choose another --out or remove it")
    if not out.parent.is_dir():
        raise ExportError(f"--out {out}: the folder {out.parent} does not exist")


def export_web(source: str | os.PathLike, out: str | os.PathLike | None = None, opset: int | None = None,
               tta: bool | None = None, on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write the static page folder for a run, a checkpoint or an .onnx file; returns what was written.

    A run or checkpoint is exported to ONNX first (`export_onnx`: checked against PyTorch on the test
    set, `opset` and `tta` as there); an .onnx file is used as it is. Every failure is an
    ExportError (or the CheckpointError of a bad file) and leaves no folder behind.
    """
    say = on_step or (lambda _: None)
    src = Path(source)
    out = Path(out) if out is not None else default_web_out(src)
    if is_onnx_path(src) and (opset is not None or tta is not None):
        raise ExportError(f"{src} is already an ONNX graph: --opset and --tta apply when exporting a run or checkpoint")
    if not src.exists():
        raise ExportError(f"{src}: no such run folder, checkpoint or .onnx file")
    _check_target(out)
    runtime = vendored_runtime()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    report: dict[str, Any] = {}
    try:
        model_path = tmp / "model.onnx"
        if is_onnx_path(src):
            predictor = OnnxPredictor.from_file(src)
            shutil.copyfile(src, model_path)
        else:
            from mnistlab.export.onnx_export import DEFAULT_OPSET, export_onnx

            report = export_onnx(src, out=model_path, opset=DEFAULT_OPSET if opset is None else opset, tta=tta,
                                 on_step=say)
            predictor = OnnxPredictor.from_file(model_path)
        c, h, w = predictor.in_shape
        if c != 1 or h != w:
            raise ExportError(f"{src}: the web page draws square one-channel digits; this model takes {c}x{h}x{w} "
                              "images (use `mnistlab serve` for it)")
        card = predictor.card()
        card.update(checkpoint=src.name if is_onnx_path(src) else card["checkpoint"],
                    run=(src.parent if is_onnx_path(src) or src.is_file() else src).resolve().name)
        options = {"mode": "web", "model": "model.onnx", "card": card, "probabilities": predictor.rule}
        files = {"index.html": render_page(options).encode(), **runtime}
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        license_text = resources.files("mnistlab.serve").joinpath("web_vendor", "LICENSE").read_bytes()
        (tmp / LICENSE_NAME).write_bytes(license_text)
        (tmp / "README.txt").write_text(README.format(model=card["model"], dataset=card["dataset"], version=ORT_WEB_VERSION,
                                                      license=LICENSE_NAME), encoding="utf-8")
        written = sorted(p.name for p in tmp.iterdir()) + [MANIFEST]
        manifest = {"format": 1, "onnxruntime_web": ORT_WEB_VERSION, "model": card,
                    "files": {n: hashlib.sha256((tmp / n).read_bytes()).hexdigest() for n in written if n != MANIFEST}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for f in tmp.iterdir():  # mkdtemp's 0700 (and the atomic write's 0600) would hide them from a server's user
            os.chmod(f, 0o644)
        os.chmod(tmp, 0o755)
        _replace_folder(tmp, out)
    except OSError as e:
        raise ExportError(f"--out {out}: cannot write the folder ({e.strerror or e}); nothing written") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    report.update(out=str(out), files=written, bytes=sum((out / n).stat().st_size for n in written), card=card,
                  assumptions=predictor.assumptions())  # an .onnx file from elsewhere: what the page assumes
    return report


def _replace_folder(tmp: Path, out: Path) -> None:
    """Rename the complete folder into place; an earlier export (or an empty folder) is swapped out, then removed."""
    if not out.exists():
        os.rename(tmp, out)
        return
    _check_target(out)  # again, just before touching it
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    os.rmdir(old)
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(old, out)  # put the earlier export back
        raise
    with contextlib.suppress(OSError):
        shutil.rmtree(old)
