/*
 * Unit tests for agent_fsm: a fake clock (plain doubles passed to every
 * call) and a recording ops struct. Every [state][event] cell of the table
 * is checked against expectations written out here, then each behaviour
 * (timers, preemption, ties, fault, switchover, stalls, sync groups) is
 * driven through the public calls the daemon uses.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <tandem/agent_fsm.h>
#include <tandem/log.h>

#define VRID 51
#define US "198.18.0.1"
#define PEER "198.18.0.2"

/* ---- recording ops ---------------------------------------------------- */

struct rec {
	char log[2048];
	char why[128];           /* the last notify's why */
	int send_result;         /* what send_advert returns */
	unsigned notifies;
};

static void
rec_add(struct rec *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
rec_add(struct rec *r, const char *fmt, ...)
{
	size_t n = strlen(r->log);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->log + n, sizeof(r->log) - n, fmt, ap);
	va_end(ap);
}

static void
rec_clear(struct rec *r)
{
	r->log[0] = '\0';
	r->why[0] = '\0';
}

static int
op_send(const struct agent_group *g, void *arg, uint8_t prio)
{
	struct rec *r = arg;

	rec_add(r, "advert(%u) ", prio);
	return r->send_result;
}

static void
op_take(const struct agent_group *g, void *arg)
{
	rec_add(arg, "take ");
}

static void
op_release(const struct agent_group *g, void *arg)
{
	rec_add(arg, "release ");
}

static void
op_announce(const struct agent_group *g, void *arg)
{
	rec_add(arg, "announce ");
}

static void
op_notify(const struct agent_group *g, void *arg, enum agent_state old,
    enum agent_state new_state, const char *why)
{
	struct rec *r = arg;

	/* The state is already the new one when hooks run. */
	assert_int_equal(agent_state(g), new_state);
	rec_add(r, "notify(%s>%s) ", agent_state_name(old),
	    agent_state_name(new_state));
	snprintf(r->why, sizeof(r->why), "%s", why);
	r->notifies++;
}

static const struct agent_ops ops = {
	.send_advert = op_send,
	.take_vips = op_take,
	.release_vips = op_release,
	.announce = op_announce,
	.notify = op_notify,
};

/* ---- helpers ---------------------------------------------------------- */

static struct wire_ip
ip(const char *text)
{
	struct wire_ip a;

	memset(&a, 0, sizeof(a));
	if (inet_pton(AF_INET, text, a.addr) == 1) {
		a.family = AF_INET;
		a.plen = 32;
	} else {
		assert_int_equal(inet_pton(AF_INET6, text, a.addr), 1);
		a.family = AF_INET6;
		a.plen = 128;
	}
	return a;
}

static struct agent_cfg
cfg_make(uint8_t prio, const char *node)
{
	struct agent_cfg c;

	memset(&c, 0, sizeof(c));
	c.vrid = VRID;
	c.priority = prio;
	c.interval_ms = 1000;
	c.node = ip(node);
	return c;
}

static struct wire_advert
adv(uint8_t prio, enum wire_state st, const char *node, uint32_t interval_ms)
{
	struct wire_advert a;

	memset(&a, 0, sizeof(a));
	a.group = VRID;
	a.priority = prio;
	a.interval_ms = interval_ms;
	a.state = st;
	a.node = ip(node);
	return a;
}

static void
rx(struct agent_group *g, uint8_t prio, const char *node, double now)
{
	struct wire_advert a = adv(prio, WIRE_STATE_MASTER, node, 1000);

	assert_int_equal(agent_rx_advert(g, &a, now), 0);
}

static struct agent_group *
mk(const struct agent_cfg *c, struct rec *r)
{
	struct agent_group *g = NULL;

	memset(r, 0, sizeof(*r));
	assert_int_equal(agent_group_new(c, &ops, r, &g), 0);
	return g;
}

static void
assert_time(double got, double want)
{
	if (fabs(got - want) > 1e-9)
		fail_msg("time %.9f, wanted %.9f", got, want);
}

static void
assert_log(const struct rec *r, const char *want)
{
	if (strcmp(r->log, want) != 0)
		fail_msg("actions \"%s\", wanted \"%s\"", r->log, want);
}

static void
assert_state(const struct agent_group *g, enum agent_state s)
{
	if (agent_state(g) != s)
		fail_msg("state %s, wanted %s", agent_state_name(agent_state(g)),
		    agent_state_name(s));
}

/* Master_Down_Interval for our default interval (1 s) in seconds. */
static double
mdi_s(uint32_t interval_ms, uint8_t prio)
{
	return (double)agent_master_down_ns(interval_ms, prio) / 1e9;
}

/* Start at t=0 and let the master-down timer make us MASTER. */
static double
to_master(struct agent_group *g, struct rec *r, uint8_t prio)
{
	double t = mdi_s(1000, prio);

	agent_start(g, 0);
	assert_state(g, AGENT_BACKUP);
	agent_poll(g, t);
	assert_state(g, AGENT_MASTER);
	rec_clear(r);
	return t;
}

/* ---- arithmetic ------------------------------------------------------- */

static void
test_master_down_arithmetic(void **state)
{
	struct agent_cfg c = cfg_make(100, US);
	struct agent_group *g;
	struct rec r;

	assert_int_equal(agent_skew_ns(1000, 100), 609375000ULL);
	assert_int_equal(agent_skew_ns(1000, 200), 218750000ULL);
	assert_int_equal(agent_skew_ns(100, 100), 60937500ULL);
	assert_int_equal(agent_skew_ns(100, 200), 21875000ULL);
	assert_int_equal(agent_master_down_ns(1000, 100), 3609375000ULL);
	assert_int_equal(agent_master_down_ns(1000, 200), 3218750000ULL);
	assert_int_equal(agent_master_down_ns(100, 100), 360937500ULL);
	assert_int_equal(agent_master_down_ns(100, 200), 321875000ULL);
	/* 60 s at priority 1 must not overflow */
	assert_int_equal(agent_master_down_ns(60000, 1),
	    180000000000ULL + 255ULL * 60000000000ULL / 256);

	/* and the FSM arms exactly that from its own interval ... */
	c.interval_ms = 100;
	g = mk(&c, &r);
	agent_start(g, 0);
	assert_true(agent_next_deadline(g) == 0.3609375);
	agent_group_free(g);

	c = cfg_make(200, US);
	g = mk(&c, &r);
	agent_start(g, 0);
	assert_true(agent_next_deadline(g) == 3.21875);
	/* ... and from the master's, learned from its adverts */
	{
		struct wire_advert a = adv(250, WIRE_STATE_MASTER, PEER, 100);

		assert_int_equal(agent_rx_advert(g, &a, 1), 0);
	}
	assert_time(agent_next_deadline(g), 1 + 0.321875);
	agent_group_free(g);
}

/* ---- every cell of the table ------------------------------------------ */

struct cell {
	bool handled;            /* the table has an edge or an action */
	enum agent_state next;
	const char *acts;
};

#define C(next, acts) { true, (next), (acts) }

