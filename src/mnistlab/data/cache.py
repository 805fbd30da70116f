"""The one array cache: decoded, generated and custom data sets as .npy files in the user cache.

An entry is a folder under `download.cache_dir()`, `<cache>/<kind>/<name>`, where the caller's
name carries the key (a hash of the sources, or version, seed and sizes). It holds one .npy file
per array and a `meta.json` written last: an entry without its meta.json (a crash or a full disk
mid-write) is never read back. Every file is written atomically (`fileio.atomic_open`).

A cache is an optimisation, so neither reading nor writing ever breaks loading: an absent,
unreadable or corrupt entry reads as None (the caller decodes again and rewrites it), and a
read-only or full disk makes `write_arrays` return the error instead of raising it. Each .npy
header is checked against the file's size before anything is allocated (`load_npy`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path

import numpy as np

from mnistlab.data.download import cache_dir
from mnistlab.fileio import atomic_open, atomic_write_json

META = "meta.json"


def entry_folder(kind: str, name: str) -> Path:
    """The folder of cache entry `name` among the `kind` entries ("decoded", "generated", "custom")."""
    return cache_dir() / kind / name


def load_npy(path: str | os.PathLike, mmap: bool = False) -> np.ndarray:
    """`np.load` of a cache file whose header is first checked against the file's size.

    A damaged (or planted) .npy whose header declares a huge shape would otherwise be allocated in
    full, a MemoryError, before the short read is noticed. Raises ValueError (or OSError) instead.
    With `mmap`, the array is a copy-on-write memory map of the file: no read and no fresh memory
    up front (pages come from the OS's file cache as they are used), writable without touching the
    file; the entry's files are replaced atomically, never rewritten in place, so a map stays valid.
    """
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"{path}: .npy version {version} is not one this cache writes")
        declared = math.prod(shape) * dtype.itemsize
        if dtype.hasobject or declared != os.fstat(f.fileno()).st_size - f.tell():
            raise ValueError(f"{path}: the .npy header does not match the file's size")
        if mmap:
            return np.asarray(np.load(path, mmap_mode="c", allow_pickle=False))  # a plain ndarray over the map
        f.seek(0)
        return np.load(f, allow_pickle=False)


def read_arrays(folder: Path, names: tuple[str, ...] | list[str],
                mmap: bool = False) -> tuple[dict[str, np.ndarray], dict] | None:
    """The arrays `names` of the entry in `folder` and its meta.json; None when any is absent or corrupt.

    `mmap`: memory-mapped, copy-on-write (see `load_npy`).
    """
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        arrays = {a: load_npy(folder / f"{a}.npy", mmap=mmap) for a in names}
    except (OSError, ValueError, EOFError):  # ValueError covers bad JSON and bad .npy headers
        return None
    return (arrays, meta) if isinstance(meta, dict) else None


def write_arrays(folder: Path, arrays: dict[str, np.ndarray], meta: dict | None = None) -> OSError | None:
    """Write `arrays` as `<name>.npy` into `folder`, then `meta` as meta.json; the OSError, if one stopped it.

    An older meta.json is removed first, so that an entry rewritten halfway is never read back.
    """
    try:
        with contextlib.suppress(FileNotFoundError):
            (folder / META).unlink()
        for a, arr in arrays.items():
            with atomic_open(folder / f"{a}.npy", "wb") as f:
                np.save(f, arr, allow_pickle=False)
        atomic_write_json(folder / META, meta or {})
    except OSError as e:
        return e
    return None
