/*
 * Unit tests for the sync frame codec (daemon/sync/frame.c): round trips of
 * every field, what senders may not send, and every drop reason of the
 * decoder. Some messages are built by hand with a tiny protobuf writer and
 * one-shot HMAC(), so field numbers and the MAC are checked against
 * proto/tandem.proto, not only against the code under test.
 *
 * Linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc so that every
 * allocation of the codec can be failed in turn (test_alloc_failures).
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

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <tandem/auth.h>
#include <tandem/sync.h>
#include <tandem/wire.h>

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
extern void *__real_malloc(size_t n) __attribute__((weak));
extern void *__real_calloc(size_t n, size_t size) __attribute__((weak));
extern void *__real_realloc(void *p, size_t n) __attribute__((weak));

static long alloc_fail_at = -1;  /* index of the allocation to fail; -1 = none */
static long alloc_count;
static int alloc_wrapped;        /* the wrappers were called at all */

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

static const uint8_t key_a[32] = "0123456789abcdef0123456789abcdef";
static const uint8_t key_b[32] = "fedcba9876543210fedcba9876543210";

/* ---- a minimal protobuf writer ------------------------------------------ */

struct pb {
	uint8_t b[8192];
	size_t n;
};

static void
pb_raw(struct pb *p, const void *d, size_t n)
{
	assert_true(p->n + n <= sizeof(p->b));
	memcpy(p->b + p->n, d, n);
	p->n += n;
}

static void
pb_varint(struct pb *p, uint64_t v)
{
	do {
		uint8_t c = (uint8_t)(v & 0x7f);

		v >>= 7;
		if (v)
			c |= 0x80;
		pb_raw(p, &c, 1);
	} while (v);
}

static void
pb_uint(struct pb *p, unsigned field, uint64_t v)
{
	pb_varint(p, (uint64_t)field << 3 | 0);
	pb_varint(p, v);
}

static void
pb_bytes(struct pb *p, unsigned field, const void *d, size_t n)
{
	pb_varint(p, (uint64_t)field << 3 | 2);
	pb_varint(p, n);
	pb_raw(p, d, n);
}

static void
pb_fixed32(struct pb *p, unsigned field, uint32_t v)
{
	uint8_t le[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
		(uint8_t)(v >> 24) };

	pb_varint(p, (uint64_t)field << 3 | 5);
	pb_raw(p, le, 4);
}

static uint32_t
key_id_of(const uint8_t *key)
{
	uint8_t buf[64], md[32];
	unsigned mdlen = 0;

	memcpy(buf, "tandem key id", 13);
	memcpy(buf + 13, key, 32);
	assert_int_equal(EVP_Digest(buf, 13 + 32, md, &mdlen, EVP_sha256(),
	    NULL), 1);
	return (uint32_t)md[0] << 24 | (uint32_t)md[1] << 16 |
	    (uint32_t)md[2] << 8 | md[3];
}

/* An Envelope by hand, MAC'd as documented in tandem.proto. */
static void
hand_envelope(struct pb *p, uint32_t version, uint32_t type,
    const uint8_t *key, const uint8_t *payload, size_t plen)
{
	uint8_t buf[8192 + 16], mac[32];
	uint32_t kid = key_id_of(key);
	uint32_t v[3] = { version, type, kid };
	unsigned outlen = 0;

	assert_true(plen <= 8192);
	memcpy(buf, "TNDM", 4);
	for (int i = 0; i < 3; i++) {
		buf[4 + 4 * i] = (uint8_t)(v[i] >> 24);
		buf[5 + 4 * i] = (uint8_t)(v[i] >> 16);
		buf[6 + 4 * i] = (uint8_t)(v[i] >> 8);
		buf[7 + 4 * i] = (uint8_t)v[i];
	}
	memcpy(buf + 16, payload, plen);
	assert_non_null(HMAC(EVP_sha256(), key, 32, buf, 16 + plen, mac,
	    &outlen));
	p->n = 0;
	pb_uint(p, 1, version);
	pb_uint(p, 2, type);
	pb_fixed32(p, 3, kid);
	pb_bytes(p, 4, payload, plen);
	pb_bytes(p, 5, mac, 32);
}

/* ---- fixture --------------------------------------------------------------- */

struct fx {
	struct auth_keyring *kr;
	struct auth_keyring *other;
	struct auth_keyring *nosend;   /* key_a, not for sending */
};

static int
fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	f->kr = auth_keyring_new();
	f->other = auth_keyring_new();
	f->nosend = auth_keyring_new();
	if (f->kr == NULL || f->other == NULL || f->nosend == NULL ||
	    auth_keyring_add(f->kr, key_a, 32, 1, NULL) < 0 ||
	    auth_keyring_add(f->other, key_b, 32, 1, NULL) < 0 ||
	    auth_keyring_add(f->nosend, key_a, 32, 0, NULL) < 0)
		return -1;
	*state = f;
	return 0;
}

static int
fx_teardown(void **state)
{
	struct fx *f = *state;

	auth_keyring_free(f->kr);
	auth_keyring_free(f->other);
	auth_keyring_free(f->nosend);
	free(f);
	return 0;
}

/* ---- samples ---------------------------------------------------------------- */

static const uint8_t rq[5] = "RECVQ";
static const uint8_t sq[7] = "SENDQ!!";

static void
ep(struct sync_endpoint *e, int family, const char *addr, uint16_t port)
{
	memset(e, 0, sizeof(*e));
	e->family = (sa_family_t)family;
	e->port = port;
	assert_int_equal(inet_pton(family, addr, e->addr), 1);
}

/* Every field set to something distinct, sequence numbers near 2^32. */
static void
sample_sock(struct sync_sock *s, int family, unsigned salt, int queues)
{
	memset(s, 0, sizeof(*s));
	if (family == AF_INET) {
		ep(&s->local, AF_INET, "198.18.0.100", (uint16_t)(8000 + salt));
		ep(&s->peer, AF_INET, "198.18.0.10", (uint16_t)(40000 + salt));
	} else {
		ep(&s->local, AF_INET6, "2001:db8::100", (uint16_t)(8000 + salt));
		ep(&s->peer, AF_INET6, "2001:db8::10", (uint16_t)(40000 + salt));
	}
	s->snd_isn = 0xfffffff0u - salt;
	s->rcv_isn = 0x80000001u + salt;
	s->opt_sack = true;
	s->opt_timestamps = salt & 1;
	s->opt_wscale = true;
	s->snd_wscale = 7;
	s->rcv_wscale = 14;
	s->mss_clamp = (uint16_t)(1460 - salt);
	s->ts_val = 0xdeadbeefu + salt;
	s->ts_wall_ms = UINT64_C(1700000000123) + salt;
	s->snd_wnd = 64240 + salt;
	s->max_window = 65535 + salt;
	s->rcv_wnd = 131072 + salt;
	s->bytes_written = UINT64_C(0x100000005) + salt;
	s->bytes_read = UINT64_C(0x2000000007) + salt;
	if (queues) {
		s->recv_queue = rq;
		s->recv_queue_len = sizeof(rq);
		s->send_queue = sq;
		s->send_queue_len = sizeof(sq);
		s->send_unsent = 3;
	}
}

