/* hc — see include/tandem/health.h */
#include "health-int.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#define HC_SWEEP_S 0.1           /* passive sweep period, as the contract says */
#define HC_RECLAIM_S 1.0         /* housekeeping period when passive is off */
#define HC_RAMP_MIN_STEP_S 0.1   /* slow start never updates faster than this */
#define HC_RAMP_STEPS 20         /* ... nor in more steps than this */
#define HC_PASSIVE_HOLD_MS 10000 /* passive-only retry, nginx fail_timeout default */
#define HC_LOCAL_LOG_S 10.0      /* local check errors: one line per 10 s */

/* What can happen to a server's state; see hc_fsm. */
enum hc_event {
	HC_EV_HEALTHY = 0,    /* verdict turned healthy (rise passes, passive hold over) */
	HC_EV_UNHEALTHY,      /* verdict turned unhealthy (fall failures) */
	HC_EV_PASSIVE,        /* workers saw passive_fails connect failures in a row */
	HC_EV_READY_OK,       /* operator "ready", verdict healthy */
	HC_EV_READY_BAD,      /* operator "ready", verdict unhealthy */
	HC_EV_DRAIN,          /* operator "drain" */
	HC_EV_MAINT,          /* operator "maint" */
	HC_EV_COUNT
};

struct hc_edge {
	unsigned char change;  /* 0 (the default): the event leaves the state alone */
	unsigned char next;    /* enum bal_state */
	unsigned char ramp;    /* entering UP this way starts slow start */
};

/*
 *              healthy    unhealthy   ready ok   ready bad   drain   maint
 *                         passive
 *   UP         .          DOWN        .          DOWN        DRAIN   MAINT
 *   DOWN       UP ramp    .           UP ramp    .           DRAIN   MAINT
 *   DRAIN      .          .           UP         DOWN        .       MAINT
 *   MAINT      .          .           UP ramp    DOWN        DRAIN   .
 *
 * Checks never move DRAIN or MAINT: those are the operator's. UP with an
 * unhealthy verdict cannot happen (the verdict change took it DOWN), the
 * ready-bad edge from UP is there for completeness.
 */
static const struct hc_edge hc_fsm[BAL_STATE_COUNT][HC_EV_COUNT] = {
	[BAL_UP][HC_EV_UNHEALTHY] = { 1, BAL_DOWN, 0 },
	[BAL_UP][HC_EV_PASSIVE] = { 1, BAL_DOWN, 0 },
	[BAL_UP][HC_EV_READY_BAD] = { 1, BAL_DOWN, 0 },
	[BAL_UP][HC_EV_DRAIN] = { 1, BAL_DRAIN, 0 },
	[BAL_UP][HC_EV_MAINT] = { 1, BAL_MAINT, 0 },
	[BAL_DOWN][HC_EV_HEALTHY] = { 1, BAL_UP, 1 },
	[BAL_DOWN][HC_EV_READY_OK] = { 1, BAL_UP, 1 },
	[BAL_DOWN][HC_EV_DRAIN] = { 1, BAL_DRAIN, 0 },
	[BAL_DOWN][HC_EV_MAINT] = { 1, BAL_MAINT, 0 },
	[BAL_DRAIN][HC_EV_READY_OK] = { 1, BAL_UP, 0 },
	[BAL_DRAIN][HC_EV_READY_BAD] = { 1, BAL_DOWN, 0 },
	[BAL_DRAIN][HC_EV_MAINT] = { 1, BAL_MAINT, 0 },
	[BAL_MAINT][HC_EV_READY_OK] = { 1, BAL_UP, 1 },
	[BAL_MAINT][HC_EV_READY_BAD] = { 1, BAL_DOWN, 0 },
	[BAL_MAINT][HC_EV_DRAIN] = { 1, BAL_DRAIN, 0 },
};

/* bal.h wants monotonic seconds; ev_now() follows the wall clock. */
static double
hc_now(void)
{
	return (double)hc_now_ns() / 1e9;
}

