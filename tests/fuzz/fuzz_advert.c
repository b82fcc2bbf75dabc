/*
 * libFuzzer target: arbitrary bytes through the whole advert receive path
 * (envelope scan and decode, advert decode, group, key, MAC, anti-replay).
 *
 * The first input byte picks the mode:
 *   even: the rest is a datagram as received off the wire. The fuzzer cannot
 *         forge a MAC, so this covers everything up to the MAC check;
 *   odd:  the rest is an Advert payload, which is sealed with the group key
 *         first, so the decoder's output also reaches anti-replay, and
 *         whatever is accepted must re-encode and decode to the same advert.
 * Each input gets a fresh replay table, so runs are reproducible.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tandem/auth.h>
#include <tandem/log.h>
#include <tandem/wire.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fuzz_key[32] = "tandem-fuzz-key-0123456789abcdef";

static struct auth_keyring *
fuzz_keyring(void)
{
	static struct auth_keyring *kr;

	if (kr == NULL) {
		log_init(LOG_LVL_ERR, 0, "fuzz_advert");  /* drops log at warning */
		kr = auth_keyring_new();
		if (kr == NULL || auth_keyring_add(kr, fuzz_key, sizeof(fuzz_key),
		    1, NULL) < 0)
			abort();
	}
	return kr;
}

static int
fuzz_ip_equal(const struct wire_ip *a, const struct wire_ip *b)
{
	return a->family == b->family && a->plen == b->plen &&
	    memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

static int
fuzz_advert_equal(const struct wire_advert *a, const struct wire_advert *b)
{
	if (a->group != b->group || a->priority != b->priority ||
	    a->interval_ms != b->interval_ms || a->state != b->state ||
	    !fuzz_ip_equal(&a->node, &b->node) ||
	    strcmp(a->node_name, b->node_name) != 0 ||
	    a->boot_epoch != b->boot_epoch || a->seq != b->seq ||
	    memcmp(a->config_digest, b->config_digest, WIRE_DIGEST_LEN) != 0 ||
	    a->sync_epoch != b->sync_epoch || a->nvips != b->nvips)
		return 0;
	for (size_t i = 0; i < a->nvips; i++)
		if (!fuzz_ip_equal(&a->vips[i], &b->vips[i]))
			return 0;
	return 1;
}

static int
fuzz_recv(const struct auth_keyring *kr, const uint8_t *buf, size_t len,
    struct wire_advert *out)
{
	/* Groups 0, 1 and 7 are ours; anything else is a wrong group. */
	const struct wire_rx_group groups[] = {
		{ .group = 0, .keys = kr },
		{ .group = 1, .keys = kr },
		{ .group = 7, .keys = kr },
	};
	struct auth_stats st = { 0 };
	struct auth_replay *rp = auth_replay_new(4);
	struct wire_rx rx = {
		.groups = groups, .ngroups = 3, .replay = rp, .stats = &st,
	};
	enum auth_drop why = AUTH_DROP_COUNT;
	uint64_t counted = 0;
	int ret;

	if (rp == NULL)
		abort();
	ret = wire_advert_recv(&rx, buf, len, NULL, 0.0, out, &why);
	for (int i = 0; i < AUTH_DROP_COUNT; i++)
		counted += st.drops[i];
	/* Every packet is judged exactly once: accepted xor one drop reason. */
	if (ret == 0 && (st.accepted != 1 || counted != 0))
		abort();
	if (ret == -EBADMSG && (st.accepted != 0 || counted != 1 ||
	    why >= AUTH_DROP_COUNT || st.drops[why] != 1))
		abort();
	if (ret != 0 && ret != -EBADMSG && ret != -ENOMEM)
		abort();
	auth_replay_free(rp);
	return ret;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct auth_keyring *kr = fuzz_keyring();
	uint8_t sealed[WIRE_ADVERT_MAX], again[WIRE_ADVERT_MAX];
	struct wire_advert out, out2;
	size_t len, len2;

	if (size == 0)
		return 0;
	if ((data[0] & 1) == 0) {
		fuzz_recv(kr, data + 1, size - 1, &out);
		return 0;
	}
	if (wire_seal(WIRE_MSG_ADVERT, kr, data + 1, size - 1, sealed,
	    sizeof(sealed), &len) < 0)
		return 0;
	if (fuzz_recv(kr, sealed, len, &out) != 0)
		return 0;
	/* Accepted: our own encoder must take it and give the same advert back. */
	if (wire_advert_encode(&out, kr, again, sizeof(again), &len2) != 0)
		abort();
	if (fuzz_recv(kr, again, len2, &out2) != 0 ||
	    !fuzz_advert_equal(&out, &out2))
		abort();
	return 0;
}
