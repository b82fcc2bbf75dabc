#!/usr/bin/env python3
"""The pair: two tandemd (lb1 priority 150, lb2 100) electing the VIP holder.

    sudo TANDEM_BUILD=/path/to/build python3 tests/integration/test_agent.py [test...]

Each test asserts what an operator of the gateway would see: which node
holds the VIP, where the client's neighbour entry points, how long clients
could not connect during a failover, and that forged heartbeats change
nothing. Bounds are generous (2 shared cores, sanitizer builds): they catch
a failover that is seconds late, not milliseconds; precise numbers belong
in the benchmarks.
"""

import hashlib
import hmac
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lablib  # noqa: E402
from lablib import (ADDR, DIRECT, VIP, TestFailure, check, check_eq,  # noqa: E402
                    check_le, wait_until)
from tandem import (ECHO_FE_PORT, Tandemd, render_backend,  # noqa: E402
                    render_frontend, validate)

ECHO = f"{VIP}:{ECHO_FE_PORT}"
PRIO = {"lb1": 150, "lb2": 100}
PEER = {"lb1": "lb2", "lb2": "lb1"}
INTERVAL_MS = 200
ADVERT_PORT = 5798
VRID = 51


def master_down_ms(prio, interval_ms=INTERVAL_MS):
    """RFC 5798: 3 x interval + skew, skew = (256 - prio) x interval / 256."""
    return 3 * interval_ms + (256 - prio) * interval_ms / 256


def skew_ms(prio, interval_ms=INTERVAL_MS):
    return (256 - prio) * interval_ms / 256


# ------------------------------------------------------------------ set-up

def write_key(lab, name="auth.key", data=None):
    path = lab.state_dir / name
    data = data if data is not None else os.urandom(24).hex()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(data + "\n")
    os.chmod(path, 0o600)
    return path, data


def vrrp_block(lab, node, key, preempt=True, extra="", interval_ms=INTERVAL_MS,
               name="front", vrid=VRID, vip=VIP, multicast=None):
    peer = PEER[node]
    lines = [
        f"vrrp-group {name} {{",
        f"    id {vrid}",
        "    interface eth0",
        f"    vip {vip}/32",
        f"    priority {PRIO[node]}",
        f"    advert-interval {interval_ms}ms",
        f"    preempt {'on' if preempt else 'off'}",
    ]
    if multicast:
        lines.append(f"    multicast {multicast}")
    else:
        lines += [f"    peer {ADDR[peer]}", f"    peer {DIRECT[peer]}"]
    lines += [
        f"    auth-key {key}",
        "    garp-count 3",
        "    garp-interval 20ms",
    ]
    lines += ["    " + ln.strip() for ln in extra.strip().splitlines() if ln.strip()]
    lines.append("}")
    return "\n".join(lines)


class Node(Tandemd):
    """tandemd with a vrrp-group and its boot epoch file in the lab dir."""

    def __init__(self, lab, node, key, preempt=True, extra="", workers=1, groups=None):
        groups = groups if groups is not None else \
            [vrrp_block(lab, node, key, preempt, extra)]
        body = "\n\n".join(groups + [
            render_backend("echo"),
            render_frontend("echo", ECHO_FE_PORT, "echo"),
        ])
        super().__init__(lab, node, body, workers=workers)
        if not hasattr(lab, "agent_nodes"):
            lab.agent_nodes = []
        lab.agent_nodes.append(self)
        text = self.conf.read_text().replace(
            "    control ", f"    boot-epoch-file {lab.state_dir}/{node}.epoch\n"
            "    control ", 1)
        self.conf.write_text(text)

    def status(self):
        """{group: {column: value}} from tandemctl status."""
        out = self.ctl("status").stdout
        lines = out.splitlines()
        groups = {}
        for i, line in enumerate(lines):
            if line.startswith("GROUP "):
                heads = line.split()
                for row in lines[i + 1:]:
                    if not row.strip():
                        break
                    groups[row.split()[0]] = dict(zip(heads, row.split()))
                break
        return groups

    def state(self, group="front"):
        try:
            return self.status().get(group, {}).get("STATE")
        except (TestFailure, lablib.LabError):
            return None

    def drops(self):
        """Advert counters from the status line: {'accepted': n, 'bad_mac': n...}."""
        out = self.ctl("status").stdout
        m = re.search(r"^adverts\s+(.*)$", out, re.M)
        check(m is not None, f"no adverts line in status:\n{out}")
        words = m.group(1).split()
        return {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}


