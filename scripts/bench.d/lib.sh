# shellcheck shell=bash
# scripts/bench.d/lib.sh — helpers shared by the bench subcommands.
# Sourced by scripts/bench (never run); expects SRC_DIR and BENCH_D to be set.
#
#   bench_die MSG / bench_log MSG             fatal error / progress line (stderr)
#   bench_on_exit CMD...                      run CMD at exit, last registered first
#   bench_lab_up                              a fresh lab, removed again at exit;
#                                             sets LAB_PREFIX, LAB_DIR
#   bench_lab CMD...                          scripts/lab -p LAB_PREFIX CMD...
#   bench_ns NODE                             the namespace name of a lab node
#   bench_proc_tree PID                       PID and all its descendants
#   bench_cpu_ticks PID...                    sum of utime+stime, in clock ticks
#   bench_hwm_kb PID...                       sum of VmHWM (peak RSS), in KiB
#   bench_stop_pids SIGNAL PID...             signal, wait (bounded), then KILL
#   bench_children_cpu_ms VAR SCRATCH         user+system ms of the shell's reaped
#                                             children, into VAR (SCRATCH: a file)
#   bench_bytes SIZE                          "1k" / "64k" / "1m" / "512" -> bytes
#   bench_wait_listen NODE ADDR:PORT N SECS [PID]
#                                             until N sockets listen there (or PID dies)

BENCH_LAB=$SRC_DIR/scripts/lab
BUILD_DIR=${TANDEM_BUILD:-$SRC_DIR/build}
# shellcheck disable=SC2034 # used by the subcommands
BENCH_CLK_TCK=$(getconf CLK_TCK)
BENCH_CLEANUPS=()
LAB_PREFIX=
LAB_DIR=

bench_die() {
	echo "bench: $*" >&2
	exit 1
}

bench_log() {
	printf 'bench [%s] %s\n' "$(date +%T)" "$*" >&2
}

bench_on_exit() {
	local q
	printf -v q '%q ' "$@"
	BENCH_CLEANUPS+=("$q")
}

# The EXIT trap. Each cleanup runs even if an earlier one failed.
bench_run_cleanups() {
	local rc=$? i
	trap - EXIT
	trap '' INT TERM HUP   # a second Ctrl-C must not leave the lab behind
	for ((i = ${#BENCH_CLEANUPS[@]} - 1; i >= 0; i--)); do
		eval "${BENCH_CLEANUPS[$i]}" || true
	done
	BENCH_CLEANUPS=()
	exit "$rc"
}

bench_ns() {
	printf '%s%s' "$LAB_PREFIX" "$1"
}

bench_lab() {
	TANDEM_BUILD=$BUILD_DIR "$BENCH_LAB" -p "$LAB_PREFIX" "$@"
}

bench_lab_down() {
	[[ -n $LAB_PREFIX ]] || return 0
	bench_log "lab down ($LAB_PREFIX)"
	"$BENCH_LAB" down "$LAB_PREFIX" || true
}

# The prefix is chosen here, and the cleanup registered, before the lab
# exists: an interrupt at any point after this still removes it.
bench_lab_up() {
	LAB_PREFIX=bn$$-$(od -An -N2 -tx2 /dev/urandom | tr -d ' \n')-
	bench_on_exit bench_lab_down
	bench_log "lab up ($LAB_PREFIX)"
	TANDEM_BUILD=$BUILD_DIR "$BENCH_LAB" up "$LAB_PREFIX" >/dev/null ||
		bench_die "scripts/lab up failed"
	# shellcheck disable=SC2034 # used by the subcommands
	LAB_DIR=$(bench_lab dir)
}

bench_pid_alive() {
	local st
	st=$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $st && $st != Z && $st != X ]]
}

bench_proc_tree() {
	local c
	echo "$1"
	for c in $(ps -o pid= --ppid "$1" 2>/dev/null || true); do
		bench_proc_tree "$c"
	done
}

# /proc/PID/stat after the ")" that ends comm: field 3 (state) is f[0], so
# utime (14) is f[11] and stime (15) f[12]. The process-level line already
# sums all threads of the process.
bench_cpu_ticks() {
	local p s f sum=0
	for p in "$@"; do
		{ read -r s <"/proc/$p/stat"; } 2>/dev/null || continue
		s=${s##*) }
		read -ra f <<<"$s"
		sum=$((sum + f[11] + f[12]))
	done
	echo "$sum"
}

bench_hwm_kb() {
	local p kb sum=0
	for p in "$@"; do
		kb=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$p/status" 2>/dev/null) || continue
		sum=$((sum + ${kb:-0}))
	done
	echo "$sum"
}

# Only the pids given, never by name. Waits up to 5 s, then KILLs.
bench_stop_pids() {
	local sig=$1 p i left
	shift
	[[ $# -gt 0 ]] || return 0
	kill "-$sig" "$@" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		left=()
		for p in "$@"; do bench_pid_alive "$p" && left+=("$p"); done
		[[ ${#left[@]} -eq 0 ]] && break
		sleep 0.05
	done
	if [[ ${#left[@]} -gt 0 ]]; then
		bench_log "pids ${left[*]} ignored SIG$sig: KILL"
		kill -KILL "${left[@]}" 2>/dev/null || true
	fi
	# Reap it if it is our child, so the next proxy finds the port free.
	for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

# The shell's own "times" (getrusage of its children): it must run in this
# shell, not in a $(...) subshell, hence the variable name and scratch file.
bench_children_cpu_ms() {
	local line t ms=0
	times >"$2"
	line=$(sed -n 2p "$2")
	for t in $line; do
		[[ $t =~ ^([0-9]+)m([0-9]+)\.([0-9]{3})s$ ]] || bench_die "cannot parse times: '$line'"
		ms=$((ms + 10#${BASH_REMATCH[1]} * 60000 + 10#${BASH_REMATCH[2]} * 1000 + 10#${BASH_REMATCH[3]}))
	done
	printf -v "$1" '%s' "$ms"
}

bench_bytes() {
	local s=${1,,}
	[[ $s =~ ^([0-9]+)([km]?)$ ]] || bench_die "bad size '$1' (e.g. 512, 1k, 64k, 1m)"
	case ${BASH_REMATCH[2]} in
	k) echo $((BASH_REMATCH[1] * 1024)) ;;
	m) echo $((BASH_REMATCH[1] * 1024 * 1024)) ;;
	*) echo "${BASH_REMATCH[1]}" ;;
	esac
}

bench_listen_count() {
	ip netns exec "$(bench_ns "$1")" ss -Hltn "src $2" 2>/dev/null | wc -l
}

# Returns 1 on timeout (the caller knows what to print).
bench_wait_listen() {
	local node=$1 addr=$2 want=$3 secs=$4 pid=${5:-} i
	for ((i = 0; i < secs * 50; i++)); do
		(($(bench_listen_count "$node" "$addr") >= want)) && return 0
		[[ -z $pid ]] || bench_pid_alive "$pid" || return 1
		sleep 0.02
	done
	return 1
}