static void
sample_conn(struct sync_event *ev, uint64_t id, int family, int server_sock,
    int queues)
{
	struct sync_conn_state *c = &ev->u.conn;

	memset(ev, 0, sizeof(*ev));
	ev->type = SYNC_EV_CONN;
	c->id = id;
	snprintf(c->frontend, sizeof(c->frontend), "www");
	snprintf(c->backend, sizeof(c->backend), "web-pool");
	snprintf(c->server, sizeof(c->server), "be1.example");
	sample_sock(&c->client, family, 1, queues);
	c->has_server_sock = server_sock;
	if (server_sock)
		sample_sock(&c->server_sock, family, 2, queues);
	c->created_wall_ms = UINT64_C(1700000000000) + id;
	c->client_eof = true;
	c->server_eof = false;
}

static void
sample_update(struct sync_event *ev, uint64_t id)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = SYNC_EV_UPDATE;
	ev->u.update.id = id;
	ev->u.update.client_written = UINT64_C(0x1ffffffff);
	ev->u.update.client_read = 2;
	ev->u.update.server_written = 3;
	ev->u.update.server_read = UINT64_MAX;
	ev->u.update.client_eof = false;
	ev->u.update.server_eof = true;
}

static void
sample_sticky(struct sync_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = SYNC_EV_STICKY;
	snprintf(ev->u.sticky.backend, sizeof(ev->u.sticky.backend), "web");
	memcpy(ev->u.sticky.key, "\xc6\x12\x00\x0a", 4);
	ev->u.sticky.keylen = 4;
	snprintf(ev->u.sticky.server, sizeof(ev->u.sticky.server), "be2");
	ev->u.sticky.ttl_ms = 29999;
}

static void
sample_server(struct sync_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = SYNC_EV_SERVER;
	snprintf(ev->u.server.backend, sizeof(ev->u.server.backend), "web");
	snprintf(ev->u.server.server, sizeof(ev->u.server.server), "be3");
	ev->u.server.health = SYNC_HEALTH_DRAIN;
	ev->u.server.rise_count = 1;
	ev->u.server.fall_count = 2;
	ev->u.server.eff_weight = 3;
	ev->u.server.slowstart_left_ms = 4;
	ev->u.server.active_conns = 5;
	ev->u.server.ewma_us = UINT64_C(6000000000);
	ev->u.server.consec_fails = 7;
}

/* A FROZEN marker with groups and a reason: every field set. */
static void
sample_switch(struct sync_event *ev, size_t ngroups)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = SYNC_EV_SWITCH;
	ev->u.sw.phase = SYNC_SWITCH_FROZEN;
	ev->u.sw.id = UINT64_C(0x8000000000000001);
	ev->u.sw.last_frame = UINT64_C(0x1234567890);
	ev->u.sw.ngroups = ngroups;
	for (size_t i = 0; i < ngroups; i++)
		ev->u.sw.groups[i] = (uint32_t)(i * 1000003u + 1);
	snprintf(ev->u.sw.reason, sizeof(ev->u.sw.reason),
	    "tandemctl switchover (op: ~root)");
	ev->u.sw.restored = 4000000000u;
	ev->u.sw.reset = 17;
}

static void
sample_hello(struct sync_hello *h, int family)
{
	memset(h, 0, sizeof(*h));
	snprintf(h->node_name, sizeof(h->node_name), "lb1");
	if (family == AF_INET)
		ep(&h->node, AF_INET, "198.18.1.1", 0);
	else if (family == AF_INET6)
		ep(&h->node, AF_INET6, "2001:db8:1::1", 0);
	h->proto_version = SYNC_PROTO_VERSION;
	h->boot_epoch = 41;
	for (int i = 0; i < SYNC_DIGEST_LEN; i++)
		h->config_digest[i] = (uint8_t)(0x80 + i);
	h->role = SYNC_ROLE_ACTIVE;
	h->sync_epoch = UINT64_C(41) << 24 | 3;
	h->resume_epoch = UINT64_C(40) << 24 | 9;
	h->resume_after = 123456789;
	h->nonce = UINT64_C(0xfedcba9876543210);
}

/* ---- comparisons ------------------------------------------------------------ */

static void
assert_endpoint_equal(const struct sync_endpoint *a, const struct sync_endpoint *b)
{
	assert_int_equal(a->family, b->family);
	assert_int_equal(a->port, b->port);
	assert_memory_equal(a->addr, b->addr, a->family == AF_INET ? 4 : 16);
}

static void
assert_queue_equal(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	assert_int_equal(alen, blen);
	if (alen > 0)
		assert_memory_equal(a, b, alen);
}

static void
assert_sock_equal(const struct sync_sock *a, const struct sync_sock *b)
{
	assert_endpoint_equal(&a->local, &b->local);
	assert_endpoint_equal(&a->peer, &b->peer);
	assert_int_equal(a->snd_isn, b->snd_isn);
	assert_int_equal(a->rcv_isn, b->rcv_isn);
	assert_int_equal(a->opt_sack, b->opt_sack);
	assert_int_equal(a->opt_timestamps, b->opt_timestamps);
	assert_int_equal(a->opt_wscale, b->opt_wscale);
	assert_int_equal(a->snd_wscale, b->snd_wscale);
	assert_int_equal(a->rcv_wscale, b->rcv_wscale);
	assert_int_equal(a->mss_clamp, b->mss_clamp);
	assert_int_equal(a->ts_val, b->ts_val);
	assert_int_equal(a->ts_wall_ms, b->ts_wall_ms);
	assert_int_equal(a->snd_wnd, b->snd_wnd);
	assert_int_equal(a->max_window, b->max_window);
	assert_int_equal(a->rcv_wnd, b->rcv_wnd);
	assert_int_equal(a->bytes_written, b->bytes_written);
	assert_int_equal(a->bytes_read, b->bytes_read);
	assert_queue_equal(a->recv_queue, a->recv_queue_len, b->recv_queue,
	    b->recv_queue_len);
	assert_queue_equal(a->send_queue, a->send_queue_len, b->send_queue,
	    b->send_queue_len);
	assert_int_equal(a->send_unsent, b->send_unsent);
}

