/*
 * Unit tests for wire: advert codec round trips and the receive path's
 * drop reasons. Packets are also built by hand here, with a tiny protobuf
 * writer and one-shot HMAC(), so the wire layout and the MAC construction
 * are checked against proto/tandem.proto and the documentation, not only
 * against the code under test.
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
#include <tandem/wire.h>

static const uint8_t key_a[32] = "0123456789abcdef0123456789abcdef";
static const uint8_t key_b[32] = "fedcba9876543210fedcba9876543210";

/* ---- a minimal protobuf writer (encoding spec, nothing more) ---------- */

struct pb {
	uint8_t b[4096];
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

static size_t
ip_len(const struct wire_ip *ip)
{
	return ip->family == AF_INET ? 4 : 16;
}

/* Field numbers as in proto/tandem.proto message Advert. */
enum { A_GROUP = 1, A_PRIO, A_INTERVAL, A_STATE, A_NODE, A_VIPS, A_EPOCH,
	A_SEQ, A_DIGEST, A_SYNC, A_NAME };

/*
 * Advert a, by hand, in field-number order. skip: a field number to leave
 * out (0 = none). extra_vips: copies of vips[0] appended beyond a->nvips.
 */
static void
hand_advert(struct pb *p, const struct wire_advert *a, unsigned skip,
    size_t extra_vips)
{
	p->n = 0;
	if (skip != A_GROUP)
		pb_uint(p, A_GROUP, a->group);
	if (skip != A_PRIO)
		pb_uint(p, A_PRIO, a->priority);
	if (skip != A_INTERVAL)
		pb_uint(p, A_INTERVAL, a->interval_ms);
	if (skip != A_STATE)
		pb_uint(p, A_STATE, a->state);
	if (skip != A_NODE)
		pb_bytes(p, A_NODE, a->node.addr, ip_len(&a->node));
	for (size_t i = 0; i < a->nvips + extra_vips; i++) {
		const struct wire_ip *v = &a->vips[i < a->nvips ? i : 0];
		struct pb sub = { .n = 0 };

		pb_bytes(&sub, 1, v->addr, ip_len(v));
		pb_uint(&sub, 2, v->plen);
		if (skip != A_VIPS)
			pb_bytes(p, A_VIPS, sub.b, sub.n);
	}
	if (skip != A_EPOCH)
		pb_uint(p, A_EPOCH, a->boot_epoch);
	if (skip != A_SEQ)
		pb_uint(p, A_SEQ, a->seq);
	if (skip != A_DIGEST)
		pb_bytes(p, A_DIGEST, a->config_digest, WIRE_DIGEST_LEN);
	if (skip != A_SYNC)
		pb_uint(p, A_SYNC, a->sync_epoch);
	if (skip != A_NAME && a->node_name[0] != '\0')
		pb_bytes(p, A_NAME, a->node_name, strlen(a->node_name));
}

static uint32_t
key_id_of(const uint8_t *key, size_t len)
{
	uint8_t buf[64], md[32];
	unsigned mdlen = 0;

	memcpy(buf, "tandem key id", 13);
	memcpy(buf + 13, key, len);
	assert_int_equal(EVP_Digest(buf, 13 + len, md, &mdlen, EVP_sha256(),
	    NULL), 1);
	return (uint32_t)md[0] << 24 | (uint32_t)md[1] << 16 |
	    (uint32_t)md[2] << 8 | md[3];
}

static void
mac_of(const uint8_t *key, uint32_t version, uint32_t type, uint32_t key_id,
    const uint8_t *payload, size_t len, uint8_t mac[32])
{
	uint8_t buf[4096 + 16];
	uint32_t v[3] = { version, type, key_id };
	unsigned outlen = 0;

	memcpy(buf, "TNDM", 4);
	for (int i = 0; i < 3; i++) {
		buf[4 + 4 * i] = (uint8_t)(v[i] >> 24);
		buf[5 + 4 * i] = (uint8_t)(v[i] >> 16);
		buf[6 + 4 * i] = (uint8_t)(v[i] >> 8);
		buf[7 + 4 * i] = (uint8_t)v[i];
	}
	memcpy(buf + 16, payload, len);
	assert_non_null(HMAC(EVP_sha256(), key, 32, buf, 16 + len, mac,
	    &outlen));
}

/* An Envelope by hand, MAC'd with key as documented in tandem.proto. */
static void
hand_envelope(struct pb *p, uint32_t version, uint32_t type,
    const uint8_t *key, const struct pb *payload)
{
	uint32_t kid = key_id_of(key, 32);
	uint8_t mac[32];

	mac_of(key, version, type, kid, payload->b, payload->n, mac);
	p->n = 0;
	pb_uint(p, 1, version);
	pb_uint(p, 2, type);
	pb_fixed32(p, 3, kid);
	pb_bytes(p, 4, payload->b, payload->n);
	pb_bytes(p, 5, mac, 32);
}

/* ---- fixture ----------------------------------------------------------- */

struct fx {
	struct auth_keyring *kr;       /* key_a: groups 7 and 8 */
	struct auth_keyring *other;    /* key_b: nobody's */
	struct auth_replay *rp;
	struct auth_stats st;
	struct wire_rx_group groups[2];
	struct wire_rx rx;
	struct sockaddr_in from;
	double now;
};

static int
fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	f->kr = auth_keyring_new();
	f->other = auth_keyring_new();
	f->rp = auth_replay_new(16);
	if (f->kr == NULL || f->other == NULL || f->rp == NULL)
		return -1;
	if (auth_keyring_add(f->kr, key_a, 32, 1, NULL) < 0 ||
	    auth_keyring_add(f->other, key_b, 32, 1, NULL) < 0)
		return -1;
	f->groups[0] = (struct wire_rx_group){ .group = 7, .keys = f->kr };
	f->groups[1] = (struct wire_rx_group){ .group = 8, .keys = f->kr };
	f->rx.groups = f->groups;
	f->rx.ngroups = 2;
	f->rx.replay = f->rp;
	f->rx.stats = &f->st;
	f->from.sin_family = AF_INET;
	f->from.sin_port = htons(1985);
	f->from.sin_addr.s_addr = htonl(0xc6120003);  /* 198.18.0.3 */
	f->now = 1000.0;
	*state = f;
	return 0;
}