def has_vip(lab, node):
    r = lab.exec(node, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
    return f" {VIP}/" in r.stdout


def holders(lab):
    return [n for n in ("lb1", "lb2") if has_vip(lab, n)]


def mac_of(lab, node):
    r = lab.exec(node, "cat", "/sys/class/net/eth0/address")
    return r.stdout.strip()


def client_neigh(lab):
    """The client's neighbour entry for the VIP: lladdr or None."""
    r = lab.exec("client", "ip", "-4", "neigh", "show", VIP, check=False)
    m = re.search(r"lladdr ([0-9a-f:]+)", r.stdout)
    return m.group(1) if m else None


def start_pair(lab, preempt=True, extra=None, groups=None):
    """Backends, a key, both daemons; waits for lb1 MASTER, lb2 BACKUP.
    groups: node -> key -> list of vrrp-group blocks (default: one, "front").
    With preempt on, lb2 starts first and lb1 preempts it; with preempt off
    lb1 must be MASTER before lb2 starts (on a busy box lb2 could otherwise
    win alone, and keep the VIP, rightly)."""
    extra = extra or {}
    lab.start_backends()
    key, _ = write_key(lab)
    nodes = {n: Node(lab, n, key, preempt, extra.get(n, ""),
                     groups=groups(n, key) if groups else None) for n in ("lb1", "lb2")}
    if preempt:
        nodes["lb2"].start()
        nodes["lb1"].start()
    else:
        nodes["lb1"].start()
        wait_master(nodes, "lb1")
        nodes["lb2"].start()
    wait_until(lambda: nodes["lb1"].state() == "MASTER" and
               nodes["lb2"].state() == "BACKUP", timeout=10,
               what="lb1 MASTER and lb2 BACKUP")
    wait_until(lambda: holders(lab) == ["lb1"], timeout=5, what="VIP on lb1 only")
    # Linux only updates an existing neighbour entry from a gratuitous ARP:
    # talk to the VIP once so the client has one for the takeovers to move.
    check(echo_ok(lab), "echo through the VIP")
    wait_neigh(lab, "lb1", timeout=5)
    return nodes, key


def wait_master(nodes, node, timeout=10):
    wait_until(lambda: nodes[node].state() == "MASTER", timeout=timeout,
               interval=0.05, what=f"{node} MASTER")


def wait_holder(lab, node, timeout=10):
    wait_until(lambda: holders(lab) == [node], timeout=timeout, interval=0.05,
               what=f"VIP on {node} only (now on {holders(lab)})")


def wait_neigh(lab, node, timeout=10):
    want = mac_of(lab, node)
    wait_until(lambda: client_neigh(lab) == want, timeout=timeout, interval=0.05,
               what=f"client neighbour entry for the VIP -> {node} ({want}), "
                    f"is {client_neigh(lab)}")


def probe(lab, duration):
    return lab.tool_spawn("probe", "--addr", ECHO, "--duration", duration,
                          "--interval", 10, "--timeout", 300)


def echo_ok(lab, conns=5):
    r = lab.tool("echo-check", "--addr", ECHO, "--conns", conns, "--msgs", 2)
    return r.get("ok") == conns and r.get("fail", 0) == 0


def log_time(log, text):
    """Wall-clock time of the last log line containing text."""
    import datetime
    for line in reversed(log.splitlines()):
        if text in line:
            stamp = line.split()[0].rstrip("Z")
            return datetime.datetime.fromisoformat(stamp).replace(
                tzinfo=datetime.timezone.utc).timestamp()
    raise TestFailure(f"no log line with {text!r}")


def outage_ms(report):
    check(report["recovered"], f"probe did not recover: {report}")
    return report["longest_outage_ms"]


SANITIZER_ERRORS = re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|"
                              r"runtime error:")


def clean_exit(fn):
    """After the test: stop every daemon gracefully; no sanitizer report, exit 0
    (a daemon that died on purpose is skipped)."""
    def run(lab):
        fn(lab)
        for n in getattr(lab, "agent_nodes", []):
            if n.proc is None or getattr(n, "crashed_on_purpose", False):
                continue
            alive = n.proc.poll() is None
            rc = n.stop()
            log = n.log()
            m = SANITIZER_ERRORS.search(log)
            check(m is None, f"{n.node}: sanitizer report:\n{log[m.start() - 200 if m else 0:][:3000]}")
            if alive:
                check_eq(rc, 0, f"{n.node}: tandemd exit status after SIGTERM")
    run.__name__ = fn.__name__
    return run


# ------------------------------------------------------------------ tests

