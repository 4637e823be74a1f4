"""Command line: ``python -m backend.infosite build --out public [--strict]``.

``check`` reads and validates the content without writing anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backend.infosite.build import CONTENT_DIR, DEFAULT_OUT, SEEDS_DIR, build_site
from backend.infosite.content import load_site
from backend.infosite.errors import BuildError


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m backend.infosite", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="check the content, then write the static site")
    build.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default: public/)"
    )
    check = commands.add_parser("check", help="check the content only")
    for sub in (build, check):
        sub.add_argument("--strict", action="store_true", help="fail on warnings too")
    args = parser.parse_args(argv)

    try:
        if args.command == "check":
            site = load_site(CONTENT_DIR, seeds_dir=SEEDS_DIR, strict=args.strict)
            warnings = site.warnings
            summary = f"Checked {len(site.pages)} pages: no errors."
        else:
            report = build_site(args.out, strict=args.strict)
            warnings = report.warnings
            largest = max(report.pages, key=report.page_weight)
            summary = (
                f"Built {len(report.pages)} pages into {args.out} "
                f"(largest: {largest}, {report.page_weight(largest) / 1024:.1f} KB with CSS and scripts)."
            )
    except BuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    for warning in warnings:
        print(warning, file=sys.stderr)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
