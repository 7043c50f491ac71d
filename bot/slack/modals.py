"""The launch modal: its view, and turning its submitted values into one launch line."""
from __future__ import annotations

import re
import shlex
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    InputBlock,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.slack.mrkdwn import for_users, limit_text, truncate
from bot.slack.ids import ELEMENT, BlockId, CallbackId
from core.durations import format_duration
from core.errors import OptionError
from core.spec import LaunchConfig

MAX_OPTIONS = 100
# Slack documents no length limit for a view_submission error (only for the block's own label and
# hint: 2,000), and expbot's errors end with what to do instead, so they are kept whole up to that.
ERROR_LIMIT = 2000
_CONTINUATION = re.compile(r"\\\r?\n")  # a shell line continuation: backslash-newline

# OptionError.option -> the modal block that shows the error.
_ERROR_BLOCKS: dict[str, BlockId] = {
    "name": BlockId.NAME,
    "--image": BlockId.IMAGE,
    "--": BlockId.COMMAND,
    "command": BlockId.COMMAND,
    "--gpus": BlockId.GPUS,
    "--nodes": BlockId.NODES,
    "--gpu-type": BlockId.GPU_TYPE,
    "--hours": BlockId.MAX_RUNTIME,
    "--max-runtime": BlockId.MAX_RUNTIME,
    "--max-restarts": BlockId.MAX_RESTARTS,
    "--project": BlockId.PROJECT,
    "--env": BlockId.ENV,
    "--sweep": BlockId.SWEEP,
}


def _text_input(
    block_id: BlockId, label: str, *, initial: str | None = None, placeholder: str | None = None,
    hint: str | None = None, multiline: bool = False, optional: bool = False,
) -> InputBlock:
    element = PlainTextInputElement(
        action_id=ELEMENT.value, initial_value=initial, multiline=multiline or None,
        placeholder=truncate(placeholder, 150) if placeholder else None,
    )
    return InputBlock(
        block_id=block_id.value, label=label, element=element,
        hint=truncate(hint, 2000) if hint else None, optional=optional or None,
    )


def _select(block_id: BlockId, label: str, choices: list[str], initial: str | None) -> InputBlock:
    options = [Option(value=c[:150], text=truncate(c, 75)) for c in choices[:MAX_OPTIONS]]
    chosen = next((o for o in options if o.value == initial), None)
    element = StaticSelectElement(
        action_id=ELEMENT.value, placeholder=f"Choose a {label.lower()}", options=options,
        initial_option=chosen,
    )
    return InputBlock(block_id=block_id.value, label=label, element=element, optional=True)


def launch_modal(
    gpu_types: list[str], projects: list[str], defaults: LaunchConfig, private_metadata: str = ""
) -> View:
    """The launch form; its submission goes through launch_text_from_modal and parse_launch."""
    default_type = defaults.resolved_default_gpu_type()
    blocks: list[Block] = [
        _text_input(BlockId.NAME, "Name", placeholder="e.g. train-bert",
                    hint="Lowercase letters, digits and '-'."),
        _text_input(BlockId.IMAGE, "Image", placeholder=defaults.default_image, optional=True,
                    hint="Container image; leave empty for the default."),
        _text_input(BlockId.COMMAND, "Command", multiline=True,
                    placeholder="python train.py --lr 3e-4",
                    hint="The command line, quoted as in a shell. Sweep values go in as {key}."),
        _text_input(BlockId.GPUS, "GPUs", initial=str(defaults.default_gpus), optional=True,
                    hint=f"Number of GPUs per node, 0 to {defaults.max_gpus}."),
    ]
    if gpu_types:
        blocks.append(_select(BlockId.GPU_TYPE, "GPU type", gpu_types, default_type))
    else:
        blocks.append(_text_input(BlockId.GPU_TYPE, "GPU type", optional=True,
                                  initial=default_type))
    blocks += [
        _text_input(BlockId.NODES, "Nodes", initial="1", optional=True,
                    hint=f"Nodes of one distributed run, each with the GPUs above; 1 to {defaults.max_nodes}."),
        _text_input(BlockId.MAX_RUNTIME, "Max runtime", optional=True,
                    initial=limit_text(defaults.default_max_runtime),
                    hint=f"e.g. 90m, 12h, 1h30m; at most "
                         f"{format_duration(defaults.max_runtime_limit)}."),
        _text_input(BlockId.MAX_RESTARTS, "Max restarts", optional=True,
                    initial=str(defaults.default_max_restarts),
                    hint="Restarts allowed after the code fails (infrastructure failures "
                         "restart anyway)."),
    ]
    if projects:
        blocks.append(_select(BlockId.PROJECT, "Project", projects, defaults.default_project))
    else:
        blocks.append(_text_input(BlockId.PROJECT, "Project", optional=True,
                                  initial=defaults.default_project))
    blocks += [
        _text_input(BlockId.ENV, "Environment", multiline=True, optional=True,
                    placeholder="KEY=VALUE, one per line"),
        _text_input(BlockId.SWEEP, "Sweep", multiline=True, optional=True,
                    placeholder="lr=0.1,0.01, one key per line",
                    hint="One experiment per combination of values."),
    ]
    return View(
        type="modal", callback_id=CallbackId.LAUNCH_MODAL.value, title="Launch experiment",
        submit="Launch", close="Cancel", blocks=blocks,
        private_metadata=private_metadata or None,
    )


