/* agent_fsm — see include/tandem/agent_fsm.h */
#include <tandem/agent_fsm.h>

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <tandem/log.h>

#define AGENT_WHY_MAX 128
#define AGENT_LOG_INTERVAL 5.0     /* s between two "ignoring" lines */
/*
 * Rounds of (priority update, due timers) per call. One round settles
 * everything but a preemption armed by a priority change, which needs a
 * second; the bound only guards against a bug turning into a busy loop.
 */
#define AGENT_SETTLE_ROUNDS 4
#define AGENT_TIMER_ROUNDS 16

/* The timers of one group; each fires one event. */
enum agent_timer {
	AGENT_T_MASTER_DOWN = 0,
	AGENT_T_ADVERT,
	AGENT_T_PREEMPT,
	AGENT_T_HOLD,
	AGENT_T_COUNT
};

struct agent_timer_def {
	enum agent_event ev;
	bool takeover;        /* deferred by the late wake-up rule */
	const char *name;
};

static const struct agent_timer_def agent_timers[AGENT_T_COUNT] = {
	[AGENT_T_MASTER_DOWN] = { AGENT_EV_MASTER_DOWN, true, "master-down" },
	[AGENT_T_ADVERT] = { AGENT_EV_ADVERT_DUE, false, "advert" },
	[AGENT_T_PREEMPT] = { AGENT_EV_PREEMPT_DUE, true, "preempt" },
	[AGENT_T_HOLD] = { AGENT_EV_HOLD_DUE, true, "switchover hold" },
};

/* The master we follow as BACKUP (never ourselves). */
struct agent_master {
	bool known;
	struct wire_ip addr;
	uint8_t prio;
	uint32_t interval_ms;
	double last;          /* its last advert */
};

struct agent_syncgroup {
	char name[AGENT_SYNC_NAME_MAX];
	struct agent_group *members[AGENT_SYNC_MEMBERS_MAX];
	size_t n;
	bool busy;            /* driving the members: their transitions do not propagate */
};

struct agent_group {
	struct agent_cfg cfg;
	struct agent_ops ops;
	void *arg;
	struct agent_syncgroup *sync;

	enum agent_state state;
	uint8_t prio;                 /* effective, as last applied */
	const char *prio_why;         /* static text for the next automatic change */
	unsigned faults;
	char fault_why[AGENT_WHY_MAX];
	unsigned decrement;
	bool sync_ready;
	unsigned send_fail_run;       /* failed advert sends in a row */

	double deadline[AGENT_T_COUNT];
	struct agent_master m;
	bool lower_seen;              /* a master we beat is being heard ... */
	double lower_since;           /* ... since its first advert */
	bool handover;                /* switchover: waiting for the peer */
	bool handed_over;             /* switchover done: no preemption */
	bool vips_up;
	double master_since;          /* entry into MASTER */
	double last_advert_sent;
	double heal_announced;        /* last partition-heal burst */
	bool in_dispatch;

	uint64_t transitions;
	double last_transition;
	double takeover_time;
	uint64_t adverts_sent;
	uint64_t advert_errors;
	uint64_t rx_adverts;
	uint64_t rx_ignored;
	uint64_t stalls;
	struct log_ratelimit rl_ignored;
	struct log_ratelimit rl_send;
};

/* What an action sees of the event being handled. */
struct agent_input {
	enum agent_event ev;
	double now;
	const struct wire_advert *adv;   /* RX_* only */
	const char *why;
};

typedef void agent_act_fn(struct agent_group *g, const struct agent_input *in);

/* ---- names ------------------------------------------------------------ */

#define AGENT_STATE_NAME_(sym) [AGENT_##sym] = #sym,
static const char *const agent_state_names[AGENT_STATE_COUNT] = {
	AGENT_STATE_LIST(AGENT_STATE_NAME_)
};
#undef AGENT_STATE_NAME_

#define AGENT_EVENT_NAME_(sym, why) [AGENT_EV_##sym] = #sym,
static const char *const agent_event_names[AGENT_EV_COUNT] = {
	AGENT_EVENT_LIST(AGENT_EVENT_NAME_)
};
#undef AGENT_EVENT_NAME_

#define AGENT_EVENT_WHY_(sym, why) [AGENT_EV_##sym] = why,
static const char *const agent_event_whys[AGENT_EV_COUNT] = {
	AGENT_EVENT_LIST(AGENT_EVENT_WHY_)
};
#undef AGENT_EVENT_WHY_

const char *
agent_state_name(enum agent_state s)
{
	if ((unsigned)s >= AGENT_STATE_COUNT)
		return "?";
	return agent_state_names[s];
}

const char *
agent_event_name(enum agent_event ev)
{
	if ((unsigned)ev >= AGENT_EV_COUNT)
		return "?";
	return agent_event_names[ev];
}

/* ---- arithmetic and small helpers ------------------------------------- */

uint64_t
agent_skew_ns(uint32_t interval_ms, uint8_t priority)
{
	return (uint64_t)(256 - priority) * interval_ms * 1000000u / 256;
}

uint64_t
agent_master_down_ns(uint32_t interval_ms, uint8_t priority)
{
	return 3 * (uint64_t)interval_ms * 1000000u +
	    agent_skew_ns(interval_ms, priority);
}

