"""`mnistlab datasets list|verify|path|export`: the registered data sets and their files."""

from __future__ import annotations

import argparse

from mnistlab.cli._common import EXIT_ERROR, Formatter, out
from mnistlab.errors import ConfigError


def cmd_datasets(args: argparse.Namespace) -> int:
    """List, verify, locate or export data sets; verify exits 1 when a file fails."""
    from mnistlab.data.raw import dataset_paths, verify_dataset
    from mnistlab.data.sources import get_dataset_spec, list_datasets

    if args.action == "list":
        out(f"{'name':<16} {'classes':>7}  where        description")
        for name in list_datasets():
            spec = get_dataset_spec(name)
            where = "embedded" if spec.embedded else ("generated" if spec.generated else "download")
            out(f"{name:<16} {len(spec.class_names):>7}  {where:<12} {spec.description}")
        return 0
    if args.action == "export":
        from mnistlab.data.export import export_dataset, export_summary

        if not args.name or not args.dir:
            raise ConfigError("datasets export needs NAME and DIR, e.g. datasets export mnist --format folder mnist-png")
        folder = export_dataset(args.name, args.format, args.dir, data_dir=args.data_dir)
        out(f"wrote {args.name} as {args.format} to {folder} ({export_summary(folder)})")
        return 0
    names = [args.name] if args.name else ["mnist"]
    if args.action == "path":
        for name in names:
            for key, path in dataset_paths(name, args.data_dir).items():
                out(f"{name} {key}: {path if path else '(not on this machine)'}")
        return 0
    ok_all = True
    for name in names:
        for key, path, ok, detail in verify_dataset(name, args.data_dir):
            ok_all &= ok
            out(f"{'ok  ' if ok else 'FAIL'} {name} {key}: {path} ({detail})")
    return 0 if ok_all else EXIT_ERROR


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mnistlab datasets` to the CLI."""
    p = subparsers.add_parser("datasets", help="list, verify, locate or export data sets", formatter_class=Formatter)
    p.add_argument("action", choices=("list", "verify", "path", "export"))
    p.add_argument("name", nargs="?", help="data set (default: mnist)")
    p.add_argument("dir", nargs="?", metavar="DIR", help="export: the new folder to write")
    p.add_argument("--format", choices=("folder", "csv", "idx"), default="folder",
                   help="export: image folders train/<class>/*.png, train.csv/test.csv, or gzipped IDX files")
    p.add_argument("--data-dir", help="folder holding the data set's files")
    p.set_defaults(func=cmd_datasets)