@clean_exit
def test_startup_one_master(lab):
    nodes, _ = start_pair(lab)
    st1, st2 = nodes["lb1"].status()["front"], nodes["lb2"].status()["front"]
    check_eq(st1["PRIO/BASE"], "150/150", "lb1 priority")
    check_eq(st2["PRIO/BASE"], "100/100", "lb2 priority")
    check(st2["MASTER"].startswith(ADDR["lb1"]), f"lb2 follows lb1: {st2}")
    # The client learns the VIP from lb1's announcement (or ARP): lb1's MAC.
    check(echo_ok(lab), "echo through the VIP")
    wait_neigh(lab, "lb1", timeout=5)
    # Adverts flow on both paths and are accepted. A copy overtaken by the
    # other path's newer one counts as a replay (harmless, see wire.h); any
    # other drop between the two nodes is a bug.
    time.sleep(0.5)
    d = nodes["lb2"].drops()
    check(d["accepted"] >= 5, f"lb2 accepted adverts: {d}")
    check_eq(sum(v for k, v in d.items() if k not in ("accepted", "replay")), 0,
             f"lb2 drops {d}")
    check(holders(lab) == ["lb1"], "VIP still on lb1 only")
    # tandemctl status: advert age within a few intervals, transitions counted.
    st1 = nodes["lb1"].status()["front"]
    check(float(st1["ADVERT-AGE"].rstrip("s")) < 5 * INTERVAL_MS / 1000, f"lb1 status {st1}")
    check(int(st1["TRANSITIONS"]) >= 2 and st1["VIPS"] == "up", f"lb1 status {st1}")
    # Metrics: state set, announcements, the takeover's timings.
    m = nodes["lb1"].metrics()
    g = frozenset({("group", "front"), ("vrid", str(VRID))})
    check_eq(m[("tandem_vrrp_state", g | {("state", "MASTER")})], 1.0, "MASTER gauge")
    check_eq(m[("tandem_vrrp_state", g | {("state", "BACKUP")})], 0.0, "BACKUP gauge")
    check(m[("tandem_vrrp_garps_sent_total", g)] >= 3, "GARPs counted")
    check(0 < m[("tandem_vrrp_vip_add_latency_seconds", g)] < 1, "VIP add latency")
    check(0 <= m[("tandem_vrrp_takeover_seconds", g)] < 1, "takeover time")
    check(m[("tandem_vrrp_adverts_sent_total", g)] >= 5, "adverts sent")
    m2 = nodes["lb2"].metrics()
    check(m2[("tandem_vrrp_adverts_received_total", g)] >= 5, "adverts received")
    check_eq(m2[("tandem_vrrp_state", g | {("state", "BACKUP")})], 1.0, "lb2 BACKUP gauge")
    # Same frontends and backends on both: no drift reported.
    check_eq(m2[("tandem_vrrp_peer_config_mismatch", g)], 0.0, "config drift gauge")
    check("PEER-CONFIG-DIFFERS" not in st2["FLAGS"], f"lb2 flags {st2}")


@clean_exit
def test_config_drift_is_reported(lab):
    lab.start_backends()
    key, _ = write_key(lab)
    nodes = {n: Node(lab, n, key) for n in ("lb1", "lb2")}
    # lb2 balances the same servers differently: sessions restored there
    # would not match, so it must say so, and keep running. Only a MASTER
    # advertises, so the BACKUP is the one that sees the drift (the sync
    # handshake compares the digests both ways).
    conf = nodes["lb2"].conf
    conf.write_text(conf.read_text().replace("algorithm roundrobin", "algorithm leastconn"))
    nodes["lb1"].start()
    nodes["lb2"].start()
    wait_master(nodes, "lb1")
    g = frozenset({("group", "front"), ("vrid", str(VRID))})
    lb2 = nodes["lb2"]
    wait_until(lambda: lb2.metrics()[("tandem_vrrp_peer_config_mismatch", g)] == 1.0,
               timeout=5, what="lb2 reports the config drift")
    check("PEER-CONFIG-DIFFERS" in lb2.status()["front"]["FLAGS"], "lb2 status flags")
    check_eq(lb2.log().count("DIFFERENT proxy configuration"), 1,
             "the drift is logged once, not once per advert")
    check_eq(holders(lab), ["lb1"], "the pair still elects one master")


@clean_exit
def test_node_loss_of_master(lab):
    nodes, _ = start_pair(lab)
    check(echo_ok(lab), "echo before")
    p = probe(lab, 4)
    time.sleep(0.8)
    lab.node_loss("lb1")
    wait_master(nodes, "lb2", timeout=5)
    r = p.wait(timeout=30)
    out = outage_ms(r)
    bound = master_down_ms(PRIO["lb2"]) + 500
    print(f"  node loss: outage {out:.0f} ms (bound {bound:.0f} ms)", flush=True)
    check_le(out, bound, "outage after losing the master (ms)")
    check(has_vip(lab, "lb2"), "lb2 holds the VIP")
    wait_neigh(lab, "lb2", timeout=5)
    check(echo_ok(lab), "echo after the takeover")


def keeper_pid(td):
    """The keeper process tandemd forked (its only child)."""
    pid = td.proc.pid
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    check(len(kids) >= 1, f"tandemd {pid} has a keeper child: {kids}")
    return int(kids[0])


