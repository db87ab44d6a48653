"""Just enough of the Kubernetes API over stdlib HTTPS for the bring-up checks."""
import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path


class Api:
    def __init__(self, server: str, pki: Path, user: str = "admin"):
        self.server = server
        self.ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.ctx.load_cert_chain(str(pki / f"{user}.crt"), str(pki / f"{user}.key"))

    def get(self, path: str) -> tuple[int, dict | str]:
        try:
            with urllib.request.urlopen(self.server + path, context=self.ctx, timeout=5) as r:
                body = r.read().decode()
                return r.status, (json.loads(body) if body.startswith("{") else body)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except OSError as e:
            return 0, str(e)


def wait_for(what: str, check, timeout: float, on_fail=lambda: "") -> None:
    """Poll check() until it returns True; raise with the last answer and on_fail()'s details."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        ok, last = check()
        if ok:
            return
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what} (last: {str(last)[:300]})\n{on_fail()}")


def answers_200(api: Api, path: str):
    """For wait_for: (the GET answered 200, what it answered), from one request."""
    code, body = api.get(path)
    return code == 200, body


def node_ready(api: Api, name: str):
    code, node = api.get(f"/api/v1/nodes/{name}")
    if code != 200:
        return False, node
    conds = {c["type"]: c for c in node.get("status", {}).get("conditions", [])}
    ready = conds.get("Ready", {})
    return ready.get("status") == "True", ready.get("message")
