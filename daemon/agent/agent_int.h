/*
 * agent_int.h — shared by agent.c (groups, sockets, adverts, VIPs) and
 * agent_track.c (tracking, scripts, notify hooks) only. Not a public header.
 */
#ifndef TANDEM_AGENT_INT_H
#define TANDEM_AGENT_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <ev.h>

#include <tandem/agent.h>
#include <tandem/config.h>
#include <tandem/log.h>
#include <tandem/wire.h>

struct agent;
struct agent_vg;

struct agent_link {
	struct agent_vg *vg;
	const struct cfg_track_if *cfg;
	struct vip_link *link;
	bool up;
};

struct agent_script {
	struct agent_vg *vg;
	const struct cfg_track_script *cfg;
	ev_timer every;          /* next run */
	ev_timer timeout;        /* the running one is killed then */
	ev_child child;
	pid_t pid;               /* running, else 0 */
	bool killed;             /* by the timeout: counts as a failure */
	unsigned ok_run;         /* passes in a row */
	unsigned fail_run;       /* failures in a row */
	bool failing;            /* the verdict after rise/fall */
};

/* One vrrp-group. */
struct agent_vg {
	struct agent *a;
	const struct cfg_vrrp *cfg;   /* borrowed */
	struct agent_group *fsm;
	struct vip_set *vips;
	struct auth_keyring *keys;
	struct agent_sock *sock;
	ev_timer timer;               /* the FSM's next deadline */
	ev_timer poll;                /* track-backend, every advert interval */
	uint64_t seq;                 /* last sequence sent */
	struct wire_ip node;
	struct wire_advert tpl;       /* advert fields that never change */
	struct sockaddr_storage dst[CFG_MAX_PEERS];
	socklen_t dstlen[CFG_MAX_PEERS];
	size_t ndst;

	struct agent_link links[CFG_MAX_TRACK];
	size_t nlinks;
	bool backend_down[CFG_MAX_TRACK];
	struct agent_script scripts[CFG_MAX_TRACK];
	size_t nscripts;
	unsigned faults;              /* as last given to the FSM */
	unsigned decrement;

	uint64_t up_latency_us;
	uint64_t down_latency_us;
	uint64_t lost;

	/* The peer's proxy-config digest as its last advert said (drift check). */
	uint8_t peer_digest[WIRE_DIGEST_LEN];
	bool peer_digest_known;
	bool peer_mismatch;
};

/* One UDP socket: (family, port), shared by the groups using it. */
struct agent_sock {
	struct agent *a;
	int family;
	uint16_t port;
	int fd;
	ev_io io;
	struct wire_rx_group *groups;  /* ngroups entries */
	size_t ngroups;
	struct wire_rx rx;
};

struct agent_notify_job {
	const struct agent_vg *vg;
	enum agent_state old;
	enum agent_state new_state;
};

struct agent_notify {
	struct agent *a;
	struct agent_notify_job q[AGENT_NOTIFY_QUEUE_MAX];
	size_t head;
	size_t len;
	pid_t pid;                    /* running hook, else 0 */
	bool killed;
	struct agent_notify_job cur;
	ev_child child;
	ev_timer timeout;
};

struct agent {
	struct ev_loop *loop;
	struct nl_ctx *nl;
	const struct cfg *cfg;
	struct bal_pool *const *pools;
	size_t npools;
	uint64_t boot_epoch;
	uint8_t digest[WIRE_DIGEST_LEN];   /* cfg_digest() of our proxy config */

	struct agent_vg *vgs;
	size_t nvgs;
	struct agent_sock *socks;
	size_t nsocks;
	struct agent_syncgroup **sgs;
	size_t nsgs;
	struct auth_replay *replay;
	struct auth_stats stats;
	struct agent_notify notify;
	struct agent_counters counters;
	struct log_ratelimit rl_rx;
	bool running;
	bool stopped;
	struct agent_hooks hooks;
	void *hooks_arg;

	/* keeper.c: the process that speaks for us if we are killed */
	struct agent_lastword *lastword;   /* shared mapping, one per group; NULL: none */
	pid_t keeper_pid;
	int keeper_fd;                     /* write end of its pipe; -1: none */
};

/* keeper.c */
struct agent_lastword;
/*
 * After a real advert as MASTER: prepare the priority-0 adverts the keeper
 * sends if we die now (sequence numbers reserved from vg->seq).
 */
void agent_lastword_prepare(struct agent_vg *vg, const struct wire_advert *tpl);
/* Not MASTER any more: nothing to say for this group. */
void agent_lastword_clear(struct agent_vg *vg);
/* Stand the keeper down (a clean exit) and reap it; unmap. */
void agent_keeper_stop(struct agent *a);

/* agent.c */
/* CLOCK_MONOTONIC seconds: the FSM's clock. */
double agent_clock(void);
/* Re-arm every group's timer from its FSM deadline (after any agent_* call). */
void agent_rearm_all(struct agent *a);

/* agent_track.c */
/*
 * Tracking of one group: init (vip_link watchers, first backend poll, the
 * scripts' watchers; sets the FSM's faults/decrement before agent_start:
 * returns 0 or -errno, logged with file:line), start (timers), stop
 * (timers, kill a running script), free (stop and free the link watchers).
 */
int agent_track_init(struct agent_vg *vg);
void agent_track_start(struct agent_vg *vg);
void agent_track_stop(struct agent_vg *vg);
void agent_track_free(struct agent_vg *vg);
/*
 * Notify hooks: init the queue's watchers; push a transition (dropped and
 * counted when the queue is full; started at once when none runs, unless
 * the agent is stopped); stop watching (a running hook is left alone).
 */
void agent_notify_init(struct agent *a);
void agent_notify_push(struct agent *a, const struct agent_vg *vg,
    enum agent_state old, enum agent_state new_state);
void agent_notify_stop(struct agent *a);
/*
 * posix_spawn path with argv, stdin from /dev/null, an empty signal mask
 * and default dispositions. Returns the pid or -errno.
 */
pid_t agent_spawn(const char *path, char *const argv[]);

#endif
