"""The API's own documentation: the OpenAPI document built from the router, and a Swagger UI page."""

from __future__ import annotations

from aiohttp import web

from exitd.api.context import services_of
from exitd.api.errors import json_response
from exitd.api.openapi import build_document

OPENAPI_PATH = "/api-docs/openapi.json"

# Swagger UI comes from a CDN: the page is a convenience, and offline it still says where the document is.
SWAGGER_UI_VERSION = "5.17.14"
SWAGGER_PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>exitd REST API</title>
  <link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@{SWAGGER_UI_VERSION}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui">
    <p>The interactive viewer loads Swagger UI from cdn.jsdelivr.net. Without it, the API is described by
    <a href="{OPENAPI_PATH}">{OPENAPI_PATH}</a>.</p>
  </div>
  <script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@{SWAGGER_UI_VERSION}/swagger-ui-bundle.js"></script>
  <script>
    if (window.SwaggerUIBundle) {{
      SwaggerUIBundle({{url: "{OPENAPI_PATH}", dom_id: "#swagger-ui"}});
    }}
  </script>
</body>
</html>
"""


async def openapi_document(request: web.Request) -> web.Response:
    rest = services_of(request).config.rest
    return json_response(build_document(request.app, rest.substate_vocabulary, rest.metrics_open))


async def swagger_ui(_request: web.Request) -> web.Response:
    return web.Response(text=SWAGGER_PAGE, content_type="text/html")


def add_routes(app: web.Application) -> None:
    app.router.add_get(OPENAPI_PATH, openapi_document)
    app.router.add_get("/swagger-ui", swagger_ui)
