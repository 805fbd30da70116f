"""Find data files on disk, or fetch them from mirrors with an md5 check and an atomic rename.

Search order for data set `name`: the `data_dir` argument (and `data_dir/<name>`),
`$MNISTLAB_DATA/<name>`, `$MNISTLAB_DATA`, the user cache (`$XDG_CACHE_HOME/mnistlab/<name>`, else
`~/.cache/mnistlab/<name>`), `/usr/share/datasets/<name>` (Debian's dataset packages), and, for an
embedded data set, the package's own copy. Each file may be gzipped or not.

Downloads go into the user cache: each mirror in turn, streamed to a temporary file in the target
folder while the md5 is computed, then renamed into place only when the md5 matches. Any failure
(HTTP error, timeout, reset, short body, wrong md5) moves on to the next mirror, and no partial or
unverified file is ever left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from mnistlab.data.sources import DatasetSpec, get_dataset_spec
from mnistlab.errors import ConfigError, DataError, DownloadError
from mnistlab.fileio import atomic_open

Progress = bool | Callable[[int, int | None], None]  # True: tqdm bar; callable(done_bytes, total_bytes)

SYSTEM_DATASETS = Path("/usr/share/datasets")
EMBEDDED_DIR = Path(__file__).resolve().parent
_CHUNK = 1 << 20
_USER_AGENT = "mnistlab (+https://pypi.org/project/mnistlab)"


def cache_dir(name: str | None = None) -> Path:
    """The user cache folder ($XDG_CACHE_HOME/mnistlab or ~/.cache/mnistlab), or its `name` subfolder."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    base = Path(root) / "mnistlab"
    return base / name if name else base