static double
agent_ns_to_s(uint64_t ns)
{
	return (double)ns / 1e9;
}

/* The interval the master-down timer is measured in: the master's if known. */
static uint32_t
agent_watch_interval_ms(const struct agent_group *g)
{
	return g->m.known ? g->m.interval_ms : g->cfg.interval_ms;
}

static double
agent_mdi(const struct agent_group *g)
{
	return agent_ns_to_s(agent_master_down_ns(agent_watch_interval_ms(g),
	    g->prio));
}

static double
agent_interval(const struct agent_group *g)
{
	return (double)g->cfg.interval_ms / 1e3;
}

static size_t
agent_ip_len(const struct wire_ip *ip)
{
	return ip->family == AF_INET ? 4 : 16;
}

/* Order node addresses: IPv4 before IPv6, then bytewise (network order). */
static int
agent_ip_cmp(const struct wire_ip *a, const struct wire_ip *b)
{
	if (a->family != b->family)
		return a->family == AF_INET ? -1 : 1;
	return memcmp(a->addr, b->addr, agent_ip_len(a));
}

static const char *
agent_ntop(const struct wire_ip *ip, char *buf, size_t len)
{
	if (inet_ntop(ip->family, ip->addr, buf, (socklen_t)len) == NULL)
		snprintf(buf, len, "?");
	return buf;
}

/* " (N more suppressed)" for a rate-limited line, "" when none were. */
static const char *
agent_suppressed(unsigned n, char *buf, size_t len)
{
	if (n == 0)
		return "";
	snprintf(buf, len, " (%u more suppressed)", n);
	return buf;
}

/* Do we beat a master advertising (prio, addr)? */
static bool
agent_beats(const struct agent_group *g, uint8_t prio, const struct wire_ip *addr)
{
	if (g->prio != prio)
		return g->prio > prio;
	return agent_ip_cmp(&g->cfg.node, addr) > 0;
}

static uint8_t
agent_eff_prio(const struct agent_group *g)
{
	long p = (long)g->cfg.priority - (long)g->decrement;

	if (g->send_fail_run >= AGENT_SENDAD_MAX_ERRORS)
		return AGENT_PRIO_MIN;
	if (p < AGENT_PRIO_MIN)
		p = AGENT_PRIO_MIN;
	if (p > AGENT_PRIO_MAX)
		p = AGENT_PRIO_MAX;
	return (uint8_t)p;
}

/* A fault of this group or, in a sync group, of any member: the first found. */
static const struct agent_group *
agent_fault_source(const struct agent_group *g)
{
	if (g->sync == NULL)
		return g->faults > 0 ? g : NULL;
	for (size_t i = 0; i < g->sync->n; i++)
		if (g->sync->members[i]->faults > 0)
			return g->sync->members[i];
	return NULL;
}

/* ---- timers ------------------------------------------------------------ */

/* A deadline in the past is due now: lateness then means a stall, not a late arm. */
static void
agent_arm(struct agent_group *g, enum agent_timer t, double when, double now)
{
	g->deadline[t] = when < now ? now : when;
}

static void
agent_disarm(struct agent_group *g, enum agent_timer t)
{
	g->deadline[t] = AGENT_NO_DEADLINE;
}

static bool
agent_armed(const struct agent_group *g, enum agent_timer t)
{
	return g->deadline[t] != AGENT_NO_DEADLINE;
}

/* ---- actions the states and edges share --------------------------------- */

static void
agent_send(struct agent_group *g, uint8_t prio, double now)
{
	int r = g->ops.send_advert(g, g->arg, prio);
	unsigned suppressed;
	char buf[48];

	if (r < 0) {
		g->advert_errors++;
		g->send_fail_run++;
		if (g->send_fail_run == AGENT_SENDAD_MAX_ERRORS) {
			log_warnx("vrid %u: %u advert sends failed in a row (%s), "
			    "demoting to priority %u", g->cfg.vrid,
			    g->send_fail_run, strerror(-r), AGENT_PRIO_MIN);
			g->prio_why = "advert sends failing";
		} else if (log_ratelimit_ok(&g->rl_send, now,
		    AGENT_LOG_INTERVAL, &suppressed)) {
			log_warnx("vrid %u: advert send failed: %s%s",
			    g->cfg.vrid, strerror(-r),
			    agent_suppressed(suppressed, buf, sizeof(buf)));
		}
		return;
	}
	if (g->send_fail_run >= AGENT_SENDAD_MAX_ERRORS) {
		log_info("vrid %u: advert sent again, demotion lifted",
		    g->cfg.vrid);
		g->prio_why = "advert sends work again";
	}
	g->send_fail_run = 0;
	g->adverts_sent++;
	g->last_advert_sent = now;
}

static void
agent_forget_master(struct agent_group *g)
{
	memset(&g->m, 0, sizeof(g->m));
}

static void
agent_record_master(struct agent_group *g, const struct wire_advert *a,
    double now)
{
	g->m.known = true;
	g->m.addr = a->node;
	g->m.prio = a->priority;
	g->m.interval_ms = a->interval_ms;
	g->m.last = now;
}

static void
agent_cancel_preempt(struct agent_group *g)
{
	g->lower_seen = false;
	agent_disarm(g, AGENT_T_PREEMPT);
}

