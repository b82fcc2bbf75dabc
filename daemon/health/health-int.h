/*
 * health internals, shared by health.c (verdicts, state, passive marking,
 * slow start, the public API) and probe.c (the socket work of one active
 * check). Private to daemon/health/.
 */
#ifndef TANDEM_HEALTH_INT_H
#define TANDEM_HEALTH_INT_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <tandem/bal.h>
#include <tandem/config.h>
#include <tandem/health.h>
#include <tandem/log.h>

/*
 * "HTTP/1.1 200 " is 13 bytes and all we look at. Reading a little more costs
 * nothing; reading the body would only give a slow server more ways to hold
 * the check open.
 */
#define HC_RBUF 32

/*
 * One active check, idle between rounds:
 *
 *   IDLE --timer--> CONNECT --writable--> SEND --sent--> RECV --status--> IDLE
 *                      | tcp: connected ----------------------------------^
 *   CONNECT, SEND, RECV --timer (timeout)--> IDLE, failed
 */
#define HC_PHASES(X)                   \
	X(IDLE, "idle")                \
	X(CONNECT, "connect")          \
	X(SEND, "send")                \
	X(RECV, "status line")

enum hc_phase {
#define HC_PHASE_ENUM(id, name) HC_PH_##id,
	HC_PHASES(HC_PHASE_ENUM)
#undef HC_PHASE_ENUM
	HC_PH_COUNT
};

enum hc_result {
	HC_RES_FAIL = 0,
	HC_RES_PASS,
	HC_RES_LOCAL,   /* could not try: our fault, not the server's */
	HC_RES_COUNT
};

struct hc;

/* Per server: the check in flight, its verdict and its slow start. */
struct hc_check {
	struct hc *hc;
	size_t idx;
	ev_timer timer;        /* IDLE: next round (or passive hold); else timeout */
	ev_io io;
	int fd;                /* -1 when IDLE */
	enum hc_phase phase;
	char *req;             /* http request, built once, owned */
	size_t reqlen;
	size_t sent;
	char rbuf[HC_RBUF];
	size_t rlen;
	uint64_t started_ns;

	int checked;
	int last_ok;
	char reason[HC_REASON_MAX];
	uint64_t latency_us;
	uint64_t checks_ok;
	uint64_t checks_failed;
	unsigned consec_ok;
	unsigned consec_fail;
	int healthy;

	int ramping;
	double ramp_start;     /* monotonic seconds */
};

struct hc {
	struct ev_loop *loop;
	struct bal_pool *pool;
	char name[CFG_NAME_MAX];
	struct cfg_health cfg;     /* copy; cfg.type CFG_HC_NONE = passive only */
	uint32_t slowstart_ms;
	unsigned passive_fails;
	double interval_s;
	double timeout_s;
	double hold_s;             /* passive only: DOWN this long, then retried */
	uint64_t rng;
	struct log_ratelimit local_rl;
	ev_timer sweep;            /* passive marking + bal_pool_reclaim */
	ev_timer ramp_timer;       /* runs while a server ramps */
	double ramp_step_s;
	size_t nramping;
	size_t nchecks;
	struct hc_check checks[];
};

static inline uint64_t
hc_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline struct bal_server *
hc_server(const struct hc_check *chk)
{
	return &chk->hc->pool->servers[chk->idx];
}

/* health.c: arm the check's one timer (next round, timeout or passive hold). */
void hc_schedule(struct hc_check *chk, double delay);

/*
 * health.c: the check in chk is over (socket closed, phase IDLE, reason and
 * latency filled in): fold res into the verdict and schedule the next round.
 */
void hc_check_done(struct hc_check *chk, enum hc_result res);

/* probe.c: start one active check on an IDLE chk; arms the timeout. */
void hc_probe_start(struct hc_check *chk);

/* probe.c: the timeout fired on a check in flight: fail it. */
void hc_probe_timeout(struct hc_check *chk);

/* probe.c: close the check's socket, if any, without a verdict (hc_free). */
void hc_probe_close(struct hc_check *chk);

/*
 * probe.c: build chk->req for an http check of srv (owned by chk, freed by
 * the caller with free()). Returns 0, -EINVAL (a request field holds a space
 * or control byte, or is empty), -EAFNOSUPPORT or -ENOMEM.
 */
int hc_build_request(struct hc_check *chk, const struct cfg_health *cfg,
    const struct bal_server *srv);

#endif
