# shellcheck shell=bash
# scripts/bench.d/failover.sh — `scripts/bench failover`, sourced by scripts/bench.
# bench-summary: failover outage: tandem pair vs keepalived (VRRPv3) + HAProxy, per fault
#
# One lab, the same faults on both implementations, side by side: the tandem
# pair (tandemd on lb1 and lb2, priorities 150/100, unicast adverts on both
# heartbeat paths, as in tests/integration/test_agent.py) against keepalived
# (Debian's, VRRPv3, unicast on eth0, the same priorities and advert interval)
# with HAProxy (mode tcp, roundrobin to be1..be3:8080) bound to the VIP on both
# nodes. Every measurement starts from a fresh pair: lb1 started alone until it
# is MASTER, then lb2 until it is BACKUP, the client's neighbour entry on lb1.
# Then a prober in the client opens a new connection through the VIP every
# 10 ms (one prober asks for an HTTP answer, one only connects), vipwatch.py
# samples who holds the VIP every 10 ms, and the fault hits lb1 one second in.
# Rounds alternate the implementations, so drift of the shared machine hits
# both alike; the report takes medians over rounds.
#
# Processes in the lab are started detached from this shell (a fault that
# kills them is none of its jobs) and tracked by pid and start time, so a
# reused pid is never signalled.

BF_IMPLS_ALL=(tandem keepalived)
BF_FAULTS_ALL=(node-loss kill graceful)
BF_BACKENDS=(be1 be2 be3)
declare -A BF_BE_IP=([be1]=198.18.0.21 [be2]=198.18.0.22 [be3]=198.18.0.23)
declare -A BF_ADDR=([lb1]=198.18.0.2 [lb2]=198.18.0.3)
declare -A BF_DIRECT=([lb1]=198.18.1.1 [lb2]=198.18.1.2)
declare -A BF_PEER=([lb1]=lb2 [lb2]=lb1)
declare -A BF_MAC=()     # eth0's MAC address per lb, read once the lab is up
declare -A BF_PRIO=([lb1]=150 [lb2]=100)
BF_VIP=198.18.0.100
BF_VIP_LEN=24
BF_PORT=80
BF_BE_PORT=8080
BF_VRID=51
BF_PROBE_MS=10          # one new connection every 10 ms, per prober
BF_PROBE_TIMEOUT_MS=500 # a probe not answered by then has failed
BF_LEAD_MS=1000         # probing before the fault: at least this long
BF_TAIL_MS=1000         # probing after 4 advert intervals past the fault
BF_ADVERT_PORT=5798     # tandem's advert port (keepalived's are IP protocol 112)

bench_failover_usage() {
	cat <<EOF
usage: scripts/bench failover [OPTIONS]

The same lab and the same fault on lb1 (the MASTER), side by side: the tandem
pair vs keepalived (VRRPv3, unicast, same priorities 150/100 and advert
interval) + HAProxy (tcp, roundrobin to be1..be3:8080) on both nodes. A prober
opens a new connection through the VIP every ${BF_PROBE_MS} ms (HTTP, and a
second one that only connects); the VIP holders are sampled every 10 ms.
Prints per advert interval, fault and implementation: the outage (median,
min, max over rounds), the time both nodes held the VIP at once, when lb2
had the VIP, and the ratio tandem/keepalived of the median outages. Raw
results go to a JSON file, daemon logs of every round to a directory.

Faults (each on lb1, the MASTER):
  node-loss   a power cut of lb1: its switch port and its direct link to lb2
              down at once, then scripts/lab node-loss lb1 (every process
              in it killed)
  kill        kill -9 of the VRRP daemon (tandemd's process — its keeper
              child survives, that is its job; keepalived's parent and VRRP
              child, both stopped first — HAProxy keeps running)
  graceful    SIGTERM to the VRRP daemon (tandemd; keepalived)

  --rounds N        rounds per interval and fault (default 5)
  --intervals LIST  advert intervals, e.g. "1s 100ms" (default), multiples
                    of 10 ms (VRRPv3 counts centiseconds)
  --faults LIST     subset of "${BF_FAULTS_ALL[*]}"
  --impls LIST      subset of "${BF_IMPLS_ALL[*]}"
  --source node|vip where the proxies connect to the backends from:
                    node = each node's own address (default; HAProxy's
                    default), vip = the VIP (tandem "source vip", HAProxy
                    "source $BF_VIP")
  --quick           1 round, 100ms only (smoke run); explicit options win
  --out FILE        JSON results (default \$TANDEM_BUILD/bench/failover-DATE.json);
                    the logs of every round go to FILE without .json + .logs/

Binaries: tandemd, tandemctl from \$TANDEM_BUILD/daemon, tclient and tbackend
from \$TANDEM_BUILD/tests/tools, $(command -v keepalived || echo /usr/sbin/keepalived), $(command -v haproxy || echo /usr/sbin/haproxy).
EOF
}

