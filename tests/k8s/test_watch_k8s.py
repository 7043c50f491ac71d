"""The backend's watches on a real API server: stopping them is immediate, expiry is recognised."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from adapters.k8s.errors import KubeTransient, WatchExpired
from adapters.k8s.watch import ClusterCache, Watcher
from tests.k8s.harness import running_expbot


def test_close_shuts_the_open_watches_and_wakes_a_waiting_supervisor_at_once(
    k8s_cluster, k8s_api, k8s_namespace, tmp_path: Path,
) -> None:
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, start=False) as w:
        backend = w.bot.backend
        backend.start()
        watchers = list(backend._watchers)
        woken: list[float] = []
        waiter = threading.Thread(target=lambda: (backend.wait_for_change(60), woken.append(time.monotonic())))
        waiter.start()
        closing = time.monotonic()
        backend.close()
        closed = time.monotonic() - closing
        waiter.join(timeout=5)
        print(f"close() took {closed:.3f}s; the wait ended {woken[0] - closing:.3f}s after it began" if woken else "")
        assert woken and woken[0] - closing < 0.5, "wait_for_change did not end on close()"
        assert closed < 0.5 and all(watcher.join(0) for watcher in watchers)


def test_an_error_event_ends_the_watch_and_bookmarks_move_its_version() -> None:
    """No cluster needed: the event lines as the API server writes them."""
    watcher = Watcher("pods", lambda *args, **kwargs: None, "ns", ClusterCache())
    gone = '{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version"}}'
    with pytest.raises(WatchExpired, match="too old resource version"):
        watcher._fold(gone, "5")
    with pytest.raises(KubeTransient):
        watcher._fold('{"type":"ERROR","object":{"kind":"Status","code":500,"message":"etcd is sad"}}', "5")
    assert watcher._fold('{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}', "5") == "9"
    assert watcher._fold("", "9") == "9"
