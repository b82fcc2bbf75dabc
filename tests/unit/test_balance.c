/*
 * Unit tests for bal: what a user of each algorithm would notice — order,
 * shares, stickiness, which servers are never used — plus the pool's
 * lifetime rules (Maglev retirement, leak-free new/free under ASan).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <tandem/bal.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NCLIENTS 100000   /* distinct addresses for the Maglev measurements */

/* A pool of n servers "s0".."s<n-1>" at 198.18.1.<i+1>:80 with the given weights/states. */
static struct bal_pool *
mkpool(enum bal_algo algo, size_t n, const unsigned *weights,
    const enum bal_state *states)
{
	struct bal_server *t = calloc(n ? n : 1, sizeof(*t));
	struct bal_pool *pool;

	assert_non_null(t);
	for (size_t i = 0; i < n; i++) {
		struct sockaddr_in sin = {
			.sin_family = AF_INET, .sin_port = htons(80),
			.sin_addr.s_addr = htonl(0xc6120100u + (uint32_t)i + 1),
		};

		snprintf(t[i].name, sizeof(t[i].name), "s%zu", i);
		memcpy(&t[i].addr, &sin, sizeof(sin));
		t[i].addrlen = sizeof(sin);
		t[i].weight = weights != NULL ? weights[i] : 1;
		atomic_store(&t[i].state, states != NULL ? (int)states[i] : BAL_UP);
	}
	pool = bal_pool_new("web", algo, t, n);
	free(t);
	assert_non_null(pool);
	return pool;
}

struct client {
	struct sockaddr_storage ss;
	struct bal_client c;
};

/* Client number k: 198.18.0.0 + k (the /15 holds 131072), or 2001:db8::k for v6. */
static const struct bal_client *
client_v4(struct client *cl, uint32_t k, uint16_t port)
{
	struct sockaddr_in sin = {
		.sin_family = AF_INET, .sin_port = htons(port),
		.sin_addr.s_addr = htonl(0xc6120000u + k),
	};

	memset(&cl->ss, 0, sizeof(cl->ss));
	memcpy(&cl->ss, &sin, sizeof(sin));
	cl->c.addr = (struct sockaddr *)&cl->ss;
	cl->c.addrlen = sizeof(sin);
	return &cl->c;
}

static const struct bal_client *
client_v6(struct client *cl, uint32_t k, uint16_t port)
{
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(port) };

	inet_pton(AF_INET6, "2001:db8::", &sin6.sin6_addr);
	sin6.sin6_addr.s6_addr[12] = (uint8_t)(k >> 24);
	sin6.sin6_addr.s6_addr[13] = (uint8_t)(k >> 16);
	sin6.sin6_addr.s6_addr[14] = (uint8_t)(k >> 8);
	sin6.sin6_addr.s6_addr[15] = (uint8_t)k;
	memset(&cl->ss, 0, sizeof(cl->ss));
	memcpy(&cl->ss, &sin6, sizeof(sin6));
	cl->c.addr = (struct sockaddr *)&cl->ss;
	cl->c.addrlen = sizeof(sin6);
	return &cl->c;
}

/* The v4 client k written as ::ffff:198.18.x.y, as a dual-stack listener sees it. */
static const struct bal_client *
client_mapped(struct client *cl, uint32_t k)
{
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(1) };
	uint32_t a = htonl(0xc6120000u + k);

	sin6.sin6_addr.s6_addr[10] = 0xff;
	sin6.sin6_addr.s6_addr[11] = 0xff;
	memcpy(&sin6.sin6_addr.s6_addr[12], &a, 4);
	memset(&cl->ss, 0, sizeof(cl->ss));
	memcpy(&cl->ss, &sin6, sizeof(sin6));
	cl->c.addr = (struct sockaddr *)&cl->ss;
	cl->c.addrlen = sizeof(sin6);
	return &cl->c;
}

static int
pick(struct bal_pool *pool, struct bal_cursor *cur)
{
	return bal_pick(pool, cur, NULL, NULL, 0);
}

