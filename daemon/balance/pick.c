/*
 * bal pick — the algorithms, run by workers on the data path: no allocation,
 * no locks, at most one pass over the servers (one table slot for source).
 *
 * Servers are read with relaxed loads: state and load may change while a pick
 * runs, and then a server that went down a moment ago gets one more attempt,
 * which the proxy's connect timeout and retry (exclude list) already cover.
 */
#include <tandem/bal.h>

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>

#include "maglev.h"

/* lrt caps, so ewma x (active + 1) x weight stays below 2^56. */
#define BAL_LRT_CAP ((1u << 24) - 1)

struct bal_cursor {
	const struct bal_pool *pool;   /* only to check the cursor's pool */
	size_t nservers;
	size_t rot;          /* roundrobin position; leastconn/lrt tie rotation */
	uint64_t rng;        /* splitmix64 state, p2c */
	int64_t current[];   /* wrr current weights, nservers entries */
};

/*
 * One cursor per worker and pool. The rotation starts at seed mod nservers,
 * so workers seeded differently do not all begin on the first server; wrr
 * starts from zero current weights, as nginx does.
 */
struct bal_cursor *
bal_cursor_new(const struct bal_pool *pool, uint64_t seed)
{
	struct bal_cursor *cur;

	cur = calloc(1, sizeof(*cur) + pool->nservers * sizeof(cur->current[0]));
	if (cur == NULL)
		return NULL;
	cur->pool = pool;
	cur->nservers = pool->nservers;
	cur->rot = pool->nservers > 0 ? (size_t)(seed % pool->nservers) : 0;
	cur->rng = seed;
	return cur;
}

void
bal_cursor_free(struct bal_cursor *cur)
{
	free(cur);
}

