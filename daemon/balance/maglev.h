/*
 * maglev — consistent-hash lookup table for the "source" algorithm, private
 * to balance/ (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
 * Load Balancer", NSDI 2016, section 3.4).
 *
 * A table is immutable once built. The main thread builds it from the servers
 * that are BAL_UP, publishes it through pool->maglev and, when it is replaced,
 * chains the old one on pool->retired until bal_pool_reclaim() frees it.
 */
#ifndef TANDEM_BAL_MAGLEV_H
#define TANDEM_BAL_MAGLEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tandem/bal.h>

/*
 * Table size M: the smallest prime >= max(100 x configured servers, 16381).
 * It depends on the configured count, never on how many are up, since a new
 * M would remap every client. 100 slots per server keep each server's share
 * within ~1% of its weight; the floor is for small pools, where 100 x n alone
 * (211 slots for 2 servers) makes a removal move several percent of the
 * clients of the servers that stay. Measured on 100k clients, removing one
 * of 10 servers moves 1.6% of the others' clients with M = 4093, 0.7% with
 * 16381, 0.3% with 65537; a rebuild (2..100 servers) takes 0.2-0.8 ms at
 * 16381 but 0.6-4 ms at 65537, and slow start rebuilds on every
 * effective-weight step. 16381 (32 KiB, cache-resident on the data path) is
 * the compromise. At the 1024-server maximum M = 102409 and a rebuild ~7 ms.
 */
#define BAL_MAGLEV_MIN_SIZE 16381u
#define BAL_MAGLEV_PER_SERVER 100u   /* slots per configured server, at least */
#define BAL_MAGLEV_EMPTY UINT16_MAX  /* slot not yet claimed while building */

struct bal_maglev_member {
	uint16_t idx;      /* server index in the pool */
	uint16_t weight;   /* eff_weight the table was built with */
};

struct bal_maglev {
	struct bal_maglev *next_retired;  /* older retired tables (main thread) */
	double retired_at;    /* monotonic s; < 0: retired, time not yet known */
	uint32_t size;        /* M, a prime */
	uint32_t nmembers;    /* servers present in the table, >= 1 */
	const struct bal_maglev_member *member;  /* nmembers, sorted by idx */
	const uint16_t *slot;                    /* size entries: server index */
};

/* M for a pool of nservers configured servers: smallest prime >= max(100 x n, 4093). */
uint32_t bal_maglev_size(size_t nservers);

/*
 * Build the table for the servers of pool that are BAL_UP now, with their
 * current eff_weight. Main thread. Returns 0 and *out (NULL when no server is
 * up), or -ENOMEM. The table is one allocation, freed by bal_maglev_free().
 */
int bal_maglev_build(const struct bal_pool *pool, struct bal_maglev **out);

/* True if tbl (may be NULL) was built from exactly the pool's current up set and weights. */
bool bal_maglev_current(const struct bal_maglev *tbl, const struct bal_pool *pool);

/* Free tbl and every table chained behind it through next_retired. NULL is a no-op. */
void bal_maglev_free(struct bal_maglev *tbl);

/*
 * Hash of the client's address, port ignored. An IPv4-mapped IPv6 address
 * hashes like the IPv4 address, so a client keeps its server whether it
 * reaches a dual-stack or an IPv4 listener. Computed from the address bytes
 * in network order only, so both nodes of a pair agree. No address: 0.
 */
uint64_t bal_client_hash(const struct bal_client *client);

#endif