@clean_exit
def test_daemon_kill_keeper_speaks(lab):
    """kill -9 of tandemd: its keeper drops the VIP and sends priority 0."""
    nodes, _ = start_pair(lab)
    kpid = keeper_pid(nodes["lb1"])
    p = probe(lab, 3)
    time.sleep(0.8)
    nodes["lb1"].proc.send_signal(signal.SIGKILL)
    nodes["lb1"].proc.wait(5)
    wait_master(nodes, "lb2", timeout=5)
    r = p.wait(timeout=30)
    out = outage_ms(r) if r["outages"] else 0.0
    bound = skew_ms(PRIO["lb2"]) + 300
    print(f"  SIGKILL (keeper alive): outage {out:.0f} ms (bound {bound:.0f} ms)",
          flush=True)
    check_le(out, bound, "outage after tandemd was killed, its keeper speaking (ms)")
    # Never two nodes with the VIP: the keeper removed lb1's at once.
    wait_until(lambda: holders(lab) == ["lb2"], timeout=2,
               what="the VIP on lb2 only after the kill")
    wait_until(lambda: not Path(f"/proc/{kpid}").exists(), timeout=5,
               what="the keeper to exit after speaking")
    wait_neigh(lab, "lb2", timeout=5)
    check(echo_ok(lab), "echo through lb2")


@clean_exit
def test_daemon_kill_then_restart(lab):
    """kill -9 of tandemd and its keeper: the restart removes the stale VIP."""
    nodes, _ = start_pair(lab)
    kpid = keeper_pid(nodes["lb1"])
    p = probe(lab, 4)
    time.sleep(0.8)
    os.kill(kpid, signal.SIGKILL)
    nodes["lb1"].proc.send_signal(signal.SIGKILL)
    nodes["lb1"].proc.wait(5)
    wait_master(nodes, "lb2", timeout=5)
    r = p.wait(timeout=30)
    out = outage_ms(r)
    bound = master_down_ms(PRIO["lb2"]) + 500
    print(f"  SIGKILL of both: outage {out:.0f} ms (bound {bound:.0f} ms)", flush=True)
    check_le(out, bound, "outage after the master's daemon was killed (ms)")
    # Nobody removed lb1's VIP: both hold it until lb1 restarts.
    check(has_vip(lab, "lb2"), "lb2 took the VIP")
    wait_neigh(lab, "lb2", timeout=5)
    check(echo_ok(lab), "echo through lb2")
    epoch_file = lab.state_dir / "lb1.epoch"
    before = int(epoch_file.read_text())
    nodes["lb1"].start()
    after = int(epoch_file.read_text())
    check(after > before, f"boot epoch grows with a restart: {before} -> {after}")
    log = nodes["lb1"].log()
    check("stale VIP" in log, f"restart removed the stale VIP:\n{log[-1500:]}")
    # lb1 (150, preempt on) takes the VIP back; never both for long.
    wait_master(nodes, "lb1", timeout=10)
    wait_holder(lab, "lb1", timeout=5)
    wait_until(lambda: nodes["lb2"].state() == "BACKUP", timeout=5, what="lb2 BACKUP")
    wait_neigh(lab, "lb1", timeout=5)
    check(echo_ok(lab), "echo after lb1 is back")

@clean_exit
def test_graceful_stop_priority_zero(lab):
    nodes, _ = start_pair(lab)
    p = probe(lab, 3)
    time.sleep(0.8)
    nodes["lb1"].stop()
    wait_master(nodes, "lb2", timeout=5)
    r = p.wait(timeout=30)
    out = outage_ms(r) if r["outages"] else 0.0
    bound = skew_ms(PRIO["lb2"]) + 300
    print(f"  SIGTERM: outage {out:.0f} ms (bound {bound:.0f} ms)", flush=True)
    check_le(out, bound, "outage after a graceful stop (ms)")
    check_eq(holders(lab), ["lb2"], "VIP holders after SIGTERM")
    log = nodes["lb1"].log()
    check("VIPs released" in log, f"lb1 released its VIPs:\n{log[-1000:]}")


@clean_exit
def test_preempt_back(lab):
    nodes, _ = start_pair(lab)
    nodes["lb1"].stop()
    wait_master(nodes, "lb2")
    wait_holder(lab, "lb2")
    nodes["lb1"].start()
    wait_master(nodes, "lb1", timeout=10)
    wait_holder(lab, "lb1")
    wait_until(lambda: nodes["lb2"].state() == "BACKUP", timeout=5, what="lb2 BACKUP")
    wait_neigh(lab, "lb1")
    check(echo_ok(lab), "echo after preemption")


@clean_exit
def test_no_preempt(lab):
    nodes, _ = start_pair(lab, preempt=False)
    nodes["lb1"].stop()
    wait_master(nodes, "lb2")
    nodes["lb1"].start()
    wait_until(lambda: nodes["lb1"].state() == "BACKUP", timeout=5, what="lb1 BACKUP")
    time.sleep(10 * INTERVAL_MS / 1000)   # a preemption would have happened
    check_eq(nodes["lb1"].state(), "BACKUP", "lb1 with preempt off")
    check_eq(nodes["lb2"].state(), "MASTER", "lb2 keeps the VIP")
    check_eq(holders(lab), ["lb2"], "VIP holders")


