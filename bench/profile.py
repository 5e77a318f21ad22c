"""Summarise a ``py-spy record --format raw`` file: where heal's process spends its samples.

``python -m bench.profile FILE [--top N]`` prints the functions with the most samples on top
of the stack (self) and anywhere in it (inclusive), across all threads.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_SITE = re.compile(r"^.*/(site-packages|lib/python3\.\d+)/")


def _short(frame: str) -> str:
    # "wake (/work/main/src/heal/engine/engine.py:67)" -> "wake (heal/engine/engine.py:67)"
    name, _, where = frame.partition(" (")
    where = _SITE.sub("", where.rstrip(")"))
    where = re.sub(r"^.*/src/heal/", "heal/", where)
    return f"{name} ({where})" if where else name


def summarise(path: Path, top: int = 20) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [_short(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return f"{path}: no samples"
    out = [f"{path.name}: {total} samples (active threads only)", "  self:"]
    out += [f"    {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    out.append("  inclusive:")
    out += [f"    {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.profile")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for path in args.files:
        print(summarise(path, args.top))


if __name__ == "__main__":
    main()