static void
test_names(void **state)
{
	for (int a = 0; a < BAL_ALGO_COUNT; a++)
		assert_int_equal(bal_algo_parse(bal_algo_name((enum bal_algo)a)), a);
	for (int s = 0; s < BAL_STATE_COUNT; s++)
		assert_int_equal(bal_state_parse(bal_state_name((enum bal_state)s)), s);
	assert_int_equal(bal_algo_parse("random"), -1);
}

static void
test_roundrobin_order(void **state)
{
	unsigned w[4] = { 1, 9, 1, 1 };   /* weights are ignored by roundrobin */
	struct bal_pool *pool = mkpool(BAL_ROUNDROBIN, 4, w, NULL);
	struct bal_cursor *cur = bal_cursor_new(pool, 0);
	struct bal_cursor *cur1 = bal_cursor_new(pool, 1);

	assert_non_null(cur);
	for (int i = 0; i < 12; i++)
		assert_int_equal(pick(pool, cur), i % 4);

	/* 1 down, 3 draining: the others alternate, in order, from where we were */
	assert_int_equal(bal_set_state(pool, 1, BAL_DOWN), 0);
	assert_int_equal(bal_set_state(pool, 3, BAL_DRAIN), 0);
	for (int i = 0; i < 6; i++)
		assert_int_equal(pick(pool, cur), i % 2 ? 2 : 0);

	/* back up: the full cycle resumes after the last pick (2) */
	assert_int_equal(bal_set_state(pool, 1, BAL_UP), 0);
	assert_int_equal(bal_set_state(pool, 3, BAL_UP), 0);
	assert_int_equal(pick(pool, cur), 3);
	assert_int_equal(pick(pool, cur), 0);
	assert_int_equal(pick(pool, cur), 1);

	/* another worker's cursor keeps its own turn, started at seed mod n */
	assert_int_equal(pick(pool, cur1), 1);
	assert_int_equal(pick(pool, cur1), 2);
	assert_int_equal(pick(pool, cur), 2);

	bal_cursor_free(cur1);
	bal_cursor_free(cur);
	bal_pool_free(pool);
}

/*
 * Weights 5,1,1: nginx's smooth WRR gives a a b a c a a, period after
 * period. Besides the exact order, assert the no-burst property itself: after
 * any number k of picks every server has had its ideal share k x w / W to
 * within less than one pick (|count x W - k x w| < W). A naive WRR (a a a a a
 * b c) breaks it at k = 5 (5 x 7 - 5 x 5 = 10 >= 7).
 */
static void
test_wrr_smooth(void **state)
{
	static const int nginx[7] = { 0, 0, 1, 0, 2, 0, 0 };
	unsigned w[3] = { 5, 1, 1 };
	const long total = 7;
	struct bal_pool *pool = mkpool(BAL_WRR, 3, w, NULL);
	struct bal_cursor *cur = bal_cursor_new(pool, 12345);
	long count[3] = { 0 };
	int prev = -1, run = 0;

	for (long k = 1; k <= 10 * total; k++) {
		int s = pick(pool, cur);

		assert_int_equal(s, nginx[(k - 1) % total]);
		count[s]++;
		for (int i = 0; i < 3; i++) {
			long dev = count[i] * total - k * (long)w[i];

			assert_true(dev < total && dev > -total);
		}
		/* b and c are 1/7 each: never twice running; a at most 2 in a period */
		run = s == prev ? run + 1 : 1;
		prev = s;
		if (s != 0)
			assert_int_equal(run, 1);
		else if ((k - 1) % total != 0 && (k - 1) % total != 1)
			assert_true(run <= 2);
		if (k % total == 0) {
			assert_int_equal(count[0], 5 * (k / total));
			assert_int_equal(count[1], k / total);
			assert_int_equal(count[2], k / total);
		}
	}
	bal_cursor_free(cur);
	bal_pool_free(pool);
}

