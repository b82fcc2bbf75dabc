/* Unit tests for auth: key files, MAC, anti-replay, drop counters. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <tandem/auth.h>

static const uint8_t key_a[] = "0123456789abcdef0123456789abcdef";  /* 32 + NUL */
static const uint8_t key_b[] = "fedcba9876543210fedcba9876543210";

/* The documented key id, computed here without auth.c. */
static uint32_t
expected_id(const uint8_t *key, size_t len)
{
	static const char label[] = "tandem key id";
	uint8_t buf[256], md[32];
	unsigned mdlen = 0;

	assert_true(sizeof(label) - 1 + len <= sizeof(buf));
	memcpy(buf, label, sizeof(label) - 1);
	memcpy(buf + sizeof(label) - 1, key, len);
	assert_int_equal(EVP_Digest(buf, sizeof(label) - 1 + len, md, &mdlen,
	    EVP_sha256(), NULL), 1);
	return (uint32_t)md[0] << 24 | (uint32_t)md[1] << 16 |
	    (uint32_t)md[2] << 8 | md[3];
}

/* The documented MAC, computed here with one-shot HMAC() over one buffer. */
static void
expected_mac(const uint8_t *key, size_t klen, uint32_t version, uint32_t type,
    uint32_t key_id, const uint8_t *payload, size_t len, uint8_t out[32])
{
	uint8_t buf[512];
	uint32_t v[3] = { version, type, key_id };
	unsigned outlen = 0;

	assert_true(16 + len <= sizeof(buf));
	memcpy(buf, "TNDM", 4);
	for (int i = 0; i < 3; i++) {
		buf[4 + 4 * i] = (uint8_t)(v[i] >> 24);
		buf[5 + 4 * i] = (uint8_t)(v[i] >> 16);
		buf[6 + 4 * i] = (uint8_t)(v[i] >> 8);
		buf[7 + 4 * i] = (uint8_t)v[i];
	}
	if (len > 0)
		memcpy(buf + 16, payload, len);
	assert_non_null(HMAC(EVP_sha256(), key, (int)klen, buf, 16 + len, out,
	    &outlen));
	assert_int_equal(outlen, 32);
}

/* ---- key files ------------------------------------------------------- */

struct keydir {
	char dir[64];
	char path[128];
};

static int
keydir_setup(void **state)
{
	struct keydir *kd = calloc(1, sizeof(*kd));

	if (kd == NULL)
		return -1;
	snprintf(kd->dir, sizeof(kd->dir), "/tmp/tandem-test-auth.XXXXXX");
	if (mkdtemp(kd->dir) == NULL) {
		free(kd);
		return -1;
	}
	snprintf(kd->path, sizeof(kd->path), "%s/key", kd->dir);
	*state = kd;
	return 0;
}

static int
keydir_teardown(void **state)
{
	struct keydir *kd = *state;
	char p[160];

	unlink(kd->path);
	snprintf(p, sizeof(p), "%s/sub", kd->dir);
	rmdir(p);
	rmdir(kd->dir);
	free(kd);
	return 0;
}

static void
write_key(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

/* Load path into a fresh keyring; returns the result, err holds the message. */
static int
load(const char *path, uint32_t *id, char *err, size_t errlen)
{
	struct auth_keyring *kr = auth_keyring_new();
	int ret;

	assert_non_null(kr);
	err[0] = '\0';
	ret = auth_keyring_load(kr, path, 1, id, err, errlen);
	auth_keyring_free(kr);
	return ret;
}

static void
test_key_missing(void **state)
{
	struct keydir *kd = *state;
	char err[256];

	assert_int_equal(load(kd->path, NULL, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, kd->path));
	assert_non_null(strstr(err, "cannot open"));
}

static void
test_key_empty(void **state)
{
	struct keydir *kd = *state;
	char err[256];

	write_key(kd->path, "", 0, 0600);
	assert_int_equal(load(kd->path, NULL, err, sizeof(err)), -ENODATA);
	assert_non_null(strstr(err, kd->path));
	assert_non_null(strstr(err, "empty"));

	/* A lone newline is no key either. */
	write_key(kd->path, "\n", 1, 0600);
	assert_int_equal(load(kd->path, NULL, err, sizeof(err)), -ENODATA);
	assert_non_null(strstr(err, "empty"));
}

static void
test_key_mode_refused(void **state)
{
	struct keydir *kd = *state;
	static const mode_t bad[] = { 0644, 0640, 0604, 0660, 0606, 0610, 0601 };
	char err[256], want[16];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_key(kd->path, key_a, 32, bad[i]);
		assert_int_equal(load(kd->path, NULL, err, sizeof(err)), -EPERM);
		snprintf(want, sizeof(want), "mode %04o", (unsigned)bad[i]);
		assert_non_null(strstr(err, want));
		assert_non_null(strstr(err, kd->path));
		assert_non_null(strstr(err, "chmod 600"));
	}
}

