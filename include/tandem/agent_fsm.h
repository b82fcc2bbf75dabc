/*
 * agent_fsm — the VRRP-style state machine of one VIP group (daemon/agent/fsm.c).
 *
 * Pure: no sockets, no event loop, no netlink, no clock. The caller passes
 * the time (monotonic seconds) to every call, feeds it decoded adverts and
 * tracking changes, and does what the FSM asks through struct agent_ops.
 * Timers are deadlines the FSM owns: after every agent_* call the caller
 * re-arms its one ev_timer per group from agent_next_deadline() and calls
 * agent_poll() when it fires. Tests drive it with a fake clock.
 *
 * States and the table of transitions are in fsm.c under an ASCII diagram.
 * Semantics (RFC 5798, adapted as in DESIGN.md "Heartbeat agent"):
 *
 *   Election. An advert from a MASTER beats us when its priority is higher
 *   than our effective priority, or equal with a higher node address (the
 *   addresses compared as bytes; IPv4 sorts before IPv6). Priorities are
 *   1..254 (no "address owner" 255); an advert with priority 0 means "the
 *   master is leaving". Adverts whose sender is not MASTER (and priority
 *   is not 0) and adverts carrying our own node address are counted in
 *   rx_ignored and ignored.
 *
 *   Timers. Master_Down_Interval = 3 × Master_Adver_Interval + Skew,
 *   Skew = (256 − priority) × Master_Adver_Interval / 256, with our
 *   effective priority and the interval learned from the master's adverts
 *   (our own until one is heard); computed in integer nanoseconds. A BACKUP
 *   takes over when no advert arrived for Master_Down_Interval, or Skew
 *   after a priority-0 advert. A MASTER advertises every interval of its
 *   own, and at once when it becomes MASTER, hears a priority-0 advert,
 *   hears a lower MASTER, or its effective priority changes.
 *
 *   Preemption. With preempt on, a BACKUP that hears a MASTER it beats
 *   takes over preempt_delay after the first such advert (at once for 0);
 *   an advert that beats us in between cancels it and the next lower one
 *   starts the delay again. Never before agent_set_sync_ready(g, true):
 *   until the bulk connection sync is complete, taking over would reset the
 *   connections not yet received. That gate is for preemption only: taking
 *   over from a master that is gone (Master_Down_Interval, priority 0) is
 *   never delayed, since nobody serves the VIPs meanwhile. With preempt off
 *   a BACKUP stays BACKUP as long as a master advertises.
 *
 *   Partition healed. A MASTER that hears a lower MASTER answers at once
 *   with an advert and, if its VIPs are up, a fresh announce() burst so
 *   stale ARP/neighbour caches move back; at most one such burst per
 *   Master_Down_Interval (a one-way link would otherwise make one per
 *   received advert). The state does not change: the lower node yields
 *   when it hears the advert.
 *
 *   Becoming MASTER: take_vips(), an advert at once, adverts every
 *   interval. When the caller reports agent_vips_up() (VIPs confirmed by
 *   the kernel and whatever must exist before clients are redirected, the
 *   restored sockets, is in place), announce() — the takeover is complete
 *   then. Leaving MASTER: release_vips(). A MASTER that shuts down or goes
 *   to FAULT first sends a priority-0 advert so the peer takes over after
 *   Skew.
 *
 *   FAULT. agent_set_faults(g, n > 0) (a tracked interface down, a tracker
 *   forcing fault) moves any running group to FAULT; n = 0 returns it to
 *   BACKUP and a normal election. A group not started records the count
 *   and starts in FAULT. Effective priority = base − the tracking
 *   decrement (agent_set_decrement), clamped to 1..254, applied at once.
 *   After AGENT_SENDAD_MAX_ERRORS advert sends failed in a row the group
 *   demotes itself to priority 1 (a master that cannot advertise must not
 *   win against the peer that took over meanwhile); the first send that
 *   works restores it.
 *
 *   Planned switchover (agent_switchover, MASTER only). Send a priority-0
 *   advert, release the VIPs, become BACKUP in a "handover": a priority-0
 *   advert every interval (one lost packet does not stretch the handover
 *   to Master_Down_Interval), no master-down timer, no preemption. The
 *   handover ends when the peer is heard as MASTER; from then on the group
 *   never preempts until it leaves BACKUP (the peer dies, a fault, a
 *   restart) — a switchover an operator asked for sticks, a preempting
 *   node does not snatch the VIPs back the next second. If no master is
 *   heard within the hold time (switchover_hold_ms, default
 *   Master_Down_Interval), the peer did not take over: the group becomes
 *   MASTER again rather than leave the VIPs unserved.
 *
 *   Late wake-ups. A takeover timer (master-down, preempt, hold) that the
 *   FSM sees more than Master_Down_Interval / 2 after its deadline means
 *   the loop stalled (VM paused, host swapping): the adverts that would
 *   have stopped the timer may be sitting unread in the socket. The FSM
 *   then does not take over: it logs the stall, counts it, and moves that
 *   deadline to now + Master_Down_Interval, as if it had just started
 *   listening. A master that is really gone is detected one interval
 *   later; a stall never causes a takeover by itself. The advert timer
 *   fires late as usual.
 *
 *   Sync groups. Groups in one struct agent_syncgroup move together: a
 *   member that becomes MASTER drives the others to MASTER, one that goes
 *   MASTER→BACKUP drives the others to BACKUP (logged "(sync group NAME,
 *   vrid N)"); a transition caused by the sync group does not propagate
 *   again, so there are no loops. FAULT is a property of the whole sync
 *   group: all members are in FAULT while any member has a fault, and
 *   leave it only when none has. agent_switchover() on a member hands
 *   over every member. A call on one member can change the deadlines of
 *   the others: re-arm every member's timer after a call.
 *
 * Callbacks (struct agent_ops) must not call back into the FSM; report
 * results later (agent_vips_up) from the loop. Main thread only.
 */
