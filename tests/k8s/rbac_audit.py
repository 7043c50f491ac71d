"""What an identity asked the API server for, as RBAC sees it, and what a Role grants, in the same terms.

`recording(token)` wraps the kubernetes client's one HTTP entry point (RESTClientObject.request), so
every ApiClient in the process is seen, the Lease elector's private copy included; only requests
carrying `token` (the ServiceAccount's) are kept. Each becomes an `Access`: the verb, API group,
resource and subresource RBAC authorizes, and whether it was namespaced (a Role) or not (a ClusterRole).
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import yaml
from kubernetes.client import rest

_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


class Access(NamedTuple):
    """One permission as RBAC checks it."""

    namespaced: bool
    group: str
    resource: str
    subresource: str
    verb: str

    def __str__(self) -> str:
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        scope = "" if self.namespaced else " (cluster-wide)"
        return f"{self.verb} {self.group or 'core'}/{what}{scope}"


def access_of(method: str, url: str) -> Access:
    """The permission a request to `url` needs (the API server's own RequestInfo rules)."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if segments[:1] == ["api"]:
        group, rest_ = "", segments[2:]  # /api/v1/...
    elif segments[:1] == ["apis"]:
        group, rest_ = segments[1], segments[3:]  # /apis/<group>/<version>/...
    else:
        raise ValueError(f"not a resource request: {method} {url}")
    namespaced = len(rest_) >= 3 and rest_[0] == "namespaces"
    if namespaced:
        rest_ = rest_[2:]
    resource, name, subresource = (rest_ + ["", "", ""])[:3]
    method = method.upper()
    if method == "GET":
        watch = parse_qs(parts.query).get("watch", ["false"])[0].lower() in ("true", "1")
        verb = "watch" if watch else ("get" if name else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = _VERBS[method]
    return Access(namespaced, group, resource, subresource, verb)


class Recording:
    """The accesses seen so far (thread-safe: watch threads record too)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[Access] = set()

    def add(self, access: Access) -> None:
        with self._lock:
            self._seen.add(access)

    @property
    def accesses(self) -> set[Access]:
        with self._lock:
            return set(self._seen)


@contextlib.contextmanager
def recording(token: str) -> Iterator[Recording]:
    """Record every request made with this bearer token, from any ApiClient in the process."""
    seen = Recording()
    original = rest.RESTClientObject.request

    def request(self: Any, method: str, url: str, headers: dict[str, str] | None = None, *args: Any, **kwargs: Any) -> Any:
        sent = {k.lower(): v for k, v in (headers or {}).items()}
        if sent.get("authorization") == f"Bearer {token}":
            seen.add(access_of(method, url))
        return original(self, method, url, headers, *args, **kwargs)

    rest.RESTClientObject.request = request  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        rest.RESTClientObject.request = original  # type: ignore[method-assign]


def granted(documents: Iterable[dict[str, Any]], kind: str) -> set[Access]:
    """Every permission the Roles (kind=Role) or ClusterRoles among `documents` grant, one per verb."""
    found: set[Access] = set()
    for doc in documents:
        if doc.get("kind") != kind:
            continue
        for rule in doc.get("rules", []):
            for group in rule.get("apiGroups", []):
                for full in rule.get("resources", []):
                    resource, _, subresource = full.partition("/")
                    for verb in rule.get("verbs", []):
                        found.add(Access(kind == "Role", group, resource, subresource, verb))
    return found


def load(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of a manifest file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def token_kubeconfig(admin_kubeconfig: Path, token: str, path: Path) -> Path:
    """A kubeconfig for the admin's cluster (server, CA) that authenticates with `token` instead."""
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = admin["clusters"][0]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": "sa"}}],
        "current-context": "sa",
    }))
    return path