/* Shares follow eff_weight as slow start raises it, and a down server is skipped. */
static void
test_wrr_eff_weight(void **state)
{
	unsigned w[2] = { 8, 8 };
	struct bal_pool *pool = mkpool(BAL_WRR, 2, w, NULL);
	struct bal_cursor *cur = bal_cursor_new(pool, 0);

	for (unsigned ew = 1; ew <= 8; ew *= 2) {
		long count[2] = { 0 };
		long period = ew + 8, rounds = 20;

		assert_int_equal(bal_set_eff_weight(pool, 0, ew), 0);
		assert_int_equal(atomic_load(&pool->servers[0].eff_weight), ew);
		for (long k = 0; k < period * rounds; k++)
			count[pick(pool, cur)]++;
		/* current weights carry over from the previous step: within one pick */
		assert_true(labs(count[0] - (long)ew * rounds) <= 1);
		assert_true(labs(count[1] - 8 * rounds) <= 1);
	}

	/* clamped to 1..weight */
	assert_int_equal(bal_set_eff_weight(pool, 0, 100), 0);
	assert_int_equal(atomic_load(&pool->servers[0].eff_weight), 8);
	assert_int_equal(bal_set_eff_weight(pool, 0, 0), 0);
	assert_int_equal(atomic_load(&pool->servers[0].eff_weight), 1);
	assert_int_equal(bal_set_eff_weight(pool, 2, 1), -EINVAL);

	assert_int_equal(bal_set_state(pool, 1, BAL_MAINT), 0);
	for (int k = 0; k < 10; k++)
		assert_int_equal(pick(pool, cur), 0);

	bal_cursor_free(cur);
	bal_pool_free(pool);
}

static void
test_leastconn(void **state)
{
	unsigned w[3] = { 1, 2, 4 };
	struct bal_pool *pool = mkpool(BAL_LEASTCONN, 3, w, NULL);
	struct bal_cursor *cur = bal_cursor_new(pool, 0);
	int s;

	/* no load: ties take turns */
	for (int i = 0; i < 6; i++)
		assert_int_equal(pick(pool, cur), i % 3);

	/* active 1, 3, 5 -> loads 1, 1.5, 1.25 */
	bal_conn_start(pool, 0);
	for (int i = 0; i < 3; i++)
		bal_conn_start(pool, 1);
	for (int i = 0; i < 5; i++)
		bal_conn_start(pool, 2);
	assert_int_equal(pick(pool, cur), 0);
	bal_conn_start(pool, 0);          /* loads 2, 1.5, 1.25 */
	assert_int_equal(pick(pool, cur), 2);
	for (int i = 0; i < 3; i++)       /* loads 2, 1.5, 2 */
		bal_conn_start(pool, 2);
	assert_int_equal(pick(pool, cur), 1);

	/* connections opened as picked end up proportional to weight: 8/16/32 */
	for (int i = 0; i < 43; i++) {
		s = pick(pool, cur);
		bal_conn_start(pool, (size_t)s);
	}
	assert_int_equal(atomic_load(&pool->servers[0].active), 8);
	assert_int_equal(atomic_load(&pool->servers[1].active), 16);
	assert_int_equal(atomic_load(&pool->servers[2].active), 32);

	/* closing connections on 2 makes it the least loaded */
	for (int i = 0; i < 10; i++)
		bal_conn_end(pool, 2);
	assert_int_equal(pick(pool, cur), 2);
	assert_int_equal(atomic_load(&pool->servers[0].stats.conns_total), 8);

	/* an unmatched end does not wrap the counter */
	for (int i = 0; i < 40; i++)
		bal_conn_end(pool, 0);
	assert_int_equal(atomic_load(&pool->servers[0].active), 0);

	bal_cursor_free(cur);
	bal_pool_free(pool);
}

/* Clients per server over NCLIENTS distinct v4 (or v6) addresses. */
static void
source_spread(struct bal_pool *pool, struct bal_cursor *cur, bool v6, long *count)
{
	struct client cl;

	for (size_t i = 0; i < pool->nservers; i++)
		count[i] = 0;
	for (uint32_t k = 0; k < NCLIENTS; k++) {
		int s = bal_pick(pool, cur, v6 ? client_v6(&cl, k, 1) :
		    client_v4(&cl, k, 1), NULL, 0);

		assert_true(s >= 0 && (size_t)s < pool->nservers);
		count[s]++;
	}
}

