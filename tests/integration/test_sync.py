#!/usr/bin/env python3
"""Sessions survive a failover: the pair with session sync (issue: state sync).

    sudo TANDEM_BUILD=/path/to/build python3 tests/integration/test_sync.py [test...]

lb1 (priority 150) and lb2 (100), adverts every 200 ms on both heartbeat
paths, a sync block on the direct link (198.18.1.1/.2:7400) with
shutdown-handover on, and an echo frontend on the VIP (source vip) in front
of be1..be3. Before each fault the client opens, through the VIP, 200 idle
connections and one that streams without pause (tsessions: every byte
echoed is checked against what was sent, every socket operation has a
deadline, so a connection that hangs fails the test instead of stalling
it), and the test waits until the standby's shadow table holds them all
(`tandemctl sync`: shadow >= 201). After the fault the idle connections must
all still echo, byte for byte, through the new active node; the streaming
one may be reset where the design allows it (node loss, crash: its
unsynced bytes in flight cannot be made whole), but never hang.

Each test prints what it measured: the outage a prober saw (a new connection
every 10 ms), the sessions restored, reset and kept, and the takeover's own
numbers from `tandemctl sync`.

TANDEM_SYNC_SOFT=1 turns the wait for the standby's shadow table into a note
and goes on with the fault: for checking the harness while the sync is not
wired yet (the tests then fail on what the clients see after the fault).
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lablib  # noqa: E402
from lablib import VIP, TestFailure, check, check_eq, wait_until  # noqa: E402
from tandem import (ECHO_FE_PORT, Sessions, SyncNode, client_vip_neigh,  # noqa: E402
                    eth0_mac, sessions_summary, sync_value, vip_holders,
                    write_auth_key)

ECHO = f"{VIP}:{ECHO_FE_PORT}"
IDLE = 200
STREAMS = 1
OPEN = IDLE + STREAMS
SOFT = os.environ.get("TANDEM_SYNC_SOFT") == "1"
CHECK_DEADLINE_S = 10       # per check: a live connection echoes within this
STREAM_STALL_S = 8          # a stream without progress this long is hung
INFLIGHT_BYTES = 16384      # per idle connection, across a switchover
SANITIZER_ERRORS = re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|"
                              r"runtime error:")
OK_STREAM_AFTER_LOSS = ("ok", "reset")


# ------------------------------------------------------------------ set-up

def start_pair(lab, lb2_frontend_extra="", lb1_vrrp_extra=""):
    """Backends, then lb1 until it is MASTER alone, then lb2 until BACKUP;
    the client's neighbour entry for the VIP on lb1."""
    lab.start_backends()
    key = write_auth_key(lab)
    nodes = {
        "lb1": SyncNode(lab, "lb1", key, vrrp_extra=lb1_vrrp_extra),
        "lb2": SyncNode(lab, "lb2", key, frontend_extra=lb2_frontend_extra),
    }
    lab.sync_nodes = list(nodes.values())
    nodes["lb1"].start()
    wait_state(nodes["lb1"], "MASTER", 10)
    wait_until(lambda: vip_holders(lab) == ["lb1"], timeout=5, what="VIP on lb1 only")
    nodes["lb2"].start()
    wait_state(nodes["lb2"], "BACKUP", 10)
    check_eq(vip_holders(lab), ["lb1"], "VIP holders with both up")
    # Linux updates an existing neighbour entry from a gratuitous ARP only:
    # one echo makes the entry that the takeovers then move.
    r = lab.tool("echo-check", "--addr", ECHO, "--conns", 3, "--msgs", 2)
    check(r.get("ok") == 3, f"echo through the VIP before the test: {r}")
    wait_neigh(lab, "lb1")
    return nodes


def wait_state(node, state, timeout):
    wait_until(lambda: node.state() == state, timeout=timeout, interval=0.05,
               what=f"{node.node} {state}")


def wait_holder(lab, node, timeout=10):
    wait_until(lambda: vip_holders(lab) == [node], timeout=timeout, interval=0.05,
               what=f"VIP on {node} only")


def wait_neigh(lab, node, timeout=6):
    want = eth0_mac(lab, node)
    wait_until(lambda: client_vip_neigh(lab) == want, timeout=timeout, interval=0.05,
               what=f"client neighbour entry for the VIP -> {node}")