/* splitmix64: jitter needs spread, not secrecy. */
static uint64_t
hc_rand(struct hc *hc)
{
	uint64_t z = (hc->rng += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double
hc_unit(struct hc *hc)
{
	return (double)(hc_rand(hc) >> 11) * 0x1.0p-53;
}

/* interval ± jitter_pct, drawn anew each round. */
static double
hc_next_delay(struct hc *hc)
{
	double span = hc->interval_s * hc->cfg.jitter_pct / 100.0;
	double d = hc->interval_s - span + 2.0 * span * hc_unit(hc);

	return d > 0.001 ? d : 0.001;
}

void
hc_schedule(struct hc_check *chk, double delay)
{
	struct ev_loop *loop = chk->hc->loop;

	ev_timer_stop(loop, &chk->timer);
	ev_timer_set(&chk->timer, delay, 0.);
	ev_timer_start(loop, &chk->timer);
}

/* ---- slow start ---- */

static unsigned
hc_ramp_weight(unsigned weight, double elapsed, double span)
{
	unsigned w0 = weight / 10 > 0 ? weight / 10 : 1;

	if (weight <= w0 || elapsed >= span)
		return weight;
	if (elapsed < 0)
		elapsed = 0;
	return w0 + (unsigned)((double)(weight - w0) * (elapsed / span));
}

static void
hc_set_eff_weight(struct hc_check *chk, unsigned w)
{
	struct hc *hc = chk->hc;
	struct bal_server *srv = hc_server(chk);
	int r;

	if (atomic_load_explicit(&srv->eff_weight, memory_order_relaxed) == w)
		return;
	r = bal_set_eff_weight(hc->pool, chk->idx, w);
	if (r < 0)
		log_warnx("backend %s: server %s: weight %u: %s", hc->name,
		    srv->name, w, strerror(-r));
}

static void
hc_ramp_stop(struct hc_check *chk)
{
	struct hc *hc = chk->hc;

	if (!chk->ramping)
		return;
	chk->ramping = 0;
	if (--hc->nramping == 0)
		ev_timer_stop(hc->loop, &hc->ramp_timer);
}

static void
hc_ramp_start(struct hc_check *chk)
{
	struct hc *hc = chk->hc;

	chk->ramp_start = hc_now();
	hc_set_eff_weight(chk, hc_ramp_weight(hc_server(chk)->weight, 0, 1));
	if (chk->ramping)
		return;
	chk->ramping = 1;
	if (hc->nramping++ == 0)
		ev_timer_again(hc->loop, &hc->ramp_timer);
}

static void
hc_ramp_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hc *hc = w->data;
	double now = hc_now();
	double span = hc->slowstart_ms / 1000.0;

	for (size_t i = 0; i < hc->nchecks && hc->nramping > 0; i++) {
		struct hc_check *chk = &hc->checks[i];
		double elapsed = now - chk->ramp_start;

		if (!chk->ramping)
			continue;
		hc_set_eff_weight(chk, hc_ramp_weight(hc_server(chk)->weight,
		    elapsed, span));
		if (elapsed >= span)
			hc_ramp_stop(chk);
	}
}

/* ---- state ---- */

/*
 * The one place server state changes: look the event up in hc_fsm, run the
 * entry actions of the new state, apply it through bal_set_state (which
 * counts it in stats.state_changes and bumps the generation) and log
 * old→new with why.
 */
static void
hc_apply(struct hc_check *chk, enum hc_event ev, const char *why)
{
	struct hc *hc = chk->hc;
	struct bal_server *srv = hc_server(chk);
	int old = atomic_load_explicit(&srv->state, memory_order_relaxed);
	const struct hc_edge *edge;
	int r;

	if (old < 0 || old >= BAL_STATE_COUNT)
		return;
	edge = &hc_fsm[old][ev];
	if (!edge->change || edge->next == old)
		return;
	/* Weight before state: workers never see it up at full weight mid-ramp. */
	if (edge->next == BAL_UP) {
		/* A stale passive count would take it down again at once. */
		atomic_store_explicit(&srv->consec_fails, 0, memory_order_relaxed);
		if (edge->ramp && hc->slowstart_ms > 0) {
			hc_ramp_start(chk);
		} else {
			hc_ramp_stop(chk);
			hc_set_eff_weight(chk, srv->weight);
		}
	} else {
		hc_ramp_stop(chk);
	}
	/*
	 * On -ENOMEM the state is set but the old Maglev table stays
	 * published; the sweep's bal_pool_rebuild() retries.
	 */
	r = bal_set_state(hc->pool, chk->idx, (enum bal_state)edge->next);
	if (r < 0)
		log_warnx("backend %s: server %s: %s: %s", hc->name, srv->name,
		    bal_state_name((enum bal_state)edge->next), strerror(-r));
	if (edge->next == BAL_DOWN)
		log_warnx("backend %s: server %s %s→%s (%s)", hc->name, srv->name,
		    bal_state_name((enum bal_state)old),
		    bal_state_name((enum bal_state)edge->next), why);
	else
		log_info("backend %s: server %s %s→%s (%s)", hc->name, srv->name,
		    bal_state_name((enum bal_state)old),
		    bal_state_name((enum bal_state)edge->next), why);
	/* Passive only: nothing else will ever bring it back. */
	if (edge->next == BAL_DOWN && hc->cfg.type == CFG_HC_NONE)
		hc_schedule(chk, hc->hold_s);
}

/* Fold one active check result into the verdict. */
static void
hc_record(struct hc_check *chk, int ok)
{
	struct hc *hc = chk->hc;
	struct bal_server *srv = hc_server(chk);
	char why[HC_REASON_MAX + 32];
	enum hc_event ev;
	int state;

	chk->checked = 1;
	chk->last_ok = ok;
	if (ok) {
		chk->checks_ok++;
		chk->consec_ok++;
		chk->consec_fail = 0;
		if (chk->healthy || chk->consec_ok < hc->cfg.rise)
			return;
		chk->healthy = 1;
		ev = HC_EV_HEALTHY;
		snprintf(why, sizeof(why), "%s, %u pass%s", chk->reason,
		    chk->consec_ok, chk->consec_ok == 1 ? "" : "es");
	} else {
		chk->checks_failed++;
		chk->consec_fail++;
		chk->consec_ok = 0;
		if (!chk->healthy || chk->consec_fail < hc->cfg.fall)
			return;
		chk->healthy = 0;
		ev = HC_EV_UNHEALTHY;
		snprintf(why, sizeof(why), "%s, %u fail%s", chk->reason,
		    chk->consec_fail, chk->consec_fail == 1 ? "" : "s");
	}
	state = atomic_load_explicit(&srv->state, memory_order_relaxed);
	if (state == BAL_DRAIN || state == BAL_MAINT)
		log_info("backend %s: server %s health %s while %s (%s)",
		    hc->name, srv->name, ok ? "down→up" : "up→down",
		    bal_state_name((enum bal_state)state), why);
	hc_apply(chk, ev, why);
}

/* Passive only: the hold is over, let traffic try the server again. */
static void
hc_hold_over(struct hc_check *chk)
{
	char why[64];

	chk->healthy = 1;
	snprintf(why, sizeof(why), "passive hold of %.1fs over", chk->hc->hold_s);
	hc_apply(chk, HC_EV_HEALTHY, why);
}

/* Local errors come in storms (EMFILE hits every server): rate-limit them. */
static void
hc_log_local(struct hc_check *chk, double now)
{
	struct hc *hc = chk->hc;
	unsigned suppressed;

	if (!log_ratelimit_ok(&hc->local_rl, now, HC_LOCAL_LOG_S, &suppressed))
		return;
	if (suppressed > 0)
		log_warnx("backend %s: server %s: check not run (%s), %u such "
		    "lines suppressed", hc->name, hc_server(chk)->name,
		    chk->reason, suppressed);
	else
		log_warnx("backend %s: server %s: check not run (%s)", hc->name,
		    hc_server(chk)->name, chk->reason);
}

void
hc_check_done(struct hc_check *chk, enum hc_result res)
{
	if (res == HC_RES_LOCAL)
		hc_log_local(chk, hc_now());
	else
		hc_record(chk, res == HC_RES_PASS);
	hc_schedule(chk, hc_next_delay(chk->hc));
}

static void
hc_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hc_check *chk = w->data;

	if (chk->phase != HC_PH_IDLE)
		hc_probe_timeout(chk);
	else if (chk->hc->cfg.type == CFG_HC_NONE)
		hc_hold_over(chk);
	else
		hc_probe_start(chk);
}

