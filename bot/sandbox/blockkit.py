"""Block Kit as Slack draws it, in HTML for the sandbox page: messages, modals and the App Home.

The one place the sandbox turns blocks into HTML. Interactive elements carry what the page sends
back (action_id, block_id, value, confirm dialog) in data attributes; the page's script reads them.
Unknown block or element types are drawn as a visible "unsupported" box, never dropped silently.
"""
from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

from bot.sandbox.mrkdwn import mrkdwn_html, plain_html

Names = Callable[[str], str]
UNSUPPORTED = "bk-unsupported"


def message_html(text: str | None, blocks: list[dict] | None, names: Names = str) -> str:
    """A message: its blocks, or its text when it has none (as Slack shows a text-only message)."""
    if blocks:
        return blocks_html(blocks, names)
    return f'<div class="bk-text">{mrkdwn_html(text or "", names)}</div>'


def blocks_html(blocks: list[dict], names: Names = str, errors: dict[str, str] | None = None) -> str:
    """A list of blocks; `errors` (block_id -> message) marks a modal's inputs as Slack does."""
    return "".join(_block(b, names, errors or {}) for b in blocks)


def view_html(view: dict, names: Names = str, errors: dict[str, str] | None = None) -> str:
    """A modal (title, blocks, Cancel/Submit) or the App Home (its blocks)."""
    body = blocks_html(view.get("blocks", []), names, errors)
    if view.get("type") != "modal":
        return f'<div class="bk-home">{body}</div>'
    title = plain_html(_text(view.get("title")))
    submit = view.get("submit")
    close = _text(view.get("close")) or "Cancel"
    buttons = f'<button class="bk-button bk-close" data-modal="close">{plain_html(close)}</button>'
    if submit:
        buttons += f'<button class="bk-button primary bk-submit" data-modal="submit">{plain_html(_text(submit))}</button>'
    return (f'<div class="bk-modal-title">{title}</div><div class="bk-modal-body">{body}</div>'
            f'<div class="bk-modal-foot">{buttons}</div>')


def _block(block: dict, names: Names, errors: dict[str, str]) -> str:
    kind = block.get("type")
    draw = _BLOCKS.get(str(kind))
    if draw is None:
        return f'<div class="{UNSUPPORTED}">unsupported block: {html.escape(str(kind))}</div>'
    return draw(block, names, errors)


def _section(block: dict, names: Names, errors: dict[str, str]) -> str:
    inner = _text_object(block["text"], names) if block.get("text") else ""
    if block.get("fields"):
        fields = "".join(f'<div class="bk-field">{_text_object(f, names)}</div>' for f in block["fields"])
        inner += f'<div class="bk-fields">{fields}</div>'
    accessory = block.get("accessory")
    side = f'<div class="bk-accessory">{_element(accessory, block, names)}</div>' if accessory else ""
    return f'<div class="bk-section" {_ids(block)}><div class="bk-section-main">{inner}</div>{side}</div>'


def _header(block: dict, names: Names, errors: dict[str, str]) -> str:
    return f'<div class="bk-header">{plain_html(_text(block.get("text")))}</div>'


def _divider(block: dict, names: Names, errors: dict[str, str]) -> str:
    return '<hr class="bk-divider">'


def _context(block: dict, names: Names, errors: dict[str, str]) -> str:
    parts = []
    for element in block.get("elements", []):
        if element.get("type") == "image":
            parts.append(_image_tag(element, "bk-context-image"))
        else:
            parts.append(f"<span>{_text_object(element, names)}</span>")
    return f'<div class="bk-context">{"".join(parts)}</div>'


def _actions(block: dict, names: Names, errors: dict[str, str]) -> str:
    elements = "".join(_element(e, block, names) for e in block.get("elements", []))
    return f'<div class="bk-actions" {_ids(block)}>{elements}</div>'


def _image(block: dict, names: Names, errors: dict[str, str]) -> str:
    title = f'<div class="bk-image-title">{plain_html(_text(block.get("title")))}</div>' if block.get("title") else ""
    return f'<div class="bk-image">{title}{_image_tag(block, "")}</div>'


def _input(block: dict, names: Names, errors: dict[str, str]) -> str:
    block_id = block.get("block_id", "")
    optional = ' <span class="bk-optional">(optional)</span>' if block.get("optional") else ""
    label = f'<label class="bk-label">{plain_html(_text(block.get("label")))}{optional}</label>'
    element = _element(block.get("element") or {}, block, names)
    error = errors.get(block_id)
    hint = block.get("hint")
    after = (f'<div class="bk-field-error">{html.escape(error)}</div>' if error
             else f'<div class="bk-hint">{plain_html(_text(hint))}</div>' if hint else "")
    marked = " bk-has-error" if error else ""
    return f'<div class="bk-input{marked}" data-block-id="{html.escape(block_id)}">{label}{element}{after}</div>'


