#!/usr/bin/env python3
"""test_repair — the repair module (TCP_REPAIR takeover) end to end, in
network namespaces made here.

    sudo python3 tests/integration/test_repair.py [--driver PATH] [-v] [SCENARIO ...]

The driver defaults to $TANDEM_BUILD/tests/tools/repair_drive ($TANDEM_BUILD:
<repo>/build). Needs root; exits 77 (skip) without it.

Topology, built fresh for every scenario (unique names per run, removed on
exit even on failure; nothing in the root namespace):

    bridge br0 in namespace "sw", 198.19.7.0/24
      client .10   node A .2   node B .3   backend .20
      VIP 198.19.7.100/24 starts on A and moves to B

A and B each run tests/tools/repair_drive (an echo server / L4 relay built on
include/tandem/repair.h). This script is the sync channel: it forwards A's
"state" (snapshot at accept/connect) and "sync" (byte counts) lines to B as
"stage" and "count". The client and the backend are this same script in
--client / --backend mode, inside their namespaces. Scenarios:

  idle      crash takeover of an idle connection: snapshot once at accept,
            byte counts after; A's link cut + A killed; VIP added on B, the
            socket rebuilt, GARP. The client's line stream goes on byte-exact;
            the rebuilt socket has the full MSS (not 524); a listener on B's
            VIP:port does not get in the way; the watch says "ok".
  proxy     both halves of a proxied pair (client side and the VIP-sourced
            backend connection) rebuilt; the backend sees one connection.
  graceful  planned handover with data in flight: unread bytes in A's receive
            queue and unacked + unsent bytes in its send queue move to B;
            zero loss, no FIN/RST from A.
  stale     A's kernel ACKed a line its application never read, then A dies:
            the watch finds the hole, the client gets ECONNRESET in ~1 s.
  inflight  the client's line was never ACKed (lost in the crash): the watch
            waits for the retransmission and does NOT reset; the echo arrives.
  ipv6      the idle crash takeover over IPv6 (2001:2:0:7::/64, VIP ::100).
  bench     1000 idle connections rebuilt at once: µs per socket.
"""
import argparse
import errno
import os
import queue
import re
import secrets
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77
NET = "198.19.7"
VIP = f"{NET}.100"
ADDR = {"c": f"{NET}.10", "a": f"{NET}.2", "b": f"{NET}.3", "be": f"{NET}.20"}
BACKEND_PORT = 8000
PATTERN = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
# IPv6: 2001:2::/48 is the benchmarking prefix (RFC 5180), the counterpart of 198.18.0.0/15.
NET6 = "2001:2:0:7"
VIP6 = f"{NET6}::100"
ADDR6 = {"c": f"{NET6}::10", "a": f"{NET6}::2", "b": f"{NET6}::3"}
SCENARIOS = ["idle", "proxy", "graceful", "stale", "inflight", "ipv6", "bench"]


def log(msg):
    print(f"[{time.monotonic():10.3f}] {msg}", flush=True)


def run(cmd, check=True, timeout=20):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: rc={r.returncode}: {r.stderr.strip()}")
    return r.stdout


def kv(line):
    """'x a=1 b=c' -> {'a': '1', 'b': 'c'}"""
    return dict(t.split("=", 1) for t in line.split() if "=" in t)


# ---------------------------------------------------------------- peers ----
# The client and the backend: plain TCP, no repair. They run as this script
# in --client / --backend mode inside their namespaces.

def line_bytes(cid, i, n=64):
    head = f"c{cid:04d}-l{i:06d}-".encode()
    body = head + PATTERN * (n // len(PATTERN) + 1)
    return body[:n - 1] + b"\n"


class PeerOut:
    def __init__(self):
        self.lock = threading.Lock()

    def __call__(self, msg):
        with self.lock:
            sys.stdout.write(msg + "\n")
            sys.stdout.flush()


def errname(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if isinstance(e, OSError) else str(e)


def recv_exact(sock, n, deadline):
    """n bytes or an exception: TimeoutError, EOFError, OSError."""
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"got {len(buf)} of {n}")
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            continue
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"eof after {len(buf)} of {n}")
        buf += chunk
    return bytes(buf)


class ClientConn:
    def __init__(self, sock, cid):
        self.sock = sock
        self.cid = cid
        self.expected = bytearray()   # sent, not yet echoed back
        self.next = 0

    def line(self, n=64):
        data = line_bytes(self.cid, self.next, n)
        self.next += 1
        return data


