/*
 * auth — shared keys, HMAC-SHA256 over wire messages, anti-replay, and the
 * drop reasons every receiver counts.
 *
 * Three objects, because they live for different lengths of time:
 *   - auth_keyring: the keys one channel (a VIP group, the sync channel)
 *     accepts, one of them marked for sending. Built from the config and
 *     replaced whole on reload, so a reload that fails keeps the old keys.
 *   - auth_replay: the newest (boot epoch, sequence) accepted per peer.
 *     Lives as long as the daemon: rebuilding it on reload would let a
 *     captured packet be replayed after every reload.
 *   - auth_stats: counters per drop reason and their log rate limits, owned
 *     by whoever owns the receive channel and shown on the control socket.
 *
 * Key ids: a key's id is derived from its bytes (first 4 bytes, big-endian,
 * of SHA-256("tandem key id" || key)), so both nodes agree on it without
 * configuration and a rotation works by loading the new key next to the old
 * one on both nodes, switching the send key, then dropping the old one.
 *
 * The MAC covers a fixed header and the payload:
 *   HMAC-SHA256(key, "TNDM" || be32(version) || be32(type) || be32(key_id) || payload)
 * It is compared with CRYPTO_memcmp (constant time).
 *
 * None of these objects locks: use each from one thread.
 */
#ifndef TANDEM_AUTH_H
#define TANDEM_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include <tandem/log.h>

#define AUTH_MAC_LEN 32        /* HMAC-SHA256 */
#define AUTH_KEY_MAX 4096      /* bytes; longer key files are refused */
#define AUTH_KEY_WEAK 16       /* shorter keys are accepted with a warning */
#define AUTH_KEYS_MAX 4        /* per keyring: current and previous key, with room */
#define AUTH_NODE_MAX 16       /* bytes of a peer's node id (an IPv6 address) */
#define AUTH_LOG_INTERVAL 5.0  /* seconds between two log lines for one drop reason */

/*
 * Why a received message was dropped, in the order the receive path checks.
 * X(enum suffix, metric/log name, description).
 */
#define AUTH_DROP_LIST(X)                                                       \
	X(GARBAGE, "garbage", "not a tandem message")                           \
	X(TRUNCATED, "truncated", "message cut short")                          \
	X(OVERSIZED, "oversized", "larger than the protocol allows")            \
	X(BAD_VERSION, "bad_version", "unsupported protocol version")           \
	X(UNKNOWN_TYPE, "unknown_type", "message type not handled here")        \
	X(WRONG_GROUP, "wrong_group", "group not configured on this node")      \
	X(UNKNOWN_KEY, "unknown_key", "key id not configured here")             \
	X(BAD_MAC, "bad_mac", "MAC mismatch: wrong key or altered in transit")  \
	X(OLD_EPOCH, "old_epoch", "boot epoch older than the peer's latest")    \
	X(REPLAY, "replay", "sequence not newer than the peer's latest")

#define AUTH_DROP_ENUM_(sym, name, desc) AUTH_DROP_##sym,
enum auth_drop {
	AUTH_DROP_LIST(AUTH_DROP_ENUM_)
	AUTH_DROP_COUNT
};
#undef AUTH_DROP_ENUM_

/* "bad_mac" etc. (metric labels, log key); "?" when out of range. */
const char *auth_drop_name(enum auth_drop why);
/* One-line human description; "?" when out of range. */
const char *auth_drop_desc(enum auth_drop why);

/* Counters for one receive channel; zero-initialise, owned by the caller. */
struct auth_stats {
	uint64_t accepted;
	uint64_t drops[AUTH_DROP_COUNT];
	struct log_ratelimit rl[AUTH_DROP_COUNT];
};

/*
 * Count one drop. Returns 1 when the caller may log it now (then *suppressed
 * holds how many lines for this reason were held back since the last one),
 * 0 when the line should be suppressed. now is monotonic seconds.
 */
int auth_stats_drop(struct auth_stats *st, enum auth_drop why, double now,
    unsigned *suppressed);

/* ---- keys ------------------------------------------------------------ */

struct auth_keyring;

/* Returns an empty keyring, or NULL on allocation failure. */
struct auth_keyring *auth_keyring_new(void);

/* Wipes every key (explicit_bzero) and frees. NULL is a no-op. */
void auth_keyring_free(struct auth_keyring *kr);

