/*
 * Unit tests for the shadow table (daemon/sync/shadow.c): apply, the bound
 * and its eviction order, snapshots, iteration, queue ownership, sequence
 * arithmetic across 2^32, and every allocation failing in turn (linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <tandem/shadow.h>
#include <tandem/sync.h>

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
extern void *__real_malloc(size_t n) __attribute__((weak));
extern void *__real_calloc(size_t n, size_t size) __attribute__((weak));
extern void *__real_realloc(void *p, size_t n) __attribute__((weak));

static long alloc_fail_at = -1;
static long alloc_count;
static int alloc_wrapped;

static int
alloc_fails_now(void)
{
	alloc_wrapped = 1;
	return alloc_fail_at >= 0 && alloc_count++ == alloc_fail_at;
}

void *
__wrap_malloc(size_t n)
{
	return alloc_fails_now() ? NULL : __real_malloc(n);
}

void *
__wrap_calloc(size_t n, size_t size)
{
	return alloc_fails_now() ? NULL : __real_calloc(n, size);
}

void *
__wrap_realloc(void *p, size_t n)
{
	return alloc_fails_now() ? NULL : __real_realloc(p, n);
}

static void
sock(struct sync_sock *s, uint16_t port)
{
	memset(s, 0, sizeof(*s));
	s->local.family = AF_INET;
	s->local.port = 80;
	inet_pton(AF_INET, "198.18.0.100", s->local.addr);
	s->peer.family = AF_INET;
	s->peer.port = port;
	inet_pton(AF_INET, "198.18.0.10", s->peer.addr);
	s->mss_clamp = 1460;
	s->snd_isn = 1000;
	s->rcv_isn = 2000;
}

static struct sync_conn_state
conn(uint64_t id, int server)
{
	struct sync_conn_state c;

	memset(&c, 0, sizeof(c));
	c.id = id;
	snprintf(c.frontend, sizeof(c.frontend), "www");
	snprintf(c.backend, sizeof(c.backend), "web");
	snprintf(c.server, sizeof(c.server), "be1");
	sock(&c.client, (uint16_t)(1024 + id % 60000));
	c.has_server_sock = server;
	if (server)
		sock(&c.server_sock, (uint16_t)(2048 + id % 60000));
	return c;
}

static struct shadow *
table(size_t max)
{
	struct shadow *sh = NULL;

	assert_int_equal(shadow_new(max, &sh), 0);
	return sh;
}

static void
test_open_update_close(void **state)
{
	struct shadow *sh = table(10);
	struct sync_conn_state c = conn(7, 1);
	struct sync_conn_update u = {
		.id = 7, .client_written = 11, .client_read = 12,
		.server_written = 13, .server_read = 14, .server_eof = true,
	};
	const struct shadow_entry *e;
	struct shadow_stats st;

	assert_int_equal(shadow_open(sh, &c, 1.0), 0);
	assert_int_equal(shadow_count(sh), 1);
	e = shadow_lookup(sh, 7);
	assert_non_null(e);
	assert_int_equal(shadow_entry_state(e)->id, 7);
	assert_string_equal(shadow_entry_state(e)->frontend, "www");
	assert_true(shadow_entry_updated(e) == 1.0);

	assert_int_equal(shadow_update(sh, &u, 2.5), 0);
	e = shadow_lookup(sh, 7);
	assert_int_equal(shadow_entry_state(e)->client.bytes_written, 11);
	assert_int_equal(shadow_entry_state(e)->client.bytes_read, 12);
	assert_int_equal(shadow_entry_state(e)->server_sock.bytes_written, 13);
	assert_int_equal(shadow_entry_state(e)->server_sock.bytes_read, 14);
	assert_false(shadow_entry_state(e)->client_eof);
	assert_true(shadow_entry_state(e)->server_eof);
	assert_true(shadow_entry_updated(e) == 2.5);

	u.id = 8;
	assert_int_equal(shadow_update(sh, &u, 3.0), -ENOENT);
	assert_int_equal(shadow_close(sh, 8), -ENOENT);
	assert_int_equal(shadow_close(sh, 7), 0);
	assert_null(shadow_lookup(sh, 7));
	assert_int_equal(shadow_count(sh), 0);

	shadow_get_stats(sh, &st);
	assert_int_equal(st.opened, 1);
	assert_int_equal(st.updated, 1);
	assert_int_equal(st.closed, 1);
	assert_int_equal(st.unknown, 2);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.max_entries, 10);
	shadow_free(sh);
}

/* An L7 entry has no server half: its counts are not invented. */
static void
test_update_client_only(void **state)
{
	struct shadow *sh = table(4);
	struct sync_conn_state c = conn(1, 0);
	struct sync_conn_update u = { .id = 1, .client_written = 5,
		.server_written = 99 };
	const struct sync_conn_state *st;

	assert_int_equal(shadow_open(sh, &c, 0), 0);
	assert_int_equal(shadow_update(sh, &u, 1), 0);
	st = shadow_entry_state(shadow_lookup(sh, 1));
	assert_false(st->has_server_sock);
	assert_int_equal(st->client.bytes_written, 5);
	assert_int_equal(st->server_sock.bytes_written, 0);
	shadow_free(sh);
}

