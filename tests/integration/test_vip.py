#!/usr/bin/env python3
"""test_vip — vip/ end to end, in two network namespaces made here.

    sudo python3 tests/integration/test_vip.py [--driver PATH] [-v]

The driver defaults to $TANDEM_BUILD/tests/tools/vip_drive ($TANDEM_BUILD:
<repo>/build). -v prints every frame seen and the drivers' logs.

Topology (unique names per run, removed on exit even on failure):

    ns A: va 198.18.0.2/24 2001:2::2/64 ==veth== vb 198.18.0.3/24 2001:2::3/64 :ns B

Scenarios, in order: VIPs left by a run killed with SIGKILL are removed at
start-up (and an operator's address is not); take -> "up" on RTM_NEWADDR;
GARP / NA bursts fix B's stale neighbour entries (counts and timing checked
on the wire); a VIP deleted by hand is re-added; release; link down/up
(carrier and admin); admin down while held; a fatal signal drops the VIPs; lost notifications
(ENOBUFS) are recovered by a resync; the interface is deleted and made again;
periodic refresh and its end on release.

The driver (tests/tools/vip_drive.c) runs in A and holds the VIPs
198.18.0.100/24 and 2001:2::100/64 (2001:2::/48 is the IPv6 benchmarking
prefix, RFC 5180, the counterpart of 198.18.0.0/15). B sniffs and keeps the
neighbour entries the announcements must fix. Needs root; exits 77 (skip)
without it.
"""
import argparse
import ipaddress
import json
import os
import queue
import re
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77
VIP4 = "198.18.0.100/24"
VIP4_DROPPED = "198.18.0.77/32"   # in the "previous run" only
VIP6 = "2001:2::100/64"
MANUAL4 = "198.18.0.50/24"        # an operator's address: must survive
BOGUS_MAC = "02:00:00:00:00:99"
ETH_P_ALL = 0x0003


def log(msg):
    print(f"[{time.monotonic():10.3f}] {msg}", flush=True)


def run(cmd, check=True):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=20)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: rc={r.returncode}: {r.stderr.strip()}")
    return r.stdout


def ip(ns, *args, check=True):
    return run(["ip", "-n", ns, *args], check=check)


def addrs(ns, dev):
    """{"198.18.0.100/24": {flags...}, ...} for dev in ns."""
    out = json.loads(ip(ns, "-j", "addr", "show", "dev", dev) or "[]")
    res = {}
    for link in out:
        for a in link.get("addr_info", []):
            flags = {k for k, v in a.items() if v is True}
            res[f"{a['local']}/{a['prefixlen']}"] = flags
    return res


def neigh_mac(ns, dev, addr):
    out = json.loads(ip(ns, "-j", "neigh", "show", addr, "dev", dev) or "[]")
    return out[0].get("lladdr") if out else None


class Driver:
    """One vip_drive process in a namespace; stdout lines are collected by a thread."""

    def __init__(self, path, ns, args, name):
        self.name = name
        self.errf = tempfile.NamedTemporaryFile(prefix=f"vip-{name}-", suffix=".log",
                                                delete=False, mode="w+")
        # ip netns exec setns()es and execs: the pid below is the driver's own.
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, path, *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errf, text=True, bufsize=1)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._reader, daemon=True).start()
        self.expect(r"^ready$", 10)

    def _reader(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, pattern, timeout=5.0):
        """First line (new or already seen and unclaimed) matching pattern."""
        rx = re.compile(pattern)
        for i, line in enumerate(self.seen):
            if rx.search(line):
                del self.seen[i]
                return line
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no line matching {pattern!r} "
                                     f"within {timeout}s; unclaimed: {self.seen}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"{self.name}: exited before {pattern!r}; "
                                     f"log:\n{self.log()}")
            if rx.search(line):
                return line
            self.seen.append(line)

    def drain(self):
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self.seen.append(line)

    def send(self, cmd):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def cmd(self, cmd, timeout=5.0):
        self.send(cmd)
        line = self.expect(rf"^ok cmd={cmd.split()[0]} rc=", timeout)
        return int(line.rsplit("=", 1)[1])

    def stats(self):
        self.send("stats")
        line = self.expect(r"^stats ")
        self.expect(r"^ok cmd=stats")
        return {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}

    def log(self):
        self.errf.flush()
        with open(self.errf.name) as f:
            return f.read()

    def stop(self, sig=None):
        """End the process (by pid, ours); returns its exit status."""
        if self.proc.poll() is None:
            if sig is None:
                try:
                    self.send("quit")
                    self.proc.stdin.close()
                except (BrokenPipeError, OSError):
                    pass
            else:
                os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode

    def close(self):
        self.stop(signal.SIGKILL)
        self.errf.close()
        os.unlink(self.errf.name)