/*
 * Load the shared key in the file at path into kr; send != 0 makes it the
 * key new messages are signed with. The key is the file's bytes, minus one
 * trailing "\n" or "\r\n" (so `echo secret > file` and a printf-written file
 * give the same key).
 *
 * The file is refused unless it is a regular file, owned by root or by the
 * effective user, with no permission bits for group or others (0600 or
 * 0400), and holds 1..AUTH_KEY_MAX bytes of key. Keys shorter than
 * AUTH_KEY_WEAK bytes are accepted with a warning.
 *
 * Returns 0 and, when id is not NULL, the key's id. On failure returns
 * -errno and writes one line naming the file and the fix to err (errlen
 * bytes, NUL-terminated; err may be NULL):
 *   -ENOENT/-EACCES/... the file cannot be opened; -EINVAL not a regular
 *   file; -EPERM wrong owner or mode; -ENODATA empty; -EFBIG too long;
 *   -ENOSPC keyring full; -EEXIST a different key with the same id.
 * Loading the same key twice is not an error (send still applies).
 * The temporary copies of the key are wiped.
 */
int auth_keyring_load(struct auth_keyring *kr, const char *path, int send,
    uint32_t *id, char *err, size_t errlen);

/*
 * The same with key bytes from memory (tests, or keys from another source).
 * Returns 0, -EINVAL (len 0 or > AUTH_KEY_MAX), -ENOSPC, -EEXIST, -ENOMEM.
 */
int auth_keyring_add(struct auth_keyring *kr, const uint8_t *key, size_t len,
    int send, uint32_t *id);

/* The id of the send key: 0, or -ENOKEY when no key is marked for sending. */
int auth_keyring_send_id(const struct auth_keyring *kr, uint32_t *id);

/* 1 if kr holds a key with this id, else 0. */
int auth_keyring_has(const struct auth_keyring *kr, uint32_t id);

/* ---- MAC ------------------------------------------------------------- */

/* The envelope fields the MAC binds besides the payload. */
struct auth_hdr {
	uint32_t version;
	uint32_t type;
	uint32_t key_id;
};

/*
 * Sign with kr's send key: sets hdr->key_id to that key's id, then writes
 * the MAC over (hdr, payload) to mac. Returns 0, -ENOKEY (no send key) or
 * -ENOMEM.
 */
int auth_sign(const struct auth_keyring *kr, struct auth_hdr *hdr,
    const uint8_t *payload, size_t len, uint8_t mac[AUTH_MAC_LEN]);

/*
 * Verify mac (maclen bytes) over (hdr, payload) with the key hdr->key_id
 * names. Constant-time compare. Returns 0, -ENOKEY (no such key in kr),
 * -EBADMSG (mismatch, or maclen != AUTH_MAC_LEN) or -ENOMEM.
 */
int auth_verify(const struct auth_keyring *kr, const struct auth_hdr *hdr,
    const uint8_t *payload, size_t len, const uint8_t *mac, size_t maclen);

/* ---- anti-replay ----------------------------------------------------- */

struct auth_replay;

/*
 * A table remembering up to max_peers (node, group) pairs; when full, the
 * pair heard from least recently is forgotten. Entries are only created by
 * messages that passed authentication, so the table holds real peers only.
 * Returns NULL on allocation failure or max_peers == 0.
 */
struct auth_replay *auth_replay_new(size_t max_peers);
void auth_replay_free(struct auth_replay *rp);  /* NULL is a no-op */

/*
 * Call last, after every other check (MAC included) has passed. For the
 * peer (node[0..nodelen), group): accept and remember (epoch, seq) when it
 * is the first message heard, when epoch is higher than the last accepted
 * one (the peer restarted: any sequence is accepted), or when epoch is the
 * same and seq is higher. Returns 0 then.
 * Otherwise returns -EBADMSG with *why = AUTH_DROP_OLD_EPOCH (epoch lower)
 * or AUTH_DROP_REPLAY (same epoch, seq not higher), and changes nothing.
 * -EINVAL when nodelen is 0 or > AUTH_NODE_MAX. now (monotonic seconds)
 * orders entries for eviction.
 */
int auth_replay_accept(struct auth_replay *rp, const uint8_t *node,
    size_t nodelen, uint32_t group, uint64_t epoch, uint64_t seq, double now,
    enum auth_drop *why);

/* Number of peers currently remembered. */
size_t auth_replay_count(const struct auth_replay *rp);

#endif