/*
 * Arm, keep or cancel the preemption of the master we follow, after any
 * input it depends on changed: its adverts, our priority, sync readiness.
 */
static void
agent_preempt_check(struct agent_group *g, double now)
{
	if (!g->m.known || !agent_beats(g, g->m.prio, &g->m.addr)) {
		agent_cancel_preempt(g);
		return;
	}
	/* The delay runs from the first advert of a master we beat, even while gated. */
	if (!g->lower_seen) {
		g->lower_seen = true;
		g->lower_since = now;
	}
	/*
	 * Preemption rule: take the VIPs from a live master we beat only when
	 * preempt is configured, the bulk connection sync is complete
	 * (sync_ready: before it, the takeover would reset every connection we
	 * have not yet received; STYLE 18) and no switchover handed mastership
	 * to that master. The sync_ready gate is for preemption only: when the
	 * master is gone (MASTER_DOWN, a priority-0 advert) nobody serves the
	 * VIPs, and waiting for a sync whose source is dead would make the
	 * outage last for ever; those takeovers never look at sync_ready.
	 */
	if (!g->cfg.preempt || !g->sync_ready || g->handover || g->handed_over) {
		agent_disarm(g, AGENT_T_PREEMPT);
		return;
	}
	if (!agent_armed(g, AGENT_T_PREEMPT))
		agent_arm(g, AGENT_T_PREEMPT,
		    g->lower_since + (double)g->cfg.preempt_delay_ms / 1e3, now);
}

/* BACKUP heard a MASTER: follow it (and a handover is complete). */
static void
agent_follow(struct agent_group *g, const struct agent_input *in)
{
	char buf[INET6_ADDRSTRLEN];

	agent_record_master(g, in->adv, in->now);
	if (g->handover) {
		g->handover = false;
		g->handed_over = true;
		agent_disarm(g, AGENT_T_ADVERT);
		agent_disarm(g, AGENT_T_HOLD);
		log_info("vrid %u: switchover complete, master is %s "
		    "(priority %u); not preempting it", g->cfg.vrid,
		    agent_ntop(&g->m.addr, buf, sizeof(buf)), g->m.prio);
	}
	agent_arm(g, AGENT_T_MASTER_DOWN, in->now + agent_mdi(g), in->now);
}

/* ---- edge actions --------------------------------------------------------- */

static void
agent_act_follow_higher(struct agent_group *g, const struct agent_input *in)
{
	agent_follow(g, in);
	agent_cancel_preempt(g);
}

static void
agent_act_follow_lower(struct agent_group *g, const struct agent_input *in)
{
	agent_follow(g, in);
	agent_preempt_check(g, in->now);
}

/*
 * RFC 5798 6.4.2: priority 0 sets the master-down timer to Skew_Time, so that
 * among several backups the best goes first. The sole backup of a pair has
 * nobody to give way to: it takes over at once.
 */
static void
agent_act_master_leaving(struct agent_group *g, const struct agent_input *in)
{
	double wait = g->cfg.sole_backup ? 0. :
	    agent_ns_to_s(agent_skew_ns(in->adv->interval_ms, g->prio));

	agent_forget_master(g);
	agent_cancel_preempt(g);
	agent_arm(g, AGENT_T_MASTER_DOWN, in->now + wait, in->now);
}

static void
agent_act_preempt_check(struct agent_group *g, const struct agent_input *in)
{
	agent_preempt_check(g, in->now);
}

/* Take over after one interval of silence, unless already due sooner. */
static void
agent_act_peer_silent(struct agent_group *g, const struct agent_input *in)
{
	double when = in->now + agent_interval(g);

	if (g->handover || g->deadline[AGENT_T_MASTER_DOWN] <= when)
		return;
	agent_arm(g, AGENT_T_MASTER_DOWN, when, in->now);
}

/* The handover's priority-0 adverts; a stray timer outside one does nothing. */
static void
agent_act_handover_advert(struct agent_group *g, const struct agent_input *in)
{
	if (!g->handover)
		return;
	agent_send(g, 0, in->now);
	agent_arm(g, AGENT_T_ADVERT, in->now + agent_interval(g), in->now);
}

static void
agent_act_advert_periodic(struct agent_group *g, const struct agent_input *in)
{
	agent_send(g, g->prio, in->now);
	agent_arm(g, AGENT_T_ADVERT, in->now + agent_interval(g), in->now);
}

static void
agent_act_advert_now(struct agent_group *g, const struct agent_input *in)
{
	agent_send(g, g->prio, in->now);
}

static void
agent_act_advert_leaving(struct agent_group *g, const struct agent_input *in)
{
	agent_send(g, 0, in->now);
}

/* MASTER heard a master that beats it: BACKUP's entry uses its interval. */
static void
agent_act_record_master(struct agent_group *g, const struct agent_input *in)
{
	agent_record_master(g, in->adv, in->now);
}

/*
 * MASTER heard a lower MASTER: a partition healed (or the other side missed
 * our adverts). Answer at once so it yields now rather than at our next
 * advert, and announce again: hosts that followed the other MASTER's
 * announcements still send to its MAC.
 */
