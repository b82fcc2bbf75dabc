/* wire — see include/tandem/wire.h */
#include <tandem/wire.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tandem/log.h>
#include <tandem/pbuf.h>

/* The one place the generated code is seen (STYLE 3). */
#include "tandem.pb-c.h"

_Static_assert((int)WIRE_MSG_ADVERT == (int)TANDEM__MSG_TYPE__MSG_ADVERT &&
    (int)WIRE_MSG_SYNC_HELLO == (int)TANDEM__MSG_TYPE__MSG_SYNC_HELLO &&
    (int)WIRE_MSG_SYNC_FRAME == (int)TANDEM__MSG_TYPE__MSG_SYNC_FRAME &&
    (int)WIRE_MSG_SWITCHOVER == (int)TANDEM__MSG_TYPE__MSG_SWITCHOVER,
    "enum wire_type mirrors tandem.MsgType");
_Static_assert((int)WIRE_STATE_INIT == (int)TANDEM__AGENT_STATE__STATE_INIT &&
    (int)WIRE_STATE_BACKUP == (int)TANDEM__AGENT_STATE__STATE_BACKUP &&
    (int)WIRE_STATE_MASTER == (int)TANDEM__AGENT_STATE__STATE_MASTER &&
    (int)WIRE_STATE_FAULT == (int)TANDEM__AGENT_STATE__STATE_FAULT,
    "enum wire_state mirrors tandem.AgentState");
_Static_assert(AUTH_NODE_MAX >= sizeof(((struct wire_ip *)0)->addr),
    "a node address fits the replay table's node id");

/* Protobuf wire types (encoding spec); groups (3, 4) are never used by us. */
enum {
	WIRE_WT_VARINT = 0,
	WIRE_WT_I64 = 1,
	WIRE_WT_LEN = 2,
	WIRE_WT_I32 = 5,
};

#define WIRE_ENV_TAG_VERSION ((1u << 3) | WIRE_WT_VARINT)

/* ---- addresses ------------------------------------------------------- */

static unsigned
wire_ip_maxplen(sa_family_t family)
{
	return family == AF_INET ? 32 : family == AF_INET6 ? 128 : 0;
}

static size_t
wire_ip_len(sa_family_t family)
{
	return family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
}

int
wire_ip_from_sockaddr(struct wire_ip *ip, const struct sockaddr *sa,
    unsigned plen)
{
	memset(ip, 0, sizeof(*ip));
	switch (sa->sa_family) {
	case AF_INET: {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		memcpy(ip->addr, &sin->sin_addr, 4);
		break;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		memcpy(ip->addr, &sin6->sin6_addr, 16);
		break;
	}
	default:
		return -EAFNOSUPPORT;
	}
	ip->family = sa->sa_family;
	if (plen == 0)
		plen = wire_ip_maxplen(ip->family);
	if (plen > wire_ip_maxplen(ip->family))
		return -EINVAL;
	ip->plen = (uint8_t)plen;
	return 0;
}

int
wire_ip_to_sockaddr(const struct wire_ip *ip, uint16_t port,
    struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	switch (ip->family) {
	case AF_INET: {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, ip->addr, 4);
		return (int)sizeof(*sin);
	}
	case AF_INET6: {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		memcpy(&sin6->sin6_addr, ip->addr, 16);
		return (int)sizeof(*sin6);
	}
	default:
		return -EAFNOSUPPORT;
	}
}

const char *
wire_ip_ntop(const struct wire_ip *ip, int with_plen, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	if (inet_ntop(ip->family, ip->addr, a, sizeof(a)) == NULL)
		snprintf(a, sizeof(a), "?");
	if (with_plen)
		snprintf(buf, len, "%s/%u", a, (unsigned)ip->plen);
	else
		snprintf(buf, len, "%s", a);
	return buf;
}

static const char *
wire_sa_ntop(const struct sockaddr *sa, char *buf, size_t len)
{
	struct wire_ip ip;

	if (sa == NULL || wire_ip_from_sockaddr(&ip, sa, 0) < 0) {
		snprintf(buf, len, "?");
		return buf;
	}
	return wire_ip_ntop(&ip, 0, buf, len);
}

/* ---- validity shared by both directions ------------------------------ */

static int
wire_ip_valid(const struct wire_ip *ip, int full)
{
	unsigned max = wire_ip_maxplen(ip->family);

	if (max == 0)
		return 0;
	if (full)
		return ip->plen == max;
	return ip->plen >= 1 && ip->plen <= max;
}

