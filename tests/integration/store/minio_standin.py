"""A STAND-IN for MinIO (no MinIO server exists in any registry this project may install from): it
answers the few S3 and admin-API requests the chart's set-up Job makes, as MinIO documents them,
and records what it was told. Admin payloads are decrypted with the root secret by minio-py's own
`minio.crypto.decrypt`, so a payload the Job encrypted wrongly fails here as it would on MinIO.
It checks only which access key signed a request, not the signature."""
import io
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from minio.crypto import decrypt
from urllib3.response import HTTPResponse


@dataclass
class MinioState:
    root_user: str
    root_password: str
    buckets: set[str] = field(default_factory=set)
    users: dict[str, str] = field(default_factory=dict)  # access key -> secret key
    policies: dict[str, dict] = field(default_factory=dict)
    user_policy: dict[str, str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    state: MinioState

    def log_message(self, *args):
        pass

    def _reply(self, code: int, body: bytes = b"") -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _signed_by_root(self) -> bool:
        found = re.search(r"Credential=([^/]+)/", self.headers.get("Authorization", ""))
        return bool(found) and found.group(1) == self.state.root_user

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self):  # bucket location, asked before the first request to a bucket
        self.state.requests.append(f"GET {self.path}")
        xml = b'<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></LocationConstraint>'
        self._reply(200 if "location" in self.path else 404, xml if "location" in self.path else b"")

    def do_HEAD(self):
        self.state.requests.append(f"HEAD {self.path}")
        if not self._signed_by_root():
            return self._reply(403)
        self._reply(200 if self.path.strip("/") in self.state.buckets else 404)

    def do_PUT(self):
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        body = self._body()
        self.state.requests.append(f"PUT {url.path}")
        if not self._signed_by_root():
            return self._reply(403)
        if not url.path.startswith("/minio/admin/v3/"):
            self.state.buckets.add(url.path.strip("/"))
            return self._reply(200)
        command = url.path.rsplit("/", 1)[1]
        if command == "add-canned-policy":
            self.state.policies[query["name"]] = json.loads(body)
        elif command == "add-user":
            sealed = HTTPResponse(body=io.BytesIO(body), preload_content=False)
            user = json.loads(decrypt(sealed, self.state.root_password))
            assert user["status"] == "enabled"
            self.state.users[query["accessKey"]] = user["secretKey"]
        elif command == "set-user-or-group-policy":
            if query["isGroup"] != "false" or query["userOrGroup"] not in self.state.users \
                    or query["policyName"] not in self.state.policies:
                return self._reply(400)
            self.state.user_policy[query["userOrGroup"]] = query["policyName"]
        else:
            return self._reply(501)
        self._reply(200)


def start_minio_standin(root_user: str, root_password: str) -> tuple[ThreadingHTTPServer, MinioState, str]:
    state = MinioState(root_user, root_password)
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state, f"http://127.0.0.1:{server.server_address[1]}"
