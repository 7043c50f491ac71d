"""Block Kit limit checks used by the fake Slack Web API server.

Each check returns a list of error strings in Slack's own style, e.g.
``"must be less than 76 characters [json-pointer:/blocks/0/elements/0/text/text]"``.
An empty list means the payload is within the limits.
"""

from __future__ import annotations

from typing import Any

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_MESSAGE_TEXT = 40_000
MAX_SECTION_TEXT = 3_000
MAX_SECTION_FIELDS = 10
MAX_SECTION_FIELD_TEXT = 2_000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2_000
MAX_URL = 3_000
MAX_ID = 255  # action_id, block_id, callback_id, external_id
MAX_VIEW_TITLE = 24  # modal title, submit, close
MAX_PRIVATE_METADATA = 3_000
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_OPTIONS = 100
MAX_OVERFLOW_OPTIONS = 5
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_LABEL = 2_000
MAX_PLACEHOLDER = 150

VIEW_TYPES = ("modal", "home")
_OPTION_ELEMENTS = {
    "static_select",
    "multi_static_select",
    "checkboxes",
    "radio_buttons",
    "overflow",
}


def _too_long(limit: int, pointer: str) -> str:
    return f"must be less than {limit + 1} characters [json-pointer:{pointer}]"


def _text_of(obj: Any) -> str | None:
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        return obj["text"]
    return None


class _Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, message: str, pointer: str) -> None:
        self.errors.append(f"{message} [json-pointer:{pointer}]")

    def max_len(self, value: Any, limit: int, pointer: str) -> None:
        if isinstance(value, str) and len(value) > limit:
            self.errors.append(_too_long(limit, pointer))

    def text_obj(self, obj: Any, limit: int, pointer: str, *, required: bool = False) -> None:
        if obj is None:
            if required:
                self.error("missing required field: text", pointer)
            return
        text = _text_of(obj)
        if text is None:
            self.error("must provide an object with a string 'text'", pointer)
            return
        if obj.get("type") not in ("plain_text", "mrkdwn"):
            self.error("must be plain_text or mrkdwn", f"{pointer}/type")
        self.max_len(text, limit, f"{pointer}/text")

    def max_items(self, items: Any, limit: int, pointer: str) -> list:
        if items is None:
            return []
        if not isinstance(items, list):
            self.error("must be an array", pointer)
            return []
        if len(items) > limit:
            self.error(f"must provide no more than {limit} items", pointer)
        return items

    # -- composition objects and elements -------------------------------------------------------

    def option(self, opt: Any, pointer: str) -> None:
        if not isinstance(opt, dict):
            self.error("must be an object", pointer)
            return
        self.text_obj(opt.get("text"), MAX_OPTION_TEXT, f"{pointer}/text", required=True)
        self.max_len(opt.get("value"), MAX_OPTION_VALUE, f"{pointer}/value")
        self.text_obj(opt.get("description"), MAX_OPTION_TEXT, f"{pointer}/description")

    def element(self, el: Any, pointer: str) -> None:
        if not isinstance(el, dict) or not isinstance(el.get("type"), str):
            self.error("must be an object with a string 'type'", pointer)
            return
        kind = el["type"]
        self.max_len(el.get("action_id"), MAX_ID, f"{pointer}/action_id")
        if kind == "button":
            self.text_obj(el.get("text"), MAX_BUTTON_TEXT, f"{pointer}/text", required=True)
            self.max_len(el.get("value"), MAX_BUTTON_VALUE, f"{pointer}/value")
            self.max_len(el.get("url"), MAX_URL, f"{pointer}/url")
        if "placeholder" in el:
            self.text_obj(el["placeholder"], MAX_PLACEHOLDER, f"{pointer}/placeholder")
        if kind in _OPTION_ELEMENTS or "options" in el:
            limit = MAX_OVERFLOW_OPTIONS if kind == "overflow" else MAX_OPTIONS
            for i, opt in enumerate(self.max_items(el.get("options"), limit, f"{pointer}/options")):
                self.option(opt, f"{pointer}/options/{i}")
        groups = self.max_items(el.get("option_groups"), MAX_OPTIONS, f"{pointer}/option_groups")
        for g, group in enumerate(groups):
            gp = f"{pointer}/option_groups/{g}"
            opts = group.get("options") if isinstance(group, dict) else None
            for i, opt in enumerate(self.max_items(opts, MAX_OPTIONS, f"{gp}/options")):
                self.option(opt, f"{gp}/options/{i}")
        for key in ("initial_option",):
            if key in el:
                self.option(el[key], f"{pointer}/{key}")

    # -- blocks -----------------------------------------------------------------------------------

    def block(self, block: Any, pointer: str) -> None:
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            self.error("must be an object with a string 'type'", pointer)
            return
        kind = block["type"]
        self.max_len(block.get("block_id"), MAX_ID, f"{pointer}/block_id")
        if kind == "section":
            if block.get("text") is None and not block.get("fields"):
                self.error("must provide either text or fields", pointer)
            self.text_obj(block.get("text"), MAX_SECTION_TEXT, f"{pointer}/text")
            fields = self.max_items(block.get("fields"), MAX_SECTION_FIELDS, f"{pointer}/fields")
            for i, field in enumerate(fields):
                self.text_obj(field, MAX_SECTION_FIELD_TEXT, f"{pointer}/fields/{i}", required=True)
            if "accessory" in block:
                self.element(block["accessory"], f"{pointer}/accessory")
        elif kind == "header":
            text = block.get("text")
            self.text_obj(text, MAX_HEADER_TEXT, f"{pointer}/text", required=True)
            if isinstance(text, dict) and text.get("type") != "plain_text":
                self.error("must be plain_text", f"{pointer}/text/type")
        elif kind == "actions":
            elements = self.max_items(block.get("elements"), MAX_ACTIONS_ELEMENTS, f"{pointer}/elements")
            if not elements:
                self.error("must provide at least 1 item", f"{pointer}/elements")
            for i, el in enumerate(elements):
                self.element(el, f"{pointer}/elements/{i}")
        elif kind == "context":
            elements = self.max_items(block.get("elements"), MAX_CONTEXT_ELEMENTS, f"{pointer}/elements")
            if not elements:
                self.error("must provide at least 1 item", f"{pointer}/elements")
        elif kind == "input":
            self.text_obj(block.get("label"), MAX_LABEL, f"{pointer}/label", required=True)
            self.text_obj(block.get("hint"), MAX_LABEL, f"{pointer}/hint")
            if "element" not in block:
                self.error("missing required field: element", pointer)
            else:
                self.element(block["element"], f"{pointer}/element")

    def blocks(self, blocks: Any, limit: int, pointer: str) -> None:
        if not isinstance(blocks, list):
            self.error("must be an array", pointer)
            return
        if len(blocks) > limit:
            self.error(f"must provide no more than {limit} items", pointer)
        for i, block in enumerate(blocks):
            self.block(block, f"{pointer}/{i}")