static int
fx_teardown(void **state)
{
	struct fx *f = *state;

	auth_keyring_free(f->kr);
	auth_keyring_free(f->other);
	auth_replay_free(f->rp);
	free(f);
	return 0;
}

static void
set_ip(struct wire_ip *ip, int family, const char *s, unsigned plen)
{
	memset(ip, 0, sizeof(*ip));
	ip->family = (sa_family_t)family;
	ip->plen = (uint8_t)plen;
	assert_int_equal(inet_pton(family, s, ip->addr), 1);
}

static void
sample_v4(struct wire_advert *a)
{
	memset(a, 0, sizeof(*a));
	a->group = 7;
	a->priority = 200;
	a->interval_ms = 1000;
	a->state = WIRE_STATE_MASTER;
	set_ip(&a->node, AF_INET, "198.18.0.2", 32);
	snprintf(a->node_name, sizeof(a->node_name), "lb1");
	a->boot_epoch = 5;
	a->seq = 10;
	for (int i = 0; i < WIRE_DIGEST_LEN; i++)
		a->config_digest[i] = (uint8_t)(0xa0 + i);
	a->sync_epoch = 3;
	set_ip(&a->vips[0], AF_INET, "198.18.1.100", 24);
	set_ip(&a->vips[1], AF_INET, "198.18.1.101", 32);
	set_ip(&a->vips[2], AF_INET6, "2001:db8:1::100", 64);
	a->nvips = 3;
}

static void
assert_ip_equal(const struct wire_ip *a, const struct wire_ip *b)
{
	assert_int_equal(a->family, b->family);
	assert_int_equal(a->plen, b->plen);
	assert_memory_equal(a->addr, b->addr, a->family == AF_INET ? 4 : 16);
}

static void
assert_advert_equal(const struct wire_advert *a, const struct wire_advert *b)
{
	assert_int_equal(a->group, b->group);
	assert_int_equal(a->priority, b->priority);
	assert_int_equal(a->interval_ms, b->interval_ms);
	assert_int_equal(a->state, b->state);
	assert_ip_equal(&a->node, &b->node);
	assert_string_equal(a->node_name, b->node_name);
	assert_true(a->boot_epoch == b->boot_epoch);
	assert_true(a->seq == b->seq);
	assert_memory_equal(a->config_digest, b->config_digest, WIRE_DIGEST_LEN);
	assert_true(a->sync_epoch == b->sync_epoch);
	assert_int_equal(a->nvips, b->nvips);
	for (size_t i = 0; i < a->nvips; i++)
		assert_ip_equal(&a->vips[i], &b->vips[i]);
}

static int
recv_pkt(struct fx *f, const uint8_t *buf, size_t len, struct wire_advert *out,
    enum auth_drop *why)
{
	return wire_advert_recv(&f->rx, buf, len, (struct sockaddr *)&f->from,
	    f->now, out, why);
}

