"""The API served in this process: uvicorn on a free loopback port, in a thread (the demo, the tests).

``report-pipelines serve`` runs uvicorn in the foreground instead (:func:`report_pipelines.api.serve`).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from report_pipelines.app import App


@contextlib.contextmanager
def serving_in_thread(app: App, api=None, *, log_level: str = "warning", host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``create_api(app)`` (or ``api``) on ``host`` at a free port; yields the base URL; stops on exit.

    The socket is bound before the server starts (no race for the port). ``log_config=None``: uvicorn's
    records go to the process's logging as configured (with the key redaction filter)."""
    import uvicorn

    from report_pipelines.api import create_api

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(api or create_api(app), log_level=log_level, log_config=None, lifespan="off",
                            server_header=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="rp-api-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            sock.close()
            raise RuntimeError("the API server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()