def validate_blocks(blocks: Any, *, max_blocks: int = MAX_MESSAGE_BLOCKS, pointer: str = "/blocks") -> list[str]:
    """Errors for a message's (or a view's) ``blocks`` array."""
    checker = _Checker()
    checker.blocks(blocks, max_blocks, pointer)
    return checker.errors


def validate_attachments(attachments: Any) -> list[str]:
    """Errors for the ``blocks`` inside legacy attachments."""
    checker = _Checker()
    if not isinstance(attachments, list):
        checker.error("must be an array", "/attachments")
        return checker.errors
    for i, att in enumerate(attachments):
        if isinstance(att, dict) and "blocks" in att:
            checker.blocks(att["blocks"], MAX_MESSAGE_BLOCKS, f"/attachments/{i}/blocks")
    return checker.errors


def validate_view(view: Any) -> list[str]:
    """Errors for a modal or App Home view payload."""
    checker = _Checker()
    if not isinstance(view, dict):
        checker.error("must be an object", "/view")
        return checker.errors
    kind = view.get("type")
    if kind not in VIEW_TYPES:
        checker.error(f"must be one of {list(VIEW_TYPES)}", "/type")
    if kind == "modal":
        if view.get("title") is None:
            checker.error("missing required field: title", "/title")
        for key in ("title", "submit", "close"):
            checker.text_obj(view.get(key), MAX_VIEW_TITLE, f"/{key}")
            text = view.get(key)
            if isinstance(text, dict) and text.get("type") != "plain_text":
                checker.error("must be plain_text", f"/{key}/type")
    for key in ("callback_id", "external_id"):
        checker.max_len(view.get(key), MAX_ID, f"/{key}")
    checker.max_len(view.get("private_metadata"), MAX_PRIVATE_METADATA, "/private_metadata")
    checker.blocks(view.get("blocks", []), MAX_VIEW_BLOCKS, "/blocks")
    return checker.errors