def client_main():
    out = PeerOut()
    conns = []
    out("ready")

    def stream(c, period, count, pause_at, pause):
        ok = bad = 0
        lat_max = 0.0
        err = ""
        tick = time.monotonic()
        for i in range(count):
            time.sleep(max(0.0, tick - time.monotonic()))
            tick = max(tick, time.monotonic()) + period
            if i == pause_at:
                tick += pause
            data = c.line()
            t0 = time.monotonic()
            try:
                c.sock.sendall(data)
                got = recv_exact(c.sock, len(data), t0 + 5)
            except Exception as e:  # noqa: BLE001 - reported to the test
                err = f"{type(e).__name__}:{errname(e)}"
                break
            lat = (time.monotonic() - t0) * 1e3
            lat_max = max(lat_max, lat)
            if got == data:
                ok += 1
            else:
                bad += 1
            out(f"echoed cid={c.cid} i={i} ok={int(got == data)} lat_ms={lat:.2f}")
        out(f"stream-done cid={c.cid} ok={ok} bad={bad} max_lat_ms={lat_max:.2f} err={err}")

    def wait_err(c, timeout):
        deadline = time.monotonic() + timeout
        what = "timeout"
        while time.monotonic() < deadline:
            r, _, _ = select.select([c.sock], [], [], deadline - time.monotonic())
            if not r:
                continue
            try:
                d = c.sock.recv(4096)
                what = "data" if d else "eof"
            except OSError as e:
                what = "reset" if e.errno == errno.ECONNRESET else errname(e)
            break
        out(f"waiterr cid={c.cid} what={what} t={time.monotonic():.6f}")

    for raw in sys.stdin:
        a = raw.split()
        if not a:
            continue
        cmd = a[0]
        try:
            if cmd == "open":
                host, port, n = a[1], int(a[2]), int(a[3])
                for _ in range(n):
                    s = socket.create_connection((host, port), timeout=5)
                    s.settimeout(None)
                    conns.append(ClientConn(s, len(conns)))
                out(f"ok cmd=open n={n}")
            elif cmd == "echo":
                c, n, timeout = conns[int(a[1])], int(a[2]), float(a[3])
                data = c.line(n)
                t0 = time.monotonic()
                c.sock.sendall(data)
                got = recv_exact(c.sock, n, t0 + timeout)
                if got != data:
                    out(f"err cmd=echo msg=mismatch got={got[:20]!r}")
                else:
                    out(f"ok cmd=echo lat_ms={(time.monotonic() - t0) * 1e3:.2f}")
            elif cmd == "send":
                c, k = conns[int(a[1])], int(a[2])
                for _ in range(k):
                    data = c.line()
                    c.expected += data
                    c.sock.sendall(data)
                out(f"ok cmd=send t={time.monotonic():.6f}")
            elif cmd == "recv":
                c, n, timeout = conns[int(a[1])], int(a[2]), float(a[3])
                t0 = time.monotonic()
                got = recv_exact(c.sock, n, t0 + timeout)
                want = bytes(c.expected[:n])
                del c.expected[:n]
                if got != want:
                    out(f"err cmd=recv msg=mismatch got={got[:24]!r} want={want[:24]!r}")
                else:
                    out(f"ok cmd=recv n={n} t={time.monotonic():.6f}")
            elif cmd == "stream":
                c, period, count = conns[int(a[1])], float(a[2]) / 1e3, int(a[3])
                pause_at = int(a[4]) if len(a) > 4 else -1
                pause = float(a[5]) / 1e3 if len(a) > 5 else 0.0
                threading.Thread(target=stream, args=(c, period, count, pause_at, pause),
                                 daemon=True).start()
                out("ok cmd=stream")
            elif cmd == "wait-err":
                c, timeout = conns[int(a[1])], float(a[2])
                threading.Thread(target=wait_err, args=(c, timeout), daemon=True).start()
                out("ok cmd=wait-err")
            elif cmd == "echo-all":
                n, timeout = int(a[1]), float(a[2])
                deadline = time.monotonic() + timeout
                sent = []
                for c in conns:
                    d = c.line(n)
                    c.sock.sendall(d)
                    sent.append(d)
                good = bad = 0
                for c, d in zip(conns, sent):
                    try:
                        good += recv_exact(c.sock, n, deadline) == d
                    except Exception:  # noqa: BLE001 - counted
                        bad += 1
                bad += len(conns) - good - bad
                out(f"ok cmd=echo-all good={good} bad={bad}")
            elif cmd == "quit":
                break
            else:
                out(f"err cmd={cmd} msg=unknown")
        except Exception as e:  # noqa: BLE001 - the test reads the reason
            out(f"err cmd={cmd} msg={type(e).__name__}:{errname(e)}")
    for c in conns:
        c.sock.close()
    return 0