def loading_modal() -> View:
    """A minimal modal to open within the trigger's 3 s, replaced later with views.update."""
    return View(
        type="modal", title="Launch experiment", close="Cancel",
        blocks=[SectionBlock(text=PlainTextObject(text="Loading…"))],
    )


def _value(state_values: dict[str, Any], block_id: BlockId) -> str:
    """The submitted text of one input block (a select's chosen value), stripped; '' if none."""
    actions = state_values.get(block_id.value) or {}
    action = actions.get(ELEMENT.value) or next(iter(actions.values()), None) or {}
    if action.get("type") == "static_select" or "selected_option" in action:
        chosen = action.get("selected_option") or {}
        value = chosen.get("value")
    else:
        value = action.get("value")
    return value.strip() if isinstance(value, str) else ""


def _option(option: str, value: str) -> str:
    """`--opt value`, or `--opt=value` when the value starts with '-' (so it is not an option)."""
    if value.startswith("-"):
        return shlex.quote(f"{option}={value}")
    return f"{option} {shlex.quote(value)}"


def launch_text_from_modal(state_values: dict[str, Any]) -> str:
    """The modal's values as one line in core.grammar's launch syntax."""
    get = lambda block_id: _value(state_values, block_id)  # noqa: E731
    parts: list[str] = []
    if get(BlockId.NAME):
        parts.append(shlex.quote(get(BlockId.NAME)))
    gpus = get(BlockId.GPUS)
    singles = [
        ("--image", get(BlockId.IMAGE)),
        ("--gpus", gpus),
        ("--nodes", get(BlockId.NODES)),
        # A GPU type for a CPU-only run would only confuse the spec.
        ("--gpu-type", "" if gpus == "0" else get(BlockId.GPU_TYPE)),
        ("--max-runtime", get(BlockId.MAX_RUNTIME)),
        ("--max-restarts", get(BlockId.MAX_RESTARTS)),
        ("--project", get(BlockId.PROJECT)),
    ]
    parts += [_option(option, value) for option, value in singles if value]
    for option, block_id in (("--env", BlockId.ENV), ("--sweep", BlockId.SWEEP)):
        lines = (line.strip() for line in get(block_id).splitlines())
        parts += [_option(option, line) for line in lines if line]
    parts.append("--")
    command = _CONTINUATION.sub("", get(BlockId.COMMAND))
    try:
        parts += [shlex.quote(token) for token in shlex.split(command)]
    except ValueError:
        parts.append(command)  # left as typed, so the parser explains the quoting problem
    return " ".join(parts)


def modal_errors(error: OptionError) -> dict[str, str]:
    """The `response_action: errors` map for a SpecError, NameInUse, ...: its option's block -> message."""
    block = _ERROR_BLOCKS.get(error.option or "command", BlockId.COMMAND)
    return {block.value: truncate(for_users(str(error)), ERROR_LIMIT)}
