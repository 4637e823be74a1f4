"""``GET /metrics``: the companion's metrics for Prometheus, behind a token or a network list.

The endpoint is off (404) until the operator sets ``METRICS_TOKEN`` (a bearer token
Prometheus sends) or ``METRICS_ALLOWED_NETWORKS`` (CIDRs, comma-separated, whose
addresses may scrape without a token), or both. Then a request with the right token,
or from an allowed network, gets the metrics; any other gets 401 (a token is
configured: ask for it) or 403 (only networks are). The address is
``request.remote_addr``: behind a reverse proxy it is the proxy's unless
``TRUSTED_PROXY_COUNT`` says how many ``X-Forwarded-For`` hops to trust
(``backend._trust_proxies``), so an allowed network never lets the whole Internet in
through the proxy.

What is exported is defined in :mod:`reminders.metrics`: the database's state, read as
of the scrape (the app's clock, ``CLOCK`` in tests), and the dispatcher's and the
clock's events, from the multiprocess directory when ``PROMETHEUS_MULTIPROC_DIR`` is set.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from backend.db import get_engine
from reminders.metrics import DatabaseState, event_collector

blueprint = Blueprint("metrics", __name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def allowed_networks(value: str | None) -> tuple[Network, ...]:
    """The networks of ``METRICS_ALLOWED_NETWORKS`` ("10.0.0.0/8, 2001:db8::/32").

    Raises ValueError naming the variable and the entry it cannot read (a network with
    host bits set, "10.1.2.3/8", is refused: it is usually a typing error).
    """
    networks = []
    for entry in (value or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry))
        except ValueError as error:
            raise ValueError(f"METRICS_ALLOWED_NETWORKS: {error}") from None
    return tuple(networks)


def check_metrics_config(config: Mapping[str, Any], environ: Mapping[str, str]) -> None:
    """Refuse, at start-up, metrics settings that cannot work; ValueError names the variable.

    ``PROMETHEUS_MULTIPROC_DIR`` must be an existing directory and must be in the
    process environment (``environ``), not only in ``.env``: prometheus_client reads it
    from there when it is imported, before the app reads its configuration, and a
    dispatcher without it would count its events in memory, where ``/metrics`` never
    sees them.
    """
    allowed_networks(config.get("METRICS_ALLOWED_NETWORKS"))
    token = config.get("METRICS_TOKEN")
    if token is not None and len(token) < 32:
        raise ValueError("METRICS_TOKEN must be at least 32 characters (a random token)")
    directory = config.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    if environ.get("PROMETHEUS_MULTIPROC_DIR") != directory:
        raise ValueError(
            "PROMETHEUS_MULTIPROC_DIR must be set in the environment of every process "
            "(prometheus_client reads it when imported), not only in .env"
        )
    if not os.path.isdir(directory):
        raise ValueError(f"PROMETHEUS_MULTIPROC_DIR: {directory} is not a directory")


def _may_scrape() -> None:
    """Abort with 404 (metrics off), 401 or 403 unless the request may read the metrics."""
    config = current_app.config
    token = config.get("METRICS_TOKEN")
    networks = allowed_networks(config.get("METRICS_ALLOWED_NETWORKS"))
    if not token and not networks:
        abort(404)
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return
    if networks and _address_in(request.remote_addr, networks):
        return
    if token:
        abort(
            Response(
                "a bearer token is required\n",
                401,
                {"WWW-Authenticate": 'Bearer realm="metrics"', "Content-Type": "text/plain"},
            )
        )
    abort(403)


def _address_in(address: str | None, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in networks)


@blueprint.get("/metrics")
def metrics() -> Response:
    """The metrics in Prometheus's text format, for an allowed scraper."""
    from backend.api import request_now

    _may_scrape()
    registry = CollectorRegistry()
    registry.register(DatabaseState(get_engine(), request_now()))
    registry.register(event_collector(current_app.config.get("PROMETHEUS_MULTIPROC_DIR")))
    return Response(
        generate_latest(registry),
        200,
        {"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
    )


def init_app(app: Flask) -> None:
    """Check the metrics settings and add ``/metrics``."""
    check_metrics_config(app.config, os.environ)
    app.register_blueprint(blueprint)