/*
 * Expectations for a group of priority 100 (preempt on, delay 0, sync not
 * ready): MASTER reached by the master-down timer, VIPs not yet reported
 * up; RX_* carry a MASTER advert of priority 200, 50 or 0 from the peer.
 * A cell not listed must do nothing at all.
 */
static const struct cell expect[AGENT_STATE_COUNT][AGENT_EV_COUNT] = {
	[AGENT_INIT][AGENT_EV_START] = C(AGENT_BACKUP, "notify(INIT>BACKUP) "),
	[AGENT_INIT][AGENT_EV_START_FAULT] = C(AGENT_FAULT, "notify(INIT>FAULT) "),

	[AGENT_BACKUP][AGENT_EV_SHUTDOWN] = C(AGENT_INIT, "notify(BACKUP>INIT) "),
	[AGENT_BACKUP][AGENT_EV_MASTER_DOWN] =
	    C(AGENT_MASTER, "take advert(100) notify(BACKUP>MASTER) "),
	[AGENT_BACKUP][AGENT_EV_ADVERT_DUE] = C(AGENT_BACKUP, ""),
	[AGENT_BACKUP][AGENT_EV_PREEMPT_DUE] =
	    C(AGENT_MASTER, "take advert(100) notify(BACKUP>MASTER) "),
	[AGENT_BACKUP][AGENT_EV_HOLD_DUE] =
	    C(AGENT_MASTER, "take advert(100) notify(BACKUP>MASTER) "),
	[AGENT_BACKUP][AGENT_EV_RX_HIGHER] = C(AGENT_BACKUP, ""),
	[AGENT_BACKUP][AGENT_EV_RX_LOWER] = C(AGENT_BACKUP, ""),
	[AGENT_BACKUP][AGENT_EV_RX_PRIO0] = C(AGENT_BACKUP, ""),
	[AGENT_BACKUP][AGENT_EV_FAULT_ON] = C(AGENT_FAULT, "notify(BACKUP>FAULT) "),
	[AGENT_BACKUP][AGENT_EV_PRIO_CHANGE] = C(AGENT_BACKUP, ""),
	[AGENT_BACKUP][AGENT_EV_READY_CHANGE] = C(AGENT_BACKUP, ""),
	[AGENT_BACKUP][AGENT_EV_SYNC_MASTER] =
	    C(AGENT_MASTER, "take advert(100) notify(BACKUP>MASTER) "),
	[AGENT_BACKUP][AGENT_EV_PEER_SILENT] = C(AGENT_BACKUP, ""),

	[AGENT_MASTER][AGENT_EV_SHUTDOWN] =
	    C(AGENT_INIT, "advert(0) release notify(MASTER>INIT) "),
	[AGENT_MASTER][AGENT_EV_ADVERT_DUE] = C(AGENT_MASTER, "advert(100) "),
	[AGENT_MASTER][AGENT_EV_RX_HIGHER] =
	    C(AGENT_BACKUP, "release notify(MASTER>BACKUP) "),
	[AGENT_MASTER][AGENT_EV_RX_LOWER] = C(AGENT_MASTER, "advert(100) "),
	[AGENT_MASTER][AGENT_EV_RX_PRIO0] = C(AGENT_MASTER, "advert(100) "),
	[AGENT_MASTER][AGENT_EV_FAULT_ON] =
	    C(AGENT_FAULT, "advert(0) release notify(MASTER>FAULT) "),
	[AGENT_MASTER][AGENT_EV_PRIO_CHANGE] = C(AGENT_MASTER, "advert(100) "),
	[AGENT_MASTER][AGENT_EV_VIPS_UP] = C(AGENT_MASTER, "announce "),
	[AGENT_MASTER][AGENT_EV_SWITCHOVER] =
	    C(AGENT_BACKUP, "advert(0) release notify(MASTER>BACKUP) "),
	[AGENT_MASTER][AGENT_EV_SYNC_BACKUP] =
	    C(AGENT_BACKUP, "release notify(MASTER>BACKUP) "),

	[AGENT_FAULT][AGENT_EV_SHUTDOWN] = C(AGENT_INIT, "notify(FAULT>INIT) "),
	[AGENT_FAULT][AGENT_EV_FAULT_OFF] = C(AGENT_BACKUP, "notify(FAULT>BACKUP) "),
};

static double
reach(struct agent_group *g, struct rec *r, enum agent_state s)
{
	double t = 0;

	switch (s) {
	case AGENT_INIT:
		break;
	case AGENT_BACKUP:
		agent_start(g, 0);
		break;
	case AGENT_MASTER:
		t = to_master(g, r, 100);
		break;
	case AGENT_FAULT:
		agent_set_faults(g, 1, "test fault", 0);
		agent_start(g, 0);
		break;
	case AGENT_STATE_COUNT:
		fail();
	}
	assert_state(g, s);
	rec_clear(r);
	return t;
}

static void
test_every_cell(void **state)
{
	struct wire_advert hi = adv(200, WIRE_STATE_MASTER, PEER, 1000);
	struct wire_advert lo = adv(50, WIRE_STATE_MASTER, PEER, 1000);
	struct wire_advert zero = adv(0, WIRE_STATE_MASTER, PEER, 1000);

	for (int s = 0; s < AGENT_STATE_COUNT; s++) {
		for (int e = 0; e < AGENT_EV_COUNT; e++) {
			const struct cell *want = &expect[s][e];
			enum agent_state next = want->handled ? want->next :
			    (enum agent_state)s;
			const char *acts = want->handled ? want->acts : "";
			struct agent_cfg c = cfg_make(100, US);
			const struct wire_advert *a = NULL;
			struct agent_group *g;
			struct rec r;
			double t;
			int ret;

			c.preempt = true;
			g = mk(&c, &r);
			t = reach(g, &r, (enum agent_state)s);
			if (e == AGENT_EV_RX_HIGHER)
				a = &hi;
			else if (e == AGENT_EV_RX_LOWER)
				a = &lo;
			else if (e == AGENT_EV_RX_PRIO0)
				a = &zero;
			ret = agent_inject(g, (enum agent_event)e, a, t + 0.1);
			if (ret != (want->handled ? 1 : 0) ||
			    agent_state(g) != next || strcmp(r.log, acts) != 0)
				fail_msg("[%s][%s]: returned %d, state %s, actions "
				    "\"%s\"; wanted %d, %s, \"%s\"",
				    agent_state_name((enum agent_state)s),
				    agent_event_name((enum agent_event)e), ret,
				    agent_state_name(agent_state(g)), r.log,
				    want->handled ? 1 : 0, agent_state_name(next),
				    acts);
			/* Only BACKUP and MASTER have timers. */
			if (next == AGENT_INIT || next == AGENT_FAULT)
				assert_true(agent_next_deadline(g) ==
				    AGENT_NO_DEADLINE);
			else
				assert_true(agent_next_deadline(g) > t + 0.1);
			agent_group_free(g);
		}
	}
}