def open_sessions(lab, name="sessions"):
    """tsessions: 200 idle + 1 streaming connection through the VIP, all
    verified once."""
    s = Sessions(lab, ECHO, conns=IDLE, streams=STREAMS, name=name,
                 deadline=CHECK_DEADLINE_S, connect_deadline=10, size=256,
                 stream_rate="2m", stream_window="256k", stream_time=55,
                 stream_stall=STREAM_STALL_S, max_time=110)
    rep = s.opened(timeout=30)
    check(rep["ok"] == IDLE and rep["stream_ok"] == STREAMS,
          f"sessions open: {sessions_summary(rep)}")
    rep = s.check()
    check(rep["ok"] == IDLE, f"first check before any fault: {sessions_summary(rep)}")
    return s


def wait_shadow(lab, node, want=OPEN, timeout=15):
    """Until node's shadow table holds at least `want` entries (the state
    has arrived). With TANDEM_SYNC_SOFT=1 a timeout is only printed."""
    last = {"text": ""}

    def entries():
        rc, text = node.sync_raw()
        last["text"] = text
        if rc != 0:
            return None
        m = re.search(r"^shadow:\s*(\d+)", text, re.M)
        return int(m.group(1)) if m and int(m.group(1)) >= want else None
    try:
        return wait_until(entries, timeout=timeout, interval=0.1,
                          what=f"{node.node}'s shadow table >= {want} entries")
    except TestFailure as e:
        e = TestFailure(f"{e}; last tandemctl sync: {last['text'].strip()[-300:]!r}")
        if not SOFT:
            raise e
        print(f"  (soft) {e}", flush=True)
        return None


def probe(lab, seconds):
    """A new connection through the VIP every 10 ms (the outage)."""
    return lab.tool_spawn("probe", "--addr", ECHO, "--duration", seconds,
                          "--interval", 10, "--timeout", 300)


def outage_ms(p):
    r = p.wait(timeout=60)
    if not r.get("outages"):
        return 0.0
    return r["longest_outage_ms"] if r.get("recovered") else float("inf")


def stream_of(rep):
    return rep["streams"][0]


def settle_stream(sess, after_rep, timeout=STREAM_STALL_S + 5):
    """Stats until the stream has moved on since after_rep, a report taken
    once the new active node serves (256 KiB more verified, no stall now),
    or has failed; the tool itself calls a stream that stalls for
    STREAM_STALL_S hung. Returns the last report."""
    base = stream_of(after_rep)["verified"]
    deadline = time.monotonic() + timeout
    while True:
        rep = sess.stats()
        st = stream_of(rep)
        if st["state"] != "ok":
            return rep
        if (st["verified"] >= base + 262144 and st["stall_ms"] < 1000) or \
                (not st["sending"] and st["outstanding"] == 0):
            rep["moved_on"] = True
            return rep
        if time.monotonic() >= deadline:
            rep["moved_on"] = False
            return rep
        time.sleep(0.25)


def takeover_line(node):
    """(restored, failed, duration ms) of the last takeover, from tandemctl sync."""
    info = node.sync()
    lt = info.get("last-takeover")
    if lt is None or lt["raw"].strip() == "none":
        raise TestFailure(f"{node.node}: no last takeover in tandemctl sync "
                          f"({lt['raw'] if lt else 'no line'})")
    return (sync_value(info, "last-takeover", "restored"),
            sync_value(info, "last-takeover", "failed"),
            lt.get("duration"))


def report_sync(node):
    """The tandemctl sync answer for the test log (never fails)."""
    rc, text = node.sync_raw()
    return " | ".join(ln.strip() for ln in text.strip().splitlines()) if rc == 0 else \
        f"(tandemctl sync: rc {rc}: {text.strip()[-200:]})"


def check_idle_survived(rep, what):
    """Every idle session echoed everything, byte for byte."""
    bad = {k: rep[k] for k in ("reset", "eof", "hung", "mismatch", "refused",
                               "unreachable", "other") if rep[k]}
    check(rep["ok"] == IDLE and not bad,
          f"{what}: {rep['ok']}/{IDLE} idle sessions kept; {sessions_summary(rep)}")


