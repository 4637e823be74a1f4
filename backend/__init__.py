"""The care-team backend: a Flask application factory in the style of Flask's tutorial.

``create_app`` applies the embedded defaults, then the environment (over the ``.env``
file of the current directory), then the test dict, and registers every subsystem
through its ``init_app``. Importing this package reads no environment variable and
opens no database.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create and configure the app: defaults, then environment, then ``test_config``.

    Without ``test_config`` the environment is the process's laid over ``./.env``; with
    it (tests), ``.env`` is not read, so a developer's local settings (their database)
    never reach a test.
    """
    from backend import api, cli, cli_rights, dashboard, db, errors, hardening, infosite, webhooks
    from backend.calendar_feed import init_app as init_calendar_feed
    from backend.cli_backup import init_app as init_backup_cli
    from backend.cli_doctor import init_app as init_doctor
    from backend.config import (
        check_config,
        default_config,
        environment_with_env_file,
        load_environment,
    )
    from backend.health import init_app as init_health
    from backend.logs import init_app as init_logs
    from backend.metrics_endpoint import init_app as init_metrics

    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(default_config(app.instance_path))
    environ = (
        os.environ if test_config is not None else environment_with_env_file(os.environ, Path.cwd())
    )
    app.config.from_mapping(load_environment(environ))
    if test_config is not None:
        app.config.from_mapping(test_config)
    check_config(app.config)
    os.makedirs(app.instance_path, exist_ok=True)
    init_logs(app)  # first: whatever the others log is formatted, with the request id
    _trust_proxies(app)  # outermost, so the request's log lines see the client's address

    db.init_app(app)
    init_health(app)  # /healthz and /readyz: no sign-in, no session
    errors.init_app(app)
    hardening.init_app(app)
    api.init_app(app)
    cli.init_app(app)
    webhooks.init_app(app)
    dashboard.init_app(app)
    init_calendar_feed(app)  # the family's calendar link: no sign-in, its own blueprint
    infosite.init_app(app)
    init_doctor(app)  # `doctor`: the configuration checked
    cli_rights.init_app(app)  # data rights: export the record, erase contact details
    init_backup_cli(app)  # backup, restore, retention run
    init_metrics(app)  # /metrics for Prometheus, behind a token or a network list
    cli.guard_database_outages(app.cli)  # last: every command is registered by now
    return app


def _trust_proxies(app: Flask) -> None:
    """Behind ``TRUSTED_PROXY_COUNT`` reverse proxies, take the client's address and scheme
    from that many ``X-Forwarded-For``/``-Proto`` hops (werkzeug's ``ProxyFix``).

    With 0 (the default) the headers are ignored: otherwise anyone could choose the
    address that sign-in throttling counts failures against.
    """
    proxies = int(app.config.get("TRUSTED_PROXY_COUNT") or 0)
    if proxies < 0:
        raise ValueError("TRUSTED_PROXY_COUNT must be 0 or a positive number of proxies")
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]