/* Names end up in key=value log lines: no spaces, quotes or control bytes. */
static int
wire_name_valid(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);

	if (n == cap)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c >= 0x7f || c == '"' || c == '=')
			return 0;
	}
	return 1;
}

/* What the receiver accepts, and therefore all the sender may send. */
static int
wire_advert_valid(const struct wire_advert *a)
{
	if (a->interval_ms == 0 || a->interval_ms > WIRE_INTERVAL_MAX_MS)
		return 0;
	if ((unsigned)a->state >= WIRE_STATE_COUNT)
		return 0;
	if (!wire_ip_valid(&a->node, 1))
		return 0;
	if (!wire_name_valid(a->node_name, sizeof(a->node_name)))
		return 0;
	if (a->nvips > WIRE_VIPS_MAX)
		return 0;
	for (size_t i = 0; i < a->nvips; i++)
		if (!wire_ip_valid(&a->vips[i], 0))
			return 0;
	return 1;
}

/* ---- internal <-> generated ------------------------------------------ */

static int
wire_ip_import(const ProtobufCBinaryData *b, unsigned plen, struct wire_ip *ip)
{
	memset(ip, 0, sizeof(*ip));
	if (b->len == 4)
		ip->family = AF_INET;
	else if (b->len == 16)
		ip->family = AF_INET6;
	else
		return -EBADMSG;
	if (plen > wire_ip_maxplen(ip->family))
		return -EBADMSG;
	memcpy(ip->addr, b->data, b->len);
	ip->plen = (uint8_t)plen;
	return 0;
}

static void
wire_ip_export(const struct wire_ip *ip, ProtobufCBinaryData *b)
{
	b->len = wire_ip_len(ip->family);
	/* protobuf-c's pack only reads through this pointer. */
	b->data = (uint8_t *)(uintptr_t)ip->addr;
}

/*
 * Copy a decoded Advert into *a. Every field we use must be present:
 * a missing one means a broken sender, not an older one (they were all in
 * version 1). Returns 0, or -EBADMSG with *why set.
 */
static int
wire_advert_import(const Tandem__Advert *m, struct wire_advert *a,
    enum auth_drop *why)
{
	*why = AUTH_DROP_GARBAGE;
	memset(a, 0, sizeof(*a));
	if (!m->has_group || !m->has_priority || !m->has_interval_ms ||
	    !m->has_state || !m->has_node_addr || !m->has_boot_epoch ||
	    !m->has_sequence || !m->has_config_digest || !m->has_sync_epoch)
		return -EBADMSG;
	if (m->priority > 255 || (unsigned)m->state >= WIRE_STATE_COUNT)
		return -EBADMSG;
	if (m->config_digest.len != WIRE_DIGEST_LEN)
		return -EBADMSG;
	if (m->n_vips > WIRE_VIPS_MAX) {
		*why = AUTH_DROP_OVERSIZED;
		return -EBADMSG;
	}
	a->group = m->group;
	a->priority = (uint8_t)m->priority;
	a->interval_ms = m->interval_ms;
	a->state = (enum wire_state)m->state;
	if (wire_ip_import(&m->node_addr, 0, &a->node) < 0)
		return -EBADMSG;
	a->node.plen = (uint8_t)wire_ip_maxplen(a->node.family);
	if (m->node_name != NULL) {
		size_t n = strlen(m->node_name);

		if (n >= sizeof(a->node_name))
			return -EBADMSG;
		memcpy(a->node_name, m->node_name, n + 1);
	}
	for (size_t i = 0; i < m->n_vips; i++) {
		const Tandem__Prefix *p = m->vips[i];

		if (!p->has_addr || !p->has_prefix_len)
			return -EBADMSG;
		if (wire_ip_import(&p->addr, p->prefix_len, &a->vips[i]) < 0)
			return -EBADMSG;
	}
	a->nvips = m->n_vips;
	a->boot_epoch = m->boot_epoch;
	a->seq = m->sequence;
	memcpy(a->config_digest, m->config_digest.data, WIRE_DIGEST_LEN);
	a->sync_epoch = m->sync_epoch;
	return wire_advert_valid(a) ? 0 : -EBADMSG;
}

/*
 * Fill *m from *a. The generated struct borrows a's memory and the caller's
 * prefix storage: nothing is allocated, nothing needs freeing.
 */