static void
test_inject_checks(void **state)
{
	struct agent_cfg c = cfg_make(100, US);
	struct rec r;
	struct agent_group *g = mk(&c, &r);

	assert_int_equal(agent_inject(g, AGENT_EV_COUNT, NULL, 0), -EINVAL);
	assert_int_equal(agent_inject(g, AGENT_EV_RX_HIGHER, NULL, 0), -EINVAL);
	assert_string_equal(agent_state_name(AGENT_BACKUP), "BACKUP");
	assert_string_equal(agent_state_name(AGENT_STATE_COUNT), "?");
	assert_string_equal(agent_event_name(AGENT_EV_MASTER_DOWN), "MASTER_DOWN");
	assert_string_equal(agent_event_name(AGENT_EV_COUNT), "?");
	agent_group_free(g);
}

/* ---- timers ----------------------------------------------------------- */

/* The peer's sync channel closed: one silent interval is enough; adverts still count. */
static void
test_peer_silent(void **state)
{
	struct agent_cfg c = cfg_make(100, US);
	struct rec r;
	struct agent_group *g = mk(&c, &r);

	agent_start(g, 0);
	rx(g, 200, "198.18.0.2", 1.0);
	assert_true(agent_next_deadline(g) > 4.0);
	agent_peer_silent(g, 1.5);
	assert_time(agent_next_deadline(g), 2.5);
	/* the master is alive after all: the full interval again */
	rx(g, 200, "198.18.0.2", 2.0);
	assert_true(agent_next_deadline(g) > 4.0);
	agent_peer_silent(g, 2.2);
	rec_clear(&r);
	agent_poll(g, 3.2);
	assert_state(g, AGENT_MASTER);
	/* never later than already due */
	agent_group_free(g);
	g = mk(&c, &r);
	agent_start(g, 0);
	agent_peer_silent(g, 3.5);
	assert_time(agent_next_deadline(g), 3.609375);
	agent_group_free(g);
	(void)state;
}

static void
test_startup_takeover(void **state)
{
	struct agent_cfg c = cfg_make(100, US);
	struct agent_info info;
	struct rec r;
	struct agent_group *g = mk(&c, &r);

	assert_true(agent_next_deadline(g) == AGENT_NO_DEADLINE);
	agent_start(g, 0);
	assert_log(&r, "notify(INIT>BACKUP) ");
	assert_true(agent_next_deadline(g) == 3.609375);
	agent_poll(g, 3.609374);
	assert_state(g, AGENT_BACKUP);
	rec_clear(&r);
	agent_poll(g, 3.609375);
	assert_state(g, AGENT_MASTER);
	assert_log(&r, "take advert(100) notify(BACKUP>MASTER) ");
	assert_string_equal(r.why, "master down");
	assert_time(agent_next_deadline(g), 4.609375);
	rec_clear(&r);

	/* no announce before the VIPs are up */
	agent_poll(g, 4.609375);
	assert_log(&r, "advert(100) ");
	rec_clear(&r);
	agent_vips_up(g, 4.7);
	assert_log(&r, "announce ");
	agent_info(g, &info);
	assert_true(info.vips_up);
	assert_time(info.takeover_time, 4.7 - 3.609375);
	assert_true(info.master_known);
	assert_memory_equal(info.master.addr, c.node.addr, 4);
	assert_int_equal(info.master_priority, 100);
	assert_time(info.master_last_advert, 4.609375);
	assert_int_equal(info.adverts_sent, 2);
	assert_int_equal(info.transitions, 2);
	assert_time(info.last_transition, 3.609375);

	rec_clear(&r);
	agent_shutdown(g, 5);
	assert_log(&r, "advert(0) release notify(MASTER>INIT) ");
	assert_true(agent_next_deadline(g) == AGENT_NO_DEADLINE);
	agent_group_free(g);
}

static void
test_backup_follows_master(void **state)
{
	struct agent_cfg c = cfg_make(100, US);
	struct agent_info info;
	struct rec r;
	struct agent_group *g = mk(&c, &r);

	agent_start(g, 0);
	for (int t = 1; t <= 10; t++) {
		rx(g, 200, PEER, t);
		agent_poll(g, t + 0.999);
		assert_state(g, AGENT_BACKUP);
	}
	agent_info(g, &info);
	assert_true(info.master_known);
	assert_memory_equal(info.master.addr, ip(PEER).addr, 4);
	assert_int_equal(info.master_priority, 200);
	assert_time(info.master_last_advert, 10);
	assert_int_equal(info.rx_adverts, 10);
	assert_time(agent_next_deadline(g), 10 + 3.609375);
	agent_poll(g, 10 + 3.609375 - 1e-6);
	assert_state(g, AGENT_BACKUP);
	agent_poll(g, 10 + 3.609375);
	assert_state(g, AGENT_MASTER);
	agent_group_free(g);
}

static void
test_prio0_takeover_after_skew(void **state)
{
	struct wire_advert leave = adv(0, WIRE_STATE_MASTER, PEER, 1000);
	struct agent_cfg c = cfg_make(100, US);
	struct rec r;
	struct agent_group *g = mk(&c, &r);

	agent_start(g, 0);
	rx(g, 200, PEER, 1);
	rx(g, 200, PEER, 2);
	assert_int_equal(agent_rx_advert(g, &leave, 2.5), 0);
	/* Skew only: (256 - 100) / 256 s, not 3 × interval + Skew */
	assert_time(agent_next_deadline(g), 2.5 + 0.609375);
	agent_poll(g, 2.5 + 0.609375 - 1e-6);
	assert_state(g, AGENT_BACKUP);
	agent_poll(g, 2.5 + 0.609375);
	assert_state(g, AGENT_MASTER);
	agent_group_free(g);

	/* a higher priority waits less */
	c = cfg_make(200, US);
	g = mk(&c, &r);
	agent_start(g, 0);
	rx(g, 250, PEER, 1);
	assert_int_equal(agent_rx_advert(g, &leave, 1.5), 0);
	assert_time(agent_next_deadline(g), 1.5 + 0.21875);
	agent_group_free(g);
}

static void
test_prio0_sole_backup_takes_over_at_once(void **state)
{
	struct wire_advert leave = adv(0, WIRE_STATE_MASTER, PEER, 1000);
	struct agent_cfg c = cfg_make(100, US);
	struct rec r;
	struct agent_group *g;

	c.sole_backup = true;
	g = mk(&c, &r);
	agent_start(g, 0);
	rx(g, 200, PEER, 1);
	rec_clear(&r);
	assert_int_equal(agent_rx_advert(g, &leave, 1.5), 0);
	/* no Skew: the pair's only backup has nobody to wait for; it is
	 * MASTER when the advert has been handled, next advert in 1 s */
	assert_state(g, AGENT_MASTER);
	assert_time(agent_next_deadline(g), 2.5);
	agent_group_free(g);
}

static void
test_master_answers_prio0(void **state)
{
	struct wire_advert leave = adv(0, WIRE_STATE_MASTER, PEER, 1000);
	struct agent_cfg c = cfg_make(100, US);
	struct rec r;
	struct agent_group *g = mk(&c, &r);
	double t = to_master(g, &r, 100);

	assert_int_equal(agent_rx_advert(g, &leave, t + 0.2), 0);
	assert_state(g, AGENT_MASTER);
	assert_log(&r, "advert(100) ");
	agent_group_free(g);
}

/* ---- preemption ------------------------------------------------------- */