static void
test_replace(void **state)
{
	struct shadow *sh = table(2);
	struct sync_conn_state c = conn(1, 1);
	struct shadow_stats st;

	assert_int_equal(shadow_open(sh, &c, 0), 0);
	assert_int_equal(shadow_open(sh, &(struct sync_conn_state){ 0 }, 0),
	    -EINVAL);
	c.client.snd_isn = 42;
	snprintf(c.server, sizeof(c.server), "be9");
	assert_int_equal(shadow_open(sh, &c, 1), 0);
	assert_int_equal(shadow_count(sh), 1);
	assert_int_equal(shadow_entry_state(shadow_lookup(sh, 1))->client.snd_isn,
	    42);
	assert_string_equal(shadow_entry_state(shadow_lookup(sh, 1))->server,
	    "be9");
	shadow_get_stats(sh, &st);
	assert_int_equal(st.opened, 1);
	assert_int_equal(st.replaced, 1);
	assert_int_equal(st.evicted, 0);
	shadow_free(sh);
}

/* The bound holds, and the entry idle longest goes first. */
static void
test_bound_evicts_idlest(void **state)
{
	struct shadow *sh = table(3);
	struct sync_conn_update u = { .id = 1 };
	struct shadow_stats st;
	const struct shadow_entry *e;
	uint64_t order[3], want[3] = { 3, 1, 4 };
	size_t n = 0;

	for (uint64_t id = 1; id <= 3; id++) {
		struct sync_conn_state c = conn(id, 1);

		assert_int_equal(shadow_open(sh, &c, (double)id), 0);
	}
	/* 1 moves: 2 is now the idlest. */
	assert_int_equal(shadow_update(sh, &u, 10), 0);
	{
		struct sync_conn_state c = conn(4, 1);

		assert_int_equal(shadow_open(sh, &c, 11), 0);
	}
	assert_int_equal(shadow_count(sh), 3);
	assert_null(shadow_lookup(sh, 2));
	assert_non_null(shadow_lookup(sh, 1));
	assert_non_null(shadow_lookup(sh, 3));
	assert_non_null(shadow_lookup(sh, 4));
	for (e = shadow_first(sh); e != NULL; e = shadow_next(e))
		order[n++] = shadow_entry_state(e)->id;
	assert_int_equal(n, 3);
	assert_memory_equal(order, want, sizeof(want));
	{
		struct sync_conn_state c = conn(5, 1);

		assert_int_equal(shadow_open(sh, &c, 12), 0);
	}
	assert_null(shadow_lookup(sh, 3));
	shadow_get_stats(sh, &st);
	assert_int_equal(st.evicted, 2);
	assert_int_equal(st.entries, 3);
	shadow_free(sh);
}

/* Many entries: the hash grows, lookups stay right, the bound holds. */
static void
test_many(void **state)
{
	const uint64_t n = 100000, max = 60000;
	struct shadow *sh = table(max);
	struct shadow_stats st;

	for (uint64_t id = 1; id <= n; id++) {
		struct sync_conn_state c = conn(id * 0x10001, id & 1);

		assert_int_equal(shadow_open(sh, &c, (double)id), 0);
	}
	assert_int_equal(shadow_count(sh), max);
	for (uint64_t id = 1; id <= n; id++) {
		const struct shadow_entry *e = shadow_lookup(sh, id * 0x10001);

		if (id <= n - max)
			assert_null(e);
		else
			assert_true(e != NULL &&
			    shadow_entry_state(e)->id == id * 0x10001);
	}
	shadow_get_stats(sh, &st);
	assert_int_equal(st.evicted, n - max);
	for (uint64_t id = n - max + 1; id <= n; id += 2)
		assert_int_equal(shadow_close(sh, id * 0x10001), 0);
	assert_int_equal(shadow_count(sh), max / 2);
	shadow_free(sh);
}

