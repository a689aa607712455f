"""Django (class-based views, its own threaded WSGI server as `runserver` uses): the agreement
suite's route table (see tests/agreement.rs). Reports `request.META` (the CGI-style environ) and
the identity headers read through `request.headers`."""

import base64
import json
import socketserver

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="agreement-suite",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    LOGGING_CONFIG=None,
)
django.setup()

from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path, re_path  # noqa: E402
from django.views import View  # noqa: E402

API = [
    "X-MS-CLIENT-PRINCIPAL", "X-MS-CLIENT-PRINCIPAL-ID", "X-MS-CLIENT-PRINCIPAL-NAME",
    "X-MS-CLIENT-PRINCIPAL-IDP", "X-MS-TOKEN-AAD-ACCESS-TOKEN", "X-MS-TOKEN-AAD-ID-TOKEN",
    "Authorization", "X-ARR-ClientCert", "X-Original-URL", "Forwarded", "X-Real-IP",
]


def report(request, route):
    seen = {
        "route": route,
        "method": request.method,
        "path": request.path,
        "headers": [[k, str(v)] for k, v in request.META.items()
                    if k.startswith("HTTP_") or k.startswith("CONTENT_")],
        "api": {name: request.headers.get(name) for name in API},
    }
    resp = HttpResponse("ok\n")
    resp["X-Agree-Report"] = base64.b64encode(json.dumps(seen).encode()).decode()
    return resp


def view(route, *methods):
    """A class-based view answering `methods`; Django's View serves HEAD with `get`."""

    def handle(self, request, *args, **kwargs):
        return report(request, route)

    attrs = {m.lower(): handle for m in methods}
    return type(f"View_{route}", (View,), attrs).as_view()


ALL = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class Items(View):
    def get(self, request, item):
        return report(request, "item_get")

    def delete(self, request, item):
        return report(request, "item_delete")


urlpatterns = [
    path("admin", view("admin", *ALL)),
    re_path(r"^admin/.*$", view("admin", *ALL)),
    path("odata/$batch", view("batch", "POST")),
    path("odata/<str:name>", view("odata", "GET")),
    path("items/<str:item>", Items.as_view()),
    path("reports", view("report", "GET")),
    path("public/page", view("public", "GET")),
    path("public/me", view("public_me", "GET")),
    path("public/secret", view("public_secret", "POST")),
    path("me", view("me", "GET")),
]


class Handler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


if __name__ == "__main__":
    server = Server(("127.0.0.1", 0), Handler)
    server.set_app(get_wsgi_application())
    print(f"AGREEMENT_LISTENING {server.server_port}", flush=True)
    server.serve_forever()
