"""Every Slack action id, block id and view callback id expbot uses, in one place."""
from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum


class ActionId(StrEnum):
    """Action ids of interactive elements in messages and views (value: the experiment name unless noted)."""

    STOP = "experiment_stop"  # Stop button (carries a confirm dialog)
    LOGS = "experiment_logs"  # Logs button
    STOP_MEMBER = "experiment_stop_member"  # static select on a sweep group's parent message
    ELEMENT = "input"  # the element inside every modal input block
    APPROVE = "launch_approve"  # approval request (value: the launch id)
    DENY = "launch_deny"
    IDLE_KEEP_2H = "idle_keep_2h"  # idle warning: the default Keep options; see keep_action_id()
    IDLE_KEEP_24H = "idle_keep_24h"
    IDLE_STOP = "idle_stop"


# Any configured Keep option of an idle warning: the hours are in the id, so new options need no code.
IDLE_KEEP = re.compile(r"^idle_keep_(\d+(?:\.\d+)?)h$")


def keep_action_id(keep: timedelta) -> str:
    """"idle_keep_2h" for 2 hours (matched by IDLE_KEEP)."""
    return f"idle_keep_{keep.total_seconds() / 3600:g}h"


class CallbackId(StrEnum):
    """Callback ids of modal views."""

    LAUNCH_MODAL = "launch_modal"


class BlockId(StrEnum):
    """Block ids of the launch modal's input blocks (keys of view.state.values)."""

    NAME = "launch_name"
    IMAGE = "launch_image"
    COMMAND = "launch_command"
    GPUS = "launch_gpus"
    GPU_TYPE = "launch_gpu_type"
    NODES = "launch_nodes"
    MAX_RUNTIME = "launch_max_runtime"
    MAX_RESTARTS = "launch_max_restarts"
    PROJECT = "launch_project"
    ENV = "launch_env"
    SWEEP = "launch_sweep"


class MessageBlockId(StrEnum):
    """Block ids of button rows in messages (the rows without one get Slack's own)."""

    APPROVAL = "approval"  # Approve / Deny of an approval request
    IDLE_ACTIONS = "idle_actions"  # Keep / Stop of an idle warning


# The action id of the element inside each modal input block.
ELEMENT = ActionId.ELEMENT