def _rich_text(block: dict, names: Names, errors: dict[str, str]) -> str:
    # expbot sends no rich text; shown as its plain words so that nothing vanishes.
    words = "".join(e.get("text", "") for s in block.get("elements", []) for e in s.get("elements", []))
    return f'<div class="bk-text">{plain_html(words)}</div>'


_BLOCKS: dict[str, Callable[[dict, Names, dict[str, str]], str]] = {
    "section": _section, "header": _header, "divider": _divider, "context": _context, "actions": _actions,
    "image": _image, "input": _input, "rich_text": _rich_text,
}


def _element(element: dict, block: dict, names: Names) -> str:
    kind = element.get("type")
    if kind == "button":
        return _button(element, block)
    if kind == "image":
        return _image_tag(element, "bk-accessory-image")
    if kind in ("plain_text_input", "number_input", "email_text_input", "url_text_input"):
        return _text_input(element)
    if kind == "static_select":
        return _select(element)
    return f'<span class="{UNSUPPORTED}">unsupported element: {html.escape(str(kind))}</span>'


def _button(element: dict, block: dict) -> str:
    style = element.get("style", "")
    action = {"action_id": element.get("action_id", ""), "block_id": block.get("block_id", ""),
              "value": element.get("value", ""), "type": "button", "text": element.get("text")}
    confirm = element.get("confirm")
    data = f' data-action="{_attr(action)}"'
    if confirm:
        data += f' data-confirm="{_attr(_confirm(confirm))}"'
    if element.get("url"):
        data += f' data-url="{html.escape(element["url"])}"'
    return f'<button class="bk-button {html.escape(style)}"{data}>{plain_html(_text(element.get("text")))}</button>'


def _confirm(confirm: dict) -> dict[str, str]:
    """The confirm dialog, drawn by the page: its title, text (as HTML), buttons and style."""
    text = confirm.get("text") or {}
    body = mrkdwn_html(text.get("text", "")) if text.get("type") == "mrkdwn" else plain_html(text.get("text", ""))
    return {"title": _text(confirm.get("title")), "html": body, "confirm": _text(confirm.get("confirm")) or "Yes",
            "deny": _text(confirm.get("deny")) or "Cancel", "style": confirm.get("style", "primary")}


def _text_input(element: dict) -> str:
    action_id = html.escape(element.get("action_id", ""))
    placeholder = html.escape(_text(element.get("placeholder")))
    value = html.escape(str(element.get("initial_value", "")))
    kind = html.escape(element.get("type", "plain_text_input"))
    common = f'data-action-id="{action_id}" data-type="{kind}" placeholder="{placeholder}"'
    if element.get("multiline"):
        return f'<textarea class="bk-textarea" {common}>{value}</textarea>'
    return f'<input class="bk-text-input" type="text" {common} value="{value}">'


def _select(element: dict) -> str:
    initial = (element.get("initial_option") or {}).get("value")
    options = [f'<option value="">{html.escape(_text(element.get("placeholder")) or "Choose")}</option>'] if initial is None else []
    for option in element.get("options", []):
        value = option.get("value", "")
        selected = " selected" if value == initial else ""
        options.append(f'<option value="{html.escape(value)}"{selected}>{html.escape(_text(option.get("text")))}</option>')
    action_id = html.escape(element.get("action_id", ""))
    return (f'<select class="bk-select" data-action-id="{action_id}" data-type="static_select">'
            f'{"".join(options)}</select>')


def _image_tag(element: dict, css: str) -> str:
    url = str(element.get("image_url") or element.get("slack_file", {}).get("url") or "")
    safe = url if url.startswith(("https://", "http://", "/sandbox/")) else ""
    return f'<img class="{css}" src="{html.escape(safe)}" alt="{html.escape(element.get("alt_text", ""))}">'


def _text_object(obj: Any, names: Names) -> str:
    if isinstance(obj, str):
        return mrkdwn_html(obj, names)
    if obj.get("type") == "mrkdwn":
        return mrkdwn_html(obj.get("text", ""), names)
    return plain_html(obj.get("text", ""))


def _text(obj: Any) -> str:
    if obj is None:
        return ""
    return obj if isinstance(obj, str) else str(obj.get("text", ""))


def _ids(block: dict) -> str:
    return f'data-block-id="{html.escape(block.get("block_id", ""))}"'


def _attr(value: Any) -> str:
    return html.escape(json.dumps(value), quote=True)
