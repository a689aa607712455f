"""Starlette under uvicorn (httptools, as `uvicorn[standard]` runs): the agreement suite's route table (see tests/agreement.rs).
Reports the raw ASGI header list and the identity headers read through `request.headers`."""

import base64
import json
import socket

import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

ALL = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
API = [
    "X-MS-CLIENT-PRINCIPAL", "X-MS-CLIENT-PRINCIPAL-ID", "X-MS-CLIENT-PRINCIPAL-NAME",
    "X-MS-CLIENT-PRINCIPAL-IDP", "X-MS-TOKEN-AAD-ACCESS-TOKEN", "X-MS-TOKEN-AAD-ID-TOKEN",
    "Authorization", "X-ARR-ClientCert", "X-Original-URL", "Forwarded", "X-Real-IP",
]


def handler(route):
    async def handle(request):
        seen = {
            "route": route,
            "method": request.method,
            "path": request.url.path,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
            "api": {name: request.headers.get(name) for name in API},
        }
        body = base64.b64encode(json.dumps(seen).encode()).decode()
        return PlainTextResponse("ok\n", headers={"X-Agree-Report": body})

    return handle


routes = [
    Route("/admin", handler("admin"), methods=ALL),
    Route("/admin/{rest:path}", handler("admin"), methods=ALL),
    Route("/odata/$batch", handler("batch"), methods=["POST"]),
    Route("/odata/{name}", handler("odata"), methods=["GET"]),
    Route("/items/{item}", handler("item_delete"), methods=["DELETE"]),
    Route("/items/{item}", handler("item_get"), methods=["GET"]),
    Route("/reports", handler("report"), methods=["GET"]),
    Route("/public/page", handler("public"), methods=["GET"]),
    Route("/public/me", handler("public_me"), methods=["GET"]),
    Route("/public/secret", handler("public_secret"), methods=["POST"]),
    Route("/me", handler("me"), methods=["GET"]),
]

app = Starlette(routes=routes)

if __name__ == "__main__":
    sock = socket.socket()
    # Accepted sockets inherit it: without it, a response written in two parts waits out the
    # client's delayed ACK (40 ms) on every request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"AGREEMENT_LISTENING {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, http="httptools", lifespan="off", log_level="warning",
                            access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