/* Each server's client count within 5% (relative) of its weight share. */
static void
assert_shares(const struct bal_pool *pool, const long *count)
{
	unsigned wsum = 0;

	for (size_t i = 0; i < pool->nservers; i++)
		wsum += pool->servers[i].weight;
	for (size_t i = 0; i < pool->nservers; i++) {
		double want = (double)NCLIENTS * pool->servers[i].weight / wsum;

		if (count[i] < want * 0.95 || count[i] > want * 1.05)
			fail_msg("server %zu: %ld clients, want %.0f +-5%%", i,
			    count[i], want);
	}
}

static void
test_source_shares(void **state)
{
	unsigned w[4] = { 1, 2, 3, 4 };
	struct bal_pool *eq = mkpool(BAL_SOURCE, 10, NULL, NULL);
	struct bal_pool *wt = mkpool(BAL_SOURCE, 4, w, NULL);
	struct bal_cursor *ceq = bal_cursor_new(eq, 0);
	struct bal_cursor *cwt = bal_cursor_new(wt, 0);
	long count[10];

	source_spread(eq, ceq, false, count);
	assert_shares(eq, count);
	source_spread(eq, ceq, true, count);
	assert_shares(eq, count);
	source_spread(wt, cwt, false, count);
	assert_shares(wt, count);
	source_spread(wt, cwt, true, count);
	assert_shares(wt, count);

	bal_cursor_free(cwt);
	bal_cursor_free(ceq);
	bal_pool_free(wt);
	bal_pool_free(eq);
}

/*
 * Remove 1 of 10: its clients must go elsewhere and, of everyone else's
 * clients, at most 5% may move (counted exactly, client by client). Put it
 * back: every client returns to the server it had, because the table is a
 * function of the up set.
 */
static void
test_source_disruption(void **state)
{
	struct bal_pool *pool = mkpool(BAL_SOURCE, 10, NULL, NULL);
	struct bal_cursor *cur = bal_cursor_new(pool, 0);
	int *before = calloc(NCLIENTS, sizeof(*before));
	struct client cl;
	long others = 0, moved = 0;
	const size_t gone = 6;

	assert_non_null(before);
	for (uint32_t k = 0; k < NCLIENTS; k++)
		before[k] = bal_pick(pool, cur, client_v4(&cl, k, 1), NULL, 0);

	assert_int_equal(bal_set_state(pool, gone, BAL_DOWN), 0);
	for (uint32_t k = 0; k < NCLIENTS; k++) {
		int s = bal_pick(pool, cur, client_v4(&cl, k, 2), NULL, 0);

		assert_true(s >= 0 && (size_t)s != gone);
		if ((size_t)before[k] == gone)
			continue;
		others++;
		if (s != before[k])
			moved++;
	}
	print_message("maglev: removing 1 of 10 moved %ld of %ld other clients (%.2f%%)\n",
	    moved, others, 100.0 * moved / others);
	assert_true(others > NCLIENTS * 8 / 10);
	assert_true(moved * 100 <= others * 5);

	assert_int_equal(bal_set_state(pool, gone, BAL_UP), 0);
	for (uint32_t k = 0; k < NCLIENTS; k++)
		assert_int_equal(bal_pick(pool, cur, client_v4(&cl, k, 3), NULL, 0),
		    before[k]);

	free(before);
	bal_cursor_free(cur);
	bal_pool_free(pool);
}

/*
 * The same client gets the same server from any worker and whatever its
 * source port, over v4, v6 and v4-mapped v6. When its server cannot be used
 * (excluded for a retry, or gone down before a rebuild) the fallback is
 * another server, and the same one every time.
 */
