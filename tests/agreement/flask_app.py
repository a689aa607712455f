"""Flask on a WSGI server: the agreement suite's route table (see tests/agreement.rs).

Run as `python flask_app.py` for Werkzeug's own server, or under gunicorn (`flask_app:app`,
see gunicorn_run.py) for the CGI-style server that maps `_` and `-` to one environ variable.
Every handler answers with `X-Agree-Report`: base64 JSON of the route id, the method and path the
framework saw, every header as the framework lists them, and the identity headers read through
`request.headers.get`.
"""

import base64
import json
import sys

from flask import Flask, request, make_response

ALL = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
API = [
    "X-MS-CLIENT-PRINCIPAL", "X-MS-CLIENT-PRINCIPAL-ID", "X-MS-CLIENT-PRINCIPAL-NAME",
    "X-MS-CLIENT-PRINCIPAL-IDP", "X-MS-TOKEN-AAD-ACCESS-TOKEN", "X-MS-TOKEN-AAD-ID-TOKEN",
    "Authorization", "X-ARR-ClientCert", "X-Original-URL", "Forwarded", "X-Real-IP",
]


class HTTPMethodOverrideMiddleware:
    """The method-override middleware from Flask's documentation (patterns/methodoverrides)."""

    allowed_methods = frozenset(ALL)
    bodyless_methods = frozenset(["GET", "HEAD", "OPTIONS", "DELETE"])

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        method = environ.get("HTTP_X_HTTP_METHOD_OVERRIDE", "").upper()
        if method in self.allowed_methods:
            environ["REQUEST_METHOD"] = method
        if method in self.bodyless_methods:
            environ["CONTENT_LENGTH"] = "0"
        return self.app(environ, start_response)


app = Flask(__name__)
app.wsgi_app = HTTPMethodOverrideMiddleware(app.wsgi_app)


def report(route):
    seen = {
        "route": route,
        "method": request.method,
        "path": request.path,
        "headers": [[k, v] for k, v in request.headers.items()],
        "api": {name: request.headers.get(name) for name in API},
    }
    resp = make_response("ok\n")
    resp.headers["X-Agree-Report"] = base64.b64encode(json.dumps(seen).encode()).decode()
    return resp


@app.route("/admin", methods=ALL)
@app.route("/admin/<path:rest>", methods=ALL)
def admin(rest=None):
    return report("admin")


@app.route("/odata/$batch", methods=["POST"])
def batch():
    return report("batch")


@app.route("/odata/<name>", methods=["GET"])
def odata(name):
    return report("odata")


@app.route("/items/<item>", methods=["DELETE"])
def item_delete(item):
    return report("item_delete")


@app.route("/items/<item>", methods=["GET"])
def item_get(item):
    return report("item_get")


@app.route("/reports", methods=["GET"])
def reports():
    return report("report")


@app.route("/public/page", methods=["GET"])
def public():
    return report("public")


@app.route("/public/me", methods=["GET"])
def public_me():
    return report("public_me")


@app.route("/public/secret", methods=["POST"])
def public_secret():
    return report("public_secret")


@app.route("/me", methods=["GET"])
def me():
    return report("me")


if __name__ == "__main__":
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Handler(WSGIRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as behind a proxy

        def log_request(self, *args, **kwargs):
            pass

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Handler)
    print(f"AGREEMENT_LISTENING {server.server_port}", flush=True)
    server.serve_forever()
