/*
 * bal pool — server pools: creation, the main thread's state and weight
 * writes, Maglev publication and reclamation, and the workers' counters.
 */
#include <tandem/bal.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maglev.h"

/* How long a retired Maglev table stays readable; see bal_pool_reclaim() in bal.h. */
#define BAL_RECLAIM_GRACE 1.0

/*
 * EWMA weight of a new connect-time sample: 1/8, as TCP's SRTT (RFC 6298),
 * so one slow connect moves the average by an eighth and ~16 samples wash
 * out a step change. Samples are capped at BAL_EWMA_MAX_US so lrt's scores
 * fit in 64 bits (see pick.c); a connect slower than 16 s is a failure anyway.
 */
#define BAL_EWMA_SHIFT 3
#define BAL_EWMA_MAX_US ((1u << 24) - 1)

/*
 * The initial state of server i is templates[i].state (the "initial_state"
 * of bal.h); an out-of-range state is taken as BAL_MAINT and a weight outside
 * 1..256 is clamped. Besides allocation failure, returns NULL for an unknown
 * algo or more than BAL_MAX_SERVERS servers. For BAL_SOURCE the first table
 * is built here, so picks work before any rebuild.
 */
struct bal_pool *
bal_pool_new(const char *name, enum bal_algo algo,
    const struct bal_server *templates, size_t nservers)
{
	struct bal_pool *pool;
	struct bal_maglev *tbl;

	if ((unsigned)algo >= BAL_ALGO_COUNT || nservers > BAL_MAX_SERVERS)
		return NULL;
	pool = calloc(1, sizeof(*pool));
	if (pool == NULL)
		goto out;
	if (nservers > 0) {
		pool->servers = calloc(nservers, sizeof(*pool->servers));
		if (pool->servers == NULL)
			goto free_pool;
	}
	snprintf(pool->name, sizeof(pool->name), "%s", name != NULL ? name : "");
	pool->algo = algo;
	pool->nservers = nservers;
	atomic_init(&pool->maglev, NULL);
	atomic_init(&pool->generation, 0);

	for (size_t i = 0; i < nservers; i++) {
		const struct bal_server *t = &templates[i];
		struct bal_server *s = &pool->servers[i];
		int state = atomic_load_explicit(&t->state, memory_order_relaxed);
		unsigned w = t->weight;

		if (w < 1)
			w = 1;
		if (w > 256)
			w = 256;
		if (state < 0 || state >= BAL_STATE_COUNT)
			state = BAL_MAINT;
		snprintf(s->name, sizeof(s->name), "%s", t->name);
		if (t->addrlen <= sizeof(s->addr)) {
			memcpy(&s->addr, &t->addr, t->addrlen);
			s->addrlen = t->addrlen;
		}
		s->weight = w;
		s->index = i;
		atomic_init(&s->state, state);
		atomic_init(&s->eff_weight, w);
		atomic_init(&s->active, 0);
		atomic_init(&s->consec_fails, 0);
		atomic_init(&s->ewma_us, 0);
		atomic_init(&s->stats.conns_total, 0);
		atomic_init(&s->stats.bytes_in, 0);
		atomic_init(&s->stats.bytes_out, 0);
		atomic_init(&s->stats.connect_errors, 0);
		atomic_init(&s->stats.retries, 0);
		atomic_init(&s->stats.state_changes, 0);
	}

	if (algo == BAL_SOURCE) {
		if (bal_maglev_build(pool, &tbl) != 0)
			goto free_servers;
		atomic_store_explicit(&pool->maglev, tbl, memory_order_release);
	}
	return pool;

free_servers:
	free(pool->servers);
free_pool:
	free(pool);
out:
	return NULL;
}

void
bal_pool_free(struct bal_pool *pool)
{
	if (pool == NULL)
		return;
	bal_maglev_free(atomic_load_explicit(&pool->maglev, memory_order_relaxed));
	bal_maglev_free(pool->retired);
	free(pool->servers);
	free(pool);
}

/*
 * Build and publish a table for the current up set unless the published one
 * already is that. now < 0: the caller has no clock; the retired table is
 * timed by the next bal_pool_reclaim() instead, which only delays its free.
 */
static int
bal_pool_publish(struct bal_pool *pool, double now)
{
	struct bal_maglev *tbl, *old;
	int ret;

	if (pool->algo != BAL_SOURCE)
		return 0;
	old = atomic_load_explicit(&pool->maglev, memory_order_relaxed);
	if (bal_maglev_current(old, pool))
		return 0;
	ret = bal_maglev_build(pool, &tbl);
	if (ret != 0)
		return ret;
	/* release: a picker that loads tbl with acquire sees its slots filled */
	old = atomic_exchange_explicit(&pool->maglev, tbl, memory_order_release);
	if (old != NULL) {
		old->retired_at = now;
		old->next_retired = pool->retired;
		pool->retired = old;
		pool->retired_at = now;
	}
	return 0;
}