class Sniffer:
    """ARP and NA frames seen on dev in ns, via this script's --sniff mode."""

    def __init__(self, ns, dev):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__),
             "--sniff", dev], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"sniffer did not start: {line!r}")

    def stop(self):
        """Frames as (t, kind, addr, src_mac): kind is arp-req, arp-rep or na."""
        out, _ = self.proc.communicate(timeout=10)   # closes stdin: the sniffer ends
        frames = []
        for line in out.splitlines():
            t, kind, addr, mac, *rest = line.split()
            frames.append((float(t), kind, addr, mac, rest))
        return frames

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def sniff_main(dev):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((dev, 0))
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r, _, _ = select.select([s, sys.stdin], [], [], 0.5)
        if sys.stdin in r and not sys.stdin.read(1):
            break
        if s not in r:
            continue
        frame, meta = s.recvfrom(2048)
        if meta[2] == socket.PACKET_OUTGOING:
            continue
        t = time.monotonic()
        src = frame[6:12].hex(":")
        etype = struct.unpack("!H", frame[12:14])[0]
        if etype == 0x0806 and len(frame) >= 42:
            op = struct.unpack("!H", frame[20:22])[0]
            spa = socket.inet_ntoa(frame[28:32])
            tpa = socket.inet_ntoa(frame[38:42])
            tha = frame[32:38].hex(":")
            kind = {1: "arp-req", 2: "arp-rep"}.get(op, f"arp-{op}")
            print(f"{t:.6f} {kind} {spa} {src} tpa={tpa} tha={tha} len={len(frame)}",
                  flush=True)
        elif etype == 0x86DD and len(frame) >= 14 + 40 + 24:
            nh, hlim = frame[20], frame[21]
            if nh == 58 and frame[54] == 136:
                target = socket.inet_ntop(socket.AF_INET6, frame[62:78])
                flags = frame[58]
                print(f"{t:.6f} na {target} {src} hlim={hlim} flags={flags:#x}",
                      flush=True)
    return 0