static struct agent_group *
mk_preempt(struct rec *r, uint32_t delay_ms, bool ready)
{
	struct agent_cfg c = cfg_make(100, US);
	struct agent_group *g;

	c.preempt = true;
	c.preempt_delay_ms = delay_ms;
	g = mk(&c, r);
	agent_set_sync_ready(g, ready, 0);
	agent_start(g, 0);
	rec_clear(r);
	return g;
}

static void
test_preempt_delay(void **state)
{
	struct agent_info info;
	struct rec r;
	struct agent_group *g = mk_preempt(&r, 5000, true);

	for (int t = 1; t <= 5; t++) {
		rx(g, 50, PEER, t);
		agent_poll(g, t + 0.5);
		assert_state(g, AGENT_BACKUP);
	}
	agent_info(g, &info);
	assert_true(info.preempt_pending);
	assert_time(info.preempt_at, 6);       /* from the first lower advert */
	agent_poll(g, 6 - 1e-6);
	assert_state(g, AGENT_BACKUP);
	agent_poll(g, 6);
	assert_state(g, AGENT_MASTER);
	assert_log(&r, "take advert(100) notify(BACKUP>MASTER) ");
	assert_string_equal(r.why, "preempt");
	agent_group_free(g);
}

static void
test_preempt_delay_cancelled(void **state)
{
	struct agent_info info;
	struct rec r;
	struct agent_group *g = mk_preempt(&r, 5000, true);

	rx(g, 50, PEER, 1);
	rx(g, 50, PEER, 2);
	rx(g, 50, PEER, 3);
	rx(g, 200, PEER, 3.5);       /* the peer's priority went up meanwhile */
	agent_info(g, &info);
	assert_false(info.preempt_pending);
	agent_poll(g, 6);
	assert_state(g, AGENT_BACKUP);
	/* lower again: the delay starts again from this advert */
	for (int t = 4; t <= 8; t++)
		rx(g, 50, PEER, t);
	agent_info(g, &info);
	assert_time(info.preempt_at, 9);
	agent_poll(g, 9 - 1e-6);
	assert_state(g, AGENT_BACKUP);
	agent_poll(g, 9);
	assert_state(g, AGENT_MASTER);
	agent_group_free(g);
}

static void
test_preempt_immediate(void **state)
{
	struct rec r;
	struct agent_group *g = mk_preempt(&r, 0, true);

	rx(g, 50, PEER, 1);
	assert_state(g, AGENT_MASTER);
	assert_log(&r, "take advert(100) notify(BACKUP>MASTER) ");
	agent_group_free(g);
}

static void
test_nopreempt(void **state)
{
	struct agent_cfg c = cfg_make(100, US);
	struct rec r;
	struct agent_group *g;

	c.preempt = false;
	g = mk(&c, &r);
	agent_set_sync_ready(g, true, 0);
	agent_start(g, 0);
	for (int t = 1; t <= 100; t++) {
		rx(g, 50, PEER, t);
		agent_poll(g, t + 0.999);
		assert_state(g, AGENT_BACKUP);
	}
	/* the lower master goes away: ordinary master-down */
	agent_poll(g, 100 + 3.609375 - 1e-6);
	assert_state(g, AGENT_BACKUP);
	agent_poll(g, 100 + 3.609375);
	assert_state(g, AGENT_MASTER);
	agent_group_free(g);
}

static void
test_sync_ready_gates_preempt_only(void **state)
{
	struct wire_advert leave = adv(0, WIRE_STATE_MASTER, PEER, 1000);
	struct agent_info info;
	struct rec r;
	struct agent_group *g;

	/* not ready: a lower master is followed, not preempted */
	g = mk_preempt(&r, 0, false);
	for (int t = 1; t <= 5; t++) {
		rx(g, 50, PEER, t);
		assert_state(g, AGENT_BACKUP);
	}
	agent_info(g, &info);
	assert_false(info.preempt_pending);
	agent_set_sync_ready(g, true, 5.5);
	assert_state(g, AGENT_MASTER);
	assert_string_equal(r.why, "preempt");
	agent_group_free(g);

	/* the delay still counts from the first lower advert */
	g = mk_preempt(&r, 10000, false);
	for (int t = 1; t <= 5; t++)
		rx(g, 50, PEER, t);
	agent_set_sync_ready(g, true, 5.5);
	agent_info(g, &info);
	assert_true(info.preempt_pending);
	assert_time(info.preempt_at, 11);
	/* and losing readiness again cancels it */
	agent_set_sync_ready(g, false, 6);
	agent_info(g, &info);
	assert_false(info.preempt_pending);
	for (int t = 7; t <= 12; t++)
		rx(g, 50, PEER, t);
	agent_poll(g, 12.5);
	assert_state(g, AGENT_BACKUP);
	/* ready after the delay is over: at once */
	agent_set_sync_ready(g, true, 12.5);
	assert_state(g, AGENT_MASTER);
	agent_group_free(g);

	/* a dead master is taken over from, ready or not */
	g = mk_preempt(&r, 0, false);
	rx(g, 200, PEER, 1);
	agent_poll(g, 1 + 3.609375);
	assert_state(g, AGENT_MASTER);
	assert_string_equal(r.why, "master down");
	agent_group_free(g);

	/* ... and so is a leaving one */
	g = mk_preempt(&r, 0, false);
	rx(g, 200, PEER, 1);
	assert_int_equal(agent_rx_advert(g, &leave, 2), 0);
	agent_poll(g, 2 + 0.609375);
	assert_state(g, AGENT_MASTER);
	agent_group_free(g);
}

/* ---- ties -------------------------------------------------------------- */

static void
tie_case(const char *us, const char *peer, bool peer_wins)
{
	struct agent_cfg c = cfg_make(100, us);
	struct rec r;
	struct agent_group *g = mk(&c, &r);
	double t = to_master(g, &r, 100);

	/* as MASTER */
	rx(g, 100, peer, t + 0.5);
	if (peer_wins) {
		assert_state(g, AGENT_BACKUP);
		assert_log(&r, "release notify(MASTER>BACKUP) ");
	} else {
		assert_state(g, AGENT_MASTER);
		assert_log(&r, "advert(100) ");
	}
	agent_group_free(g);

	/* as a preempting BACKUP */
	c.preempt = true;
	g = mk(&c, &r);
	agent_set_sync_ready(g, true, 0);
	agent_start(g, 0);
	rx(g, 100, peer, 1);
	assert_state(g, peer_wins ? AGENT_BACKUP : AGENT_MASTER);
	agent_group_free(g);
}

static void
test_tie_break_ipv4(void **state)
{
	tie_case("198.18.0.1", "198.18.0.2", true);
	tie_case("198.18.0.2", "198.18.0.1", false);
	/* bytes, not text: 198.18.1.0 > 198.18.0.255 */
	tie_case("198.18.0.255", "198.18.1.0", true);
	tie_case("198.18.1.0", "198.18.0.255", false);
}

static void
test_tie_break_ipv6(void **state)
{
	tie_case("2001:db8::10", "2001:db8::11", true);
	tie_case("2001:db8::11", "2001:db8::10", false);
	tie_case("2001:db8::ff", "2001:db8::1:0", true);
	tie_case("2001:db8::1:0", "2001:db8::ff", false);
}

