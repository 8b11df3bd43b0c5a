"""Container health check for the fboc image (Dockerfile HEALTHCHECK, docker-compose).

Exit 0 when ``GET http://127.0.0.1:<port><path>`` answers 2xx, 1 otherwise. The port defaults to
``FBOC_SERVICE__PORT`` (the environment override of ``service.port``), else 8080. ``--tcp`` only
checks that the port accepts a connection (for ``fboc sandbox``, which has no /healthz). Standard
library only: the image has no curl.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import urllib.error
import urllib.request

DEFAULT_PORT = 8080


def default_port() -> int:
    value = os.environ.get("FBOC_SERVICE__PORT", "")
    return int(value) if value.isdigit() else DEFAULT_PORT


def check(host: str, port: int, path: str, timeout: float, tcp: bool) -> str | None:
    """None when healthy, else a one-line reason."""
    if tcp:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return None
        except OSError as exc:
            return f"{host}:{port}: {exc}"
    url = f"http://{host}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"{url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{url}: {exc}"
    return None if 200 <= status < 300 else f"{url}: HTTP {status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port())
    parser.add_argument("--path", default="/healthz")
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--tcp", action="store_true", help="only check that the port is open")
    args = parser.parse_args(argv)
    problem = check(args.host, args.port, args.path, args.timeout, args.tcp)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
