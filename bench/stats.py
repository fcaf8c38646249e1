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


class ProcessMeter:
    """CPU seconds used and RSS of the given server processes between creation and `report`."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.start = {pid: _cpu_seconds(pid) for pid in pids}

    def report(self, elapsed: float) -> dict:
        if not self.pids:
            return {}
        cpu = sum(_cpu_seconds(pid) - self.start[pid] for pid in self.pids)
        return {
            "server_cpu_percent": round(100 * cpu / elapsed, 1),
            "server_rss_mib": round(sum(_rss_bytes(pid) for pid in self.pids) / 2**20, 1),
        }
