"""Peak memory and wall time of every stage a command runs (`make full`, `dvc repro`, ...).

    python bench/stage_memory.py [--out stages.json] -- make full FAST=1 DATA=... WEIGHTS=...

Polls /proc twice a second for processes started as `python -m stages.<name>` under the
command (not those of anything else running meanwhile) and keeps,
per stage, the kernel's peak resident set (VmHWM: exact, however short the peak), when it
was first and last seen, and its process ids. Prints a table when the command ends and
writes it to --out as JSON. Linux only.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def parents():
    """{pid: parent pid} of every process now running."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            found[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # not a process, or it ended meanwhile
    return found


def descends(pid, root, parent):
    while pid in parent and pid != root:
        pid = parent[pid]
    return pid == root


def stage_processes(root):
    """{pid: (stage name, peak RSS in bytes)} of the `python -m stages.<name>` processes now
    running under the process `root` (not those of anything else running meanwhile)."""
    found, parent = {}, parents()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or not descends(int(proc.name), root, parent):
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"-m" not in argv:
                continue
            module = argv[argv.index(b"-m") + 1].decode()
            if not module.startswith("stages."):
                continue
            status = (proc / "status").read_text()
        except (OSError, IndexError, UnicodeDecodeError):
            continue  # the process ended meanwhile
        peak = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:")), 0)
        first_arg = argv[argv.index(b"-m") + 2].decode(errors="replace") if len(argv) > argv.index(b"-m") + 2 else ""
        # evaluate runs once per model: its first argument (models/<name>.keras) tells them apart
        name = module.removeprefix("stages.") + (f" {first_arg}" if module == "stages.evaluate" else "")
        found[int(proc.name)] = (name, peak)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    stages = {}
    started = time.monotonic()
    process = subprocess.Popen(command)
    while process.poll() is None:
        now = time.monotonic() - started
        for pid, (name, peak) in stage_processes(process.pid).items():
            entry = stages.setdefault(name, {"peak_rss_mb": 0, "first_s": now, "last_s": now, "pids": []})
            entry["peak_rss_mb"] = max(entry["peak_rss_mb"], round(peak / 2**20))
            entry["last_s"] = now
            if pid not in entry["pids"]:
                entry["pids"].append(pid)
        time.sleep(0.5)
    total = time.monotonic() - started
    print(f"\n{'stage':<40} {'wall s':>8} {'peak RSS MB':>12}")
    for name, entry in stages.items():
        entry["wall_s"] = round(entry["last_s"] - entry["first_s"], 1)
        print(f"{name:<40} {entry['wall_s']:>8} {entry['peak_rss_mb']:>12}")
    print(f"{'(the whole command)':<40} {total:>8.1f}   exit {process.returncode}")
    if args.out:
        args.out.write_text(json.dumps({"command": command, "wall_s": round(total, 1), "exit": process.returncode,
                                        "stages": stages}, indent=2) + "\n")
    sys.exit(process.returncode)


if __name__ == "__main__":
    main()
