"""A throw-away CA and the certificates of every component, made with the openssl CLI."""
import subprocess
from pathlib import Path


def openssl(*args: str, cwd: Path) -> None:
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {out.stderr.strip()[-500:]}")


def make_ca(d: Path) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-days", "30", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=llamaops-local-ca", cwd=d)


def issue(d: Path, name: str, subject: str, *, client: bool = True, sans: tuple[str, ...] = ()) -> None:
    """name.key/name.crt signed by the CA in d; EC keys keep this to milliseconds."""
    ext = [f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}"]
    if sans:
        ext.append("subjectAltName=" + ",".join(sans))
    (d / f"{name}.ext").write_text("\n".join(ext) + "\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "30", "-out", f"{name}.crt", "-extfile", f"{name}.ext", cwd=d)


def make_service_account_keys(d: Path) -> None:
    openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
    openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


def kubeconfig(path: Path, server: str, pki: Path, user: str) -> Path:
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {{server: "{server}", certificate-authority: "{pki / 'ca.crt'}"}}
users:
- name: {user}
  user: {{client-certificate: "{pki / (user + '.crt')}", client-key: "{pki / (user + '.key')}"}}
contexts:
- name: local
  context: {{cluster: local, user: {user}, namespace: default}}
current-context: local
""")
    return path