/* ---- fault --------------------------------------------------------------- */

static void
test_fault_from_init(void **state)
{
	struct agent_cfg c = cfg_make(100, US);
	struct agent_info info;
	struct rec r;
	struct agent_group *g = mk(&c, &r);

	agent_set_faults(g, 1, "link eth1 down", 0);
	assert_state(g, AGENT_INIT);
	assert_log(&r, "");
	agent_start(g, 1);
	assert_state(g, AGENT_FAULT);
	assert_log(&r, "notify(INIT>FAULT) ");
	assert_string_equal(r.why, "link eth1 down");
	agent_info(g, &info);
	assert_true(info.fault_active);
	assert_int_equal(info.faults, 1);
	rec_clear(&r);
	agent_set_faults(g, 0, "link eth1 up", 2);
	assert_state(g, AGENT_BACKUP);
	assert_log(&r, "notify(FAULT>BACKUP) ");
	assert_string_equal(r.why, "link eth1 up");
	assert_time(agent_next_deadline(g), 2 + 3.609375);
	agent_group_free(g);
}

static void
test_fault_from_backup(void **state)
{
	struct agent_cfg c = cfg_make(100, US);
	struct rec r;
	struct agent_group *g = mk(&c, &r);

	agent_start(g, 0);
	rx(g, 200, PEER, 1);
	rec_clear(&r);
	agent_set_faults(g, 1, NULL, 2);
	assert_state(g, AGENT_FAULT);
	assert_log(&r, "notify(BACKUP>FAULT) ");
	assert_true(agent_next_deadline(g) == AGENT_NO_DEADLINE);
	/* adverts are ignored in FAULT */
	rec_clear(&r);
	rx(g, 50, PEER, 3);
	assert_state(g, AGENT_FAULT);
	assert_log(&r, "");
	/* a second tracked object: still one FAULT; both must clear */
	agent_set_faults(g, 2, "pool web down", 4);
	agent_set_faults(g, 1, "link eth1 up", 5);
	assert_state(g, AGENT_FAULT);
	assert_log(&r, "");
	agent_set_faults(g, 0, "pool web up", 6);
	assert_state(g, AGENT_BACKUP);
	assert_time(agent_next_deadline(g), 6 + 3.609375);
	/* normal election again */
	agent_poll(g, 6 + 3.609375);
	assert_state(g, AGENT_MASTER);
	agent_group_free(g);
}

static void
test_fault_from_master(void **state)
{
	struct agent_cfg c = cfg_make(100, US);
	struct rec r;
	struct agent_group *g = mk(&c, &r);
	double t = to_master(g, &r, 100);

	agent_vips_up(g, t);
	rec_clear(&r);
	agent_set_faults(g, 1, "link eth1 down", t + 1);
	assert_state(g, AGENT_FAULT);
	/* priority 0 so the peer takes over after Skew, then the VIPs go */
	assert_log(&r, "advert(0) release notify(MASTER>FAULT) ");
	assert_true(agent_next_deadline(g) == AGENT_NO_DEADLINE);
	rec_clear(&r);
	agent_set_faults(g, 0, NULL, t + 2);
	assert_state(g, AGENT_BACKUP);
	assert_log(&r, "notify(FAULT>BACKUP) ");
	/* the peer is MASTER now and beats us: we stay BACKUP */
	rx(g, 200, PEER, t + 2.5);
	agent_poll(g, t + 2.5 + 3);
	assert_state(g, AGENT_BACKUP);
	rec_clear(&r);
	agent_shutdown(g, t + 6);
	assert_log(&r, "notify(BACKUP>INIT) ");
	agent_group_free(g);
}

static void
test_fault_shutdown(void **state)
{
	struct agent_cfg c = cfg_make(100, US);
	struct rec r;
	struct agent_group *g = mk(&c, &r);

	agent_start(g, 0);
	agent_set_faults(g, 1, NULL, 1);
	rec_clear(&r);
	agent_shutdown(g, 2);
	assert_state(g, AGENT_INIT);
	assert_log(&r, "notify(FAULT>INIT) ");
	/* restart with the fault still there: FAULT directly */
	rec_clear(&r);
	agent_start(g, 3);
	assert_log(&r, "notify(INIT>FAULT) ");
	agent_group_free(g);
}

/* ---- switchover ------------------------------------------------------ */

static void
test_switchover(void **state)
{
	struct agent_cfg c = cfg_make(200, US);
	struct agent_info info;
	struct rec r;
	struct agent_group *g;
	double t;

	c.preempt = true;
	g = mk(&c, &r);
	agent_set_sync_ready(g, true, 0);
	t = to_master(g, &r, 200);
	agent_vips_up(g, t);
	rec_clear(&r);

	assert_int_equal(agent_switchover(g, 10), 0);
	assert_state(g, AGENT_BACKUP);
	assert_log(&r, "advert(0) release notify(MASTER>BACKUP) ");
	assert_string_equal(r.why, "switchover");
	agent_info(g, &info);
	assert_true(info.handover);
	/* priority 0 again every interval until the peer shows up */
	assert_time(agent_next_deadline(g), 11);
	rec_clear(&r);
	agent_poll(g, 11);
	assert_log(&r, "advert(0) ");
	rec_clear(&r);
	/* the peer took over (after its Skew) and advertises, lower than us */
	rx(g, 100, PEER, 11.5);
	assert_state(g, AGENT_BACKUP);
	agent_info(g, &info);
	assert_false(info.handover);
	assert_true(info.handed_over);
	assert_false(info.preempt_pending);
	assert_time(agent_next_deadline(g), 11.5 + 3.21875);
	/* we would preempt it, but do not: the switchover sticks */
	for (int s = 12; s <= 40; s++) {
		rx(g, 100, PEER, s);
		agent_poll(g, s + 0.9);
		assert_state(g, AGENT_BACKUP);
	}
	assert_log(&r, "");
	/* the peer dies: ordinary takeover; then normal rules again */
	agent_poll(g, 40 + 3.21875);
	assert_state(g, AGENT_MASTER);
	agent_info(g, &info);
	assert_false(info.handed_over);
	agent_group_free(g);
}

static void
test_switchover_hold_expires(void **state)
{
	struct agent_cfg c = cfg_make(200, US);
	struct rec r;
	struct agent_group *g = mk(&c, &r);

	to_master(g, &r, 200);
	assert_int_equal(agent_switchover(g, 10), 0);
	rec_clear(&r);
	/* nobody takes over: prio-0 adverts at 11, 12, 13, hold over at 10 + MDI */
	agent_poll(g, 11);
	agent_poll(g, 12);
	agent_poll(g, 13);
	assert_log(&r, "advert(0) advert(0) advert(0) ");
	assert_time(agent_next_deadline(g), 10 + 3.21875);
	agent_poll(g, 10 + 3.21875 - 1e-6);
	assert_state(g, AGENT_BACKUP);
	rec_clear(&r);
	agent_poll(g, 10 + 3.21875);
	assert_state(g, AGENT_MASTER);
	assert_log(&r, "take advert(200) notify(BACKUP>MASTER) ");
	assert_string_equal(r.why, "switchover: no master took over");
	agent_group_free(g);

	/* a configured hold */
	c.switchover_hold_ms = 10000;
	g = mk(&c, &r);
	to_master(g, &r, 200);
	assert_int_equal(agent_switchover(g, 10), 0);
	for (int s = 11; s < 20; s++)
		agent_poll(g, s);
	assert_state(g, AGENT_BACKUP);
	agent_poll(g, 20);
	assert_state(g, AGENT_MASTER);
	agent_group_free(g);
}