#ifndef TANDEM_AGENT_FSM_H
#define TANDEM_AGENT_FSM_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tandem/wire.h>

struct agent_group;
struct agent_syncgroup;

#define AGENT_PRIO_MIN 1
#define AGENT_PRIO_MAX 254
#define AGENT_SENDAD_MAX_ERRORS 3      /* failed sends in a row before self-demotion */
#define AGENT_SYNC_MEMBERS_MAX 32
#define AGENT_SYNC_NAME_MAX 32         /* incl. NUL */
#define AGENT_NO_DEADLINE INFINITY     /* agent_next_deadline(): nothing armed */

/*
 * States. INIT: not running (no timers, no VIPs). BACKUP: listening, the
 * master-down timer armed. MASTER: holding the VIPs, advertising. FAULT:
 * a tracked object failed; no timers, no VIPs, adverts ignored.
 */
#define AGENT_STATE_LIST(X) \
	X(INIT)             \
	X(BACKUP)           \
	X(MASTER)           \
	X(FAULT)

#define AGENT_STATE_ENUM_(sym) AGENT_##sym,
enum agent_state {
	AGENT_STATE_LIST(AGENT_STATE_ENUM_)
	AGENT_STATE_COUNT
};
#undef AGENT_STATE_ENUM_
/* The list generates the enum; a zeroed group must read INIT. */
_Static_assert(AGENT_INIT == 0, "AGENT_INIT must be 0");

/*
 * Events: X(symbol, text used as the "why" of the transitions it causes).
 * Timer events come from agent_poll(); the others from the call named.
 */
#define AGENT_EVENT_LIST(X)                                                        \
	X(START, "start")                    /* agent_start, no fault */            \
	X(START_FAULT, "start with a fault") /* agent_start, a fault recorded */    \
	X(SHUTDOWN, "shutdown")              /* agent_shutdown */                   \
	X(MASTER_DOWN, "master down")        /* timer: no advert for the interval */\
	X(ADVERT_DUE, "advert due")          /* timer: MASTER (or handover) sends */\
	X(PREEMPT_DUE, "preempt")            /* timer: preempt delay over */        \
	X(HOLD_DUE, "switchover: no master took over") /* timer: handover hold */   \
	X(RX_HIGHER, "higher master")        /* advert from a MASTER that beats us */\
	X(RX_LOWER, "lower master")          /* advert from a MASTER we beat */     \
	X(RX_PRIO0, "master leaving")        /* advert with priority 0 */           \
	X(FAULT_ON, "fault")                 /* agent_set_faults: first fault */    \
	X(FAULT_OFF, "fault cleared")        /* agent_set_faults: none left */      \
	X(PRIO_CHANGE, "priority changed")   /* effective priority moved */         \
	X(READY_CHANGE, "sync readiness changed") /* agent_set_sync_ready */        \
	X(VIPS_UP, "vips up")                /* agent_vips_up */                    \
	X(SWITCHOVER, "switchover")          /* agent_switchover */                 \
	X(SYNC_MASTER, "sync group master")  /* a sync-group member became MASTER */\
	X(SYNC_BACKUP, "sync group backup")  /* a member went MASTER→BACKUP */\
	X(PEER_SILENT, "sync channel lost")  /* agent_peer_silent */

