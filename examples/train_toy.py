"""A deterministic toy training loop that checkpoints and resumes the way expbot expects.

Run: python examples/train_toy.py --steps 200 --checkpoint-every 10
Its final value depends only on --steps, whether or not it was interrupted and resumed.
With EXPBOT_REPORT_URL and EXPBOT_REPORT_TOKEN set (Kubernetes), it reports each checkpoint and a
heartbeat to expbot over HTTP; it uses the standard library only, so it runs in any Python image.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

KEEP = 3
MASK = (1 << 64) - 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--checkpoint-every", type=int, default=10)
    p.add_argument("--step-seconds", type=float, default=0.02)
    p.add_argument("--fail-at-step", type=int, default=None, help="exit with --exit-code at this step")
    p.add_argument("--exit-code", type=int, default=1)
    args = p.parse_args(argv)
    if args.steps < 0 or args.checkpoint_every < 1:
        p.error("--steps must be >= 0 and --checkpoint-every >= 1")
    return args


def advance(value: int, step: int) -> int:
    """One training step: a 64-bit LCG mixed with the step number."""
    return (value * 6364136223846793005 + 1442695040888963407 + step) & MASK


def save(ckpt_dir: Path, step: int, value: int) -> Path:
    """Write ckpt-<step>.json atomically and keep only the newest KEEP checkpoints."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"ckpt-{step:06d}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"step": step, "value": value}))
    os.replace(tmp, path)
    for old in sorted(ckpt_dir.glob("ckpt-*.json"))[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


class Reporter:
    """Tells expbot about checkpoints and progress over HTTP; does nothing unless configured.

    A report that fails is printed to stderr and forgotten: training matters more than telling.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.url = env.get("EXPBOT_REPORT_URL", "")
        self.token = env.get("EXPBOT_REPORT_TOKEN", "")
        self.enabled = bool(self.url and self.token)
        self.every = 30.0
        self.last = float("-inf")
        if not self.enabled:
            return
        try:
            self.every = float(env.get("EXPBOT_HEARTBEAT_SECONDS") or 30)
            self.identity = {"experiment_id": env["EXPBOT_EXPERIMENT_ID"], "attempt": int(env["EXPBOT_ATTEMPT"])}
        except (KeyError, ValueError) as e:
            print(f"progress reports off: bad or missing environment ({e!r})", file=sys.stderr, flush=True)
            self.enabled = False

    def heartbeat(self, step: int) -> None:
        """Report progress, at most every EXPBOT_HEARTBEAT_SECONDS."""
        if self.enabled and time.monotonic() - self.last >= self.every:
            self.send({"step": step})

    def checkpoint(self, path: Path, step: int) -> None:
        """Report a checkpoint just written (the next attempt resumes from it)."""
        if self.enabled:
            self.send({"checkpoint": str(path.absolute()), "step": step})

    def send(self, fields: dict) -> None:
        """POST one report; failures go to stderr."""
        self.last = time.monotonic()  # a failed report counts too: do not hammer a server that is down
        request = urllib.request.Request(
            self.url, data=json.dumps({**self.identity, **fields}).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5):
                pass
        except urllib.error.HTTPError as e:
            print(f"progress report refused: HTTP {e.code}: {_reason(e)}", file=sys.stderr, flush=True)
        except Exception as e:  # anything at all (unreachable, timeout, bad URL): training goes on
            print(f"progress report failed: {e!r}", file=sys.stderr, flush=True)


def _reason(error: urllib.error.HTTPError) -> str:
    """The plain-text reason expbot sent with a refusal (it says what was wrong)."""
    try:
        return error.read(500).decode(errors="replace").strip()
    except Exception:  # the connection may drop while reading it
        return error.reason or ""


def main(argv: list[str] | None = None) -> int:
    """Train, checkpoint, resume; returns the exit code."""
    args = parse_args(argv)
    ckpt_dir = Path(os.environ.get("EXPBOT_CHECKPOINT_DIR") or "checkpoints")
    resume = os.environ.get("EXPBOT_RESUME_FROM", "")
    heartbeat = os.environ.get("EXPBOT_HEARTBEAT_FILE", "")
    reporter = Reporter(dict(os.environ))
    step, value = 0, 0
    if resume:
        state = json.loads(Path(resume).read_text())
        step, value = int(state["step"]), int(state["value"])
        print(f"resumed from step {step}", flush=True)
    else:
        print("starting fresh", flush=True)

    # A preempted job gets SIGTERM first: save where we are and exit like a terminated process.
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signo, _frame: stopping.append(signo))
    report_every = max(1, args.steps // 10)
    while step < args.steps:
        if stopping:
            reporter.checkpoint(save(ckpt_dir, step, value), step)
            print(f"SIGTERM at step {step}: checkpoint saved", flush=True)
            return 128 + signal.SIGTERM
        time.sleep(args.step_seconds)
        step += 1
        value = advance(value, step)
        if heartbeat:
            Path(heartbeat).touch()
        reporter.heartbeat(step)
        if args.fail_at_step is not None and step == args.fail_at_step:
            print(f"failing at step {step} with exit code {args.exit_code}", file=sys.stderr, flush=True)
            return args.exit_code
        if step % args.checkpoint_every == 0:
            reporter.checkpoint(save(ckpt_dir, step, value), step)
        if step % report_every == 0:
            print(f"step {step}/{args.steps} value {value}", flush=True)
    print(f"final step {step} value {value}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
