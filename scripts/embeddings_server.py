#!/usr/bin/env python3
"""An OpenAI-compatible POST /v1/embeddings on 127.0.0.1 over WordLlama (English; its model is
in the wheel, so it runs offline), for make bench-memory-semantic:

    embeddings_server.py --port 9100

{"model", "input": text or [texts]} -> {"object": "list", "data": [{"index", "embedding"}], "model"}.
Writes its port to standard output once it listens.
"""
import argparse
import json
import shutil
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import wordllama
from wordllama import WordLlama


def load():
    # WordLlama 0.4 looks for its bundled tokenizer under tokenizer/, but the wheel puts it under
    # tokenizers/, and then tries huggingface.co: a cache with the file in place keeps it offline.
    cache = Path(tempfile.mkdtemp(prefix="wordllama-"))
    tokenizers = WordLlama.get_file_path("tokenizer", cache)
    tokenizers.mkdir(parents=True, exist_ok=True)
    bundled = Path(wordllama.__file__).parent / "tokenizers"
    for config in bundled.glob("*.json"):
        shutil.copy(config, tokenizers / config.name)
    return WordLlama.load(cache_dir=cache, disable_download=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    model = load()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            if self.path.rstrip("/") not in ("/v1/embeddings", "/embeddings"):
                self.send_error(404)
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            inputs = body.get("input", [])
            if isinstance(inputs, str):
                inputs = [inputs]
            vectors = model.embed(inputs, norm=True) if inputs else []
            data = [{"object": "embedding", "index": i, "embedding": [float(x) for x in vector]} for i, vector in enumerate(vectors)]
            reply = json.dumps({"object": "list", "data": data, "model": body.get("model", "wordllama-l2-supercat-256")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