# No firewall in the lab: a host route through a next hop that never answers
# ARP swallows the adverts on the front path silently, as a broken switch
# would (a blackhole route would fail the send instead, which the agent
# counts and acts on), and leaves the client's traffic alone.
BLACKHOLE_HOP = "198.18.0.250"


def _cut_front_adverts(lab):
    lab.exec("lb1", "ip", "route", "add", f"{ADDR['lb2']}/32", "via", BLACKHOLE_HOP)
    lab.exec("lb2", "ip", "route", "add", f"{ADDR['lb1']}/32", "via", BLACKHOLE_HOP)


def _heal_front_adverts(lab):
    lab.exec("lb1", "ip", "route", "del", f"{ADDR['lb2']}/32")
    lab.exec("lb2", "ip", "route", "del", f"{ADDR['lb1']}/32")


@clean_exit
def test_split_brain_heals(lab):
    nodes, _ = start_pair(lab)
    lab.link_cut("lb2")
    _cut_front_adverts(lab)
    wait_master(nodes, "lb2", timeout=5)
    check_eq(nodes["lb1"].state(), "MASTER", "lb1 during the split")
    check_eq(holders(lab), ["lb1", "lb2"], "both hold the VIP during the split")
    # Heal: exactly one MASTER within 2 advert intervals, the loser's VIP
    # gone, the client on lb1. Timed from the daemon's own log line (wall
    # clock, ms), so the polling of tandemctl does not count.
    t0 = time.time()
    lab.link_restore()
    _heal_front_adverts(lab)
    wait_until(lambda: nodes["lb2"].state() == "BACKUP", timeout=5, interval=0.02,
               what="lb2 BACKUP after the heal")
    healed = (log_time(nodes["lb2"].log(), "MASTER→BACKUP") - t0) * 1000
    print(f"  split brain healed {healed:.0f} ms after the link came back", flush=True)
    # + 300 ms: the veth carrier and the 2-core CI box.
    check_le(healed, 2 * INTERVAL_MS + 300, "heal time (ms)")
    check_eq(nodes["lb1"].state(), "MASTER", "lb1 after the heal")
    wait_holder(lab, "lb1", timeout=3)
    # The kernel ignores a gratuitous ARP within locktime (1 s) of the
    # entry's last change: the second burst (2 s) is what may move it.
    wait_neigh(lab, "lb1", timeout=6)
    check(echo_ok(lab), "echo after the heal")


# -- forged adverts

def _pb_varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _pb_field(num, wtype, value):
    key = _pb_varint((num << 3) | wtype)
    if wtype == 0:
        return key + _pb_varint(value)
    if wtype == 5:
        return key + struct.pack("<I", value)
    return key + _pb_varint(len(value)) + value


def _key_id(key):
    return struct.unpack(">I", hashlib.sha256(b"tandem key id" + key).digest()[:4])[0]


def _envelope(payload, key_for_id, key_for_mac, type_=1, version=1):
    kid = _key_id(key_for_id)
    mac = hmac.new(key_for_mac, b"TNDM" + struct.pack(">III", version, type_, kid)
                   + payload, hashlib.sha256).digest()
    return (_pb_field(1, 0, version) + _pb_field(2, 0, type_) + _pb_field(3, 5, kid)
            + _pb_field(4, 2, payload) + _pb_field(5, 2, mac))


def _advert(node_ip, prio=254, epoch=None, seq=1):
    epoch = epoch if epoch is not None else int(time.time()) + 100000
    prefix = _pb_field(1, 2, socket.inet_aton(VIP)) + _pb_field(2, 0, 32)
    return (_pb_field(1, 0, VRID) + _pb_field(2, 0, prio) + _pb_field(3, 0, INTERVAL_MS)
            + _pb_field(4, 0, 2) + _pb_field(5, 2, socket.inet_aton(node_ip))
            + _pb_field(6, 2, prefix) + _pb_field(7, 0, epoch) + _pb_field(8, 0, seq)
            + _pb_field(9, 2, b"\0" * 32) + _pb_field(10, 0, 0)
            + _pb_field(11, 2, b"forger"))


SEND_PY = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for hexpkt in sys.stdin.read().split():
    s.sendto(bytes.fromhex(hexpkt), (sys.argv[1], int(sys.argv[2])))
"""

CAPTURE_PY = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.settimeout(0.5)
deadline = time.monotonic() + 5
src = socket.inet_aton(sys.argv[1])
while time.monotonic() < deadline:
    try:
        pkt = s.recv(4096)
    except socket.timeout:
        continue
    ihl = (pkt[0] & 15) * 4
    if pkt[9] != 17 or pkt[12:16] != src:
        continue
    dport = struct.unpack(">H", pkt[ihl + 2:ihl + 4])[0]
    if dport == int(sys.argv[2]):
        print(pkt[ihl + 8:].hex())
        sys.exit(0)
sys.exit(1)
"""


