/*
 * hc — active and passive health checks of one backend's servers.
 *
 * One struct hc per backend, created and driven on the main thread's libev
 * loop; the main thread is therefore the only writer of server state and
 * effective weight (see bal.h).
 *
 * Active checks ("tcp": a non-blocking connect completes; "http": connect,
 * send "METHOD PATH HTTP/1.1" with Host, Connection: close and User-Agent
 * tandem-health, read the status line, pass if the code is within
 * [status_min, status_max]) never block the loop. Each server is checked
 * every interval ± jitter_pct (drawn again each round, measured from the end
 * of the previous check, so checks never overlap and do not align); a check
 * fails after timeout_ms. The first round starts at once, each server after
 * its own random delay within the jitter span.
 *
 * Verdict (rise/fall): each server has a health verdict, separate from its
 * state. A healthy server becomes unhealthy after `fall` consecutive failed
 * checks, an unhealthy one healthy after `rise` consecutive passes. At
 * startup every server is taken as healthy, as HAProxy does (it starts
 * servers up with their health at the rise threshold): a balancer that
 * restarts must not take a working pool out of service while it waits for
 * `rise` passes, and a dead server costs at most `fall` intervals.
 * A check that could not be attempted for a local reason (socket() failing
 * with EMFILE, say) is not the server's fault and counts neither way.
 *
 * State: a verdict change moves an UP server to DOWN and a DOWN server to UP.
 * DRAIN and MAINT belong to the operator: those servers keep being checked,
 * their verdict is kept up to date, but checks never change their state.
 * hc_ready() returns them to UP if healthy, DOWN otherwise.
 *
 * Passive: workers count connect failures in a row in server->consec_fails
 * (and reset it on success). Every 100 ms the module marks an UP server whose
 * count reached passive_fails DOWN at once (verdict unhealthy, pass count
 * restarted at 0), so workers never write state. When a server goes UP again
 * its consec_fails is reset, or the stale count would take it down at once.
 * A backend without an active check has nothing to bring a passively failed
 * server back, so there the server is retried (set UP again) after a hold
 * time: hc.interval_ms when set, else 10 s (nginx's fail_timeout default).
 *
 * Slow start (slowstart_ms > 0): when a server goes DOWN→UP or MAINT→UP its
 * eff_weight starts at max(1, weight / 10) and grows linearly to weight over
 * slowstart_ms, updated every max(100 ms, slowstart_ms / 20). DRAIN→UP does
 * not ramp: a drained server never stopped serving its connections, its
 * caches are warm. Startup does not ramp either (we cannot tell a restarted
 * balancer from a recovered server). Weight 1 servers cannot ramp, and
 * algorithms that ignore weights (roundrobin) ignore the ramp too.
 *
 * Every state change goes through bal_set_state(), is logged once with
 * old→new and why, and is counted in server->stats.state_changes.
 */
#ifndef TANDEM_HEALTH_H
#define TANDEM_HEALTH_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct bal_pool;
struct cfg_backend;
struct hc;

#define HC_REASON_MAX 64

/* What ctl and metrics see of one server's checks. */
struct hc_server_info {
	int checked;             /* an active check has completed at least once */
	int last_ok;             /* the last active check passed */
	char last_reason[HC_REASON_MAX];  /* "http status 503", "timeout (connect)", ... */
	uint64_t last_latency_us;  /* duration of the last check, pass or fail */
	uint64_t checks_ok;
	uint64_t checks_failed;
	unsigned consec_ok;      /* passes in a row */
	unsigned consec_fail;    /* failures in a row */
	int healthy;             /* the verdict, whatever the state */
	int slowstart;           /* eff_weight is still ramping up */
};

/*
 * Start checking every server of pool as cfg (the backend pool was built from)
 * says: active checks per cfg->hc (none for CFG_HC_NONE), passive marking per
 * cfg->passive_fails, slow start per cfg->slowstart_ms. Copies what it needs
 * from cfg, which may be freed afterwards; pool is borrowed and must outlive
 * the hc. Servers must be IPv4 or IPv6.
 * Returns the hc, or NULL with errno set (EINVAL: cfg does not match pool or
 * an http request line cannot be built; EAFNOSUPPORT; ENOMEM).
 */
struct hc *hc_new(struct ev_loop *loop, struct bal_pool *pool,
    const struct cfg_backend *cfg);

/*
 * Stop every watcher, close every socket, free. NULL is a no-op. Call from
 * the main thread outside the hc's own callbacks. Server states are left as
 * they are.
 */
void hc_free(struct hc *hc);

/*
 * Operator commands (tandemctl ready / drain / maint) on server idx.
 * ready: UP if the verdict is healthy, DOWN otherwise (slow start applies
 * from MAINT or DOWN); drain: no new connections, existing ones stay;
 * maint: out of service. Returns 0 (also when nothing changed) or -ENOENT
 * for an index out of range.
 */
int hc_ready(struct hc *hc, size_t idx);
int hc_drain(struct hc *hc, size_t idx);
int hc_maint(struct hc *hc, size_t idx);

/* Fill *out for server idx. Returns 0 or -ENOENT. */
int hc_server_info(const struct hc *hc, size_t idx, struct hc_server_info *out);

#endif
