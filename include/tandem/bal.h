/*
 * bal — server pools and the balancing algorithms.
 *
 * A pool (one per configured backend) is shared by every worker thread and the
 * main thread. Ownership and threading:
 *   - the main thread creates the pool from the config, owns it and frees it;
 *   - the main thread alone writes server state and effective weight
 *     (health checks, slow start, tandemctl drain/ready) and calls
 *     bal_pool_rebuild() after a change, off the data path;
 *   - workers call bal_pick() concurrently, each with its own bal_cursor,
 *     and update the per-server counters (atomics, relaxed order: they are
 *     statistics and load hints, never used for correctness).
 * No locks: state is an atomic int, the Maglev table is published by atomic
 * pointer swap, and retired tables are freed by bal_pool_reclaim() once no
 * pick can still be reading them (see there).
 */
#ifndef TANDEM_BAL_H
#define TANDEM_BAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define BAL_NAME_MAX 64
#define BAL_MAX_SERVERS 1024   /* per pool; the config refuses more */

enum bal_algo {
	BAL_ROUNDROBIN = 0,  /* "roundrobin": equal turns, weights ignored */
	BAL_WRR,             /* "wrr": smooth weighted round robin (nginx), no bursts */
	BAL_LEASTCONN,       /* "leastconn": min active / weight */
	BAL_SOURCE,          /* "source": Maglev consistent hash of the client address */
	BAL_LRT,             /* "lrt": least response time, EWMA x (in-flight + 1) / weight */
	BAL_P2C,             /* "p2c": power of two random choices on active / weight */
	BAL_ALGO_COUNT
};

enum bal_state {
	BAL_UP = 0,   /* takes new connections */
	BAL_DOWN,     /* failed health checks: no new connections */
	BAL_DRAIN,    /* operator: keeps its connections, gets no new ones */
	BAL_MAINT,    /* operator/config: out of service */
	BAL_STATE_COUNT
};

/* Names as written in the config and shown by tandemctl. */
const char *bal_algo_name(enum bal_algo algo);
int bal_algo_parse(const char *name);           /* -1 if unknown */
const char *bal_state_name(enum bal_state state);
int bal_state_parse(const char *name);          /* -1 if unknown */

/* Per-server statistics, updated by workers and health, read by ctl/metrics. */
struct bal_stats {
	atomic_uint_fast64_t conns_total;
	atomic_uint_fast64_t bytes_in;       /* server -> client */
	atomic_uint_fast64_t bytes_out;      /* client -> server */
	atomic_uint_fast64_t connect_errors;
	atomic_uint_fast64_t retries;        /* connects retried elsewhere after failing here */
	atomic_uint_fast64_t state_changes;
};

struct bal_server {
	char name[BAL_NAME_MAX];
	struct sockaddr_storage addr;
	socklen_t addrlen;
	unsigned weight;                  /* configured, 1..256 */
	size_t index;                     /* position in pool->servers */

	/* Written by the main thread only. */
	atomic_int state;                 /* enum bal_state */
	atomic_uint eff_weight;           /* weight scaled by slow start, 1..weight */

	/* Written by workers. */
	atomic_uint active;               /* connections in flight to this server */
	atomic_uint consec_fails;         /* connect failures in a row (passive check) */
	atomic_uint_fast64_t ewma_us;     /* connect-time EWMA in µs, 0 = no sample yet */
	struct bal_stats stats;
};

struct bal_maglev;  /* lookup table, private to balance/ */

struct bal_pool {
	char name[BAL_NAME_MAX];
	enum bal_algo algo;
	struct bal_server *servers;       /* array of nservers, owned */
	size_t nservers;
	_Atomic(struct bal_maglev *) maglev;  /* BAL_SOURCE only; NULL otherwise */
	struct bal_maglev *retired;       /* main thread only: chain awaiting reclaim */
	double retired_at;                /* when the newest was retired, -1 = stamp at reclaim */
	atomic_uint generation;           /* bumped on every state/weight change */
};

/* What the algorithms may look at about the client. */
struct bal_client {
	const struct sockaddr *addr;      /* client source address (port ignored) */
	socklen_t addrlen;
};

/* Per-worker, per-pool algorithm state (rr position, wrr current weights, rng). */
struct bal_cursor;

/*
 * Create a pool of nservers servers copied from templates (name, addr,
 * addrlen, weight, state); every server starts in templates[i].state with
 * eff_weight = weight. Returns NULL on allocation failure, an unknown
 * algorithm or more than BAL_MAX_SERVERS servers. The pool owns its copy.
 */
struct bal_pool *bal_pool_new(const char *name, enum bal_algo algo,
    const struct bal_server *templates, size_t nservers);
void bal_pool_free(struct bal_pool *pool);  /* NULL is a no-op */

/*
 * Main thread: set a server's state / effective weight, bump the generation,
 * and (BAL_SOURCE) rebuild the Maglev table so only eligible servers appear.
 * Returns 0 or -ENOMEM (the old table stays in use then).
 */
int bal_set_state(struct bal_pool *pool, size_t idx, enum bal_state state);
int bal_set_eff_weight(struct bal_pool *pool, size_t idx, unsigned w);
int bal_pool_rebuild(struct bal_pool *pool, double now);

/*
 * Main thread, periodically: free retired Maglev tables once unpublished for
 * longer than any bal_pick() can take. 1 s is generous: a pick is tens of ns
 * and never blocks; only a worker descheduled for over a second inside a pick
 * (a debugger stop) could still read a freed table. An exact per-worker epoch
 * would close that; not worth its cost on the data path today.
 */
void bal_pool_reclaim(struct bal_pool *pool, double now);

struct bal_cursor *bal_cursor_new(const struct bal_pool *pool, uint64_t seed);
void bal_cursor_free(struct bal_cursor *cur);  /* NULL is a no-op */

/*
 * Pick a server for a new connection. Servers not BAL_UP are never picked,
 * nor those whose index is in exclude[0..nexclude) (already tried for this
 * connection). Returns the server index, or -1 when none is eligible.
 * Thread-safe against other pickers and against the main thread's updates.
 */
int bal_pick(struct bal_pool *pool, struct bal_cursor *cur,
    const struct bal_client *client, const size_t *exclude, size_t nexclude);

/* Worker bookkeeping around a connection to server idx. */
void bal_conn_start(struct bal_pool *pool, size_t idx);   /* active++ , total++ */
void bal_conn_end(struct bal_pool *pool, size_t idx);     /* active-- */
/* Record a connect time sample (µs) into the EWMA used by lrt. */
void bal_observe_connect(struct bal_pool *pool, size_t idx, uint64_t us);

#endif
