/*
 * proxy — the L4 data path: frontends, worker threads, client/backend relay.
 *
 * Threading: the main thread builds one struct proxy_frontend per configured
 * frontend (shared, read-only apart from its atomics) and starts N workers.
 * Each worker runs its own libev loop in its own thread with its own
 * SO_REUSEPORT listener per frontend and owns every connection it accepts:
 * no locks on the data path. Cross-thread communication is limited to the
 * frontend/server atomics and the worker's stop ev_async.
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

/*
 * Create worker id serving fes[0..nfes) (the array must outlive the worker).
 * Opens its listeners now, so bind errors surface at start-up; returns NULL
 * and logs the reason on failure.
 */
struct proxy_worker *proxy_worker_new(unsigned id, struct proxy_frontend *fes,
    size_t nfes);

/* Start the worker's thread. Returns 0 or -errno. */
int proxy_worker_start(struct proxy_worker *w);

/*
 * Ask the worker to stop (thread-safe), wait for its thread, then free it
 * with every connection it still had. NULL is a no-op.
 */
void proxy_worker_stop_free(struct proxy_worker *w);

/* Connections this worker holds now (for status output; relaxed). */
unsigned proxy_worker_conns(const struct proxy_worker *w);

#endif
