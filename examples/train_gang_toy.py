"""A deterministic toy of distributed training: ranks that really rendezvous, all-reduce and resume.

Run under expbot: launch gang --nodes 2 -- python examples/train_gang_toy.py --steps 200
Rank 0 listens on MASTER_ADDR:MASTER_PORT, the other ranks (NODE_RANK 1..NNODES-1) connect; every
step each rank contributes a value and all of them receive the sum (a tiny all-reduce through rank
0), so every rank holds the same state. Rank 0 checkpoints it atomically; every rank resumes from
EXPBOT_RESUME_FROM. The final value depends only on --steps and NNODES, interrupted or not.
Standard library only. Real code does the same with torch.distributed: `torchrun train.py` needs
no flags, it reads the same rendezvous from the PET_* variables expbot sets.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path

MASK = (1 << 64) - 1
KEEP = 3
WORD = struct.Struct("!Q")  # one unsigned 64-bit number on the wire


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--checkpoint-every", type=int, default=10)
    p.add_argument("--step-seconds", type=float, default=0.02)
    p.add_argument("--connect-timeout", type=float, default=120.0, help="seconds to wait for the gang")
    args = p.parse_args(argv)
    if args.steps < 0 or args.checkpoint_every < 1:
        p.error("--steps must be >= 0 and --checkpoint-every >= 1")
    return args


def contribution(value: int, step: int, rank: int) -> int:
    """What rank `rank` adds to the step's all-reduce (each rank a different share of the state)."""
    return ((value >> (rank % 48)) ^ (step * 2654435761 + rank)) & 0xFFFFFFFF


def advance(value: int, step: int, total: int) -> int:
    """One training step from the all-reduced total: a 64-bit LCG mixed with it."""
    return ((value ^ total) * 6364136223846793005 + 1442695040888963407 + step) & MASK


def save(ckpt_dir: Path, step: int, value: int) -> Path:
    """Write ckpt-<step>.json atomically (rename) and keep only the newest KEEP."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"ckpt-{step:06d}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump({"step": step, "value": value}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in sorted(ckpt_dir.glob("ckpt-*.json"))[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def _recv(sock: socket.socket) -> int:
    data = b""
    while len(data) < WORD.size:
        chunk = sock.recv(WORD.size - len(data))
        if not chunk:
            raise ConnectionError("a peer left the gang")
        data += chunk
    return WORD.unpack(data)[0]


class Gang:
    """This rank's links: rank 0 holds one socket per other rank, the others one socket to rank 0."""

    def __init__(self, rank: int, size: int, addr: str, port: int, timeout: float) -> None:
        self.rank, self.size, self.peers = rank, size, []
        if size == 1:
            return
        if rank == 0:
            # On a cluster MASTER_ADDR names this pod (its DNS may not resolve to itself yet): listen on all.
            host = addr if addr in ("127.0.0.1", "localhost") else ""
            with socket.create_server((host, port), backlog=size) as server:
                server.settimeout(timeout)
                by_rank = {}
                while len(by_rank) < size - 1:
                    conn, _ = server.accept()
                    conn.settimeout(None)
                    by_rank[_recv(conn)] = conn
                self.peers = [by_rank[r] for r in sorted(by_rank)]
            return
        deadline = time.monotonic() + timeout
        while True:  # rank 0 may not listen yet
            try:
                conn = socket.create_connection((addr, port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        conn.settimeout(None)
        conn.sendall(WORD.pack(rank))
        self.peers = [conn]

    def agree(self, number: int) -> int:
        """Rank 0's number, on every rank (how they check that they resumed from the same step)."""
        return self.all_reduce(number if self.rank == 0 else 0)

    def all_reduce(self, number: int) -> int:
        """The sum (mod 2^64) of every rank's number, on every rank."""
        if self.rank == 0:
            total = (number + sum(_recv(p) for p in self.peers)) & MASK
            for peer in self.peers:
                peer.sendall(WORD.pack(total))
            return total
        if self.peers:
            self.peers[0].sendall(WORD.pack(number & MASK))
            return _recv(self.peers[0])
        return number & MASK


def main(argv: list[str] | None = None) -> int:
    """Rendezvous, train, checkpoint on rank 0, resume on all; returns the exit code."""
    args = parse_args(argv)
    rank, size = int(os.environ.get("NODE_RANK", "0")), int(os.environ.get("NNODES", "1"))
    ckpt_dir = Path(os.environ.get("EXPBOT_CHECKPOINT_DIR") or "checkpoints")
    resume = os.environ.get("EXPBOT_RESUME_FROM", "")
    heartbeat = os.environ.get("EXPBOT_HEARTBEAT_FILE", "")
    step, value = 0, 0
    if resume:
        state = json.loads(Path(resume).read_text())
        step, value = int(state["step"]), int(state["value"])
    gang = Gang(rank, size, os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ.get("MASTER_PORT", "29500")),
                args.connect_timeout)
    if gang.agree(step) != step:
        print(f"rank {rank}: resumed at step {step}, rank 0 at another step", file=sys.stderr, flush=True)
        return 1
    print(f"rank {rank} of {size}: " + (f"resumed from step {step}" if resume else "starting fresh"), flush=True)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signo, _frame: stopping.append(signo))
    while step < args.steps:
        # A stop (SIGTERM) reaches the ranks at different moments: they agree on it at a step boundary,
        # so none waits for a peer that left, and rank 0 keeps where they all are.
        if gang.all_reduce(1 if stopping else 0):
            if rank == 0:
                save(ckpt_dir, step, value)
                print(f"SIGTERM at step {step}: checkpoint saved", flush=True)
            return 128 + signal.SIGTERM
        time.sleep(args.step_seconds)
        step += 1
        value = advance(value, step, gang.all_reduce(contribution(value, step, rank)))
        if rank == 0 and step % args.checkpoint_every == 0:
            save(ckpt_dir, step, value)
        if rank == 0 and heartbeat:
            Path(heartbeat).touch()
    print(f"rank {rank}: final step {step} value {value}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ConnectionError, OSError) as e:  # the gang broke: expbot restarts all of it
        print(f"rank {os.environ.get('NODE_RANK', '0')}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
