/* bal maglev — building the consistent-hash table and hashing clients. */
#include "maglev.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

/* splitmix64's finalizer: every input bit flips each output bit with p ~ 1/2. */
static uint64_t
bal_mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static uint64_t
bal_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint64_t
bal_hash_v6(const uint8_t bytes[16])
{
	return bal_mix64(bal_mix64(bal_be64(bytes) ^ 0x6a09e667f3bcc908ULL) ^
	    bal_be64(bytes + 8));
}

uint64_t
bal_client_hash(const struct bal_client *client)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	uint8_t mapped[16] = { [10] = 0xff, [11] = 0xff };

	if (client == NULL || client->addr == NULL)
		return 0;
	switch (client->addr->sa_family) {
	case AF_INET:
		if (client->addrlen < sizeof(sin))
			return 0;
		memcpy(&sin, client->addr, sizeof(sin));
		memcpy(mapped + 12, &sin.sin_addr, 4);
		return bal_hash_v6(mapped);
	case AF_INET6:
		if (client->addrlen < sizeof(sin6))
			return 0;
		memcpy(&sin6, client->addr, sizeof(sin6));
		return bal_hash_v6(sin6.sin6_addr.s6_addr);
	default:
		return 0;
	}
}

static bool
bal_is_prime(uint32_t n)
{
	if (n < 2)
		return false;
	if (n % 2 == 0)
		return n == 2;
	for (uint32_t d = 3; d <= n / d; d += 2)
		if (n % d == 0)
			return false;
	return true;
}

uint32_t
bal_maglev_size(size_t nservers)
{
	uint32_t m = BAL_MAGLEV_MIN_SIZE;

	if (nservers > BAL_MAX_SERVERS)
		nservers = BAL_MAX_SERVERS;
	if (nservers * BAL_MAGLEV_PER_SERVER > m)
		m = (uint32_t)(nservers * BAL_MAGLEV_PER_SERVER);
	while (!bal_is_prime(m))
		m++;
	return m;
}

/* FNV-1a over the name, then mixed: names are short and alike ("web1", "web2"). */
static uint64_t
bal_hash_name(const char *name)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < BAL_NAME_MAX && name[i] != '\0'; i++) {
		h ^= (uint8_t)name[i];
		h *= 0x100000001b3ULL;
	}
	return bal_mix64(h);
}

/* eff_weight as the table uses it: 1..256, whatever was stored. */
static uint16_t
bal_member_weight(unsigned w)
{
	return (uint16_t)(w < 1 ? 1 : w > 256 ? 256 : w);
}

static size_t
bal_up_members(const struct bal_pool *pool, struct bal_maglev_member *member)
{
	size_t n = 0;

	for (size_t i = 0; i < pool->nservers; i++) {
		const struct bal_server *s = &pool->servers[i];

		if (atomic_load_explicit(&s->state, memory_order_relaxed) != BAL_UP)
			continue;
		if (member != NULL) {
			member[n].idx = (uint16_t)i;
			member[n].weight = bal_member_weight(atomic_load_explicit(
			    &s->eff_weight, memory_order_relaxed));
		}
		n++;
	}
	return n;
}

bool
bal_maglev_current(const struct bal_maglev *tbl, const struct bal_pool *pool)
{
	size_t n = 0;

	for (size_t i = 0; i < pool->nservers; i++) {
		const struct bal_server *s = &pool->servers[i];
		unsigned w;

		if (atomic_load_explicit(&s->state, memory_order_relaxed) != BAL_UP)
			continue;
		w = atomic_load_explicit(&s->eff_weight, memory_order_relaxed);
		if (tbl == NULL || n >= tbl->nmembers ||
		    tbl->member[n].idx != i ||
		    tbl->member[n].weight != bal_member_weight(w))
			return false;
		n++;
	}
	return tbl == NULL ? n == 0 : n == tbl->nmembers;
}

/*
 * Turn order for weighted population: stride scheduling. Server j's turns
 * fall at the virtual times 0.5/w, 1.5/w, 2.5/w ... (midpoints, so a light
 * server's first turn is not pushed behind all of a heavy one's) and are
 * taken in time order, ties by member order. A server of weight w thus gets w
 * turns for each turn of a weight-1 server, and equal weights reduce to the
 * paper's plain round robin. Times are fixed point, 2^32 per unit, so a turn
 * key is one integer: time << 10 | member (n <= 1024); the largest time,
 * M x 2^32 < 2^49, leaves room. A binary min-heap of the members' next turns
 * makes the population O(M log n) whatever the weights.
 */
