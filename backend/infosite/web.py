"""Flask glue: the ``flask site build`` command and the ``/info/`` blueprint."""

from __future__ import annotations

import threading
from pathlib import Path

import click
from flask import Blueprint, Flask, abort, current_app, send_from_directory
from flask.cli import AppGroup
from werkzeug.wrappers import Response

from backend.infosite.build import DEFAULT_OUT, MARKER, build_site
from backend.infosite.errors import BuildError

URL_PREFIX = "/info"
_build_lock = threading.Lock()

blueprint = Blueprint("infosite", __name__, url_prefix=URL_PREFIX)
site_cli = AppGroup("site", help="Build the family information site.")


def _site_dir() -> Path:
    return Path(current_app.config["INFOSITE_DIR"])


def _ensure_built(out_dir: Path) -> None:
    """Build the site once if the folder has never been built (development convenience)."""
    if (out_dir / MARKER).exists() or not current_app.config["INFOSITE_AUTO_BUILD"]:
        return
    with _build_lock:
        # Another request may have built it while this one waited for the lock.
        if not (out_dir / MARKER).exists():
            build_site(out_dir)


@blueprint.route("/", defaults={"filename": "index.html"})
@blueprint.route("/<path:filename>")
def serve(filename: str) -> Response:
    """Serve one file of the built site; a folder serves its index.html."""
    out_dir = _site_dir()
    _ensure_built(out_dir)
    if filename.endswith("/"):
        filename += "index.html"
    if filename == MARKER:
        abort(404)
    response = send_from_directory(out_dir, filename)
    if filename.endswith(".html") or filename == "sw.js":
        # Pages change with every build; the service worker keeps offline copies.
        response.cache_control.no_cache = True
    return response


@site_cli.command("build")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder (default: INFOSITE_DIR, that is public/).",
)
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
def build_command(out: Path | None, strict: bool) -> None:
    """Read and check all content, then write the static site."""
    target = out or Path(current_app.config["INFOSITE_DIR"])
    try:
        report = build_site(target, strict=strict)
    except BuildError as exc:
        raise click.ClickException(str(exc)) from exc
    for warning in report.warnings:
        click.echo(str(warning), err=True)
    click.echo(f"Built {len(report.pages)} pages into {target}")


def register(app: Flask) -> None:
    """Attach the blueprint and the CLI group to ``app``."""
    app.config.setdefault("INFOSITE_DIR", str(DEFAULT_OUT))
    app.config.setdefault("INFOSITE_AUTO_BUILD", True)
    app.register_blueprint(blueprint)
    app.cli.add_command(site_cli)
