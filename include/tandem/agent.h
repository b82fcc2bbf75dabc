/*
 * agent — the heartbeat agent inside tandemd (daemon/agent/agent.c,
 * agent_track.c): the glue that runs one agent_fsm group per vrrp-group of
 * the configuration on the main loop.
 *
 * Per vrrp-group it owns: an agent_group (agent_fsm.h), a vip_set on the
 * group's interface (vip.h), a keyring loaded from the group's auth-key
 * file, one ev_timer re-armed from agent_next_deadline() after every call
 * into the FSM, and the tracking (track-interface through vip_link,
 * track-backend by polling the pool every advert interval, track-script
 * run without blocking). Groups sharing an address family and UDP port share
 * one socket; all groups share one anti-replay table and one set of drop
 * counters (struct auth_stats).
 *
 * Adverts carry (boot epoch, sequence): the boot epoch is read from
 * node.boot-epoch-file, incremented and written back (fsync) at every
 * start, so a restarted node's adverts are never taken for replays; when the
 * file cannot be written the wall-clock seconds serve (logged). Every copy
 * of an advert (one per configured peer, i.e. per heartbeat path) gets its
 * own sequence number.
 *
 * The node address that breaks priority ties is the source address the
 * kernel picks towards the group's first reachable peer (or multicast
 * group): the address the peer sees.
 *
 * Life cycle (main thread only):
 *   agent_check_keys()   for `tandemd -c`: every key file checked.
 *   agent_new()          load keys, open sockets, create VIP sets, remove
 *                        stale VIPs a previous run left (vip_cleanup_stale),
 *                        set up tracking. Nothing is advertised yet.
 *   agent_run()          start every group (INIT -> BACKUP or FAULT).
 *   agent_stop()         a MASTER sends a priority-0 advert ("leaving"),
 *                        every VIP is released; timers stop. SIGTERM path.
 *   agent_free()         free; never removes anything itself.
 *   agent_crash_guard()  install handlers for SIGSEGV, SIGBUS, SIGABRT,
 *                        SIGFPE and SIGILL that drop every VIP (async-signal
 *                        safe) and re-raise the signal. One agent per
 *                        process may be guarded.
 *
 * Notify hooks (notify PATH): PATH GROUP OLD-STATE NEW-STATE is run after
 * every transition, from one queue for the whole node (so in order and one at
 * a time), without blocking the loop; a hook still running after the group's
 * notify-timeout is killed with SIGKILL. At most AGENT_NOTIFY_QUEUE_MAX runs
 * wait; further ones are dropped and counted.
 */
#ifndef TANDEM_AGENT_H
#define TANDEM_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <tandem/agent_fsm.h>
#include <tandem/auth.h>
#include <tandem/vip.h>

struct ev_loop;
struct nl_ctx;
struct cfg;
struct bal_pool;
struct agent;

#define AGENT_NOTIFY_QUEUE_MAX 64

/* One group as tandemctl status and the metrics show it. */
struct agent_status {
	const char *name;              /* the vrrp-group's name (borrowed from cfg) */
	const char *ifname;
	struct agent_info info;
	double advert_age;             /* s since the master's last advert (ours when
	                                  MASTER); -1 when no master is known */
	double since_transition;       /* s since the last transition; -1 none */
	struct vip_stats vip;
	bool vips_held;
	bool vips_up;
	uint64_t vip_up_latency_us;    /* last take: vip_take() to every RTM_NEWADDR; 0 none */
	uint64_t vip_down_latency_us;  /* last release; 0 none */
	uint64_t vip_lost;             /* held VIPs deleted by someone else */
	unsigned faults;               /* tracked objects forcing FAULT now */
	unsigned decrement;            /* priority decrement from tracking now */
	size_t npeers;
	bool peer_digest_known;        /* a peer advert carried a config digest */
	bool peer_config_mismatch;     /* ... and it differs from ours */
};

/* Node-wide counters. */
struct agent_counters {
	uint64_t boot_epoch;
	uint64_t rx_errors;            /* recvfrom failures */
	uint64_t notify_runs;          /* hooks started */
	uint64_t notify_failed;        /* exited non-zero, by a signal, or could not start */
	uint64_t notify_killed;        /* killed at the timeout */
	uint64_t notify_dropped;       /* queue full */
	uint64_t script_runs;          /* track-script runs started */
	uint64_t script_killed;        /* killed at their timeout */
};