static void
test_bulk(void **state)
{
	struct shadow *sh = table(100);
	struct sync_event ev = { .type = SYNC_EV_BULK };
	struct sync_conn_update u = { .id = 1 };
	struct shadow_stats st;

	for (uint64_t id = 1; id <= 4; id++) {
		struct sync_conn_state c = conn(id, 1);

		assert_int_equal(shadow_open(sh, &c, 0), 0);
	}
	ev.u.bulk.phase = SYNC_BULK_BEGIN;
	assert_int_equal(shadow_apply(sh, &ev, 1), 0);
	/* During the snapshot the old entries stay (a takeover may need them). */
	assert_int_equal(shadow_count(sh), 4);
	{
		struct sync_conn_state c2 = conn(2, 1), c4 = conn(4, 0),
		    c5 = conn(5, 1);

		assert_int_equal(shadow_open(sh, &c2, 2), 0);
		assert_int_equal(shadow_open(sh, &c4, 2), 0);
		assert_int_equal(shadow_open(sh, &c5, 2), 0);
	}
	/* An update is not a refresh: only a ConnState is. */
	assert_int_equal(shadow_update(sh, &u, 3), 0);
	ev.u.bulk.phase = SYNC_BULK_END;
	ev.u.bulk.count = 3;
	assert_int_equal(shadow_apply(sh, &ev, 4), 0);
	assert_int_equal(shadow_count(sh), 3);
	assert_null(shadow_lookup(sh, 1));
	assert_null(shadow_lookup(sh, 3));
	assert_non_null(shadow_lookup(sh, 2));
	assert_false(shadow_entry_state(shadow_lookup(sh, 4))->has_server_sock);
	assert_non_null(shadow_lookup(sh, 5));
	shadow_get_stats(sh, &st);
	assert_int_equal(st.bulks, 1);
	assert_int_equal(st.bulk_removed, 2);

	/* An empty snapshot empties the table. */
	shadow_bulk_begin(sh);
	assert_int_equal(shadow_bulk_end(sh), 3);
	assert_int_equal(shadow_count(sh), 0);
	shadow_free(sh);
}

static void
test_apply_dispatch(void **state)
{
	struct shadow *sh = table(4);
	struct sync_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = SYNC_EV_CONN;
	ev.u.conn = conn(9, 1);
	assert_int_equal(shadow_apply(sh, &ev, 0), 0);
	memset(&ev, 0, sizeof(ev));
	ev.type = SYNC_EV_UPDATE;
	ev.u.update.id = 9;
	ev.u.update.client_read = 3;
	assert_int_equal(shadow_apply(sh, &ev, 1), 0);
	assert_int_equal(shadow_entry_state(shadow_lookup(sh, 9))->client.bytes_read,
	    3);
	ev.type = SYNC_EV_STICKY;
	assert_int_equal(shadow_apply(sh, &ev, 1), -ENOTSUP);
	ev.type = SYNC_EV_SERVER;
	assert_int_equal(shadow_apply(sh, &ev, 1), -ENOTSUP);
	memset(&ev, 0, sizeof(ev));
	ev.type = SYNC_EV_CLOSE;
	ev.u.close.id = 9;
	assert_int_equal(shadow_apply(sh, &ev, 2), 0);
	assert_int_equal(shadow_apply(sh, &ev, 2), -ENOENT);
	shadow_clear(sh);
	shadow_free(sh);
}

/* The table keeps its own copies of the queues. */
static void
test_queues_owned(void **state)
{
	struct shadow *sh = table(4);
	struct sync_conn_state c = conn(1, 1);
	uint8_t rq[4] = "abcd", sq[3] = "xyz";
	const struct sync_conn_state *st;

	c.client.recv_queue = rq;
	c.client.recv_queue_len = sizeof(rq);
	c.server_sock.send_queue = sq;
	c.server_sock.send_queue_len = sizeof(sq);
	c.server_sock.send_unsent = 1;
	assert_int_equal(shadow_open(sh, &c, 0), 0);
	memset(rq, 0, sizeof(rq));
	memset(sq, 0, sizeof(sq));
	st = shadow_entry_state(shadow_lookup(sh, 1));
	assert_ptr_not_equal(st->client.recv_queue, rq);
	assert_memory_equal(st->client.recv_queue, "abcd", 4);
	assert_memory_equal(st->server_sock.send_queue, "xyz", 3);
	assert_int_equal(st->server_sock.send_unsent, 1);
	/* Replacing frees the old copies (ASan would see a leak otherwise). */
	c.client.recv_queue = sq;
	c.client.recv_queue_len = 1;
	c.server_sock.send_queue = NULL;
	c.server_sock.send_queue_len = 0;
	c.server_sock.send_unsent = 0;
	assert_int_equal(shadow_open(sh, &c, 1), 0);
	st = shadow_entry_state(shadow_lookup(sh, 1));
	assert_int_equal(st->client.recv_queue_len, 1);
	assert_null(st->server_sock.send_queue);
	/* A queue of a server half that is absent is not copied. */
	c.has_server_sock = false;
	c.server_sock.recv_queue = rq;
	c.server_sock.recv_queue_len = sizeof(rq);
	assert_int_equal(shadow_open(sh, &c, 2), 0);
	st = shadow_entry_state(shadow_lookup(sh, 1));
	assert_null(st->server_sock.recv_queue);
	assert_int_equal(st->server_sock.recv_queue_len, 0);
	shadow_free(sh);
}

