"""List-then-watch of expbot's Jobs and Pods into a small in-memory cache (no polling per experiment).

Each kind has one thread: list (paginated) -> watch from the list's resourceVersion -> on 410 Gone,
list again; a stream that stays quiet past its read timeout is reopened from the last version seen.
Stopping shuts the open stream's socket down, so a thread blocked reading a quiet watch ends at once.
"""
from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from adapters.k8s.cache import ClusterCache
from adapters.k8s.errors import WatchExpired, translate
from adapters.k8s.names import MANAGED_SELECTOR
from core.policy import Backoff

__all__ = ["ClusterCache", "Watcher", "stop_all"]  # ClusterCache lives in adapters.k8s.cache
log = logging.getLogger(__name__)
_PAGE = 500
_RELIST_BACKOFF = Backoff(base=timedelta(seconds=0.2), cap=timedelta(seconds=30))


class Watcher:
    """One thread keeping the cache of one kind ("jobs", "pods" or "nodes") in step with the API."""

    def __init__(
        self, kind: str, list_fn: Callable[..., Any], namespace: str, cache: Any, *,
        read_timeout: float = 90.0, watch_timeout: int = 300, selector: str | None = MANAGED_SELECTOR,
    ) -> None:
        # cache: a ClusterCache, or anything with its apply(kind, type, raw) and replace(kind, raws)
        self.kind, self.list_fn, self.namespace, self.cache = kind, list_fn, namespace, cache
        self.selector = selector  # None: every object (Nodes are not expbot's)
        self.read_timeout, self.watch_timeout = read_timeout, watch_timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._response: Any = None  # the open stream (urllib3 response), for interrupt() to shut
        self._thread = threading.Thread(target=self._run, name=f"k8s-watch-{kind}", daemon=True)
        self.relists = 0  # how often it had to list again (410 Gone, errors): for tests and metrics

    def start(self) -> "Watcher":
        """Start listing and watching in the background."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the thread: its open stream is shut at once; wait at most `timeout` for it to end."""
        self.interrupt()
        self.join(timeout)

    def interrupt(self) -> None:
        """Ask the thread to end and shut its open stream now (without waiting)."""
        self._stop.set()
        with self._lock:
            response = self._response
        if response is not None:
            _shut(response)

    def join(self, timeout: float) -> bool:
        """Wait at most `timeout` seconds for the thread to end; whether it did."""
        self._thread.join(max(timeout, 0.0))
        return not self._thread.is_alive()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                version = self._list()
                failures = 0
                while not self._stop.is_set():
                    version = self._watch_from(version)
            except WatchExpired:
                log.info("%s watch expired (410 Gone): listing again", self.kind)
            except Exception as e:  # the API restarting, the network: list again after a pause
                if self._stop.is_set():
                    break  # the stream was shut under it: not a failure
                failures += 1
                delay = _RELIST_BACKOFF.delay(failures + 1, random).total_seconds()  # type: ignore[arg-type]
                log.warning("%s watch failed (%s); listing again in %.1fs", self.kind, translate(e), delay)
                self._stop.wait(delay)
            self.relists += 1

    def _list(self) -> str:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            resp = self.list_fn(
                self.namespace, label_selector=self.selector, limit=_PAGE, _continue=token,
                _preload_content=False, _request_timeout=(10, 60),
            )
            body = json.loads(resp.data)
            items.extend(body.get("items") or ())
            meta = body.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                self.cache.replace(self.kind, items)
                return str(meta.get("resourceVersion", ""))

    def _watch_from(self, version: str) -> str:
        """Stream events from `version` until the server ends the watch; the newest version seen."""
        response = None
        try:
            response = self.list_fn(
                self.namespace, label_selector=self.selector, resource_version=version, watch=True,
                allow_watch_bookmarks=True, timeout_seconds=self.watch_timeout,
                _preload_content=False, _request_timeout=(10, self.read_timeout),
            )
            if not self._track(response):
                return version  # stopped while it was being opened
            for line in iter_resp_lines(response):
                version = self._fold(line, version)
        except (ReadTimeoutError, ProtocolError) as e:
            # Quiet past the read timeout, or the server closed the stream: reopen from where we were.
            log.debug("%s watch stream ended (%s): watching again from %s", self.kind, e, version)
        except Exception as e:
            raise translate(e) from e
        finally:
            if response is not None:
                self._track(None)
                response.close()
                response.release_conn()
        return version

    def _fold(self, line: str, version: str) -> str:
        """Apply one event line to the cache; the newest resourceVersion."""
        if not line:
            return version
        event = json.loads(line)
        obj = event.get("object") or {}
        kind = event.get("type")
        if kind == "ERROR":  # the server ended the watch, almost always with 410 Gone (WatchExpired)
            raise translate(ApiException(status=obj.get("code"), reason=obj.get("message") or obj.get("reason")))
        version = (obj.get("metadata") or {}).get("resourceVersion") or version
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self.cache.apply(self.kind, kind, obj)
        return version

    def _track(self, response: Any) -> bool:
        """Remember the open stream for interrupt(); False when stopping already (close it instead)."""
        with self._lock:  # with interrupt()'s read: either it sees this stream, or this sees the stop
            self._response = response
            return response is None or not self._stop.is_set()


def _shut(response: Any) -> None:
    """Wake the thread reading a stream: shutting the socket down ends a blocked read, closing does not."""
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is None:
        return
    try:
        # socket.socket's own shutdown, also under TLS: SSLSocket's would drop the SSL object the
        # reading thread is inside; the reader's finally closes the response properly.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # closed already


def stop_all(watchers: list[Watcher], timeout: float) -> None:
    """Interrupt every watcher at once, then wait for them together at most `timeout` seconds."""
    for watcher in watchers:
        watcher.interrupt()
    deadline = time.monotonic() + timeout
    for watcher in watchers:
        if not watcher.join(deadline - time.monotonic()):
            log.warning("%s watch did not end within %gs (a list call in flight): left to exit with the process",
                        watcher.kind, timeout)
