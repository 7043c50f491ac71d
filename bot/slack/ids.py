"""Every Slack action id, block id and view callback id expbot uses, in one place."""
from __future__ import annotations

from enum import StrEnum


class ActionId(StrEnum):
    """Action ids of interactive elements in messages and views (value: the experiment name)."""

    STOP = "experiment_stop"  # Stop button (carries a confirm dialog)
    LOGS = "experiment_logs"  # Logs button
    STOP_MEMBER = "experiment_stop_member"  # static select on a sweep group's parent message
    ELEMENT = "input"  # the element inside every modal input block


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
    MAX_RUNTIME = "launch_max_runtime"
    MAX_RESTARTS = "launch_max_restarts"
    PROJECT = "launch_project"
    ENV = "launch_env"
    SWEEP = "launch_sweep"


# The action id of the element inside each modal input block.
ELEMENT = ActionId.ELEMENT