/*
 * write_seq = snd_isn + bytes_written and rcv_nxt = rcv_isn + bytes_read,
 * mod 2^32, with u64 counts from the updates: right across the wrap and
 * after more than 4 GiB.
 */
static void
test_seq_wrap(void **state)
{
	struct shadow *sh = table(2);
	struct sync_conn_state c = conn(1, 1);
	struct sync_conn_update u = { .id = 1 };
	const struct sync_conn_state *st;

	c.client.snd_isn = 0xffffff00u;
	c.client.rcv_isn = 0x7fffffffu;
	c.server_sock.snd_isn = 0;
	c.server_sock.rcv_isn = 0xfffffffeu;
	assert_int_equal(shadow_open(sh, &c, 0), 0);
	st = shadow_entry_state(shadow_lookup(sh, 1));
	assert_int_equal(sync_sock_write_seq(&st->client), 0xffffff00u);

	u.client_written = 0x100;                  /* exactly onto the wrap */
	u.client_read = 1;
	u.server_written = UINT64_C(3) << 32;      /* 12 GiB: back to the start */
	u.server_read = (UINT64_C(5) << 32) + 3;
	assert_int_equal(shadow_update(sh, &u, 1), 0);
	st = shadow_entry_state(shadow_lookup(sh, 1));
	assert_int_equal(sync_sock_write_seq(&st->client), 0);
	assert_int_equal(sync_sock_rcv_nxt(&st->client), 0x80000000u);
	assert_int_equal(sync_sock_write_seq(&st->server_sock), 0);
	assert_int_equal(sync_sock_rcv_nxt(&st->server_sock), 1);
	/* More than 2^32 bytes later the same arithmetic holds. */
	u.client_written = (UINT64_C(7) << 32) + 0x1ff;
	u.client_read = UINT64_MAX;
	assert_int_equal(shadow_update(sh, &u, 2), 0);
	st = shadow_entry_state(shadow_lookup(sh, 1));
	assert_int_equal(sync_sock_write_seq(&st->client), 0xff);
	assert_int_equal(sync_sock_rcv_nxt(&st->client), 0x7ffffffeu);
	assert_int_equal(st->client.bytes_written, (UINT64_C(7) << 32) + 0x1ff);
	shadow_free(sh);
}

static void
test_alloc_failures(void **state)
{
	struct shadow *sh = NULL;
	struct sync_conn_state c = conn(1, 1);
	uint8_t q[8] = "qqqqqqqq";
	long at;

	assert_int_equal(shadow_new(0, &sh), -EINVAL);
	alloc_wrapped = 0;
	assert_int_equal(shadow_new(1, &sh), 0);
	shadow_free(sh);
	if (!alloc_wrapped)
		skip();
	for (at = 0;; at++) {
		int ret;

		alloc_count = 0;
		alloc_fail_at = at;
		ret = shadow_new(1, &sh);
		alloc_fail_at = -1;
		if (ret == 0)
			break;
		assert_int_equal(ret, -ENOMEM);
	}
	assert_int_equal(at, 2);
	shadow_free(sh);

	c.client.recv_queue = q;
	c.client.recv_queue_len = sizeof(q);
	c.client.send_queue = q;
	c.client.send_queue_len = 4;
	c.server_sock.recv_queue = q;
	c.server_sock.recv_queue_len = 2;
	sh = table(1);
	{
		struct sync_conn_state old = conn(2, 0);

		assert_int_equal(shadow_open(sh, &old, 0), 0);
	}
	/* A new entry (evicting 2) and then a replacement of entry 1. */
	for (int round = 0; round < 2; round++) {
		for (at = 0;; at++) {
			int ret;

			alloc_count = 0;
			alloc_fail_at = at;
			ret = shadow_open(sh, &c, 1);
			alloc_fail_at = -1;
			if (ret == 0)
				break;
			assert_int_equal(ret, -ENOMEM);
			/* Unchanged: the old entry is still there. */
			assert_int_equal(shadow_count(sh), 1);
			assert_non_null(shadow_lookup(sh, round == 0 ? 2 : 1));
		}
		assert_true(at >= 3);
		assert_null(shadow_lookup(sh, 2));
	}
	shadow_free(sh);
	shadow_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_update_close),
		cmocka_unit_test(test_update_client_only),
		cmocka_unit_test(test_replace),
		cmocka_unit_test(test_bound_evicts_idlest),
		cmocka_unit_test(test_many),
		cmocka_unit_test(test_bulk),
		cmocka_unit_test(test_apply_dispatch),
		cmocka_unit_test(test_queues_owned),
		cmocka_unit_test(test_seq_wrap),
		cmocka_unit_test(test_alloc_failures),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
