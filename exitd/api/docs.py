"""The API's own documentation: the OpenAPI document built from the router, and a Swagger UI page.

Everything the page loads comes from exitd itself: Swagger UI's script and stylesheet from the
swagger-ui-py package (a dependency, so the page works offline and no third party can change the script
that runs beside the token field), and the few lines that start it from here. A content security policy
lets the page load, run and ask nothing else: the API it describes can move funds once a token is typed in.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from aiohttp import web

from exitd.api.context import services_of
from exitd.api.errors import json_response
from exitd.api.openapi import build_document

OPENAPI_PATH = "/api-docs/openapi.json"
SWAGGER_UI_PATH = "/swagger-ui"
STARTER_PATH = f"{SWAGGER_UI_PATH}/start.js"
# Swagger UI's files served, by path, from swagger-ui-py's static folder (file, type); nothing else of it.
PACKAGE_ASSETS = {
    f"{SWAGGER_UI_PATH}/swagger-ui.css": ("swagger-ui.css", "text/css"),
    f"{SWAGGER_UI_PATH}/swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript"),
}
# The paths of the page and what it loads: all open, like the document (barkd serves its docs open too).
DOCS_PATHS = frozenset({OPENAPI_PATH, SWAGGER_UI_PATH, STARTER_PATH, *PACKAGE_ASSETS})

# 'unsafe-inline' for styles only: Swagger UI sets style attributes as it renders; scripts are 'self' alone.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>exitd REST API</title>
  <link rel="stylesheet" href="{SWAGGER_UI_PATH}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui">
    <p>Loading Swagger UI. The API is described by <a href="{OPENAPI_PATH}">{OPENAPI_PATH}</a>.</p>
  </div>
  <script src="{SWAGGER_UI_PATH}/swagger-ui-bundle.js"></script>
  <script src="{STARTER_PATH}"></script>
</body>
</html>
"""

# No validator: Swagger UI would send the document to validator.swagger.io.
STARTER = f"""window.addEventListener("load", function () {{
  window.ui = SwaggerUIBundle({{url: "{OPENAPI_PATH}", dom_id: "#swagger-ui", validatorUrl: null}});
}});
"""


@cache
def swagger_ui_static() -> Path:
    """swagger-ui-py's folder of Swagger UI files, found without importing the package (it would load
    its web-framework adapters)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed (it is a dependency of exitd)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


async def openapi_document(request: web.Request) -> web.Response:
    rest = services_of(request).config.rest
    return json_response(build_document(request.app, rest.substate_vocabulary, rest.metrics_open))


async def swagger_ui(_request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html", headers=SECURITY_HEADERS)


async def starter(_request: web.Request) -> web.Response:
    return web.Response(text=STARTER, content_type="text/javascript", headers=SECURITY_HEADERS)


async def package_asset(request: web.Request) -> web.FileResponse:
    name, media_type = PACKAGE_ASSETS[request.path]
    headers = {**SECURITY_HEADERS, "Content-Type": media_type, "Cache-Control": "max-age=86400"}
    return web.FileResponse(swagger_ui_static() / name, headers=headers)


def add_routes(app: web.Application) -> None:
    app.router.add_get(OPENAPI_PATH, openapi_document)
    app.router.add_get(SWAGGER_UI_PATH, swagger_ui)
    app.router.add_get(STARTER_PATH, starter)
    for path in PACKAGE_ASSETS:
        app.router.add_get(path, package_asset)