/* ---- passive marking and housekeeping ---- */

static void
hc_sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hc *hc = w->data;
	double now;

	for (size_t i = 0; i < hc->nchecks && hc->passive_fails > 0; i++) {
		struct hc_check *chk = &hc->checks[i];
		struct bal_server *srv = hc_server(chk);
		unsigned fails = atomic_load_explicit(&srv->consec_fails,
		    memory_order_relaxed);
		char why[64];

		if (fails < hc->passive_fails ||
		    atomic_load_explicit(&srv->state, memory_order_relaxed) != BAL_UP)
			continue;
		chk->healthy = 0;
		chk->consec_ok = 0;
		snprintf(why, sizeof(why), "passive, %u connect failures", fails);
		hc_apply(chk, HC_EV_PASSIVE, why);
	}
	now = hc_now();
	/* No-op unless an earlier publish failed for want of memory. */
	(void)bal_pool_rebuild(hc->pool, now);
	bal_pool_reclaim(hc->pool, now);
}

static void
hc_start(struct hc *hc)
{
	/* The first round at once, spread over the jitter span. */
	double spread = hc->interval_s * hc->cfg.jitter_pct / 100.0;

	for (size_t i = 0; i < hc->nchecks && hc->cfg.type != CFG_HC_NONE; i++)
		hc_schedule(&hc->checks[i], spread * hc_unit(hc));
	ev_timer_start(hc->loop, &hc->sweep);
}

