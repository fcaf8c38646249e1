"""Small measuring helpers: percentiles and a server process's CPU and memory from /proc."""

from __future__ import annotations

import os


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def process_tree(pids: list[int]) -> list[int]:
    """The processes and all their descendants (a server's workers are its children)."""
    found, pending = [], list(pids)
    while pending:
        pid = pending.pop()
        found.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    pending += [int(child) for child in children.read().split()]
        except OSError:
            continue
    return found


def rss_bytes(pids: list[int]) -> int:
    """The resident memory of these processes and their descendants."""
    total = 0
    for pid in process_tree(pids):
        try:
            total += _rss_bytes(pid)
        except OSError:
            pass
    return total


class ProcessMeter:
    """CPU seconds used and RSS of the given server processes (and their workers) between creation
    and `report`."""

    def __init__(self, pids: list[int]):
        self.pids = process_tree(pids)
        self.start = {pid: _cpu_seconds(pid) for pid in self.pids if os.path.exists(f"/proc/{pid}")}

    def report(self, elapsed: float) -> dict:
        if not self.pids:
            return {}
        cpu = sum(_cpu_seconds(pid) - start for pid, start in self.start.items() if os.path.exists(f"/proc/{pid}"))
        return {
            "server_cpu_percent": round(100 * cpu / elapsed, 1),
            "server_rss_mib": round(rss_bytes(self.pids) / 2**20, 1),
        }