static void
agent_act_heal(struct agent_group *g, const struct agent_input *in)
{
	char buf[INET6_ADDRSTRLEN];

	agent_send(g, g->prio, in->now);
	if (!g->vips_up || in->now < g->heal_announced + agent_mdi(g))
		return;
	g->heal_announced = in->now;
	log_info("vrid %u: lower master %s (priority %u) heard, asserting "
	    "mastership and announcing again", g->cfg.vrid,
	    agent_ntop(&in->adv->node, buf, sizeof(buf)), in->adv->priority);
	g->ops.announce(g, g->arg);
}

static void
agent_act_vips_up(struct agent_group *g, const struct agent_input *in)
{
	if (!g->vips_up) {
		g->vips_up = true;
		g->takeover_time = in->now - g->master_since;
		log_info("vrid %u: VIPs up %.3f s after becoming MASTER, "
		    "announcing", g->cfg.vrid, g->takeover_time);
	}
	g->ops.announce(g, g->arg);
}

static void
agent_act_handover(struct agent_group *g, const struct agent_input *in)
{
	agent_send(g, 0, in->now);
	g->handover = true;
}

/* ---- the state machine --------------------------------------------------- */

struct agent_edge {
	enum agent_state next;
	agent_act_fn *act;     /* run first, in the old state; NULL: none */
	bool moves;            /* false: stay (the action only), or ignore if no action */
};

#define AGENT_GO(state, fn) { (state), (fn), true }
#define AGENT_DO(fn) { AGENT_INIT, (fn), false }

/*
 *                START                 MASTER_DOWN, PREEMPT_DUE,
 *   +------+ -------------> +--------+   HOLD_DUE, SYNC_MASTER    +--------+
 *   | INIT |                | BACKUP | -------------------------> | MASTER |
 *   +------+                +--------+ <------------------------- +--------+
 *      |                     |      ^    RX_HIGHER, SWITCHOVER,       |
 *      | START_FAULT         |      |    SYNC_BACKUP                  |
 *      |            FAULT_ON |      | FAULT_OFF                       |
 *      |                     v      |                                 |
 *      |                    +--------+                                |
 *      +------------------> | FAULT  | <--------- FAULT_ON -----------+
 *                           +--------+
 *
 *   SHUTDOWN: BACKUP, MASTER, FAULT → INIT.
 *
 * Stay-put actions: BACKUP follows RX_HIGHER/RX_LOWER (arms master-down;
 * RX_LOWER may arm PREEMPT_DUE), arms Skew on RX_PRIO0, re-checks
 * preemption on PRIO_CHANGE/READY_CHANGE, sends the handover's
 * priority-0 adverts on ADVERT_DUE. MASTER advertises on ADVERT_DUE,
 * RX_PRIO0 and PRIO_CHANGE, answers RX_LOWER (partition healed) with an
 * advert and an announce, announces on VIPS_UP. Everything else is
 * ignored (logged at debug). Entry and exit work per state is in
 * agent_states[] below the table.
 */
static const struct agent_edge agent_fsm[AGENT_STATE_COUNT][AGENT_EV_COUNT] = {
	[AGENT_INIT][AGENT_EV_START] = AGENT_GO(AGENT_BACKUP, NULL),
	[AGENT_INIT][AGENT_EV_START_FAULT] = AGENT_GO(AGENT_FAULT, NULL),

	[AGENT_BACKUP][AGENT_EV_SHUTDOWN] = AGENT_GO(AGENT_INIT, NULL),
	/* The master is gone: never gated by sync_ready (agent_preempt_check). */
	[AGENT_BACKUP][AGENT_EV_MASTER_DOWN] = AGENT_GO(AGENT_MASTER, NULL),
	[AGENT_BACKUP][AGENT_EV_ADVERT_DUE] = AGENT_DO(agent_act_handover_advert),
	[AGENT_BACKUP][AGENT_EV_PREEMPT_DUE] = AGENT_GO(AGENT_MASTER, NULL),
	[AGENT_BACKUP][AGENT_EV_HOLD_DUE] = AGENT_GO(AGENT_MASTER, NULL),
	[AGENT_BACKUP][AGENT_EV_RX_HIGHER] = AGENT_DO(agent_act_follow_higher),
	[AGENT_BACKUP][AGENT_EV_RX_LOWER] = AGENT_DO(agent_act_follow_lower),
	[AGENT_BACKUP][AGENT_EV_RX_PRIO0] = AGENT_DO(agent_act_master_leaving),
	[AGENT_BACKUP][AGENT_EV_FAULT_ON] = AGENT_GO(AGENT_FAULT, NULL),
	[AGENT_BACKUP][AGENT_EV_PRIO_CHANGE] = AGENT_DO(agent_act_preempt_check),
	[AGENT_BACKUP][AGENT_EV_READY_CHANGE] = AGENT_DO(agent_act_preempt_check),
	[AGENT_BACKUP][AGENT_EV_SYNC_MASTER] = AGENT_GO(AGENT_MASTER, NULL),
	[AGENT_BACKUP][AGENT_EV_PEER_SILENT] = AGENT_DO(agent_act_peer_silent),

	[AGENT_MASTER][AGENT_EV_SHUTDOWN] = AGENT_GO(AGENT_INIT, agent_act_advert_leaving),
	[AGENT_MASTER][AGENT_EV_ADVERT_DUE] = AGENT_DO(agent_act_advert_periodic),
	[AGENT_MASTER][AGENT_EV_RX_HIGHER] = AGENT_GO(AGENT_BACKUP, agent_act_record_master),
	[AGENT_MASTER][AGENT_EV_RX_LOWER] = AGENT_DO(agent_act_heal),
	[AGENT_MASTER][AGENT_EV_RX_PRIO0] = AGENT_DO(agent_act_advert_now),
	[AGENT_MASTER][AGENT_EV_FAULT_ON] = AGENT_GO(AGENT_FAULT, agent_act_advert_leaving),
	[AGENT_MASTER][AGENT_EV_PRIO_CHANGE] = AGENT_DO(agent_act_advert_now),
	[AGENT_MASTER][AGENT_EV_VIPS_UP] = AGENT_DO(agent_act_vips_up),
	[AGENT_MASTER][AGENT_EV_SWITCHOVER] = AGENT_GO(AGENT_BACKUP, agent_act_handover),
	[AGENT_MASTER][AGENT_EV_SYNC_BACKUP] = AGENT_GO(AGENT_BACKUP, NULL),

	[AGENT_FAULT][AGENT_EV_SHUTDOWN] = AGENT_GO(AGENT_INIT, NULL),
	[AGENT_FAULT][AGENT_EV_FAULT_OFF] = AGENT_GO(AGENT_BACKUP, NULL),
};

