#!/usr/bin/env python3
"""Report of `scripts/bench takeover`: raw rounds -> JSON + a table on stdout.

    takeover_report.py --run-dir DIR --out FILE.json [--meta=KEY=VALUE ...]

DIR holds runs.tsv (one line per round, RUN_FIELDS below, written by
takeover.sh) and, per round tag: TAG.pre.jsonl (tsessions: the open report
and the first check, before the fault), TAG.check.json (the check after the
fault), TAG.connect.json (tclient probe --kind connect), TAG.vip.json
(vipwatch.py), TAG.wrk (wrk --latency) and, for tandem,
TAG.sync-lb2-after.txt (tandemctl sync on the new active node). Nothing here
measures: it only reads and aggregates.

Per round:
  kept       idle sessions that echoed a fresh payload, byte for byte, after
             the takeover (tsessions check), and as % of those open before
  reset      sessions that got a RST; hung: no echo within the deadline;
             other: closed (FIN), wrong bytes, refused, unreachable
  wrk_err    wrk's socket errors (connect, read, write, timeout) and non-2xx
             answers over the whole window (lead, fault, takeover, tail)
  outage     the longest run of failed connect probes that starts after the
             fault (ms; "open" when not recovered by the end of the window)
  takeover   tandem: last-takeover on lb2 (tandemctl sync): the duration
             (ms, VIP up -> every session handed to a worker) and restored
"""

import argparse
import json
import math
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from failover_report import load_json, probe_outage, vip_times  # noqa: E402
import wrkparse  # noqa: E402

RUN_FIELDS = ["tag", "impl", "fault", "conns", "round", "interval_ms", "t_probe", "t_fault",
              "t_struck", "window_ms", "lead_ms", "lb2_state_after", "synced_entries",
              "lb2_master_ms", "wrk_rc"]
FAULT_ORDER = ["node-loss", "switchover"]
IMPL_ORDER = ["tandem", "keepalived"]
IMPL_LABEL = {"tandem": "tandem", "keepalived": "ka+haproxy"}
OTHER = ("eof", "mismatch", "refused", "unreachable", "other")


def read_jsonl(path):
    out = []
    try:
        for line in path.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    except (OSError, ValueError):
        pass
    return out


