"""Fetch onnxruntime-web from the npm registry and vendor the files a wasm-only page needs.

    python tools/vendor_onnxruntime_web.py            # verify the vendored files against a fresh `npm pack`
    python tools/vendor_onnxruntime_web.py --write    # (re)write them (after changing VERSION/INTEGRITY)

`npm pack onnxruntime-web@VERSION` in a temporary folder; the tarball must have the pinned sha512
integrity; then dist/ort.wasm.min.js (the classic-script build, global `ort`), the glue module it
imports (ort-wasm-simd-threaded.mjs) and its WebAssembly binary, stored xz-compressed (14.8 MB ->
2.3 MB; `mnistlab export --format web` decompresses it), are compared with (or copied into)
src/mnistlab/serve/web_vendor/. Needs node's npm on PATH and the registry; nothing at export time does.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import lzma
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "1.31.1"
INTEGRITY = "sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw=="
FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
VENDOR = Path(__file__).resolve().parents[1] / "src" / "mnistlab" / "serve" / "web_vendor"


def stored_name(name: str) -> str:
    return name + ".xz" if name.endswith(".wasm") else name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="write the files instead of comparing them")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", f"onnxruntime-web@{VERSION}", "--silent"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        tgz = Path(tmp) / f"onnxruntime-web-{VERSION}.tgz"
        got = "sha512-" + base64.b64encode(hashlib.sha512(tgz.read_bytes()).digest()).decode()
        if got != INTEGRITY:
            print(f"error: {tgz.name} has integrity {got}, pinned {INTEGRITY}", file=sys.stderr)
            return 1
        bad = 0
        with tarfile.open(tgz) as tar:
            for name in FILES:
                data = tar.extractfile(f"package/dist/{name}").read()
                target = VENDOR / stored_name(name)
                if args.write:
                    target.write_bytes(lzma.compress(data, preset=9) if name.endswith(".wasm") else data)
                    print(f"wrote {target.name}: {len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
                    continue
                have = target.read_bytes() if target.is_file() else b""
                if name.endswith(".wasm") and have:
                    have = lzma.decompress(have)
                ok = have == data
                bad += not ok
                print(f"{'ok' if ok else 'DIFFERS'} {name}: sha256 {hashlib.sha256(data).hexdigest()}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