static void
agent_enter_init(struct agent_group *g, double now)
{
	agent_forget_master(g);
}

static void
agent_enter_backup(struct agent_group *g, double now)
{
	double hold;

	if (!g->handover) {
		agent_arm(g, AGENT_T_MASTER_DOWN, now + agent_mdi(g), now);
		return;
	}
	hold = g->cfg.switchover_hold_ms ?
	    (double)g->cfg.switchover_hold_ms / 1e3 : agent_mdi(g);
	agent_arm(g, AGENT_T_ADVERT, now + agent_interval(g), now);
	agent_arm(g, AGENT_T_HOLD, now + hold, now);
}

static void
agent_leave_backup(struct agent_group *g, double now)
{
	agent_disarm(g, AGENT_T_MASTER_DOWN);
	agent_disarm(g, AGENT_T_ADVERT);
	agent_disarm(g, AGENT_T_HOLD);
	agent_cancel_preempt(g);
	g->handover = false;
	g->handed_over = false;
}

/* RFC 5798 6.4.1/6.4.2: a new master advertises at once. */
static void
agent_enter_master(struct agent_group *g, double now)
{
	agent_forget_master(g);
	g->vips_up = false;
	g->master_since = now;
	g->heal_announced = -AGENT_NO_DEADLINE;
	g->ops.take_vips(g, g->arg);
	agent_send(g, g->prio, now);
	agent_arm(g, AGENT_T_ADVERT, now + agent_interval(g), now);
}

static void
agent_leave_master(struct agent_group *g, double now)
{
	agent_disarm(g, AGENT_T_ADVERT);
	g->vips_up = false;
	g->ops.release_vips(g, g->arg);
}

static void
agent_enter_fault(struct agent_group *g, double now)
{
	agent_forget_master(g);
}

struct agent_state_def {
	void (*enter)(struct agent_group *g, double now);
	void (*leave)(struct agent_group *g, double now);
};

static const struct agent_state_def agent_states[AGENT_STATE_COUNT] = {
	[AGENT_INIT] = { agent_enter_init, NULL },
	[AGENT_BACKUP] = { agent_enter_backup, agent_leave_backup },
	[AGENT_MASTER] = { agent_enter_master, agent_leave_master },
	[AGENT_FAULT] = { agent_enter_fault, NULL },
};

/* Which transitions of a sync-group member drive the others, and with what. */
struct agent_follow {
	bool on;
	enum agent_event ev;
};

static const struct agent_follow
    agent_sync_follow[AGENT_STATE_COUNT][AGENT_STATE_COUNT] = {
	[AGENT_BACKUP][AGENT_MASTER] = { true, AGENT_EV_SYNC_MASTER },
	[AGENT_MASTER][AGENT_BACKUP] = { true, AGENT_EV_SYNC_BACKUP },
};

static int agent_dispatch(struct agent_group *g, enum agent_event ev,
    const struct wire_advert *adv, const char *why, double now);

static void
agent_sync_propagate(struct agent_group *g, enum agent_state old,
    enum agent_state next, double now)
{
	const struct agent_follow *f = &agent_sync_follow[old][next];
	struct agent_syncgroup *sg = g->sync;
	char why[AGENT_WHY_MAX];

	if (sg == NULL || !f->on || sg->busy)
		return;
	snprintf(why, sizeof(why), "sync group %s, vrid %u", sg->name,
	    g->cfg.vrid);
	sg->busy = true;
	for (size_t i = 0; i < sg->n; i++)
		if (sg->members[i] != g)
			agent_dispatch(sg->members[i], f->ev, NULL, why, now);
	sg->busy = false;
}

