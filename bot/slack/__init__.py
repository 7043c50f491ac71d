"""Slack-facing presentation: ids, Block Kit message builders, modals and the App Home view."""