class Test:
    def __init__(self, driver, verbose):
        self.driver_path = driver
        self.verbose = verbose
        pfx = f"tvip{os.getpid() % 100000}{secrets.token_hex(2)}"
        self.a, self.b = pfx + "a", pfx + "b"
        self.drivers = []
        self.sniffers = []
        self.failures = []
        self.passed = 0
        self.mac_a = None

    # -- plumbing --------------------------------------------------------
    def setup(self):
        ip_ns = ["ip", "netns", "add"]
        run(ip_ns + [self.a])
        run(ip_ns + [self.b])
        # Made inside A; only the peer end moves to B. Nothing in the root namespace.
        ip(self.a, "link", "add", "va", "type", "veth", "peer", "name", "vb",
           "netns", self.b)
        for ns, dev, v4, v6 in ((self.a, "va", "198.18.0.2/24", "2001:2::2/64"),
                                (self.b, "vb", "198.18.0.3/24", "2001:2::3/64")):
            ip(ns, "link", "set", "lo", "up")
            ip(ns, "addr", "add", v4, "dev", dev)
            ip(ns, "addr", "add", v6, "dev", dev, "nodad")
            # Link-local without DAD too: it only makes the test wait.
            run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                 f"net.ipv6.conf.{dev}.accept_dad=0"])
            ip(ns, "link", "set", dev, "up")
        self.mac_a = json.loads(ip(self.a, "-j", "link", "show", "va"))[0]["address"]
        # IPv6 drops what it receives (Ip6InNoRoutes) until the link is fully up:
        # wait for a usable link-local on both ends before anything is announced.
        deadline = time.monotonic() + 5
        while not all(any(a.startswith("fe80:") and "tentative" not in f
                          for a, f in addrs(ns, dev).items())
                      for ns, dev in ((self.a, "va"), (self.b, "vb"))):
            if time.monotonic() > deadline:
                raise RuntimeError("IPv6 link-local addresses never became usable")
            time.sleep(0.05)
        log(f"namespaces {self.a} {self.b}, va MAC {self.mac_a}")

    def teardown(self):
        for s in self.sniffers:
            s.kill()
        for d in self.drivers:
            try:
                d.close()
            except Exception as e:  # keep cleaning
                log(f"driver {d.name} cleanup: {e}")
        for ns in (self.a, self.b):
            run(["ip", "netns", "del", ns], check=False)

    def driver(self, name, *args):
        d = Driver(self.driver_path, self.a, ["--if", "va", *args], name)
        self.drivers.append(d)
        return d

    def check(self, what, cond, detail=""):
        if cond:
            self.passed += 1
            log(f"ok   {what}")
        else:
            self.failures.append(what)
            log(f"FAIL {what} {detail}")
        return cond

    def wait(self, what, fn, timeout=3.0):
        """Poll fn() until true (bounded); the check passes or fails on that."""
        deadline = time.monotonic() + timeout
        while True:
            v = fn()
            if v or time.monotonic() > deadline:
                return self.check(what, v)
            time.sleep(0.02)

    def quit(self, d):
        """Clean exit: under ASan a leak or error would make the status non-zero."""
        st = d.stop()
        self.check(f"{d.name}: clean exit", st == 0, f"status {st}\n{d.log()}")

    def va(self):
        return addrs(self.a, "va")

    # -- scenarios -------------------------------------------------------
    def stale_after_sigkill(self):
        """A run holding VIPs dies by SIGKILL; the next run removes them before joining."""
        old = self.driver("previous", "--vip", VIP4, "--vip", VIP4_DROPPED,
                          "--vip", VIP6)
        self.check("previous run: take rc=0", old.cmd("take") == 0)
        old.expect(r"^event type=up ")
        st = old.stop(signal.SIGKILL)
        self.check("previous run killed by SIGKILL", st == -signal.SIGKILL, f"status {st}")
        have = self.va()
        self.check("its VIPs are left behind",
                   all(x in have for x in (VIP4, VIP4_DROPPED, VIP6)), str(have))
        ip(self.a, "addr", "add", MANUAL4, "dev", "va")

        d = self.driver("main", "--vip", VIP4, "--vip", VIP6, "--track", "va",
                        "--count", "3", "--interval", "50", "--second-delay", "600",
                        "--crash-handler")
        d.expect(r"^link name=va up=1 initial$")
        rc = d.cmd("cleanup")
        have = self.va()
        self.check("cleanup removed 3 (2 configured + 1 marked, no longer configured)",
                   rc == 3, f"rc={rc}")
        self.check("stale VIPs gone",
                   not any(x in have for x in (VIP4, VIP4_DROPPED, VIP6)), str(have))
        self.check("operator's unmarked address kept", MANUAL4 in have, str(have))
        self.check("node's own addresses kept",
                   "198.18.0.2/24" in have and "2001:2::2/64" in have, str(have))
        self.check("cleanup logged", "left by a previous run" in d.log())
        self.check("stale_removed counter", d.stats()["stale_removed"] == 3)
        # Start-up joins as BACKUP: a release of absent VIPs is quiet and reports down.
        self.check("release while not held rc=0", d.cmd("release") == 0)
        d.expect(r"^event type=down ")
        self.check("deleting absent VIPs logs no netlink warning",
                   "warning nl:" not in d.log(), d.log())
        ip(self.a, "addr", "del", MANUAL4, "dev", "va")
        return d

    def take(self, d):
        t0 = time.monotonic()
        self.check("take rc=0", d.cmd("take") == 0)
        line = d.expect(r"^event type=up ")
        lat = int(re.search(r"latency_us=(\d+)", line).group(1))
        log(f"up: {line} (test saw it after {(time.monotonic() - t0) * 1e3:.1f} ms)")
        self.check("up latency measured and sane (0 < us < 200 ms)", 0 < lat < 200000,
                   f"{lat}")
        have = self.va()
        self.check("both VIPs on va after up", VIP4 in have and VIP6 in have, str(have))
        f6 = have.get(VIP6, set())
        self.check("IPv6 VIP has nodad, is not tentative",
                   "nodad" in f6 and "tentative" not in f6, str(f6))

    def announce(self, d):
        """Stale neighbour entries in B point elsewhere; the announcements fix them."""
        v4, v6 = VIP4.split("/")[0], VIP6.split("/")[0]
        ip(self.b, "neigh", "replace", v4, "lladdr", BOGUS_MAC, "dev", "vb", "nud", "stale")
        ip(self.b, "-6", "neigh", "replace", v6, "lladdr", BOGUS_MAC, "dev", "vb",
           "nud", "stale")
        self.check("B starts with a stale entry pointing elsewhere",
                   neigh_mac(self.b, "vb", v4) == BOGUS_MAC and
                   neigh_mac(self.b, "vb", v6) == BOGUS_MAC)
        sn = Sniffer(self.b, "vb")
        self.sniffers.append(sn)
        t0 = time.monotonic()
        self.check("announce rc=0", d.cmd("announce") == 0)
        self.wait("B's IPv4 neighbour entry now has our MAC",
                  lambda: neigh_mac(self.b, "vb", v4) == self.mac_a)
        self.wait("B's IPv6 neighbour entry now has our MAC",
                  lambda: neigh_mac(self.b, "vb", v6) == self.mac_a)
        time.sleep(max(0, t0 + 1.2 - time.monotonic()))   # both bursts
        frames = [f for f in sn.stop() if f[3] == self.mac_a]
        self.sniffers.remove(sn)
        req = [f for f in frames if f[1] == "arp-req" and f[2] == v4]
        rep = [f for f in frames if f[1] == "arp-rep" and f[2] == v4]
        na = [f for f in frames if f[1] == "na" and f[2] == v6]
        if self.verbose:
            for f in frames:
                log(f"  frame {f}")
        self.check("6 ARP requests (2 bursts x 3)", len(req) == 6, f"{len(req)}")
        self.check("6 ARP replies", len(rep) == 6, f"{len(rep)}")
        self.check("6 NAs", len(na) == 6, f"{len(na)}")
        if len(req) == 6:
            t = [f[0] for f in req]
            gaps = [b - a for a, b in zip(t, t[1:])]
            log(f"ARP request gaps (ms): {[round(g * 1e3, 1) for g in gaps]}")
            self.check("burst spacing ~50 ms", all(0.035 < g < 0.2 for g in gaps[:2] + gaps[3:]),
                       str(gaps))
            self.check("second burst ~600 ms after the first",
                       0.5 < t[3] - t[0] < 0.8, f"{t[3] - t[0]:.3f}")
        self.check("ARP request: target IP = VIP, target MAC zero, padded to 60",
                   all("tpa=" + v4 in f[4] and "tha=00:00:00:00:00:00" in f[4]
                       and "len=60" in f[4] for f in req))
        self.check("NA: hop limit 255, Override set, Solicited clear",
                   all("hlim=255" in f[4] and
                       (int(f[4][1].split("=")[1], 16) & 0x60) == 0x20 for f in na),
                   str(na[:1]))
        st = d.stats()
        self.check("counters: 12 ARP frames, 6 NAs, no send errors",
                   st["garps_sent"] == 12 and st["nas_sent"] == 6 and
                   st["send_errors"] == 0, str(st))

    def external_delete(self, d):
        for vip, pat in ((VIP4, r"198\.18\.0\.100/24"), (VIP6, r"2001:2::100/64")):
            ip(self.a, "addr", "del", vip, "dev", "va")
            d.expect(rf"^event type=lost addr={pat} ")
            line = d.expect(rf"^event type=readded addr={pat} ")
            log(line)
            self.wait(f"{vip} deleted by hand is back", lambda: vip in self.va())
        self.check("external deletion logged", "deleted by someone else" in d.log())
        st = d.stats()
        self.check("readds counter = 2", st["readds"] == 2, str(st))

    def release(self, d):
        self.check("release rc=0", d.cmd("release") == 0)
        d.expect(r"^event type=down ")
        have = self.va()
        self.check("VIPs gone after release", VIP4 not in have and VIP6 not in have,
                   str(have))
        # Not held: an address added by hand is left alone (and logged), not fought.
        ip(self.a, "addr", "add", VIP4, "dev", "va")
        time.sleep(0.2)
        d.drain()
        self.check("not held: no re-add/remove games",
                   VIP4 in self.va() and not any("event" in x for x in d.seen), str(d.seen))
        self.check("foreign add while released logged",
                   "added by someone else while not held" in d.log())
        ip(self.a, "addr", "del", VIP4, "dev", "va")

    def link_events(self, d):
        ip(self.b, "link", "set", "vb", "down")   # va loses carrier
        d.expect(r"^link name=va up=0$")
        self.check("carrier loss reported as down", True)
        ip(self.b, "link", "set", "vb", "up")
        d.expect(r"^link name=va up=1$")
        self.check("carrier back reported as up", True)
        ip(self.a, "link", "set", "va", "down")   # administratively down
        d.expect(r"^link name=va up=0$")
        self.check("admin down reported as down", True)
        ip(self.a, "link", "set", "va", "up")
        d.expect(r"^link name=va up=1$", 5)
        self.check("admin up reported as up", True)
        # va lost its IPv6 addresses when it went down (keep_addr_on_down=0).
        ip(self.a, "addr", "replace", "2001:2::2/64", "dev", "va", "nodad")
        d.drain()
        self.check("no duplicate link lines",
                   not any(x.startswith("link ") for x in d.seen), str(d.seen))

    def held_admin_down(self):
        """Admin down flushes IPv6 addresses (keep_addr_on_down=0): a held VIP comes back."""
        d = self.driver("flush", "--vip", VIP6, "--track", "va")
        self.check("take rc=0", d.cmd("take") == 0)
        d.expect(r"^event type=up ")
        ip(self.a, "link", "set", "va", "down")
        d.expect(r"^link name=va up=0$")
        d.expect(r"^event type=lost addr=2001:2::100/64")
        d.expect(r"^event type=readded addr=2001:2::100/64")
        self.check("held IPv6 VIP back on va while it is down", VIP6 in self.va())
        self.check("kernel flush logged as such", "flushed by the kernel" in d.log())
        ip(self.a, "link", "set", "va", "up")
        d.expect(r"^link name=va up=1$", 5)
        ip(self.a, "addr", "replace", "2001:2::2/64", "dev", "va", "nodad")
        self.check("release rc=0", d.cmd("release") == 0)
        d.expect(r"^event type=down ")
        self.quit(d)

    def crash(self, d):
        """A fatal signal: the handler drops the VIPs before the process dies."""
        self.check("take again rc=0", d.cmd("take") == 0)
        d.expect(r"^event type=up ")
        self.check("VIPs present before the crash", VIP4 in self.va())
        d.send("crash")
        st = d.proc.wait(5)
        self.check("driver died of SIGABRT", st == -signal.SIGABRT, f"{st}")
        self.wait("crash handler removed the VIPs",
                  lambda: VIP4 not in self.va() and VIP6 not in self.va(), 2)

    def overflow(self):
        """Notifications lost (ENOBUFS): the resync finds the deleted VIP and re-adds it."""
        # The VIP is already there (added by hand): take must still confirm it.
        ip(self.a, "addr", "add", VIP4, "dev", "va")
        d = self.driver("overflow", "--vip", VIP4, "--rcvbuf", "4096",
                        "--second-delay", "0")
        self.check("take of an already present VIP rc=0", d.cmd("take") == 0)
        d.expect(r"^event type=up ")
        d.send("pause 1500")   # the loop sleeps; notifications pile up
        time.sleep(0.1)
        with tempfile.NamedTemporaryFile("w", suffix=".batch") as f:
            for i in range(1, 201):
                f.write(f"addr add 198.18.1.{i}/32 dev va\n")
            f.write(f"addr del {VIP4} dev va\n")
            f.flush()
            ip(self.a, "-batch", f.name)
        d.expect(r"^ok cmd=pause", 5)
        d.expect(r"^event type=lost addr=198\.18\.0\.100/24", 5)
        d.expect(r"^event type=readded addr=198\.18\.0\.100/24", 5)
        self.wait("VIP deleted during the overflow is back", lambda: VIP4 in self.va())
        st = d.stats()
        self.check("overflow seen and resynced", st["overflows"] >= 1 and
                   st["resyncs"] >= 1, str(st))
        with tempfile.NamedTemporaryFile("w", suffix=".batch") as f:
            for i in range(1, 201):
                f.write(f"addr del 198.18.1.{i}/32 dev va\n")
            f.flush()
            ip(self.a, "-batch", f.name)
        self.check("release rc=0", d.cmd("release") == 0)
        d.expect(r"^event type=down ", 5)
        self.quit(d)

    def refresh(self):
        """One-round burst, no second burst, refresh every 200 ms (2 rounds), requests only."""
        d = self.driver("refresh", "--vip", VIP4, "--count", "1", "--second-delay", "0",
                        "--refresh", "200", "--refresh-count", "2", "--interval", "20",
                        "--no-arp-reply")
        d.cmd("take")
        d.expect(r"^event type=up ")
        sn = Sniffer(self.b, "vb")
        self.sniffers.append(sn)
        t0 = time.monotonic()
        d.cmd("announce")
        time.sleep(0.9)
        self.check("release rc=0", d.cmd("release") == 0)
        t_rel = time.monotonic()
        d.expect(r"^event type=down ")
        time.sleep(0.5)
        frames = [f for f in sn.stop() if f[3] == self.mac_a and f[2] == "198.18.0.100"]
        self.sniffers.remove(sn)
        req = [f[0] - t0 for f in frames if f[1] == "arp-req" and f[0] < t_rel]
        log(f"refresh: requests at (ms) {[round(x * 1e3) for x in req]}")
        # 0, then pairs at ~200/220, 400/420, 600/620, 800/820 -> 9 in 0.9 s
        self.check("refresh rounds: 8-10 requests in 0.9 s", 8 <= len(req) <= 10,
                   f"{len(req)}")
        self.check("no replies with --no-arp-reply",
                   not any(f[1] == "arp-rep" for f in frames))
        late = [f for f in frames if f[0] > t_rel]
        self.check("announcements stop on release", not late, str(late))
        st = d.stats()
        self.check("sent counter matches what B saw", st["garps_sent"] == len(frames),
                   f"{st['garps_sent']} vs {len(frames)}")
        self.quit(d)

    def recreate(self):
        """The interface is deleted and made again (new index): the VIP follows it."""
        d = self.driver("recreate", "--vip", VIP4, "--track", "va")
        d.expect(r"^link name=va up=1 initial$")
        d.cmd("take")
        d.expect(r"^event type=up ")
        old_index = json.loads(ip(self.a, "-j", "link", "show", "va"))[0]["ifindex"]
        ip(self.a, "link", "del", "va")   # takes vb with it
        d.expect(r"^link name=va up=0$")
        d.expect(r"^event type=lost addr=198\.18\.0\.100/24")
        self.check("interface removal: VIP reported lost, link down", True)
        ip(self.a, "link", "add", "va", "type", "veth", "peer", "name", "vb",
           "netns", self.b)
        ip(self.a, "addr", "add", "198.18.0.2/24", "dev", "va")
        ip(self.b, "addr", "add", "198.18.0.3/24", "dev", "vb")
        ip(self.a, "link", "set", "va", "up")
        ip(self.b, "link", "set", "vb", "up")
        d.expect(r"^event type=readded addr=198\.18\.0\.100/24", 5)
        d.expect(r"^link name=va up=1$", 5)
        new_index = json.loads(ip(self.a, "-j", "link", "show", "va"))[0]["ifindex"]
        self.check("VIP back on the new interface", VIP4 in self.va() and
                   new_index != old_index, f"{old_index} -> {new_index}")
        self.check("release rc=0", d.cmd("release") == 0)
        d.expect(r"^event type=down ")
        self.check("VIP gone from the new interface", VIP4 not in self.va())
        self.mac_a = json.loads(ip(self.a, "-j", "link", "show", "va"))[0]["address"]
        self.quit(d)

    def main(self):
        self.setup()
        d = self.stale_after_sigkill()
        self.take(d)
        self.announce(d)
        self.external_delete(d)
        self.release(d)
        self.link_events(d)
        self.held_admin_down()
        self.crash(d)
        self.overflow()
        self.recreate()
        self.refresh()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver")
    ap.add_argument("--sniff", help=argparse.SUPPRESS)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if args.sniff:
        return sniff_main(args.sniff)
    if os.geteuid() != 0:
        print("test_vip: needs root (network namespaces), skipping")
        return SKIP
    if not args.driver:
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        build = os.environ.get("TANDEM_BUILD", os.path.join(repo, "build"))
        args.driver = os.path.join(build, "tests", "tools", "vip_drive")
    if not os.access(args.driver, os.X_OK):
        print(f"test_vip: no driver at {args.driver} (build it, or pass --driver)")
        return 2

    # meson sends SIGTERM on timeout: turn it into an exception so cleanup runs.
    def on_term(sig, frame):
        raise SystemExit(f"signal {sig}")
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    t = Test(args.driver, args.verbose)
    try:
        t.main()
    except AssertionError as e:
        t.failures.append(str(e))
        log(f"FAIL {e}")
    finally:
        if t.failures or args.verbose:
            for d in t.drivers:
                log(f"--- {d.name} log ---\n{d.log()}")
        t.teardown()
    log(f"{t.passed} checks passed, {len(t.failures)} failed")
    return 1 if t.failures else 0


if __name__ == "__main__":
    sys.exit(main())