static void
test_switchover_not_master(void **state)
{
	struct agent_cfg c = cfg_make(100, US);
	struct rec r;
	struct agent_group *g = mk(&c, &r);

	assert_int_equal(agent_switchover(g, 0), -EINVAL);
	agent_start(g, 0);
	rec_clear(&r);
	assert_int_equal(agent_switchover(g, 1), -EINVAL);
	assert_state(g, AGENT_BACKUP);
	assert_log(&r, "");
	agent_group_free(g);
}

/* ---- effective priority --------------------------------------------------- */

static void
test_prio_change_master(void **state)
{
	struct agent_cfg c = cfg_make(100, US);
	struct rec r;
	struct agent_group *g = mk(&c, &r);
	double t = to_master(g, &r, 100);

	agent_set_decrement(g, 30, "pool web degraded", t + 0.1);
	assert_int_equal(agent_priority(g), 70);
	assert_log(&r, "advert(70) ");
	rec_clear(&r);
	agent_set_decrement(g, 30, NULL, t + 0.2);   /* no change, no advert */
	assert_log(&r, "");
	/* the peer (80) now beats us and preempts: we yield */
	rx(g, 80, PEER, t + 0.3);
	assert_state(g, AGENT_BACKUP);
	agent_set_decrement(g, 500, NULL, t + 0.4);
	assert_int_equal(agent_priority(g), AGENT_PRIO_MIN);
	agent_group_free(g);

	c = cfg_make(254, US);
	g = mk(&c, &r);
	assert_int_equal(agent_priority(g), 254);
	agent_set_decrement(g, 254, NULL, 0);
	assert_int_equal(agent_priority(g), 1);
	agent_group_free(g);
}

static void
test_prio_change_backup(void **state)
{
	struct agent_info info;
	struct rec r;
	struct agent_group *g = mk_preempt(&r, 0, true);

	agent_set_decrement(g, 20, NULL, 0.5);     /* 80 */
	rx(g, 90, PEER, 1);
	rx(g, 90, PEER, 2);
	assert_state(g, AGENT_BACKUP);
	rec_clear(&r);
	agent_set_decrement(g, 0, "pool web healthy", 2.5);   /* 100 > 90 */
	assert_state(g, AGENT_MASTER);
	assert_log(&r, "take advert(100) notify(BACKUP>MASTER) ");
	assert_string_equal(r.why, "preempt");
	agent_group_free(g);

	/* and a drop below the master cancels a pending preemption */
	g = mk_preempt(&r, 5000, true);
	rx(g, 90, PEER, 1);
	agent_info(g, &info);
	assert_true(info.preempt_pending);
	agent_set_decrement(g, 20, NULL, 2);
	agent_info(g, &info);
	assert_false(info.preempt_pending);
	for (int t = 2; t <= 10; t++)
		rx(g, 90, PEER, t);
	assert_state(g, AGENT_BACKUP);
	agent_group_free(g);
}

static void
test_send_errors_demote(void **state)
{
	struct agent_cfg c = cfg_make(100, US);
	struct agent_info info;
	struct rec r;
	struct agent_group *g = mk(&c, &r);
	double t = to_master(g, &r, 100);

	r.send_result = -ENOBUFS;
	agent_poll(g, t + 1);
	agent_poll(g, t + 2);
	assert_int_equal(agent_priority(g), 100);
	agent_poll(g, t + 3);
	/* the third failure demotes; the new priority is advertised at once */
	assert_int_equal(agent_priority(g), AGENT_PRIO_MIN);
	assert_log(&r, "advert(100) advert(100) advert(100) advert(1) ");
	agent_info(g, &info);
	assert_true(info.demoted);
	assert_int_equal(info.advert_errors, 4);
	/* the peer (50) that took over meanwhile now wins */
	rx(g, 50, PEER, t + 3.5);
	assert_state(g, AGENT_BACKUP);
	/* sending works again once MASTER: demotion lifted, priority back */
	r.send_result = 0;
	rec_clear(&r);
	agent_poll(g, t + 3.5 + mdi_s(1000, 1));
	assert_state(g, AGENT_MASTER);
	assert_log(&r, "take advert(1) notify(BACKUP>MASTER) advert(100) ");
	assert_int_equal(agent_priority(g), 100);
	agent_info(g, &info);
	assert_false(info.demoted);
	agent_group_free(g);
}

/* ---- partition healed ------------------------------------------------- */

static void
test_partition_heal(void **state)
{
	struct agent_cfg c = cfg_make(200, US);
	struct rec r;
	struct agent_group *g = mk(&c, &r);
	double t = to_master(g, &r, 200);

	agent_vips_up(g, t);
	rec_clear(&r);
	rx(g, 100, PEER, t + 0.1);
	assert_state(g, AGENT_MASTER);
	assert_log(&r, "advert(200) announce ");
	rec_clear(&r);
	/* the other side has not yielded yet: answer, no second burst so soon */
	rx(g, 100, PEER, t + 0.5);
	assert_log(&r, "advert(200) ");
	agent_poll(g, t + 1);
	agent_poll(g, t + 2);
	agent_poll(g, t + 3);
	rec_clear(&r);
	rx(g, 100, PEER, t + 0.1 + 3.21875);
	assert_log(&r, "advert(200) announce ");
	agent_group_free(g);
}

/* ---- late wake-up ------------------------------------------------------ */

static void
test_stall_backup(void **state)
{
	struct agent_cfg c = cfg_make(100, US);
	struct agent_info info;
	struct rec r;
	struct agent_group *g = mk(&c, &r);

	agent_start(g, 0);
	for (int t = 1; t <= 10; t++)
		rx(g, 200, PEER, t);
	/* deadline 13.609375; woken at 20: 6.4 s late > 3.609375 / 2 */
	agent_poll(g, 20);
	assert_state(g, AGENT_BACKUP);
	agent_info(g, &info);
	assert_int_equal(info.stalls, 1);
	assert_time(agent_next_deadline(g), 20 + 3.609375);
	/* the master's advert, queued during the stall, is read now */
	rx(g, 200, PEER, 20.001);
	assert_state(g, AGENT_BACKUP);
	assert_time(agent_next_deadline(g), 20.001 + 3.609375);
	agent_group_free(g);

	/* a master that is really gone is found one interval later */
	g = mk(&c, &r);
	agent_start(g, 0);
	rx(g, 200, PEER, 10);
	agent_poll(g, 20);
	assert_state(g, AGENT_BACKUP);
	agent_poll(g, 20 + 3.609375 - 1e-6);
	assert_state(g, AGENT_BACKUP);
	agent_poll(g, 20 + 3.609375);
	assert_state(g, AGENT_MASTER);
	agent_info(g, &info);
	assert_int_equal(info.stalls, 1);
	agent_group_free(g);

	/* late, but less than half the interval: an ordinary takeover */
	g = mk(&c, &r);
	agent_start(g, 0);
	rx(g, 200, PEER, 10);
	agent_poll(g, 10 + 3.609375 + 1.8);
	assert_state(g, AGENT_MASTER);
	agent_info(g, &info);
	assert_int_equal(info.stalls, 0);
	agent_group_free(g);
}

