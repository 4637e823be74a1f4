"""The family information site: Markdown pages in ``content/`` built into static HTML.

Build it with ``python -m backend.infosite build --out public`` or
``flask --app backend site build``. ``init_app(app)`` registers that CLI group
and a blueprint that serves the built folder under ``/info/`` in development.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from backend.infosite.build import DEFAULT_OUT, BuildReport, build_site
from backend.infosite.content import Page, Site, load_site
from backend.infosite.errors import BuildError, Problem

if TYPE_CHECKING:
    from flask import Flask

__all__ = [
    "DEFAULT_OUT",
    "BuildError",
    "BuildReport",
    "Page",
    "Problem",
    "Site",
    "build_site",
    "init_app",
    "load_site",
]


def init_app(app: Flask) -> None:
    """Register the ``flask site`` CLI group and the ``/info/`` blueprint on ``app``.

    ``app.config["INFOSITE_DIR"]`` is the built folder to serve (default
    ``public/`` in the repository); it is built on the first request when it
    is missing, unless ``INFOSITE_AUTO_BUILD`` is false.
    """
    # Imported here so that building the site never needs Flask.
    from backend.infosite.web import register

    register(app)