/* The one place a group changes state. */
static void
agent_set_state(struct agent_group *g, enum agent_state next, const char *why,
    double now)
{
	enum agent_state old = g->state;

	assert(next != old);
	log_info("vrid %u: %s→%s (%s)", g->cfg.vrid, agent_state_names[old],
	    agent_state_names[next], why);
	if (agent_states[old].leave != NULL)
		agent_states[old].leave(g, now);
	g->state = next;
	g->transitions++;
	g->last_transition = now;
	if (agent_states[next].enter != NULL)
		agent_states[next].enter(g, now);
	/* Only BACKUP and MASTER run timers. */
	assert(next == AGENT_BACKUP || next == AGENT_MASTER ||
	    agent_next_deadline(g) == AGENT_NO_DEADLINE);
	if (g->ops.notify != NULL)
		g->ops.notify(g, g->arg, old, next, why);
	agent_sync_propagate(g, old, next, now);
}

/*
 * Look ev up in the table for the current state and apply the cell.
 * Returns 1 if the cell has an edge or an action, 0 if it is empty.
 */
static int
agent_dispatch(struct agent_group *g, enum agent_event ev,
    const struct wire_advert *adv, const char *why, double now)
{
	const struct agent_edge *e = &agent_fsm[g->state][ev];
	struct agent_input in = {
		.ev = ev, .now = now, .adv = adv,
		.why = why != NULL ? why : agent_event_whys[ev],
	};

	if (e->act == NULL && !e->moves) {
		log_debug("vrid %u: %s in %s, ignoring", g->cfg.vrid,
		    agent_event_names[ev], agent_state_names[g->state]);
		return 0;
	}
	/* Ops must not call back into the FSM. */
	assert(!g->in_dispatch);
	g->in_dispatch = true;
	if (e->act != NULL)
		e->act(g, &in);
	if (e->moves)
		agent_set_state(g, e->next, in.why, now);
	g->in_dispatch = false;
	return 1;
}

/* Apply a change of effective priority. Returns whether it changed. */
static bool
agent_prio_apply(struct agent_group *g, const char *why, double now)
{
	uint8_t p = agent_eff_prio(g);

	if (p == g->prio)
		return false;
	if (why == NULL)
		why = g->prio_why != NULL ? g->prio_why : "tracking";
	log_info("vrid %u: priority %u→%u (%s)", g->cfg.vrid, g->prio, p, why);
	g->prio = p;
	g->prio_why = NULL;
	agent_dispatch(g, AGENT_EV_PRIO_CHANGE, NULL, why, now);
	return true;
}

static int
agent_earliest_due(const struct agent_group *g, double now)
{
	int best = -1;

	for (int t = 0; t < AGENT_T_COUNT; t++)
		if (g->deadline[t] <= now &&
		    (best < 0 || g->deadline[t] < g->deadline[best]))
			best = t;
	return best;
}

/*
 * Late wake-up rule (see the header): if the earliest due deadline is more
 * than Master_Down_Interval / 2 behind now, the loop stalled; every due
 * takeover timer moves to now + Master_Down_Interval instead of firing.
 */
static void
agent_check_stall(struct agent_group *g, double now)
{
	int t = agent_earliest_due(g, now);
	double mdi = agent_mdi(g);
	double late;
	bool deferred = false;

	if (t < 0)
		return;
	late = now - g->deadline[t];
	if (late <= mdi / 2)
		return;
	g->stalls++;
	for (int i = 0; i < AGENT_T_COUNT; i++) {
		if (!agent_timers[i].takeover || g->deadline[i] > now)
			continue;
		g->deadline[i] = now + mdi;
		deferred = true;
	}
	if (deferred)
		log_warnx("vrid %u: woke %.3f s after the %s deadline (loop "
		    "stalled?); not taking over on a stale timer, next check in "
		    "%.3f s", g->cfg.vrid, late, agent_timers[t].name, mdi);
	else
		log_warnx("vrid %u: woke %.3f s after the %s deadline (loop "
		    "stalled?)", g->cfg.vrid, late, agent_timers[t].name);
}

/* Fire the due timers, earliest first. Returns whether any fired. */
static bool
agent_run_timers(struct agent_group *g, double now)
{
	bool fired = false;

	agent_check_stall(g, now);
	for (int round = 0; round < AGENT_TIMER_ROUNDS; round++) {
		int t = agent_earliest_due(g, now);

		if (t < 0)
			break;
		agent_disarm(g, (enum agent_timer)t);
		agent_dispatch(g, agent_timers[t].ev, NULL, NULL, now);
		fired = true;
	}
	return fired;
}

/* After every input: apply priority changes and fire what became due. */
static void
agent_settle(struct agent_group *g, const char *prio_why, double now)
{
	for (int round = 0; round < AGENT_SETTLE_ROUNDS; round++) {
		bool changed = agent_prio_apply(g, prio_why, now);

		prio_why = NULL;
		if (!agent_run_timers(g, now) && !changed)
			break;
	}
}

/* ---- public API -------------------------------------------------------- */

int
agent_group_new(const struct agent_cfg *cfg, const struct agent_ops *ops,
    void *arg, struct agent_group **out)
{
	struct agent_group *g;

	if (cfg->priority < AGENT_PRIO_MIN || cfg->priority > AGENT_PRIO_MAX ||
	    cfg->interval_ms < 1 || cfg->interval_ms > WIRE_INTERVAL_MAX_MS ||
	    (cfg->node.family != AF_INET && cfg->node.family != AF_INET6) ||
	    ops->send_advert == NULL || ops->take_vips == NULL ||
	    ops->release_vips == NULL || ops->announce == NULL)
		return -EINVAL;
	g = calloc(1, sizeof(*g));
	if (g == NULL)
		return -ENOMEM;
	g->cfg = *cfg;
	g->ops = *ops;
	g->arg = arg;
	g->state = AGENT_INIT;
	g->prio = cfg->priority;
	g->takeover_time = -1;
	g->heal_announced = -AGENT_NO_DEADLINE;
	for (int t = 0; t < AGENT_T_COUNT; t++)
		agent_disarm(g, (enum agent_timer)t);
	*out = g;
	return 0;
}

