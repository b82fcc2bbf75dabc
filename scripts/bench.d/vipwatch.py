#!/usr/bin/env python3
"""Who holds the VIP, sampled every few ms in several lab namespaces at once.

    vipwatch.py --ns NS1 --ns NS2 --vip 198.18.0.100 [--dev eth0]
                [--interval-ms 10] --duration S --out FILE [--ready-file F]

Used by `scripts/bench failover` (see failover.sh). A node "holds" the VIP
when the address is on DEV and DEV has carrier (IFF_UP and IFF_LOWER_UP): a
node cut off by `scripts/lab node-loss` keeps the address, but nobody can
reach it there, so it does not count.

The process runs in the namespace it was started in (the root one) and only
opens one NETLINK_ROUTE socket inside each watched namespace (setns there and
back, before any sampling). So `scripts/lab node-loss`, which kills every
process inside the lost node's namespace, does not kill the watcher. It
never changes anything: it only sends RTM_GETLINK / RTM_GETADDR requests.

Output (JSON, on SIGTERM/SIGINT too): the sample count and period, the
transitions as [wall time, [addr, carrier] per namespace], the total time
both (all) namespaces held the VIP at once (each sample counts until the
next one), and whether they still did at the last sample ("open").
Times are wall-clock seconds (time.time()), to line up with the harness's
fault time and the daemons' log stamps. Bounded: --duration (at most 600 s).
"""

import argparse
import ctypes
import ipaddress
import json
import os
import signal
import socket
import struct
import sys
import time

CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR = 16, 18, 20, 22
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFLA_IFNAME = 3
IFF_UP, IFF_LOWER_UP = 0x1, 0x10000
NLMSG_HDR = struct.Struct("=IHHII")
IFINFOMSG = struct.Struct("=BxHiII")
IFADDRMSG = struct.Struct("=BBBBI")
RTATTR = struct.Struct("=HH")


class WatchError(Exception):
    pass


def _align(n):
    return (n + 3) & ~3


def _attrs(buf, off, end):
    while off + RTATTR.size <= end:
        alen, atype = RTATTR.unpack_from(buf, off)
        if alen < RTATTR.size:
            break
        yield atype, buf[off + RTATTR.size:off + alen]
        off += _align(alen)


def _setns(libc, fd):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise WatchError(f"setns: {os.strerror(e)}")