def backend_main(host, port):
    out = PeerOut()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(64)
    count = [0]

    def serve(s, n):
        why = "eof"
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                s.sendall(d)
        except OSError as e:
            why = errname(e)
        out(f"closed n={n} why={why}")
        s.close()

    def acceptor():
        while True:
            s, peer = ls.accept()
            count[0] += 1
            out(f"accepted n={count[0]} peer={peer[0]}:{peer[1]}")
            threading.Thread(target=serve, args=(s, count[0]), daemon=True).start()

    threading.Thread(target=acceptor, daemon=True).start()
    out("ready")
    sys.stdin.read()   # until the test closes our stdin
    return 0


# ------------------------------------------------------------- harness ----

class Proc:
    """A line-oriented process in a namespace; a thread collects its stdout."""

    def __init__(self, ns, argv, name, on_line=None):
        self.name = name
        self.on_line = on_line
        self.errf = tempfile.NamedTemporaryFile(prefix=f"repair-{name}-", suffix=".log",
                                                delete=False, mode="w+")
        # ip netns exec setns()es and execs: the pid below is the program's own.
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errf, text=True, bufsize=1)
        self.lines = queue.Queue()
        self.seen = []
        self.all = []
        self.wlock = threading.Lock()
        threading.Thread(target=self._reader, daemon=True).start()
        self.expect(r"^ready$", 10)

    def _reader(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.all.append(line)
            if self.on_line is not None:
                try:
                    self.on_line(line)
                except Exception as e:  # noqa: BLE001 - keep reading
                    self.lines.put(f"on_line-error {e}")
            self.lines.put(line)
        self.lines.put(None)

    def expect(self, pattern, timeout=5.0):
        """First line (new, or seen and unclaimed) matching pattern."""
        rx = re.compile(pattern)
        for i, line in enumerate(self.seen):
            if rx.search(line):
                del self.seen[i]
                return line
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no line matching {pattern!r} within "
                                     f"{timeout}s; unclaimed: {self.seen[-10:]}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.lines.put(None)
                raise AssertionError(f"{self.name}: exited before {pattern!r}; "
                                     f"stderr:\n{self.log()}")
            if rx.search(line):
                return line
            self.seen.append(line)

    def send(self, line):
        with self.wlock:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()

    def cmd(self, line, timeout=5.0):
        """Send a command; its 'ok cmd=' line as a dict (AssertionError on 'err')."""
        name = line.split()[0]
        self.send(line)
        got = self.expect(rf"^(ok|err) cmd={re.escape(name)}\b", timeout)
        if got.startswith("err"):
            raise AssertionError(f"{self.name}: {line!r} -> {got}")
        return kv(got)

    def log(self):
        self.errf.flush()
        with open(self.errf.name) as f:
            return f.read()

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def quit(self, line="quit"):
        """Ask it to end; returns the exit status (killed by pid if it does not)."""
        if self.proc.poll() is None:
            try:
                self.send(line)
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode

    def close(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                log(f"{self.name}: pid {self.proc.pid} not gone 10 s after SIGKILL")
        self.errf.close()
        os.unlink(self.errf.name)


class Topo:
    """client, A, B, backend on a bridge in its own namespace."""

    def __init__(self, prefix):
        self.p = prefix
        self.ns = {k: f"{prefix}{k}" for k in ("sw", "c", "a", "b", "be")}
        self.made = []

    def ip(self, node, *args, check=True):
        return run(["ip", "-n", self.ns[node], *args], check=check)

    def up(self):
        for ns in self.ns.values():
            run(["ip", "netns", "add", ns])
            self.made.append(ns)
        self.ip("sw", "link", "add", "br0", "type", "bridge")
        self.ip("sw", "link", "set", "br0", "up")
        for node, port in (("c", "pc"), ("a", "pa"), ("b", "pb"), ("be", "pe")):
            # Made inside sw; only the peer end moves. Nothing in the root namespace.
            self.ip("sw", "link", "add", port, "type", "veth", "peer", "name", "eth0",
                    "netns", self.ns[node])
            self.ip("sw", "link", "set", port, "master", "br0", "up")
            self.ip(node, "link", "set", "lo", "up")
            self.ip(node, "addr", "add", f"{ADDR[node]}/24", "dev", "eth0")
            self.ip(node, "link", "set", "eth0", "up")
        self.ip("a", "addr", "add", f"{VIP}/24", "dev", "eth0")

    def up6(self):
        """IPv6 on client, A, B (no DAD: it only makes the test wait), VIP on A."""
        for node in ("c", "a", "b"):
            self.ip(node, "addr", "add", f"{ADDR6[node]}/64", "dev", "eth0", "nodad")
        self.ip("a", "addr", "add", f"{VIP6}/64", "dev", "eth0", "nodad")

    def down(self):
        for ns in reversed(self.made):
            run(["ip", "netns", "del", ns], check=False)
        self.made = []


class Test:
    def __init__(self, driver, verbose):
        self.driver_path = driver
        self.verbose = verbose
        self.prefix = f"trp{os.getpid() % 100000}{secrets.token_hex(2)}"
        self.failures = []
        self.passed = 0
        self.numbers = {}
        self.procs = []
        self.topo = None
        self.synced = {}
        self.fwd_b = None

    # -- plumbing --------------------------------------------------------
    def check(self, what, cond, detail=""):
        if cond:
            self.passed += 1
            log(f"ok   {what}")
        else:
            self.failures.append(what)
            log(f"FAIL {what} {detail}")
        return cond

    def note(self, key, value):
        self.numbers[key] = value
        log(f"     {key} = {value}")

    def proc(self, node, argv, name, on_line=None):
        p = Proc(self.topo.ns[node], argv, name, on_line)
        self.procs.append(p)
        return p

    def forward(self, line):
        """The sync channel: A's snapshots and byte counts go to B."""
        if line.startswith("state "):
            self.fwd_b.send("stage " + line[6:])
        elif line.startswith("sync "):
            d = kv(line)
            self.synced[int(d["id"])] = (int(d["w"]), int(d["r"]))
            self.fwd_b.send("count " + line[5:])

    def nodes(self):
        """Fresh drivers: B first (A forwards to it), with its watch open ahead of time."""
        b = self.proc("b", [self.driver_path], "B")
        self.fwd_b = b
        t0 = time.monotonic()
        b.cmd("garp-open eth0")
        r = b.cmd("watch-open eth0")
        self.note("watch_open_ms", f"{(time.monotonic() - t0) * 1e3:.1f} "
                  f"(driver-measured {float(r['us']) / 1e3:.1f})")
        self.synced = {}
        a = self.proc("a", [self.driver_path], "A", on_line=self.forward)
        return a, b

    def client(self):
        return self.proc("c", [sys.executable, os.path.abspath(__file__), "--client"], "client")

    def wait_synced(self, cid, w, r, timeout=2.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.synced.get(cid) == (w, r):
                return True
            time.sleep(0.002)
        return self.check(f"A's counts for conn {cid} reached w={w} r={r}", False,
                          f"have {self.synced.get(cid)}")

    def crash(self, a):
        """Node loss: A's bridge port goes down, then A's process is killed."""
        t0 = time.monotonic()
        self.topo.ip("sw", "link", "set", "pa", "down")
        t1 = time.monotonic()
        a.kill()
        log(f"     crash: link cut {(t1 - t0) * 1e3:.1f} ms, kill {(time.monotonic() - t1) * 1e3:.1f} ms")
        return t0

    def takeover(self, b, args="", listen_port=None, timeout=10.0):
        """VIP on B, rebuild every staged socket, then the gratuitous ARP (all in B)."""
        t0 = time.monotonic()
        self.topo.ip("b", "addr", "add", f"{VIP}/24", "dev", "eth0")
        t_vip = time.monotonic()
        if listen_port is not None:
            b.cmd(f"listen {VIP}:{listen_port}")
        r = b.cmd(f"takeover garp={VIP} {args}".strip(), timeout)
        t_rebuilt = time.monotonic()
        r["vip_ms"] = (t_vip - t0) * 1e3
        log(f"     takeover: VIP {(t_vip - t0) * 1e3:.1f} ms, rebuilt {(t_rebuilt - t_vip) * 1e3:.1f} ms")
        r["t_rebuilt"] = t_rebuilt
        self.check(f"takeover: {r['n']} rebuilt, {r['fails']} failed", int(r["fails"]) == 0,
                   str(b.seen[-5:]))
        return r

    def no_errors(self, p):
        """No error lines; a driver still running must also exit cleanly (status 0:
        under ASan a leak or an error would make it non-zero)."""
        errs = [x for x in p.all if x.startswith(("err ", "restore-failed", "watch-add-failed",
                                                   "on_line-error", "snapshot-failed",
                                                   "garp-failed"))]
        self.check(f"{p.name}: no error lines", not errs, str(errs[:5]))
        if p.proc.poll() is None:
            st = p.quit()
            self.check(f"{p.name}: clean exit", st == 0, f"status {st}\n{p.log()}")

    def teardown_scenario(self):
        for p in self.procs:
            try:
                p.close()
            except Exception as e:  # noqa: BLE001 - keep cleaning
                log(f"{p.name} cleanup: {e}")
        self.procs = []
        if self.topo is not None:
            self.topo.down()
            self.topo = None

    # -- scenarios -------------------------------------------------------
    def idle(self):
        """Crash takeover of an idle connection, cheap sync (accept snapshot + counts)."""
        a, b = self.nodes()
        a.cmd(f"listen {VIP}:7001")
        c = self.client()
        c.cmd(f"open {VIP} 7001 1")
        r = a.cmd("accept n=1")
        self.note("idle.snapshot_us", r["snapshot_us_per"])
        mss_a = int(a.cmd("info id=1")["snd_mss"])
        for _ in range(5):
            c.cmd("echo 0 64 2")
        self.wait_synced(1, 320, 320)
        f = a.cmd("fresh id=1")
        self.check("fresh repair snapshot = accept snapshot + byte counts",
                   f["match"] == "1" and f["mss_match"] == "1" and f["opts_match"] == "1",
                   str(f))
        self.note("idle.fresh_snapshot_us", f["us"])
        c.cmd("echo 0 64 2")   # the live snapshot left the connection working
        self.wait_synced(1, 384, 384)
        self.check("live snapshot: connection still echoes", True)

        # 40 lines, 50 ms apart, with a 400 ms pause after line 15: the crash
        # comes in that pause, once A's counts for line 15 are synced (a line
        # caught in the crash would be the "inflight" scenario instead).
        c.cmd("stream 0 50 40 15 400")
        c.expect(r"^echoed cid=0 i=15 ", 5)
        self.wait_synced(1, 384 + 16 * 64, 384 + 16 * 64)
        t0 = self.crash(a)
        r = self.takeover(b, listen_port=7001)
        self.note("idle.rebuilt_ms_after_failure", f"{(r['t_rebuilt'] - t0) * 1e3:.1f}")
        self.note("idle.restore_us", r["restore_us"])
        done = kv(c.expect(r"^stream-done cid=0", 15))
        self.check("client: 40/40 lines echoed byte-exact, no error",
                   done["ok"] == "40" and done["bad"] == "0" and done["err"] == "", str(done))
        self.note("idle.max_echo_latency_ms", done["max_lat_ms"])
        info = b.cmd("info id=1")
        self.note("idle.snd_mss", f"A {mss_a}, B {info['snd_mss']}")
        self.check("rebuilt socket has the full MSS (not 524)",
                   int(info["snd_mss"]) == mss_a and mss_a > 1000, str(info))
        v = kv(b.expect(r"^verdict id=1 ", 3))
        self.check("watch: idle connection judged ok", v["v"] == "ok", str(v))
        self.note("idle.verdict_ms", v["after_ms"])
        c.cmd("echo 0 2000 3")   # a multi-segment write after the takeover
        self.check("a 2000-byte echo after the takeover", True)
        for p in (a, b, c):
            self.no_errors(p)

    def proxy(self):
        """Both halves of a proxied connection rebuilt."""
        be = self.proc("be", [sys.executable, os.path.abspath(__file__), "--backend",
                              ADDR["be"], str(BACKEND_PORT)], "backend")
        a, b = self.nodes()
        a.cmd(f"listen {VIP}:7002")
        c = self.client()
        c.cmd(f"open {VIP} 7002 1")
        a.cmd("accept n=1")
        a.cmd(f"connect src={VIP}:0 dst={ADDR['be']}:{BACKEND_PORT}")
        a.cmd("relay a=1 b=2")
        b.cmd("relay-staged a=1 b=2")
        be.expect(r"^accepted n=1 ", 3)
        for _ in range(3):
            c.cmd("echo 0 64 2")
        c.cmd("stream 0 50 40 15 400")
        c.expect(r"^echoed cid=0 i=15 ", 5)
        n = (3 + 16) * 64
        self.wait_synced(1, n, n)
        self.wait_synced(2, n, n)
        t0 = self.crash(a)
        r = self.takeover(b)
        self.note("proxy.rebuilt_ms_after_failure", f"{(r['t_rebuilt'] - t0) * 1e3:.1f}")
        self.note("proxy.restore_us_both", r["restore_us"])
        done = kv(c.expect(r"^stream-done cid=0", 15))
        self.check("client through the rebuilt pair: 40/40 exact",
                   done["ok"] == "40" and done["bad"] == "0" and done["err"] == "", str(done))
        self.note("proxy.max_echo_latency_ms", done["max_lat_ms"])
        v1 = kv(b.expect(r"^verdict id=1 ", 3))
        v2 = kv(b.expect(r"^verdict id=2 ", 3))
        self.check("watch: both halves ok", v1["v"] == "ok" and v2["v"] == "ok",
                   f"{v1} {v2}")
        accepted = [x for x in be.all if x.startswith("accepted")]
        closed = [x for x in be.all if x.startswith("closed")]
        self.check("backend saw one connection and no close/error",
                   len(accepted) == 1 and not closed, f"{accepted} {closed}")
        for p in (a, b, c, be):
            self.no_errors(p)

    def graceful(self):
        """Planned handover with unread and unsent/unacked bytes: zero loss."""
        a, b = self.nodes()
        a.cmd(f"listen {VIP}:7003")
        c = self.client()
        c.cmd(f"open {VIP} 7003 1")
        a.cmd("accept n=1")
        for _ in range(3):
            c.cmd("echo 0 64 2")
        a.cmd("mode id=1 hold")
        c.cmd("send 0 3")                # L1..L3: ACKed by A's kernel, unread
        time.sleep(0.1)
        a.cmd("read id=1 n=64")          # the application takes L1, holds its echo
        t0 = time.monotonic()
        self.topo.ip("sw", "link", "set", "pa", "down")     # freeze, part 1
        a.cmd("flush id=1 n=32")         # sent into the void: unacked
        self.topo.ip("a", "addr", "del", f"{VIP}/24", "dev", "eth0")   # part 2
        a.cmd("flush id=1")              # no route from the VIP any more: unsent
        d = a.cmd("dump id=1")
        self.note("graceful.queues", f"rcvq {d['rcvq']} B, sndq {d['sndq']} B "
                  f"(unsent {d['unsent']})")
        self.check("A's dump: 128 unread bytes, 64 in the send queue, some unsent",
                   d["rcvq"] == "128" and d["sndq"] == "64" and 32 <= int(d["unsent"]) <= 64,
                   str(d))
        st = a.quit()
        self.check("A exits cleanly after the silent close", st == 0, f"status {st}")
        ss = run(["ip", "netns", "exec", self.topo.ns["a"], "ss", "-Htan", "sport = :7003"])
        self.check("A's kernel forgot the connection (no FIN_WAIT / RST)",
                   "198.19.7.10" not in ss, ss)
        self.topo.ip("sw", "link", "set", "pa", "up")   # A's link back: it must stay silent
        r = self.takeover(b)
        got = c.cmd("recv 0 192 3")
        self.note("graceful.first_bytes_ms_after_freeze",
                  f"{(float(got['t']) - t0) * 1e3:.1f} (restore {r['restore_us']} us)")
        self.check("client got L1's echo (from the send queue) and L2, L3 (from the "
                   "receive queue), in order", True)
        for _ in range(3):
            c.cmd("echo 0 64 2")
        self.check("connection goes on after the handover", True)
        v = kv(b.expect(r"^verdict id=1 ", 3))
        self.check("watch: ok (ACK within the resent send queue)", v["v"] == "ok", str(v))
        for p in (b, c):
            self.no_errors(p)

    def stale(self):
        """Bytes ACKed by A's kernel but never read, then A dies: clean reset.
        A second connection in the same state, left out of the watch, is the
        control: it hangs (the client would wait ~15 min for tcp_retries2)."""
        a, b = self.nodes()
        a.cmd(f"listen {VIP}:7004")
        c = self.client()
        c.cmd(f"open {VIP} 7004 2")
        a.cmd("accept n=2")
        for cid in (0, 1):
            for _ in range(2):
                c.cmd(f"echo {cid} 64 2")
        self.wait_synced(1, 128, 128)
        self.wait_synced(2, 128, 128)
        for cid in (1, 2):
            a.cmd(f"mode id={cid} hold")
        for cid in (0, 1):
            c.cmd(f"send {cid} 1")
        time.sleep(0.1)                  # A's kernel ACKs them; nobody reads them
        c.cmd("wait-err 0 6")
        c.cmd("wait-err 1 3")
        t0 = self.crash(a)
        r = self.takeover(b, "nowatch=2")
        w = kv(c.expect(r"^waiterr cid=0 ", 8))
        dt = float(w["t"]) - t0
        self.note("stale.reset_s_after_failure", f"{dt:.3f}")
        self.note("stale.reset_s_after_rebuild", f"{float(w['t']) - r['t_rebuilt']:.3f}")
        # The rebuild is the module's clock; the orchestration before it (ip
        # subprocesses) is the lab's and slows down on a loaded machine.
        self.check("client gets ECONNRESET within 1.5 s of the rebuild",
                   w["what"] == "reset" and float(w["t"]) - r["t_rebuilt"] < 1.5, str(w))
        v = kv(b.expect(r"^verdict id=1 ", 3))
        self.check("watch: stale, seq-hole", v["v"] == "stale" and v["reason"] == "seq-hole",
                   str(v))
        self.note("stale.verdict_ms", v["after_ms"])
        rs = kv(b.expect(r"^reset id=1 ", 3))
        self.check("repair_reset rc=0", rs["rc"] == "0", str(rs))
        w = kv(c.expect(r"^waiterr cid=1 ", 8))
        self.check("control (not watched): the client hears nothing, it hangs",
                   w["what"] == "timeout", str(w))
        for p in (b, c):
            self.no_errors(p)

    def inflight(self):
        """The client's line was lost with A (never ACKed): not reset, delivered."""
        a, b = self.nodes()
        a.cmd(f"listen {VIP}:7005")
        c = self.client()
        c.cmd(f"open {VIP} 7005 1")
        a.cmd("accept n=1")
        for _ in range(2):
            c.cmd("echo 0 64 2")
        self.wait_synced(1, 128, 128)
        t0 = time.monotonic()
        self.topo.ip("sw", "link", "set", "pa", "down")
        s = c.cmd("send 0 1")            # lost: A's link is gone
        time.sleep(0.05)
        a.kill()
        self.takeover(b)
        got = c.cmd("recv 0 64 4")
        self.note("inflight.echo_ms_after_send", f"{(float(got['t']) - float(s['t'])) * 1e3:.1f}")
        v = kv(b.expect(r"^verdict id=1 ", 3))
        self.check("watch: in-flight data is ok, not reset",
                   v["v"] == "ok" and v["reason"] == "in-order", str(v))
        self.note("inflight.verdict_ms", v["after_ms"])
        self.check("no reset sent", not any(x.startswith("reset ") for x in b.all))
        for _ in range(2):
            c.cmd("echo 0 64 2")
        self.check("connection goes on", True)
        log(f"     (failure to verdict {(time.monotonic() - t0):.2f} s incl. checks)")
        for p in (b, c):
            self.no_errors(p)

    def ipv6(self):
        """The idle crash takeover, over IPv6. The VIP's move is learnt by the
        client from B's neighbour solicitation (no unsolicited NA is sent here)."""
        self.topo.up6()
        a, b = self.nodes()
        a.cmd(f"listen [{VIP6}]:7007")
        c = self.client()
        deadline = time.monotonic() + 5
        while True:   # the new addresses need a moment before routes take them
            try:
                c.cmd(f"open {VIP6} 7007 1")
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        a.cmd("accept n=1")
        mss_a = int(a.cmd("info id=1")["snd_mss"])
        for _ in range(3):
            c.cmd("echo 0 64 2")
        c.cmd("stream 0 50 20 5 400")
        c.expect(r"^echoed cid=0 i=5 ", 5)
        self.wait_synced(1, 9 * 64, 9 * 64)
        t0 = self.crash(a)
        t1 = time.monotonic()
        self.topo.ip("b", "addr", "add", f"{VIP6}/64", "dev", "eth0", "nodad")
        r = b.cmd("takeover")
        self.note("ipv6.rebuilt_ms_after_failure", f"{(time.monotonic() - t0) * 1e3:.1f} "
                  f"(VIP {(time.monotonic() - t1) * 1e3:.1f} incl.)")
        self.check(f"takeover: {r['n']} rebuilt, {r['fails']} failed", r["fails"] == "0")
        done = kv(c.expect(r"^stream-done cid=0", 15))
        self.check("IPv6 client: 20/20 lines echoed byte-exact",
                   done["ok"] == "20" and done["bad"] == "0" and done["err"] == "", str(done))
        self.note("ipv6.max_echo_latency_ms", done["max_lat_ms"])
        info = b.cmd("info id=1")
        self.note("ipv6.snd_mss", f"A {mss_a}, B {info['snd_mss']}")
        self.check("IPv6: full MSS on the rebuilt socket", int(info["snd_mss"]) == mss_a
                   and mss_a > 1000, str(info))
        v = kv(b.expect(r"^verdict id=1 ", 3))
        self.check("IPv6 watch: ok", v["v"] == "ok", str(v))
        for p in (a, b, c):
            self.no_errors(p)

    def bench(self, n=1000):
        """Restore n idle connections at once."""
        a, b = self.nodes()
        a.cmd(f"listen {VIP}:7006")
        c = self.client()
        c.cmd(f"open {VIP} 7006 {n}", 30)
        r = a.cmd(f"accept n={n}", 20)
        self.note("bench.snapshot_us_per_socket", r["snapshot_us_per"])
        e = c.cmd("echo-all 16 10", 20)
        self.check(f"all {n} echo on A", e["good"] == str(n), str(e))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(
                self.synced.get(i) == (16, 16) for i in range(1, n + 1)):
            time.sleep(0.01)
        self.check("every count synced to B", all(self.synced.get(i) == (16, 16)
                                                  for i in range(1, n + 1)))
        t0 = self.crash(a)
        r = self.takeover(b, "verbose=0", timeout=30)
        self.note("bench.restore_total_ms", f"{float(r['restore_us']) / 1e3:.1f}")
        self.note("bench.restore_us_per_socket", r["per_us"])
        self.note("bench.rebuilt_ms_after_failure", f"{(r['t_rebuilt'] - t0) * 1e3:.1f}")
        e = c.cmd("echo-all 16 10", 20)
        self.check(f"all {n} echo on B after the takeover", e["good"] == str(n), str(e))
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            verdicts = [x for x in b.all if x.startswith("verdict ")]
            if len(verdicts) >= n:
                break
            time.sleep(0.05)
        ok = sum(1 for x in verdicts if " v=ok " in x)
        self.check(f"watch: {n} verdicts, all ok", len(verdicts) == n and ok == n,
                   f"{len(verdicts)} verdicts, {ok} ok: {verdicts[:3]}")
        st = b.cmd("stats")
        self.note("bench.watch", f"packets {st['packets']}, matched {st['matched']}, "
                  f"kernel drops {st['kernel_drops']}")
        self.check("watch: no packets dropped by the kernel", st["kernel_drops"] == "0", str(st))
        for p in (a, b, c):
            self.no_errors(p)

    def main(self, which):
        for name in which:
            self.topo = Topo(f"{self.prefix}{SCENARIOS.index(name)}")
            log(f"=== {name} ({self.topo.p})")
            t = time.monotonic()
            try:
                self.topo.up()
                getattr(self, name)()
            except AssertionError as e:
                self.failures.append(f"{name}: {e}")
                log(f"FAIL {name}: {e}")
            finally:
                if self.verbose or any(f.startswith(name) for f in self.failures):
                    for p in self.procs:
                        log(f"--- {p.name} stderr ---\n{p.log()}")
                        if self.verbose:
                            log(f"--- {p.name} stdout ---\n" + "\n".join(p.all[-40:]))
                self.teardown_scenario()
            log(f"=== {name} took {time.monotonic() - t:.1f} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver")
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--backend", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("scenario", nargs="*", help=" ".join(SCENARIOS) + " (default: all)")
    args = ap.parse_args()
    bad = [s for s in args.scenario if s not in SCENARIOS]
    if bad:
        ap.error(f"unknown scenario {bad}: pick from {SCENARIOS}")
    if args.client:
        return client_main()
    if args.backend:
        return backend_main(args.backend[0], int(args.backend[1]))
    if os.geteuid() != 0:
        print("test_repair: needs root (network namespaces, TCP_REPAIR), skipping")
        return SKIP
    if not args.driver:
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        build = os.environ.get("TANDEM_BUILD", os.path.join(repo, "build"))
        args.driver = os.path.join(build, "tests", "tools", "repair_drive")
    if not os.access(args.driver, os.X_OK):
        print(f"test_repair: no driver at {args.driver} (build it, or pass --driver)")
        return 2

    # meson sends SIGTERM on timeout: turn it into an exception so cleanup runs.
    def on_term(sig, frame):
        raise SystemExit(f"signal {sig}")
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    t = Test(args.driver, args.verbose)
    t0 = time.monotonic()
    try:
        t.main(args.scenario or SCENARIOS)
    finally:
        t.teardown_scenario()
    log("numbers:")
    for k, v in t.numbers.items():
        log(f"  {k:40s} {v}")
    log(f"{t.passed} checks passed, {len(t.failures)} failed, {time.monotonic() - t0:.1f} s")
    for f in t.failures:
        log(f"  failed: {f}")
    return 1 if t.failures else 0


if __name__ == "__main__":
    sys.exit(main())
