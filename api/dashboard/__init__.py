"""The dashboard: `GET /` serves a page that draws the marts as charts.

Plain HTML, CSS and JavaScript in ``static/`` (no build step, no chart library: ``charts.js`` draws SVG), and
the page calls only the public REST API, as any other client would.
"""

from __future__ import annotations

from flask import Blueprint, current_app, make_response, render_template

blp = Blueprint(
    "dashboard",
    __name__,
    static_folder="static",
    static_url_path="/dashboard",
    template_folder="templates",
)

# Scripts, styles and data from this origin only: the browser itself refuses anything else.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


@blp.route("/")
def index():
    settings = current_app.extensions["exnaton"]["settings"]
    response = make_response(render_template("dashboard.html", default_tz=settings.default_timezone))
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response