/* splitmix64 (Steele, Lea, Flood 2014): any seed, including 0, is fine. */
static uint64_t
bal_rand(struct bal_cursor *cur)
{
	uint64_t z = (cur->rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform in [0, n) for n <= 2^32 by multiply-shift (Lemire); bias < n / 2^32. */
static size_t
bal_rand_below(struct bal_cursor *cur, size_t n)
{
	return (size_t)(((bal_rand(cur) >> 32) * (uint64_t)n) >> 32);
}

static bool
bal_eligible(const struct bal_pool *pool, size_t idx,
    const size_t *exclude, size_t nexclude)
{
	if (atomic_load_explicit(&pool->servers[idx].state,
	    memory_order_relaxed) != BAL_UP)
		return false;
	for (size_t k = 0; k < nexclude; k++)
		if (exclude[k] == idx)
			return false;
	return true;
}

static uint64_t
bal_active(const struct bal_server *s)
{
	return atomic_load_explicit(&s->active, memory_order_relaxed);
}

static uint64_t
bal_weight(const struct bal_server *s)
{
	unsigned w = atomic_load_explicit(&s->eff_weight, memory_order_relaxed);

	return w == 0 ? 1 : w;
}

static int
bal_pick_roundrobin(struct bal_pool *pool, struct bal_cursor *cur,
    const struct bal_client *client, const size_t *exclude, size_t nexclude)
{
	size_t n = pool->nservers, i = cur->rot;

	for (size_t k = 0; k < n; k++, i = i + 1 == n ? 0 : i + 1) {
		if (bal_eligible(pool, i, exclude, nexclude)) {
			cur->rot = i + 1 == n ? 0 : i + 1;
			return (int)i;
		}
	}
	return -1;
}

/*
 * Smooth weighted round robin, as nginx's ngx_http_upstream_get_peer():
 * every eligible server's current weight grows by its effective weight, the
 * largest is picked (first one on a tie) and pays back the total. Over a
 * period of sum(w) picks each server gets exactly w, spread out: with 5,1,1
 * the order is a a b a c a a, never a burst of five.
 */
static int
bal_pick_wrr(struct bal_pool *pool, struct bal_cursor *cur,
    const struct bal_client *client, const size_t *exclude, size_t nexclude)
{
	int64_t total = 0;
	size_t best = SIZE_MAX;

	for (size_t i = 0; i < pool->nservers; i++) {
		int64_t w;

		if (!bal_eligible(pool, i, exclude, nexclude))
			continue;
		w = (int64_t)bal_weight(&pool->servers[i]);
		cur->current[i] += w;
		total += w;
		if (best == SIZE_MAX || cur->current[i] > cur->current[best])
			best = i;
	}
	if (best == SIZE_MAX)
		return -1;
	cur->current[best] -= total;
	return (int)best;
}

/* a1 / w1 < a2 / w2 without division: weights are >= 1, products < 2^40. */
static bool
bal_less_loaded(uint64_t a1, uint64_t w1, uint64_t a2, uint64_t w2)
{
	return a1 * w2 < a2 * w1;
}

/*
 * Minimum active / eff_weight. The scan starts where the previous pick left
 * off and only a strictly lower load replaces the candidate, so servers with
 * equal load take turns instead of the first one getting every tie.
 */
static int
bal_pick_leastconn(struct bal_pool *pool, struct bal_cursor *cur,
    const struct bal_client *client, const size_t *exclude, size_t nexclude)
{
	size_t n = pool->nservers, i = cur->rot, best = SIZE_MAX;
	uint64_t best_a = 0, best_w = 1;

	for (size_t k = 0; k < n; k++, i = i + 1 == n ? 0 : i + 1) {
		uint64_t a, w;

		if (!bal_eligible(pool, i, exclude, nexclude))
			continue;
		a = bal_active(&pool->servers[i]);
		w = bal_weight(&pool->servers[i]);
		if (best == SIZE_MAX || bal_less_loaded(a, w, best_a, best_w)) {
			best = i;
			best_a = a;
			best_w = w;
		}
	}
	if (best == SIZE_MAX)
		return -1;
	cur->rot = best + 1 == n ? 0 : best + 1;
	return (int)best;
}

/*
 * Least response time: score = ewma x (active + 1) / eff_weight, so a fast
 * server stops winning once enough connections wait on it. Servers without a
 * sample yet rank before every sampled one (they must be measured to be
 * judged), least-connections among themselves so a burst does not all land
 * on the first of them. Ties rotate as in leastconn.
 */
struct bal_lrt_key {
	bool sampled;
	uint64_t num;   /* sampled: ewma x (active + 1); else active */
	uint64_t w;
};

static struct bal_lrt_key
bal_lrt_key(const struct bal_server *s)
{
	uint64_t e = atomic_load_explicit(&s->ewma_us, memory_order_relaxed);
	uint64_t a = bal_active(s);
	struct bal_lrt_key key = { .sampled = e != 0, .w = bal_weight(s) };

	if (e == 0) {
		key.num = a;
	} else {
		if (e > BAL_LRT_CAP)
			e = BAL_LRT_CAP;
		if (a > BAL_LRT_CAP)
			a = BAL_LRT_CAP;
		key.num = e * (a + 1);
	}
	return key;
}

static int
bal_pick_lrt(struct bal_pool *pool, struct bal_cursor *cur,
    const struct bal_client *client, const size_t *exclude, size_t nexclude)
{
	size_t n = pool->nservers, i = cur->rot, best = SIZE_MAX;
	struct bal_lrt_key best_key = { .sampled = true, .num = 0, .w = 1 };

	for (size_t k = 0; k < n; k++, i = i + 1 == n ? 0 : i + 1) {
		struct bal_lrt_key key;

		if (!bal_eligible(pool, i, exclude, nexclude))
			continue;
		key = bal_lrt_key(&pool->servers[i]);
		if (best == SIZE_MAX ||
		    (key.sampled != best_key.sampled ? !key.sampled :
		    bal_less_loaded(key.num, key.w, best_key.num, best_key.w))) {
			best = i;
			best_key = key;
		}
	}
	if (best == SIZE_MAX)
		return -1;
	cur->rot = best + 1 == n ? 0 : best + 1;
	return (int)best;
}

/*
 * Power of two choices (Mitzenmacher): two distinct servers drawn uniformly
 * from the eligible ones, the less loaded (active / eff_weight) wins, the
 * first drawn on a tie. The eligible set is copied first so both draws come
 * from one consistent view even while states change.
 */
static int
bal_pick_p2c(struct bal_pool *pool, struct bal_cursor *cur,
    const struct bal_client *client, const size_t *exclude, size_t nexclude)
{
	uint16_t elig[BAL_MAX_SERVERS];
	size_t k = 0, a, b;
	const struct bal_server *sa, *sb;

	for (size_t i = 0; i < pool->nservers; i++)
		if (bal_eligible(pool, i, exclude, nexclude))
			elig[k++] = (uint16_t)i;
	if (k == 0)
		return -1;
	if (k == 1)
		return elig[0];
	a = bal_rand_below(cur, k);
	b = bal_rand_below(cur, k - 1);
	if (b >= a)
		b++;
	sa = &pool->servers[elig[a]];
	sb = &pool->servers[elig[b]];
	if (bal_less_loaded(bal_active(sb), bal_weight(sb),
	    bal_active(sa), bal_weight(sa)))
		return elig[b];
	return elig[a];
}

/*
 * Maglev lookup: one slot, hash mod M. When that server cannot be used (its
 * state changed after the last rebuild, or it is excluded for this retry),
 * walk on to the following slots, skipping servers already rejected, until
 * an eligible one or every server in the table has been seen: the slot order
 * is fixed, so a client still lands on the same fallback every time, and the
 * rejected server's clients spread over the others in table proportion.
 * Last resort (a rebuild failed, so an up server is missing from the table):
 * the first eligible server from hash mod n, stable as well.
 */
static int
bal_pick_source(struct bal_pool *pool, struct bal_cursor *cur,
    const struct bal_client *client, const size_t *exclude, size_t nexclude)
{
	const struct bal_maglev *tbl;
	uint64_t h = bal_client_hash(client);
	size_t n = pool->nservers, i;

	tbl = atomic_load_explicit(&pool->maglev, memory_order_acquire);
	if (tbl != NULL) {
		uint64_t seen[BAL_MAX_SERVERS / 64];
		uint32_t s = (uint32_t)(h % tbl->size), left = tbl->nmembers;

		i = tbl->slot[s];
		if (bal_eligible(pool, i, exclude, nexclude))
			return (int)i;
		for (size_t w = 0; w < BAL_MAX_SERVERS / 64; w++)
			seen[w] = 0;
		seen[i / 64] |= 1ULL << (i % 64);
		left--;
		for (uint32_t step = 1; left > 0 && step < tbl->size; step++) {
			s = s + 1 == tbl->size ? 0 : s + 1;
			i = tbl->slot[s];
			if (seen[i / 64] & 1ULL << (i % 64))
				continue;
			seen[i / 64] |= 1ULL << (i % 64);
			left--;
			if (bal_eligible(pool, i, exclude, nexclude))
				return (int)i;
		}
	}
	if (n == 0)
		return -1;
	i = (size_t)(h % n);
	for (size_t k = 0; k < n; k++, i = i + 1 == n ? 0 : i + 1)
		if (bal_eligible(pool, i, exclude, nexclude))
			return (int)i;
	return -1;
}

typedef int bal_picker(struct bal_pool *, struct bal_cursor *,
    const struct bal_client *, const size_t *, size_t);

static bal_picker *const bal_pickers[BAL_ALGO_COUNT] = {
	[BAL_ROUNDROBIN] = bal_pick_roundrobin,
	[BAL_WRR] = bal_pick_wrr,
	[BAL_LEASTCONN] = bal_pick_leastconn,
	[BAL_SOURCE] = bal_pick_source,
	[BAL_LRT] = bal_pick_lrt,
	[BAL_P2C] = bal_pick_p2c,
};

int
bal_pick(struct bal_pool *pool, struct bal_cursor *cur,
    const struct bal_client *client, const size_t *exclude, size_t nexclude)
{
	assert(cur != NULL && cur->pool == pool && cur->nservers == pool->nservers);
	if ((unsigned)pool->algo >= BAL_ALGO_COUNT)
		return -1;
	return bal_pickers[pool->algo](pool, cur, client, exclude, nexclude);
}