static void
test_stall_master_and_preempt(void **state)
{
	struct agent_cfg c = cfg_make(100, US);
	struct agent_info info;
	struct rec r;
	struct agent_group *g = mk(&c, &r);
	double t = to_master(g, &r, 100);

	/* a MASTER that stalls still advertises at once, and logs it */
	agent_poll(g, t + 10);
	assert_state(g, AGENT_MASTER);
	assert_log(&r, "advert(100) ");
	agent_info(g, &info);
	assert_int_equal(info.stalls, 1);
	assert_time(agent_next_deadline(g), t + 11);
	agent_group_free(g);

	/* a preemption due during a stall waits for fresh adverts too */
	g = mk_preempt(&r, 2000, true);
	rx(g, 50, PEER, 1);
	agent_poll(g, 10);        /* preempt was due at 3 */
	assert_state(g, AGENT_BACKUP);
	rx(g, 50, PEER, 10.1);
	agent_poll(g, 10 + 3.609375);
	assert_state(g, AGENT_MASTER);
	agent_group_free(g);
}

/* ---- sync groups ------------------------------------------------------- */

struct pair {
	struct agent_syncgroup *sg;
	struct agent_group *a, *b;
	struct rec ra, rb;
};

static void
pair_make(struct pair *p)
{
	struct agent_cfg ca = cfg_make(100, US);
	struct agent_cfg cb = cfg_make(100, US);

	cb.vrid = 52;
	p->a = mk(&ca, &p->ra);
	p->b = mk(&cb, &p->rb);
	assert_int_equal(agent_syncgroup_new("gw", &p->sg), 0);
	assert_int_equal(agent_syncgroup_add(p->sg, p->a), 0);
	assert_int_equal(agent_syncgroup_add(p->sg, p->b), 0);
	assert_int_equal(agent_syncgroup_add(p->sg, p->b), -EBUSY);
	assert_int_equal(agent_syncgroup_count(p->sg), 2);
	assert_ptr_equal(agent_syncgroup_member(p->sg, 1), p->b);
	assert_null(agent_syncgroup_member(p->sg, 2));
}

static void
pair_free(struct pair *p)
{
	agent_syncgroup_free(p->sg);
	agent_group_free(p->a);
	agent_group_free(p->b);
}

static void
test_syncgroup_master_backup(void **state)
{
	struct wire_advert hi = adv(200, WIRE_STATE_MASTER, PEER, 1000);
	struct agent_info ia, ib;
	struct pair p;

	pair_make(&p);
	agent_start(p.a, 0);
	agent_start(p.b, 0.5);
	rec_clear(&p.ra);
	rec_clear(&p.rb);
	agent_poll(p.a, 3.609375);
	assert_state(p.a, AGENT_MASTER);
	assert_state(p.b, AGENT_MASTER);
	assert_log(&p.rb, "take advert(100) notify(BACKUP>MASTER) ");
	assert_string_equal(p.ra.why, "master down");
	assert_string_equal(p.rb.why, "sync group gw, vrid 51");
	/* b's own timer, armed at start, was replaced */
	assert_time(agent_next_deadline(p.b), 3.609375 + 1);

	/* a loses to a higher master: b follows; b's move does not bounce */
	rec_clear(&p.ra);
	rec_clear(&p.rb);
	assert_int_equal(agent_rx_advert(p.a, &hi, 4), 0);
	assert_state(p.a, AGENT_BACKUP);
	assert_state(p.b, AGENT_BACKUP);
	assert_log(&p.ra, "release notify(MASTER>BACKUP) ");
	assert_log(&p.rb, "release notify(MASTER>BACKUP) ");
	assert_string_equal(p.rb.why, "sync group gw, vrid 51");
	agent_info(p.a, &ia);
	agent_info(p.b, &ib);
	assert_int_equal(ia.transitions, 3);
	assert_int_equal(ib.transitions, 3);

	/* b's master-down drives a; b moving back to BACKUP drives a too */
	hi.group = 52;
	agent_poll(p.b, 4 + 3.609375);
	assert_state(p.a, AGENT_MASTER);
	assert_state(p.b, AGENT_MASTER);
	assert_string_equal(p.ra.why, "sync group gw, vrid 52");
	assert_int_equal(agent_rx_advert(p.b, &hi, 9), 0);
	assert_state(p.a, AGENT_BACKUP);
	assert_state(p.b, AGENT_BACKUP);
	pair_free(&p);
}

static void
test_syncgroup_fault(void **state)
{
	struct pair p;

	pair_make(&p);
	agent_start(p.a, 0);
	agent_start(p.b, 0);
	agent_poll(p.a, 3.609375);
	assert_state(p.b, AGENT_MASTER);
	rec_clear(&p.rb);

	agent_set_faults(p.a, 1, "link eth1 down", 5);
	assert_state(p.a, AGENT_FAULT);
	assert_state(p.b, AGENT_FAULT);
	assert_log(&p.rb, "advert(0) release notify(MASTER>FAULT) ");
	assert_string_equal(p.rb.why, "sync group gw, vrid 51: link eth1 down");
	agent_set_faults(p.b, 1, "link eth2 down", 6);
	agent_set_faults(p.a, 0, "link eth1 up", 7);
	/* b is still faulty: nobody leaves FAULT */
	assert_state(p.a, AGENT_FAULT);
	assert_state(p.b, AGENT_FAULT);
	agent_set_faults(p.b, 0, "link eth2 up", 8);
	assert_state(p.a, AGENT_BACKUP);
	assert_state(p.b, AGENT_BACKUP);
	assert_string_equal(p.ra.why, "sync group gw, vrid 52: link eth2 up");

	/* a member started while another is faulty starts in FAULT */
	agent_shutdown(p.a, 9);
	agent_shutdown(p.b, 9);
	agent_set_faults(p.a, 1, "link eth1 down", 10);
	agent_start(p.b, 11);
	assert_state(p.b, AGENT_FAULT);
	assert_string_equal(p.rb.why, "link eth1 down");
	pair_free(&p);
}

static void
test_syncgroup_switchover(void **state)
{
	struct agent_info ia, ib;
	struct pair p;

	pair_make(&p);
	agent_start(p.a, 0);
	agent_start(p.b, 0);
	agent_poll(p.a, 3.609375);
	rec_clear(&p.ra);
	rec_clear(&p.rb);
	assert_int_equal(agent_switchover(p.b, 10), 0);
	assert_state(p.a, AGENT_BACKUP);
	assert_state(p.b, AGENT_BACKUP);
	/* each member hands over itself: both send priority 0 */
	assert_log(&p.ra, "advert(0) release notify(MASTER>BACKUP) ");
	assert_log(&p.rb, "advert(0) release notify(MASTER>BACKUP) ");
	agent_info(p.a, &ia);
	agent_info(p.b, &ib);
	assert_true(ia.handover);
	assert_true(ib.handover);
	pair_free(&p);
}

