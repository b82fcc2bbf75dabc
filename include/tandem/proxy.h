/*
 * proxy — the L4 data path: frontends, worker threads, client/backend relay.
 *
 * Threading: the main thread builds one struct proxy_frontend per configured
 * frontend (shared, read-only apart from its atomics) and starts N workers.
 * Each worker runs its own libev loop in its own thread with its own
 * SO_REUSEPORT listener per frontend and owns every connection it accepts:
 * no locks on the data path. Cross-thread communication is limited to the
 * frontend/server atomics, the worker's stop ev_async and, with session sync,
 * the two ring channels of struct sess_worker_link (include/tandem/session.h).
 *
 * Session sync (daemon/proxy/psync.c), what a worker sends on link->events:
 *   OPEN      when a backend connect completes, before the client's early
 *             bytes are written (and when an ADOPT was set up): a live
 *             snapshot of both sockets, counts 0; retried each loop turn
 *             while the channel is full. A snapshot that fails (counted in
 *             snapshots_failed) leaves the connection unsynced.
 *   UPDATE    once per loop turn per synced connection whose bytes moved:
 *             the four totals since the snapshot (bytes really written to
 *             or read from each socket). Never before its OPEN.
 *   CLOSE     a synced connection closed, or read a FIN from either side (a
 *             half-closed socket cannot be repaired: it is not synced any
 *             more from then on). Only after its OPEN was sent.
 *   ADOPT_FAILED  an ADOPT could not be set up; its fds are closed (RST).
 *   FROZEN, FREEZE_DONE  in answer to FREEZE, see session.h.
 * While a connection is synced, link->fd_flags[fd] is 1 for both its fds.
 */
#ifndef TANDEM_PROXY_H
#define TANDEM_PROXY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <tandem/bal.h>
#include <tandem/config.h>

/* Per-frontend counters, written by workers, read by ctl/metrics. */
struct proxy_fe_stats {
	atomic_uint_fast64_t conns_total;     /* accepted */
	atomic_uint_fast64_t bytes_in;        /* client -> proxy */
	atomic_uint_fast64_t bytes_out;       /* proxy -> client */
	atomic_uint_fast64_t connect_errors;  /* failed backend connects (each attempt) */
	atomic_uint_fast64_t retries;         /* connects retried on another server */
	atomic_uint_fast64_t no_server;       /* clients closed: no server left to try */
	atomic_uint_fast64_t timeouts;        /* connections closed by a timeout */
	atomic_uint_fast64_t resets;          /* connections aborted by a reset/error */
	atomic_uint_fast64_t limit_pauses;    /* times a listener paused at max-connections */
	atomic_uint_fast64_t accept_errors;   /* EMFILE/ENFILE/ENOMEM pauses */
};

struct proxy_frontend {
	const struct cfg_frontend *cfg;   /* owned by the config */
	const struct cfg_backend *becfg;
	struct bal_pool *pool;            /* owned by the main thread */
	atomic_uint active;               /* connections open now, all workers */
	struct proxy_fe_stats stats;
};

struct proxy_worker;
struct sess_worker_link;

/*
 * Create worker id serving fes[0..nfes) (the array must outlive the worker).
 * Opens its listeners now, so bind errors surface at start-up; returns NULL
 * and logs the reason on failure.
 * link: session sync (copied; link->events and link->fd_flags are borrowed
 * and must outlive the worker). NULL, or link->events NULL: no session sync,
 * the relay makes no extra call of any kind. Otherwise the worker creates its
 * command channel now and stores it in *link->cmds (when link->cmds is not
 * NULL); the main thread must stop sending on it before
 * proxy_worker_stop_free(), which frees it.
 */
struct proxy_worker *proxy_worker_new(unsigned id, struct proxy_frontend *fes,
    size_t nfes, const struct sess_worker_link *link);

/* Start the worker's thread. Returns 0 or -errno. */
int proxy_worker_start(struct proxy_worker *w);

/*
 * Ask the worker to stop (thread-safe), wait for its thread, then free it
 * with every connection it still had. NULL is a no-op.
 */
void proxy_worker_stop_free(struct proxy_worker *w);

/* Connections this worker holds now (for status output; relaxed). */
unsigned proxy_worker_conns(const struct proxy_worker *w);

/* A worker's session-sync counters (all 0 without sync). */
struct proxy_sess_stats {
	uint64_t snapshots_failed;  /* live or frozen snapshots that failed */
	uint64_t opens_sent;
	uint64_t updates_sent;
	uint64_t closes_sent;
	uint64_t ring_full;         /* sends refused by a full channel (retried) */
	uint64_t events_lost;       /* CLOSE / ADOPT_FAILED dropped: retry list full */
	uint64_t adopted;           /* ADOPTs set up */
	uint64_t adopt_failed;
	uint64_t killed;            /* KILLs carried out */
	uint64_t frozen;            /* FROZEN events sent */
	uint64_t freeze_failed;     /* connections FREEZE had to reset */
};

/* Copy w's counters; any thread (relaxed reads: a snapshot that may lag). */
void proxy_worker_sess_stats(const struct proxy_worker *w, struct proxy_sess_stats *out);

#endif