def search_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for data set `name`, in priority order (no duplicates)."""
    dirs: list[Path] = []
    if data_dir is not None:
        dirs += [Path(data_dir), Path(data_dir) / name]
    env = os.environ.get("MNISTLAB_DATA")
    if env:
        dirs += [Path(env) / name, Path(env)]
    dirs += [cache_dir(name), SYSTEM_DATASETS / name]
    with contextlib.suppress(ConfigError):
        if get_dataset_spec(name).embedded:
            dirs.append(EMBEDDED_DIR / name)
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def candidate_names(file_name: str) -> list[str]:
    """Accepted spellings of a data file: as registered and with/without the .gz suffix."""
    other = file_name[:-3] if file_name.endswith(".gz") else file_name + ".gz"
    return [file_name, other]


def find_local(spec: DatasetSpec, data_dir: str | os.PathLike | None = None) -> dict[str, Path | None]:
    """For each split key, the first matching file in `search_dirs`, or None.

    A folder (or other non-file) under a data file's name, with no real file anywhere, is returned
    too: the reader then names the fault, where skipping it would send the user to a download.
    """
    dirs = search_dirs(spec.name, data_dir)
    found: dict[str, Path | None] = {}
    for key, file_name in spec.files.items():
        candidates = [d / n for d in dirs for n in candidate_names(file_name)]
        found[key] = next((p for p in candidates if p.is_file()), None) or next(
            (p for p in candidates if p.exists()), None
        )
    return found


def _offline_message(spec: DatasetSpec, missing: list[str], data_dir, reason: str) -> str:
    names = ", ".join(spec.files[k] for k in missing)
    dirs = ", ".join(str(d) for d in search_dirs(spec.name, data_dir) if not str(d).startswith(str(EMBEDDED_DIR)))
    extra = f" (or {spec.archive.file_name}, which holds them)" if spec.archive else ""
    return (
        f"data set {spec.name!r} not found: put {names}{extra} (gzipped or not) into one of: {dirs}; "
        f"or set $MNISTLAB_DATA; {reason}"
    )


def _progress_bar(progress: Progress, total: int | None, desc: str) -> tuple[Callable[[int], None], Callable]:
    """(update(num_bytes), close()) for the requested kind of progress report."""
    if not progress:
        return (lambda n: None), (lambda: None)
    if callable(progress):
        done = [0]

        def update(n: int) -> None:
            done[0] += n
            progress(done[0], total)

        return update, (lambda: None)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False)
    return bar.update, bar.close


def _fetch(url: str, tmp_file, timeout: float, progress: Progress, desc: str) -> str:
    """Stream `url` into the open file `tmp_file`; return the md5 hex digest of what was written."""
    import urllib.request  # here, not at the top: every command imports this module, few download

    req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    md5 = hashlib.md5()
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # timeout: per connect/recv, not total
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        update, close = _progress_bar(progress, total, desc)
        received = 0
        try:
            while chunk := resp.read(_CHUNK):
                tmp_file.write(chunk)
                md5.update(chunk)
                received += len(chunk)
                update(len(chunk))
        finally:
            close()
    # http.client returns a short body without complaint when the server closes early.
    if total is not None and received != total:
        raise DataError(f"truncated: expected {total} bytes, got {received}")
    if received == 0:
        raise DataError("empty response")
    return md5.hexdigest()


def download_file(
    urls: Sequence[str],
    dest: str | os.PathLike,
    md5: str | None,
    timeout: float = 30.0,
    progress: Progress = False,
) -> Path:
    """Fetch the first of `urls` that delivers a file with the given md5 into `dest`, atomically.

    Raises DownloadError (one line, each URL with its failure) when no URL delivers.
    """
    import http.client

    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"{dest.parent}: cannot create the download folder: {e.strerror or e}") from None
    failures: list[str] = []
    for url in urls:
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        except OSError as e:
            raise DownloadError(f"{dest.parent}: cannot write the download: {e.strerror or e}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                digest = _fetch(url, f, timeout, progress, dest.name)
                if md5 is not None and digest != md5.lower():
                    raise DataError(f"md5 mismatch: expected {md5}, got {digest}")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
            tmp = None
            return dest
        except (OSError, http.client.HTTPException, DataError, ValueError) as e:
            failures.append(f"{url}: {_describe(e)}")
        finally:
            # On any failure (or Ctrl-C) remove the partial download; on success it was renamed away.
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
    if not urls:
        failures.append("no mirror URLs")
    raise DownloadError(f"{dest}: no mirror delivered a verified file: {'; '.join(failures)}")


def _describe(e: BaseException) -> str:
    import http.client
    import urllib.error

    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return f"{type(e.reason).__name__ if not isinstance(e.reason, str) else 'error'}: {e.reason}"
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, http.client.HTTPException):
        return f"{type(e).__name__}: {e}"
    return str(e) or type(e).__name__


def _extract(zip_path: Path, members: dict[str, str], dest_dir: Path) -> dict[str, Path]:
    """Copy `members` (key -> member path) out of `zip_path` into `dest_dir`, each atomically."""
    import zipfile

    out: dict[str, Path] = {}
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for key, member in members.items():
                dest = dest_dir / Path(member).name
                # zipfile checks each member's CRC while reading: a corrupt member raises BadZipFile.
                with zf.open(member) as src, atomic_open(dest, "wb") as dst:
                    while chunk := src.read(_CHUNK):
                        dst.write(chunk)
                out[key] = dest
    except (zipfile.BadZipFile, KeyError, EOFError) as e:
        raise DataError(f"{zip_path}: bad archive: {e}") from None
    except OSError as e:
        raise DataError(f"{zip_path}: cannot extract into {dest_dir}: {e.strerror or e}") from None
    return out


def _locate_archive(
    spec: DatasetSpec, data_dir, download: bool, timeout: float, mirrors, progress: Progress
) -> Path:
    """A verified local copy of the spec's archive: found in the search folders, else downloaded."""
    assert spec.archive is not None
    family = spec.name.split("-")[0]  # "emnist": all EMNIST splits share one zip
    for d in search_dirs(spec.name, data_dir) + search_dirs(family, data_dir):
        if (d / spec.archive.file_name).is_file():
            return d / spec.archive.file_name
    if not download:
        raise DownloadError("download disabled")
    urls = spec.archive.urls(spec.mirrors if mirrors is None else tuple(mirrors))
    return download_file(urls, cache_dir(family) / spec.archive.file_name, spec.archive.md5, timeout, progress)


def locate(
    spec: DatasetSpec,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    timeout: float = 30.0,
    mirrors: Sequence[str] | None = None,
    progress: Progress = False,
) -> dict[str, Path]:
    """Paths of the four data files of `spec`: found locally, else downloaded into the cache.

    Args:
        mirrors: base URLs to use instead of `spec.mirrors` (tests, private mirrors).
        progress: True for a tqdm bar on stderr, or a callable(done_bytes, total_bytes).

    Raises DownloadError naming the folders searched and the files to put there.
    """
    if spec.generated:
        return {}
    found = find_local(spec, data_dir)
    missing = [k for k, p in found.items() if p is None]
    if not missing:
        return {k: p for k, p in found.items() if p is not None}
    if not download:
        raise DownloadError(_offline_message(spec, missing, data_dir, "download disabled"))
    target = cache_dir(spec.name)
    try:
        if spec.archive is not None:
            zip_path = _locate_archive(spec, data_dir, download, timeout, mirrors, progress)
            members = {k: spec.archive.members[k] for k in missing}
            found.update(_extract(zip_path, members, target))
        else:
            for key in missing:
                urls = spec.urls(key, mirrors)
                found[key] = download_file(urls, target / spec.files[key], spec.md5.get(key), timeout, progress)
    except DataError as e:
        raise DownloadError(_offline_message(spec, missing, data_dir, f"download failed: {e}")) from None
    return {k: p for k, p in found.items() if p is not None}