/*
 * Check every vrrp-group's auth-key file as agent_new() would load it;
 * write "FILE:LINE: auth-key PATH: why" for each failure to err (FILE:LINE
 * being the group's block). Returns the number of failures.
 */
int agent_check_keys(const struct cfg *cfg, FILE *err);

/*
 * Build the agent for cfg->vrrp[0..nvrrp) (nvrrp must be > 0) on loop (the
 * main loop, the default loop: scripts and hooks use ev_child) with nl.
 * pools[0..npools) are the pools of cfg->backends in order (track-backend).
 * cfg, nl and pools are borrowed and must outlive the agent. Errors are
 * logged with the group's file:line. Returns 0 and *out, or -errno
 * (auth_keyring_load's for a key file, -ENODEV an interface,
 * -EADDRNOTAVAIL no node address, -EADDRINUSE the advert port, ...).
 */
int agent_new(struct ev_loop *loop, struct nl_ctx *nl, const struct cfg *cfg,
    struct bal_pool *const *pools, size_t npools, struct agent **out);

/* Start every group. */
void agent_run(struct agent *a);

/*
 * Leave: every group shuts down (a MASTER advertises priority 0 and
 * releases its VIPs), every VIP set is released even if not held, timers,
 * scripts and watchers stop. A running hook is left to finish on its own.
 * Idempotent.
 */
void agent_stop(struct agent *a);

/* Free (agent_stop first to release). NULL is a no-op. */
void agent_free(struct agent *a);

/* See the top. Returns 0 or -errno (sigaction). */
int agent_crash_guard(struct agent *a);

/*
 * Fork the keeper (daemon/agent/keeper.c): a process that, when tandemd
 * dies without a word (kill -9, OOM), drops every VIP and sends the
 * priority-0 adverts tandemd left ready, so the peer takes over at once and
 * never two nodes answer ARP for the VIP. A clean exit stands it down
 * (agent_free). Call once, after agent_new. Returns 0 or -errno.
 */
int agent_keeper_start(struct agent *a);

size_t agent_count(const struct agent *a);

/* Fill *out for group i (0..agent_count-1); -ENOENT when out of range. */
int agent_status(const struct agent *a, size_t i, struct agent_status *out);

/* Group index by name, or -ENOENT. */
int agent_find(const struct agent *a, const char *name);

/* Drop counters of every advert socket (shared by the groups). */
const struct auth_stats *agent_auth_stats(const struct agent *a);

void agent_counters(const struct agent *a, struct agent_counters *out);

/*
 * Hand group i (and its sync group) over to the peer (agent_switchover()).
 * Returns 0, -ENOENT (no such group), -EINVAL (not MASTER).
 */
int agent_handover(struct agent *a, size_t i);

/*
 * Hooks for session sync (daemon/session), all on the main loop except
 * crash. Any may be NULL.
 *   vips_up    group i's VIPs are on the interface and nothing is announced
 *              yet. Returning true takes the announce over: the hook calls
 *              agent_vips_ready(a, i) once the sessions are rebuilt (GARP
 *              after the sockets exist, so no client is answered by a RST).
 *   vips_down  group i's VIPs are gone (released): its sockets are frozen.
 *   crash      inside the fatal-signal handler, after every VIP was dropped:
 *              async-signal-safe calls only.
 */
struct agent_hooks {
	bool (*vips_up)(void *arg, size_t group);
	void (*vips_down)(void *arg, size_t group);
	void (*crash)(void *arg);
};

/* Set (or with h NULL clear) the hooks; h is copied. */
void agent_set_hooks(struct agent *a, const struct agent_hooks *h, void *arg);

/* Announce group i's VIPs now (after a vips_up hook returned true). */
void agent_vips_ready(struct agent *a, size_t i);

/*
 * Allow or forbid preemption for every group: a node whose session table is
 * not complete yet would reset every connection the current master holds.
 */
void agent_set_sync_ready_all(struct agent *a, bool ready);

/* The peer's sync channel closed: agent_peer_silent() for every group. */
void agent_sync_lost(struct agent *a);

/* Is group i MASTER now? false when out of range. */
bool agent_is_master(const struct agent *a, size_t i);

#endif