static void
assert_event_equal(const struct sync_event *a, const struct sync_event *b)
{
	assert_int_equal(a->type, b->type);
	switch (a->type) {
	case SYNC_EV_CONN:
		assert_int_equal(a->u.conn.id, b->u.conn.id);
		assert_string_equal(a->u.conn.frontend, b->u.conn.frontend);
		assert_string_equal(a->u.conn.backend, b->u.conn.backend);
		assert_string_equal(a->u.conn.server, b->u.conn.server);
		assert_sock_equal(&a->u.conn.client, &b->u.conn.client);
		assert_int_equal(a->u.conn.has_server_sock,
		    b->u.conn.has_server_sock);
		if (a->u.conn.has_server_sock)
			assert_sock_equal(&a->u.conn.server_sock,
			    &b->u.conn.server_sock);
		assert_int_equal(a->u.conn.created_wall_ms,
		    b->u.conn.created_wall_ms);
		assert_int_equal(a->u.conn.client_eof, b->u.conn.client_eof);
		assert_int_equal(a->u.conn.server_eof, b->u.conn.server_eof);
		break;
	case SYNC_EV_UPDATE:
		assert_int_equal(a->u.update.id, b->u.update.id);
		assert_int_equal(a->u.update.client_written,
		    b->u.update.client_written);
		assert_int_equal(a->u.update.client_read, b->u.update.client_read);
		assert_int_equal(a->u.update.server_written,
		    b->u.update.server_written);
		assert_int_equal(a->u.update.server_read, b->u.update.server_read);
		assert_int_equal(a->u.update.client_eof, b->u.update.client_eof);
		assert_int_equal(a->u.update.server_eof, b->u.update.server_eof);
		break;
	case SYNC_EV_CLOSE:
		assert_int_equal(a->u.close.id, b->u.close.id);
		break;
	case SYNC_EV_STICKY:
		assert_string_equal(a->u.sticky.backend, b->u.sticky.backend);
		assert_queue_equal(a->u.sticky.key, a->u.sticky.keylen,
		    b->u.sticky.key, b->u.sticky.keylen);
		assert_string_equal(a->u.sticky.server, b->u.sticky.server);
		assert_int_equal(a->u.sticky.ttl_ms, b->u.sticky.ttl_ms);
		break;
	case SYNC_EV_SERVER:
		assert_string_equal(a->u.server.backend, b->u.server.backend);
		assert_string_equal(a->u.server.server, b->u.server.server);
		assert_int_equal(a->u.server.health, b->u.server.health);
		assert_int_equal(a->u.server.rise_count, b->u.server.rise_count);
		assert_int_equal(a->u.server.fall_count, b->u.server.fall_count);
		assert_int_equal(a->u.server.eff_weight, b->u.server.eff_weight);
		assert_int_equal(a->u.server.slowstart_left_ms,
		    b->u.server.slowstart_left_ms);
		assert_int_equal(a->u.server.active_conns,
		    b->u.server.active_conns);
		assert_int_equal(a->u.server.ewma_us, b->u.server.ewma_us);
		assert_int_equal(a->u.server.consec_fails,
		    b->u.server.consec_fails);
		break;
	case SYNC_EV_BULK:
		assert_int_equal(a->u.bulk.phase, b->u.bulk.phase);
		assert_int_equal(a->u.bulk.count, b->u.bulk.count);
		break;
	case SYNC_EV_SWITCH:
		assert_int_equal(a->u.sw.phase, b->u.sw.phase);
		assert_int_equal(a->u.sw.id, b->u.sw.id);
		assert_int_equal(a->u.sw.last_frame, b->u.sw.last_frame);
		assert_int_equal(a->u.sw.ngroups, b->u.sw.ngroups);
		for (size_t i = 0; i < a->u.sw.ngroups; i++)
			assert_int_equal(a->u.sw.groups[i], b->u.sw.groups[i]);
		assert_string_equal(a->u.sw.reason, b->u.sw.reason);
		assert_int_equal(a->u.sw.restored, b->u.sw.restored);
		assert_int_equal(a->u.sw.reset, b->u.sw.reset);
		break;
	case SYNC_EV_COUNT:
		fail();
	}
}

static void
assert_hello_equal(const struct sync_hello *a, const struct sync_hello *b)
{
	assert_string_equal(a->node_name, b->node_name);
	assert_int_equal(a->node.family, b->node.family);
	if (a->node.family != 0)
		assert_memory_equal(a->node.addr, b->node.addr,
		    a->node.family == AF_INET ? 4 : 16);
	assert_int_equal(a->proto_version, b->proto_version);
	assert_int_equal(a->boot_epoch, b->boot_epoch);
	assert_memory_equal(a->config_digest, b->config_digest, SYNC_DIGEST_LEN);
	assert_int_equal(a->role, b->role);
	assert_int_equal(a->sync_epoch, b->sync_epoch);
	assert_int_equal(a->resume_epoch, b->resume_epoch);
	assert_int_equal(a->resume_after, b->resume_after);
	assert_int_equal(a->nonce, b->nonce);
}

/* ---- helpers ------------------------------------------------------------------ */

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

/* Seal evs as a frame; out holds [len][envelope]. */
static void
seal_events(struct fx *f, struct sync_buf *out, const struct sync_frame_hdr *h,
    const struct sync_event *evs, size_t n)
{
	struct sync_buf b = { 0 };

	for (size_t i = 0; i < n; i++)
		assert_int_equal(syncf_event_append(&b, &evs[i]), 0);
	assert_int_equal(syncf_frame_seal(out, h, b.data, b.len, n, f->kr), 0);
	syncf_buf_free(&b);
}

/* Open the one message in out (skipping the prefix, which must match). */
static int
open_buf(struct fx *f, const struct sync_buf *out, size_t max,
    struct sync_msg *m, enum sync_drop *why)
{
	assert_true(out->len >= 4);
	assert_int_equal(be32(out->data), out->len - 4);
	return syncf_open(out->data + 4, out->len - 4, max, f->kr, m, why);
}

static void
expect_drop(struct fx *f, const uint8_t *p, size_t len, size_t max,
    enum sync_drop want, bool authenticated)
{
	struct sync_msg m;
	enum sync_drop why = SYNC_DROP_COUNT;

	assert_int_equal(syncf_open(p, len, max, f->kr, &m, &why), -EBADMSG);
	if (why != want)
		fail_msg("dropped as %s, expected %s", sync_drop_name(why),
		    sync_drop_name(want));
	assert_int_equal(m.authenticated, authenticated);
	assert_null(m.events);
	assert_int_equal(m.nevents, 0);
}

/* Seal an arbitrary payload as type with the fixture key. */
static void
seal_raw(struct fx *f, enum wire_type type, const uint8_t *payload,
    size_t plen, uint8_t *buf, size_t cap, size_t *len)
{
	assert_int_equal(wire_seal(type, f->kr, payload, plen, buf, cap, len), 0);
}

/* ---- round trips ---------------------------------------------------------------- */

static void
test_frame_roundtrip(void **state)
{
	struct fx *f = *state;
	struct sync_event evs[9];
	struct sync_frame_hdr h = {
		.epoch = UINT64_C(7) << 24 | 2, .seq = 99,
		.ack_epoch = UINT64_C(8) << 24, .ack = 1234,
	};
	struct sync_buf out = { 0 };
	struct sync_msg m;
	enum sync_drop why;

	memset(evs, 0, sizeof(evs));
	evs[0].type = SYNC_EV_BULK;
	evs[0].u.bulk.phase = SYNC_BULK_BEGIN;
	sample_conn(&evs[1], 1, AF_INET, 1, 0);
	sample_conn(&evs[2], UINT64_MAX, AF_INET6, 1, 1);
	sample_conn(&evs[3], 0, AF_INET, 0, 1);       /* L7: client side only */
	sample_update(&evs[4], 42);
	evs[5].type = SYNC_EV_CLOSE;
	evs[5].u.close.id = UINT64_C(0x123456789abcdef0);
	sample_sticky(&evs[6]);
	sample_server(&evs[7]);
	evs[8].type = SYNC_EV_BULK;
	evs[8].u.bulk.phase = SYNC_BULK_END;
	evs[8].u.bulk.count = 7;
	evs[3].u.conn.server[0] = '\0';               /* may be empty */

	seal_events(f, &out, &h, evs, 9);
	assert_int_equal(open_buf(f, &out, SYNC_FRAME_MAX, &m, &why), 0);
	assert_int_equal(m.type, WIRE_MSG_SYNC_FRAME);
	assert_true(m.authenticated);
	assert_int_equal(m.key_id, key_id_of(key_a));
	assert_int_equal(m.hdr.epoch, h.epoch);
	assert_int_equal(m.hdr.seq, h.seq);
	assert_int_equal(m.hdr.ack_epoch, h.ack_epoch);
	assert_int_equal(m.hdr.ack, h.ack);
	assert_int_equal(m.hdr.echo, 0);
	assert_int_equal(m.nevents, 9);
	for (size_t i = 0; i < 9; i++)
		assert_event_equal(&m.events[i], &evs[i]);
	/* Received queues are copies owned by the message. */
	assert_ptr_not_equal(m.events[2].u.conn.client.recv_queue, rq);
	syncf_msg_clear(&m);
	assert_null(m.events);
	syncf_buf_free(&out);
}