def check_stream(rep, allowed, what):
    """The stream ended in one of the allowed states; alive, it must have
    moved on (settle_stream's verdict, when rep came from it)."""
    st = stream_of(rep)
    check(st["state"] in allowed,
          f"{what}: the streaming session is '{st['state']}' ({st['why']}), allowed "
          f"{'/'.join(allowed)}; {sessions_summary(rep)}")
    check(st["state"] != "ok" or rep.get("moved_on", True),
          f"{what}: the streaming session is open but makes no progress; "
          f"{sessions_summary(rep)}")
    return st


def clean_exit(fn):
    """After the test: every daemon still running stops on SIGTERM with exit
    0 and no sanitizer report in its log."""
    def run(lab):
        fn(lab)
        for n in getattr(lab, "sync_nodes", []):
            if n.proc is None or n.crashed_on_purpose:
                continue
            alive = n.proc.poll() is None
            rc = n.stop()
            log = n.log()
            m = SANITIZER_ERRORS.search(log)
            check(m is None, f"{n.node}: sanitizer report:\n"
                             f"{log[max(0, m.start() - 200) if m else 0:][:3000]}")
            if alive:
                check_eq(rc, 0, f"{n.node}: tandemd exit status after SIGTERM")
    run.__name__ = fn.__name__
    return run


# ------------------------------------------------------------------ tests

@clean_exit
def test_node_loss(lab):
    nodes = start_pair(lab)
    sess = open_sessions(lab)
    wait_shadow(lab, nodes["lb2"])
    p = probe(lab, 5)
    time.sleep(0.8)
    nodes["lb1"].crashed_on_purpose = True
    lab.node_loss("lb1")
    wait_state(nodes["lb2"], "MASTER", 5)
    wait_holder(lab, "lb2", 5)
    rep = sess.check()
    out = outage_ms(p)
    srep = settle_stream(sess, rep)
    info = report_sync(nodes["lb2"])
    print(f"  node loss: outage {out:.0f} ms; idle kept {rep['ok']}/{IDLE}, "
          f"reset {rep['reset']}, hung {rep['hung']}; stream {stream_of(srep)['state']} "
          f"(max stall {stream_of(srep)['max_stall_ms']:.0f} ms); lb2: {info}", flush=True)
    check_idle_survived(rep, "after losing lb1")
    check_stream(srep, OK_STREAM_AFTER_LOSS, "after losing lb1")
    restored, failed, dur = takeover_line(nodes["lb2"])
    print(f"  lb2 takeover: restored {restored}, failed {failed}, {dur} ms", flush=True)
    check(restored >= IDLE, f"lb2 restored {restored} sessions, want >= {IDLE}")
    # The balancer starts warm: lb2 never connected to the backends itself,
    # yet has lb1's connect-time averages (what lrt picks by).
    log = nodes["lb2"].log()
    check("servers start with the peer's response-time averages" in log,
          f"lb2 took the peer's server averages at takeover:\n{log[-1500:]}")
    # And they keep working: a second round on the new active node.
    check_idle_survived(sess.check(), "second check on lb2")
    sess.quit()