static void
test_syncgroup_membership(void **state)
{
	struct agent_syncgroup *sg;
	struct agent_cfg c = cfg_make(100, US);
	struct rec r1, r2;
	struct agent_group *g1 = mk(&c, &r1);
	struct agent_group *g2 = mk(&c, &r2);

	assert_int_equal(agent_syncgroup_new("a-very-long-sync-group-name-that-"
	    "is-truncated", &sg), 0);
	agent_start(g2, 0);
	assert_int_equal(agent_syncgroup_add(sg, g2), -EBUSY);   /* running */
	assert_int_equal(agent_syncgroup_add(sg, g1), 0);
	agent_group_free(g1);                  /* leaves the sync group */
	assert_int_equal(agent_syncgroup_count(sg), 0);
	agent_syncgroup_free(sg);
	agent_syncgroup_free(NULL);
	agent_group_free(g2);
	agent_group_free(NULL);
}

/* ---- input checks, ignored adverts, log line ------------------------------ */

static void
test_new_rejects(void **state)
{
	struct agent_cfg c = cfg_make(100, US);
	struct agent_ops o = ops;
	struct agent_group *g = NULL;
	struct rec r;

	c.priority = 0;
	assert_int_equal(agent_group_new(&c, &ops, NULL, &g), -EINVAL);
	c.priority = 255;
	assert_int_equal(agent_group_new(&c, &ops, NULL, &g), -EINVAL);
	c = cfg_make(100, US);
	c.interval_ms = 0;
	assert_int_equal(agent_group_new(&c, &ops, NULL, &g), -EINVAL);
	c.interval_ms = WIRE_INTERVAL_MAX_MS + 1;
	assert_int_equal(agent_group_new(&c, &ops, NULL, &g), -EINVAL);
	c = cfg_make(100, US);
	c.node.family = AF_UNIX;
	assert_int_equal(agent_group_new(&c, &ops, NULL, &g), -EINVAL);
	c = cfg_make(100, US);
	o.announce = NULL;
	assert_int_equal(agent_group_new(&c, &o, NULL, &g), -EINVAL);
	o = ops;
	o.notify = NULL;         /* optional */
	memset(&r, 0, sizeof(r));
	assert_int_equal(agent_group_new(&c, &o, &r, &g), 0);
	agent_start(g, 0);
	agent_poll(g, 4);
	assert_state(g, AGENT_MASTER);
	agent_group_free(g);
}

static void
test_rx_ignored(void **state)
{
	struct agent_cfg c = cfg_make(100, US);
	struct wire_advert a;
	struct agent_info info;
	struct rec r;
	struct agent_group *g = mk(&c, &r);
	double t = to_master(g, &r, 100);

	/* our own address (multicast loop, or a peer configured like us) */
	a = adv(200, WIRE_STATE_MASTER, US, 1000);
	assert_int_equal(agent_rx_advert(g, &a, t + 0.1), 0);
	/* a sender that is not MASTER says nothing about who serves */
	a = adv(200, WIRE_STATE_BACKUP, PEER, 1000);
	assert_int_equal(agent_rx_advert(g, &a, t + 0.2), 0);
	assert_state(g, AGENT_MASTER);
	assert_log(&r, "");
	agent_info(g, &info);
	assert_int_equal(info.rx_adverts, 2);
	assert_int_equal(info.rx_ignored, 2);
	/* not ours, or malformed: refused, not counted */
	a = adv(200, WIRE_STATE_MASTER, PEER, 1000);
	a.group = 52;
	assert_int_equal(agent_rx_advert(g, &a, t + 0.3), -EINVAL);
	a.group = VRID;
	a.node.family = 0;
	assert_int_equal(agent_rx_advert(g, &a, t + 0.3), -EINVAL);
	agent_info(g, &info);
	assert_int_equal(info.rx_adverts, 2);
	agent_group_free(g);
}

static void
test_log_line(void **state)
{
	struct agent_cfg c = cfg_make(100, US);
	struct rec r;
	struct agent_group *g = mk(&c, &r);
	char path[] = "/tmp/test_agent_fsm.XXXXXX";
	char buf[4096];
	int fd = mkstemp(path);
	int saved = dup(STDERR_FILENO);
	ssize_t n;

	assert_true(fd >= 0 && saved >= 0);
	unlink(path);
	log_init(LOG_LVL_INFO, 0, "test");
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	agent_start(g, 0);
	agent_poll(g, 3.609375);
	agent_set_faults(g, 1, "link eth1 down", 4);
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "vrid 51: INIT→BACKUP (start)\n"));
	assert_non_null(strstr(buf, "vrid 51: BACKUP→MASTER (master down)\n"));
	assert_non_null(strstr(buf, "vrid 51: MASTER→FAULT (link eth1 down)\n"));
	log_init(LOG_LVL_WARN, 0, "test_agent_fsm");
	agent_group_free(g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_log_line),
		cmocka_unit_test(test_master_down_arithmetic),
		cmocka_unit_test(test_every_cell),
		cmocka_unit_test(test_inject_checks),
		cmocka_unit_test(test_startup_takeover),
		cmocka_unit_test(test_peer_silent),
		cmocka_unit_test(test_backup_follows_master),
		cmocka_unit_test(test_prio0_takeover_after_skew),
		cmocka_unit_test(test_prio0_sole_backup_takes_over_at_once),
		cmocka_unit_test(test_master_answers_prio0),
		cmocka_unit_test(test_preempt_delay),
		cmocka_unit_test(test_preempt_delay_cancelled),
		cmocka_unit_test(test_preempt_immediate),
		cmocka_unit_test(test_nopreempt),
		cmocka_unit_test(test_sync_ready_gates_preempt_only),
		cmocka_unit_test(test_tie_break_ipv4),
		cmocka_unit_test(test_tie_break_ipv6),
		cmocka_unit_test(test_fault_from_init),
		cmocka_unit_test(test_fault_from_backup),
		cmocka_unit_test(test_fault_from_master),
		cmocka_unit_test(test_fault_shutdown),
		cmocka_unit_test(test_switchover),
		cmocka_unit_test(test_switchover_hold_expires),
		cmocka_unit_test(test_switchover_not_master),
		cmocka_unit_test(test_prio_change_master),
		cmocka_unit_test(test_prio_change_backup),
		cmocka_unit_test(test_send_errors_demote),
		cmocka_unit_test(test_partition_heal),
		cmocka_unit_test(test_stall_backup),
		cmocka_unit_test(test_stall_master_and_preempt),
		cmocka_unit_test(test_syncgroup_master_backup),
		cmocka_unit_test(test_syncgroup_fault),
		cmocka_unit_test(test_syncgroup_switchover),
		cmocka_unit_test(test_syncgroup_membership),
		cmocka_unit_test(test_new_rejects),
		cmocka_unit_test(test_rx_ignored),
	};

	log_init(LOG_LVL_WARN, 0, "test_agent_fsm");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
