"""A real gRPC peer (grpcio, generic handlers, raw bytes: no protoc) for tokengate's e2e tests.

server: prints "PORT <n>" and serves /echo.Echo/{Unary,ServerStream,ClientStream,Bidi} and
        /echo.Admin/Unary until killed. Each reply is JSON saying what the server saw.
client TARGET TOKEN: runs every call through TARGET with TOKEN ("" for none) and prints one JSON
        document with, per call, the status code name, details, replies, initial metadata and
        trailers.
"""
import json
import sys
from concurrent import futures

import grpc

SEEN_HEADERS = ("x-ms-client-principal-name", "x-ms-client-principal-id", "authorization",
                "x-call", "x-arr-clientcert", "x-forwarded-proto")


def seen(ctx, payload):
    md = dict(ctx.invocation_metadata())
    return json.dumps({"payload": payload,
                       "headers": {k: md.get(k) for k in SEEN_HEADERS}}).encode()


def finish(ctx):
    ctx.set_trailing_metadata((("x-trailer", "done"),))


def unary(req, ctx):
    ctx.send_initial_metadata((("x-initial", "unary"),))
    finish(ctx)
    return seen(ctx, req.decode())


def server_stream(req, ctx):
    finish(ctx)
    for i in range(int(req.decode())):
        yield seen(ctx, str(i))


def client_stream(reqs, ctx):
    parts = [r.decode() for r in reqs]
    finish(ctx)
    return seen(ctx, "+".join(parts))


def bidi(reqs, ctx):
    finish(ctx)
    for r in reqs:
        yield seen(ctx, r.decode().upper())


def serve():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler("echo.Echo", {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        }),
        grpc.method_handlers_generic_handler("echo.Admin", {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
        }),
    ))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    server.wait_for_termination()


def outcome(call_fn):
    try:
        replies, call = call_fn()
        return {"code": call.code().name, "details": call.details(),
                "replies": [json.loads(r) for r in replies],
                "initial": dict(call.initial_metadata() or ()),
                "trailers": dict(call.trailing_metadata() or ())}
    except grpc.RpcError as e:
        return {"code": e.code().name, "details": e.details(), "replies": [],
                "initial": dict(e.initial_metadata() or ()),
                "trailers": dict(e.trailing_metadata() or ())}


def client(target, token):
    md = [("x-call", "meta-1")]
    if token:
        md.append(("authorization", f"Bearer {token}"))
    # A client-sent certificate header must never reach the upstream.
    md.append(("x-arr-clientcert", "spoofed"))
    out = {}
    with grpc.insecure_channel(target) as ch:
        def unary_call(path):
            def run():
                reply, call = ch.unary_unary(path).with_call(b"hi", metadata=md, timeout=10)
                return [reply], call
            return run

        def server_stream_call():
            call = ch.unary_stream("/echo.Echo/ServerStream")(b"3", metadata=md, timeout=10)
            return list(call), call

        def client_stream_call():
            reply, call = ch.stream_unary("/echo.Echo/ClientStream").with_call(
                iter([b"a", b"b", b"c"]), metadata=md, timeout=10)
            return [reply], call

        def bidi_call():
            call = ch.stream_stream("/echo.Echo/Bidi")(iter([b"x", b"y"]), metadata=md,
                                                        timeout=10)
            return list(call), call

        out["unary"] = outcome(unary_call("/echo.Echo/Unary"))
        out["server_stream"] = outcome(server_stream_call)
        out["client_stream"] = outcome(client_stream_call)
        out["bidi"] = outcome(bidi_call)
        out["admin"] = outcome(unary_call("/echo.Admin/Unary"))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve()
    else:
        client(sys.argv[2], sys.argv[3])