static void
wire_advert_export(const struct wire_advert *a, Tandem__Advert *m,
    Tandem__Prefix *pfx, Tandem__Prefix **ppfx)
{
	tandem__advert__init(m);
	m->has_group = 1;
	m->group = a->group;
	m->has_priority = 1;
	m->priority = a->priority;
	m->has_interval_ms = 1;
	m->interval_ms = a->interval_ms;
	m->has_state = 1;
	m->state = (Tandem__AgentState)a->state;
	m->has_node_addr = 1;
	wire_ip_export(&a->node, &m->node_addr);
	for (size_t i = 0; i < a->nvips; i++) {
		tandem__prefix__init(&pfx[i]);
		pfx[i].has_addr = 1;
		wire_ip_export(&a->vips[i], &pfx[i].addr);
		pfx[i].has_prefix_len = 1;
		pfx[i].prefix_len = a->vips[i].plen;
		ppfx[i] = &pfx[i];
	}
	m->n_vips = a->nvips;
	m->vips = a->nvips ? ppfx : NULL;
	m->has_boot_epoch = 1;
	m->boot_epoch = a->boot_epoch;
	m->has_sequence = 1;
	m->sequence = a->seq;
	m->has_config_digest = 1;
	m->config_digest.len = WIRE_DIGEST_LEN;
	m->config_digest.data = (uint8_t *)(uintptr_t)a->config_digest;
	m->has_sync_epoch = 1;
	m->sync_epoch = a->sync_epoch;
	if (a->node_name[0] != '\0')
		m->node_name = (char *)(uintptr_t)a->node_name;
}

/* ---- envelope -------------------------------------------------------- */

/*
 * Classify bytes before handing them to protobuf-c, which says only "no".
 * An envelope always starts with its version (field 1, written first), so
 * anything else is garbage; the version is judged before the rest because a
 * later version may lay the rest out differently; then the fields are
 * walked: a field running past the end is a cut-off envelope (truncated),
 * a malformed tag or a length no envelope can have is garbage.
 * Returns 0 or -EBADMSG with *why set; *version is set once it was read.
 */
static int
wire_env_scan(const uint8_t *p, size_t len, size_t max, enum auth_drop *why,
    uint64_t *version)
{
	size_t off = 0;
	uint64_t tag, v;
	int r;

	if (len == 0) {
		*why = AUTH_DROP_TRUNCATED;
		return -EBADMSG;
	}
	*why = AUTH_DROP_GARBAGE;
	if (pbuf_varint(p, len, &off, &tag) < 0 || tag != WIRE_ENV_TAG_VERSION)
		return -EBADMSG;
	r = pbuf_varint(p, len, &off, &v);
	if (r < 0) {
		*why = r == -ENODATA ? AUTH_DROP_TRUNCATED : AUTH_DROP_GARBAGE;
		return -EBADMSG;
	}
	*version = v;
	if (v != WIRE_VERSION) {
		*why = AUTH_DROP_BAD_VERSION;
		return -EBADMSG;
	}
	while (off < len) {
		uint64_t field;
		size_t need;

		r = pbuf_varint(p, len, &off, &tag);
		if (r < 0)
			goto fail;
		field = tag >> 3;
		if (field == 0 || field > 536870911u)
			return -EBADMSG;
		switch (tag & 7) {
		case WIRE_WT_VARINT:
			r = pbuf_varint(p, len, &off, &v);
			if (r < 0)
				goto fail;
			continue;
		case WIRE_WT_I64:
			need = 8;
			break;
		case WIRE_WT_I32:
			need = 4;
			break;
		case WIRE_WT_LEN:
			r = pbuf_varint(p, len, &off, &v);
			if (r < 0)
				goto fail;
			if (v > max)
				return -EBADMSG;
			need = (size_t)v;
			break;
		default:
			return -EBADMSG;
		}
		if (need > len - off) {
			*why = AUTH_DROP_TRUNCATED;
			return -EBADMSG;
		}
		off += need;
	}
	return 0;

fail:
	*why = r == -ENODATA ? AUTH_DROP_TRUNCATED : AUTH_DROP_GARBAGE;
	return -EBADMSG;
}

/*
 * Presence: version, type, key id, payload and mac are all needed. A cut at
 * a field boundary leaves a prefix of them (they are written in that order),
 * which is a truncation; any other gap is garbage.
 */
