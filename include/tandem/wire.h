/*
 * wire — the conversion boundary between proto/tandem.proto and the
 * daemon's own structs. daemon/agent/wire.c is the only file that includes
 * the protobuf-c generated header: it turns internal structs into sealed
 * (MAC'd) envelopes in a caller buffer, and received bytes into internal
 * structs after checking lengths, version, type, group, key, MAC and replay.
 * Nothing returned points into protobuf-c memory: the unpacked messages are
 * freed before every function returns.
 *
 * Receive path for adverts, in order (each failure is counted once, by the
 * first check that fails, in the caller's auth_stats, and logged rate-limited):
 *   size > WIRE_ADVERT_MAX                     oversized
 *   empty, or a valid envelope prefix cut off  truncated
 *   not shaped like an Envelope                garbage
 *   Envelope.version != WIRE_VERSION           bad_version
 *   type != ADVERT                             unknown_type
 *   Advert fields missing or out of range      garbage (too many VIPs: oversized)
 *   group not among the caller's groups        wrong_group
 *   key id not in that group's keyring         unknown_key
 *   MAC mismatch                               bad_mac
 *   (boot epoch, sequence) not forward         old_epoch / replay
 * The group comes before the key because each group has its own keys (as a
 * CARP vhid or a VRRP instance does); the advert is parsed before the MAC is
 * checked for that reason, so the parser sees unauthenticated bytes and is
 * fuzzed (tests/fuzz/fuzz_advert.c). Anti-replay state changes only for a
 * message that passed every other check.
 *
 * Anti-replay is keyed by the authenticated node address in the advert and
 * the group, not by the source address (which anyone can forge). A sender
 * with several heartbeat paths numbers every copy it sends; a copy that
 * arrives after a newer one is dropped as a replay, which is harmless (it
 * is stale) but shows in the replay counter.
 */
#ifndef TANDEM_WIRE_H
#define TANDEM_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <tandem/auth.h>

#define WIRE_VERSION 1
/*
 * Largest advert datagram (UDP payload): 1280-byte IPv6 minimum MTU minus
 * IPv6 and UDP headers, so an advert never fragments on any link.
 */
#define WIRE_ADVERT_MAX 1232
#define WIRE_VIPS_MAX 32            /* VIPs per group */
#define WIRE_DIGEST_LEN 32          /* SHA-256 of the proxy config */
#define WIRE_NAME_MAX 64            /* node name incl. NUL */
#define WIRE_INTERVAL_MAX_MS 60000  /* advert interval 1 ms .. 60 s */
#define WIRE_ADDRSTRLEN 48          /* "[ffff:...:255.255.255.255]%" etc. with room */

/* Mirrors tandem.MsgType (checked at compile time in wire.c). */
enum wire_type {
	WIRE_MSG_NONE = 0,
	WIRE_MSG_ADVERT,
	WIRE_MSG_SYNC_HELLO,
	WIRE_MSG_SYNC_FRAME,
	WIRE_MSG_SWITCHOVER,
	WIRE_MSG_COUNT
};

/* Mirrors tandem.AgentState: the sender's state for the group. */
enum wire_state {
	WIRE_STATE_INIT = 0,
	WIRE_STATE_BACKUP,
	WIRE_STATE_MASTER,
	WIRE_STATE_FAULT,
	WIRE_STATE_COUNT
};

/* An IPv4 or IPv6 address with a prefix length. */
struct wire_ip {
	sa_family_t family;        /* AF_INET or AF_INET6 */
	uint8_t plen;              /* 1..32 / 1..128; node addresses carry the full length */
	uint8_t addr[16];          /* network order; AF_INET uses the first 4 bytes */
};

/* One advert, as the agent sees it. See Advert in proto/tandem.proto. */
struct wire_advert {
	uint32_t group;
	uint8_t priority;          /* 0 = leaving, 1..254, 255 = owner */
	uint32_t interval_ms;      /* 1..WIRE_INTERVAL_MAX_MS */
	enum wire_state state;
	struct wire_ip node;       /* the sender's node address (plen = full length) */
	char node_name[WIRE_NAME_MAX];  /* printable ASCII without spaces, may be "" */
	uint64_t boot_epoch;
	uint64_t seq;
	uint8_t config_digest[WIRE_DIGEST_LEN];
	uint64_t sync_epoch;
	size_t nvips;
	struct wire_ip vips[WIRE_VIPS_MAX];
	uint32_t key_id;           /* received: the key that verified it; ignored when sending */
};

/* One group this node runs, with the keys it accepts for that group. */
struct wire_rx_group {
	uint32_t group;
	const struct auth_keyring *keys;   /* borrowed */
};

/* Everything the receive path needs; all pointers borrowed from the caller. */
struct wire_rx {
	const struct wire_rx_group *groups;
	size_t ngroups;
	struct auth_replay *replay;        /* shared by all groups: keyed by (node, group) */
	struct auth_stats *stats;
};

/*
 * Encode a into a sealed Envelope in buf (cap bytes), signed with kr's send
 * key, and set *len. a must pass the checks the receiver applies (so we
 * never send what the peer would drop). Returns 0, -EINVAL (a is out of
 * range), -ENOKEY (kr has no send key), -EMSGSIZE (larger than cap or
 * WIRE_ADVERT_MAX) or -ENOMEM.
 */
int wire_advert_encode(const struct wire_advert *a,
    const struct auth_keyring *kr, uint8_t *buf, size_t cap, size_t *len);

/*
 * The one receive path for adverts: check buf[0..len) as listed at the top
 * of this file and fill *out. from (may be NULL) only names the sender in
 * log lines; now is monotonic seconds (ev_now) for the log rate limits and
 * the replay table.
 * Returns 0 when accepted (rx->stats->accepted counted, replay state moved
 * forward). Returns -EBADMSG when dropped: the reason is counted in
 * rx->stats, logged rate-limited, and stored in *why when why is not NULL;
 * *out is then unspecified. Returns -ENOMEM when memory ran out (nothing
 * counted: the packet was not judged).
 */
int wire_advert_recv(struct wire_rx *rx, const uint8_t *buf, size_t len,
    const struct sockaddr *from, double now, struct wire_advert *out,
    enum auth_drop *why);

/*
 * Wrap an already encoded payload of the given type in a sealed Envelope
 * (version WIRE_VERSION, kr's send key) in buf (cap bytes), set *len.
 * For the sync channel's messages and for tests. Returns 0, -EINVAL (type
 * out of range), -ENOKEY, -EMSGSIZE (larger than cap) or -ENOMEM.
 */
int wire_seal(enum wire_type type, const struct auth_keyring *kr,
    const uint8_t *payload, size_t plen, uint8_t *buf, size_t cap,
    size_t *len);

/*
 * Address helpers. wire_ip_from_sockaddr: AF_INET/AF_INET6 only (-EAFNOSUPPORT
 * otherwise), plen 0 = full length, -EINVAL if plen is too long.
 * wire_ip_to_sockaddr: fills ss with the address and port; returns the
 * length or -EAFNOSUPPORT.
 * wire_ip_ntop: "198.18.0.2" / "2001:db8::2", optionally "/plen" when
 * with_plen; returns buf (at least WIRE_ADDRSTRLEN bytes).
 */
int wire_ip_from_sockaddr(struct wire_ip *ip, const struct sockaddr *sa,
    unsigned plen);
int wire_ip_to_sockaddr(const struct wire_ip *ip, uint16_t port,
    struct sockaddr_storage *ss);
const char *wire_ip_ntop(const struct wire_ip *ip, int with_plen, char *buf,
    size_t len);

#endif