#define AGENT_EVENT_ENUM_(sym, why) AGENT_EV_##sym,
enum agent_event {
	AGENT_EVENT_LIST(AGENT_EVENT_ENUM_)
	AGENT_EV_COUNT
};
#undef AGENT_EVENT_ENUM_
_Static_assert(AGENT_EV_START == 0, "AGENT_EV_START must be 0");

/* "BACKUP", "MASTER_DOWN" ...; "?" when out of range. */
const char *agent_state_name(enum agent_state s);
const char *agent_event_name(enum agent_event ev);

/* One VIP group's configuration; copied by agent_group_new(). */
struct agent_cfg {
	uint32_t vrid;                 /* group id: in adverts and log lines */
	uint8_t priority;              /* base priority, 1..254 */
	uint32_t interval_ms;          /* our advert interval, 1..WIRE_INTERVAL_MAX_MS */
	struct wire_ip node;           /* our node address: breaks priority ties */
	bool preempt;
	uint32_t preempt_delay_ms;     /* 0: preempt at once */
	uint32_t switchover_hold_ms;   /* 0: Master_Down_Interval */
	/*
	 * We are the only backup (a unicast pair): RFC 5798's Skew_Time after a
	 * priority-0 advert only lets the best of several backups go first, so
	 * with one it is pure outage; take over at once instead.
	 */
	bool sole_backup;
};

/*
 * What the FSM asks of the caller; arg is the one given to
 * agent_group_new(). g may be read with the getters, never driven.
 *   send_advert   send an advert with this priority (0 = leaving) and our
 *                 current state; returns 0 or -errno (counted, and
 *                 AGENT_SENDAD_MAX_ERRORS in a row demote the group).
 *   take_vips     add the VIPs; report agent_vips_up() when confirmed.
 *   release_vips  remove the VIPs and stop announcing.
 *   announce      a gratuitous ARP / unsolicited NA burst.
 *   notify        after every transition (may be NULL).
 */
struct agent_ops {
	int (*send_advert)(const struct agent_group *g, void *arg, uint8_t priority);
	void (*take_vips)(const struct agent_group *g, void *arg);
	void (*release_vips)(const struct agent_group *g, void *arg);
	void (*announce)(const struct agent_group *g, void *arg);
	void (*notify)(const struct agent_group *g, void *arg,
	    enum agent_state old, enum agent_state new_state, const char *why);
};

/* For tandemctl status and the metrics. Times are the caller's clock. */
struct agent_info {
	uint32_t vrid;
	enum agent_state state;
	uint8_t base_priority;
	uint8_t priority;              /* effective */
	unsigned faults;               /* this group's own, as last set */
	unsigned decrement;            /* as last set */
	bool fault_active;             /* own or a sync-group member's */
	bool demoted;                  /* advert sends failing */
	bool sync_ready;
	bool vips_up;                  /* MASTER and agent_vips_up() seen */
	bool handover;                 /* switchover: waiting for the peer */
	bool handed_over;              /* switchover done: not preempting */
	bool preempt_pending;
	double preempt_at;             /* when preempt_pending */
	/* The master: ourselves when MASTER, else the last one heard. */
	bool master_known;
	struct wire_ip master;
	uint8_t master_priority;
	uint32_t master_interval_ms;
	double master_last_advert;     /* received, or sent by us */
	double master_down_interval;   /* seconds, from the interval above */
	/* Counters */
	uint64_t transitions;
	double last_transition;        /* 0 before the first */
	double takeover_time;          /* last MASTER entry to agent_vips_up(), s; -1 none */
	uint64_t adverts_sent;
	uint64_t advert_errors;
	uint64_t rx_adverts;           /* given to agent_rx_advert for this group */
	uint64_t rx_ignored;           /* own address, sender not MASTER */
	uint64_t stalls;               /* late wake-ups detected */
};

/*
 * Skew and Master_Down_Interval in nanoseconds for an advert interval in
 * ms and a priority (the formulas at the top, in integer arithmetic: exact
 * whenever the result is a whole number of ns).
 */
uint64_t agent_skew_ns(uint32_t interval_ms, uint8_t priority);
uint64_t agent_master_down_ns(uint32_t interval_ms, uint8_t priority);