static void
test_pure_ack_roundtrip(void **state)
{
	struct fx *f = *state;
	struct sync_frame_hdr h = {
		.epoch = 5, .seq = 0, .ack_epoch = 6, .ack = 77, .echo = 0x1122,
	};
	struct sync_buf out = { 0 };
	struct sync_msg m;
	enum sync_drop why;

	assert_int_equal(syncf_frame_seal(&out, &h, NULL, 0, 0, f->kr), 0);
	assert_int_equal(open_buf(f, &out, SYNC_HELLO_MAX, &m, &why), 0);
	assert_int_equal(m.hdr.seq, 0);
	assert_int_equal(m.hdr.ack_epoch, 6);
	assert_int_equal(m.hdr.ack, 77);
	assert_int_equal(m.hdr.echo, 0x1122);
	assert_int_equal(m.nevents, 0);
	syncf_msg_clear(&m);
	syncf_buf_free(&out);
}

static void
test_hello_roundtrip(void **state)
{
	struct fx *f = *state;
	const int families[] = { AF_INET, AF_INET6, 0 };

	for (size_t i = 0; i < 3; i++) {
		struct sync_hello h;
		struct sync_buf out = { 0 };
		struct sync_msg m;
		enum sync_drop why;

		sample_hello(&h, families[i]);
		if (i == 2)
			h.role = SYNC_ROLE_STANDBY;
		assert_int_equal(syncf_hello_seal(&out, &h, f->kr), 0);
		assert_true(out.len - 4 <= SYNC_HELLO_MAX);
		assert_int_equal(open_buf(f, &out, SYNC_HELLO_MAX, &m, &why), 0);
		assert_int_equal(m.type, WIRE_MSG_SYNC_HELLO);
		assert_hello_equal(&m.hello, &h);
		syncf_msg_clear(&m);
		syncf_buf_free(&out);
	}
}

/* Switchover markers travel in a frame with the connection events, in order. */
static void
test_switch_roundtrip(void **state)
{
	struct fx *f = *state;
	struct sync_event evs[6];
	struct sync_frame_hdr h = { .epoch = 3, .seq = 8, .ack_epoch = 2, .ack = 1 };
	struct sync_buf out = { 0 };
	struct sync_msg m;
	enum sync_drop why;

	sample_switch(&evs[0], 2);
	evs[0].u.sw.phase = SYNC_SWITCH_REQUEST;
	sample_conn(&evs[1], 5, AF_INET6, 1, 1);
	sample_switch(&evs[2], SYNC_SWITCH_GROUPS_MAX);   /* the most groups */
	sample_update(&evs[3], 5);
	sample_switch(&evs[4], 0);                        /* no groups, no reason */
	evs[4].u.sw.phase = SYNC_SWITCH_DONE;
	evs[4].u.sw.reason[0] = '\0';
	evs[4].u.sw.last_frame = 0;
	sample_switch(&evs[5], 1);
	evs[5].u.sw.phase = SYNC_SWITCH_ABORT;
	evs[5].u.sw.groups[0] = UINT32_MAX;
	snprintf(evs[5].u.sw.reason, sizeof(evs[5].u.sw.reason), "%63s", "x");

	seal_events(f, &out, &h, evs, 6);
	assert_int_equal(open_buf(f, &out, SYNC_FRAME_MAX, &m, &why), 0);
	assert_int_equal(m.nevents, 6);
	for (size_t i = 0; i < 6; i++)
		assert_event_equal(&m.events[i], &evs[i]);
	syncf_msg_clear(&m);
	syncf_buf_free(&out);
}

/* A Switchover by hand: SyncEvent field 7 and tandem.Switchover's numbers. */
static void
test_hand_built_switch(void **state)
{
	struct fx *f = *state;
	struct pb sw = { .n = 0 }, ev = { .n = 0 }, frame = { .n = 0 },
	    env = { .n = 0 };
	struct sync_msg m;
	enum sync_drop why;

	pb_uint(&sw, 1, 2);                       /* phase SWITCH_DONE */
	pb_uint(&sw, 2, 99);                      /* id */
	pb_uint(&sw, 3, 1234);                    /* last_frame */
	pb_uint(&sw, 4, 7);                       /* groups, unpacked */
	pb_uint(&sw, 4, 300);
	pb_uint(&sw, 6, 12);                      /* restored */
	pb_uint(&sw, 7, 3);                       /* reset; no reason */
	pb_bytes(&ev, 7, sw.b, sw.n);             /* SyncEvent.switchover */
	pb_uint(&frame, 1, 900);
	pb_uint(&frame, 2, 1);
	pb_uint(&frame, 3, 0);
	pb_bytes(&frame, 4, ev.b, ev.n);
	pb_uint(&frame, 5, 0);
	hand_envelope(&env, 1, 3, key_a, frame.b, frame.n);
	assert_int_equal(syncf_open(env.b, env.n, SYNC_FRAME_MAX, f->kr, &m,
	    &why), 0);
	assert_int_equal(m.nevents, 1);
	assert_int_equal(m.events[0].type, SYNC_EV_SWITCH);
	assert_int_equal(m.events[0].u.sw.phase, SYNC_SWITCH_DONE);
	assert_int_equal(m.events[0].u.sw.id, 99);
	assert_int_equal(m.events[0].u.sw.last_frame, 1234);
	assert_int_equal(m.events[0].u.sw.ngroups, 2);
	assert_int_equal(m.events[0].u.sw.groups[0], 7);
	assert_int_equal(m.events[0].u.sw.groups[1], 300);
	assert_string_equal(m.events[0].u.sw.reason, "");
	assert_int_equal(m.events[0].u.sw.restored, 12);
	assert_int_equal(m.events[0].u.sw.reset, 3);
	syncf_msg_clear(&m);

	/* The same with a reason (field 5) and packed groups. */
	sw.n = 0;
	pb_uint(&sw, 1, 0);
	pb_uint(&sw, 2, 1);
	pb_uint(&sw, 3, 0);
	pb_bytes(&sw, 4, "\x01\x02", 2);
	pb_bytes(&sw, 5, "SIGTERM", 7);
	pb_uint(&sw, 6, 0);
	pb_uint(&sw, 7, 0);
	ev.n = 0;
	pb_bytes(&ev, 7, sw.b, sw.n);
	frame.n = 0;
	pb_uint(&frame, 1, 900);
	pb_uint(&frame, 2, 2);
	pb_uint(&frame, 3, 0);
	pb_bytes(&frame, 4, ev.b, ev.n);
	pb_uint(&frame, 5, 0);
	hand_envelope(&env, 1, 3, key_a, frame.b, frame.n);
	assert_int_equal(syncf_open(env.b, env.n, SYNC_FRAME_MAX, f->kr, &m,
	    &why), 0);
	assert_int_equal(m.events[0].u.sw.phase, SYNC_SWITCH_REQUEST);
	assert_int_equal(m.events[0].u.sw.ngroups, 2);
	assert_int_equal(m.events[0].u.sw.groups[1], 2);
	assert_string_equal(m.events[0].u.sw.reason, "SIGTERM");
	syncf_msg_clear(&m);
}

