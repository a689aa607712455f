"""gunicorn < 22 (gthread workers, keep-alive) serving flask_app: a CGI-style server that maps `_`
and `-` in header names to one environ variable. Prints the port it bound."""

import sys

from gunicorn.app.base import BaseApplication

from flask_app import app


class Server(BaseApplication):
    def load_config(self):
        for key, value in {
            "bind": "127.0.0.1:0",
            "workers": 1,
            "worker_class": "gthread",
            "threads": 8,
            "keepalive": 30,
            "loglevel": "warning",
            "when_ready": announce,
        }.items():
            self.cfg.set(key, value)

    def load(self):
        return app


def announce(server):
    port = server.LISTENERS[0].sock.getsockname()[1]
    print(f"AGREEMENT_LISTENING {port}", flush=True)


if __name__ == "__main__":
    Server().run()
