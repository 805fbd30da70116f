"""The Starlette app: the page, `POST /api/predict`, `GET /api/model` and `GET /healthz`.

Every request body is read with a cap (413 beyond it); an image's size is read from its header
before it is decoded (413 for a decompression bomb); only a few raster formats are opened at all
(415 for other content types, 422 for bytes that are none of them); malformed JSON, base64 or pixel
arrays are 422. All errors answer `{"error": "..."}`. Preparation and inference run in worker
threads, never on the event loop: requests that wait together are prepared and classified as one
batch, with one model call (`Batcher`; at most `concurrency` batches at once, one by default).
`app_from_env` builds the same app in each process of `mnistlab serve --workers N`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import io
import json
import logging
import math
import os
import re
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Sequence

import anyio
import numpy as np
from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from mnistlab.data.images import find_blanks, prepared_blanks
from mnistlab.errors import ImageError, MnistlabError
from mnistlab.evaluation.predict import ImagePredictor
from mnistlab.export.runtime import OnnxPredictor, is_onnx_path, load_predictor

if TYPE_CHECKING:
    from mnistlab.runs.checkpoint import Checkpoint

log = logging.getLogger("mnistlab.serve")
_BYTES_NAME = re.compile(r"^<\d+ bytes>: ")  # how mnistlab.data.images names encoded bytes in its errors

MAX_BODY = 4 * 1024 * 1024  # bytes in one request body (the --max-body default)
MAX_PIXELS = 16_777_216  # width * height of one uploaded image (4096 x 4096; a 12 MP phone photo fits)
MAX_BATCH = 256  # images in one batch request
# Content type -> the Pillow formats opened for it. Nothing else is ever decoded (no EPS, no SVG).
IMAGE_TYPES = {
    "image/png": ("PNG",), "image/jpeg": ("JPEG",), "image/jpg": ("JPEG",), "image/gif": ("GIF",),
    "image/webp": ("WEBP",), "image/bmp": ("BMP",),
}
RASTER_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP")
PAGE_HEADERS = {
    # The page is self-contained: nothing may load from anywhere else.
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                               "img-src 'self' data: blob:; connect-src 'self'; form-action 'none'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class BadRequest(Exception):
    """A request we refuse: an HTTP status and a one-line message for `{"error": ...}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ----------------------------------------------------------------------------- the model


def load_model(checkpoint: str | os.PathLike, device: str = "cpu", tta: bool | None = None) -> tuple[ImagePredictor, dict[str, Any]]:
    """The predictor for a run folder, a checkpoint or an .onnx file, and its card, from one read of the file."""
    if is_onnx_path(checkpoint):
        predictor = load_predictor(checkpoint, device=device, tta=tta)  # onnxruntime, no torch
        return predictor, model_card(predictor)
    from mnistlab.evaluation.predict import Predictor
    from mnistlab.runs.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)  # the one read: the model and the card both come from it
    predictor = Predictor.from_checkpoint(ckpt, device=device, tta=tta)
    return predictor, model_card(predictor, ckpt)


def model_card(predictor: ImagePredictor, ckpt: Checkpoint | None = None) -> dict[str, Any]:
    """What the page shows about the model: name, data set, test accuracy, parameters, class names.

    `ckpt` is the Checkpoint the predictor was built from (its config and file; not read again). The
    test accuracy is the run's own evaluation.json (or its metrics.jsonl "test" record), and only
    for the checkpoint that `mnistlab train` scored (last.safetensors); otherwise it is None. An .onnx
    file's card comes from its own metadata.
    """
    if isinstance(predictor, OnnxPredictor):
        return predictor.card()
    path = ckpt.path
    accuracy = None
    if path.name == "last.safetensors":
        accuracy = _run_accuracy(path.parent)
    c, h, w = predictor.in_shape
    return {
        "model": ckpt.cfg.model,
        "dataset": ckpt.cfg.dataset,
        "test_accuracy": None if accuracy is None else round(accuracy, 6),  # 0.9899, not float32's 0.98989999
        "parameters": int(sum(p.numel() for p in predictor.model.parameters())),
        "class_names": list(predictor.class_names),
        "input": {"channels": c, "height": h, "width": w},
        "checkpoint": path.name,
        "run": path.parent.name,
    }


def _run_accuracy(run: Path) -> float | None:
    try:
        report = json.loads((run / "evaluation.json").read_text())
        if isinstance(report, dict) and isinstance(report.get("accuracy"), (int, float)):
            return float(report["accuracy"])
    except (OSError, ValueError):
        pass
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("kind") == "test" and isinstance(record.get("test_acc"), (int, float)):
            return float(record["test_acc"])
    return None


@dataclass
class Service:
    """A Predictor and its card; turns request items (bytes or pixel arrays) into answers."""

    predictor: ImagePredictor
    card: dict[str, Any]

    def prepare(self, items: Sequence[bytes | np.ndarray], names: Sequence[str] | None = None) -> np.ndarray:
        """Encoded images (prepared like MNIST) or already-prepared uint8 arrays -> uint8 (N, H, W[, C]).

        `names`: what the request calls each item ("body", "item 3", an uploaded file's name), which
        an ImageError about it then starts with (instead of "<1234 bytes>")."""
        out = []
        for i, x in enumerate(items):
            if isinstance(x, np.ndarray):
                out.append(x)
                continue
            try:
                out.append(self.predictor.prepare([x])[0])
            except ImageError as e:
                if names is None:
                    raise
                raise ImageError(f"{names[i]}: {_BYTES_NAME.sub('', str(e), count=1)}") from None
        return np.stack(out)

    def classify(self, images: np.ndarray, blanks: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Prepared images -> one answer each: blank (the one rule), class, label, probabilities, prepared."""
        p = self.predictor
        blanks = find_blanks(images) if blanks is None else blanks
        probs = p.probabilities(images)
        out = []
        for image, blank, row in zip(images, blanks.tolist(), probs.tolist()):
            entry: dict[str, Any] = {"blank": blank, "class": None, "label": None, "probabilities": None}
            if not blank:
                k = int(np.argmax(row))
                entry.update({"class": k, "label": p.class_names[k],
                              "probabilities": {name: round(v, 6) for name, v in zip(p.class_names, row)}})
            entry["prepared"] = image.reshape(-1).tolist()
            out.append(entry)
        return out

    def answer(self, items: Sequence[bytes | np.ndarray], names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        images = self.prepare(items, names)
        # Images prepared here: preparation ran the blank rule (prepared_blanks); pixel arrays sent
        # ready-made get the rule itself.
        sent = np.array([isinstance(x, np.ndarray) for x in items])
        blanks = prepared_blanks(images)
        if sent.any():
            blanks[sent] = find_blanks(images[sent])
        return self.classify(images, blanks)

    def answer_many(self, requests: Sequence[Sequence[bytes | np.ndarray]],
                    names: Sequence[Sequence[str] | None] | None = None) -> list[list[dict[str, Any]] | Exception]:
        """`answer` for several requests at once, with one model call: per request its answers, or the
        error that only it gets (an image that does not decode fails its own request, not the others)."""
        prepared: list[np.ndarray | Exception] = []
        for r, items in enumerate(requests):
            try:
                prepared.append(self.prepare(items, None if names is None else names[r]))
            except (MnistlabError, MemoryError) as e:
                prepared.append(e)
        good = [(i, x) for i, x in enumerate(prepared) if isinstance(x, np.ndarray)]
        if not good:
            return prepared  # type: ignore[return-value]
        images = np.concatenate([x for _, x in good])
        sent = np.concatenate([[isinstance(v, np.ndarray) for v in requests[i]] for i, _ in good])
        blanks = prepared_blanks(images)
        if sent.any():
            blanks[sent] = find_blanks(images[sent])
        answers = self.classify(images, blanks)
        out: list[list[dict[str, Any]] | Exception] = list(prepared)  # type: ignore[arg-type]
        start = 0
        for i, x in good:
            out[i] = answers[start : start + len(x)]
            start += len(x)
        return out


class Batcher:
    """Runs `Service.answer_many` in worker threads on whatever requests are waiting, so that requests
    arriving together share one thread hop and one model call (micro-batching).

    At most `concurrency` batches run at once; a request that arrives meanwhile waits for the next
    one, which takes every request then waiting (up to `max_items` images). Under load the batches
    grow by themselves; a lone request still goes out at once, without a timer.
    """

    def __init__(self, service: Service, concurrency: int, max_items: int) -> None:
        self.service = service
        self.limiter = anyio.CapacityLimiter(max(1, concurrency))
        self.max_items = max_items
        self.running = 0
        self.waiting: collections.deque[tuple[Sequence[bytes | np.ndarray], Sequence[str] | None, Any]] = collections.deque()
        self.tasks: set[Any] = set()  # the event loop keeps only weak references to tasks

    async def answer(self, items: Sequence[bytes | np.ndarray], names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((items, names, future))
        if self.running < self.limiter.total_tokens:
            self.running += 1
            task = asyncio.ensure_future(self._drain())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self.waiting:
                batch, count = [], 0
                while self.waiting and (not batch or count + len(self.waiting[0][0]) <= self.max_items):
                    batch.append(self.waiting.popleft())
                    count += len(batch[-1][0])
                try:
                    results = await anyio.to_thread.run_sync(self.service.answer_many, [b[0] for b in batch],
                                                             [b[1] for b in batch], limiter=self.limiter)
                except Exception as e:  # unexpected: every request of the batch answers it (a 500)
                    results = [e] * len(batch)
                except BaseException:  # cancelled (the server stops): so are the requests waiting on it
                    for *_, future in batch:
                        future.cancel()
                    raise
                for (*_, future), result in zip(batch, results):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self.running -= 1


# ----------------------------------------------------------------------------- request parsing


async def read_body(request: Request, cap: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes `cap` bytes (Content-Length or counted)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > cap:
        raise BadRequest(413, f"request body is {int(declared):,} bytes, over the limit of {cap:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise BadRequest(413, f"request body is over the limit of {cap:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def check_image(data: bytes, formats: Sequence[str], max_pixels: int, what: str = "image") -> bytes:
    """Open only the header (of one of `formats`): 422 when it is none of them, 413 when too many pixels."""
    if not data:
        raise BadRequest(422, f"{what}: empty image data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's bomb warning: the size check below decides
            with Image.open(io.BytesIO(data), formats=list(formats)) as im:
                width, height = im.size
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        if isinstance(e, UnidentifiedImageError):
            raise BadRequest(422, f"{what}: not a {', '.join(formats)} image") from None
        raise BadRequest(413, f"{what}: image has too many pixels to decode safely") from None
    except Exception as e:  # bad headers raise many types
        raise BadRequest(422, f"{what}: unreadable image header ({type(e).__name__})") from None
    if width * height > max_pixels:
        raise BadRequest(413, f"{what}: image is {width}x{height} = {width * height:,} pixels, "
                              f"over the limit of {max_pixels:,}")
    return data


def decode_base64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise BadRequest(422, f"{what}: \"image\" must be a base64 string")
    if text.startswith("data:"):  # a data URL, as canvas.toDataURL() gives
        head, _, text = text.partition(",")
        if not head.endswith(";base64"):
            raise BadRequest(422, f"{what}: a data URL must be base64-encoded")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(422, f"{what}: \"image\" is not valid base64") from None


def parse_pixels(values: Any, shape: tuple[int, int, int], what: str) -> np.ndarray:
    """A flat list of H*W*C numbers in 0..255 (the model's own input, not re-prepared) -> uint8 (H, W[, C])."""
    c, h, w = shape
    n = c * h * w
    if not isinstance(values, list):
        raise BadRequest(422, f"{what}: \"pixels\" must be a list of {n} numbers")
    if len(values) != n:
        raise BadRequest(422, f"{what}: \"pixels\" must hold {n} numbers ({h}x{w}" + (f"x{c}" if c > 1 else "")
                              + f"), got {len(values)}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 255:
            raise BadRequest(422, f"{what}: \"pixels\" must be numbers from 0 to 255, got {json.dumps(v)[:40]}")
    arr = np.rint(np.asarray(values, dtype=np.float64)).astype(np.uint8)
    return arr.reshape((h, w) if c == 1 else (h, w, c))


def parse_item(item: Any, shape: tuple[int, int, int], max_pixels: int, what: str) -> bytes | np.ndarray:
    if not isinstance(item, dict):
        raise BadRequest(422, f"{what}: expected an object with \"image\" (base64) or \"pixels\" (a list)")
    if ("image" in item) == ("pixels" in item):
        raise BadRequest(422, f"{what}: give exactly one of \"image\" (base64) or \"pixels\" (a list)")
    if "pixels" in item:
        return parse_pixels(item["pixels"], shape, what)
    return check_image(decode_base64(item["image"], what), RASTER_FORMATS, max_pixels, what)


def parse_json(body: bytes, shape: tuple[int, int, int], max_pixels: int, max_batch: int) -> tuple[list, list[str], bool]:
    """-> (items, their names, is_batch). An object is one item ("body"); a list is a batch ("item 0", ...)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest(422, "request body is not valid JSON") from None
    batch = isinstance(doc, list)
    items = doc if batch else [doc]
    if batch and not items:
        raise BadRequest(422, "an empty batch: give at least one item")
    if len(items) > max_batch:
        raise BadRequest(413, f"a batch of {len(items):,} items is over the limit of {max_batch}")
    names = [f"item {i}" if batch else "body" for i in range(len(items))]
    return [parse_item(x, shape, max_pixels, name) for x, name in zip(items, names)], names, batch


def upload_names(filenames: Sequence[str | None]) -> list[str]:
    """What errors call each file of a multipart form: the file name the client sent (its last path part,
    printable characters, at most 100), `file INDEX (NAME)` where two files share it, `file INDEX` with none."""
    names = []
    for filename in filenames:
        name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
        names.append("".join(ch for ch in name if ch.isprintable()).strip()[:100])
    return [f"file {i}" if not name else f"file {i} ({name})" if names.count(name) > 1 else name
            for i, name in enumerate(names)]


async def parse_multipart(request: Request, body: bytes, max_pixels: int, max_batch: int) -> tuple[list[bytes], list[str]]:
    async def stream() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=max_batch, max_fields=max_batch).parse()
    except MultiPartException as e:
        raise BadRequest(422, f"malformed multipart form ({e.message})") from None
    try:
        files = [v for _, v in form.multi_items() if not isinstance(v, str)]
        if not files:
            raise BadRequest(422, "the multipart form holds no image files")
        items = []
        names = upload_names([f.filename for f in files])  # only to name a file in an error: never opened
        for f, name in zip(files, names):
            ctype = (f.content_type or "").split(";")[0].strip().lower()
            formats = IMAGE_TYPES.get(ctype, RASTER_FORMATS) if ctype.startswith("image/") else RASTER_FORMATS
            if ctype.startswith("image/") and ctype not in IMAGE_TYPES:
                raise BadRequest(415, f"{name}: unsupported content type {ctype} (use {', '.join(IMAGE_TYPES)})")
            items.append(check_image(await f.read(), formats, max_pixels, name))
        return items, names
    finally:
        await form.close()


# ----------------------------------------------------------------------------- the app


def create_app(
    checkpoint: str | os.PathLike,
    *,
    device: str = "cpu",
    max_body: int = MAX_BODY,
    max_pixels: int = MAX_PIXELS,
    max_batch: int = MAX_BATCH,
    concurrency: int = 1,
    cors_origins: Sequence[str] = (),
    tta: bool | None = None,
) -> Starlette:
    """The app for one checkpoint (a run folder or a file). CORS only for the origins given."""
    predictor, card = load_model(checkpoint, device=device, tta=tta)  # an .onnx file: onnxruntime, no torch
    service = Service(predictor, card)
    # Batches of waiting requests prepared and classified at once, each in a worker thread.
    batcher = Batcher(service, concurrency, max_batch)
    page = resources.files("mnistlab.serve").joinpath("page.html").read_text(encoding="utf-8")
    shape = predictor.in_shape

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def model(request: Request) -> Response:
        return JSONResponse(service.card)

    async def predict(request: Request) -> Response:
        body = None
        try:
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in IMAGE_TYPES and ctype not in ("application/json", "multipart/form-data"):
                raise BadRequest(415, f"unsupported content type {ctype or '(none)'}: send an image "
                                      f"({', '.join(IMAGE_TYPES)}), application/json or multipart/form-data")
            body = await read_body(request, max_body)
            if ctype in IMAGE_TYPES:
                items, names, batch = [check_image(body, IMAGE_TYPES[ctype], max_pixels, "body")], ["body"], False
            elif ctype == "application/json":
                items, names, batch = parse_json(body, shape, max_pixels, max_batch)
            else:
                (items, names), batch = await parse_multipart(request, body, max_pixels, max_batch), True
            answers = await batcher.answer(items, names)
        except BadRequest as e:
            # Refused before the whole body was read: the connection ends after this answer (what the
            # client still sends is drained for a while first, serve/protocol.py), never read on as a
            # next request, however long it goes on.
            return JSONResponse({"error": e.message}, status_code=e.status,
                                headers={"Connection": "close"} if body is None else None)
        except MnistlabError as e:  # ImageError: bytes that passed the header check but do not decode
            return JSONResponse({"error": str(e)}, status_code=422)
        except MemoryError:
            return JSONResponse({"error": "out of memory; try a smaller image"}, status_code=503)
        return JSONResponse({"predictions": answers} if batch else answers[0])

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        return JSONResponse({"error": getattr(exc, "detail", "error")}, status_code=status,
                            headers=getattr(exc, "headers", None))

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error"}, status_code=500)

    middleware = []
    if cors_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                                     allow_headers=["Content-Type"]))
    routes = [
        Route("/", index, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/api/model", model, methods=["GET"]),
        Route("/api/predict", predict, methods=["POST"]),
    ]
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.service = service
    return app


OPTIONS_ENV = "MNISTLAB_SERVE_OPTIONS"  # create_app's arguments, as JSON, for the worker processes
READY_ENV = "MNISTLAB_SERVE_READY"  # a folder where each worker process leaves a file once its app is built


def app_from_env() -> Starlette:
    """The app of one worker process of `mnistlab serve --workers N` (uvicorn's factory).

    The parent puts create_app's keyword arguments in $MNISTLAB_SERVE_OPTIONS as JSON, plus
    `threads` (torch's thread count; ignored for .onnx files, which never import torch).
    """
    options = json.loads(os.environ[OPTIONS_ENV])
    threads = options.pop("threads", None)
    if threads and not is_onnx_path(options["checkpoint"]):
        import torch

        torch.set_num_threads(threads)
    app = create_app(**options)
    ready = os.environ.get(READY_ENV)
    if ready:  # for the parent, which announces the URL once every worker can answer
        try:
            Path(ready, str(os.getpid())).touch()
        except OSError:
            pass
    return app
