"""Flask integration: ``flask site build`` and the /info/ blueprint, on a minimal app."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from backend import infosite
from backend.infosite.__main__ import main
from reminders.core.clinical_rules import urgent_advice


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    """A bare Flask app with the information site attached (not the real app factory)."""
    app = Flask(__name__)
    app.config.update(TESTING=True, INFOSITE_DIR=str(tmp_path / "public"))
    infosite.init_app(app)
    return app


def test_info_builds_on_first_request_and_serves_pages(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    response = client.get("/info/")
    assert response.status_code == 200
    assert urgent_advice("en") in response.get_data(as_text=True)
    assert (tmp_path / "public" / "index.html").exists()
    french = client.get("/info/fr/fievre.html")
    assert french.status_code == 200 and urgent_advice("fr") in french.get_data(as_text=True)
    assert client.get("/info/assets/style.css").mimetype == "text/css"
    assert client.get("/info/sw.js").status_code == 200


def test_info_redirects_and_refuses_what_is_not_there(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/info").status_code in (301, 308)
    assert client.get("/info/no-such-page.html").status_code == 404
    assert client.get("/info/.infosite-build").status_code == 404
    assert client.get("/info/../pyproject.toml").status_code == 404


def test_no_auto_build_when_switched_off(tmp_path: Path) -> None:
    app = Flask(__name__)
    app.config.update(INFOSITE_DIR=str(tmp_path / "public"), INFOSITE_AUTO_BUILD=False)
    infosite.init_app(app)
    assert app.test_client().get("/info/").status_code == 404


def test_flask_cli_builds_the_site(app: Flask, tmp_path: Path) -> None:
    out = tmp_path / "cli-out"
    result = app.test_cli_runner().invoke(args=["site", "build", "--out", str(out), "--strict"])
    assert result.exit_code == 0, result.output
    assert "Built" in result.output and (out / "fever.html").exists()


def test_module_command_builds_the_site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "public"
    assert main(["build", "--out", str(out), "--strict"]) == 0
    assert (out / "index.html").exists()
    assert "largest" in capsys.readouterr().out
    assert main(["check", "--strict"]) == 0
