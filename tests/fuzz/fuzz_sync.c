/*
 * libFuzzer target: arbitrary bytes through the sync channel's decoder
 * (syncf_open: envelope scan and decode, key, MAC, payload decode).
 *
 * The first input byte picks the mode:
 *   0 mod 3: the rest is one Envelope as the channel hands it over (after
 *            the length prefix). The fuzzer cannot forge a MAC, so this
 *            covers everything up to the MAC check;
 *   1 mod 3: the rest is a SyncFrame payload, sealed with the channel key
 *            first, so the payload decoders see it;
 *   2 mod 3: the same for a SyncHello payload.
 * Whatever is accepted must be valid by the sender's rules and re-encode to
 * bytes that decode to the same message: encode(decode(x)) is a fixed point.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tandem/auth.h>
#include <tandem/log.h>
#include <tandem/sync.h>
#include <tandem/wire.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fuzz_key[32] = "tandem-fuzz-key-0123456789abcdef";

static struct auth_keyring *
fuzz_keyring(void)
{
	static struct auth_keyring *kr;

	if (kr == NULL) {
		log_init(LOG_LVL_ERR, 0, "fuzz_sync");
		kr = auth_keyring_new();
		if (kr == NULL || auth_keyring_add(kr, fuzz_key, sizeof(fuzz_key),
		    1, NULL) < 0)
			abort();
	}
	return kr;
}

/* Encode m again as [len][envelope] in out; abort if our encoder refuses. */
static void
fuzz_reencode(const struct auth_keyring *kr, const struct sync_msg *m,
    struct sync_buf *out)
{
	struct sync_buf evs = { 0 };

	if (m->type == WIRE_MSG_SYNC_HELLO) {
		if (syncf_hello_seal(out, &m->hello, kr) != 0)
			abort();
		return;
	}
	for (size_t i = 0; i < m->nevents; i++) {
		if (!syncf_event_valid(&m->events[i]))
			abort();
		if (syncf_event_append(&evs, &m->events[i]) != 0)
			abort();
	}
	if (syncf_frame_seal(out, &m->hdr, evs.data, evs.len, m->nevents,
	    kr) != 0)
		abort();
	syncf_buf_free(&evs);
}

static int
fuzz_open(const struct auth_keyring *kr, const uint8_t *p, size_t len,
    struct sync_msg *m)
{
	enum sync_drop why = SYNC_DROP_COUNT;
	int ret = syncf_open(p, len, SYNC_FRAME_MAX, kr, m, &why);

	if (ret == -EBADMSG && (unsigned)why >= SYNC_DROP_COUNT)
		abort();
	if (ret != 0 && ret != -EBADMSG && ret != -ENOMEM)
		abort();
	if (ret != 0 && (m->events != NULL || m->nevents != 0))
		abort();
	if (ret == 0 && !m->authenticated)
		abort();
	return ret;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct auth_keyring *kr = fuzz_keyring();
	struct sync_buf sealed = { 0 }, once = { 0 }, twice = { 0 };
	struct sync_msg m, m2;
	const uint8_t *p;
	size_t len;

	if (size == 0)
		return 0;
	switch (data[0] % 3) {
	case 0:
		p = data + 1;
		len = size - 1;
		break;
	default:
		if (syncf_buf_reserve(&sealed, size + 128) < 0 ||
		    wire_seal(data[0] % 3 == 1 ? WIRE_MSG_SYNC_FRAME :
		    WIRE_MSG_SYNC_HELLO, kr, data + 1, size - 1, sealed.data,
		    sealed.cap, &sealed.len) < 0)
			goto out;
		p = sealed.data;
		len = sealed.len;
		break;
	}
	if (fuzz_open(kr, p, len, &m) != 0)
		goto out;
	fuzz_reencode(kr, &m, &once);
	if (fuzz_open(kr, once.data + 4, once.len - 4, &m2) != 0)
		abort();
	fuzz_reencode(kr, &m2, &twice);
	if (once.len != twice.len || memcmp(once.data, twice.data, once.len) != 0)
		abort();
	syncf_msg_clear(&m2);
	syncf_msg_clear(&m);
out:
	syncf_buf_free(&sealed);
	syncf_buf_free(&once);
	syncf_buf_free(&twice);
	return 0;
}