@clean_exit
def test_switchover_and_back(lab):
    nodes = start_pair(lab)
    sess = open_sessions(lab)
    for src, dst in (("lb1", "lb2"), ("lb2", "lb1")):
        wait_shadow(lab, nodes[dst])
        p = probe(lab, 3)
        time.sleep(0.5)
        # Data in flight on every connection while the sessions move: bursts
        # on every idle one for as long as tandemctl switchover runs (the
        # stream sends all along).
        inf = sess.inflight(INFLIGHT_BYTES)
        check_eq(inf["ok"], IDLE, "sessions alive when the switchover starts")
        ctl = subprocess.Popen(["ip", "netns", "exec", lab.ns(src),
                                str(lablib.build_path("daemon", "ctl", "tandemctl")),
                                "-s", nodes[src].sock, "switchover"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        bursts = 0
        while ctl.poll() is None and bursts < 100:
            sess.inflight(INFLIGHT_BYTES // 4)
            bursts += 1
            time.sleep(0.005)
        try:
            answer = ctl.communicate(timeout=15)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            ctl.kill()
            ctl.wait()
            raise TestFailure(f"tandemctl switchover on {src} did not return in 15 s")
        check(ctl.returncode == 0, f"tandemctl switchover on {src}: {answer}")
        wait_state(nodes[dst], "MASTER", 5)
        wait_holder(lab, dst, 5)
        rep = sess.check()
        out = outage_ms(p)
        srep = settle_stream(sess, rep)
        print(f"  switchover {src}->{dst}: outage {out:.0f} ms; {bursts + 1} bursts in "
              f"flight; idle kept {rep['ok']}/{IDLE} (still owed at the check: "
              f"{rep['inflight_conns']} conns, "
              f"{rep['inflight_bytes']} bytes), reset {rep['reset']}, hung {rep['hung']}; "
              f"stream {stream_of(srep)['state']} (max stall "
              f"{stream_of(srep)['max_stall_ms']:.0f} ms); {dst}: {report_sync(nodes[dst])}",
              flush=True)
        check_idle_survived(rep, f"after the switchover {src}->{dst}")
        check_stream(srep, ("ok",), f"after the switchover {src}->{dst}")
        wait_state(nodes[src], "BACKUP", 5)
    sess.quit()


@clean_exit
def test_daemon_crash(lab):
    nodes = start_pair(lab)
    sess = open_sessions(lab)
    wait_shadow(lab, nodes["lb2"])
    p = probe(lab, 4)
    time.sleep(0.5)
    lb1 = nodes["lb1"]
    lb1.crashed_on_purpose = True
    os.kill(lb1.proc.pid, signal.SIGSEGV)   # the link stays up
    rc = lb1.proc.wait(10)
    check(rc != 0, f"lb1 died of SIGSEGV (rc {rc})")
    wait_state(nodes["lb2"], "MASTER", 5)
    wait_holder(lab, "lb2", 5)
    rep = sess.check()
    out = outage_ms(p)
    srep = settle_stream(sess, rep)
    print(f"  crash: outage {out:.0f} ms; idle kept {rep['ok']}/{IDLE}, reset {rep['reset']}, "
          f"hung {rep['hung']}; stream {stream_of(srep)['state']}; "
          f"lb2: {report_sync(nodes['lb2'])}", flush=True)
    check_idle_survived(rep, "after lb1's daemon crashed")
    check_stream(srep, OK_STREAM_AFTER_LOSS, "after lb1's daemon crashed")
    sess.quit()


@clean_exit
def test_restarted_standby_resyncs_before_preempting(lab):
    nodes = start_pair(lab)
    lb1, lb2 = nodes["lb1"], nodes["lb2"]
    sess = open_sessions(lab)
    # The sessions go to lb2; lb1 (150, preempt on) is now the standby.
    wait_shadow(lab, lb2)
    r = lb1.ctl("switchover", check=False)
    check(r.returncode == 0, f"tandemctl switchover on lb1: {r.stdout}{r.stderr}")
    wait_state(lb2, "MASTER", 5)
    wait_holder(lab, "lb2", 5)
    check_idle_survived(sess.check(), "after the switchover to lb2")
    # Restart lb1 with its sync link down: it hears lb2's adverts on the
    # front path, outranks it, but has no session table: it must not preempt.
    rc = lb1.stop()
    check_eq(rc, 0, "lb1 (standby) exit status after SIGTERM")
    lab.link_cut("lb1")
    lb1.start()
    wait_state(lb1, "BACKUP", 5)
    gated_s = 3.0
    t_end = time.monotonic() + gated_s
    while time.monotonic() < t_end:
        check(lb1.state() == "BACKUP" and vip_holders(lab) == ["lb2"],
              f"lb1 preempted without its session table: lb1 {lb1.state()}, "
              f"VIP on {vip_holders(lab)}; lb1: {report_sync(lb1)}")
        time.sleep(0.1)
    info = lb1.sync()
    print(f"  lb1 restarted, sync link down {gated_s:.0f}s: stayed BACKUP; "
          f"lb1: {report_sync(lb1)}", flush=True)
    check_eq(info.get("sync-ready", {}).get("raw"), "no", "lb1 sync-ready without its peer")
    # Sync link back: bulk resync, then (only then) the preemption. The
    # table to learn: every session open now.
    now_open = sess.stats()
    expected = now_open["ok"] + now_open["stream_ok"]
    lab.link_restore()
    # Each sample reads the state, then tandemctl sync, then the state
    # again. sync-ready only ever turns yes within a run, and MASTER stays
    # MASTER here: MASTER before a "no" is a preemption without the table;
    # a "yes" followed by BACKUP is the window in which the table must be
    # whole (shadow = every open session).
    samples = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        before = lb1.state()
        rc, text = lb1.sync_raw()
        after = lb1.state()
        ready = re.search(r"^sync-ready:\s*(\S+)", text, re.M)
        shadow = re.search(r"^shadow:\s*(\d+)", text, re.M)
        samples.append((before, ready.group(1) if ready else None,
                        int(shadow.group(1)) if shadow else None, after))
        check(not (before == "MASTER" and samples[-1][1] != "yes"),
              f"lb1 MASTER while sync-ready is {samples[-1][1]}: {text.strip()[-400:]}")
        if after == "MASTER":
            break
    else:
        raise TestFailure(f"lb1 did not preempt within 20 s of the sync link coming back; "
                          f"last samples {samples[-3:]}; lb1: {report_sync(lb1)}")
    window = [s for s in samples if s[1] == "yes" and s[3] == "BACKUP"]
    if window:
        check_eq(window[0][2], expected,
                 "lb1's shadow entries when it first said sync-ready: yes")
        seen = f"shadow {window[0][2]} at sync-ready, {len(window)} sample(s) before preempting"
    else:
        seen = "the sync-ready window was shorter than one sample"
    wait_holder(lab, "lb1", 5)
    wait_neigh(lab, "lb1")
    rep = sess.check()
    srep = settle_stream(sess, rep)
    print(f"  preemption after resync: {seen}; {len(samples)} samples; idle kept "
          f"{rep['ok']}/{IDLE}, reset {rep['reset']}; stream {stream_of(srep)['state']}; "
          f"lb1: {report_sync(lb1)}", flush=True)
    check_idle_survived(rep, "after lb1 preempted")
    check_stream(srep, ("ok", "reset"), "after lb1 preempted")
    # Preemption follows sync-ready at once (the preempt timer has long run
    # out while gated), so the window above is often too short to sample:
    # the takeover's own count shows the table was whole.
    restored, failed, _ = takeover_line(lb1)
    check_eq(restored, expected, "sessions lb1 restored when it preempted (all open ones)")
    sess.quit()


@clean_exit
def test_config_mismatch_no_restore(lab):
    # lb2's echo frontend waits longer for a backend connect: a different
    # proxy config, which the pair must report and never restore across.
    nodes = start_pair(lab, lb2_frontend_extra="timeout-connect 3s")
    lb1, lb2 = nodes["lb1"], nodes["lb2"]
    sess = open_sessions(lab)

    def digest(node):
        rc, text = node.sync_raw()
        m = re.search(r"^config-digest:\s*(\S+)", text, re.M) if rc == 0 else None
        return m.group(1) if m else None
    try:
        wait_until(lambda: digest(lb1) == "MISMATCH" and digest(lb2) == "MISMATCH",
                   timeout=10, what="config-digest: MISMATCH on both nodes")
    finally:
        print(f"  lb1: {report_sync(lb1)}\n  lb2: {report_sync(lb2)}", flush=True)
    logged = [n.node for n in (lb1, lb2)
              if re.search(r"(?i)sync\b.*mismatch", n.log())]
    check(logged, "a sync config-mismatch line in either daemon's log")
    lb1.crashed_on_purpose = True
    lab.node_loss("lb1")
    wait_state(lb2, "MASTER", 5)
    wait_holder(lab, "lb2", 5)
    wait_until(lambda: "takeovers" in lb2.sync(), timeout=5, what="lb2 takeovers line")
    info = lb2.sync()
    rep = sess.check()
    print(f"  mismatch, node loss: lb2 takeovers: {info['takeovers']['raw']}; "
          f"last-takeover: {info.get('last-takeover', {}).get('raw')}; "
          f"clients: {sessions_summary(rep)}", flush=True)
    check_eq(sync_value(info, "takeovers", "restored"), 0, "sessions restored across a "
             "config mismatch")
    lt = info.get("last-takeover")
    if lt is not None and lt["raw"].strip() != "none":
        check_eq(sync_value(info, "last-takeover", "restored"), 0, "last takeover restored")
    check_eq(rep["ok"], 0, "idle sessions that still echo after an unrestored takeover")
    check_eq(rep["hung"], 0, "sessions left hanging (they must be refused with a reset)")
    sess.quit()


if __name__ == "__main__":
    lablib.main(globals())