/* buf must be dropped for want, counted once, nothing else counted. */
static void
expect_drop(struct fx *f, const uint8_t *buf, size_t len, enum auth_drop want)
{
	struct auth_stats before = f->st;
	struct wire_advert out;
	enum auth_drop why = AUTH_DROP_COUNT;

	assert_int_equal(recv_pkt(f, buf, len, &out, &why), -EBADMSG);
	if (why != want)
		fail_msg("dropped as %s, expected %s", auth_drop_name(why),
		    auth_drop_name(want));
	for (int r = 0; r < AUTH_DROP_COUNT; r++)
		assert_int_equal(f->st.drops[r],
		    before.drops[r] + (r == (int)want ? 1 : 0));
	assert_int_equal(f->st.accepted, before.accepted);
}

static void
expect_accept(struct fx *f, const uint8_t *buf, size_t len,
    struct wire_advert *out)
{
	struct auth_stats before = f->st;
	enum auth_drop why = AUTH_DROP_COUNT;

	assert_int_equal(recv_pkt(f, buf, len, out, &why), 0);
	assert_int_equal(f->st.accepted, before.accepted + 1);
	for (int r = 0; r < AUTH_DROP_COUNT; r++)
		assert_int_equal(f->st.drops[r], before.drops[r]);
}

/* Only one reason counted, exactly once, in the whole fixture's life. */
static void
assert_only(const struct fx *f, enum auth_drop want, uint64_t n)
{
	for (int r = 0; r < AUTH_DROP_COUNT; r++)
		assert_int_equal(f->st.drops[r], r == (int)want ? n : 0);
}

static void
encode(const struct fx *f, const struct wire_advert *a,
    const struct auth_keyring *kr, uint8_t *buf, size_t *len)
{
	assert_int_equal(wire_advert_encode(a, kr ? kr : f->kr, buf,
	    WIRE_ADVERT_MAX, len), 0);
	assert_true(*len <= WIRE_ADVERT_MAX);
}

/* ---- round trips ------------------------------------------------------- */

static void
test_roundtrip_v4(void **state)
{
	struct fx *f = *state;
	struct wire_advert a, out;
	uint8_t buf[WIRE_ADVERT_MAX];
	size_t len;

	sample_v4(&a);
	encode(f, &a, NULL, buf, &len);
	expect_accept(f, buf, len, &out);
	assert_advert_equal(&a, &out);
	assert_int_equal(out.key_id, key_id_of(key_a, 32));
}

static void
test_roundtrip_v6_extremes(void **state)
{
	struct fx *f = *state;
	struct wire_advert a, out;
	uint8_t buf[WIRE_ADVERT_MAX];
	size_t len;

	memset(&a, 0, sizeof(a));
	a.group = UINT32_MAX;
	a.priority = 255;
	a.interval_ms = WIRE_INTERVAL_MAX_MS;
	a.state = WIRE_STATE_FAULT;
	set_ip(&a.node, AF_INET6, "2001:db8::2", 128);
	memset(a.node_name, 'n', WIRE_NAME_MAX - 1);
	a.boot_epoch = UINT64_MAX;
	a.seq = UINT64_MAX;
	memset(a.config_digest, 0xff, WIRE_DIGEST_LEN);
	a.sync_epoch = UINT64_MAX;
	for (int i = 0; i < WIRE_VIPS_MAX; i++) {
		char s[64];

		snprintf(s, sizeof(s), "2001:db8:ffff:%x::%x", i, 0xffff - i);
		set_ip(&a.vips[i], AF_INET6, s, (unsigned)(1 + i * 4));
	}
	a.vips[WIRE_VIPS_MAX - 1].plen = 128;
	a.nvips = WIRE_VIPS_MAX;
	f->groups[1].group = UINT32_MAX;

	encode(f, &a, NULL, buf, &len);
	expect_accept(f, buf, len, &out);
	assert_advert_equal(&a, &out);
}

static void
test_roundtrip_minimal(void **state)
{
	struct fx *f = *state;
	struct wire_advert a, out;
	uint8_t buf[WIRE_ADVERT_MAX];
	size_t len;

	sample_v4(&a);
	a.nvips = 0;
	a.node_name[0] = '\0';
	a.priority = 0;     /* "I am leaving" */
	a.state = WIRE_STATE_INIT;
	a.boot_epoch = 0;
	a.seq = 0;
	a.sync_epoch = 0;
	a.interval_ms = 1;
	memset(a.config_digest, 0, sizeof(a.config_digest));
	encode(f, &a, NULL, buf, &len);
	expect_accept(f, buf, len, &out);
	assert_advert_equal(&a, &out);
}

