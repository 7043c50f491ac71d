"""Slack test support: a local Slack Web API server (``FakeSlackApi``) and its pytest fixture."""
