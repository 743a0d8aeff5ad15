"""``python -m fedledger.contracts.rpcserver``: the dev chain over HTTP JSON-RPC.

Serves :class:`~fedledger.contracts.devchain.DevChain` on one port, one request at a
time (a chain is a sequence), batches included. ``--port 0`` picks a free port; the URL
is printed on stdout's first line and, with ``--url-file``, written to that file once
the server listens (what a launcher waits for). ``--fund ADDRESS=WEI`` sets genesis
balances. ``--block-time T`` mines a block every T seconds (``--block-mode fixed``) or
after exponential gaps of mean T (``exponential``, ``--seed``) with the pooled
transactions; without it each transaction is mined at once. SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from fedledger.contracts.devchain import DevChain, RpcFault


def answer(chain: DevChain, request: Any) -> dict[str, Any]:
    """One JSON-RPC 2.0 request object to its response object."""
    req_id = request.get("id") if isinstance(request, dict) else None
    base = {"jsonrpc": "2.0", "id": req_id}
    if not isinstance(request, dict) or not isinstance(request.get("method"), str):
        return {**base, "error": {"code": -32600, "message": "invalid request"}}
    params = request.get("params") or []
    try:
        return {**base, "result": chain.handle(request["method"], list(params))}
    except RpcFault as fault:
        error: dict[str, Any] = {"code": fault.code, "message": fault.message}
        if fault.data is not None:
            error["data"] = fault.data
        return {**base, "error": error}
    except (TypeError, ValueError, KeyError) as exc:
        return {**base, "error": {"code": -32602, "message": f"invalid params: {exc}"}}


def make_server(
    chain: DevChain, host: str = "127.0.0.1", port: int = 0, lock: threading.Lock | None = None
) -> HTTPServer:
    lock = lock or threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(size) or b"null")
            except json.JSONDecodeError:
                reply: Any = {"jsonrpc": "2.0", "id": None,
                              "error": {"code": -32700, "message": "parse error"}}
            else:
                with lock:
                    if isinstance(body, list):
                        reply = [answer(chain, r) for r in body]
                    else:
                        reply = answer(chain, body)
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: a localnet's chain serves thousands of polls

    return HTTPServer((host, port), Handler)


def mine_forever(chain: DevChain, lock: threading.Lock, stop: threading.Event) -> None:
    """The miner thread of a chain with ``block_time`` > 0: a block per gap, until stop."""
    while not stop.wait(chain.next_gap()):
        with lock:
            chain.mine_pending()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fedledger.contracts.rpcserver")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--chain-id", type=int, default=1337)
    ap.add_argument("--fund", action="append", default=[], metavar="ADDRESS=WEI")
    ap.add_argument("--url-file", type=Path)
    ap.add_argument("--block-time", type=float, default=0.0,
                    help="seconds between blocks; 0: a block per transaction")
    ap.add_argument("--block-mode", choices=("fixed", "exponential"), default="fixed")
    ap.add_argument("--seed", type=int, default=0, help="seeds the exponential block gaps")
    args = ap.parse_args(argv)
    chain = DevChain(chain_id=args.chain_id, block_time=args.block_time,
                     block_mode=args.block_mode, seed=args.seed)
    for item in args.fund:
        address, _, wei = item.partition("=")
        if not wei.isdigit():
            ap.error(f"--fund {item!r}: expected ADDRESS=WEI with WEI a whole number")
        chain.rpc_evm_setAccountBalance(address, int(wei))
    lock, stopped = threading.Lock(), threading.Event()
    server = make_server(chain, args.host, args.port, lock)
    if args.block_time > 0:
        threading.Thread(target=mine_forever, args=(chain, lock, stopped), daemon=True).start()
    url = f"http://{args.host}:{server.server_address[1]}"
    print(url, flush=True)
    if args.url_file is not None:
        tmp = args.url_file.with_suffix(".tmp")
        tmp.write_text(url + "\n", encoding="utf-8")
        tmp.replace(args.url_file)

    def stop(signum: int, frame: Any) -> None:
        stopped.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