/* The encoder writes exactly the layout tandem.proto and the docs describe. */
static void
test_layout_matches_hand_encoding(void **state)
{
	struct fx *f = *state;
	struct wire_advert a, out;
	struct pb payload, env;
	uint8_t buf[WIRE_ADVERT_MAX];
	size_t len;

	sample_v4(&a);
	hand_advert(&payload, &a, 0, 0);
	hand_envelope(&env, 1, 1, key_a, &payload);
	encode(f, &a, NULL, buf, &len);
	assert_int_equal(len, env.n);
	assert_memory_equal(buf, env.b, len);

	/* And a hand-made packet is accepted as such. */
	a.seq++;
	hand_advert(&payload, &a, 0, 0);
	hand_envelope(&env, 1, 1, key_a, &payload);
	expect_accept(f, env.b, env.n, &out);
	assert_advert_equal(&a, &out);
}

static void
test_encode_refuses(void **state)
{
	struct fx *f = *state;
	struct auth_keyring *empty = auth_keyring_new();
	struct wire_advert a;
	uint8_t buf[WIRE_ADVERT_MAX];
	size_t len;

#define REFUSE(stmt) do {                                                    \
		sample_v4(&a);                                               \
		stmt;                                                        \
		assert_int_equal(wire_advert_encode(&a, f->kr, buf,          \
		    sizeof(buf), &len), -EINVAL);                            \
	} while (0)
	REFUSE(a.interval_ms = 0);
	REFUSE(a.interval_ms = WIRE_INTERVAL_MAX_MS + 1);
	REFUSE(a.state = WIRE_STATE_COUNT);
	REFUSE(a.node.family = AF_UNIX);
	REFUSE(a.node.plen = 24);
	REFUSE(a.nvips = WIRE_VIPS_MAX + 1);
	REFUSE(a.vips[0].plen = 0);
	REFUSE(a.vips[0].plen = 33);
	REFUSE(a.vips[2].plen = 129);
	REFUSE(a.vips[1].family = 0);
	REFUSE(snprintf(a.node_name, sizeof(a.node_name), "lb 1"));
	REFUSE(snprintf(a.node_name, sizeof(a.node_name), "lb=1"));
	REFUSE(snprintf(a.node_name, sizeof(a.node_name), "lb\n1"));
	REFUSE(memset(a.node_name, 'x', sizeof(a.node_name)));
#undef REFUSE

	sample_v4(&a);
	assert_int_equal(wire_advert_encode(&a, empty, buf, sizeof(buf), &len),
	    -ENOKEY);
	assert_int_equal(wire_advert_encode(&a, f->kr, buf, 20, &len),
	    -EMSGSIZE);
	assert_int_equal(wire_seal(WIRE_MSG_NONE, f->kr, buf, 1, buf,
	    sizeof(buf), &len), -EINVAL);
	assert_int_equal(wire_seal(WIRE_MSG_COUNT, f->kr, buf, 1, buf,
	    sizeof(buf), &len), -EINVAL);
	auth_keyring_free(empty);
}

/* ---- each drop reason -------------------------------------------------- */