#define BAL_SCHED_UNIT (1ULL << 32)
#define BAL_SCHED_MEMBER_BITS 10

struct bal_maglev_walk {
	uint32_t pos;    /* next slot of this server's permutation to try */
	uint32_t skip;
	uint64_t step;   /* BAL_SCHED_UNIT / weight: time between turns */
};

static void
bal_sched_sift_down(uint64_t *heap, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		uint64_t tmp;

		if (l < n && heap[l] < heap[m])
			m = l;
		if (r < n && heap[r] < heap[m])
			m = r;
		if (m == i)
			return;
		tmp = heap[i];
		heap[i] = heap[m];
		heap[m] = tmp;
		i = m;
	}
}

/*
 * Population (the paper's Pseudocode 1, with weights): each server walks its
 * own permutation of the slots, offset + j x skip mod M (M prime, so every
 * skip visits every slot), and on its turn claims the first free slot. The
 * permutation comes from the server's name and the turn order from the
 * weights and config order, so both nodes of a pair build the same table
 * and a client keeps its server across a failover.
 */
static void
bal_maglev_populate(uint16_t *slot, uint32_t m,
    const struct bal_maglev_member *member, size_t n,
    const struct bal_pool *pool, struct bal_maglev_walk *walk, uint64_t *heap)
{
	const uint64_t jmask = (1ULL << BAL_SCHED_MEMBER_BITS) - 1;

	for (size_t j = 0; j < n; j++) {
		uint64_t h = bal_hash_name(pool->servers[member[j].idx].name);

		walk[j].pos = (uint32_t)(bal_mix64(h ^ 0x243f6a8885a308d3ULL) % m);
		walk[j].skip = (uint32_t)(bal_mix64(h ^ 0x13198a2e03707344ULL) % (m - 1)) + 1;
		walk[j].step = BAL_SCHED_UNIT / member[j].weight;
		heap[j] = (walk[j].step / 2) << BAL_SCHED_MEMBER_BITS | j;
	}
	for (size_t i = n / 2; i-- > 0; )
		bal_sched_sift_down(heap, n, i);
	for (uint32_t i = 0; i < m; i++)
		slot[i] = BAL_MAGLEV_EMPTY;

	for (uint32_t filled = 0; filled < m; filled++) {
		struct bal_maglev_walk *w = &walk[heap[0] & jmask];

		while (slot[w->pos] != BAL_MAGLEV_EMPTY) {
			w->pos += w->skip;
			if (w->pos >= m)
				w->pos -= m;
		}
		slot[w->pos] = member[heap[0] & jmask].idx;
		heap[0] += w->step << BAL_SCHED_MEMBER_BITS;
		bal_sched_sift_down(heap, n, 0);
	}
}

int
bal_maglev_build(const struct bal_pool *pool, struct bal_maglev **out)
{
	struct bal_maglev *tbl;
	struct bal_maglev_member *member;
	struct bal_maglev_walk *walk;
	uint16_t *slot;
	uint64_t *heap;
	uint32_t m;
	size_t n, need;
	int ret = -ENOMEM;

	*out = NULL;
	n = bal_up_members(pool, NULL);
	if (n == 0)
		return 0;
	m = bal_maglev_size(pool->nservers);

	/* One block: header, members, slots (all 2-byte aligned after the header). */
	need = sizeof(*tbl) + n * sizeof(*member) + (size_t)m * sizeof(*slot);
	tbl = calloc(1, need);
	if (tbl == NULL)
		goto out;
	walk = calloc(n, sizeof(*walk));
	if (walk == NULL)
		goto free_tbl;
	heap = calloc(n, sizeof(*heap));
	if (heap == NULL)
		goto free_walk;

	member = (struct bal_maglev_member *)(tbl + 1);
	slot = (uint16_t *)(member + n);
	/* A state can only change on this thread, so the count above still holds. */
	bal_up_members(pool, member);
	bal_maglev_populate(slot, m, member, n, pool, walk, heap);

	tbl->size = m;
	tbl->nmembers = (uint32_t)n;
	tbl->member = member;
	tbl->slot = slot;
	*out = tbl;
	ret = 0;

	free(heap);
free_walk:
	free(walk);
free_tbl:
	if (ret != 0)
		free(tbl);
out:
	return ret;
}

void
bal_maglev_free(struct bal_maglev *tbl)
{
	while (tbl != NULL) {
		struct bal_maglev *next = tbl->next_retired;

		free(tbl);
		tbl = next;
	}
}