def parse_sync(text):
    """{key: {"raw": str, word: number...}} from tandemctl sync's key: value lines."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z][a-z-]*):\s*(.*)$", line.strip())
        if not m:
            continue
        words = m.group(2).split()
        d = {"raw": m.group(2)}
        for i in range(1, len(words)):
            try:
                d.setdefault(words[i - 1], float(words[i]))
            except ValueError:
                pass
        out[m.group(1)] = d
    return out


def takeover_of(path):
    """(restored, failed, duration ms) of the last takeover, or Nones."""
    try:
        info = parse_sync(path.read_text(errors="replace"))
    except OSError:
        return None, None, None
    lt = info.get("last-takeover")
    if not lt or lt["raw"].strip() == "none":
        return None, None, None
    return lt.get("restored"), lt.get("failed"), lt.get("duration")


def one_run(d, f):
    r = dict(zip(RUN_FIELDS, f))
    for k in ("conns", "round", "interval_ms", "window_ms", "lead_ms", "synced_entries",
              "wrk_rc"):
        r[k] = int(r[k])
    for k in ("t_probe", "t_fault", "t_struck", "lb2_master_ms"):
        r[k] = float(r[k])
    tag = r["tag"]
    pre = read_jsonl(d / f"{tag}.pre.jsonl")
    r["opened"] = pre[0].get("ok") if pre else None
    r["pre_ok"] = pre[1].get("ok") if len(pre) > 1 else None
    chk = load_json(d / f"{tag}.check.json")
    r["check_cmd"] = chk.get("cmd")
    if chk.get("cmd") == "check":
        r["kept"] = chk["ok"]
        r["reset"] = chk["reset"]
        r["hung"] = chk["hung"]
        r["other"] = sum(chk.get(k, 0) for k in OTHER)
        r["check_ms"] = chk.get("ms")
        r["first_failure_at"] = chk.get("first_failure_at")
        r["failures"] = chk.get("failures", [])[:3]
    else:
        r["kept"] = r["reset"] = r["hung"] = r["other"] = None
    base = r["opened"] or r["conns"]
    r["kept_pct"] = None if r["kept"] is None else 100.0 * r["kept"] / base
    try:
        w = wrkparse.parse((d / f"{tag}.wrk").read_text(errors="replace"))
        r["wrk_errors"] = w["errors"]
        r["wrk_socket_errors"] = w["socket_errors"]
        r["wrk_non_2xx"] = w["non_2xx_3xx"]
        r["wrk_requests"] = w["requests"]
        r["wrk_rps"] = w["rps"]
    except (OSError, wrkparse.WrkParseError) as e:
        r["wrk_errors"] = None
        r["wrk_error"] = str(e)
    rep = load_json(d / f"{tag}.connect.json")
    ms, is_open, pre_out, post = probe_outage(rep, r["t_probe"], r["t_fault"], r["window_ms"])
    r["outage_ms"], r["outage_open"] = ms, is_open
    r["prefault_outages"] = pre_out
    vip = load_json(d / f"{tag}.vip.json")
    r["lb2_vip_ms"], r["lb1_vip_gone_ms"] = vip_times(vip, r["t_fault"])
    r["restored"], r["restore_failed"], r["takeover_ms"] = (
        takeover_of(d / f"{tag}.sync-lb2-after.txt") if r["impl"] == "tandem"
        else (None, None, None))
    return r


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def summarize(runs):
    groups = {}
    for r in runs:
        groups.setdefault((r["fault"], r["conns"], r["impl"]), []).append(r)
    summary = []
    for (fault, conns, impl), rs in groups.items():
        summary.append({
            "fault": fault, "conns": conns, "impl": impl, "rounds": len(rs),
            "kept_pct": med([r["kept_pct"] for r in rs]),
            "kept_min_pct": min((r["kept_pct"] for r in rs if r["kept_pct"] is not None),
                                default=None),
            "kept": med([r["kept"] for r in rs]),
            "reset": med([r["reset"] for r in rs]),
            "hung": med([r["hung"] for r in rs]),
            "other": med([r["other"] for r in rs]),
            "hung_rounds": sum(1 for r in rs if r["hung"]),
            "wrk_errors": med([r["wrk_errors"] for r in rs]),
            "outage_ms": med([r["outage_ms"] for r in rs]),
            "outage_open_rounds": sum(1 for r in rs if r["outage_open"]),
            "takeover_ms": med([r["takeover_ms"] for r in rs]),
            "restored": med([r["restored"] for r in rs]),
            "lb2_vip_ms": med([r["lb2_vip_ms"] for r in rs]),
            "unsynced_rounds": sum(1 for r in rs if impl == "tandem"
                                   and r["synced_entries"] < r["conns"]),
            "pre_not_ok_rounds": sum(1 for r in rs if r["pre_ok"] != r["conns"]),
            "no_check_rounds": sum(1 for r in rs if r["check_cmd"] != "check"),
            "lb2_not_master_rounds": sum(1 for r in rs if r["lb2_state_after"] != "MASTER"),
            "wrk_missing_rounds": sum(1 for r in rs if r["wrk_errors"] is None),
        })

    def key(s):
        return (FAULT_ORDER.index(s["fault"]) if s["fault"] in FAULT_ORDER else 99,
                s["conns"], IMPL_ORDER.index(s["impl"]) if s["impl"] in IMPL_ORDER else 99)
    summary.sort(key=key)
    return summary


def ratio(td, ka):
    """tandem / keepalived (None when either is missing)."""
    if td is None or ka is None:
        return None
    if ka == 0:
        return 1.0 if td == 0 else math.inf
    return td / ka


def fmt(v, digits=0):
    if v is None:
        return "-"
    return f"{v:.{digits}f}"


def fmt_ratio(x):
    if x is None:
        return "-"
    return "inf" if math.isinf(x) else f"{x:.2f}"


def print_report(summary, ratios, meta, nruns):
    print(f"\ntakeover: sessions across a failover — tandem (session sync) vs keepalived + "
          f"HAProxy — {nruns} measurements, {meta.get('rounds', '?')} round(s) each, advert "
          f"interval {meta.get('interval_ms', '?')} ms")
    print("kept% = idle sessions (tsessions, through the VIP to an echo service) that echoed "
          "a fresh payload byte for byte after the takeover;")
    print("reset / hung / other = how the rest ended (hung: no answer within "
          f"{meta.get('check_deadline_s', '?')} s); wrk-err = wrk socket errors + non-2xx over "
          "the window (wrk through the VIP during the fault);")
    print(f"outage = longest run of failed connect probes (one every "
          f"{meta.get('probe_interval_ms', '?')} ms) after the fault, ms; takeover = tandem's "
          "last-takeover duration on lb2 (ms), restored = sessions it rebuilt;")
    print("medians over rounds; ×: tandem / keepalived+HAProxy of the medians")
    print()
    hdr = (f"{'fault':<11}{'conns':>6}  {'impl':<11}{'kept%':>7}{'reset':>7}{'hung':>6}"
           f"{'other':>6}{'wrk-err':>8}{'outage':>8}{'takeover':>9}{'restored':>9}"
           f"{'kept×':>7}{'outage×':>8}{'wrk-err×':>9}")
    print(hdr)
    print("-" * len(hdr))
    for s in summary:
        r = ratios.get((s["fault"], s["conns"])) if s["impl"] == "tandem" else None
        rt = (f"{fmt_ratio(r['kept']):>7}{fmt_ratio(r['outage']):>8}"
              f"{fmt_ratio(r['wrk_errors']):>9}") if r else ""
        out = fmt(s["outage_ms"])
        if s["outage_open_rounds"]:
            out = "≥" + out
        print(f"{s['fault']:<11}{s['conns']:>6}  {IMPL_LABEL.get(s['impl'], s['impl']):<11}"
              f"{fmt(s['kept_pct'], 1):>7}{fmt(s['reset']):>7}{fmt(s['hung']):>6}"
              f"{fmt(s['other']):>6}{fmt(s['wrk_errors']):>8}{out:>8}"
              f"{fmt(s['takeover_ms'], 1):>9}{fmt(s['restored']):>9}{rt}")
    notes = []
    for s in summary:
        name = f"{s['fault']} {s['conns']} {IMPL_LABEL.get(s['impl'], s['impl'])}"
        n = s["rounds"]
        if s["hung_rounds"]:
            notes.append(f"{name}: sessions left hanging in {s['hung_rounds']}/{n} rounds")
        if s["unsynced_rounds"]:
            notes.append(f"{name}: lb2's shadow table had fewer entries than sessions before "
                         f"the fault in {s['unsynced_rounds']}/{n} rounds (or tandemctl sync "
                         "did not answer)")
        if s["pre_not_ok_rounds"]:
            notes.append(f"{name}: not every session echoed before the fault in "
                         f"{s['pre_not_ok_rounds']}/{n} rounds (kept% is of those opened)")
        if s["no_check_rounds"]:
            notes.append(f"{name}: no check report after the fault in "
                         f"{s['no_check_rounds']}/{n} rounds")
        if s["lb2_not_master_rounds"]:
            notes.append(f"{name}: lb2 was not MASTER at the end in "
                         f"{s['lb2_not_master_rounds']}/{n} rounds")
        if s["outage_open_rounds"]:
            notes.append(f"{name}: the prober had not recovered at the end of the window in "
                         f"{s['outage_open_rounds']}/{n} rounds: '≥' marks a lower bound")
        if s["wrk_missing_rounds"]:
            notes.append(f"{name}: no wrk summary in {s['wrk_missing_rounds']}/{n} rounds")
    if meta.get("conns_cut"):
        notes.insert(0, f"session counts cut to what the fd limit allows: {meta['conns_cut']}")
    if notes:
        print("\nnotes:")
        for t in notes:
            print(f"  - {t}")
    print("\ntarget: tandem keeps 100% of idle sessions in every row, none hung; "
          "keepalived + HAProxy has no session state to keep them with")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--meta", action="append", default=[])
    a = ap.parse_args()
    d = Path(a.run_dir)
    meta = dict(m.split("=", 1) for m in a.meta)
    runs = []
    for line in (d / "runs.tsv").read_text().splitlines():
        f = line.split("\t")
        if len(f) != len(RUN_FIELDS):
            sys.exit(f"takeover_report: bad line in runs.tsv: {line!r}")
        runs.append(one_run(d, f))
    if not runs:
        sys.exit("takeover_report: no rounds in runs.tsv")
    summary = summarize(runs)
    by = {(s["fault"], s["conns"], s["impl"]): s for s in summary}
    ratios = {}
    for (fault, conns, impl), s in by.items():
        ka = by.get((fault, conns, "keepalived"))
        if impl != "tandem" or ka is None:
            continue
        ratios[(fault, conns)] = {k: ratio(s[k], ka[k]) for k in
                                  ("kept", "outage_ms", "wrk_errors")}
        ratios[(fault, conns)]["outage"] = ratios[(fault, conns)].pop("outage_ms")

    def jr(x):
        return None if x is None else ("inf" if math.isinf(x) else round(x, 3))
    doc = {
        "meta": meta,
        "summary": summary,
        "ratios": [{"fault": f, "conns": c, **{k: jr(v) for k, v in r.items()}}
                   for (f, c), r in ratios.items()],
        "runs": runs,
    }
    Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")
    print_report(summary, ratios, meta, len(runs))
    print(f"\nraw results: {a.out}\nlogs: {d}")


if __name__ == "__main__":
    main()