static int
wire_env_check(const Tandem__Envelope *e, enum auth_drop *why)
{
	const int have[] = {
		e->has_version, e->has_type, e->has_key_id, e->has_payload,
		e->has_mac,
	};
	size_t n = sizeof(have) / sizeof(have[0]);
	size_t first_missing = n;

	for (size_t i = 0; i < n; i++) {
		if (!have[i] && first_missing == n)
			first_missing = i;
		if (have[i] && first_missing != n) {
			*why = AUTH_DROP_GARBAGE;
			return -EBADMSG;
		}
	}
	if (first_missing != n) {
		*why = AUTH_DROP_TRUNCATED;
		return -EBADMSG;
	}
	if (e->mac.len != AUTH_MAC_LEN) {
		*why = AUTH_DROP_GARBAGE;
		return -EBADMSG;
	}
	return 0;
}

int
wire_seal(enum wire_type type, const struct auth_keyring *kr,
    const uint8_t *payload, size_t plen, uint8_t *buf, size_t cap,
    size_t *len)
{
	Tandem__Envelope env = TANDEM__ENVELOPE__INIT;
	struct auth_hdr hdr = { .version = WIRE_VERSION, .type = type };
	uint8_t mac[AUTH_MAC_LEN];
	size_t need;
	int ret;

	if (type <= WIRE_MSG_NONE || type >= WIRE_MSG_COUNT)
		return -EINVAL;
	ret = auth_sign(kr, &hdr, payload, plen, mac);
	if (ret < 0)
		return ret;
	env.has_version = 1;
	env.version = hdr.version;
	env.has_type = 1;
	env.type = (Tandem__MsgType)type;
	env.has_key_id = 1;
	env.key_id = hdr.key_id;
	env.has_payload = 1;
	env.payload.len = plen;
	env.payload.data = (uint8_t *)(uintptr_t)payload;
	env.has_mac = 1;
	env.mac.len = AUTH_MAC_LEN;
	env.mac.data = mac;
	need = tandem__envelope__get_packed_size(&env);
	if (need > cap)
		return -EMSGSIZE;
	*len = tandem__envelope__pack(&env, buf);
	return 0;
}

/* ---- adverts --------------------------------------------------------- */

int
wire_advert_encode(const struct wire_advert *a,
    const struct auth_keyring *kr, uint8_t *buf, size_t cap, size_t *len)
{
	Tandem__Advert m;
	Tandem__Prefix pfx[WIRE_VIPS_MAX];
	Tandem__Prefix *ppfx[WIRE_VIPS_MAX];
	uint8_t payload[WIRE_ADVERT_MAX];
	size_t plen;

	if (!wire_advert_valid(a))
		return -EINVAL;
	wire_advert_export(a, &m, pfx, ppfx);
	plen = tandem__advert__get_packed_size(&m);
	if (plen > sizeof(payload))
		return -EMSGSIZE;
	plen = tandem__advert__pack(&m, payload);
	return wire_seal(WIRE_MSG_ADVERT, kr, payload, plen, buf,
	    cap < WIRE_ADVERT_MAX ? cap : WIRE_ADVERT_MAX, len);
}