struct hc *
hc_new(struct ev_loop *loop, struct bal_pool *pool, const struct cfg_backend *cfg)
{
	struct hc *hc;
	size_t n = pool->nservers;
	int r = -EINVAL;

	if (cfg->nservers != n || (unsigned)cfg->hc.type >= CFG_HC_COUNT ||
	    (cfg->hc.type != CFG_HC_NONE && cfg->hc.interval_ms == 0)) {
		errno = EINVAL;
		return NULL;
	}
	hc = calloc(1, sizeof(*hc) + n * sizeof(hc->checks[0]));
	if (hc == NULL)
		return NULL;
	hc->loop = loop;
	hc->pool = pool;
	snprintf(hc->name, sizeof(hc->name), "%s", cfg->name);
	hc->cfg = cfg->hc;
	if (hc->cfg.rise == 0)
		hc->cfg.rise = 1;
	if (hc->cfg.fall == 0)
		hc->cfg.fall = 1;
	if (hc->cfg.jitter_pct > 50)
		hc->cfg.jitter_pct = 50;
	hc->slowstart_ms = cfg->slowstart_ms;
	hc->passive_fails = cfg->passive_fails;
	hc->interval_s = hc->cfg.interval_ms / 1000.0;
	hc->timeout_s = hc->cfg.timeout_ms > 0 ? hc->cfg.timeout_ms / 1000.0 :
	    hc->interval_s;
	hc->hold_s = (hc->cfg.interval_ms > 0 ? hc->cfg.interval_ms :
	    HC_PASSIVE_HOLD_MS) / 1000.0;
	if (getrandom(&hc->rng, sizeof(hc->rng), GRND_NONBLOCK) !=
	    (ssize_t)sizeof(hc->rng))
		hc->rng = hc_now_ns() ^ (uint64_t)(uintptr_t)hc;
	hc->ramp_step_s = hc->slowstart_ms / 1000.0 / HC_RAMP_STEPS;
	if (hc->ramp_step_s < HC_RAMP_MIN_STEP_S)
		hc->ramp_step_s = HC_RAMP_MIN_STEP_S;
	ev_timer_init(&hc->ramp_timer, hc_ramp_cb, hc->ramp_step_s, hc->ramp_step_s);
	hc->ramp_timer.data = hc;
	ev_timer_init(&hc->sweep, hc_sweep_cb, HC_SWEEP_S,
	    hc->passive_fails > 0 ? HC_SWEEP_S : HC_RECLAIM_S);
	hc->sweep.data = hc;
	hc->nchecks = n;
	for (size_t i = 0; i < n; i++) {
		struct hc_check *chk = &hc->checks[i];
		const struct bal_server *srv = &pool->servers[i];

		chk->hc = hc;
		chk->idx = i;
		chk->fd = -1;
		chk->phase = HC_PH_IDLE;
		chk->healthy = 1;
		snprintf(chk->reason, sizeof(chk->reason), "not checked yet");
		ev_timer_init(&chk->timer, hc_timer_cb, 0., 0.);
		chk->timer.data = chk;
		if (srv->addr.ss_family != AF_INET && srv->addr.ss_family != AF_INET6) {
			r = -EAFNOSUPPORT;
			goto free_hc;
		}
		if (hc->cfg.type == CFG_HC_HTTP) {
			r = hc_build_request(chk, &hc->cfg, srv);
			if (r < 0)
				goto free_hc;
		}
	}
	hc_start(hc);
	return hc;

free_hc:
	for (size_t i = 0; i < n; i++)
		free(hc->checks[i].req);
	free(hc);
	errno = -r;
	return NULL;
}