/* Several messages append to one buffer, each with its own prefix. */
static void
test_stream_of_messages(void **state)
{
	struct fx *f = *state;
	struct sync_buf out = { 0 };
	struct sync_hello h;
	struct sync_event ev;
	struct sync_frame_hdr fh = { .epoch = 1, .seq = 1 };
	size_t off = 0, n = 0;

	sample_hello(&h, AF_INET);
	assert_int_equal(syncf_hello_seal(&out, &h, f->kr), 0);
	sample_update(&ev, 3);
	seal_events(f, &out, &fh, &ev, 1);
	fh.seq = 0;
	assert_int_equal(syncf_frame_seal(&out, &fh, NULL, 0, 0, f->kr), 0);
	while (off < out.len) {
		uint32_t len = be32(out.data + off);
		struct sync_msg m;
		enum sync_drop why;

		assert_int_equal(syncf_open(out.data + off + 4, len,
		    SYNC_FRAME_MAX, f->kr, &m, &why), 0);
		assert_int_equal(m.type, n == 0 ? WIRE_MSG_SYNC_HELLO :
		    WIRE_MSG_SYNC_FRAME);
		syncf_msg_clear(&m);
		off += 4 + len;
		n++;
	}
	assert_int_equal(off, out.len);
	assert_int_equal(n, 3);
	syncf_buf_free(&out);
}

/* A frame written by hand from tandem.proto decodes: field numbers agree. */
static void
test_hand_built_frame(void **state)
{
	struct fx *f = *state;
	struct pb ev = { .n = 0 }, close = { .n = 0 }, frame = { .n = 0 },
	    env = { .n = 0 };
	struct sync_msg m;
	enum sync_drop why;

	pb_uint(&close, 1, 4242);                 /* ConnClose.id */
	pb_bytes(&ev, 3, close.b, close.n);       /* SyncEvent.closed */
	pb_uint(&frame, 1, 900);                  /* sync_epoch */
	pb_uint(&frame, 2, 17);                   /* seq */
	pb_uint(&frame, 3, 5);                    /* ack */
	pb_bytes(&frame, 4, ev.b, ev.n);          /* events */
	pb_uint(&frame, 5, 800);                  /* ack_epoch */
	hand_envelope(&env, 1, 3, key_a, frame.b, frame.n);
	assert_int_equal(syncf_open(env.b, env.n, SYNC_FRAME_MAX, f->kr, &m,
	    &why), 0);
	assert_int_equal(m.hdr.epoch, 900);
	assert_int_equal(m.hdr.seq, 17);
	assert_int_equal(m.hdr.ack, 5);
	assert_int_equal(m.hdr.ack_epoch, 800);
	assert_int_equal(m.nevents, 1);
	assert_int_equal(m.events[0].type, SYNC_EV_CLOSE);
	assert_int_equal(m.events[0].u.close.id, 4242);
	syncf_msg_clear(&m);
}

/* ---- what may not be sent -------------------------------------------------------- */

static void
expect_invalid(const struct sync_event *ev)
{
	struct sync_buf b = { 0 };

	assert_false(syncf_event_valid(ev));
	assert_int_equal(syncf_event_append(&b, ev), -EINVAL);
	assert_int_equal(b.len, 0);
	syncf_buf_free(&b);
}

static void
test_invalid_events(void **state)
{
	struct sync_event ev, good;

	sample_conn(&good, 1, AF_INET, 1, 1);
	assert_true(syncf_event_valid(&good));

	ev = good;
	ev.u.conn.frontend[0] = '\0';
	expect_invalid(&ev);
	ev = good;
	snprintf(ev.u.conn.backend, sizeof(ev.u.conn.backend), "a b");
	expect_invalid(&ev);
	ev = good;
	snprintf(ev.u.conn.server, sizeof(ev.u.conn.server), "x=y");
	expect_invalid(&ev);
	ev = good;
	memset(ev.u.conn.frontend, 'a', sizeof(ev.u.conn.frontend));
	expect_invalid(&ev);                      /* not terminated */
	ev = good;
	ev.u.conn.client.snd_wscale = 15;
	expect_invalid(&ev);
	ev = good;
	ev.u.conn.server_sock.mss_clamp = 0;
	expect_invalid(&ev);
	ev = good;
	ev.u.conn.client.peer.family = AF_INET6;  /* families differ */
	expect_invalid(&ev);
	ev = good;
	ev.u.conn.client.local.port = 0;
	expect_invalid(&ev);
	ev = good;
	ev.u.conn.client.local.family = AF_UNIX;
	expect_invalid(&ev);
	ev = good;
	ev.u.conn.client.send_unsent = (uint32_t)sizeof(sq) + 1;
	expect_invalid(&ev);
	ev = good;
	ev.u.conn.client.recv_queue = NULL;       /* length without bytes */
	expect_invalid(&ev);
	ev = good;
	ev.u.conn.client.recv_queue_len = SYNC_QUEUE_MAX + 1;
	expect_invalid(&ev);
	/* An invalid server half counts only when there is one. */
	ev = good;
	ev.u.conn.server_sock.rcv_wscale = 200;
	expect_invalid(&ev);
	ev.u.conn.has_server_sock = false;
	assert_true(syncf_event_valid(&ev));

	sample_sticky(&ev);
	ev.u.sticky.keylen = 0;
	expect_invalid(&ev);
	ev.u.sticky.keylen = SYNC_STICKY_KEY_MAX + 1;
	expect_invalid(&ev);
	sample_sticky(&ev);
	ev.u.sticky.server[0] = '\0';
	expect_invalid(&ev);
	sample_server(&ev);
	ev.u.server.health = SYNC_HEALTH_COUNT;
	expect_invalid(&ev);
	memset(&ev, 0, sizeof(ev));
	ev.type = SYNC_EV_BULK;
	ev.u.bulk.phase = SYNC_BULK_COUNT;
	expect_invalid(&ev);
	ev.type = SYNC_EV_COUNT;
	expect_invalid(&ev);

	sample_switch(&good, 3);
	assert_true(syncf_event_valid(&good));
	ev = good;
	ev.u.sw.id = 0;
	expect_invalid(&ev);
	ev = good;
	ev.u.sw.ngroups = SYNC_SWITCH_GROUPS_MAX + 1;
	expect_invalid(&ev);
	ev = good;
	ev.u.sw.phase = SYNC_SWITCH_COUNT;
	expect_invalid(&ev);
	ev = good;
	ev.u.sw.reason[3] = '\n';
	expect_invalid(&ev);
	ev = good;
	ev.u.sw.reason[0] = '\x1b';                /* an escape sequence */
	expect_invalid(&ev);
	ev = good;
	ev.u.sw.reason[0] = '\x7f';
	expect_invalid(&ev);
	ev = good;
	ev.u.sw.reason[0] = (char)0xc3;           /* not ASCII */
	expect_invalid(&ev);
	ev = good;
	memset(ev.u.sw.reason, 'r', sizeof(ev.u.sw.reason));
	expect_invalid(&ev);                      /* not terminated */
	ev = good;
	ev.u.sw.reason[0] = '\0';                 /* may be empty */
	ev.u.sw.ngroups = 0;
	assert_true(syncf_event_valid(&ev));
}