static void
test_drop_garbage(void **state)
{
	struct fx *f = *state;
	static const char text[] = "VRRP? no, just some text";
	static const uint8_t zeros[64];
	struct wire_advert a;
	struct pb payload, env;
	uint64_t n = 0;

	expect_drop(f, (const uint8_t *)text, sizeof(text), AUTH_DROP_GARBAGE);
	n++;
	expect_drop(f, zeros, sizeof(zeros), AUTH_DROP_GARBAGE);
	n++;

	/* Envelope-like, but not starting with the version. */
	sample_v4(&a);
	hand_advert(&payload, &a, 0, 0);
	env.n = 0;
	pb_uint(&env, 2, 1);
	pb_uint(&env, 1, 1);
	expect_drop(f, env.b, env.n, AUTH_DROP_GARBAGE);
	n++;

	/* Version, then a gap: mac without type, key or payload. */
	{
		uint8_t mac[32] = { 0 };

		env.n = 0;
		pb_uint(&env, 1, 1);
		pb_bytes(&env, 5, mac, 32);
		expect_drop(f, env.b, env.n, AUTH_DROP_GARBAGE);
		n++;
	}
	/* A known field with the wrong wire type (payload as a varint). */
	env.n = 0;
	pb_uint(&env, 1, 1);
	pb_uint(&env, 2, 1);
	pb_fixed32(&env, 3, key_id_of(key_a, 32));
	pb_uint(&env, 4, 12);
	expect_drop(f, env.b, env.n, AUTH_DROP_GARBAGE);
	n++;
	/* Wire type 3 (group), never used. */
	env.n = 0;
	pb_uint(&env, 1, 1);
	pb_varint(&env, 6u << 3 | 3);
	expect_drop(f, env.b, env.n, AUTH_DROP_GARBAGE);
	n++;
	/* A length no advert can have. */
	env.n = 0;
	pb_uint(&env, 1, 1);
	pb_varint(&env, 4u << 3 | 2);
	pb_varint(&env, 1u << 30);
	expect_drop(f, env.b, env.n, AUTH_DROP_GARBAGE);
	n++;
	/* A MAC of the wrong size. */
	{
		uint8_t mac[31] = { 0 };

		env.n = 0;
		pb_uint(&env, 1, 1);
		pb_uint(&env, 2, 1);
		pb_fixed32(&env, 3, key_id_of(key_a, 32));
		pb_bytes(&env, 4, payload.b, payload.n);
		pb_bytes(&env, 5, mac, sizeof(mac));
		expect_drop(f, env.b, env.n, AUTH_DROP_GARBAGE);
		n++;
	}
	/* Properly sealed, but the advert inside is broken. */
	for (unsigned skip = A_GROUP; skip <= A_SYNC; skip++) {
		if (skip == A_VIPS)
			continue;   /* no VIPs is a valid advert */
		sample_v4(&a);
		hand_advert(&payload, &a, skip, 0);
		hand_envelope(&env, 1, 1, key_a, &payload);
		expect_drop(f, env.b, env.n, AUTH_DROP_GARBAGE);
		n++;
	}
#define BROKEN(stmt) do {                                                    \
		sample_v4(&a);                                               \
		stmt;                                                        \
		hand_advert(&payload, &a, 0, 0);                             \
		hand_envelope(&env, 1, 1, key_a, &payload);                  \
		expect_drop(f, env.b, env.n, AUTH_DROP_GARBAGE);             \
		n++;                                                         \
	} while (0)
	BROKEN(a.interval_ms = 0);
	BROKEN(a.state = (enum wire_state)9);
	BROKEN(a.vips[0].plen = 33);
	BROKEN(a.vips[1].plen = 0);
	BROKEN(snprintf(a.node_name, sizeof(a.node_name), "lb 1"));
#undef BROKEN
	/* Values the struct cannot even hold: priority 256, 5-byte node, short digest. */
	sample_v4(&a);
	hand_advert(&payload, &a, A_PRIO, 0);
	pb_uint(&payload, A_PRIO, 256);
	hand_envelope(&env, 1, 1, key_a, &payload);
	expect_drop(f, env.b, env.n, AUTH_DROP_GARBAGE);
	n++;
	hand_advert(&payload, &a, A_NODE, 0);
	pb_bytes(&payload, A_NODE, "\xc6\x12\x00\x02\x00", 5);
	hand_envelope(&env, 1, 1, key_a, &payload);
	expect_drop(f, env.b, env.n, AUTH_DROP_GARBAGE);
	n++;
	hand_advert(&payload, &a, A_DIGEST, 0);
	pb_bytes(&payload, A_DIGEST, a.config_digest, WIRE_DIGEST_LEN - 1);
	hand_envelope(&env, 1, 1, key_a, &payload);
	expect_drop(f, env.b, env.n, AUTH_DROP_GARBAGE);
	n++;
	/* A payload that is not protobuf at all. */
	payload.n = 0;
	pb_raw(&payload, "\xff\xff\xff", 3);
	hand_envelope(&env, 1, 1, key_a, &payload);
	expect_drop(f, env.b, env.n, AUTH_DROP_GARBAGE);
	n++;

	assert_only(f, AUTH_DROP_GARBAGE, n);
	assert_int_equal(auth_replay_count(f->rp), 0);
}

static void
test_drop_truncated(void **state)
{
	struct fx *f = *state;
	struct wire_advert a, out;
	uint8_t buf[WIRE_ADVERT_MAX];
	size_t len;

	sample_v4(&a);
	encode(f, &a, NULL, buf, &len);
	/* Every proper prefix, cut inside a field or between two. */
	for (size_t cut = 0; cut < len; cut++)
		expect_drop(f, buf, cut, AUTH_DROP_TRUNCATED);
	assert_only(f, AUTH_DROP_TRUNCATED, len);
	/* Nothing was remembered: the whole packet is still fresh. */
	expect_accept(f, buf, len, &out);
}

