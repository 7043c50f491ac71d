"""A local Slack stand-in for trying expbot without a workspace: the page at /sandbox of `expbot serve`.

Active only when no Slack token is configured. It answers the Web API calls expbot makes and sends
people's actions to expbot's real Bolt app, signed as Slack signs them: nothing in bot/slack knows.
"""