static void
test_seal_errors(void **state)
{
	struct fx *f = *state;
	struct sync_buf out = { 0 }, evs = { 0 };
	struct sync_frame_hdr h = { .epoch = 1, .seq = 1 };
	struct sync_hello hello;
	struct sync_event ev;

	sample_update(&ev, 1);
	assert_int_equal(syncf_event_append(&evs, &ev), 0);
	/* Numbered frames carry 1..max events, pure acks none. */
	assert_int_equal(syncf_frame_seal(&out, &h, evs.data, evs.len, 0,
	    f->kr), -EINVAL);
	assert_int_equal(syncf_frame_seal(&out, &h, evs.data, evs.len,
	    SYNC_FRAME_EVENTS_MAX + 1, f->kr), -EINVAL);
	h.seq = 0;
	assert_int_equal(syncf_frame_seal(&out, &h, evs.data, evs.len, 1,
	    f->kr), -EINVAL);
	h.seq = 1;
	h.epoch = 0;
	assert_int_equal(syncf_frame_seal(&out, &h, evs.data, evs.len, 1,
	    f->kr), -EINVAL);
	h.epoch = 1;
	h.echo = 5;                               /* echo is for pure acks */
	assert_int_equal(syncf_frame_seal(&out, &h, evs.data, evs.len, 1,
	    f->kr), -EINVAL);
	h.echo = 0;
	assert_int_equal(syncf_frame_seal(&out, &h, evs.data, evs.len, 1,
	    f->nosend), -ENOKEY);
	assert_int_equal(out.len, 0);

	sample_hello(&hello, AF_INET);
	hello.nonce = 0;
	assert_int_equal(syncf_hello_seal(&out, &hello, f->kr), -EINVAL);
	sample_hello(&hello, AF_INET);
	hello.proto_version = 0;
	assert_int_equal(syncf_hello_seal(&out, &hello, f->kr), -EINVAL);
	sample_hello(&hello, AF_INET);
	hello.node_name[0] = '\0';
	assert_int_equal(syncf_hello_seal(&out, &hello, f->kr), -EINVAL);
	sample_hello(&hello, AF_INET);
	hello.role = SYNC_ROLE_COUNT;
	assert_int_equal(syncf_hello_seal(&out, &hello, f->kr), -EINVAL);
	sample_hello(&hello, AF_INET);
	assert_int_equal(syncf_hello_seal(&out, &hello, f->nosend), -ENOKEY);
	assert_int_equal(out.len, 0);
	syncf_buf_free(&evs);
	syncf_buf_free(&out);
}

/* ---- drop reasons ----------------------------------------------------------------- */