static void
test_source_sticky(void **state)
{
	struct bal_pool *pool = mkpool(BAL_SOURCE, 8, NULL, NULL);
	struct bal_cursor *w1 = bal_cursor_new(pool, 1), *w2 = bal_cursor_new(pool, 2);
	struct client cl;
	bool used[8] = { false };

	for (uint32_t k = 0; k < 2000; k++) {
		int s = bal_pick(pool, w1, client_v4(&cl, k, 1000), NULL, 0);
		int s6 = bal_pick(pool, w1, client_v6(&cl, k, 1000), NULL, 0);
		size_t ex[1];
		int f;

		assert_true(s >= 0 && s6 >= 0);
		used[s6] = true;
		assert_int_equal(bal_pick(pool, w2, client_v4(&cl, k, 2000), NULL, 0), s);
		assert_int_equal(bal_pick(pool, w2, client_mapped(&cl, k), NULL, 0), s);
		assert_int_equal(bal_pick(pool, w1, client_v6(&cl, k, 7), NULL, 0), s6);

		ex[0] = (size_t)s;
		f = bal_pick(pool, w1, client_v4(&cl, k, 1), ex, 1);
		assert_true(f >= 0 && f != s);
		assert_int_equal(bal_pick(pool, w2, client_v4(&cl, k, 2), ex, 1), f);
	}
	for (int i = 0; i < 8; i++)
		assert_true(used[i]);

	/*
	 * A state flip the table has not caught up with (as while a rebuild is
	 * pending): written behind bal_set_state's back on purpose.
	 */
	atomic_store(&pool->servers[3].state, BAL_DOWN);
	for (uint32_t k = 0; k < 2000; k++) {
		int s = bal_pick(pool, w1, client_v4(&cl, k, 1), NULL, 0);

		assert_true(s >= 0 && s != 3);
		assert_int_equal(bal_pick(pool, w2, client_v4(&cl, k, 9), NULL, 0), s);
	}
	/* no address at all still gets a server */
	assert_true(bal_pick(pool, w1, NULL, NULL, 0) >= 0);

	bal_cursor_free(w2);
	bal_cursor_free(w1);
	bal_pool_free(pool);
}

static void
test_lrt(void **state)
{
	struct bal_pool *pool = mkpool(BAL_LRT, 3, NULL, NULL);
	struct bal_cursor *cur = bal_cursor_new(pool, 0);

	/* nothing measured: the servers take turns */
	for (int i = 0; i < 6; i++)
		assert_int_equal(pick(pool, cur), i % 3);

	/* EWMA, alpha 1/8: first sample as is, then 7/8 old + 1/8 new */
	bal_observe_connect(pool, 0, 1000);
	assert_int_equal(atomic_load(&pool->servers[0].ewma_us), 1000);
	bal_observe_connect(pool, 0, 200);
	assert_int_equal(atomic_load(&pool->servers[0].ewma_us), 900);
	bal_observe_connect(pool, 1, 100);

	/* 2 has no sample yet: it is tried first, however fast the others are */
	assert_int_equal(pick(pool, cur), 2);
	bal_observe_connect(pool, 2, 5000);

	/* then the fastest wins, repeatedly */
	for (int i = 0; i < 5; i++)
		assert_int_equal(pick(pool, cur), 1);

	/* in-flight load: 100 us x (8 + 1) = 900 ties 900 x 1; 9 in flight loses */
	for (int i = 0; i < 8; i++)
		bal_conn_start(pool, 1);
	assert_int_equal(pick(pool, cur), 0);   /* tie: rotation moves on from 1 */
	bal_conn_start(pool, 1);
	for (int i = 0; i < 5; i++)
		assert_int_equal(pick(pool, cur), 0);
	/* ... until 0 has load too: 900 x 2 > 100 x 10 */
	bal_conn_start(pool, 0);
	assert_int_equal(pick(pool, cur), 1);

	/* 1 slows down: its average follows, and 0 wins again */
	for (int i = 0; i < 40; i++)
		bal_observe_connect(pool, 1, 3000);
	assert_true(atomic_load(&pool->servers[1].ewma_us) > 2900);
	assert_int_equal(pick(pool, cur), 0);

	bal_cursor_free(cur);
	bal_pool_free(pool);

	/* a sample of 0 us (loopback) is still a sample, not "unmeasured" */
	pool = mkpool(BAL_LRT, 1, NULL, NULL);
	bal_observe_connect(pool, 0, 0);
	assert_int_equal(atomic_load(&pool->servers[0].ewma_us), 1);
	bal_observe_connect(pool, 0, 0);
	assert_int_equal(atomic_load(&pool->servers[0].ewma_us), 1);
	bal_pool_free(pool);
}