static void
test_drop_oversized(void **state)
{
	struct fx *f = *state;
	static uint8_t big[WIRE_ADVERT_MAX + 1];
	struct wire_advert a;
	struct pb payload, env;
	uint8_t buf[WIRE_ADVERT_MAX];
	size_t len;

	/* A valid advert padded past the limit. */
	sample_v4(&a);
	encode(f, &a, NULL, buf, &len);
	memcpy(big, buf, len);
	expect_drop(f, big, sizeof(big), AUTH_DROP_OVERSIZED);
	/* Within the byte limit but with more VIPs than a group may have. */
	a.nvips = 1;
	hand_advert(&payload, &a, 0, WIRE_VIPS_MAX);
	hand_envelope(&env, 1, 1, key_a, &payload);
	assert_true(env.n <= WIRE_ADVERT_MAX);
	expect_drop(f, env.b, env.n, AUTH_DROP_OVERSIZED);
	assert_only(f, AUTH_DROP_OVERSIZED, 2);
}

static void
test_drop_bad_version(void **state)
{
	struct fx *f = *state;
	struct wire_advert a;
	struct pb payload, env;
	uint8_t buf[WIRE_ADVERT_MAX];
	size_t len;

	sample_v4(&a);
	hand_advert(&payload, &a, 0, 0);
	hand_envelope(&env, 2, 1, key_a, &payload);   /* correctly MAC'd v2 */
	expect_drop(f, env.b, env.n, AUTH_DROP_BAD_VERSION);
	hand_envelope(&env, 0, 1, key_a, &payload);
	expect_drop(f, env.b, env.n, AUTH_DROP_BAD_VERSION);
	/* A v1 packet with a second version field appended: the last one wins. */
	encode(f, &a, NULL, buf, &len);
	buf[len++] = 0x08;
	buf[len++] = 0x02;
	expect_drop(f, buf, len, AUTH_DROP_BAD_VERSION);
	assert_only(f, AUTH_DROP_BAD_VERSION, 3);
}

static void
test_drop_unknown_type(void **state)
{
	struct fx *f = *state;
	struct wire_advert a;
	struct pb payload, env;
	uint8_t buf[WIRE_ADVERT_MAX];
	size_t len;

	/* A valid advert payload sealed as a sync frame. */
	sample_v4(&a);
	hand_advert(&payload, &a, 0, 0);
	assert_int_equal(wire_seal(WIRE_MSG_SYNC_FRAME, f->kr, payload.b,
	    payload.n, buf, sizeof(buf), &len), 0);
	expect_drop(f, buf, len, AUTH_DROP_UNKNOWN_TYPE);
	/* A type from the future. */
	hand_envelope(&env, 1, 99, key_a, &payload);
	expect_drop(f, env.b, env.n, AUTH_DROP_UNKNOWN_TYPE);
	assert_only(f, AUTH_DROP_UNKNOWN_TYPE, 2);
}

static void
test_drop_wrong_group(void **state)
{
	struct fx *f = *state;
	struct wire_advert a;
	uint8_t buf[WIRE_ADVERT_MAX];
	size_t len;

	sample_v4(&a);
	a.group = 9;
	encode(f, &a, NULL, buf, &len);
	expect_drop(f, buf, len, AUTH_DROP_WRONG_GROUP);
	/* The group is judged before the key (each group has its own keys). */
	a.group = 10;
	encode(f, &a, f->other, buf, &len);
	expect_drop(f, buf, len, AUTH_DROP_WRONG_GROUP);
	assert_only(f, AUTH_DROP_WRONG_GROUP, 2);
}

static void
test_drop_wrong_key(void **state)
{
	struct fx *f = *state;
	struct auth_keyring *kr8 = auth_keyring_new();
	struct wire_advert a, out;
	uint8_t buf[WIRE_ADVERT_MAX];
	size_t len;

	/* Signed with a key the group does not have. */
	sample_v4(&a);
	encode(f, &a, f->other, buf, &len);
	expect_drop(f, buf, len, AUTH_DROP_UNKNOWN_KEY);
	/* A key valid for group 8 only is no key for group 7. */
	assert_int_equal(auth_keyring_add(kr8, key_b, 32, 1, NULL), 0);
	f->groups[1].keys = kr8;
	expect_drop(f, buf, len, AUTH_DROP_UNKNOWN_KEY);
	a.group = 8;
	encode(f, &a, f->other, buf, &len);
	expect_accept(f, buf, len, &out);
	assert_int_equal(out.key_id, key_id_of(key_b, 32));
	assert_only(f, AUTH_DROP_UNKNOWN_KEY, 2);
	auth_keyring_free(kr8);
}

