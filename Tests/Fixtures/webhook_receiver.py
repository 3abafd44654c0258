"""A webhook receiver for the tests: checks each delivery's signature as the README shows,
answers 503 to the first --fail-first attempts of each delivery, and applies each delivery's
effect once, by its idempotency id. GET /stats tells what it saw. Prints "PORT <n>"."""

import argparse
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from parent_watch import exit_with

parser = argparse.ArgumentParser()
parser.add_argument("--secret", required=True)
parser.add_argument("--fail-first", type=int, default=0, help="answer 503 to this many attempts of each delivery")
parser.add_argument("--parent-pid", type=int, default=0, help="exit when this process is gone (the test run)")
args = parser.parse_args()

lock = threading.Lock()
attempts = {}  # delivery id -> [unix time of each attempt]
applied = {}  # delivery id -> the body, applied once
duplicates = 0
bad_signatures = 0
stalled = []  # when each /stall request came


def verified(headers, body: bytes) -> bool:
    # The README's three lines, and a freshness check against replays.
    t, v1 = (part.split("=", 1)[1] for part in headers["agentd-signature"].split(","))
    expected = hmac.new(args.secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(v1, expected) and abs(time.time() - int(t)) < 300


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *_):
        pass

    def answer(self, status: int, payload) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with lock:
            self.answer(200, {
                "attempts": {key: len(times) for key, times in attempts.items()},
                "times": attempts,
                "applied": list(applied.values()),
                "duplicates": duplicates,
                "bad_signatures": bad_signatures,
                "stalled": len(stalled),
            })

    def do_POST(self):
        global duplicates, bad_signatures
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/stall":
            # Headers at once, then a body that never comes: the sender's deadline must cover it.
            with lock:
                stalled.append(time.time())
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.flush()
            time.sleep(60)
            return
        try:
            good = verified(self.headers, body)
        except Exception:
            good = False
        with lock:
            if not good:
                bad_signatures += 1
                self.answer(400, {"error": "bad signature"})
                return
            event = json.loads(body)
            delivery = self.headers["agentd-delivery-id"]
            if delivery != event["id"]:
                bad_signatures += 1
                self.answer(400, {"error": "delivery id header and body differ"})
                return
            attempts.setdefault(delivery, []).append(time.time())
            if len(attempts[delivery]) <= args.fail_first:
                self.answer(503, {"error": "try again"})
                return
            if delivery in applied:
                duplicates += 1
            else:
                applied[delivery] = event
        self.answer(200, {"ok": True})


exit_with(args.parent_pid)

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"PORT {server.server_address[1]}", flush=True)
server.serve_forever()
