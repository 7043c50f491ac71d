"""Failure signatures: log lines and exit codes that say what really ended an attempt.

On GPU clusters most interruptions are hardware (Meta's Llama 3 run: about 78% of 419 unexpected
ones), yet they reach expbot as "exit code 1" with a CUDA, NCCL or Xid line in the log. A signature
turns such evidence into a class: `hardware` and `network` are infrastructure (they spend
--max-preemptions, never the user's --max-restarts), `user` is the code's fault, `give-up` fails
at once. The shipped defaults hold only unambiguous signatures, each with where it comes from; a
team adds its own in the `[failures]` table of the TOML file (they are tried first).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class SignatureClass(StrEnum):
    HARDWARE = "hardware"
    NETWORK = "network"
    USER = "user"
    GIVE_UP = "give-up"


@dataclass(frozen=True)
class Signature:
    """One piece of evidence: a regex over the log tail / termination message, or an exit code."""

    label: str  # short and human: "Xid 79: GPU has fallen off the bus"
    failure_class: SignatureClass
    pattern: re.Pattern[str] | None = None
    exit_code: int | None = None
    source: str = ""  # where the meaning comes from, for the README and reviewers

    def matches(self, text: str, exit_code: int | None) -> str | None:
        """The evidence (the matching log line, or "exit code N") when this signature applies."""
        if self.exit_code is not None and exit_code != self.exit_code:
            return None
        if self.pattern is None:
            return f"exit code {exit_code}"
        found = self.pattern.search(text)
        if found is None:
            return None
        start = text.rfind("\n", 0, found.start()) + 1
        end = text.find("\n", found.end())
        return text[start:end if end >= 0 else len(text)].strip()[:300]


@dataclass(frozen=True)
class Match:
    """A signature that applied, and the line (or exit code) that showed it."""

    signature: Signature
    evidence: str


_XID_DOC = "NVIDIA Xid catalog, docs.nvidia.com/deploy/xid-errors"


def _xid(code: int, meaning: str) -> Signature:
    # Kernel form "NVRM: Xid (PCI:0000:3b:00): 79, pid=..." and the short "Xid 79" tools print.
    pattern = re.compile(rf"\bXid\b(?:\s*\(PCI:[^)]*\))?\s*:?\s*{code}\b")
    return Signature(f"Xid {code}: {meaning}", SignatureClass.HARDWARE, pattern, source=_XID_DOC)


def _regex(label: str, failure_class: SignatureClass, pattern: str, source: str) -> Signature:
    return Signature(label, failure_class, re.compile(pattern, re.IGNORECASE), source=source)


DEFAULT_SIGNATURES: tuple[Signature, ...] = (
    _xid(48, "double-bit ECC error"),
    _xid(64, "ECC page retirement or row remapping failure"),
    _xid(74, "NVLink error"),
    _xid(79, "GPU has fallen off the bus"),
    _xid(94, "contained ECC error"),
    _xid(95, "uncontained ECC error"),
    _regex("uncorrectable ECC error", SignatureClass.HARDWARE, r"uncorrectable ECC error encountered",
           "CUDA runtime, cudaErrorECCUncorrectable"),
    _regex("uncorrectable NVLink error", SignatureClass.HARDWARE, r"uncorrectable NVLink error",
           "CUDA runtime, cudaErrorNvlinkUncorrectable"),
    _regex("NCCL system error", SignatureClass.NETWORK, r"NCCL (?:error|WARN).*unhandled system error",
           "NCCL, ncclSystemError"),
    _regex("NCCL peer lost", SignatureClass.NETWORK,
           r"remote process exited or there was a network error", "NCCL, ncclRemoteError"),
    _regex("NCCL watchdog timeout", SignatureClass.NETWORK,
           r"Watchdog caught collective operation timeout", "PyTorch ProcessGroupNCCL watchdog"),
    _regex("InfiniBand transport error", SignatureClass.NETWORK,
           r"NET/IB\s*:.*(?:completion|error)|IBV_WC_RETRY_EXC_ERR|transport retry counter exceeded",
           "NCCL IB transport, ibv_wc_status (libibverbs)"),
    # Node evidence the supervisor adds to the log tail (core.metrics.XidError.line). Last, so an Xid
    # above names itself. 13, 31, 43 and 45 are left out: NVIDIA lists application faults (an illegal
    # memory access, a killed process) among their causes, and those must stay user errors.
    _regex("Xid reported by DCGM during the attempt", SignatureClass.HARDWARE,
           r"DCGM reported Xid (?!(?:13|31|43|45)\b)\d+ on GPU", "DCGM_FI_DEV_XID_ERRORS"),
)


class Catalog:
    """The signatures in force: the team's own first, then the shipped defaults."""

    def __init__(self, own: Iterable[Signature] = (), defaults: Iterable[Signature] = DEFAULT_SIGNATURES) -> None:
        self.signatures = (*own, *defaults)

    def match(self, text: str, exit_code: int | None) -> Match | None:
        """The first signature the evidence shows, or None."""
        for signature in self.signatures:
            evidence = signature.matches(text, exit_code)
            if evidence is not None:
                return Match(signature, evidence)
        return None


ENTRY_KEYS = frozenset({"pattern", "exit_code", "class", "label"})  # of one [failures.NAME] table


def signature_from_entry(entry: Mapping[str, Any]) -> Signature:
    """One `[[failures]]` entry as a Signature; ValueError with one clear line when it is malformed."""
    unknown = set(entry) - ENTRY_KEYS
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(ENTRY_KEYS))})")
    classes = ", ".join(c.value for c in SignatureClass)
    try:
        failure_class = SignatureClass(entry.get("class", ""))
    except ValueError:
        raise ValueError(f"class={entry.get('class')!r}: expected one of {classes}") from None
    pattern, code = entry.get("pattern"), entry.get("exit_code")
    if pattern is None and code is None:
        raise ValueError("needs a pattern (a regex over the log tail) or an exit_code")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 255):
        raise ValueError(f"exit_code={code!r}: expected a whole number from 0 to 255")
    compiled = None
    if pattern is not None:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"pattern={pattern!r}: expected a non-empty regular expression")
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"pattern={pattern!r} is not a valid regular expression: {e}") from None
    label = entry.get("label") or (pattern if pattern is not None else f"exit code {code}")
    if not isinstance(label, str):
        raise ValueError(f"label={label!r}: expected a string")
    return Signature(label[:80], failure_class, compiled, code, source="the [failures] table")