static void
test_lrt_weight(void **state)
{
	unsigned w[2] = { 1, 4 };
	struct bal_pool *pool = mkpool(BAL_LRT, 2, w, NULL);
	struct bal_cursor *cur = bal_cursor_new(pool, 0);

	/* same speed: weight 4 scores 500 x (a + 1) / 4, below 0's 500 while a < 3 */
	bal_observe_connect(pool, 0, 500);
	bal_observe_connect(pool, 1, 500);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(pick(pool, cur), 1);
		bal_conn_start(pool, 1);
	}
	/* 500 x 5 / 4 > 500 x 1 / 1: 0 now */
	bal_conn_start(pool, 1);
	assert_int_equal(pick(pool, cur), 0);

	bal_cursor_free(cur);
	bal_pool_free(pool);
}

static void
test_p2c(void **state)
{
	enum bal_state st[10] = {
		BAL_UP, BAL_DOWN, BAL_DRAIN, BAL_MAINT, BAL_UP,
		BAL_UP, BAL_UP, BAL_UP, BAL_UP, BAL_UP,
	};
	struct bal_pool *pool = mkpool(BAL_P2C, 10, NULL, st);
	struct bal_cursor *cur = bal_cursor_new(pool, 42);
	const size_t ex[2] = { 4, 5 };
	long count[10] = { 0 };
	int s;

	/* 9 is the most loaded: it loses every comparison it is drawn into */
	for (int i = 0; i < 100; i++)
		bal_conn_start(pool, 9);
	for (int k = 0; k < 100000; k++) {
		s = bal_pick(pool, cur, NULL, ex, 2);
		assert_true(s >= 0 && s < 10);
		count[s]++;
		/* churn the other loads so both outcomes of a comparison occur */
		if (k % 3 == 0)
			bal_conn_start(pool, (size_t)s);
		else if (atomic_load(&pool->servers[s].active) > 0 && s != 9)
			bal_conn_end(pool, (size_t)s);
	}
	for (int i = 1; i <= 5; i++)
		assert_int_equal(count[i], 0);
	assert_int_equal(count[9], 0);
	for (int i = 6; i <= 8; i++)
		assert_true(count[i] > 10000);
	assert_true(count[0] > 10000);

	/* one eligible server: that one, every time */
	for (int i = 6; i <= 9; i++)
		assert_int_equal(bal_set_state(pool, (size_t)i, BAL_DRAIN), 0);
	for (int k = 0; k < 100; k++)
		assert_int_equal(bal_pick(pool, cur, NULL, ex, 2), 0);
	/* none */
	assert_int_equal(bal_pick(pool, cur, NULL, (const size_t[]){ 4, 0, 5 }, 3), -1);

	bal_cursor_free(cur);
	bal_pool_free(pool);
}

/* Every algorithm: never an excluded or non-up server, -1 when nothing is left. */
static void
test_exclude_every_algo(void **state)
{
	const size_t ex[3] = { 0, 2, 4 };
	const size_t all[6] = { 5, 4, 3, 2, 1, 0 };

	for (int a = 0; a < BAL_ALGO_COUNT; a++) {
		enum bal_state st[6] = { BAL_UP, BAL_UP, BAL_UP, BAL_UP, BAL_UP, BAL_MAINT };
		struct bal_pool *pool = mkpool((enum bal_algo)a, 6, NULL, st);
		struct bal_pool *empty = mkpool((enum bal_algo)a, 0, NULL, NULL);
		struct bal_cursor *cur = bal_cursor_new(pool, 3);
		struct bal_cursor *ecur = bal_cursor_new(empty, 3);
		struct client cl;
		long count[6] = { 0 };

		for (uint32_t k = 0; k < 2000; k++) {
			int s = bal_pick(pool, cur, client_v4(&cl, k, 1), ex, 3);

			assert_true(s == 1 || s == 3);
			count[s]++;
			if (a == BAL_LEASTCONN || a == BAL_P2C || a == BAL_LRT)
				bal_conn_start(pool, (size_t)s);
		}
		if (count[1] == 0 || count[3] == 0)
			fail_msg("%s: 1 got %ld, 3 got %ld", bal_algo_name((enum bal_algo)a),
			    count[1], count[3]);
		assert_int_equal(bal_pick(pool, cur, client_v4(&cl, 1, 1), all, 6), -1);

		for (size_t i = 0; i < 5; i++)
			assert_int_equal(bal_set_state(pool, i,
			    i % 2 ? BAL_DOWN : BAL_DRAIN), 0);
		assert_int_equal(bal_pick(pool, cur, client_v4(&cl, 1, 1), NULL, 0), -1);
		assert_int_equal(bal_pick(empty, ecur, client_v4(&cl, 1, 1), NULL, 0), -1);

		bal_cursor_free(ecur);
		bal_cursor_free(cur);
		bal_pool_free(empty);
		bal_pool_free(pool);
	}
}