/*
 * Create a group in INIT. cfg is copied; ops is copied (send_advert,
 * take_vips, release_vips, announce required, notify optional); arg is
 * passed to every op and never touched. Returns 0 and *out (free with
 * agent_group_free), -EINVAL (priority not 1..254, interval out of range,
 * node not AF_INET/AF_INET6, a required op missing) or -ENOMEM.
 */
int agent_group_new(const struct agent_cfg *cfg, const struct agent_ops *ops,
    void *arg, struct agent_group **out);

/*
 * Free without calling any op (shut down first to release the VIPs);
 * leaves its sync group. NULL is a no-op.
 */
void agent_group_free(struct agent_group *g);

/* INIT → BACKUP (or FAULT when a fault is active). Elsewhere: nothing. */
void agent_start(struct agent_group *g, double now);

/* Any state → INIT; a MASTER sends a priority-0 advert and releases first. */
void agent_shutdown(struct agent_group *g, double now);

/*
 * Fire every timer due at now, applying the late wake-up rule. Call when
 * the ev_timer armed from agent_next_deadline() fires (early calls are
 * harmless).
 */
void agent_poll(struct agent_group *g, double now);

/* The earliest armed deadline, or AGENT_NO_DEADLINE. */
double agent_next_deadline(const struct agent_group *g);

/*
 * An advert that passed wire_advert_recv() for this group. Returns 0, or
 * -EINVAL when a->group is not this group's vrid or a->node is not
 * AF_INET/AF_INET6 (nothing counted).
 */
int agent_rx_advert(struct agent_group *g, const struct wire_advert *a,
    double now);

/* The VIPs asked for by take_vips() are up: MASTER announces. */
void agent_vips_up(struct agent_group *g, double now);

/*
 * Planned handover to the peer (see the top). In a sync group, every
 * member hands over. Returns 0, or -EINVAL when no group concerned was
 * MASTER (nothing to hand over; nothing changed).
 */
int agent_switchover(struct agent_group *g, double now);

/*
 * Tracking inputs; each takes the current total, why names the cause for
 * the log ("link eth1 down"; NULL: a generic text). faults: number of
 * tracked objects forcing FAULT. decrement: sum of the active priority
 * decrements.
 */
void agent_set_faults(struct agent_group *g, unsigned faults, const char *why,
    double now);
void agent_set_decrement(struct agent_group *g, unsigned decrement,
    const char *why, double now);

/* The bulk state sync is complete (true) or was lost (false). Gates preemption only. */
void agent_set_sync_ready(struct agent_group *g, bool ready, double now);

/*
 * The peer's session-sync connection closed: a crashed daemon's kernel
 * closes it at once, long before its adverts are missed. A BACKUP then
 * takes over if no advert arrives within one advert interval (instead of
 * Master_Down_Interval); any advert re-arms the full interval as usual, so
 * a sync link failure alone moves nothing.
 */
void agent_peer_silent(struct agent_group *g, double now);

/*
 * Deliver ev as if its source had raised it, bypassing the checks of the
 * calls above (a timer event need not be armed). For the unit tests, which
 * exercise every cell of the table, and for debugging tools. a is required
 * for the RX_* events (the advert they are about) and ignored otherwise.
 * Returns 1 when the table has an edge or an action for (state, ev), 0
 * when it ignores it, -EINVAL for a bad event or a missing advert.
 */
int agent_inject(struct agent_group *g, enum agent_event ev,
    const struct wire_advert *a, double now);

enum agent_state agent_state(const struct agent_group *g);
uint32_t agent_vrid(const struct agent_group *g);
uint8_t agent_priority(const struct agent_group *g);   /* effective */
void agent_info(const struct agent_group *g, struct agent_info *out);

/*
 * Sync groups. name is copied (truncated to AGENT_SYNC_NAME_MAX - 1).
 * Add members while they are in INIT. agent_syncgroup_free() detaches the
 * members (they keep running alone); NULL is a no-op.
 * agent_syncgroup_add returns 0, -EBUSY (g is in a sync group already, or
 * not in INIT), -ENOSPC (AGENT_SYNC_MEMBERS_MAX).
 */
int agent_syncgroup_new(const char *name, struct agent_syncgroup **out);
void agent_syncgroup_free(struct agent_syncgroup *sg);
int agent_syncgroup_add(struct agent_syncgroup *sg, struct agent_group *g);
size_t agent_syncgroup_count(const struct agent_syncgroup *sg);
struct agent_group *agent_syncgroup_member(const struct agent_syncgroup *sg,
    size_t i);

#endif
