/* metrics — see include/tandem/metrics.h */
#include <tandem/metrics.h>

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include <tandem/agent.h>
#include <tandem/bal.h>
#include <tandem/config.h>
#include <tandem/health.h>
#include <tandem/log.h>
#include <tandem/proxy.h>
#include <tandem/session.h>
#include <tandem/sync.h>

#define METRICS_CLIENT_TIMEOUT 5.0
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics {
	struct ev_loop *loop;
	struct ctl_view view;
	struct ctl_srv *srv;
};

/* ---- exposition text -------------------------------------------------- */

/* Label values may hold any byte but \, " and newline, which are escaped. */
static void
metrics_label(struct ctl_buf *out, const char *key, const char *val, int first)
{
	ctl_buf_printf(out, "%s%s=\"", first ? "" : ",", key);
	for (const char *p = val; *p != '\0'; p++) {
		size_t run = strcspn(p, "\\\"\n");

		ctl_buf_append(out, p, run);
		p += run;
		if (*p == '\0')
			break;
		ctl_buf_append(out, *p == '\n' ? "\\n" : *p == '"' ? "\\\"" : "\\\\", 2);
	}
	ctl_buf_append(out, "\"", 1);
}

static void
metrics_family(struct ctl_buf *out, const char *name, const char *type,
    const char *help)
{
	ctl_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
metrics_fe_labels(struct ctl_buf *out, const struct proxy_frontend *fe)
{
	metrics_label(out, "frontend", fe->cfg != NULL ? fe->cfg->name : "?", 1);
	metrics_label(out, "backend", fe->pool != NULL ? fe->pool->name :
	    fe->cfg != NULL ? fe->cfg->backend_name : "?", 0);
}

static void
metrics_srv_labels(struct ctl_buf *out, const struct bal_pool *pool,
    const struct bal_server *s)
{
	metrics_label(out, "backend", pool->name, 1);
	metrics_label(out, "server", s->name, 0);
}

static uint64_t
metrics_load64(const void *base, size_t off)
{
	const atomic_uint_fast64_t *a =
	    (const atomic_uint_fast64_t *)(const void *)((const char *)base + off);

	return atomic_load_explicit(a, memory_order_relaxed);
}

struct metrics_counter {
	const char *name;
	const char *help;
	size_t off;               /* of an atomic_uint_fast64_t in the stats struct */
};

static const struct metrics_counter metrics_fe_counters[] = {
	{ "tandem_frontend_connections_total", "Client connections accepted.",
	  offsetof(struct proxy_fe_stats, conns_total) },
	{ "tandem_frontend_bytes_received_total", "Bytes received from clients.",
	  offsetof(struct proxy_fe_stats, bytes_in) },
	{ "tandem_frontend_bytes_sent_total", "Bytes sent to clients.",
	  offsetof(struct proxy_fe_stats, bytes_out) },
	{ "tandem_frontend_connect_errors_total",
	  "Failed backend connect attempts, each attempt counted.",
	  offsetof(struct proxy_fe_stats, connect_errors) },
	{ "tandem_frontend_retries_total",
	  "Backend connects retried on another server.",
	  offsetof(struct proxy_fe_stats, retries) },
	{ "tandem_frontend_no_server_total",
	  "Client connections closed because no server was left to try.",
	  offsetof(struct proxy_fe_stats, no_server) },
	{ "tandem_frontend_timeouts_total", "Connections closed by a timeout.",
	  offsetof(struct proxy_fe_stats, timeouts) },
	{ "tandem_frontend_resets_total", "Connections aborted by a reset or error.",
	  offsetof(struct proxy_fe_stats, resets) },
	{ "tandem_frontend_limit_pauses_total",
	  "Times a listener paused at max-connections.",
	  offsetof(struct proxy_fe_stats, limit_pauses) },
	{ "tandem_frontend_accept_errors_total",
	  "Times a listener paused on EMFILE, ENFILE or ENOMEM.",
	  offsetof(struct proxy_fe_stats, accept_errors) },
};

static const struct metrics_counter metrics_srv_counters[] = {
	{ "tandem_server_connections_total", "Connections made to the server.",
	  offsetof(struct bal_stats, conns_total) },
	{ "tandem_server_bytes_received_total", "Bytes received from the server.",
	  offsetof(struct bal_stats, bytes_in) },
	{ "tandem_server_bytes_sent_total", "Bytes sent to the server.",
	  offsetof(struct bal_stats, bytes_out) },
	{ "tandem_server_connect_errors_total", "Failed connects to the server.",
	  offsetof(struct bal_stats, connect_errors) },
	{ "tandem_server_retries_total",
	  "Connects that failed here and were retried on another server.",
	  offsetof(struct bal_stats, retries) },
	{ "tandem_server_state_changes_total", "Server state changes.",
	  offsetof(struct bal_stats, state_changes) },
};

#define METRICS_N(a) (sizeof(a) / sizeof((a)[0]))

static void
metrics_render_node(const struct ctl_view *v, double now, struct ctl_buf *out)
{
	metrics_family(out, "tandem_build_info", "gauge",
	    "Always 1; labels carry the version and the node name.");
	ctl_buf_printf(out, "tandem_build_info{");
	metrics_label(out, "version", TANDEM_VERSION, 1);
	metrics_label(out, "node", v->cfg != NULL ? v->cfg->node.name : "", 0);
	ctl_buf_printf(out, "} 1\n");
	metrics_family(out, "tandem_uptime_seconds", "gauge",
	    "Seconds since the daemon started.");
	ctl_buf_printf(out, "tandem_uptime_seconds %.3f\n",
	    now > v->started ? now - v->started : 0.);
	metrics_family(out, "tandem_workers", "gauge", "Worker threads running.");
	ctl_buf_printf(out, "tandem_workers %u\n", v->workers);
}

static void
metrics_render_frontends(const struct ctl_view *v, struct ctl_buf *out)
{
	metrics_family(out, "tandem_frontend_connections_active", "gauge",
	    "Client connections open now.");
	for (size_t f = 0; f < v->nfes; f++) {
		ctl_buf_printf(out, "tandem_frontend_connections_active{");
		metrics_fe_labels(out, &v->fes[f]);
		ctl_buf_printf(out, "} %u\n",
		    atomic_load_explicit(&v->fes[f].active, memory_order_relaxed));
	}
	for (size_t k = 0; k < METRICS_N(metrics_fe_counters); k++) {
		const struct metrics_counter *mc = &metrics_fe_counters[k];

		metrics_family(out, mc->name, "counter", mc->help);
		for (size_t f = 0; f < v->nfes; f++) {
			ctl_buf_printf(out, "%s{", mc->name);
			metrics_fe_labels(out, &v->fes[f]);
			ctl_buf_printf(out, "} %" PRIu64 "\n",
			    metrics_load64(&v->fes[f].stats, mc->off));
		}
	}
}

/*
 * Server gauges that read one bal_server field; value returns 0 and sets *x,
 * or -1 when the series has no sample for that server right now.
 */
struct metrics_srv_gauge {
	const char *name;
	const char *help;
	int (*value)(const struct bal_server *s, double *x);
};

static int
metrics_srv_active(const struct bal_server *s, double *x)
{
	*x = atomic_load_explicit(&s->active, memory_order_relaxed);
	return 0;
}

static int
metrics_srv_weight(const struct bal_server *s, double *x)
{
	*x = s->weight;
	return 0;
}

static int
metrics_srv_eff_weight(const struct bal_server *s, double *x)
{
	*x = atomic_load_explicit(&s->eff_weight, memory_order_relaxed);
	return 0;
}

static int
metrics_srv_ewma(const struct bal_server *s, double *x)
{
	uint64_t us = atomic_load_explicit(&s->ewma_us, memory_order_relaxed);

	*x = (double)us / 1e6;
	return us > 0 ? 0 : -1;  /* 0 means "no sample", not "instant" */
}

static const struct metrics_srv_gauge metrics_srv_gauges[] = {
	{ "tandem_server_connections_active", "Connections open to the server now.",
	  metrics_srv_active },
	{ "tandem_server_weight", "Configured weight.", metrics_srv_weight },
	{ "tandem_server_effective_weight",
	  "Weight in use, lower than configured while slow start ramps up.",
	  metrics_srv_eff_weight },
	{ "tandem_server_connect_time_ewma_seconds",
	  "Moving average of the connect time; absent until the first connect.",
	  metrics_srv_ewma },
};

/* Health gauges, from hc_server_info(); same contract as above. */
struct metrics_hc_gauge {
	const char *name;
	const char *help;
	int (*value)(const struct hc_server_info *hi, double *x);
};

static int
metrics_hc_healthy(const struct hc_server_info *hi, double *x)
{
	*x = hi->healthy ? 1 : 0;
	return 0;
}

static int
metrics_hc_slowstart(const struct hc_server_info *hi, double *x)
{
	*x = hi->slowstart ? 1 : 0;
	return 0;
}

static int
metrics_hc_success(const struct hc_server_info *hi, double *x)
{
	*x = hi->last_ok ? 1 : 0;
	return hi->checked ? 0 : -1;
}

static int
metrics_hc_duration(const struct hc_server_info *hi, double *x)
{
	*x = (double)hi->last_latency_us / 1e6;
	return hi->checked ? 0 : -1;
}

static const struct metrics_hc_gauge metrics_hc_gauges[] = {
	{ "tandem_server_healthy",
	  "Health verdict after rise/fall: 1 healthy, 0 not (whatever the state).",
	  metrics_hc_healthy },
	{ "tandem_server_slow_start", "1 while the effective weight ramps up.",
	  metrics_hc_slowstart },
	{ "tandem_server_check_success", "1 if the last active check passed.",
	  metrics_hc_success },
	{ "tandem_server_check_duration_seconds",
	  "Duration of the last active check, passed or failed.",
	  metrics_hc_duration },
};

static void
metrics_render_servers(const struct ctl_view *v, struct ctl_buf *out)
{
	struct hc_server_info hi;
	double x;

	for (size_t k = 0; k < METRICS_N(metrics_srv_gauges); k++) {
		const struct metrics_srv_gauge *g = &metrics_srv_gauges[k];

		metrics_family(out, g->name, "gauge", g->help);
		for (size_t p = 0; p < v->npools; p++) {
			const struct bal_pool *pool = v->pools[p];

			for (size_t i = 0; i < pool->nservers; i++) {
				if (g->value(&pool->servers[i], &x) != 0)
					continue;
				ctl_buf_printf(out, "%s{", g->name);
				metrics_srv_labels(out, pool, &pool->servers[i]);
				ctl_buf_printf(out, "} %.9g\n", x);
			}
		}
	}
	for (size_t k = 0; k < METRICS_N(metrics_srv_counters); k++) {
		const struct metrics_counter *mc = &metrics_srv_counters[k];

		metrics_family(out, mc->name, "counter", mc->help);
		for (size_t p = 0; p < v->npools; p++) {
			const struct bal_pool *pool = v->pools[p];

			for (size_t i = 0; i < pool->nservers; i++) {
				ctl_buf_printf(out, "%s{", mc->name);
				metrics_srv_labels(out, pool, &pool->servers[i]);
				ctl_buf_printf(out, "} %" PRIu64 "\n",
				    metrics_load64(&pool->servers[i].stats, mc->off));
			}
		}
	}

	/* A state set (one series per state, 1 for the current one). */
	metrics_family(out, "tandem_server_state", "gauge",
	    "1 for the server's current state, 0 for the others.");
	for (size_t p = 0; p < v->npools; p++) {
		const struct bal_pool *pool = v->pools[p];

		for (size_t i = 0; i < pool->nservers; i++) {
			int cur = atomic_load_explicit(&pool->servers[i].state,
			    memory_order_relaxed);

			for (int st = 0; st < BAL_STATE_COUNT; st++) {
				ctl_buf_printf(out, "tandem_server_state{");
				metrics_srv_labels(out, pool, &pool->servers[i]);
				metrics_label(out, "state",
				    bal_state_name((enum bal_state)st), 0);
				ctl_buf_printf(out, "} %d\n", st == cur ? 1 : 0);
			}
		}
	}

	for (size_t k = 0; k < METRICS_N(metrics_hc_gauges); k++) {
		const struct metrics_hc_gauge *g = &metrics_hc_gauges[k];

		metrics_family(out, g->name, "gauge", g->help);
		for (size_t p = 0; v->hcs != NULL && p < v->npools; p++) {
			const struct bal_pool *pool = v->pools[p];

			for (size_t i = 0; v->hcs[p] != NULL && i < pool->nservers; i++) {
				if (hc_server_info(v->hcs[p], i, &hi) != 0 ||
				    g->value(&hi, &x) != 0)
					continue;
				ctl_buf_printf(out, "%s{", g->name);
				metrics_srv_labels(out, pool, &pool->servers[i]);
				ctl_buf_printf(out, "} %.9g\n", x);
			}
		}
	}

	metrics_family(out, "tandem_server_checks_total", "counter",
	    "Active health checks completed, by result.");
	for (size_t p = 0; v->hcs != NULL && p < v->npools; p++) {
		const struct bal_pool *pool = v->pools[p];

		for (size_t i = 0; v->hcs[p] != NULL && i < pool->nservers; i++) {
			if (hc_server_info(v->hcs[p], i, &hi) != 0)
				continue;
			ctl_buf_printf(out, "tandem_server_checks_total{");
			metrics_srv_labels(out, pool, &pool->servers[i]);
			ctl_buf_printf(out, ",result=\"ok\"} %" PRIu64 "\n",
			    hi.checks_ok);
			ctl_buf_printf(out, "tandem_server_checks_total{");
			metrics_srv_labels(out, pool, &pool->servers[i]);
			ctl_buf_printf(out, ",result=\"failed\"} %" PRIu64 "\n",
			    hi.checks_failed);
		}
	}
}

/* ---- vrrp groups ------------------------------------------------------ */

struct metrics_vrrp {
	const char *name;
	const char *type;
	const char *help;
	/* Returns 0 and *x, or -1 when the series has no sample yet. */
	int (*get)(const struct agent_status *st, double *x);
};

#define METRICS_VRRP_GET(fn, expr, cond) \
	static int fn(const struct agent_status *st, double *x) \
	{ \
		if (!(cond)) \
			return -1; \
		*x = (double)(expr); \
		return 0; \
	}

METRICS_VRRP_GET(metrics_vrrp_prio, st->info.priority, 1)
METRICS_VRRP_GET(metrics_vrrp_base, st->info.base_priority, 1)
METRICS_VRRP_GET(metrics_vrrp_faults, st->faults, 1)
METRICS_VRRP_GET(metrics_vrrp_decrement, st->decrement, 1)
METRICS_VRRP_GET(metrics_vrrp_vips_up, st->vips_up ? 1 : 0, 1)
METRICS_VRRP_GET(metrics_vrrp_config_mismatch, st->peer_config_mismatch ? 1 : 0, 1)
METRICS_VRRP_GET(metrics_vrrp_transitions, st->info.transitions, 1)
METRICS_VRRP_GET(metrics_vrrp_sent, st->info.adverts_sent, 1)
METRICS_VRRP_GET(metrics_vrrp_send_errors, st->info.advert_errors, 1)
METRICS_VRRP_GET(metrics_vrrp_received, st->info.rx_adverts, 1)
METRICS_VRRP_GET(metrics_vrrp_ignored, st->info.rx_ignored, 1)
METRICS_VRRP_GET(metrics_vrrp_stalls, st->info.stalls, 1)
METRICS_VRRP_GET(metrics_vrrp_garps, st->vip.garps_sent, 1)
METRICS_VRRP_GET(metrics_vrrp_nas, st->vip.nas_sent, 1)
METRICS_VRRP_GET(metrics_vrrp_readds, st->vip.readds, 1)
METRICS_VRRP_GET(metrics_vrrp_stale, st->vip.stale_removed, 1)
METRICS_VRRP_GET(metrics_vrrp_nl_errors, st->vip.nl_errors, 1)
METRICS_VRRP_GET(metrics_vrrp_age, st->advert_age, st->advert_age >= 0)
METRICS_VRRP_GET(metrics_vrrp_add_lat, st->vip_up_latency_us / 1e6,
    st->vip_up_latency_us > 0)
METRICS_VRRP_GET(metrics_vrrp_del_lat, st->vip_down_latency_us / 1e6,
    st->vip_down_latency_us > 0)
METRICS_VRRP_GET(metrics_vrrp_takeover, st->info.takeover_time,
    st->info.takeover_time >= 0)
METRICS_VRRP_GET(metrics_vrrp_since, st->since_transition,
    st->since_transition >= 0)

static const struct metrics_vrrp metrics_vrrp_series[] = {
	{ "tandem_vrrp_priority", "gauge", "Effective priority (base - tracking).",
	  metrics_vrrp_prio },
	{ "tandem_vrrp_base_priority", "gauge", "Configured priority.",
	  metrics_vrrp_base },
	{ "tandem_vrrp_faults", "gauge", "Tracked objects forcing FAULT now.",
	  metrics_vrrp_faults },
	{ "tandem_vrrp_priority_decrement", "gauge",
	  "Priority decrement from tracking now.", metrics_vrrp_decrement },
	{ "tandem_vrrp_vips_up", "gauge",
	  "1 while MASTER with every VIP confirmed by the kernel.", metrics_vrrp_vips_up },
	{ "tandem_vrrp_peer_config_mismatch", "gauge",
	  "1 while the peer's adverts carry a different proxy-config digest.",
	  metrics_vrrp_config_mismatch },
	{ "tandem_vrrp_transitions_total", "counter", "State transitions.",
	  metrics_vrrp_transitions },
	{ "tandem_vrrp_adverts_sent_total", "counter",
	  "Adverts sent (each counted once, whatever the number of paths).",
	  metrics_vrrp_sent },
	{ "tandem_vrrp_advert_send_errors_total", "counter",
	  "Adverts that no path could send.", metrics_vrrp_send_errors },
	{ "tandem_vrrp_adverts_received_total", "counter",
	  "Authenticated adverts received for the group.", metrics_vrrp_received },
	{ "tandem_vrrp_adverts_ignored_total", "counter",
	  "Authenticated adverts ignored (our own address, sender not MASTER).",
	  metrics_vrrp_ignored },
	{ "tandem_vrrp_stalls_total", "counter",
	  "Late loop wake-ups that did not cause a takeover.", metrics_vrrp_stalls },
	{ "tandem_vrrp_garps_sent_total", "counter", "Gratuitous ARP frames sent.",
	  metrics_vrrp_garps },
	{ "tandem_vrrp_nas_sent_total", "counter",
	  "Unsolicited neighbour advertisements sent.", metrics_vrrp_nas },
	{ "tandem_vrrp_vip_readds_total", "counter",
	  "Held VIPs deleted by someone else and re-added.", metrics_vrrp_readds },
	{ "tandem_vrrp_vip_stale_removed_total", "counter",
	  "VIPs left by a previous run, removed at start-up.", metrics_vrrp_stale },
	{ "tandem_vrrp_vip_netlink_errors_total", "counter",
	  "VIP add/delete requests that failed.", metrics_vrrp_nl_errors },
	{ "tandem_vrrp_advert_age_seconds", "gauge",
	  "Seconds since the master's last advert (ours when MASTER).",
	  metrics_vrrp_age },
	{ "tandem_vrrp_vip_add_latency_seconds", "gauge",
	  "Last VIP take: request to the kernel's confirmation of every VIP.",
	  metrics_vrrp_add_lat },
	{ "tandem_vrrp_vip_remove_latency_seconds", "gauge",
	  "Last VIP release: request to the kernel's confirmation.",
	  metrics_vrrp_del_lat },
	{ "tandem_vrrp_takeover_seconds", "gauge",
	  "Last takeover: becoming MASTER to the VIPs up (announced).",
	  metrics_vrrp_takeover },
	{ "tandem_vrrp_since_transition_seconds", "gauge",
	  "Seconds since the last state transition.", metrics_vrrp_since },
};

static void
metrics_vrrp_labels(struct ctl_buf *out, const struct agent_status *st)
{
	char vrid[16];

	snprintf(vrid, sizeof(vrid), "%u", st->info.vrid);
	metrics_label(out, "group", st->name, 1);
	metrics_label(out, "vrid", vrid, 0);
}

static void
metrics_node_counter(struct ctl_buf *out, const char *name, const char *help,
    uint64_t v)
{
	metrics_family(out, name, "counter", help);
	ctl_buf_printf(out, "%s %" PRIu64 "\n", name, v);
}

static void
metrics_render_vrrp(const struct ctl_view *v, struct ctl_buf *out)
{
	size_t n = agent_count(v->agent);
	const struct auth_stats *as;
	struct agent_counters c;

	if (v->agent == NULL)
		return;
	metrics_family(out, "tandem_vrrp_state", "gauge",
	    "1 for the group's current state, 0 for the others.");
	for (size_t i = 0; i < n; i++) {
		struct agent_status st;

		if (agent_status(v->agent, i, &st) < 0)
			continue;
		for (int s = 0; s < AGENT_STATE_COUNT; s++) {
			ctl_buf_printf(out, "tandem_vrrp_state{");
			metrics_vrrp_labels(out, &st);
			metrics_label(out, "state", agent_state_name((enum agent_state)s), 0);
			ctl_buf_printf(out, "} %d\n", st.info.state == (enum agent_state)s);
		}
	}
	for (size_t k = 0; k < METRICS_N(metrics_vrrp_series); k++) {
		const struct metrics_vrrp *m = &metrics_vrrp_series[k];

		metrics_family(out, m->name, m->type, m->help);
		for (size_t i = 0; i < n; i++) {
			struct agent_status st;
			double x;

			if (agent_status(v->agent, i, &st) < 0 || m->get(&st, &x) < 0)
				continue;
			ctl_buf_printf(out, "%s{", m->name);
			metrics_vrrp_labels(out, &st);
			ctl_buf_printf(out, "} %.9g\n", x);
		}
	}
	as = agent_auth_stats(v->agent);
	metrics_node_counter(out, "tandem_vrrp_adverts_accepted_total",
	    "Adverts that passed every check (all groups).", as->accepted);
	metrics_family(out, "tandem_vrrp_adverts_dropped_total", "counter",
	    "Adverts dropped, by the first check that failed.");
	for (int r = 0; r < AUTH_DROP_COUNT; r++) {
		ctl_buf_printf(out, "tandem_vrrp_adverts_dropped_total{");
		metrics_label(out, "reason", auth_drop_name((enum auth_drop)r), 1);
		ctl_buf_printf(out, "} %" PRIu64 "\n", as->drops[r]);
	}
	agent_counters(v->agent, &c);
	metrics_family(out, "tandem_vrrp_boot_epoch", "gauge",
	    "This run's boot epoch (grows with every start).");
	ctl_buf_printf(out, "tandem_vrrp_boot_epoch %" PRIu64 "\n", c.boot_epoch);
	metrics_node_counter(out, "tandem_vrrp_notify_runs_total",
	    "Notify hooks started.", c.notify_runs);
	metrics_node_counter(out, "tandem_vrrp_notify_failed_total",
	    "Notify hooks that failed to start or exited non-zero.", c.notify_failed);
	metrics_node_counter(out, "tandem_vrrp_notify_killed_total",
	    "Notify hooks killed at their timeout.", c.notify_killed);
	metrics_node_counter(out, "tandem_vrrp_notify_dropped_total",
	    "Notify hooks not run: queue full.", c.notify_dropped);
	metrics_node_counter(out, "tandem_vrrp_script_runs_total",
	    "track-script runs started.", c.script_runs);
	metrics_node_counter(out, "tandem_vrrp_script_killed_total",
	    "track-script runs killed at their timeout.", c.script_killed);
}

/* ---- session sync ----------------------------------------------------- */

static void
metrics_node_gauge(struct ctl_buf *out, const char *name, const char *help,
    uint64_t v)
{
	metrics_family(out, name, "gauge", help);
	ctl_buf_printf(out, "%s %" PRIu64 "\n", name, v);
}

/* One family with one label, a sample per (value, count) pair. */
struct metrics_lv {
	const char *val;
	uint64_t n;
};

static void
metrics_labelled(struct ctl_buf *out, const char *name, const char *type,
    const char *help, const char *key, const struct metrics_lv *lv, size_t n)
{
	metrics_family(out, name, type, help);
	for (size_t i = 0; i < n; i++) {
		ctl_buf_printf(out, "%s{", name);
		metrics_label(out, key, lv[i].val, 1);
		ctl_buf_printf(out, "} %" PRIu64 "\n", lv[i].n);
	}
}

static const unsigned metrics_takeover_le_ms[] = SESS_DURATION_BUCKETS_MS;

_Static_assert(METRICS_N(metrics_takeover_le_ms) + 1 ==
    sizeof(((struct sess_stats *)0)->duration_le) / sizeof(uint64_t),
    "sess_stats.duration_le: one bucket per bound, then +Inf");

/*
 * sess_stats.duration_le[] holds each bucket's own count; the exposition's
 * buckets are cumulative. _count is the +Inf bucket, i.e. every takeover
 * whose duration was recorded (the format wants the two equal;
 * stats.takeovers is tandem_takeovers_total); _sum is duration_sum_us.
 */
static void
metrics_takeover_histogram(struct ctl_buf *out, const struct sess_stats *st)
{
	const char *name = "tandem_takeover_duration_ms";
	uint64_t cum = 0;

	metrics_family(out, name, "histogram",
	    "Takeover duration, VIPs up to every restored socket handed to a "
	    "worker, in milliseconds.");
	for (size_t b = 0; b < METRICS_N(metrics_takeover_le_ms); b++) {
		cum += st->duration_le[b];
		ctl_buf_printf(out, "%s_bucket{le=\"%u\"} %" PRIu64 "\n", name,
		    metrics_takeover_le_ms[b], cum);
	}
	cum += st->duration_le[METRICS_N(metrics_takeover_le_ms)];
	ctl_buf_printf(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
	ctl_buf_printf(out, "%s_sum %.3f\n", name, (double)st->duration_sum_us / 1e3);
	ctl_buf_printf(out, "%s_count %" PRIu64 "\n", name, cum);
}

static void
metrics_render_sync(const struct ctl_view *v, struct ctl_buf *out)
{
	const struct sync_stats *ss;
	const struct sync_info *sy;
	const struct sess_stats *st;
	struct sess_info si;

	if (v->sess == NULL)
		return;
	sess_get_info(v->sess, &si);
	if (!si.enabled)
		return;
	sy = &si.sync;
	st = &si.stats;
	ss = sess_sync_stats(v->sess);

	metrics_node_gauge(out, "tandem_sync_up",
	    "1 while the sync channel to the peer is up (handshake done).",
	    sy->state == SYNC_STATE_UP);
	metrics_family(out, "tandem_sync_config_match", "gauge",
	    "1 if the peer's frontends/backends digest equals ours; absent "
	    "before the first handshake.");
	if (sy->peer_known)
		ctl_buf_printf(out, "tandem_sync_config_match %d\n",
		    sy->digest_match ? 1 : 0);
	metrics_node_gauge(out, "tandem_sync_lag_frames",
	    "Frames of our stream not yet acknowledged by the peer.",
	    sy->unacked_frames);
	metrics_node_gauge(out, "tandem_sync_lag_ms",
	    "Age of the oldest frame the peer has not acknowledged, in milliseconds.",
	    sy->lag_ms);
	metrics_node_gauge(out, "tandem_sync_queued_bytes",
	    "Bytes in the retransmit queue.", sy->queued_bytes);
	metrics_node_gauge(out, "tandem_sync_shadow_entries",
	    "The peer's connections in the shadow table.", si.shadow.entries);
	metrics_node_gauge(out, "tandem_sync_shadow_max_entries",
	    "Bound of the shadow table.", si.shadow.max_entries);
	metrics_node_counter(out, "tandem_sync_shadow_evicted_total",
	    "Shadow entries evicted at the bound.", si.shadow.evicted);
	metrics_node_gauge(out, "tandem_sync_local_entries",
	    "Our own connections known to the sync (sent in a snapshot).",
	    si.local_entries);
	metrics_node_gauge(out, "tandem_sync_ready",
	    "1 once the peer's first snapshot arrived (the node may preempt).",
	    si.sync_ready);
	metrics_node_gauge(out, "tandem_sync_handover_active",
	    "1 while a planned handover is under way (either side).",
	    si.handover_active);
	metrics_node_counter(out, "tandem_sync_bulk_resyncs_total",
	    "New streams of ours, each starting with a full snapshot.",
	    sy->bulk_resyncs);
	if (ss != NULL) {
		const struct metrics_lv frames[] = {
			{ "in", ss->frames_in }, { "out", ss->frames_out },
		};
		const struct metrics_lv events[] = {
			{ "in", ss->events_in }, { "out", ss->events_out },
		};
		struct metrics_lv drops[SYNC_DROP_COUNT];

		for (int d = 0; d < SYNC_DROP_COUNT; d++) {
			drops[d].val = sync_drop_name((enum sync_drop)d);
			drops[d].n = ss->drops[d];
		}
		metrics_labelled(out, "tandem_sync_frames_total", "counter",
		    "Numbered frames: in, received and applied; out, sealed.",
		    "dir", frames, METRICS_N(frames));
		metrics_labelled(out, "tandem_sync_events_total", "counter",
		    "Sync events: in, received; out, queued for the peer.",
		    "dir", events, METRICS_N(events));
		metrics_labelled(out, "tandem_sync_drops_total", "counter",
		    "Sync messages dropped, by the first check that failed.",
		    "reason", drops, METRICS_N(drops));
	}

	metrics_node_counter(out, "tandem_takeovers_total",
	    "Takeovers run by session sync (the VIPs came up here).",
	    st->takeovers);
	{
		const struct metrics_lv conns[] = {
			{ "restored", st->restored },
			{ "failed", st->restore_failed },
			{ "stale_reset", st->stale_reset },
			{ "stale_gone", st->stale_gone },
			{ "stale_silent", st->stale_silent },
		};

		metrics_labelled(out, "tandem_takeover_connections_total", "counter",
		    "Shadow connections at takeovers, by outcome: restored, failed, "
		    "or after the stale check reset, gone (peer had reset), silent.",
		    "result", conns, METRICS_N(conns));
	}
	metrics_node_counter(out, "tandem_takeover_mismatch_refused_total",
	    "Takeovers that restored nothing: the peer's config digest differs.",
	    st->mismatch_refused);
	metrics_family(out, "tandem_takeover_last_restored", "gauge",
	    "Connections restored by the last takeover; absent before one.");
	if (st->last_takeover_wall > 0)
		ctl_buf_printf(out, "tandem_takeover_last_restored %" PRIu64 "\n",
		    st->last_restored);
	metrics_family(out, "tandem_takeover_last_failed", "gauge",
	    "Connections the last takeover failed to restore; absent before one.");
	if (st->last_takeover_wall > 0)
		ctl_buf_printf(out, "tandem_takeover_last_failed %" PRIu64 "\n",
		    st->last_failed);
	metrics_family(out, "tandem_takeover_last_timestamp_seconds", "gauge",
	    "Wall-clock time of the last takeover (Unix seconds); absent before one.");
	if (st->last_takeover_wall > 0)
		ctl_buf_printf(out, "tandem_takeover_last_timestamp_seconds %.3f\n",
		    st->last_takeover_wall);
	metrics_takeover_histogram(out, st);
	{
		const struct metrics_lv handovers[] = {
			{ "sent", st->handovers_sent },
			{ "received", st->handovers_received },
		};

		metrics_labelled(out, "tandem_sync_handovers_total", "counter",
		    "Planned switchovers that took the sessions along, given (sent) "
		    "or taken (received).", "dir", handovers, METRICS_N(handovers));
	}
	metrics_node_counter(out, "tandem_sync_frozen_total",
	    "Connections dumped in repair mode for a handover.", st->frozen);
	metrics_node_counter(out, "tandem_sync_freeze_failed_total",
	    "Connections that could not be dumped for a handover (reset).",
	    st->freeze_failed);
	metrics_node_counter(out, "tandem_sync_ring_overflows_total",
	    "Worker events lost to a full ring (a resync followed).",
	    st->ring_overflows);
}

int
metrics_render(const struct ctl_view *view, double now, struct ctl_buf *out)
{
	metrics_render_node(view, now, out);
	metrics_render_frontends(view, out);
	metrics_render_servers(view, out);
	metrics_render_vrrp(view, out);
	metrics_render_sync(view, out);
	return out->err;
}

/* ---- HTTP ------------------------------------------------------------- */

/* The request ends at its first empty line; we never read a body. */
static size_t
metrics_complete(const char *buf, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (buf[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

static void
metrics_reply(struct ctl_buf *out, const char *status, const char *extra,
    const char *ctype, const char *body, size_t len, int head_only)
{
	ctl_buf_printf(out, "HTTP/1.1 %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\n%sConnection: close\r\n\r\n", status, ctype,
	    len, extra);
	if (!head_only)
		ctl_buf_append(out, body, len);
}

static void
metrics_error(struct ctl_buf *out, const char *status, const char *extra,
    const char *msg)
{
	metrics_reply(out, status, extra, "text/plain; charset=utf-8", msg,
	    strlen(msg), 0);
}

/*
 * Request line: METHOD SP TARGET SP HTTP/1.x. The target's query string is
 * ignored (Prometheus adds none, but people paste URLs).
 */
static int
metrics_http(struct metrics *m, const char *req, size_t len, struct ctl_buf *out)
{
	const char *eol = memchr(req, '\n', len);
	const char *sp1, *sp2, *tend;
	size_t llen, mlen, tlen, vlen;
	struct ctl_buf body = { 0 };
	int head;

	llen = eol != NULL ? (size_t)(eol - req) : len;
	if (llen > 0 && req[llen - 1] == '\r')
		llen--;
	sp1 = memchr(req, ' ', llen);
	sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', llen - (size_t)(sp1 + 1 - req)) : NULL;
	if (sp1 == NULL || sp2 == NULL) {
		metrics_error(out, "400 Bad Request", "", "bad request\n");
		return out->err;
	}
	mlen = (size_t)(sp1 - req);
	tlen = (size_t)(sp2 - (sp1 + 1));
	vlen = llen - (size_t)(sp2 + 1 - req);
	if (vlen < 5 || memcmp(sp2 + 1, "HTTP/", 5) != 0 || mlen == 0 || tlen == 0) {
		metrics_error(out, "400 Bad Request", "", "bad request\n");
		return out->err;
	}
	if (vlen != 8 || (memcmp(sp2 + 1, "HTTP/1.0", 8) != 0 &&
	    memcmp(sp2 + 1, "HTTP/1.1", 8) != 0)) {
		metrics_error(out, "505 HTTP Version Not Supported", "",
		    "HTTP/1.0 or HTTP/1.1 only\n");
		return out->err;
	}
	if (mlen == 3 && memcmp(req, "GET", 3) == 0)
		head = 0;
	else if (mlen == 4 && memcmp(req, "HEAD", 4) == 0)
		head = 1;
	else {
		metrics_error(out, "405 Method Not Allowed", "Allow: GET, HEAD\r\n",
		    "GET /metrics\n");
		return out->err;
	}
	tend = memchr(sp1 + 1, '?', tlen);
	if (tend != NULL)
		tlen = (size_t)(tend - (sp1 + 1));
	if (tlen != 8 || memcmp(sp1 + 1, "/metrics", 8) != 0) {
		metrics_error(out, "404 Not Found", "", "not found; try /metrics\n");
		return out->err;
	}
	if (metrics_render(&m->view, ev_now(m->loop), &body) != 0) {
		ctl_buf_free(&body);
		return -ENOMEM;
	}
	metrics_reply(out, "200 OK", "", METRICS_CONTENT_TYPE, body.data, body.len,
	    head);
	ctl_buf_free(&body);
	return out->err;
}

static int
metrics_answer(void *arg, enum ctl_req kind, const char *req, size_t len,
    struct ctl_buf *out)
{
	struct metrics *m = arg;

	switch (kind) {
	case CTL_REQ_COMPLETE:
		return metrics_http(m, req, len, out);
	case CTL_REQ_EOF:
		metrics_error(out, "400 Bad Request", "", "incomplete request\n");
		break;
	case CTL_REQ_TOO_LONG:
		metrics_error(out, "431 Request Header Fields Too Large", "",
		    "request too large\n");
		break;
	case CTL_REQ_BUSY:
		metrics_error(out, "503 Service Unavailable", "Retry-After: 1\r\n",
		    "busy\n");
		break;
	case CTL_REQ_COUNT:
	default:
		return -EINVAL;
	}
	return out->err;
}

static const struct ctl_srv_ops metrics_ops = {
	.name = "metrics",
	.max_request = METRICS_MAX_REQUEST,
	.max_clients = METRICS_MAX_CLIENTS,
	.timeout = METRICS_CLIENT_TIMEOUT,
	.complete = metrics_complete,
	.answer = metrics_answer,
};

struct metrics *
metrics_new(struct ev_loop *loop, const struct sockaddr *addr, socklen_t len,
    const struct ctl_view *view)
{
	struct metrics *m;
	char name[128];
	int fd, ret, one = 1;

	ctl_fmt_addr(addr, len, name, sizeof(name));
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		ret = -ENOMEM;
		goto err;
	}
	m->loop = loop;
	m->view = *view;
	fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		ret = -errno;
		goto err_free;
	}
	/* A restarted daemon must not wait out TIME_WAIT to get its port back. */
	if (addr->sa_family != AF_UNIX &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1) {
		ret = -errno;
		goto err_close;
	}
	if (bind(fd, addr, len) == -1 || listen(fd, 64) == -1) {
		ret = -errno;
		goto err_close;
	}
	m->srv = ctl_srv_new(loop, fd, &metrics_ops, m);
	if (m->srv == NULL) {
		ret = -errno;  /* fd is already closed by ctl_srv_new */
		goto err_free;
	}
	log_info("metrics: listening on %s", name);
	return m;

err_close:
	close(fd);
err_free:
	free(m);
err:
	log_warnx("metrics: cannot listen on %s: %s", name, strerror(-ret));
	errno = -ret;
	return NULL;
}

void
metrics_free(struct metrics *m)
{
	if (m == NULL)
		return;
	ctl_srv_free(m->srv);
	free(m);
}

void
metrics_set_view(struct metrics *m, const struct ctl_view *view)
{
	m->view = *view;
}