static void
test_drop_bad_mac(void **state)
{
	struct fx *f = *state;
	struct wire_advert a, out;
	struct pb payload, forged, env;
	uint8_t buf[WIRE_ADVERT_MAX];
	size_t len;
	uint8_t mac[32];

	/* Last byte of a packet is the last byte of its MAC. */
	sample_v4(&a);
	encode(f, &a, NULL, buf, &len);
	buf[len - 1] ^= 0x01;
	expect_drop(f, buf, len, AUTH_DROP_BAD_MAC);
	buf[len - 1] ^= 0x01;

	/* A valid advert with a higher priority under the original MAC. */
	hand_advert(&payload, &a, 0, 0);
	a.priority = 254;
	a.seq = 1000;
	hand_advert(&forged, &a, 0, 0);
	mac_of(key_a, 1, 1, key_id_of(key_a, 32), payload.b, payload.n, mac);
	env.n = 0;
	pb_uint(&env, 1, 1);
	pb_uint(&env, 2, 1);
	pb_fixed32(&env, 3, key_id_of(key_a, 32));
	pb_bytes(&env, 4, forged.b, forged.n);
	pb_bytes(&env, 5, mac, 32);
	expect_drop(f, env.b, env.n, AUTH_DROP_BAD_MAC);
	assert_only(f, AUTH_DROP_BAD_MAC, 2);

	/* The forged seq 1000 moved nothing: the original is still fresh. */
	expect_accept(f, buf, len, &out);
	assert_int_equal(out.priority, 200);
}

static void
test_drop_replay(void **state)
{
	struct fx *f = *state;
	struct wire_advert a, out;
	uint8_t buf[WIRE_ADVERT_MAX], older[WIRE_ADVERT_MAX];
	size_t len, olen;

	sample_v4(&a);
	a.seq = 9;
	encode(f, &a, NULL, older, &olen);
	a.seq = 10;
	encode(f, &a, NULL, buf, &len);
	expect_accept(f, buf, len, &out);
	expect_drop(f, buf, len, AUTH_DROP_REPLAY);     /* the identical packet */
	expect_drop(f, older, olen, AUTH_DROP_REPLAY);  /* an older one */
	assert_only(f, AUTH_DROP_REPLAY, 2);
	/* Same (epoch, seq) in another group is another history. */
	a.group = 8;
	encode(f, &a, NULL, buf, &len);
	expect_accept(f, buf, len, &out);
}

static void
test_drop_old_epoch(void **state)
{
	struct fx *f = *state;
	struct wire_advert a, out;
	uint8_t buf[WIRE_ADVERT_MAX];
	size_t len;

	sample_v4(&a);
	a.boot_epoch = 5;
	a.seq = 10;
	encode(f, &a, NULL, buf, &len);
	expect_accept(f, buf, len, &out);
	a.boot_epoch = 4;
	a.seq = 1000000;
	encode(f, &a, NULL, buf, &len);
	expect_drop(f, buf, len, AUTH_DROP_OLD_EPOCH);
	assert_only(f, AUTH_DROP_OLD_EPOCH, 1);
}

static void
test_peer_restart_accepted(void **state)
{
	struct fx *f = *state;
	struct wire_advert a, out;
	uint8_t buf[WIRE_ADVERT_MAX];
	size_t len;

	sample_v4(&a);
	a.boot_epoch = 5;
	a.seq = 100;
	encode(f, &a, NULL, buf, &len);
	expect_accept(f, buf, len, &out);
	/* Restarted: new, higher epoch, sequence from 1. */
	a.boot_epoch = 6;
	a.seq = 1;
	encode(f, &a, NULL, buf, &len);
	expect_accept(f, buf, len, &out);
	assert_true(out.boot_epoch == 6 && out.seq == 1);
	a.seq = 2;
	encode(f, &a, NULL, buf, &len);
	expect_accept(f, buf, len, &out);
	assert_only(f, AUTH_DROP_GARBAGE, 0);
}