def _send(lab, node, dst, pkts):
    lab.exec(node, "python3", "-c", SEND_PY, dst, ADVERT_PORT,
             input=" ".join(p.hex() for p in pkts))


@clean_exit
def test_forged_adverts(lab):
    nodes, key = start_pair(lab)
    real_key = Path(key).read_text().strip().encode()
    wrong_key = b"not-the-key-" + os.urandom(8).hex().encode()
    # A captured real advert from lb1 (raw socket inside lb2's namespace).
    cap = lab.exec("lb2", "python3", "-c", CAPTURE_PY, ADDR["lb1"], ADVERT_PORT)
    captured = bytes.fromhex(cap.stdout.strip())
    before = nodes["lb2"].drops()
    forged = [
        # priority 254 MASTER claims, MAC'd with a key we do not share
        _envelope(_advert(ADDR["client"]), real_key, wrong_key),
        _envelope(_advert(ADDR["lb1"], seq=10**12), real_key, wrong_key),
        # a key id nobody configured
        _envelope(_advert(ADDR["client"]), wrong_key, wrong_key),
        # garbage
        b"\xff" + os.urandom(59), b"\x00" * 7, b"hello, world",
        # a replay of lb1's own advert, sent from the client
        captured, captured,
    ]
    _send(lab, "client", ADDR["lb2"], forged)
    _send(lab, "client", ADDR["lb1"], forged[:3])
    time.sleep(0.5)
    after = nodes["lb2"].drops()
    diff = {k: after[k] - before.get(k, 0) for k in after}
    print(f"  lb2 drop counters moved: {diff}", flush=True)
    check_eq(diff["bad_mac"], 2, f"bad MACs counted ({diff})")
    check_eq(diff["unknown_key"], 1, f"unknown key counted ({diff})")
    # >= : a copy overtaken on the other heartbeat path counts as a replay too.
    check(diff["replay"] >= 2, f"replays counted ({diff})")
    check(diff["garbage"] + diff["truncated"] >= 3, f"garbage counted ({diff})")
    check_eq(nodes["lb1"].state(), "MASTER", "lb1 still MASTER")
    check_eq(nodes["lb2"].state(), "BACKUP", "lb2 still BACKUP")
    check_eq(holders(lab), ["lb1"], "VIP holders")
    d1 = nodes["lb1"].drops()
    check(d1["bad_mac"] >= 2 and d1["unknown_key"] >= 1, f"lb1 counted too: {d1}")
    # The same counters on the metrics endpoint.
    m = nodes["lb2"].metrics()
    got = {dict(lb)["reason"]: v for (n, lb), v in m.items()
           if n == "tandem_vrrp_adverts_dropped_total"}
    check_eq(got.get("replay"), float(after["replay"]), f"metrics replay ({got})")


def _uplink(lab):
    """uplink0 in lb1, its carrier held by its peer uplink1 (no dummy module here)."""
    lab.exec("lb1", "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1")
    lab.exec("lb1", "ip", "link", "set", "uplink0", "up")
    lab.exec("lb1", "ip", "link", "set", "uplink1", "up")


@clean_exit
def test_track_interface_fault(lab):
    # A veth pair inside lb1 stands for an uplink: carrier lost -> FAULT.
    _uplink(lab)
    nodes, _ = start_pair(lab, extra={"lb1": "track-interface uplink0"})
    lab.exec("lb1", "ip", "link", "set", "uplink1", "down")
    wait_until(lambda: nodes["lb1"].state() == "FAULT", timeout=5, what="lb1 FAULT")
    wait_master(nodes, "lb2", timeout=5)
    wait_holder(lab, "lb2")
    wait_neigh(lab, "lb2")
    check(echo_ok(lab), "echo through lb2")
    lab.exec("lb1", "ip", "link", "set", "uplink1", "up")
    # preempt on: lb1 takes the VIP back.
    wait_master(nodes, "lb1", timeout=5)
    wait_holder(lab, "lb1")
    wait_neigh(lab, "lb1")


@clean_exit
def test_track_interface_weight(lab):
    _uplink(lab)
    nodes, _ = start_pair(lab, extra={"lb1": "track-interface uplink0 weight 60"})
    lab.exec("lb1", "ip", "link", "set", "uplink1", "down")
    # 150 - 60 = 90 < 100: lb2 preempts.
    wait_master(nodes, "lb2", timeout=5)
    wait_until(lambda: nodes["lb1"].state() == "BACKUP", timeout=5, what="lb1 BACKUP")
    check_eq(nodes["lb1"].status()["front"]["PRIO/BASE"], "90/150", "lb1 priority")
    wait_holder(lab, "lb2")
    lab.exec("lb1", "ip", "link", "set", "uplink1", "up")
    wait_master(nodes, "lb1", timeout=5)
    wait_holder(lab, "lb1")


