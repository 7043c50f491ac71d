"""Fixtures shared by every test directory."""
from hypothesis import settings

# tests.k8s.fixtures lives at the root so the backend contract (tests/integration) can use the cluster too.
pytest_plugins = ["tests.slack.fixtures", "tests.k8s.fixtures"]

# Property tests check behaviour, not speed (speed lives in benchmarks/): without a deadline a
# GC pause or a busy CI machine cannot turn a 5 ms example into a DeadlineExceeded failure.
settings.register_profile("expbot", deadline=None)
settings.load_profile("expbot")
