"""``python -m bench.screenshot docs/top.png``: the README's picture of `hpilot top`, from a real run.

It starts a real governor-mode run (4 nodes of 4 cores in 2 partitions; a sweep of 300
tasks of which a few fail, a second job, and one that depends on the first), opens
`hpilot top` in a real terminal (tmux, 120 x 34), reads the screen with its colours
(``capture-pane -e``) once rates and failures show, and draws those characters into a
PNG with a monospaced font (DejaVu Sans Mono, shipped with matplotlib).  Nothing in
the picture is drawn by hand: it is the terminal's content.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List, Tuple

HPILOT = [sys.executable, "-m", "hpilot.governor"]
WIDTH, HEIGHT = 120, 32
BG, FG = (24, 26, 33), (205, 208, 214)

JOBS = [
    {"name": "sweep", "iteration": {"stop": 300},
     "execution": {"exec": "bash", "args": ["-c", "sleep 0.$(( ${it} % 7 + 3 )); "
                                                  "if [ $(( ${it} % 53 )) -eq 7 ]; then exit 3; fi"]}},
    {"name": "analysis", "iteration": {"stop": 120}, "execution": {"exec": "sleep", "args": ["0.6"]},
     "resources": {"numCores": {"exact": 2}}},
    {"name": "report", "execution": {"exec": "true"}, "dependencies": {"after": ["analysis"]}},
]


def _tmux(server: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", server, *args], capture_output=True, text=True, check=True).stdout


def capture(wd: str) -> str:
    """The colours and characters of a real terminal running `hpilot top` on a real run."""
    with open(os.path.join(wd, "jobs.json"), "w") as f:
        json.dump([{"request": "submit", "jobs": JOBS},
                   {"request": "control", "command": "finishAfterAllTasksDone"}], f)
    run = subprocess.Popen(HPILOT + ["run", "jobs.json", "--nodes", "n1:4,n2:4,n3:4,n4:4", "--partition-nodes", "2"],
                           cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = f"hpilot-shot-{os.getpid()}"
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(wd, ".hpilot", "latest", "local")):
            if time.monotonic() > deadline:
                raise RuntimeError("the run did not start")
            time.sleep(0.1)
        top = " ".join(HPILOT + ["top", "--interval", "0.5"])
        _tmux(server, "new-session", "-d", "-s", "top", "-x", str(WIDTH), "-y", str(HEIGHT), "-c", wd,
              f"env -u COLUMNS -u LINES TERM=xterm-256color {top}")
        deadline = time.monotonic() + 60
        while True:
            screen = _tmux(server, "capture-pane", "-p", "-t", "top")
            if re.search(r"analysis +EXECUTING", screen) and "exit code 3" in screen:
                return _tmux(server, "capture-pane", "-p", "-e", "-t", "top")
            if time.monotonic() > deadline:
                raise RuntimeError("top did not show the run:\n" + screen)
            time.sleep(0.2)
    finally:
        subprocess.run(["tmux", "-L", server, "kill-server"], capture_output=True)
        subprocess.run(HPILOT + ["finish"], cwd=wd, capture_output=True)
        run.wait(60)


def draw(ansi: str, path: str) -> None:
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont
    from rich.text import Text

    fonts = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf")
    regular = ImageFont.truetype(os.path.join(fonts, "DejaVuSansMono.ttf"), 15)
    bold = ImageFont.truetype(os.path.join(fonts, "DejaVuSansMono-Bold.ttf"), 15)
    cw = regular.getlength("M")
    lh = 19
    lines = ansi.rstrip("\n").split("\n")[:HEIGHT]
    while lines and not Text.from_ansi(lines[-1]).plain.strip():
        lines.pop()
    pad = 14
    img = Image.new("RGB", (int(cw * WIDTH) + 2 * pad, lh * len(lines) + 2 * pad), BG)
    d = ImageDraw.Draw(img)
    for row, line in enumerate(lines):
        text = Text.from_ansi(line)
        x = pad
        for seg_text, fg, bg, is_bold, dim in _segments(text):
            w = cw * len(seg_text)
            y = pad + row * lh
            if bg is not None:
                d.rectangle([x, y, x + w, y + lh], fill=bg)
            color = fg or FG
            if dim:
                color = tuple(int(c * 0.6 + b * 0.4) for c, b in zip(color, BG))  # type: ignore[assignment]
            d.text((x, y + 1), seg_text, font=bold if is_bold else regular, fill=color)
            x += w
    img.save(path)


def _segments(text: object) -> List[Tuple[str, object, object, bool, bool]]:
    out = []
    for seg in text.render(_console()):  # type: ignore[attr-defined]
        style = seg.style
        fg = _rgb(style.color if style else None, True)
        bg = _rgb(style.bgcolor if style else None, False)
        out.append((seg.text, fg, bg, bool(style and style.bold), bool(style and style.dim)))
    return out


_CONSOLE = None
# the 16 standard colours as a dark terminal shows them (xterm's own are too dark on black)
PALETTE = [(40, 42, 54), (230, 80, 90), (120, 200, 90), (230, 200, 90), (90, 150, 240), (200, 120, 220),
           (90, 200, 210), (205, 208, 214), (110, 114, 126), (255, 110, 120), (150, 230, 120), (255, 230, 120),
           (130, 180, 255), (230, 150, 250), (130, 230, 240), (255, 255, 255)]


def _rgb(color: object, foreground: bool) -> object:
    """A colour as RGB, or None for the terminal's default."""
    if color is None or color.is_default:  # type: ignore[attr-defined]
        return None
    if color.number is not None and color.number < 16:  # type: ignore[attr-defined]
        return PALETTE[color.number]  # type: ignore[attr-defined]
    return tuple(color.get_truecolor(foreground=foreground))  # type: ignore[attr-defined]


def _console() -> object:
    global _CONSOLE
    if _CONSOLE is None:
        from rich.console import Console

        _CONSOLE = Console(width=WIDTH, color_system="truecolor", force_terminal=True)
    return _CONSOLE


def main() -> int:
    out = sys.argv[1] if len(sys.argv) > 1 else "docs/top.png"
    if shutil.which("tmux") is None:
        print("bench.screenshot: needs tmux", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hp-shot-", dir="/tmp") as wd:
        ansi = capture(wd)
    draw(ansi, out)
    with open(os.path.splitext(out)[0] + ".txt", "w") as f:  # the same screen as text, for the record
        from rich.text import Text

        f.write("\n".join(Text.from_ansi(ln).plain.rstrip() for ln in ansi.rstrip("\n").split("\n")) + "\n")
    print(f"bench.screenshot: wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