static void
test_key_0600_accepted(void **state)
{
	struct keydir *kd = *state;
	char err[256];
	uint32_t id = 0;

	write_key(kd->path, key_a, 32, 0600);
	assert_int_equal(load(kd->path, &id, err, sizeof(err)), 0);
	assert_int_equal(id, expected_id(key_a, 32));

	/* Stricter than 0600 is fine too. */
	write_key(kd->path, key_a, 32, 0400);
	assert_int_equal(load(kd->path, &id, err, sizeof(err)), 0);
	assert_int_equal(id, expected_id(key_a, 32));
}

static void
test_key_trailing_newline(void **state)
{
	struct keydir *kd = *state;
	char err[256];
	uint32_t id = 0;

	/* `echo KEY > file` and `printf 'KEY\r\n'` give the same key as KEY. */
	write_key(kd->path, "0123456789abcdef0123456789abcdef\n", 33, 0600);
	assert_int_equal(load(kd->path, &id, err, sizeof(err)), 0);
	assert_int_equal(id, expected_id(key_a, 32));
	write_key(kd->path, "0123456789abcdef0123456789abcdef\r\n", 34, 0600);
	assert_int_equal(load(kd->path, &id, err, sizeof(err)), 0);
	assert_int_equal(id, expected_id(key_a, 32));
	/* Only one newline goes. */
	write_key(kd->path, "0123456789abcdef0123456789abcdef\n\n", 34, 0600);
	assert_int_equal(load(kd->path, &id, err, sizeof(err)), 0);
	assert_int_equal(id, expected_id(
	    (const uint8_t *)"0123456789abcdef0123456789abcdef\n", 33));
}

