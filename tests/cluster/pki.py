"""Certificates (openssl CLI) and the admin kubeconfig for the test control plane."""
from __future__ import annotations

from pathlib import Path

import yaml

from tests.cluster.processes import run_checked


def make_certificates(pki: Path) -> None:
    """CA, apiserver serving cert, admin client cert (group system:masters), service-account key pair (openssl CLI)."""
    pki.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run_checked(["openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
                 "-subj", "/CN=expbot-testbed-ca",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], pki)
    leaves = {
        "apiserver": ("/CN=kube-apiserver",
                      ("subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
                       "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
                       "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n")),
        "admin": ("/O=system:masters/CN=expbot-testbed-admin",
                  "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n"),
    }
    for name, (subject, ext) in leaves.items():
        (pki / f"{name}.ext").write_text(ext)
        run_checked(["openssl", "req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject], pki)
        run_checked(["openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                     "-CAcreateserial", "-days", "3650", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.crt"], pki)
    run_checked(["openssl", "genrsa", "-out", "sa.key", "2048"], pki)
    run_checked(["openssl", "rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], pki)
    for key in pki.glob("*.key"):
        key.chmod(0o600)


def write_kubeconfig(path: Path, server: str, pki: Path, context: str = "expbot-testbed") -> None:
    """A kubeconfig for server that authenticates as the admin with the client certificate under pki."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": "admin", "user": {"client-certificate": str(pki / "admin.crt"),
                                             "client-key": str(pki / "admin.key")}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": "admin"}}],
        "current-context": context,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