@clean_exit
def test_track_backend(lab):
    nodes, _ = start_pair(lab, extra={"lb1": "track-backend echo weight 60"})
    # Every server of "echo" in maintenance: lb1 drops to 90, lb2 preempts.
    for be in ("be1", "be2", "be3"):
        nodes["lb1"].ctl("maint", f"echo/{be}")
    wait_master(nodes, "lb2", timeout=5)
    check_eq(nodes["lb1"].status()["front"]["PRIO/BASE"], "90/150", "lb1 priority")
    nodes["lb1"].ctl("ready", "echo/be2")
    wait_master(nodes, "lb1", timeout=5)
    wait_holder(lab, "lb1")


@clean_exit
def test_track_script(lab):
    flag = lab.state_dir / "script-fail"
    script = lab.state_dir / "check.sh"
    hang = lab.state_dir / "script-hang"
    script.write_text(f"#!/bin/sh\n[ -e {hang} ] && exec sleep 5\n[ ! -e {flag} ]\n")
    script.chmod(0o755)
    nodes, _ = start_pair(lab, extra={
        "lb1": f"track-script {script} interval 500ms timeout 400ms rise 2 fall 2"})
    flag.write_text("")
    wait_until(lambda: nodes["lb1"].state() == "FAULT", timeout=5, what="lb1 FAULT")
    wait_master(nodes, "lb2", timeout=5)
    flag.unlink()
    wait_master(nodes, "lb1", timeout=5)
    wait_holder(lab, "lb1")
    # A script that hangs is killed at its timeout and counts as failing.
    hang.write_text("")
    wait_until(lambda: nodes["lb1"].state() == "FAULT", timeout=8,
               what="lb1 FAULT with a hanging script")
    m = nodes["lb1"].metrics()
    check(m[("tandem_vrrp_script_killed_total", frozenset())] >= 2,
          "hung runs killed and counted")
    hang.unlink()
    wait_master(nodes, "lb1", timeout=5)


@clean_exit
def test_vip_deleted_by_hand(lab):
    nodes, _ = start_pair(lab)
    lab.vip_del("lb1")
    wait_until(lambda: has_vip(lab, "lb1"), timeout=5, interval=0.02,
               what="VIP re-added on lb1")
    check_eq(nodes["lb1"].state(), "MASTER", "lb1 still MASTER")
    wait_until(lambda: "re-added" in nodes["lb1"].log(), timeout=3,
               what="the re-add logged")
    check(echo_ok(lab), "echo after the re-add")


@clean_exit
def test_fatal_signal_drops_vip(lab):
    nodes, _ = start_pair(lab)
    nodes["lb1"].crashed_on_purpose = True
    nodes["lb1"].proc.send_signal(signal.SIGSEGV)
    rc = nodes["lb1"].proc.wait(10)
    check(rc != 0, f"lb1 died of the signal (rc {rc})")
    # The handler deleted the VIP before dying: not on both nodes meanwhile.
    check(not has_vip(lab, "lb1"), "the crashed node's VIP is gone")
    wait_master(nodes, "lb2", timeout=5)
    wait_holder(lab, "lb2")
    wait_neigh(lab, "lb2")
    check(echo_ok(lab), "echo through lb2")


@clean_exit
def test_multicast(lab):
    nodes, _ = start_pair(lab, groups=lambda n, key: [
        vrrp_block(lab, n, key, multicast="224.0.0.18")])
    check(nodes["lb2"].drops()["accepted"] > 0, "lb2 hears lb1 by multicast")
    nodes["lb1"].stop()
    wait_master(nodes, "lb2")
    wait_holder(lab, "lb2")
    nodes["lb1"].start()
    wait_master(nodes, "lb1")
    wait_holder(lab, "lb1")


VIP2 = "198.18.0.101"


@clean_exit
def test_sync_group_moves_together(lab):
    # Two groups on one UDP port, one sync group; only "back" tracks uplink0
    # on lb1. Its fault must move both VIPs.
    _uplink(lab)

    def groups(n, key):
        return [vrrp_block(lab, n, key),
                vrrp_block(lab, n, key, name="back", vrid=52, vip=VIP2,
                           extra="track-interface uplink0" if n == "lb1" else ""),
                "sync-group both {\n    group front\n    group back\n}"]
    nodes, _ = start_pair(lab, groups=groups)
    wait_until(lambda: nodes["lb1"].status().get("back", {}).get("STATE") == "MASTER",
               timeout=5, what="lb1 back MASTER")
    check_eq(nodes["lb2"].state("back"), "BACKUP", "lb2 back")
    lab.exec("lb1", "ip", "link", "set", "uplink1", "down")
    wait_until(lambda: nodes["lb2"].state("front") == "MASTER" and
               nodes["lb2"].state("back") == "MASTER", timeout=5,
               what="lb2 MASTER of both groups")
    check_eq(nodes["lb1"].state("front"), "FAULT", "lb1 front in FAULT with its sync group")
    check_eq(nodes["lb1"].state("back"), "FAULT", "lb1 back")
    wait_holder(lab, "lb2")
    r = lab.exec("lb1", "ip", "-4", "-o", "addr", "show", "dev", "eth0")
    check(VIP2 not in r.stdout, "lb1 released the second VIP")
    r = lab.exec("lb2", "ip", "-4", "-o", "addr", "show", "dev", "eth0")
    check(VIP2 in r.stdout, "lb2 holds the second VIP")
    lab.exec("lb1", "ip", "link", "set", "uplink1", "up")
    wait_until(lambda: nodes["lb1"].state("front") == "MASTER" and
               nodes["lb1"].state("back") == "MASTER", timeout=5,
               what="lb1 MASTER of both again")
    wait_holder(lab, "lb1")