static void
test_key_not_regular(void **state)
{
	struct keydir *kd = *state;
	char err[256], sub[160];

	snprintf(sub, sizeof(sub), "%s/sub", kd->dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(load(sub, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a regular file"));
	rmdir(sub);

	/* A FIFO must neither hang the load nor be accepted. */
	assert_int_equal(mkfifo(kd->path, 0600), 0);
	assert_int_equal(load(kd->path, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a regular file"));
}

static void
test_key_too_long(void **state)
{
	struct keydir *kd = *state;
	static uint8_t big[AUTH_KEY_MAX + 1];
	char err[256];

	memset(big, 'k', sizeof(big));
	write_key(kd->path, big, sizeof(big), 0600);
	assert_int_equal(load(kd->path, NULL, err, sizeof(err)), -EFBIG);
	assert_non_null(strstr(err, "longer than"));
	write_key(kd->path, big, AUTH_KEY_MAX, 0600);
	assert_int_equal(load(kd->path, NULL, err, sizeof(err)), 0);
}

static void
test_key_owner(void **state)
{
	struct keydir *kd = *state;
	char err[256];

	if (geteuid() != 0)
		skip();  /* only root can give a file away */
	write_key(kd->path, key_a, 32, 0600);
	assert_int_equal(chown(kd->path, 65534, 65534), 0);
	assert_int_equal(load(kd->path, NULL, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "owned by uid 65534"));
}

static void
test_key_err_null(void **state)
{
	struct keydir *kd = *state;
	struct auth_keyring *kr = auth_keyring_new();

	/* No message buffer: still refused, nothing written anywhere. */
	assert_int_equal(auth_keyring_load(kr, kd->path, 1, NULL, NULL, 0),
	    -ENOENT);
	auth_keyring_free(kr);
	auth_keyring_free(NULL);
}

/* ---- keyring and MAC ------------------------------------------------- */

static void
test_keyring_basics(void **state)
{
	struct auth_keyring *kr = auth_keyring_new();
	uint32_t a, b, again, send;
	uint8_t k[4][8];

	assert_non_null(kr);
	assert_int_equal(auth_keyring_send_id(kr, &send), -ENOKEY);
	assert_int_equal(auth_keyring_add(kr, key_a, 0, 1, &a), -EINVAL);
	assert_int_equal(auth_keyring_add(kr, key_a, AUTH_KEY_MAX + 1, 1, &a),
	    -EINVAL);
	assert_int_equal(auth_keyring_add(kr, key_a, 32, 0, &a), 0);
	assert_int_equal(auth_keyring_send_id(kr, &send), -ENOKEY);
	assert_int_equal(auth_keyring_add(kr, key_b, 32, 1, &b), 0);
	assert_int_not_equal(a, b);
	assert_int_equal(auth_keyring_send_id(kr, &send), 0);
	assert_int_equal(send, b);
	assert_true(auth_keyring_has(kr, a));
	assert_true(auth_keyring_has(kr, b));
	assert_false(auth_keyring_has(kr, a ^ b));

	/* Same key again: no new slot, and send moves to it. */
	assert_int_equal(auth_keyring_add(kr, key_a, 32, 1, &again), 0);
	assert_int_equal(again, a);
	assert_int_equal(auth_keyring_send_id(kr, &send), 0);
	assert_int_equal(send, a);

	for (int i = 0; i < 4; i++)
		memset(k[i], 'A' + i, sizeof(k[i]));
	assert_int_equal(auth_keyring_add(kr, k[0], 8, 0, NULL), 0);
	assert_int_equal(auth_keyring_add(kr, k[1], 8, 0, NULL), 0);
	assert_int_equal(auth_keyring_add(kr, k[2], 8, 0, NULL), -ENOSPC);
	auth_keyring_free(kr);
}

static void
test_mac_matches_documented_construction(void **state)
{
	struct auth_keyring *kr = auth_keyring_new();
	static const uint8_t payload[] = "an advert, in protobuf";
	struct auth_hdr hdr = { .version = 1, .type = 1, .key_id = 0 };
	uint8_t mac[AUTH_MAC_LEN], want[32];

	assert_int_equal(auth_keyring_add(kr, key_a, 32, 1, NULL), 0);
	assert_int_equal(auth_sign(kr, &hdr, payload, sizeof(payload), mac), 0);
	assert_int_equal(hdr.key_id, expected_id(key_a, 32));
	expected_mac(key_a, 32, 1, 1, hdr.key_id, payload, sizeof(payload),
	    want);
	assert_memory_equal(mac, want, 32);
	assert_int_equal(auth_verify(kr, &hdr, payload, sizeof(payload), mac,
	    32), 0);

	/* Empty payloads are signed and verified too. */
	assert_int_equal(auth_sign(kr, &hdr, NULL, 0, mac), 0);
	expected_mac(key_a, 32, 1, 1, hdr.key_id, NULL, 0, want);
	assert_memory_equal(mac, want, 32);
	assert_int_equal(auth_verify(kr, &hdr, NULL, 0, mac, 32), 0);
	auth_keyring_free(kr);
}

static void
test_mac_rejects_changes(void **state)
{
	struct auth_keyring *kr = auth_keyring_new();
	uint8_t payload[] = "priority 200";
	struct auth_hdr hdr = { .version = 1, .type = 1 }, h2;
	uint8_t mac[AUTH_MAC_LEN];

	assert_int_equal(auth_keyring_add(kr, key_a, 32, 1, NULL), 0);
	assert_int_equal(auth_sign(kr, &hdr, payload, sizeof(payload), mac), 0);

	for (size_t i = 0; i < AUTH_MAC_LEN; i++) {
		mac[i] ^= 0x01;
		assert_int_equal(auth_verify(kr, &hdr, payload, sizeof(payload),
		    mac, AUTH_MAC_LEN), -EBADMSG);
		mac[i] ^= 0x01;
	}
	for (size_t i = 0; i < sizeof(payload); i++) {
		payload[i] ^= 0x80;
		assert_int_equal(auth_verify(kr, &hdr, payload, sizeof(payload),
		    mac, AUTH_MAC_LEN), -EBADMSG);
		payload[i] ^= 0x80;
	}
	/* The header is bound: a changed version or type fails. */
	h2 = hdr;
	h2.version = 2;
	assert_int_equal(auth_verify(kr, &h2, payload, sizeof(payload), mac,
	    AUTH_MAC_LEN), -EBADMSG);
	h2 = hdr;
	h2.type = 3;
	assert_int_equal(auth_verify(kr, &h2, payload, sizeof(payload), mac,
	    AUTH_MAC_LEN), -EBADMSG);
	/* Short payload or short MAC. */
	assert_int_equal(auth_verify(kr, &hdr, payload, sizeof(payload) - 1,
	    mac, AUTH_MAC_LEN), -EBADMSG);
	assert_int_equal(auth_verify(kr, &hdr, payload, sizeof(payload), mac,
	    AUTH_MAC_LEN - 1), -EBADMSG);
	/* A key id nobody loaded. */
	h2 = hdr;
	h2.key_id ^= 1;
	assert_int_equal(auth_verify(kr, &h2, payload, sizeof(payload), mac,
	    AUTH_MAC_LEN), -ENOKEY);
	assert_int_equal(auth_verify(kr, &hdr, payload, sizeof(payload), mac,
	    AUTH_MAC_LEN), 0);
	auth_keyring_free(kr);
}

static void
test_mac_rotation(void **state)
{
	struct auth_keyring *old = auth_keyring_new();
	struct auth_keyring *both = auth_keyring_new();
	static const uint8_t payload[] = "x";
	struct auth_hdr hdr = { .version = 1, .type = 1 };
	uint8_t mac[AUTH_MAC_LEN];

	/* Sender still on the old key; receiver holds old and new. */
	assert_int_equal(auth_keyring_add(old, key_a, 32, 1, NULL), 0);
	assert_int_equal(auth_keyring_add(both, key_a, 32, 0, NULL), 0);
	assert_int_equal(auth_keyring_add(both, key_b, 32, 1, NULL), 0);
	assert_int_equal(auth_sign(old, &hdr, payload, 1, mac), 0);
	assert_int_equal(auth_verify(both, &hdr, payload, 1, mac, 32), 0);
	/* Receiver switched, sender still old-only: the new key is unknown to it. */
	assert_int_equal(auth_sign(both, &hdr, payload, 1, mac), 0);
	assert_int_equal(auth_verify(old, &hdr, payload, 1, mac, 32), -ENOKEY);
	auth_keyring_free(old);
	auth_keyring_free(both);
}

/* ---- anti-replay ----------------------------------------------------- */

static const uint8_t node1[4] = { 198, 18, 0, 2 };
static const uint8_t node2[4] = { 198, 18, 0, 3 };
static const uint8_t node6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 2 };

static void
test_replay_forward_only(void **state)
{
	struct auth_replay *rp = auth_replay_new(8);
	enum auth_drop why;

	assert_non_null(rp);
	assert_int_equal(auth_replay_accept(rp, node1, 4, 7, 5, 10, 0, &why), 0);
	assert_int_equal(auth_replay_count(rp), 1);
	/* The same packet again. */
	why = AUTH_DROP_COUNT;
	assert_int_equal(auth_replay_accept(rp, node1, 4, 7, 5, 10, 1, &why),
	    -EBADMSG);
	assert_int_equal(why, AUTH_DROP_REPLAY);
	/* Older sequence, same epoch. */
	why = AUTH_DROP_COUNT;
	assert_int_equal(auth_replay_accept(rp, node1, 4, 7, 5, 9, 1, &why),
	    -EBADMSG);
	assert_int_equal(why, AUTH_DROP_REPLAY);
	assert_int_equal(auth_replay_accept(rp, node1, 4, 7, 5, 11, 1, &why), 0);
	/* Old epoch, even with a huge sequence. */
	why = AUTH_DROP_COUNT;
	assert_int_equal(auth_replay_accept(rp, node1, 4, 7, 4, UINT64_MAX, 2,
	    &why), -EBADMSG);
	assert_int_equal(why, AUTH_DROP_OLD_EPOCH);
	/* Restart: higher epoch, sequence from 1. */
	assert_int_equal(auth_replay_accept(rp, node1, 4, 7, 6, 1, 3, &why), 0);
	why = AUTH_DROP_COUNT;
	assert_int_equal(auth_replay_accept(rp, node1, 4, 7, 6, 1, 3, &why),
	    -EBADMSG);
	assert_int_equal(why, AUTH_DROP_REPLAY);
	why = AUTH_DROP_COUNT;
	assert_int_equal(auth_replay_accept(rp, node1, 4, 7, 5, 12, 3, &why),
	    -EBADMSG);
	assert_int_equal(why, AUTH_DROP_OLD_EPOCH);
	assert_int_equal(auth_replay_accept(rp, node1, 4, 7, 6, 2, 3, NULL), 0);
	assert_int_equal(auth_replay_count(rp), 1);
	auth_replay_free(rp);
}

static void
test_replay_per_peer_and_group(void **state)
{
	struct auth_replay *rp = auth_replay_new(8);
	enum auth_drop why;

	assert_int_equal(auth_replay_accept(rp, node1, 4, 7, 5, 10, 0, &why), 0);
	/* Other group, other node, other family: separate histories. */
	assert_int_equal(auth_replay_accept(rp, node1, 4, 8, 5, 10, 0, &why), 0);
	assert_int_equal(auth_replay_accept(rp, node2, 4, 7, 1, 1, 0, &why), 0);
	assert_int_equal(auth_replay_accept(rp, node6, 16, 7, 1, 1, 0, &why), 0);
	assert_int_equal(auth_replay_count(rp), 4);
	assert_int_equal(auth_replay_accept(rp, node1, 4, 8, 5, 10, 0, &why),
	    -EBADMSG);
	assert_int_equal(auth_replay_accept(rp, node6, 16, 7, 1, 1, 0, &why),
	    -EBADMSG);
	/* A prefix of the IPv6 node id is not the IPv4 node. */
	assert_int_equal(auth_replay_accept(rp, node6, 4, 7, 1, 1, 0, &why), 0);
	assert_int_equal(auth_replay_accept(rp, node1, 0, 7, 1, 1, 0, &why),
	    -EINVAL);
	assert_int_equal(auth_replay_accept(rp, node6, AUTH_NODE_MAX + 1, 7, 1,
	    1, 0, &why), -EINVAL);
	auth_replay_free(rp);
	auth_replay_free(NULL);
	assert_null(auth_replay_new(0));
}

static void
test_replay_eviction(void **state)
{
	struct auth_replay *rp = auth_replay_new(2);
	enum auth_drop why;

	assert_int_equal(auth_replay_accept(rp, node1, 4, 1, 1, 5, 10.0, &why), 0);
	assert_int_equal(auth_replay_accept(rp, node2, 4, 1, 1, 5, 11.0, &why), 0);
	/* node1 heard again: node2 is now the least recent. */
	assert_int_equal(auth_replay_accept(rp, node1, 4, 1, 1, 6, 12.0, &why), 0);
	assert_int_equal(auth_replay_accept(rp, node6, 16, 1, 1, 5, 13.0, &why), 0);
	assert_int_equal(auth_replay_count(rp), 2);
	/* node1 is still remembered, node2 was forgotten. */
	assert_int_equal(auth_replay_accept(rp, node1, 4, 1, 1, 6, 14.0, &why),
	    -EBADMSG);
	assert_int_equal(auth_replay_accept(rp, node2, 4, 1, 1, 5, 15.0, &why), 0);
	auth_replay_free(rp);
}

/* ---- drop reasons and counters ---------------------------------------- */

static void
test_drop_names(void **state)
{
	for (int i = 0; i < AUTH_DROP_COUNT; i++) {
		assert_string_not_equal(auth_drop_name((enum auth_drop)i), "?");
		assert_string_not_equal(auth_drop_desc((enum auth_drop)i), "?");
		for (int j = 0; j < i; j++)
			assert_string_not_equal(auth_drop_name((enum auth_drop)i),
			    auth_drop_name((enum auth_drop)j));
	}
	assert_string_equal(auth_drop_name(AUTH_DROP_BAD_MAC), "bad_mac");
	assert_string_equal(auth_drop_name(AUTH_DROP_COUNT), "?");
	assert_string_equal(auth_drop_desc(AUTH_DROP_COUNT), "?");
}

static void
test_stats_count_and_ratelimit(void **state)
{
	struct auth_stats st = { 0 };
	unsigned sup = 99;

	assert_int_equal(auth_stats_drop(&st, AUTH_DROP_REPLAY, 100.0, &sup), 1);
	assert_int_equal(sup, 0);
	assert_int_equal(auth_stats_drop(&st, AUTH_DROP_REPLAY, 101.0, &sup), 0);
	assert_int_equal(auth_stats_drop(&st, AUTH_DROP_REPLAY, 102.0, &sup), 0);
	/* Another reason has its own limit. */
	assert_int_equal(auth_stats_drop(&st, AUTH_DROP_GARBAGE, 102.0, &sup), 1);
	assert_int_equal(auth_stats_drop(&st, AUTH_DROP_REPLAY,
	    100.0 + AUTH_LOG_INTERVAL, &sup), 1);
	assert_int_equal(sup, 2);
	assert_int_equal(st.drops[AUTH_DROP_REPLAY], 4);
	assert_int_equal(st.drops[AUTH_DROP_GARBAGE], 1);
	assert_int_equal(st.accepted, 0);
	assert_int_equal(auth_stats_drop(&st, AUTH_DROP_COUNT, 0, &sup), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_key_missing, keydir_setup,
		    keydir_teardown),
		cmocka_unit_test_setup_teardown(test_key_empty, keydir_setup,
		    keydir_teardown),
		cmocka_unit_test_setup_teardown(test_key_mode_refused,
		    keydir_setup, keydir_teardown),
		cmocka_unit_test_setup_teardown(test_key_0600_accepted,
		    keydir_setup, keydir_teardown),
		cmocka_unit_test_setup_teardown(test_key_trailing_newline,
		    keydir_setup, keydir_teardown),
		cmocka_unit_test_setup_teardown(test_key_not_regular,
		    keydir_setup, keydir_teardown),
		cmocka_unit_test_setup_teardown(test_key_too_long, keydir_setup,
		    keydir_teardown),
		cmocka_unit_test_setup_teardown(test_key_owner, keydir_setup,
		    keydir_teardown),
		cmocka_unit_test_setup_teardown(test_key_err_null, keydir_setup,
		    keydir_teardown),
		cmocka_unit_test(test_keyring_basics),
		cmocka_unit_test(test_mac_matches_documented_construction),
		cmocka_unit_test(test_mac_rejects_changes),
		cmocka_unit_test(test_mac_rotation),
		cmocka_unit_test(test_replay_forward_only),
		cmocka_unit_test(test_replay_per_peer_and_group),
		cmocka_unit_test(test_replay_eviction),
		cmocka_unit_test(test_drop_names),
		cmocka_unit_test(test_stats_count_and_ratelimit),
	};

	return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
