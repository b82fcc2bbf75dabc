#!/usr/bin/env python3
"""Wait for the next heartbeat advert from a node, then DELAY ms more.

    advertwait.py --ns NS --from IP [--from IP] [--not-before T] --delay-ms D
                  --timeout S

Used by `scripts/bench failover` to strike each fault at a known phase of
the MASTER's advert cycle, the same phases for tandem and keepalived: the
outage after a node loss or a kill is Master_Down_Interval minus the time
since the last advert, so a phase left to chance would add up to one advert
interval of noise, and a phase set by the harness's own timing a bias.

Captures IPv4 in namespace NS (an AF_PACKET socket made there, see
vipwatch.open_in_ns; this process stays in its own namespace) and takes
the first packet from one of the --from addresses, arrived at or after the
wall-clock time --not-before, that is an advert: VRRP (IP protocol 112,
keepalived) or UDP to --port (tandem, default 5798).
Prints the advert's arrival time (wall clock, s) once D ms have passed
since it, and exits; prints nothing and exits 1 after --timeout seconds.
Only reads packets.
"""

import argparse
import ctypes
import ipaddress
import socket
import struct
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from vipwatch import WatchError, open_in_ns  # noqa: E402

ETH_P_IP = 0x0800
IPPROTO_VRRP = 112


def is_advert(pkt, sources, port):
    if len(pkt) < 20 or pkt[0] >> 4 != 4 or pkt[12:16] not in sources:
        return False
    if pkt[9] == IPPROTO_VRRP:
        return True
    ihl = (pkt[0] & 15) * 4
    if pkt[9] == socket.IPPROTO_UDP and len(pkt) >= ihl + 4:
        return struct.unpack_from(">H", pkt, ihl + 2)[0] == port
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ns", required=True)
    ap.add_argument("--from", dest="sources", action="append", required=True)
    ap.add_argument("--port", type=int, default=5798)
    ap.add_argument("--not-before", type=float, default=0.0)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--timeout", type=float, default=5.0)
    a = ap.parse_args()
    if not 0 < a.timeout <= 120 or not 0 <= a.delay_ms <= 60000:
        sys.exit("advertwait: --timeout in (0, 120], --delay-ms in [0, 60000]")
    sources = {ipaddress.IPv4Address(s).packed for s in a.sources}
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        s = open_in_ns(libc, a.ns, socket.AF_PACKET, socket.SOCK_DGRAM,
                       socket.htons(ETH_P_IP))
    except (WatchError, OSError) as e:
        sys.exit(f"advertwait: {e}")
    deadline = time.monotonic() + a.timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            sys.exit(1)
        s.settimeout(left)
        try:
            pkt = s.recv(2048)
        except socket.timeout:
            sys.exit(1)
        seen_mono, seen = time.monotonic(), time.time()
        if seen >= a.not_before and is_advert(pkt, sources, a.port):
            break
    pause = seen_mono + a.delay_ms / 1000.0 - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    print(f"{seen:.6f}", flush=True)


if __name__ == "__main__":
    main()