static void
test_ipv6_peer_replay(void **state)
{
	struct fx *f = *state;
	struct wire_advert a, out;
	struct sockaddr_in6 from6 = { .sin6_family = AF_INET6 };
	uint8_t buf[WIRE_ADVERT_MAX];
	size_t len;
	enum auth_drop why;

	sample_v4(&a);
	set_ip(&a.node, AF_INET6, "2001:db8::3", 128);
	assert_int_equal(inet_pton(AF_INET6, "2001:db8::3", &from6.sin6_addr), 1);
	encode(f, &a, NULL, buf, &len);
	assert_int_equal(wire_advert_recv(&f->rx, buf, len,
	    (struct sockaddr *)&from6, f->now, &out, &why), 0);
	assert_advert_equal(&a, &out);
	assert_int_equal(wire_advert_recv(&f->rx, buf, len,
	    (struct sockaddr *)&from6, f->now, &out, &why), -EBADMSG);
	assert_int_equal(why, AUTH_DROP_REPLAY);
	/* NULL from and NULL why are allowed. */
	assert_int_equal(wire_advert_recv(&f->rx, buf, len, NULL, f->now, &out,
	    NULL), -EBADMSG);
	assert_only(f, AUTH_DROP_REPLAY, 2);
}

/* Drops keep being counted while their log lines are rate-limited. */
static void
test_counting_under_ratelimit(void **state)
{
	struct fx *f = *state;
	static const uint8_t junk[] = { 0xde, 0xad, 0xbe, 0xef };

	for (int i = 0; i < 100; i++) {
		f->now += 0.01;
		expect_drop(f, junk, sizeof(junk), AUTH_DROP_GARBAGE);
	}
	assert_only(f, AUTH_DROP_GARBAGE, 100);
	/* 1 s of drops at 100/s fits in one log interval: one line printed. */
	assert_int_equal(f->st.rl[AUTH_DROP_GARBAGE].suppressed, 99);
}

/* ---- helpers ------------------------------------------------------------ */

static void
test_ip_helpers(void **state)
{
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
	struct sockaddr_storage ss;
	struct sockaddr_un_like { sa_family_t f; char p[8]; } un = { AF_UNIX, "" };
	struct wire_ip ip;
	char s[WIRE_ADDRSTRLEN];

	assert_int_equal(inet_pton(AF_INET6, "2001:db8::42", &s6.sin6_addr), 1);
	assert_int_equal(wire_ip_from_sockaddr(&ip, (struct sockaddr *)&s6, 0), 0);
	assert_int_equal(ip.family, AF_INET6);
	assert_int_equal(ip.plen, 128);
	assert_string_equal(wire_ip_ntop(&ip, 0, s, sizeof(s)), "2001:db8::42");
	assert_int_equal(wire_ip_from_sockaddr(&ip, (struct sockaddr *)&s6, 64), 0);
	assert_string_equal(wire_ip_ntop(&ip, 1, s, sizeof(s)), "2001:db8::42/64");
	assert_int_equal(wire_ip_from_sockaddr(&ip, (struct sockaddr *)&s6, 129),
	    -EINVAL);
	assert_int_equal(wire_ip_from_sockaddr(&ip, (struct sockaddr *)&un, 0),
	    -EAFNOSUPPORT);

	set_ip(&ip, AF_INET, "198.18.1.100", 24);
	assert_string_equal(wire_ip_ntop(&ip, 1, s, sizeof(s)), "198.18.1.100/24");
	assert_int_equal(wire_ip_to_sockaddr(&ip, 80, &ss),
	    (int)sizeof(struct sockaddr_in));
	assert_int_equal(((struct sockaddr_in *)&ss)->sin_port, htons(80));
	assert_int_equal(wire_ip_from_sockaddr(&ip, (struct sockaddr *)&ss, 0), 0);
	assert_string_equal(wire_ip_ntop(&ip, 1, s, sizeof(s)), "198.18.1.100/32");
	ip.family = AF_UNIX;
	assert_int_equal(wire_ip_to_sockaddr(&ip, 80, &ss), -EAFNOSUPPORT);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
	const struct CMUnitTest tests[] = {
		T(test_roundtrip_v4),
		T(test_roundtrip_v6_extremes),
		T(test_roundtrip_minimal),
		T(test_layout_matches_hand_encoding),
		T(test_encode_refuses),
		T(test_drop_garbage),
		T(test_drop_truncated),
		T(test_drop_oversized),
		T(test_drop_bad_version),
		T(test_drop_unknown_type),
		T(test_drop_wrong_group),
		T(test_drop_wrong_key),
		T(test_drop_bad_mac),
		T(test_drop_replay),
		T(test_drop_old_epoch),
		T(test_peer_restart_accepted),
		T(test_ipv6_peer_replay),
		T(test_counting_under_ratelimit),
		cmocka_unit_test(test_ip_helpers),
	};
#undef T

	/* Drops are logged; keep the test output readable. */
	log_init(LOG_LVL_ERR, 0, "test_wire");
	return cmocka_run_group_tests_name("wire", tests, NULL, NULL);
}
