#!/usr/bin/env python3
"""Parse the text wrk prints (run with --latency) into numbers.

Shared by the bench subcommands: import it (parse(text) -> dict) or run it on a
file to get the dict as JSON. Times come out in milliseconds, sizes in bytes.
A field wrk did not print is None; a run without a "Requests/sec" line is an
error, since nothing else in it can be trusted.
"""

import json
import re
import sys

# wrk's own unit tables (units_time, units_binary in its stats printing).
TIME_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
BINARY = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4, "PB": 1024**5}
SI = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}

_NUM = r"([0-9]+(?:\.[0-9]+)?)"


class WrkParseError(ValueError):
    pass


def time_ms(s):
    m = re.fullmatch(_NUM + r"(us|ms|s|m|h)", s)
    if not m:
        raise WrkParseError(f"not a wrk time: {s!r}")
    return float(m.group(1)) * TIME_MS[m.group(2)]


def binary_bytes(s):
    m = re.fullmatch(_NUM + r"(B|KB|MB|GB|TB|PB)", s)
    if not m:
        raise WrkParseError(f"not a wrk size: {s!r}")
    return float(m.group(1)) * BINARY[m.group(2)]


def parse(text):
    out = {
        "requests": None, "duration_s": None, "bytes_read": None, "rps": None,
        "latency_avg_ms": None, "latency_stdev_ms": None, "latency_max_ms": None,
        "percentiles_ms": {}, "socket_errors": {"connect": 0, "read": 0, "write": 0,
                                                "timeout": 0},
        "non_2xx_3xx": 0,
    }
    in_dist = False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("Latency Distribution"):
            in_dist = True
            continue
        if in_dist:
            m = re.fullmatch(_NUM + r"%\s+(\S+)", s)
            if m:
                out["percentiles_ms"][format(float(m.group(1)), "g")] = time_ms(m.group(2))
                continue
            in_dist = False
        m = re.fullmatch(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)\s+\S+", s)
        if m:
            out["latency_avg_ms"] = time_ms(m.group(1))
            out["latency_stdev_ms"] = time_ms(m.group(2))
            out["latency_max_ms"] = time_ms(m.group(3))
            continue
        m = re.fullmatch(r"([0-9]+) requests in (\S+), (\S+) read", s)
        if m:
            out["requests"] = int(m.group(1))
            out["duration_s"] = time_ms(m.group(2)) / 1e3
            out["bytes_read"] = binary_bytes(m.group(3))
            continue
        m = re.fullmatch(r"Socket errors: connect ([0-9]+), read ([0-9]+), "
                         r"write ([0-9]+), timeout ([0-9]+)", s)
        if m:
            for k, v in zip(("connect", "read", "write", "timeout"), m.groups()):
                out["socket_errors"][k] = int(v)
            continue
        m = re.fullmatch(r"Non-2xx or 3xx responses: ([0-9]+)", s)
        if m:
            out["non_2xx_3xx"] = int(m.group(1))
            continue
        m = re.fullmatch(r"Requests/sec:\s+" + _NUM + r"([kMGT]?)", s)
        if m:
            out["rps"] = float(m.group(1)) * SI[m.group(2)]
    if out["rps"] is None or out["requests"] is None:
        raise WrkParseError("no 'Requests/sec' / 'requests in' line: wrk failed?")
    out["errors"] = sum(out["socket_errors"].values()) + out["non_2xx_3xx"]
    return out


def main(argv):
    if len(argv) != 2:
        print("usage: wrkparse.py WRK-OUTPUT-FILE", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8", errors="replace") as f:
        try:
            json.dump(parse(f.read()), sys.stdout, indent=1)
        except WrkParseError as e:
            print(f"wrkparse: {argv[1]}: {e}", file=sys.stderr)
            return 1
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