/* Set-state bookkeeping and the Maglev retire / reclaim cycle. */
static void
test_pool_generation_reclaim(void **state)
{
	struct bal_pool *pool = mkpool(BAL_SOURCE, 4, NULL, NULL);
	struct bal_maglev *first = atomic_load(&pool->maglev), *second;
	unsigned gen = atomic_load(&pool->generation);

	assert_non_null(first);
	assert_null(pool->retired);

	/* no change: no new generation, no new table */
	assert_int_equal(bal_set_state(pool, 1, BAL_UP), 0);
	assert_int_equal(bal_set_eff_weight(pool, 1, 1), 0);
	assert_int_equal(atomic_load(&pool->generation), gen);
	assert_ptr_equal(atomic_load(&pool->maglev), first);
	assert_int_equal(bal_pool_rebuild(pool, 5.0), 0);
	assert_ptr_equal(atomic_load(&pool->maglev), first);

	/* a change: new generation, new table, old one retired without a time yet */
	assert_int_equal(bal_set_state(pool, 1, BAL_DOWN), 0);
	assert_int_equal(atomic_load(&pool->generation), gen + 1);
	assert_int_equal(atomic_load(&pool->servers[1].stats.state_changes), 1);
	assert_ptr_not_equal(atomic_load(&pool->maglev), first);
	assert_ptr_equal(pool->retired, first);
	assert_true(pool->retired_at < 0);
	/* down -> maint leaves the up set, hence the table, as it is */
	assert_int_equal(bal_set_state(pool, 1, BAL_MAINT), 0);
	assert_ptr_equal(pool->retired, first);

	/* the first reclaim starts the clock; freed only after a full second */
	bal_pool_reclaim(pool, 100.0);
	assert_ptr_equal(pool->retired, first);
	assert_true(pool->retired_at == 100.0);
	bal_pool_reclaim(pool, 100.9);
	assert_ptr_equal(pool->retired, first);

	/* a second retirement through rebuild, timed by the caller */
	atomic_store(&pool->servers[2].state, BAL_DOWN);
	assert_int_equal(bal_pool_rebuild(pool, 100.95), 0);
	assert_true(pool->retired_at == 100.95);
	second = pool->retired;
	assert_ptr_not_equal(second, first);

	/* only the older table is old enough */
	bal_pool_reclaim(pool, 101.5);
	assert_ptr_equal(pool->retired, second);
	assert_true(pool->retired_at == 100.95);
	bal_pool_reclaim(pool, 102.0);
	assert_null(pool->retired);

	/* no server up: no table at all, and picks say so */
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(bal_set_state(pool, i, BAL_MAINT), 0);
	assert_null(atomic_load(&pool->maglev));
	assert_int_equal(bal_set_state(pool, 9, BAL_UP), -EINVAL);
	/* pool freed with a retired table pending: ASan reports any leak */
	bal_pool_free(pool);
}

static void
test_new_free(void **state)
{
	struct bal_server t[2];

	bal_pool_free(NULL);
	bal_cursor_free(NULL);
	for (int a = 0; a < BAL_ALGO_COUNT; a++) {
		struct bal_pool *pool = mkpool((enum bal_algo)a, 3, NULL, NULL);
		struct bal_cursor *cur = bal_cursor_new(pool, (uint64_t)a);

		assert_non_null(cur);
		assert_string_equal(pool->name, "web");
		assert_string_equal(pool->servers[2].name, "s2");
		assert_int_equal(pool->servers[2].index, 2);
		assert_int_equal(pool->servers[2].addrlen, sizeof(struct sockaddr_in));
		assert_int_equal(atomic_load(&pool->servers[2].eff_weight), 1);
		assert_true((atomic_load(&pool->maglev) != NULL) == (a == BAL_SOURCE));
		bal_cursor_free(cur);
		bal_pool_free(pool);
	}
	memset(t, 0, sizeof(t));
	assert_null(bal_pool_new("x", BAL_ALGO_COUNT, t, 2));
	assert_null(bal_pool_new("x", BAL_WRR, t, BAL_MAX_SERVERS + 1));
}