@clean_exit
def test_switchover(lab):
    nodes, _ = start_pair(lab)
    p = probe(lab, 3)
    time.sleep(0.5)
    r = nodes["lb1"].ctl("switchover")
    check("front" in r.stdout, f"switchover answer: {r.stdout}")
    wait_master(nodes, "lb2", timeout=5)
    wait_until(lambda: nodes["lb1"].state() == "BACKUP", timeout=5, what="lb1 BACKUP")
    wait_holder(lab, "lb2")
    wait_neigh(lab, "lb2")
    rep = p.wait(timeout=30)
    out = outage_ms(rep) if rep["outages"] else 0.0
    print(f"  switchover: outage {out:.0f} ms", flush=True)
    check_le(out, skew_ms(PRIO["lb2"]) + 500, "switchover outage (ms)")
    # An operator's switchover sticks: lb1 does not preempt it back.
    time.sleep(1.0)
    check_eq(nodes["lb2"].state(), "MASTER", "lb2 keeps the VIP after switchover")
    check(nodes["lb2"].ctl("switchover", "nope", check=False).returncode != 0,
          "switchover of an unknown group fails")
    check(nodes["lb1"].ctl("switchover", check=False).returncode != 0,
          "switchover on the BACKUP fails")


@clean_exit
def test_notify_hook(lab):
    log = lab.state_dir / "notify.log"
    hook = lab.state_dir / "notify.sh"
    hook.write_text(f"#!/bin/sh\necho \"$1 $2 $3\" >> {log}\n")
    hook.chmod(0o755)
    slow = lab.state_dir / "slow.sh"
    slow.write_text(f"#!/bin/sh\necho \"slow $1 $2 $3\" >> {log}\nexec sleep 30\n")
    slow.chmod(0o755)
    nodes, _ = start_pair(lab, extra={"lb1": f"notify {hook}",
                                      "lb2": f"notify {slow}\nnotify-timeout 300ms"})
    wait_until(lambda: log.exists() and "front BACKUP MASTER" in log.read_text(),
               timeout=5, what="lb1's notify for BACKUP->MASTER")
    lines = [ln for ln in log.read_text().splitlines() if not ln.startswith("slow")]
    check_eq(lines, ["front INIT BACKUP", "front BACKUP MASTER"], "lb1 hook runs in order")
    # lb2's hook hangs: killed at its timeout, the next one still runs.
    nodes["lb1"].stop()
    wait_master(nodes, "lb2")
    wait_until(lambda: "slow front BACKUP MASTER" in log.read_text(), timeout=5,
               what="lb2's second hook ran after the first was killed")
    wait_until(lambda: "killing it" in nodes["lb2"].log(), timeout=3,
               what="the hung hook killed")


def test_config_check_keys(lab):
    key, _ = write_key(lab)
    bad = lab.state_dir / "bad.key"
    bad.write_text("secret\n")
    bad.chmod(0o644)
    text = ("node {\n    name lb1\n}\n\n" + vrrp_block(lab, "lb1", key) + "\n\n"
            + vrrp_block(lab, "lb1", bad).replace("front", "back").replace(
                f"id {VRID}", "id 52").replace(f"vip {VIP}/32", "vip 198.18.0.101/32")
            + "\n\n" + render_backend("echo") + "\n\n"
            + render_frontend("echo", ECHO_FE_PORT, "echo") + "\n")
    rc, out = validate(lab, text)
    check(rc != 0, f"tandemd -c accepts a 0644 key file: {out}")
    m = re.search(r"check\.conf:(\d+): auth-key " + re.escape(str(bad)), out)
    check(m is not None, f"error names the file and line: {out!r}")
    line = text.splitlines()[int(m.group(1)) - 1]
    check(line.startswith("vrrp-group back"), f"line {m.group(1)} is the group's: {line!r}")
    bad.chmod(0o600)
    rc, out = validate(lab, text)
    check_eq(rc, 0, f"tandemd -c with good keys: {out}")


if __name__ == "__main__":
    lablib.main(globals())