static void
agent_syncgroup_remove(struct agent_syncgroup *sg, const struct agent_group *g)
{
	for (size_t i = 0; i < sg->n; i++) {
		if (sg->members[i] != g)
			continue;
		memmove(&sg->members[i], &sg->members[i + 1],
		    (sg->n - i - 1) * sizeof(sg->members[0]));
		sg->n--;
		return;
	}
}

void
agent_group_free(struct agent_group *g)
{
	if (g == NULL)
		return;
	if (g->sync != NULL)
		agent_syncgroup_remove(g->sync, g);
	free(g);
}

void
agent_start(struct agent_group *g, double now)
{
	const struct agent_group *f = agent_fault_source(g);

	if (f == NULL)
		agent_dispatch(g, AGENT_EV_START, NULL, NULL, now);
	else
		agent_dispatch(g, AGENT_EV_START_FAULT, NULL, f->fault_why, now);
	agent_settle(g, NULL, now);
}

void
agent_shutdown(struct agent_group *g, double now)
{
	agent_dispatch(g, AGENT_EV_SHUTDOWN, NULL, NULL, now);
	agent_settle(g, NULL, now);
}

void
agent_poll(struct agent_group *g, double now)
{
	agent_settle(g, NULL, now);
}

double
agent_next_deadline(const struct agent_group *g)
{
	double d = AGENT_NO_DEADLINE;

	for (int t = 0; t < AGENT_T_COUNT; t++)
		if (g->deadline[t] < d)
			d = g->deadline[t];
	return d;
}

int
agent_rx_advert(struct agent_group *g, const struct wire_advert *a, double now)
{
	enum agent_event ev;
	unsigned suppressed;
	char buf[INET6_ADDRSTRLEN];
	char sbuf[48];

	if (a->group != g->cfg.vrid || a->interval_ms == 0 ||
	    (a->node.family != AF_INET && a->node.family != AF_INET6))
		return -EINVAL;
	g->rx_adverts++;
	if (agent_ip_cmp(&a->node, &g->cfg.node) == 0) {
		g->rx_ignored++;
		if (log_ratelimit_ok(&g->rl_ignored, now, AGENT_LOG_INTERVAL,
		    &suppressed))
			log_warnx("vrid %u: advert carrying our own node address "
			    "%s (looped back, or the peer is misconfigured), "
			    "ignoring%s", g->cfg.vrid,
			    agent_ntop(&a->node, buf, sizeof(buf)),
			    agent_suppressed(suppressed, sbuf, sizeof(sbuf)));
		goto settle;
	}
	if (a->priority == 0) {
		ev = AGENT_EV_RX_PRIO0;
	} else if (a->state != WIRE_STATE_MASTER) {
		/* Only masters advertise; a backup's advert says nothing about who serves. */
		g->rx_ignored++;
		log_debug("vrid %u: advert from %s in state %u, ignoring",
		    g->cfg.vrid, agent_ntop(&a->node, buf, sizeof(buf)),
		    (unsigned)a->state);
		goto settle;
	} else if (agent_beats(g, a->priority, &a->node)) {
		ev = AGENT_EV_RX_LOWER;
	} else {
		ev = AGENT_EV_RX_HIGHER;
	}
	agent_dispatch(g, ev, a, NULL, now);
settle:
	agent_settle(g, NULL, now);
	return 0;
}

void
agent_vips_up(struct agent_group *g, double now)
{
	agent_dispatch(g, AGENT_EV_VIPS_UP, NULL, NULL, now);
	agent_settle(g, NULL, now);
}

int
agent_switchover(struct agent_group *g, double now)
{
	struct agent_syncgroup *sg = g->sync;
	char why[AGENT_WHY_MAX];
	int moved = 0;

	if (sg == NULL) {
		moved = agent_dispatch(g, AGENT_EV_SWITCHOVER, NULL, NULL, now);
	} else {
		snprintf(why, sizeof(why), "switchover, sync group %s",
		    sg->name);
		sg->busy = true;
		for (size_t i = 0; i < sg->n; i++)
			moved += agent_dispatch(sg->members[i],
			    AGENT_EV_SWITCHOVER, NULL, why, now);
		sg->busy = false;
	}
	agent_settle(g, NULL, now);
	return moved > 0 ? 0 : -EINVAL;
}