/*
 * Also counts the change in the server's stats.state_changes (only here, so
 * callers must not count it again). An unchanged state bumps nothing. The
 * state is set even when the rebuild fails with -ENOMEM: picks check state,
 * so a server that went down is still avoided through the old table.
 * -EINVAL for an index or state out of range.
 */
int
bal_set_state(struct bal_pool *pool, size_t idx, enum bal_state state)
{
	struct bal_server *s;

	if (idx >= pool->nservers || (unsigned)state >= BAL_STATE_COUNT)
		return -EINVAL;
	s = &pool->servers[idx];
	if (atomic_exchange_explicit(&s->state, (int)state,
	    memory_order_relaxed) != (int)state) {
		atomic_fetch_add_explicit(&s->stats.state_changes, 1,
		    memory_order_relaxed);
		atomic_fetch_add_explicit(&pool->generation, 1,
		    memory_order_relaxed);
	}
	return bal_pool_publish(pool, -1.0);
}

/* w is clamped to 1..weight; -EINVAL for an index out of range. */
int
bal_set_eff_weight(struct bal_pool *pool, size_t idx, unsigned w)
{
	struct bal_server *s;

	if (idx >= pool->nservers)
		return -EINVAL;
	s = &pool->servers[idx];
	if (w < 1)
		w = 1;
	if (w > s->weight)
		w = s->weight;
	if (atomic_exchange_explicit(&s->eff_weight, w,
	    memory_order_relaxed) != w)
		atomic_fetch_add_explicit(&pool->generation, 1,
		    memory_order_relaxed);
	return bal_pool_publish(pool, -1.0);
}

/*
 * A no-op when the published table already matches the up set and weights
 * (bal_set_state/bal_set_eff_weight rebuild themselves), so calling it after
 * every change, or to retry after -ENOMEM, costs one pass over the servers.
 */
int
bal_pool_rebuild(struct bal_pool *pool, double now)
{
	return bal_pool_publish(pool, now);
}

/*
 * The chain is newest first, so once one table is old enough every table
 * behind it is too: free from there on. Tables retired by a caller without a
 * clock get now as their time, which can only make them wait longer.
 */
void
bal_pool_reclaim(struct bal_pool *pool, double now)
{
	struct bal_maglev **link;

	for (struct bal_maglev *t = pool->retired; t != NULL; t = t->next_retired)
		if (t->retired_at < 0)
			t->retired_at = now;
	for (link = &pool->retired; *link != NULL; link = &(*link)->next_retired) {
		if (now - (*link)->retired_at > BAL_RECLAIM_GRACE) {
			bal_maglev_free(*link);
			*link = NULL;
			break;
		}
	}
	pool->retired_at = pool->retired != NULL ? pool->retired->retired_at : 0;
}

void
bal_conn_start(struct bal_pool *pool, size_t idx)
{
	struct bal_server *s = &pool->servers[idx];

	atomic_fetch_add_explicit(&s->active, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->stats.conns_total, 1, memory_order_relaxed);
}

void
bal_conn_end(struct bal_pool *pool, size_t idx)
{
	struct bal_server *s = &pool->servers[idx];

	/* An unmatched end would wrap to 2^32 and starve the server in leastconn. */
	if (atomic_fetch_sub_explicit(&s->active, 1, memory_order_relaxed) == 0)
		atomic_fetch_add_explicit(&s->active, 1, memory_order_relaxed);
}

/*
 * ewma += (sample - ewma) / 8, rounded to nearest, in whole µs: the rounding
 * leaves the average within 4 µs of a constant sample, noise next to any real
 * connect. The first sample is taken as is. Never stores 0, which means "no
 * sample" to lrt. A CAS loop so concurrent samples are each counted.
 */
void
bal_observe_connect(struct bal_pool *pool, size_t idx, uint64_t us)
{
	atomic_uint_fast64_t *ewma = &pool->servers[idx].ewma_us;
	uint_fast64_t old, next;

	if (us < 1)
		us = 1;
	if (us > BAL_EWMA_MAX_US)
		us = BAL_EWMA_MAX_US;
	old = atomic_load_explicit(ewma, memory_order_relaxed);
	do {
		if (old == 0)
			next = us;
		else
			next = (old * ((1u << BAL_EWMA_SHIFT) - 1) + us +
			    (1u << (BAL_EWMA_SHIFT - 1))) >> BAL_EWMA_SHIFT;
		if (next == 0)
			next = 1;
	} while (!atomic_compare_exchange_weak_explicit(ewma, &old, next,
	    memory_order_relaxed, memory_order_relaxed));
}
