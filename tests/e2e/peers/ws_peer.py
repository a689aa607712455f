"""A real WebSocket peer (the `websockets` library) for tokengate's e2e tests.

server: prints "PORT <n>"; on each connection first sends a JSON text frame with the handshake
        headers it saw, then echoes every frame (text as text, binary as binary) until closed.
client URL TOKEN: connects through URL with TOKEN ("" for none), sends a text and a binary
        frame, and prints one JSON document: the handshake status, the server's first frame and
        the echoes; or the HTTP status the handshake was refused with.
"""
import asyncio
import json
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import InvalidStatus

SEEN_HEADERS = ("x-ms-client-principal-name", "authorization", "x-forwarded-proto",
                "x-arr-clientcert")


async def handler(ws):
    h = ws.request.headers
    await ws.send(json.dumps({k: h.get(k) for k in SEEN_HEADERS}))
    async for msg in ws:
        await ws.send(msg)


async def server():
    async with serve(handler, "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await asyncio.Future()


async def client(url, token):
    headers = {"x-arr-clientcert": "spoofed"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        async with connect(url, additional_headers=headers, open_timeout=10) as ws:
            first = json.loads(await ws.recv())
            await ws.send("hello")
            text = await ws.recv()
            await ws.send(b"\x00\x01binary")
            binary = await ws.recv()
            print(json.dumps({"status": 101, "seen": first, "text": text,
                              "binary": binary.hex()}), flush=True)
    except InvalidStatus as e:
        print(json.dumps({"status": e.response.status_code,
                          "body": e.response.body.decode(errors="replace")}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        asyncio.run(server())
    else:
        asyncio.run(client(sys.argv[2], sys.argv[3]))