struct worker_arg {
	struct bal_pool *pool;
	atomic_int *done;    /* workers finished */
	int bad;
};

#define WORKER_PICKS 5000

static void *
worker(void *p)
{
	struct worker_arg *wa = p;
	struct bal_cursor *cur = bal_cursor_new(wa->pool, (uint64_t)(uintptr_t)p);
	struct client cl;

	for (uint32_t k = 0; cur != NULL && k < WORKER_PICKS; k++) {
		int s = bal_pick(wa->pool, cur, client_v4(&cl, k, 1), NULL, 0);

		if (s < 0 || s >= 7) {   /* 7 is in maint throughout; 4..6 are always up */
			wa->bad++;
			continue;
		}
		bal_conn_start(wa->pool, (size_t)s);
		bal_observe_connect(wa->pool, (size_t)s, 100 + k % 50);
		bal_conn_end(wa->pool, (size_t)s);
	}
	if (cur == NULL)
		wa->bad++;
	bal_cursor_free(cur);
	atomic_fetch_add(wa->done, 1);
	return NULL;
}

/*
 * Workers pick (and count) while the main thread flips states and weights,
 * rebuilding the Maglev table for source: no pick may return a server that
 * is in maintenance for the whole run, or -1 while 4..6 stay up, and the
 * in-flight counters return to 0. Meant for ASan/TSan too. Retired tables
 * are reclaimed after the join, so no real second has to pass.
 */
static void
test_threads(void **state)
{
	enum bal_state st[8] = { BAL_UP, BAL_UP, BAL_UP, BAL_UP, BAL_UP, BAL_UP,
	    BAL_UP, BAL_MAINT };
	atomic_int done;
	pthread_t th[4];
	struct worker_arg wa[4];

	for (int a = 0; a < BAL_ALGO_COUNT; a++) {
		struct bal_pool *pool = mkpool((enum bal_algo)a, 8, NULL, st);

		atomic_init(&done, 0);
		for (int i = 0; i < 4; i++) {
			wa[i] = (struct worker_arg){ .pool = pool, .done = &done };
			assert_int_equal(pthread_create(&th[i], NULL, worker, &wa[i]), 0);
		}
		/* flip for as long as the workers pick, at least 50 times */
		for (int r = 0; r < 1000000 && (r < 50 || atomic_load(&done) < 4); r++) {
			size_t i = (size_t)r % 4;

			assert_int_equal(bal_set_state(pool, i,
			    r % 8 < 4 ? BAL_DOWN : BAL_UP), 0);
			assert_int_equal(bal_set_eff_weight(pool, (i + 1) % 4,
			    (unsigned)r % 3 + 1), 0);
		}
		for (int i = 0; i < 4; i++) {
			assert_int_equal(pthread_join(th[i], NULL), 0);
			if (wa[i].bad != 0)
				fail_msg("%s: %d bad picks", bal_algo_name((enum bal_algo)a),
				    wa[i].bad);
		}
		for (size_t i = 0; i < 8; i++)
			assert_int_equal(atomic_load(&pool->servers[i].active), 0);
		bal_pool_reclaim(pool, 0.0);
		bal_pool_reclaim(pool, 2.0);
		assert_null(pool->retired);
		bal_pool_free(pool);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_roundrobin_order),
		cmocka_unit_test(test_wrr_smooth),
		cmocka_unit_test(test_wrr_eff_weight),
		cmocka_unit_test(test_leastconn),
		cmocka_unit_test(test_source_shares),
		cmocka_unit_test(test_source_disruption),
		cmocka_unit_test(test_source_sticky),
		cmocka_unit_test(test_lrt),
		cmocka_unit_test(test_lrt_weight),
		cmocka_unit_test(test_p2c),
		cmocka_unit_test(test_exclude_every_algo),
		cmocka_unit_test(test_pool_generation_reclaim),
		cmocka_unit_test(test_new_free),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests_name("balance", tests, NULL, NULL);
}