void
hc_free(struct hc *hc)
{
	if (hc == NULL)
		return;
	ev_timer_stop(hc->loop, &hc->sweep);
	ev_timer_stop(hc->loop, &hc->ramp_timer);
	for (size_t i = 0; i < hc->nchecks; i++) {
		struct hc_check *chk = &hc->checks[i];

		ev_timer_stop(hc->loop, &chk->timer);
		hc_probe_close(chk);
		free(chk->req);
	}
	free(hc);
}

/* ---- operator and metrics ---- */

int
hc_ready(struct hc *hc, size_t idx)
{
	struct hc_check *chk;
	char why[HC_REASON_MAX + 48];

	if (idx >= hc->nchecks)
		return -ENOENT;
	chk = &hc->checks[idx];
	if (chk->healthy) {
		hc_apply(chk, HC_EV_READY_OK, "operator ready, healthy");
		return 0;
	}
	snprintf(why, sizeof(why), "operator ready, unhealthy: %s",
	    chk->checked ? chk->reason : "passive");
	hc_apply(chk, HC_EV_READY_BAD, why);
	return 0;
}

int
hc_drain(struct hc *hc, size_t idx)
{
	if (idx >= hc->nchecks)
		return -ENOENT;
	hc_apply(&hc->checks[idx], HC_EV_DRAIN, "operator drain");
	return 0;
}

int
hc_maint(struct hc *hc, size_t idx)
{
	if (idx >= hc->nchecks)
		return -ENOENT;
	hc_apply(&hc->checks[idx], HC_EV_MAINT, "operator maint");
	return 0;
}

int
hc_server_info(const struct hc *hc, size_t idx, struct hc_server_info *out)
{
	const struct hc_check *chk;

	if (idx >= hc->nchecks)
		return -ENOENT;
	chk = &hc->checks[idx];
	memset(out, 0, sizeof(*out));
	out->checked = chk->checked;
	out->last_ok = chk->last_ok;
	snprintf(out->last_reason, sizeof(out->last_reason), "%s", chk->reason);
	out->last_latency_us = chk->latency_us;
	out->checks_ok = chk->checks_ok;
	out->checks_failed = chk->checks_failed;
	out->consec_ok = chk->consec_ok;
	out->consec_fail = chk->consec_fail;
	out->healthy = chk->healthy;
	out->slowstart = chk->ramping;
	return 0;
}