/* Count and log one drop; always returns -EBADMSG. */
static int
wire_drop(struct wire_rx *rx, enum auth_drop why, enum auth_drop *whyp,
    const struct sockaddr *from, double now, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static int
wire_drop(struct wire_rx *rx, enum auth_drop why, enum auth_drop *whyp,
    const struct sockaddr *from, double now, const char *fmt, ...)
{
	char addr[WIRE_ADDRSTRLEN], detail[160], more[48] = "";
	unsigned suppressed = 0;
	va_list ap;

	if (whyp != NULL)
		*whyp = why;
	if (!auth_stats_drop(rx->stats, why, now, &suppressed))
		return -EBADMSG;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (suppressed > 0)
		snprintf(more, sizeof(more), " (%u more since the last line)",
		    suppressed);
	log_warnx("advert from %s: %s (%s), %s, ignoring%s",
	    wire_sa_ntop(from, addr, sizeof(addr)), auth_drop_name(why),
	    auth_drop_desc(why), detail, more);
	return -EBADMSG;
}

static const struct wire_rx_group *
wire_rx_group(const struct wire_rx *rx, uint32_t group)
{
	for (size_t i = 0; i < rx->ngroups; i++)
		if (rx->groups[i].group == group)
			return &rx->groups[i];
	return NULL;
}

int
wire_advert_recv(struct wire_rx *rx, const uint8_t *buf, size_t len,
    const struct sockaddr *from, double now, struct wire_advert *out,
    enum auth_drop *why)
{
	struct pbuf_alloc al;
	Tandem__Envelope *env;
	Tandem__Advert *adv;
	const struct wire_rx_group *g;
	struct auth_hdr hdr;
	enum auth_drop d;
	uint64_t version = 0;
	int ret;

	if (len > WIRE_ADVERT_MAX)
		return wire_drop(rx, AUTH_DROP_OVERSIZED, why, from, now,
		    "%zu bytes", len);
	if (wire_env_scan(buf, len, WIRE_ADVERT_MAX, &d, &version) < 0) {
		if (d == AUTH_DROP_BAD_VERSION)
			return wire_drop(rx, d, why, from, now,
			    "version %llu", (unsigned long long)version);
		return wire_drop(rx, d, why, from, now, "%zu bytes", len);
	}

	pbuf_alloc_init(&al);
	env = tandem__envelope__unpack(&al.pa, len, buf);
	if (env == NULL) {
		if (al.failed)
			return -ENOMEM;
		return wire_drop(rx, AUTH_DROP_GARBAGE, why, from, now,
		    "undecodable envelope of %zu bytes", len);
	}
	if (wire_env_check(env, &d) < 0) {
		ret = wire_drop(rx, d, why, from, now, "incomplete envelope");
		goto free_envelope;
	}
	/*
	 * Again after the scan: protobuf lets a later copy of a field win,
	 * and the scan only judged the first version field.
	 */
	if (env->version != WIRE_VERSION) {
		ret = wire_drop(rx, AUTH_DROP_BAD_VERSION, why, from, now,
		    "version %u", (unsigned)env->version);
		goto free_envelope;
	}
	if (env->type != TANDEM__MSG_TYPE__MSG_ADVERT) {
		ret = wire_drop(rx, AUTH_DROP_UNKNOWN_TYPE, why, from, now,
		    "type %d", (int)env->type);
		goto free_envelope;
	}

	adv = tandem__advert__unpack(&al.pa, env->payload.len,
	    env->payload.data);
	if (adv == NULL) {
		if (al.failed) {
			ret = -ENOMEM;
			goto free_envelope;
		}
		ret = wire_drop(rx, AUTH_DROP_GARBAGE, why, from, now,
		    "undecodable advert");
		goto free_envelope;
	}
	if (wire_advert_import(adv, out, &d) < 0) {
		ret = wire_drop(rx, d, why, from, now,
		    "advert fields missing or out of range");
		goto free_advert;
	}

	g = wire_rx_group(rx, out->group);
	if (g == NULL) {
		ret = wire_drop(rx, AUTH_DROP_WRONG_GROUP, why, from, now,
		    "group %u", (unsigned)out->group);
		goto free_advert;
	}
	hdr.version = env->version;
	hdr.type = (uint32_t)env->type;
	hdr.key_id = env->key_id;
	ret = auth_verify(g->keys, &hdr, env->payload.data, env->payload.len,
	    env->mac.data, env->mac.len);
	if (ret == -ENOKEY) {
		ret = wire_drop(rx, AUTH_DROP_UNKNOWN_KEY, why, from, now,
		    "group %u key 0x%08x", (unsigned)out->group,
		    (unsigned)env->key_id);
		goto free_advert;
	}
	if (ret == -EBADMSG) {
		ret = wire_drop(rx, AUTH_DROP_BAD_MAC, why, from, now,
		    "group %u key 0x%08x", (unsigned)out->group,
		    (unsigned)env->key_id);
		goto free_advert;
	}
	if (ret < 0)
		goto free_advert;

	ret = auth_replay_accept(rx->replay, out->node.addr,
	    wire_ip_len(out->node.family), out->group, out->boot_epoch,
	    out->seq, now, &d);
	if (ret == -EBADMSG) {
		char node[WIRE_ADDRSTRLEN];

		ret = wire_drop(rx, d, why, from, now,
		    "node %s group %u epoch %llu seq %llu",
		    wire_ip_ntop(&out->node, 0, node, sizeof(node)),
		    (unsigned)out->group, (unsigned long long)out->boot_epoch,
		    (unsigned long long)out->seq);
		goto free_advert;
	}
	if (ret < 0)
		goto free_advert;
	out->key_id = env->key_id;
	rx->stats->accepted++;
	ret = 0;

free_advert:
	tandem__advert__free_unpacked(adv, &al.pa);
free_envelope:
	tandem__envelope__free_unpacked(env, &al.pa);
	return ret;
}