def open_in_ns(libc, ns, family=socket.AF_NETLINK, type_=socket.SOCK_RAW,
               proto=NETLINK_ROUTE):
    """A socket made inside namespace ns (NETLINK_ROUTE unless told); this
    thread stays in the namespace it was in. Also used by advertwait.py."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    except OSError as e:
        os.close(home)
        raise WatchError(f"namespace {ns}: {e.strerror}") from e
    try:
        _setns(libc, target)
        try:
            s = socket.socket(family, type_, proto)
        finally:
            _setns(libc, home)
    finally:
        os.close(target)
        os.close(home)
    return s


class Node:
    def __init__(self, libc, ns, dev, vip):
        self.ns = ns
        self.dev = dev
        self.vip = vip
        self.sock = open_in_ns(libc, ns)
        self.sock.bind((0, 0))
        self.sock.settimeout(1.0)
        self.seq = 0
        self.ifindex = self._find_ifindex()

    def _request(self, msg_type, flags, body):
        self.seq += 1
        hdr = NLMSG_HDR.pack(NLMSG_HDR.size + len(body), msg_type,
                             NLM_F_REQUEST | flags, self.seq, 0)
        self.sock.send(hdr + body)
        return self.seq

    def _replies(self, seq):
        """Messages answering seq, until DONE (dump) or the single answer."""
        while True:
            try:
                buf = self.sock.recv(65536)
            except socket.timeout as e:
                raise WatchError(f"{self.ns}: netlink answered nothing in 1 s") from e
            off = 0
            while off + NLMSG_HDR.size <= len(buf):
                mlen, mtype, mflags, mseq, _ = NLMSG_HDR.unpack_from(buf, off)
                if mlen < NLMSG_HDR.size:
                    return
                if mseq == seq:
                    if mtype == NLMSG_DONE:
                        return
                    if mtype == NLMSG_ERROR:
                        err = struct.unpack_from("=i", buf, off + NLMSG_HDR.size)[0]
                        if err != 0:
                            raise WatchError(f"{self.ns}: netlink: {os.strerror(-err)}")
                        return
                    yield mtype, buf, off + NLMSG_HDR.size, off + mlen
                    if not mflags & 0x2:    # NLM_F_MULTI: more to come
                        return
                off += _align(mlen)

    def _find_ifindex(self):
        seq = self._request(RTM_GETLINK, NLM_F_DUMP, IFINFOMSG.pack(0, 0, 0, 0, 0))
        found = None
        for mtype, buf, off, end in self._replies(seq):
            if mtype != RTM_NEWLINK:
                continue
            _, _, index, _, _ = IFINFOMSG.unpack_from(buf, off)
            for atype, val in _attrs(buf, off + IFINFOMSG.size, end):
                if atype == IFLA_IFNAME and val.rstrip(b"\0").decode() == self.dev:
                    found = index
        if found is None:
            raise WatchError(f"{self.ns}: no device {self.dev}")
        return found

    def carrier(self):
        seq = self._request(RTM_GETLINK, 0, IFINFOMSG.pack(0, 0, self.ifindex, 0, 0))
        up = False
        for mtype, buf, off, _ in self._replies(seq):
            if mtype == RTM_NEWLINK:
                flags = IFINFOMSG.unpack_from(buf, off)[3]
                up = bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP)
        return up

    def has_addr(self):
        seq = self._request(RTM_GETADDR, NLM_F_DUMP, IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0))
        have = False
        for mtype, buf, off, end in self._replies(seq):
            if mtype != RTM_NEWADDR:
                continue
            _, _, _, _, index = IFADDRMSG.unpack_from(buf, off)
            if index != self.ifindex:
                continue
            for atype, val in _attrs(buf, off + IFADDRMSG.size, end):
                if atype in (IFA_LOCAL, IFA_ADDRESS) and val == self.vip:
                    have = True
        return have

    def sample(self):
        """(address present, carrier); (False, False) once the namespace is gone."""
        try:
            return self.has_addr(), self.carrier()
        except (OSError, WatchError):
            return False, False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ns", action="append", required=True)
    ap.add_argument("--vip", required=True)
    ap.add_argument("--dev", default="eth0")
    ap.add_argument("--interval-ms", type=float, default=10.0)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ready-file")
    a = ap.parse_args()
    if not 0 < a.duration <= 600 or not 1 <= a.interval_ms <= 1000:
        sys.exit("vipwatch: --duration in (0, 600], --interval-ms in [1, 1000]")
    vip = ipaddress.IPv4Address(a.vip).packed
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        nodes = [Node(libc, ns, a.dev, vip) for ns in a.ns]
    except WatchError as e:
        sys.exit(f"vipwatch: {e}")

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    period = a.interval_ms / 1000.0
    t_start = time.time()
    mono0 = time.monotonic()
    deadline = mono0 + a.duration
    transitions = []
    last = None
    samples = 0
    both_s = 0.0
    both_addr_s = 0.0
    prev_t = None
    prev_both = prev_both_addr = False
    max_gap = 0.0
    first_both = None
    while not stop:
        mono = time.monotonic()
        if mono >= deadline:
            break
        now = t_start + (mono - mono0)
        state = [n.sample() for n in nodes]
        samples += 1
        if prev_t is not None:
            gap = now - prev_t
            max_gap = max(max_gap, gap)
            if prev_both:
                both_s += gap
            if prev_both_addr:
                both_addr_s += gap
        held = [s[0] and s[1] for s in state]
        prev_both = all(held)
        prev_both_addr = all(s[0] for s in state)
        if prev_both and first_both is None:
            first_both = now
        prev_t = now
        if state != last:
            transitions.append([round(now, 4), [list(s) for s in state]])
            last = state
        if samples == 1 and a.ready_file:
            with open(a.ready_file, "w") as f:
                f.write(f"{now:.6f}\n")
        # Next tick on the fixed grid; a late sample does not shift the rest.
        k = int((time.monotonic() - mono0) / period) + 1
        pause = mono0 + k * period - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    end = time.time()
    out = {
        "namespaces": a.ns,
        "vip": a.vip,
        "dev": a.dev,
        "interval_ms": a.interval_ms,
        "start": round(t_start, 4),
        "end": round(end, 4),
        "samples": samples,
        "max_gap_ms": round(max_gap * 1000.0, 1),
        "transitions": transitions,
        "both_ms": round(both_s * 1000.0, 1),
        "both_open": prev_both,
        "both_first": round(first_both, 4) if first_both is not None else None,
        "both_addr_ms": round(both_addr_s * 1000.0, 1),
        "both_addr_open": prev_both_addr,
    }
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
        f.write("\n")
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