void
agent_set_faults(struct agent_group *g, unsigned faults, const char *why,
    double now)
{
	struct agent_syncgroup *sg = g->sync;
	bool was = agent_fault_source(g) != NULL;
	bool is;
	enum agent_event ev;
	char swhy[AGENT_WHY_MAX];

	if (why == NULL)
		why = faults > 0 ? "tracked object failed" : "tracking ok";
	g->faults = faults;
	if (faults > 0)
		snprintf(g->fault_why, sizeof(g->fault_why), "%s", why);
	is = agent_fault_source(g) != NULL;
	if (is != was) {
		ev = is ? AGENT_EV_FAULT_ON : AGENT_EV_FAULT_OFF;
		if (sg == NULL) {
			agent_dispatch(g, ev, NULL, why, now);
		} else {
			snprintf(swhy, sizeof(swhy), "sync group %s, vrid %u: %s",
			    sg->name, g->cfg.vrid, why);
			sg->busy = true;
			for (size_t i = 0; i < sg->n; i++)
				agent_dispatch(sg->members[i], ev, NULL,
				    sg->members[i] == g ? why : swhy, now);
			sg->busy = false;
		}
	}
	agent_settle(g, NULL, now);
}

void
agent_set_decrement(struct agent_group *g, unsigned decrement, const char *why,
    double now)
{
	g->decrement = decrement;
	agent_settle(g, why != NULL ? why : "tracking", now);
}

void
agent_set_sync_ready(struct agent_group *g, bool ready, double now)
{
	if (ready != g->sync_ready) {
		g->sync_ready = ready;
		agent_dispatch(g, AGENT_EV_READY_CHANGE, NULL,
		    ready ? "sync ready" : "sync not ready", now);
	}
	agent_settle(g, NULL, now);
}

void
agent_peer_silent(struct agent_group *g, double now)
{
	agent_dispatch(g, AGENT_EV_PEER_SILENT, NULL, NULL, now);
	agent_settle(g, NULL, now);
}

int
agent_inject(struct agent_group *g, enum agent_event ev,
    const struct wire_advert *a, double now)
{
	int r;

	if ((unsigned)ev >= AGENT_EV_COUNT)
		return -EINVAL;
	if ((ev == AGENT_EV_RX_HIGHER || ev == AGENT_EV_RX_LOWER ||
	    ev == AGENT_EV_RX_PRIO0) && a == NULL)
		return -EINVAL;
	r = agent_dispatch(g, ev, a, NULL, now);
	agent_settle(g, NULL, now);
	return r;
}

enum agent_state
agent_state(const struct agent_group *g)
{
	return g->state;
}

uint32_t
agent_vrid(const struct agent_group *g)
{
	return g->cfg.vrid;
}

uint8_t
agent_priority(const struct agent_group *g)
{
	return g->prio;
}

void
agent_info(const struct agent_group *g, struct agent_info *out)
{
	memset(out, 0, sizeof(*out));
	out->vrid = g->cfg.vrid;
	out->state = g->state;
	out->base_priority = g->cfg.priority;
	out->priority = g->prio;
	out->faults = g->faults;
	out->decrement = g->decrement;
	out->fault_active = agent_fault_source(g) != NULL;
	out->demoted = g->send_fail_run >= AGENT_SENDAD_MAX_ERRORS;
	out->sync_ready = g->sync_ready;
	out->vips_up = g->vips_up;
	out->handover = g->handover;
	out->handed_over = g->handed_over;
	out->preempt_pending = agent_armed(g, AGENT_T_PREEMPT);
	out->preempt_at = out->preempt_pending ? g->deadline[AGENT_T_PREEMPT] : 0;
	if (g->state == AGENT_MASTER) {
		out->master_known = true;
		out->master = g->cfg.node;
		out->master_priority = g->prio;
		out->master_interval_ms = g->cfg.interval_ms;
		out->master_last_advert = g->last_advert_sent;
	} else if (g->m.known) {
		out->master_known = true;
		out->master = g->m.addr;
		out->master_priority = g->m.prio;
		out->master_interval_ms = g->m.interval_ms;
		out->master_last_advert = g->m.last;
	}
	out->master_down_interval = agent_mdi(g);
	out->transitions = g->transitions;
	out->last_transition = g->last_transition;
	out->takeover_time = g->takeover_time;
	out->adverts_sent = g->adverts_sent;
	out->advert_errors = g->advert_errors;
	out->rx_adverts = g->rx_adverts;
	out->rx_ignored = g->rx_ignored;
	out->stalls = g->stalls;
}

int
agent_syncgroup_new(const char *name, struct agent_syncgroup **out)
{
	struct agent_syncgroup *sg = calloc(1, sizeof(*sg));

	if (sg == NULL)
		return -ENOMEM;
	snprintf(sg->name, sizeof(sg->name), "%s", name);
	*out = sg;
	return 0;
}

void
agent_syncgroup_free(struct agent_syncgroup *sg)
{
	if (sg == NULL)
		return;
	for (size_t i = 0; i < sg->n; i++)
		sg->members[i]->sync = NULL;
	free(sg);
}

int
agent_syncgroup_add(struct agent_syncgroup *sg, struct agent_group *g)
{
	if (g->sync != NULL || g->state != AGENT_INIT)
		return -EBUSY;
	if (sg->n == AGENT_SYNC_MEMBERS_MAX)
		return -ENOSPC;
	sg->members[sg->n++] = g;
	g->sync = sg;
	return 0;
}

size_t
agent_syncgroup_count(const struct agent_syncgroup *sg)
{
	return sg->n;
}

struct agent_group *
agent_syncgroup_member(const struct agent_syncgroup *sg, size_t i)
{
	return i < sg->n ? sg->members[i] : NULL;
}
