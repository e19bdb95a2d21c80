"""The built-in demo origin: serves demo/site on loopback, like a small image host would.

Files ending in `.as-text` are served as text/plain, to show that the filter looks at
bytes, not at the declared type.
"""

import http.server
import sys
from functools import partial
from pathlib import Path


class Handler(http.server.SimpleHTTPRequestHandler):
    def guess_type(self, path):
        if str(path).endswith(".as-text"):
            return "text/plain"
        return super().guess_type(path)

    def end_headers(self):
        self.send_header("Cache-Control", "public, max-age=60")
        super().end_headers()


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 7878
    site = Path(__file__).parent / "site"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), partial(Handler, directory=str(site)))
    print(f"demo origin on http://127.0.0.1:{port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