static void
test_drop_garbage(void **state)
{
	struct fx *f = *state;
	const uint8_t junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	const uint8_t badtag[] = { 0x08, 0x01, 0x07, 0x01 };   /* wire type 7 */
	const uint8_t long_varint[] = { 0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
	struct pb env = { .n = 0 };
	uint8_t mac[32] = { 0 };

	expect_drop(f, junk, sizeof(junk) - 1, SYNC_FRAME_MAX,
	    SYNC_DROP_GARBAGE, false);
	expect_drop(f, badtag, sizeof(badtag), SYNC_FRAME_MAX,
	    SYNC_DROP_GARBAGE, false);
	expect_drop(f, long_varint, sizeof(long_varint), SYNC_FRAME_MAX,
	    SYNC_DROP_GARBAGE, false);
	/* A gap: version, type, then the MAC without key id and payload. */
	pb_uint(&env, 1, 1);
	pb_uint(&env, 2, 3);
	pb_bytes(&env, 5, mac, 32);
	expect_drop(f, env.b, env.n, SYNC_FRAME_MAX, SYNC_DROP_GARBAGE, false);
	/* A 31-byte MAC. */
	env.n = 0;
	pb_uint(&env, 1, 1);
	pb_uint(&env, 2, 3);
	pb_fixed32(&env, 3, key_id_of(key_a));
	pb_bytes(&env, 4, "x", 1);
	pb_bytes(&env, 5, mac, 31);
	expect_drop(f, env.b, env.n, SYNC_FRAME_MAX, SYNC_DROP_GARBAGE, false);
}

static void
test_drop_truncated(void **state)
{
	struct fx *f = *state;
	struct sync_buf out = { 0 };
	struct sync_event ev;
	struct sync_frame_hdr h = { .epoch = 1, .seq = 1 };

	sample_conn(&ev, 1, AF_INET6, 1, 1);
	seal_events(f, &out, &h, &ev, 1);
	expect_drop(f, out.data + 4, 0, SYNC_FRAME_MAX, SYNC_DROP_TRUNCATED,
	    false);
	/* Every cut of a sealed envelope is a truncation, never garbage. */
	for (size_t cut = 1; cut < out.len - 4; cut++)
		expect_drop(f, out.data + 4, cut, SYNC_FRAME_MAX,
		    SYNC_DROP_TRUNCATED, false);
	syncf_buf_free(&out);
}

static void
test_drop_oversized(void **state)
{
	struct fx *f = *state;
	struct sync_buf out = { 0 };
	struct sync_hello h;
	struct pb payload = { .n = 0 }, ev = { .n = 0 }, close = { .n = 0 };
	uint8_t *sealed;
	size_t len;

	sample_hello(&h, AF_INET);
	assert_int_equal(syncf_hello_seal(&out, &h, f->kr), 0);
	/* The limit is the caller's: a hello passes 1024, not 16. */
	expect_drop(f, out.data + 4, out.len - 4, 16, SYNC_DROP_OVERSIZED,
	    false);
	syncf_buf_free(&out);

	/* More events than a frame may carry: refused before protobuf-c allocates. */
	pb_uint(&close, 1, 1);
	pb_bytes(&ev, 3, close.b, close.n);
	pb_uint(&payload, 1, 1);
	pb_uint(&payload, 2, 1);
	pb_uint(&payload, 3, 0);
	pb_uint(&payload, 5, 0);
	for (size_t i = 0; i <= SYNC_FRAME_EVENTS_MAX; i++)
		pb_bytes(&payload, 4, ev.b, ev.n);
	sealed = malloc(payload.n + 128);
	assert_non_null(sealed);
	seal_raw(f, WIRE_MSG_SYNC_FRAME, payload.b, payload.n, sealed,
	    payload.n + 128, &len);
	expect_drop(f, sealed, len, SYNC_FRAME_MAX, SYNC_DROP_OVERSIZED, true);
	free(sealed);
}

static void
test_drop_bad_version(void **state)
{
	struct fx *f = *state;
	struct pb env = { .n = 0 };
	const uint8_t only_version[] = { 0x08, 0x02 };

	hand_envelope(&env, 2, 3, key_a, (const uint8_t *)"x", 1);
	expect_drop(f, env.b, env.n, SYNC_FRAME_MAX, SYNC_DROP_BAD_VERSION, false);
	expect_drop(f, only_version, sizeof(only_version), SYNC_FRAME_MAX,
	    SYNC_DROP_BAD_VERSION, false);
}

static void
test_drop_unknown_key_and_bad_mac(void **state)
{
	struct fx *f = *state;
	struct sync_buf out = { 0 };
	struct sync_hello h;
	uint8_t *p;
	size_t n;

	sample_hello(&h, AF_INET);
	/* Signed with another key: its id is not in our keyring. */
	assert_int_equal(syncf_hello_seal(&out, &h, f->other), 0);
	expect_drop(f, out.data + 4, out.len - 4, SYNC_HELLO_MAX,
	    SYNC_DROP_UNKNOWN_KEY, false);
	out.len = 0;
	assert_int_equal(syncf_hello_seal(&out, &h, f->kr), 0);
	p = out.data + 4;
	n = out.len - 4;
	/* The MAC is the last 32 bytes: flip one of them... */
	p[n - 1] ^= 1;
	expect_drop(f, p, n, SYNC_HELLO_MAX, SYNC_DROP_BAD_MAC, false);
	p[n - 1] ^= 1;
	/* ...or one byte of the payload (the node name "lb1" sits in it). */
	for (size_t i = 0; i + 3 <= n; i++) {
		if (memcmp(p + i, "lb1", 3) == 0) {
			p[i] = 'L';
			break;
		}
	}
	expect_drop(f, p, n, SYNC_HELLO_MAX, SYNC_DROP_BAD_MAC, false);
	syncf_buf_free(&out);
}

static void
test_drop_unknown_type(void **state)
{
	struct fx *f = *state;
	uint8_t buf[256];
	size_t len;

	/* Authentic, but an advert has no business on the sync channel. */
	seal_raw(f, WIRE_MSG_ADVERT, (const uint8_t *)"\x08\x07", 2, buf,
	    sizeof(buf), &len);
	expect_drop(f, buf, len, SYNC_FRAME_MAX, SYNC_DROP_UNKNOWN_TYPE, true);
	seal_raw(f, WIRE_MSG_SWITCHOVER, (const uint8_t *)"", 0, buf,
	    sizeof(buf), &len);
	expect_drop(f, buf, len, SYNC_FRAME_MAX, SYNC_DROP_UNKNOWN_TYPE, true);
}

/* Authentic payloads that are not what version 1 sends: garbage. */
static void
test_drop_bad_payloads(void **state)
{
	struct fx *f = *state;
	struct pb p = { .n = 0 }, ev = { .n = 0 }, sub = { .n = 0 };
	uint8_t buf[1024], q[SYNC_QUEUE_MAX / 1024];
	size_t len;

	/* Not protobuf at all. */
	seal_raw(f, WIRE_MSG_SYNC_FRAME, (const uint8_t *)"\xff\xff\xff", 3,
	    buf, sizeof(buf), &len);
	expect_drop(f, buf, len, SYNC_FRAME_MAX, SYNC_DROP_GARBAGE, true);
	seal_raw(f, WIRE_MSG_SYNC_HELLO, (const uint8_t *)"\xff\xff\xff", 3,
	    buf, sizeof(buf), &len);
	expect_drop(f, buf, len, SYNC_FRAME_MAX, SYNC_DROP_GARBAGE, true);

	/* A frame without ack_epoch. */
	pb_uint(&p, 1, 1);
	pb_uint(&p, 2, 0);
	pb_uint(&p, 3, 0);
	seal_raw(f, WIRE_MSG_SYNC_FRAME, p.b, p.n, buf, sizeof(buf), &len);
	expect_drop(f, buf, len, SYNC_FRAME_MAX, SYNC_DROP_GARBAGE, true);

	/* A numbered frame without events. */
	p.n = 0;
	pb_uint(&p, 1, 1);
	pb_uint(&p, 2, 1);
	pb_uint(&p, 3, 0);
	pb_uint(&p, 5, 0);
	seal_raw(f, WIRE_MSG_SYNC_FRAME, p.b, p.n, buf, sizeof(buf), &len);
	expect_drop(f, buf, len, SYNC_FRAME_MAX, SYNC_DROP_GARBAGE, true);

	/* A pure ack (seq 0) with an event. */
	pb_uint(&sub, 1, 9);
	pb_bytes(&ev, 3, sub.b, sub.n);
	p.n = 0;
	pb_uint(&p, 1, 1);
	pb_uint(&p, 2, 0);
	pb_uint(&p, 3, 0);
	pb_uint(&p, 5, 0);
	pb_bytes(&p, 4, ev.b, ev.n);
	seal_raw(f, WIRE_MSG_SYNC_FRAME, p.b, p.n, buf, sizeof(buf), &len);
	expect_drop(f, buf, len, SYNC_FRAME_MAX, SYNC_DROP_GARBAGE, true);

	/* An empty SyncEvent (an event kind this version does not know). */
	p.n = 0;
	pb_uint(&p, 1, 1);
	pb_uint(&p, 2, 1);
	pb_uint(&p, 3, 0);
	pb_uint(&p, 5, 0);
	pb_bytes(&p, 4, "", 0);
	seal_raw(f, WIRE_MSG_SYNC_FRAME, p.b, p.n, buf, sizeof(buf), &len);
	expect_drop(f, buf, len, SYNC_FRAME_MAX, SYNC_DROP_GARBAGE, true);

	/* A ConnClose without its id. */
	ev.n = 0;
	pb_bytes(&ev, 3, "", 0);
	p.n = 0;
	pb_uint(&p, 1, 1);
	pb_uint(&p, 2, 1);
	pb_uint(&p, 3, 0);
	pb_uint(&p, 5, 0);
	pb_bytes(&p, 4, ev.b, ev.n);
	seal_raw(f, WIRE_MSG_SYNC_FRAME, p.b, p.n, buf, sizeof(buf), &len);
	expect_drop(f, buf, len, SYNC_FRAME_MAX, SYNC_DROP_GARBAGE, true);

	/* A sticky key over the limit is oversized. */
	memset(q, 'k', sizeof(q));
	sub.n = 0;
	pb_bytes(&sub, 1, "web", 3);
	pb_bytes(&sub, 2, q, SYNC_STICKY_KEY_MAX + 1);
	pb_bytes(&sub, 3, "be1", 3);
	pb_uint(&sub, 4, 1);
	ev.n = 0;
	pb_bytes(&ev, 4, sub.b, sub.n);
	p.n = 0;
	pb_uint(&p, 1, 1);
	pb_uint(&p, 2, 1);
	pb_uint(&p, 3, 0);
	pb_uint(&p, 5, 0);
	pb_bytes(&p, 4, ev.b, ev.n);
	seal_raw(f, WIRE_MSG_SYNC_FRAME, p.b, p.n, buf, sizeof(buf), &len);
	expect_drop(f, buf, len, SYNC_FRAME_MAX, SYNC_DROP_OVERSIZED, true);

	/* Switchovers: authentic but not what version 1 sends. */
	{
		static const struct {
			uint64_t phase, id;
			int no_last_frame;
			size_t ngroups;
			const char *reason;
			enum sync_drop want;      /* COUNT: accepted */
		} bad[] = {
			/* the control: the same construction, valid */
			{ 3, 1, 0, SYNC_SWITCH_GROUPS_MAX, "a b", SYNC_DROP_COUNT },
			{ 4, 1, 0, 0, NULL, SYNC_DROP_GARBAGE },   /* phase */
			{ 1, 0, 0, 0, NULL, SYNC_DROP_GARBAGE },   /* id 0 */
			{ 1, 1, 1, 0, NULL, SYNC_DROP_GARBAGE },   /* no last_frame */
			{ 1, 1, 0, 0, "a\tb", SYNC_DROP_GARBAGE },
			{ 1, 1, 0, 0, "0123456789012345678901234567890123456789"
			    "012345678901234567890123", SYNC_DROP_GARBAGE }, /* 64 */
			{ 1, 1, 0, SYNC_SWITCH_GROUPS_MAX + 1, NULL,
			    SYNC_DROP_OVERSIZED },
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			sub.n = 0;
			pb_uint(&sub, 1, bad[i].phase);
			pb_uint(&sub, 2, bad[i].id);
			if (!bad[i].no_last_frame)
				pb_uint(&sub, 3, 0);
			for (size_t g = 0; g < bad[i].ngroups; g++)
				pb_uint(&sub, 4, g);
			if (bad[i].reason != NULL)
				pb_bytes(&sub, 5, bad[i].reason,
				    strlen(bad[i].reason));
			pb_uint(&sub, 6, 0);
			pb_uint(&sub, 7, 0);
			ev.n = 0;
			pb_bytes(&ev, 7, sub.b, sub.n);
			p.n = 0;
			pb_uint(&p, 1, 1);
			pb_uint(&p, 2, 1);
			pb_uint(&p, 3, 0);
			pb_uint(&p, 5, 0);
			pb_bytes(&p, 4, ev.b, ev.n);
			seal_raw(f, WIRE_MSG_SYNC_FRAME, p.b, p.n, buf,
			    sizeof(buf), &len);
			if (bad[i].want == SYNC_DROP_COUNT) {
				struct sync_msg m;
				enum sync_drop why;

				assert_int_equal(syncf_open(buf, len,
				    SYNC_FRAME_MAX, f->kr, &m, &why), 0);
				assert_int_equal(m.events[0].u.sw.phase,
				    SYNC_SWITCH_ABORT);
				syncf_msg_clear(&m);
				continue;
			}
			expect_drop(f, buf, len, SYNC_FRAME_MAX, bad[i].want,
			    true);
		}
	}

	/* A hello without its nonce. */
	p.n = 0;
	pb_bytes(&p, 1, "lb2", 3);
	pb_uint(&p, 3, 1);
	pb_uint(&p, 4, 1);
	pb_bytes(&p, 5, q, 32);
	pb_uint(&p, 6, 0);
	pb_uint(&p, 7, 1);
	pb_uint(&p, 8, 0);
	pb_uint(&p, 10, 0);
	seal_raw(f, WIRE_MSG_SYNC_HELLO, p.b, p.n, buf, sizeof(buf), &len);
	expect_drop(f, buf, len, SYNC_FRAME_MAX, SYNC_DROP_GARBAGE, true);
}

/* A queue bigger than SYNC_QUEUE_MAX in a ConnState is oversized. */
static void
test_drop_big_queue(void **state)
{
	struct fx *f = *state;
	struct sync_event ev;
	struct sync_buf evs = { 0 }, out = { 0 };
	struct sync_frame_hdr h = { .epoch = 1, .seq = 1 };
	struct sync_msg m;
	enum sync_drop why;
	uint8_t *big = calloc(1, SYNC_QUEUE_MAX);

	assert_non_null(big);
	sample_conn(&ev, 1, AF_INET, 0, 0);
	ev.u.conn.client.recv_queue = big;
	ev.u.conn.client.recv_queue_len = SYNC_QUEUE_MAX;
	assert_int_equal(syncf_event_append(&evs, &ev), 0);
	assert_int_equal(syncf_frame_seal(&out, &h, evs.data, evs.len, 1,
	    f->kr), 0);
	assert_int_equal(open_buf(f, &out, SYNC_FRAME_MAX, &m, &why), 0);
	assert_int_equal(m.events[0].u.conn.client.recv_queue_len,
	    SYNC_QUEUE_MAX);
	syncf_msg_clear(&m);
	/* One byte more: the encoder refuses to make it (the decoder's bound is
	 * the same code path as the sticky key's, tested above). */
	ev.u.conn.client.recv_queue_len = SYNC_QUEUE_MAX + 1;
	assert_int_equal(syncf_event_append(&evs, &ev), -EINVAL);
	syncf_buf_free(&evs);
	syncf_buf_free(&out);
	free(big);
}

/* ---- allocation failures ------------------------------------------------------- */

static void
test_alloc_failures(void **state)
{
	struct fx *f = *state;
	struct sync_event evs[4];
	struct sync_frame_hdr h = { .epoch = 1, .seq = 1 };
	struct sync_buf out = { 0 };
	long at;

	sample_conn(&evs[0], 1, AF_INET, 1, 1);
	sample_conn(&evs[1], 2, AF_INET6, 1, 1);
	sample_update(&evs[2], 1);
	sample_switch(&evs[3], 4);     /* protobuf-c allocates groups and reason */
	alloc_wrapped = 0;
	seal_events(f, &out, &h, evs, 4);
	if (!alloc_wrapped)
		skip();

	/* Decoding: every allocation fails in turn, each is -ENOMEM, no leak. */
	for (at = 0;; at++) {
		struct sync_msg m;
		enum sync_drop why;
		int ret;

		alloc_count = 0;
		alloc_fail_at = at;
		ret = syncf_open(out.data + 4, out.len - 4, SYNC_FRAME_MAX,
		    f->kr, &m, &why);
		alloc_fail_at = -1;
		if (ret == 0) {
			assert_int_equal(m.nevents, 4);
			syncf_msg_clear(&m);
			break;
		}
		assert_int_equal(ret, -ENOMEM);
		assert_null(m.events);
		assert_true(at < 1000);
	}
	assert_true(at > 3);

	/* Encoding: -ENOMEM and the buffers as they were. */
	for (at = 0;; at++) {
		struct sync_buf b = { 0 }, o = { 0 };
		int ret = 0;

		alloc_count = 0;
		alloc_fail_at = at;
		for (size_t i = 0; i < 4 && ret == 0; i++)
			ret = syncf_event_append(&b, &evs[i]);
		if (ret == 0)
			ret = syncf_frame_seal(&o, &h, b.data, b.len, 4, f->kr);
		alloc_fail_at = -1;
		syncf_buf_free(&b);
		if (ret == 0) {
			assert_int_equal(o.len, out.len);
			syncf_buf_free(&o);
			break;
		}
		assert_int_equal(ret, -ENOMEM);
		assert_int_equal(o.len, 0);
		syncf_buf_free(&o);
		assert_true(at < 1000);
	}
	syncf_buf_free(&out);
}

static void
test_names(void **state)
{
	assert_string_equal(sync_ev_name(SYNC_EV_UPDATE), "update");
	assert_string_equal(sync_ev_name(SYNC_EV_COUNT), "?");
	assert_string_equal(sync_ev_name(SYNC_EV_SWITCH), "switch");
	assert_string_equal(sync_switch_phase_name(SYNC_SWITCH_REQUEST), "request");
	assert_string_equal(sync_switch_phase_name(SYNC_SWITCH_FROZEN), "frozen");
	assert_string_equal(sync_switch_phase_name(SYNC_SWITCH_DONE), "done");
	assert_string_equal(sync_switch_phase_name(SYNC_SWITCH_ABORT), "abort");
	assert_string_equal(sync_switch_phase_name(SYNC_SWITCH_COUNT), "?");
	assert_string_equal(sync_drop_name(SYNC_DROP_OUT_OF_ORDER), "out_of_order");
	assert_string_equal(sync_drop_name(SYNC_DROP_COUNT), "?");
	assert_string_equal(sync_drop_desc(SYNC_DROP_REPLAY),
	    "frame not newer than the last accepted");
	assert_string_equal(sync_counter_name(0), "frames_in");
	assert_null(sync_counter_name(SYNC_COUNTER_COUNT));
	assert_string_equal(sync_state_name(SYNC_STATE_UP), "up");
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
	const struct CMUnitTest tests[] = {
		T(test_frame_roundtrip),
		T(test_pure_ack_roundtrip),
		T(test_hello_roundtrip),
		T(test_switch_roundtrip),
		T(test_hand_built_switch),
		T(test_stream_of_messages),
		T(test_hand_built_frame),
		cmocka_unit_test(test_invalid_events),
		T(test_seal_errors),
		T(test_drop_garbage),
		T(test_drop_truncated),
		T(test_drop_oversized),
		T(test_drop_bad_version),
		T(test_drop_unknown_key_and_bad_mac),
		T(test_drop_unknown_type),
		T(test_drop_bad_payloads),
		T(test_drop_big_queue),
		T(test_alloc_failures),
		cmocka_unit_test(test_names),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