bf_posint() {
	[[ $2 =~ ^[1-9][0-9]{0,3}$ ]] || bench_die "$1: '$2' is not a positive integer (< 10000)"
}

# "1s", "100ms", "0.5s" -> milliseconds, a multiple of 10 in [10, 40950].
bf_interval_ms() {
	local s=${1,,} ms
	if [[ $s =~ ^([0-9]+)ms$ ]]; then
		ms=$((10#${BASH_REMATCH[1]}))
	elif [[ $s =~ ^([0-9]+)(\.([0-9]{1,3}))?s$ ]]; then
		local frac=${BASH_REMATCH[3]:-0}
		frac=${frac}00
		ms=$((10#${BASH_REMATCH[1]} * 1000 + 10#${frac:0:3}))
	else
		bench_die "bad interval '$1' (e.g. 1s, 100ms)"
	fi
	((ms >= 10 && ms <= 40950 && ms % 10 == 0)) ||
		bench_die "interval '$1': VRRPv3 wants a multiple of 10 ms in [10ms, 40.95s]"
	echo "$ms"
}

bf_interval_label() {
	if (($1 % 1000 == 0)); then echo "$(($1 / 1000))s"; else echo "${1}ms"; fi
}

# Milliseconds as seconds for sleep / timeouts ("1500" -> "1.500").
bf_secs() {
	printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000))
}

# The fault strikes this many ms after an advert of lb1's reached lb2, so
# that both implementations meet the same phases of the advert cycle: round
# r of R at (r - 1/2) / R of the interval, spread evenly over it.
bf_phase_ms() {
	local ms=$1 r=$2
	echo $(((2 * r - 1) * ms / (2 * BF_ROUNDS)))
}

# RFC 5798 Master_Down_Interval of lb2 (the backup), in ms.
bf_master_down_ms() {
	echo $((3 * $1 + (256 - BF_PRIO[lb2]) * $1 / 256))
}

# ---------------------------------------------------------------- processes

# /proc/PID/stat field 22 (start time): with the pid it names one process.
bf_starttime() {
	local s f
	{ read -r s <"/proc/$1/stat"; } 2>/dev/null || return 0
	s=${s##*) }
	read -ra f <<<"$s"
	echo "${f[19]}"
}

bf_proc_alive() {
	local pid=$1 start=$2
	[[ -n $pid && -n $start ]] || return 1
	bench_pid_alive "$pid" && [[ $(bf_starttime "$pid") == "$start" ]]
}

# Start CMD in NODE's namespace, detached from this shell: its death by a
# fault is no job of this shell's (no "Killed" notices). ip netns exec execs
# in place, so the pid is the command's. Registers it under KEY in BF_PROCS
# ("PID STARTTIME").
declare -A BF_PROCS=()
BF_FAULT_PIDS=()
BF_STRUCK=
bf_spawn() {
	local key=$1 node=$2 log=$3 pidf=$BF_RUN/spawn.pid pid
	shift 3
	rm -f "$pidf"
	(ip netns exec "$(bench_ns "$node")" "$@" </dev/null >>"$log" 2>&1 & echo $! >"$pidf")
	pid=$(<"$pidf")
	BF_PROCS[$key]="$pid $(bf_starttime "$pid")"
}

bf_pid() {
	local v=${BF_PROCS[$1]:-}
	echo "${v%% *}"
}

bf_alive() {
	local v=${BF_PROCS[$1]:-}
	[[ -n $v ]] && bf_proc_alive "${v% *}" "${v#* }"
}

# The live children of a registered process (keepalived's VRRP child).
bf_children() {
	local pid c
	bf_alive "$1" || return 0
	pid=$(bf_pid "$1")
	for c in $(ps -o pid= --ppid "$pid" 2>/dev/null || true); do echo "$c"; done
}

# Signal SIG to the registered processes KEY... and to their children, wait
# (bounded, 5 s), then KILL; never a pid whose start time changed.
bf_stop() {
	local sig=$1 k pid start c i left=() all=()
	shift
	for k in "$@"; do
		bf_alive "$k" || { unset "BF_PROCS[$k]"; continue; }
		pid=$(bf_pid "$k")
		start=${BF_PROCS[$k]#* }
		all+=("$pid:$start")
		for c in $(bf_children "$k"); do all+=("$c:$(bf_starttime "$c")"); done
		unset "BF_PROCS[$k]"
	done
	[[ ${#all[@]} -gt 0 ]] || return 0
	bf_signal "$sig" "${all[@]}"
	for ((i = 0; i < 100; i++)); do
		left=()
		for k in "${all[@]}"; do bf_proc_alive "${k%%:*}" "${k#*:}" && left+=("$k"); done
		[[ ${#left[@]} -eq 0 ]] && return 0
		sleep 0.05
	done
	bench_log "pids ${left[*]%%:*} ignored SIG$sig: KILL"
	bf_signal KILL "${left[@]}"
}

# Signal PID:STARTTIME... in one kill call (all of them at once).
bf_signal() {
	local sig=$1 p pids=()
	shift
	for p in "$@"; do
		bf_proc_alive "${p%%:*}" "${p#*:}" && pids+=("${p%%:*}")
	done
	[[ ${#pids[@]} -gt 0 ]] || return 0
	kill "-$sig" "${pids[@]}" 2>/dev/null || true
}

bf_stop_all() {
	local k keys=()
	for k in "${!BF_PROCS[@]}"; do keys+=("$k"); done
	[[ ${#keys[@]} -gt 0 ]] || return 0
	bf_stop TERM "${keys[@]}"
}

# Poll "CMD..." every 50 ms until it succeeds; 1 after SECS seconds.
bf_wait_for() {
	local secs=$1 i n
	shift
	n=$(awk -v s="$secs" 'BEGIN { printf "%d", s * 20 }')
	for ((i = 0; i < n; i++)); do
		"$@" && return 0
		sleep 0.05
	done
	return 1
}

# ---------------------------------------------------------------- state

bf_has_vip() {
	ip -n "$(bench_ns "$1")" -4 -o addr show dev eth0 2>/dev/null | grep -q " $BF_VIP/"
}

bf_vip_only_on() {
	bf_has_vip "$1" && ! bf_has_vip "${BF_PEER[$1]}"
}

bf_td_state() {
	ip netns exec "$(bench_ns "$1")" "$BF_TANDEMCTL" -s "$LAB_DIR/fo-$1.sock" status 2>/dev/null |
		awk '$1 == "GROUP" { for (i = 1; i <= NF; i++) if ($i == "STATE") c = i; next }
			c && $1 == "front" { print $c; exit }' || true
}

# keepalived's notify hook appends "TIME INSTANCE front STATE PRIO" per transition.
bf_ka_state() {
	[[ -f $LAB_DIR/fo-ka-states.$1 ]] || return 0
	awk 'END { print $4 }' "$LAB_DIR/fo-ka-states.$1"
}

bf_state() {
	case $BF_IMPL in
	tandem) bf_td_state "$1" ;;
	keepalived) bf_ka_state "$1" ;;
	esac
}

bf_is_state() {
	[[ $(bf_state "$1") == "$2" ]]
}

bf_is_master_alone() {
	bf_is_state "$1" MASTER && bf_vip_only_on "$1"
}

bf_client_neigh() {
	ip -n "$(bench_ns client)" -4 neigh show "$BF_VIP" 2>/dev/null |
		sed -n 's/.*lladdr \([0-9a-f:]*\).*/\1/p'
}

bf_neigh_on() {
	[[ $(bf_client_neigh) == "${BF_MAC[$1]}" ]]
}

bf_http_ok() {
	ip netns exec "$(bench_ns client)" "$BF_TCLIENT" http-spread --addr "$BF_VIP:$BF_PORT" \
		--requests 5 --close --deadline 1 2>/dev/null | grep -q '"status":{"200":5}'
}

# ---------------------------------------------------------------- configs

bf_write_key() {
	local k=$LAB_DIR/fo-auth.key
	(umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$k" && echo >>"$k")
	chmod 600 "$k"
}

bf_render_tandem() {
	local n=$1 ms=$2 be
	{
		echo "# generated by scripts/bench failover"
		echo "node {"
		echo "    name $n"
		echo "    workers 1"
		echo "    control $LAB_DIR/fo-$n.sock"
		echo "    boot-epoch-file $LAB_DIR/fo-$n.epoch"
		echo "    log-level info"
		echo "}"
		echo "vrrp-group front {"
		echo "    id $BF_VRID"
		echo "    interface eth0"
		echo "    vip $BF_VIP/$BF_VIP_LEN"
		echo "    priority ${BF_PRIO[$n]}"
		echo "    advert-interval ${ms}ms"
		echo "    preempt on"
		echo "    peer ${BF_ADDR[${BF_PEER[$n]}]}"
		echo "    peer ${BF_DIRECT[${BF_PEER[$n]}]}"
		echo "    auth-key $LAB_DIR/fo-auth.key"
		echo "}"
		echo "backend web {"
		echo "    algorithm roundrobin"
		for be in "${BF_BACKENDS[@]}"; do
			echo "    server $be ${BF_BE_IP[$be]}:$BF_BE_PORT"
		done
		echo "}"
		echo "frontend web {"
		echo "    bind $BF_VIP:$BF_PORT"
		echo "    mode tcp"
		echo "    backend web"
		if [[ $BF_SOURCE == vip ]]; then echo "    source vip"; else echo "    source none"; fi
		echo "    max-connections 4096"
		echo "    timeout-connect 2s"
		echo "    timeout-client 60s"
		echo "    timeout-server 60s"
		echo "}"
	} >"$LAB_DIR/fo-tandem-$n.conf"
}

# "transparent" (IP_TRANSPARENT) lets the backup bind the VIP it does not
# hold; this HAProxy (2.6) has no "freebind" bind keyword.
bf_render_haproxy() {
	local n=$1 be
	{
		echo "# generated by scripts/bench failover"
		echo "global"
		echo "    nbthread 1"
		echo "    maxconn 4096"
		echo "    pidfile $LAB_DIR/fo-haproxy-$n.pid"
		echo "defaults"
		echo "    mode tcp"
		echo "    balance roundrobin"
		echo "    timeout connect 2s"
		echo "    timeout client 60s"
		echo "    timeout server 60s"
		echo "frontend web"
		echo "    bind $BF_VIP:$BF_PORT transparent"
		echo "    default_backend web"
		echo "backend web"
		[[ $BF_SOURCE == vip ]] && echo "    source $BF_VIP"
		for be in "${BF_BACKENDS[@]}"; do
			echo "    server $be ${BF_BE_IP[$be]}:$BF_BE_PORT"
		done
	} >"$LAB_DIR/fo-haproxy-$n.cfg"
}

bf_render_keepalived() {
	local n=$1 ms=$2 adv
	adv=$(awk -v m="$ms" 'BEGIN { printf "%g", m / 1000 }')
	{
		echo "# generated by scripts/bench failover"
		echo "global_defs {"
		echo "    router_id $n"
		echo "    vrrp_version 3"
		echo "    script_user root"
		echo "    enable_script_security"
		echo "}"
		echo "vrrp_instance front {"
		echo "    state BACKUP"
		echo "    interface eth0"
		echo "    virtual_router_id $BF_VRID"
		echo "    priority ${BF_PRIO[$n]}"
		echo "    advert_int $adv"
		echo "    unicast_src_ip ${BF_ADDR[$n]}"
		echo "    unicast_peer {"
		echo "        ${BF_ADDR[${BF_PEER[$n]}]}"
		echo "    }"
		echo "    virtual_ipaddress {"
		echo "        $BF_VIP/$BF_VIP_LEN dev eth0"
		echo "    }"
		echo "    notify \"$LAB_DIR/fo-ka-notify.sh $LAB_DIR/fo-ka-states.$n\""
		echo "}"
	} >"$LAB_DIR/fo-keepalived-$n.conf"
}

bf_render_notify() {
	local hook=$LAB_DIR/fo-ka-notify.sh
	{
		echo "#!/bin/sh"
		echo "# keepalived notify hook: FILE then keepalived's TYPE NAME STATE PRIORITY"
		echo "f=\$1"
		echo "shift"
		echo "echo \"\$(date +%s.%N) \$*\" >>\"\$f\""
	} >"$hook"
	chmod 755 "$hook"
}

bf_render_all() {
	local n
	for n in lb1 lb2; do
		bf_render_tandem "$n" "$1"
		bf_render_haproxy "$n"
		bf_render_keepalived "$n" "$1"
	done
}

# Each rendered config checked by its own program, inside the node's
# namespace, for the implementations named as arguments (takeover.sh too).
bf_check_rendered() {
	local n out impls=" $* "
	for n in lb1 lb2; do
		if [[ $impls == *" tandem "* ]]; then
			out=$(ip netns exec "$(bench_ns "$n")" "$BF_TANDEMD" -c "$LAB_DIR/fo-tandem-$n.conf" 2>&1) ||
				bench_die "tandemd -c $n:"$'\n'"$out"
		fi
		if [[ $impls == *" keepalived "* ]]; then
			out=$(ip netns exec "$(bench_ns "$n")" "$BF_HAPROXY" -c -f "$LAB_DIR/fo-haproxy-$n.cfg" 2>&1) ||
				bench_die "haproxy -c $n:"$'\n'"$out"
			out=$(ip netns exec "$(bench_ns "$n")" "$BF_KEEPALIVED" -t -f "$LAB_DIR/fo-keepalived-$n.conf" 2>&1) ||
				bench_die "keepalived -t $n:"$'\n'"$out"
		fi
	done
}

bf_check_configs() {
	bf_render_all "$1"
	bf_check_rendered "${BF_IMPLS[@]}"
}

# ---------------------------------------------------------------- the pair

bf_daemon_cmd() {
	local n=$1
	case $BF_IMPL in
	tandem) BF_CMD=("$BF_TANDEMD" -f "$LAB_DIR/fo-tandem-$n.conf") ;;
	keepalived)
		# Every file of its own in the lab's state dir: never /run/keepalived*.
		BF_CMD=("$BF_KEEPALIVED" -n -l -D -G -P -f "$LAB_DIR/fo-keepalived-$n.conf"
			-p "$LAB_DIR/fo-keepalived-$n.pid" -r "$LAB_DIR/fo-keepalived-$n.vrrp.pid"
			-c "$LAB_DIR/fo-keepalived-$n.chk.pid" -b "$LAB_DIR/fo-keepalived-$n.bfd.pid")
		;;
	esac
}

bf_start_daemon() {
	local n=$1 log=$BF_LOGS/$BF_TAG.$BF_IMPL-$1.log
	bf_daemon_cmd "$n"
	bf_spawn "$n.daemon" "$n" "$log" "${BF_CMD[@]}"
	bf_alive "$n.daemon" || { tail -n 20 "$log" >&2; bench_die "$BF_IMPL on $n did not start"; }
}

bf_fail_up() {
	bench_log "$BF_TAG: $*; lb1 $(bf_state lb1) lb2 $(bf_state lb2)," \
		"VIP on:$(bf_has_vip lb1 && echo ' lb1')$(bf_has_vip lb2 && echo ' lb2')"
	tail -n 15 "$BF_LOGS/$BF_TAG.$BF_IMPL-lb1.log" >&2 || true
	tail -n 15 "$BF_LOGS/$BF_TAG.$BF_IMPL-lb2.log" >&2 || true
	bench_die "$BF_IMPL: the pair did not come up"
}

# A fresh pair: lb1 alone until MASTER, then lb2 until BACKUP; the client's
# neighbour entry for the VIP on lb1 and HTTP through it answered.
bf_pair_up() {
	local ms=$1 n up_s
	up_s=$(bf_secs $(($(bf_master_down_ms "$ms") + 10000)))
	rm -f "$LAB_DIR"/fo-ka-states.*
	if [[ $BF_IMPL == keepalived ]]; then
		for n in lb1 lb2; do
			bf_spawn "$n.haproxy" "$n" "$BF_LOGS/$BF_TAG.haproxy-$n.log" \
				"$BF_HAPROXY" -db -f "$LAB_DIR/fo-haproxy-$n.cfg"
		done
		for n in lb1 lb2; do
			bench_wait_listen "$n" "$BF_VIP:$BF_PORT" 1 10 "$(bf_pid "$n.haproxy")" ||
				bench_die "haproxy on $n did not listen on $BF_VIP:$BF_PORT"
		done
	fi
	bf_start_daemon lb1
	bf_wait_for "$up_s" bf_is_master_alone lb1 || bf_fail_up "lb1 not MASTER alone"
	bf_start_daemon lb2
	bf_wait_for 10 bf_is_state lb2 BACKUP || bf_fail_up "lb2 not BACKUP"
	# The backup's proxy must be ready for the VIP (FREEBIND / transparent).
	bench_wait_listen lb2 "$BF_VIP:$BF_PORT" 1 5 || bf_fail_up "nothing listens on lb2's $BF_VIP:$BF_PORT"
	bf_wait_for 3 bf_is_master_alone lb1 || bf_fail_up "lb1 not MASTER alone with lb2 up"
	# The client updates an existing entry from lb1's gratuitous ARP; one
	# that is missing or stuck elsewhere is deleted, and HTTP resolves anew.
	bf_http_ok || true
	if ! bf_wait_for 3 bf_neigh_on lb1; then
		bench_log "$BF_TAG: client neighbour entry for the VIP is '$(bf_client_neigh)', not lb1's: deleted"
		ip -n "$(bench_ns client)" neigh del "$BF_VIP" dev eth0 2>/dev/null || true
	fi
	bf_wait_for 3 bf_http_ok || bf_fail_up "no HTTP answer through $BF_VIP:$BF_PORT"
	bf_wait_for 3 bf_neigh_on lb1 || bf_fail_up "client neighbour entry not on lb1"
}

# Back to nothing running on either node, lb1 reachable, no VIP anywhere
# (a rebooted node has no addresses but its own).
bf_pair_down() {
	bf_stop_all
	if [[ -e $LAB_DIR/lost.lb1 ]]; then
		bench_lab node-restore lb1
		ip -n "$(bench_ns lb1)" link set eth1 up
	fi
	local n
	for n in lb1 lb2; do
		if bf_has_vip "$n"; then
			ip -n "$(bench_ns "$n")" addr del "$BF_VIP/$BF_VIP_LEN" dev eth0 2>/dev/null || true
		fi
	done
	# Left by a daemon killed with -9; keepalived would look for its pids.
	rm -f "$LAB_DIR"/fo-lb?.sock "$LAB_DIR"/fo-keepalived-*.pid
}

# ---------------------------------------------------------------- one round

# The pids a fault signals, checked (pid and start time) before the fault,
# so that striking costs no fork: lb1's daemon, and keepalived's VRRP child.
# tandemd's one child is its keeper, whose whole job is to outlive a killed
# tandemd (what `kill -9 PID` and the OOM killer do: one process); killing
# it too would be a node-loss of the daemon's processes, not a daemon kill.
bf_fault_prepare() {
	local c
	BF_FAULT_PIDS=()
	bf_alive lb1.daemon || bench_die "$BF_TAG: $BF_IMPL on lb1 died before the fault"
	BF_FAULT_PIDS+=("$(bf_pid lb1.daemon)")
	[[ $BF_IMPL == tandem ]] && return 0
	for c in $(bf_children lb1.daemon); do BF_FAULT_PIDS+=("$c"); done
}

# Strike; BF_STRUCK is the wall-clock time right after its first effect.
bf_fault() {
	case $1 in
	node-loss)
		# A power cut takes every link at once: the switch port (the lab's
		# own first step, taken here without its start-up time, so that
		# the fault meets its phase) and the direct link to lb2, which the
		# lab's node-loss leaves up until it has killed the processes, tens
		# of ms later: time in which tandem's adverts on that second path
		# still reach lb2 and restart its Master_Down timer.
		ip -n "$(bench_ns sw)" link set lb1 down
		ip -n "$(bench_ns lb1)" link set eth1 down
		BF_STRUCK=$EPOCHREALTIME
		bench_lab node-loss lb1 >>"$BF_LOGS/$BF_TAG.lab.log" 2>&1
		;;
	kill)
		# keepalived: its parent and VRRP child, as a crash of the whole
		# daemon; HAProxy stays. All stopped first: without the STOP, the
		# VRRP child once sent a priority-0 advert in the gap between the
		# parent's KILL and its own (it reacts to its parent's death).
		kill -STOP "${BF_FAULT_PIDS[@]}" 2>/dev/null || true
		kill -KILL "${BF_FAULT_PIDS[@]}" 2>/dev/null || true
		BF_STRUCK=$EPOCHREALTIME
		;;
	graceful)
		kill -TERM "${BF_FAULT_PIDS[0]}" 2>/dev/null || true
		BF_STRUCK=$EPOCHREALTIME
		;;
	esac
}

# Wait (bounded) for our child PID; KILL it after SECS.
bf_wait_child() {
	local pid=$1 secs=$2 i n
	n=$((secs * 20))
	for ((i = 0; i < n; i++)); do
		bench_pid_alive "$pid" || break
		sleep 0.05
	done
	if bench_pid_alive "$pid"; then
		bench_log "$BF_TAG: pid $pid still running after ${secs}s: KILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

# vipwatch runs in the root namespace, where lab down does not reach: an
# interrupted run stops it here (our child: its pid is not reused before wait).
BF_WATCH_PID=
bf_stop_watch() {
	[[ -n $BF_WATCH_PID ]] || return 0
	kill -TERM "$BF_WATCH_PID" 2>/dev/null || true
	wait "$BF_WATCH_PID" 2>/dev/null || true
	BF_WATCH_PID=
}

bf_round() {
	local ms=$1 fault=$2 impl=$3 round=$4 win_ms hpid cpid t_probe t_fault t_end
	local lb2_state lb1_alive phase t_adv='' adv_fd adv_pid not_before
	BF_IMPL=$impl
	BF_TAG=$(bf_interval_label "$ms")-$fault-$impl-r$round
	phase=$(bf_phase_ms "$ms" "$round")
	# The fault comes within lead + 2 intervals (the next advert, the phase).
	win_ms=$((BF_LEAD_MS + 6 * ms + BF_TAIL_MS))
	bench_log "$BF_TAG"
	bf_pair_up "$ms"

	rm -f "$BF_RUN/watch.ready"
	python3 "$BENCH_D/vipwatch.py" --ns "$(bench_ns lb1)" --ns "$(bench_ns lb2)" \
		--vip "$BF_VIP" --interval-ms 10 --duration "$(bf_secs $((win_ms + 300)))" \
		--out "$BF_LOGS/$BF_TAG.vip.json" --ready-file "$BF_RUN/watch.ready" \
		2>>"$BF_LOGS/$BF_TAG.vipwatch.err" &
	BF_WATCH_PID=$!
	bf_wait_for 5 test -s "$BF_RUN/watch.ready" || bench_die "vipwatch did not start"
	t_probe=$EPOCHREALTIME
	ip netns exec "$(bench_ns client)" "$BF_TCLIENT" probe --addr "$BF_VIP:$BF_PORT" \
		--interval "$BF_PROBE_MS" --timeout "$BF_PROBE_TIMEOUT_MS" --kind http \
		--duration "$(bf_secs "$win_ms")" >"$BF_LOGS/$BF_TAG.http.json" 2>&1 &
	hpid=$!
	ip netns exec "$(bench_ns client)" "$BF_TCLIENT" probe --addr "$BF_VIP:$BF_PORT" \
		--interval "$BF_PROBE_MS" --timeout "$BF_PROBE_TIMEOUT_MS" --kind connect \
		--duration "$(bf_secs "$win_ms")" >"$BF_LOGS/$BF_TAG.connect.json" 2>&1 &
	cpid=$!
	# Started now, so that its start-up is not in the fault's timing: it
	# takes the first advert after the lead and answers PHASE ms later.
	not_before=$(awk -v t="$t_probe" -v l="$BF_LEAD_MS" 'BEGIN { printf "%.6f", t + l / 1000 }')
	exec {adv_fd}< <(exec python3 "$BENCH_D/advertwait.py" --ns "$(bench_ns lb2)" \
		--from "${BF_ADDR[lb1]}" --from "${BF_DIRECT[lb1]}" --port "$BF_ADVERT_PORT" \
		--not-before "$not_before" --delay-ms "$phase" \
		--timeout "$(bf_secs $((BF_LEAD_MS + 3 * ms + 3000)))" \
		2>>"$BF_LOGS/$BF_TAG.advertwait.err")
	adv_pid=$!
	bf_fault_prepare
	read -r -t $((BF_LEAD_MS / 1000 + 3 * ms / 1000 + 5)) -u "$adv_fd" t_adv || true
	t_fault=$EPOCHREALTIME
	bf_fault "$fault"
	t_end=$BF_STRUCK
	exec {adv_fd}<&-
	[[ -n $t_adv ]] || bench_log "$BF_TAG: no advert from lb1 seen: fault at an unknown phase"
	bf_wait_child "$hpid" $((win_ms / 1000 + 15))
	bf_wait_child "$cpid" $((win_ms / 1000 + 15))
	bf_wait_child "$adv_pid" 5
	bf_wait_child "$BF_WATCH_PID" $((win_ms / 1000 + 15))
	BF_WATCH_PID=

	lb2_state=$(bf_state lb2)
	lb1_alive=0
	bf_alive lb1.daemon && lb1_alive=1
	if [[ $impl == keepalived ]]; then
		cp "$LAB_DIR/fo-ka-states.lb1" "$BF_LOGS/$BF_TAG.ka-states-lb1" 2>/dev/null || true
		cp "$LAB_DIR/fo-ka-states.lb2" "$BF_LOGS/$BF_TAG.ka-states-lb2" 2>/dev/null || true
	fi
	[[ $lb2_state == MASTER ]] || bench_log "$BF_TAG: lb2 is '${lb2_state:-?}' after the fault, not MASTER"
	# Columns: see RUN_FIELDS in failover_report.py.
	printf '%s\t' "$BF_TAG" "$ms" "$fault" "$impl" "$round" "$t_probe" "$t_fault" "$t_end" \
		"$win_ms" "$BF_LEAD_MS" "${lb2_state:-?}" "$lb1_alive" "$phase" "${t_adv:--}" \
		>>"$BF_LOGS/runs.tsv"
	printf '%s\n' "$BF_SOURCE" >>"$BF_LOGS/runs.tsv"
	bf_pair_down
}

# ---------------------------------------------------------------- main

bf_first_line() {
	{ "$@" 2>&1 || true; } | head -n 1
}

bench_failover() {
	local quick=0 rounds='' intervals='' faults='' impls='' out='' x ms r f i
	BF_SOURCE=node
	while [[ $# -gt 0 ]]; do
		case $1 in
		--rounds) bf_posint "$1" "${2:-}"; rounds=$2; shift 2 ;;
		--intervals) [[ -n ${2:-} ]] || bench_die "--intervals needs a list"; intervals=$2; shift 2 ;;
		--faults) [[ -n ${2:-} ]] || bench_die "--faults needs a list"; faults=$2; shift 2 ;;
		--impls) [[ -n ${2:-} ]] || bench_die "--impls needs a list"; impls=$2; shift 2 ;;
		--source)
			[[ ${2:-} == node || ${2:-} == vip ]] || bench_die "--source: node or vip"
			BF_SOURCE=$2
			shift 2
			;;
		--out) [[ -n ${2:-} ]] || bench_die "--out needs a file"; out=$2; shift 2 ;;
		--quick) quick=1; shift ;;
		*) bench_die "failover: unknown option '$1' (see --help)" ;;
		esac
	done
	if ((quick)); then
		rounds=${rounds:-1} intervals=${intervals:-100ms}
	fi
	BF_ROUNDS=${rounds:-5}
	BF_INTERVALS=()
	for x in ${intervals:-1s 100ms}; do BF_INTERVALS+=("$(bf_interval_ms "$x")"); done
	BF_FAULTS=()
	for x in ${faults:-${BF_FAULTS_ALL[*]}}; do
		[[ " ${BF_FAULTS_ALL[*]} " == *" $x "* ]] || bench_die "--faults: unknown fault '$x'"
		[[ " ${BF_FAULTS[*]} " == *" $x "* ]] || BF_FAULTS+=("$x")
	done
	BF_IMPLS=()
	for x in "${BF_IMPLS_ALL[@]}"; do
		[[ -z $impls || " $impls " == *" $x "* ]] && BF_IMPLS+=("$x")
	done
	for x in $impls; do
		[[ " ${BF_IMPLS_ALL[*]} " == *" $x "* ]] || bench_die "--impls: unknown implementation '$x'"
	done
	out=${out:-$BUILD_DIR/bench/failover-$(date +%Y%m%d-%H%M%S).json}
	[[ $out == *.json ]] || bench_die "--out: the file name must end in .json"
	BF_LOGS=${out%.json}.logs

	BF_TANDEMD=$BUILD_DIR/daemon/tandemd
	BF_TANDEMCTL=$BUILD_DIR/daemon/ctl/tandemctl
	BF_TCLIENT=$BUILD_DIR/tests/tools/tclient
	BF_KEEPALIVED=$(command -v keepalived || echo /usr/sbin/keepalived)
	BF_HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
	for x in "$BF_TANDEMD" "$BF_TANDEMCTL" "$BF_TCLIENT" "$BUILD_DIR/tests/tools/tbackend" \
		"$BF_KEEPALIVED" "$BF_HAPROXY"; do
		[[ -x $x ]] || bench_die "$x not found (build tandem, or set TANDEM_BUILD; apt-get install keepalived haproxy)"
	done
	command -v python3 >/dev/null || bench_die "python3 not found"
	[[ ! -e $BF_LOGS ]] || bench_die "$BF_LOGS exists already (choose another --out)"
	mkdir -p "$BF_LOGS"
	: >"$BF_LOGS/runs.tsv"

	BF_RUN=$(mktemp -d /tmp/tandem-bench-failover.XXXXXX)
	bench_on_exit rm -rf "$BF_RUN"
	bench_lab_up
	# Registered after the lab: runs before lab down, stops our daemons by pid.
	bench_on_exit bf_stop_all
	bench_on_exit bf_stop_watch
	bench_lab backends-start
	for x in lb1 lb2; do
		BF_MAC[$x]=$(ip netns exec "$(bench_ns "$x")" cat /sys/class/net/eth0/address)
	done
	bf_write_key
	bf_render_notify
	for ms in "${BF_INTERVALS[@]}"; do bf_check_configs "$ms"; done

	local n=$((${#BF_INTERVALS[@]} * ${#BF_FAULTS[@]} * BF_ROUNDS * ${#BF_IMPLS[@]}))
	bench_log "$n measurements: intervals ${intervals:-1s 100ms}, faults ${BF_FAULTS[*]}," \
		"${BF_ROUNDS} round(s), ${BF_IMPLS[*]}; logs in $BF_LOGS"
	for ms in "${BF_INTERVALS[@]}"; do
		for ((r = 1; r <= BF_ROUNDS; r++)); do
			for f in "${BF_FAULTS[@]}"; do
				for i in "${BF_IMPLS[@]}"; do
					bf_render_all "$ms"
					bf_round "$ms" "$f" "$i" "$r"
				done
			done
		done
	done

	local meta=(
		"date=$(date -Is)"
		"kernel=$(uname -r)"
		"cpus=$(nproc)"
		"cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
		"tandem_rev=$(git -C "$SRC_DIR" describe --always --dirty 2>/dev/null || echo unknown)"
		"tandemd=$BF_TANDEMD"
		"keepalived_version=$(bf_first_line "$BF_KEEPALIVED" -v)"
		"haproxy_version=$(bf_first_line "$BF_HAPROXY" -v)"
		"rounds=$BF_ROUNDS" "faults=${BF_FAULTS[*]}" "impls=${BF_IMPLS[*]}"
		"intervals_ms=${BF_INTERVALS[*]}" "probe_interval_ms=$BF_PROBE_MS"
		"probe_timeout_ms=$BF_PROBE_TIMEOUT_MS" "lead_ms=$BF_LEAD_MS" "tail_ms=$BF_TAIL_MS"
		"phases=fault at (r - 1/2)/rounds of the interval after an advert of lb1 reached lb2"
		"source=$BF_SOURCE" "priorities=lb1 ${BF_PRIO[lb1]}, lb2 ${BF_PRIO[lb2]}"
		"vip=$BF_VIP/$BF_VIP_LEN:$BF_PORT" "logs=$BF_LOGS"
	)
	python3 "$BENCH_D/failover_report.py" --run-dir "$BF_LOGS" --out "$out" \
		"${meta[@]/#/--meta=}" || bench_die "report failed; the raw results stay in $BF_LOGS"
}
