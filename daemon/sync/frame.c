/*
 * frame — the sync channel's conversion boundary: internal structs <->
 * SyncHello / SyncFrame / SyncEvent, sealed in an Envelope and length-
 * prefixed. See include/tandem/sync.h. The only file of daemon/sync/ that
 * includes the protobuf-c generated header; nothing it returns points into
 * protobuf-c memory.
 */
#include <tandem/sync.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <tandem/pbuf.h>

#include "tandem.pb-c.h"

_Static_assert((int)SYNC_ROLE_STANDBY == (int)TANDEM__SYNC_ROLE__ROLE_STANDBY &&
    (int)SYNC_ROLE_ACTIVE == (int)TANDEM__SYNC_ROLE__ROLE_ACTIVE,
    "enum sync_role mirrors tandem.SyncRole");
_Static_assert((int)SYNC_HEALTH_UP == (int)TANDEM__SERVER_HEALTH__SERVER_UP &&
    (int)SYNC_HEALTH_DOWN == (int)TANDEM__SERVER_HEALTH__SERVER_DOWN &&
    (int)SYNC_HEALTH_DRAIN == (int)TANDEM__SERVER_HEALTH__SERVER_DRAIN &&
    (int)SYNC_HEALTH_MAINT == (int)TANDEM__SERVER_HEALTH__SERVER_MAINT,
    "enum sync_health mirrors tandem.ServerHealth");
_Static_assert((int)SYNC_BULK_BEGIN == (int)TANDEM__BULK_MARK__PHASE__BULK_BEGIN &&
    (int)SYNC_BULK_END == (int)TANDEM__BULK_MARK__PHASE__BULK_END,
    "enum sync_bulk_phase mirrors tandem.BulkMark.Phase");
_Static_assert((int)SYNC_SWITCH_REQUEST == (int)TANDEM__SWITCHOVER__PHASE__SWITCH_REQUEST &&
    (int)SYNC_SWITCH_FROZEN == (int)TANDEM__SWITCHOVER__PHASE__SWITCH_FROZEN &&
    (int)SYNC_SWITCH_DONE == (int)TANDEM__SWITCHOVER__PHASE__SWITCH_DONE &&
    (int)SYNC_SWITCH_ABORT == (int)TANDEM__SWITCHOVER__PHASE__SWITCH_ABORT,
    "enum sync_switch_phase mirrors tandem.Switchover.Phase");
_Static_assert(SYNC_EV_CONN == 0 && SYNC_DROP_GARBAGE == 0,
    "X-macro enums index arrays from 0");

#define SYNC_EV_NAME_(sym, name, desc) [SYNC_EV_##sym] = name,
static const char *const sync_ev_names[SYNC_EV_COUNT] = {
	SYNC_EV_LIST(SYNC_EV_NAME_)
};
#undef SYNC_EV_NAME_

static const char *const sync_switch_phase_names[SYNC_SWITCH_COUNT] = {
	[SYNC_SWITCH_REQUEST] = "request",
	[SYNC_SWITCH_FROZEN] = "frozen",
	[SYNC_SWITCH_DONE] = "done",
	[SYNC_SWITCH_ABORT] = "abort",
};

/* Protobuf wire types (encoding spec); groups (3, 4) are never used by us. */
enum {
	SYNCF_WT_VARINT = 0,
	SYNCF_WT_I64 = 1,
	SYNCF_WT_LEN = 2,
	SYNCF_WT_I32 = 5,
};

#define SYNCF_ENV_TAG_VERSION ((1u << 3) | SYNCF_WT_VARINT)
#define SYNCF_FRAME_FIELD_EVENTS 4
/* Envelope bytes around the payload: 5 small fields and the 32-byte MAC. */
#define SYNCF_ENV_OVERHEAD 64
#define SYNCF_BUF_LIMIT ((size_t)1 << 30)

const char *
sync_ev_name(enum sync_ev_type t)
{
	return (unsigned)t < SYNC_EV_COUNT ? sync_ev_names[t] : "?";
}

const char *
sync_switch_phase_name(enum sync_switch_phase p)
{
	return (unsigned)p < SYNC_SWITCH_COUNT ? sync_switch_phase_names[p] : "?";
}

/* ---- buffers --------------------------------------------------------- */

int
syncf_buf_reserve(struct sync_buf *b, size_t more)
{
	size_t want, cap;
	uint8_t *p;

	if (more > SYNCF_BUF_LIMIT - b->len)
		return -EMSGSIZE;
	want = b->len + more;
	if (want <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < want)
		cap *= 2;
	p = realloc(b->data, cap);
	if (p == NULL)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

void
syncf_buf_free(struct sync_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

/* ---- validity, shared by both directions ------------------------------ */

static size_t
syncf_addr_len(sa_family_t family)
{
	return family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
}

/* Names end up in key=value log lines: no spaces, quotes or control bytes. */
static int
syncf_name_valid(const char *s, int may_be_empty)
{
	size_t n = strnlen(s, SYNC_NAME_MAX);

	if (n == SYNC_NAME_MAX || (n == 0 && !may_be_empty))
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c >= 0x7f || c == '"' || c == '=')
			return 0;
	}
	return 1;
}

/*
 * A handover's reason is free text for the log ("tandemctl", "SIGTERM ...")
 * but still ends up in log lines: printable ASCII only, so a peer cannot
 * forge lines or escape sequences.
 */
static int
syncf_reason_valid(const char *s)
{
	size_t n = strnlen(s, SYNC_NAME_MAX);

	if (n == SYNC_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c >= 0x7f)
			return 0;
	}
	return 1;
}

static int
syncf_endpoint_valid(const struct sync_endpoint *e)
{
	return syncf_addr_len(e->family) != 0 && e->port != 0;
}

static int
syncf_sock_valid(const struct sync_sock *s)
{
	if (!syncf_endpoint_valid(&s->local) || !syncf_endpoint_valid(&s->peer) ||
	    s->local.family != s->peer.family)
		return 0;
	if (s->snd_wscale > 14 || s->rcv_wscale > 14 || s->mss_clamp == 0)
		return 0;
	if (s->recv_queue_len > SYNC_QUEUE_MAX || s->send_queue_len > SYNC_QUEUE_MAX)
		return 0;
	if ((s->recv_queue_len > 0 && s->recv_queue == NULL) ||
	    (s->send_queue_len > 0 && s->send_queue == NULL))
		return 0;
	return s->send_unsent <= s->send_queue_len;
}

int
syncf_event_valid(const struct sync_event *ev)
{
	switch (ev->type) {
	case SYNC_EV_CONN: {
		const struct sync_conn_state *c = &ev->u.conn;

		return syncf_name_valid(c->frontend, 0) &&
		    syncf_name_valid(c->backend, 0) &&
		    syncf_name_valid(c->server, 1) &&
		    syncf_sock_valid(&c->client) &&
		    (!c->has_server_sock || syncf_sock_valid(&c->server_sock));
	}
	case SYNC_EV_UPDATE:
	case SYNC_EV_CLOSE:
		return 1;
	case SYNC_EV_STICKY:
		return syncf_name_valid(ev->u.sticky.backend, 0) &&
		    syncf_name_valid(ev->u.sticky.server, 0) &&
		    ev->u.sticky.keylen >= 1 &&
		    ev->u.sticky.keylen <= SYNC_STICKY_KEY_MAX;
	case SYNC_EV_SERVER:
		return syncf_name_valid(ev->u.server.backend, 0) &&
		    syncf_name_valid(ev->u.server.server, 0) &&
		    (unsigned)ev->u.server.health < SYNC_HEALTH_COUNT;
	case SYNC_EV_BULK:
		return (unsigned)ev->u.bulk.phase < SYNC_BULK_COUNT;
	case SYNC_EV_SWITCH:
		return (unsigned)ev->u.sw.phase < SYNC_SWITCH_COUNT &&
		    ev->u.sw.id != 0 &&
		    ev->u.sw.ngroups <= SYNC_SWITCH_GROUPS_MAX &&
		    syncf_reason_valid(ev->u.sw.reason);
	case SYNC_EV_COUNT:
		break;
	}
	return 0;
}

int
syncf_hello_valid(const struct sync_hello *h)
{
	if (!syncf_name_valid(h->node_name, 0) || h->proto_version == 0 ||
	    (unsigned)h->role >= SYNC_ROLE_COUNT || h->nonce == 0)
		return 0;
	return h->node.family == 0 || syncf_addr_len(h->node.family) != 0;
}

/* ---- internal -> generated ------------------------------------------- */

static void
syncf_bytes_export(ProtobufCBinaryData *b, const void *p, size_t len)
{
	b->len = len;
	/* protobuf-c's pack only reads through this pointer. */
	b->data = (uint8_t *)(uintptr_t)p;
}

static char *
syncf_str_export(const char *s)
{
	return (char *)(uintptr_t)s;
}

static void
syncf_sock_export(const struct sync_sock *s, Tandem__SockState *m)
{
	tandem__sock_state__init(m);
	m->has_local_addr = 1;
	syncf_bytes_export(&m->local_addr, s->local.addr,
	    syncf_addr_len(s->local.family));
	m->has_local_port = 1;
	m->local_port = s->local.port;
	m->has_peer_addr = 1;
	syncf_bytes_export(&m->peer_addr, s->peer.addr,
	    syncf_addr_len(s->peer.family));
	m->has_peer_port = 1;
	m->peer_port = s->peer.port;
	m->has_snd_isn = 1;
	m->snd_isn = s->snd_isn;
	m->has_rcv_isn = 1;
	m->rcv_isn = s->rcv_isn;
	m->has_opt_sack = 1;
	m->opt_sack = s->opt_sack;
	m->has_opt_timestamps = 1;
	m->opt_timestamps = s->opt_timestamps;
	m->has_opt_wscale = 1;
	m->opt_wscale = s->opt_wscale;
	m->has_snd_wscale = 1;
	m->snd_wscale = s->snd_wscale;
	m->has_rcv_wscale = 1;
	m->rcv_wscale = s->rcv_wscale;
	m->has_mss_clamp = 1;
	m->mss_clamp = s->mss_clamp;
	m->has_ts_val = 1;
	m->ts_val = s->ts_val;
	m->has_ts_wall_ms = 1;
	m->ts_wall_ms = s->ts_wall_ms;
	m->has_snd_wnd = 1;
	m->snd_wnd = s->snd_wnd;
	m->has_max_window = 1;
	m->max_window = s->max_window;
	m->has_rcv_wnd = 1;
	m->rcv_wnd = s->rcv_wnd;
	m->has_bytes_written = 1;
	m->bytes_written = s->bytes_written;
	m->has_bytes_read = 1;
	m->bytes_read = s->bytes_read;
	/* Queues only when there are some: the frequent case stays small. */
	if (s->recv_queue_len > 0) {
		m->has_recv_queue = 1;
		syncf_bytes_export(&m->recv_queue, s->recv_queue,
		    s->recv_queue_len);
	}
	if (s->send_queue_len > 0) {
		m->has_send_queue = 1;
		syncf_bytes_export(&m->send_queue, s->send_queue,
		    s->send_queue_len);
		m->has_send_unsent = 1;
		m->send_unsent = s->send_unsent;
	}
}

/* Every sub-message the largest event needs, on the caller's stack. */
struct syncf_ev_storage {
	Tandem__SyncEvent ev;
	Tandem__ConnState conn;
	Tandem__SockState client;
	Tandem__SockState server;
	Tandem__ConnUpdate update;
	Tandem__ConnClose close;
	Tandem__StickyEntry sticky;
	Tandem__ServerState srv;
	Tandem__BulkMark bulk;
	Tandem__Switchover sw;
};

/* Fill st->ev from ev; borrows ev's memory, allocates nothing. */
static void
syncf_event_export(const struct sync_event *ev, struct syncf_ev_storage *st)
{
	Tandem__SyncEvent *m = &st->ev;

	tandem__sync_event__init(m);
	switch (ev->type) {
	case SYNC_EV_CONN: {
		const struct sync_conn_state *c = &ev->u.conn;

		tandem__conn_state__init(&st->conn);
		st->conn.has_id = 1;
		st->conn.id = c->id;
		st->conn.frontend = syncf_str_export(c->frontend);
		st->conn.backend = syncf_str_export(c->backend);
		st->conn.server = syncf_str_export(c->server);
		syncf_sock_export(&c->client, &st->client);
		st->conn.client = &st->client;
		if (c->has_server_sock) {
			syncf_sock_export(&c->server_sock, &st->server);
			st->conn.server_sock = &st->server;
		}
		st->conn.has_created_wall_ms = 1;
		st->conn.created_wall_ms = c->created_wall_ms;
		st->conn.has_client_eof = 1;
		st->conn.client_eof = c->client_eof;
		st->conn.has_server_eof = 1;
		st->conn.server_eof = c->server_eof;
		m->ev_case = TANDEM__SYNC_EVENT__EV_CONN;
		m->conn = &st->conn;
		break;
	}
	case SYNC_EV_UPDATE: {
		const struct sync_conn_update *u = &ev->u.update;

		tandem__conn_update__init(&st->update);
		st->update.has_id = 1;
		st->update.id = u->id;
		st->update.has_client_written = 1;
		st->update.client_written = u->client_written;
		st->update.has_client_read = 1;
		st->update.client_read = u->client_read;
		st->update.has_server_written = 1;
		st->update.server_written = u->server_written;
		st->update.has_server_read = 1;
		st->update.server_read = u->server_read;
		st->update.has_client_eof = 1;
		st->update.client_eof = u->client_eof;
		st->update.has_server_eof = 1;
		st->update.server_eof = u->server_eof;
		m->ev_case = TANDEM__SYNC_EVENT__EV_UPDATE;
		m->update = &st->update;
		break;
	}
	case SYNC_EV_CLOSE:
		tandem__conn_close__init(&st->close);
		st->close.has_id = 1;
		st->close.id = ev->u.close.id;
		m->ev_case = TANDEM__SYNC_EVENT__EV_CLOSED;
		m->closed = &st->close;
		break;
	case SYNC_EV_STICKY:
		tandem__sticky_entry__init(&st->sticky);
		st->sticky.backend = syncf_str_export(ev->u.sticky.backend);
		st->sticky.has_key = 1;
		syncf_bytes_export(&st->sticky.key, ev->u.sticky.key,
		    ev->u.sticky.keylen);
		st->sticky.server = syncf_str_export(ev->u.sticky.server);
		st->sticky.has_ttl_ms = 1;
		st->sticky.ttl_ms = ev->u.sticky.ttl_ms;
		m->ev_case = TANDEM__SYNC_EVENT__EV_STICKY;
		m->sticky = &st->sticky;
		break;
	case SYNC_EV_SERVER: {
		const struct sync_server *s = &ev->u.server;

		tandem__server_state__init(&st->srv);
		st->srv.backend = syncf_str_export(s->backend);
		st->srv.server = syncf_str_export(s->server);
		st->srv.has_health = 1;
		st->srv.health = (Tandem__ServerHealth)s->health;
		st->srv.has_rise_count = 1;
		st->srv.rise_count = s->rise_count;
		st->srv.has_fall_count = 1;
		st->srv.fall_count = s->fall_count;
		st->srv.has_eff_weight = 1;
		st->srv.eff_weight = s->eff_weight;
		st->srv.has_slowstart_left_ms = 1;
		st->srv.slowstart_left_ms = s->slowstart_left_ms;
		st->srv.has_active_conns = 1;
		st->srv.active_conns = s->active_conns;
		st->srv.has_ewma_us = 1;
		st->srv.ewma_us = s->ewma_us;
		st->srv.has_consec_fails = 1;
		st->srv.consec_fails = s->consec_fails;
		m->ev_case = TANDEM__SYNC_EVENT__EV_SERVER;
		m->server = &st->srv;
		break;
	}
	case SYNC_EV_BULK:
		tandem__bulk_mark__init(&st->bulk);
		st->bulk.has_phase = 1;
		st->bulk.phase = (Tandem__BulkMark__Phase)ev->u.bulk.phase;
		st->bulk.has_count = 1;
		st->bulk.count = ev->u.bulk.count;
		m->ev_case = TANDEM__SYNC_EVENT__EV_BULK;
		m->bulk = &st->bulk;
		break;
	case SYNC_EV_SWITCH: {
		const struct sync_switch *w = &ev->u.sw;

		tandem__switchover__init(&st->sw);
		st->sw.has_phase = 1;
		st->sw.phase = (Tandem__Switchover__Phase)w->phase;
		st->sw.has_id = 1;
		st->sw.id = w->id;
		st->sw.has_last_frame = 1;
		st->sw.last_frame = w->last_frame;
		st->sw.n_groups = w->ngroups;
		/* protobuf-c's pack only reads through this pointer. */
		st->sw.groups = (uint32_t *)(uintptr_t)w->groups;
		/* An empty reason stays off the wire: the receiver reads "". */
		if (w->reason[0] != '\0')
			st->sw.reason = syncf_str_export(w->reason);
		st->sw.has_restored = 1;
		st->sw.restored = w->restored;
		st->sw.has_reset = 1;
		st->sw.reset = w->reset;
		m->ev_case = TANDEM__SYNC_EVENT__EV_SWITCHOVER;
		m->switchover = &st->sw;
		break;
	}
	case SYNC_EV_COUNT:
		break;
	}
}

static size_t
syncf_put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	do {
		uint8_t c = (uint8_t)(v & 0x7f);

		v >>= 7;
		if (v != 0)
			c |= 0x80;
		p[n++] = c;
	} while (v != 0);
	return n;
}

int
syncf_event_append(struct sync_buf *evs, const struct sync_event *ev)
{
	struct syncf_ev_storage st;
	size_t size, n;
	int ret;

	if (!syncf_event_valid(ev))
		return -EINVAL;
	syncf_event_export(ev, &st);
	size = tandem__sync_event__get_packed_size(&st.ev);
	/* tag (1 byte) + length (at most 10) + the message */
	ret = syncf_buf_reserve(evs, 11 + size);
	if (ret < 0)
		return ret == -EMSGSIZE ? -EMSGSIZE : -ENOMEM;
	n = evs->len;
	evs->data[n++] = (SYNCF_FRAME_FIELD_EVENTS << 3) | SYNCF_WT_LEN;
	n += syncf_put_varint(evs->data + n, size);
	n += tandem__sync_event__pack(&st.ev, evs->data + n);
	evs->len = n;
	return 0;
}

/* Append [be32 length][Envelope(type, payload)] to out. */
static int
syncf_seal(struct sync_buf *out, enum wire_type type, const uint8_t *payload,
    size_t plen, size_t max, const struct auth_keyring *kr)
{
	size_t elen;
	uint8_t *p;
	int ret;

	if (plen + SYNCF_ENV_OVERHEAD > max)
		return -EMSGSIZE;
	ret = syncf_buf_reserve(out, 4 + plen + SYNCF_ENV_OVERHEAD);
	if (ret < 0)
		return ret;
	p = out->data + out->len;
	ret = wire_seal(type, kr, payload, plen, p + 4,
	    out->cap - out->len - 4, &elen);
	if (ret < 0)
		return ret;
	if (elen > max)
		return -EMSGSIZE;
	p[0] = (uint8_t)(elen >> 24);
	p[1] = (uint8_t)(elen >> 16);
	p[2] = (uint8_t)(elen >> 8);
	p[3] = (uint8_t)elen;
	out->len += 4 + elen;
	return 0;
}

int
syncf_frame_seal(struct sync_buf *out, const struct sync_frame_hdr *h,
    const uint8_t *evs, size_t evlen, size_t nevents,
    const struct auth_keyring *kr)
{
	Tandem__SyncFrame m = TANDEM__SYNC_FRAME__INIT;
	uint8_t *payload;
	size_t hlen;
	int ret;

	if (h->seq == 0 ? nevents != 0 || evlen != 0 :
	    nevents == 0 || nevents > SYNC_FRAME_EVENTS_MAX || h->epoch == 0 ||
	    h->echo != 0)
		return -EINVAL;
	if (evlen > SYNC_FRAME_MAX)
		return -EMSGSIZE;
	m.has_sync_epoch = 1;
	m.sync_epoch = h->epoch;
	m.has_seq = 1;
	m.seq = h->seq;
	m.has_ack = 1;
	m.ack = h->ack;
	m.has_ack_epoch = 1;
	m.ack_epoch = h->ack_epoch;
	if (h->echo != 0) {
		m.has_echo = 1;
		m.echo = h->echo;
	}
	hlen = tandem__sync_frame__get_packed_size(&m);
	payload = malloc(hlen + evlen);
	if (payload == NULL)
		return -ENOMEM;
	tandem__sync_frame__pack(&m, payload);
	/* Repeated fields may follow the others: the events go last, as encoded. */
	if (evlen > 0)
		memcpy(payload + hlen, evs, evlen);
	ret = syncf_seal(out, WIRE_MSG_SYNC_FRAME, payload, hlen + evlen,
	    SYNC_FRAME_MAX, kr);
	free(payload);
	return ret;
}

int
syncf_hello_seal(struct sync_buf *out, const struct sync_hello *h,
    const struct auth_keyring *kr)
{
	Tandem__SyncHello m = TANDEM__SYNC_HELLO__INIT;
	uint8_t payload[SYNC_HELLO_MAX];
	size_t plen;

	if (!syncf_hello_valid(h))
		return -EINVAL;
	m.node_name = syncf_str_export(h->node_name);
	if (h->node.family != 0) {
		m.has_node_addr = 1;
		syncf_bytes_export(&m.node_addr, h->node.addr,
		    syncf_addr_len(h->node.family));
	}
	m.has_proto_version = 1;
	m.proto_version = h->proto_version;
	m.has_boot_epoch = 1;
	m.boot_epoch = h->boot_epoch;
	m.has_config_digest = 1;
	syncf_bytes_export(&m.config_digest, h->config_digest, SYNC_DIGEST_LEN);
	m.has_role = 1;
	m.role = (Tandem__SyncRole)h->role;
	m.has_sync_epoch = 1;
	m.sync_epoch = h->sync_epoch;
	m.has_resume_epoch = 1;
	m.resume_epoch = h->resume_epoch;
	m.has_resume_after = 1;
	m.resume_after = h->resume_after;
	m.has_nonce = 1;
	m.nonce = h->nonce;
	plen = tandem__sync_hello__get_packed_size(&m);
	if (plen > sizeof(payload))
		return -EMSGSIZE;
	plen = tandem__sync_hello__pack(&m, payload);
	return syncf_seal(out, WIRE_MSG_SYNC_HELLO, payload, plen,
	    SYNC_HELLO_MAX, kr);
}

/* ---- generated -> internal ------------------------------------------- */

/*
 * Each import returns 0 or the drop reason as a positive number, so a
 * caller can tell "too big" (oversized) from "malformed" (garbage).
 */
#define SYNCF_OK 0
#define SYNCF_BAD (1 + SYNC_DROP_GARBAGE)
#define SYNCF_BIG (1 + SYNC_DROP_OVERSIZED)

static int
syncf_name_import(const char *s, char out[SYNC_NAME_MAX])
{
	size_t n;

	if (s == NULL) {
		out[0] = '\0';
		return SYNCF_OK;
	}
	n = strlen(s);
	if (n >= SYNC_NAME_MAX)
		return SYNCF_BAD;
	memcpy(out, s, n + 1);
	return SYNCF_OK;
}

static int
syncf_endpoint_import(const ProtobufCBinaryData *addr, uint32_t port,
    struct sync_endpoint *e)
{
	memset(e, 0, sizeof(*e));
	if (addr->len == 4)
		e->family = AF_INET;
	else if (addr->len == 16)
		e->family = AF_INET6;
	else
		return SYNCF_BAD;
	if (port > 65535)
		return SYNCF_BAD;
	memcpy(e->addr, addr->data, addr->len);
	e->port = (uint16_t)port;
	return SYNCF_OK;
}

static int
syncf_queue_import(const ProtobufCBinaryData *b, const uint8_t **out,
    size_t *outlen)
{
	uint8_t *p;

	if (b->len > SYNC_QUEUE_MAX)
		return SYNCF_BIG;
	if (b->len == 0)
		return SYNCF_OK;
	p = malloc(b->len);
	if (p == NULL)
		return -ENOMEM;
	memcpy(p, b->data, b->len);
	*out = p;
	*outlen = b->len;
	return SYNCF_OK;
}

static void
syncf_sock_release(struct sync_sock *s)
{
	free((void *)(uintptr_t)s->recv_queue);
	free((void *)(uintptr_t)s->send_queue);
	s->recv_queue = NULL;
	s->send_queue = NULL;
	s->recv_queue_len = 0;
	s->send_queue_len = 0;
}

/* Every field of version 1 must be present, queues excepted. */
static int
syncf_sock_import(const Tandem__SockState *m, struct sync_sock *s)
{
	int r;

	memset(s, 0, sizeof(*s));
	if (m == NULL || !m->has_local_addr || !m->has_local_port ||
	    !m->has_peer_addr || !m->has_peer_port || !m->has_snd_isn ||
	    !m->has_rcv_isn || !m->has_opt_sack || !m->has_opt_timestamps ||
	    !m->has_opt_wscale || !m->has_snd_wscale || !m->has_rcv_wscale ||
	    !m->has_mss_clamp || !m->has_ts_val || !m->has_ts_wall_ms ||
	    !m->has_snd_wnd || !m->has_max_window || !m->has_rcv_wnd ||
	    !m->has_bytes_written || !m->has_bytes_read)
		return SYNCF_BAD;
	if ((r = syncf_endpoint_import(&m->local_addr, m->local_port,
	    &s->local)) != 0 ||
	    (r = syncf_endpoint_import(&m->peer_addr, m->peer_port,
	    &s->peer)) != 0)
		return r;
	if (m->snd_wscale > 14 || m->rcv_wscale > 14 || m->mss_clamp > 65535)
		return SYNCF_BAD;
	s->snd_isn = m->snd_isn;
	s->rcv_isn = m->rcv_isn;
	s->opt_sack = m->opt_sack;
	s->opt_timestamps = m->opt_timestamps;
	s->opt_wscale = m->opt_wscale;
	s->snd_wscale = (uint8_t)m->snd_wscale;
	s->rcv_wscale = (uint8_t)m->rcv_wscale;
	s->mss_clamp = (uint16_t)m->mss_clamp;
	s->ts_val = m->ts_val;
	s->ts_wall_ms = m->ts_wall_ms;
	s->snd_wnd = m->snd_wnd;
	s->max_window = m->max_window;
	s->rcv_wnd = m->rcv_wnd;
	s->bytes_written = m->bytes_written;
	s->bytes_read = m->bytes_read;
	if (m->has_recv_queue &&
	    (r = syncf_queue_import(&m->recv_queue, &s->recv_queue,
	    &s->recv_queue_len)) != 0)
		return r;
	if (m->has_send_queue &&
	    (r = syncf_queue_import(&m->send_queue, &s->send_queue,
	    &s->send_queue_len)) != 0)
		return r;
	if (m->has_send_unsent)
		s->send_unsent = m->send_unsent;
	return SYNCF_OK;
}

static int
syncf_conn_import(const Tandem__ConnState *m, struct sync_conn_state *c)
{
	int r;

	if (!m->has_id || !m->has_created_wall_ms || !m->has_client_eof ||
	    !m->has_server_eof)
		return SYNCF_BAD;
	c->id = m->id;
	if ((r = syncf_name_import(m->frontend, c->frontend)) != 0 ||
	    (r = syncf_name_import(m->backend, c->backend)) != 0 ||
	    (r = syncf_name_import(m->server, c->server)) != 0)
		return r;
	if ((r = syncf_sock_import(m->client, &c->client)) != 0)
		return r;
	if (m->server_sock != NULL) {
		c->has_server_sock = true;
		if ((r = syncf_sock_import(m->server_sock, &c->server_sock)) != 0)
			return r;
	}
	c->created_wall_ms = m->created_wall_ms;
	c->client_eof = m->client_eof;
	c->server_eof = m->server_eof;
	return SYNCF_OK;
}

static int
syncf_event_import(const Tandem__SyncEvent *m, struct sync_event *ev)
{
	int r;

	switch ((int)m->ev_case) {
	case TANDEM__SYNC_EVENT__EV_CONN:
		ev->type = SYNC_EV_CONN;
		if ((r = syncf_conn_import(m->conn, &ev->u.conn)) != 0)
			return r;
		break;
	case TANDEM__SYNC_EVENT__EV_UPDATE: {
		const Tandem__ConnUpdate *u = m->update;

		ev->type = SYNC_EV_UPDATE;
		if (!u->has_id || !u->has_client_written || !u->has_client_read ||
		    !u->has_server_written || !u->has_server_read ||
		    !u->has_client_eof || !u->has_server_eof)
			return SYNCF_BAD;
		ev->u.update.id = u->id;
		ev->u.update.client_written = u->client_written;
		ev->u.update.client_read = u->client_read;
		ev->u.update.server_written = u->server_written;
		ev->u.update.server_read = u->server_read;
		ev->u.update.client_eof = u->client_eof;
		ev->u.update.server_eof = u->server_eof;
		break;
	}
	case TANDEM__SYNC_EVENT__EV_CLOSED:
		ev->type = SYNC_EV_CLOSE;
		if (!m->closed->has_id)
			return SYNCF_BAD;
		ev->u.close.id = m->closed->id;
		break;
	case TANDEM__SYNC_EVENT__EV_STICKY: {
		const Tandem__StickyEntry *s = m->sticky;

		ev->type = SYNC_EV_STICKY;
		if (!s->has_key || !s->has_ttl_ms)
			return SYNCF_BAD;
		if (s->key.len > SYNC_STICKY_KEY_MAX)
			return SYNCF_BIG;
		if ((r = syncf_name_import(s->backend, ev->u.sticky.backend)) != 0 ||
		    (r = syncf_name_import(s->server, ev->u.sticky.server)) != 0)
			return r;
		if (s->key.len > 0)
			memcpy(ev->u.sticky.key, s->key.data, s->key.len);
		ev->u.sticky.keylen = s->key.len;
		ev->u.sticky.ttl_ms = s->ttl_ms;
		break;
	}
	case TANDEM__SYNC_EVENT__EV_SERVER: {
		const Tandem__ServerState *s = m->server;
		struct sync_server *o = &ev->u.server;

		ev->type = SYNC_EV_SERVER;
		if (!s->has_health || !s->has_rise_count || !s->has_fall_count ||
		    !s->has_eff_weight || !s->has_slowstart_left_ms ||
		    !s->has_active_conns || !s->has_ewma_us ||
		    !s->has_consec_fails)
			return SYNCF_BAD;
		if ((unsigned)s->health >= SYNC_HEALTH_COUNT)
			return SYNCF_BAD;
		if ((r = syncf_name_import(s->backend, o->backend)) != 0 ||
		    (r = syncf_name_import(s->server, o->server)) != 0)
			return r;
		o->health = (enum sync_health)s->health;
		o->rise_count = s->rise_count;
		o->fall_count = s->fall_count;
		o->eff_weight = s->eff_weight;
		o->slowstart_left_ms = s->slowstart_left_ms;
		o->active_conns = s->active_conns;
		o->ewma_us = s->ewma_us;
		o->consec_fails = s->consec_fails;
		break;
	}
	case TANDEM__SYNC_EVENT__EV_BULK:
		ev->type = SYNC_EV_BULK;
		if (!m->bulk->has_phase || !m->bulk->has_count ||
		    (unsigned)m->bulk->phase >= SYNC_BULK_COUNT)
			return SYNCF_BAD;
		ev->u.bulk.phase = (enum sync_bulk_phase)m->bulk->phase;
		ev->u.bulk.count = m->bulk->count;
		break;
	case TANDEM__SYNC_EVENT__EV_SWITCHOVER: {
		const Tandem__Switchover *w = m->switchover;
		struct sync_switch *o = &ev->u.sw;

		ev->type = SYNC_EV_SWITCH;
		/* Every field but the reason, as version 1 sends them. */
		if (!w->has_phase || !w->has_id || !w->has_last_frame ||
		    !w->has_restored || !w->has_reset ||
		    (unsigned)w->phase >= SYNC_SWITCH_COUNT)
			return SYNCF_BAD;
		if (w->n_groups > SYNC_SWITCH_GROUPS_MAX)
			return SYNCF_BIG;
		if ((r = syncf_name_import(w->reason, o->reason)) != 0)
			return r;
		o->phase = (enum sync_switch_phase)w->phase;
		o->id = w->id;
		o->last_frame = w->last_frame;
		o->ngroups = w->n_groups;
		if (w->n_groups > 0)
			memcpy(o->groups, w->groups,
			    w->n_groups * sizeof(o->groups[0]));
		o->restored = w->restored;
		o->reset = w->reset;
		break;
	}
	case TANDEM__SYNC_EVENT__EV__NOT_SET:
	default:
		/* An event kind a newer peer added: v1 cannot apply it. */
		return SYNCF_BAD;
	}
	return syncf_event_valid(ev) ? SYNCF_OK : SYNCF_BAD;
}

static void
syncf_events_release(struct sync_event *evs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (evs[i].type != SYNC_EV_CONN)
			continue;
		syncf_sock_release(&evs[i].u.conn.client);
		syncf_sock_release(&evs[i].u.conn.server_sock);
	}
	free(evs);
}

static int
syncf_hello_import(const Tandem__SyncHello *m, struct sync_hello *h)
{
	memset(h, 0, sizeof(*h));
	if (!m->has_proto_version || !m->has_boot_epoch ||
	    !m->has_config_digest || !m->has_role || !m->has_sync_epoch ||
	    !m->has_resume_epoch || !m->has_resume_after || !m->has_nonce)
		return SYNCF_BAD;
	if (m->config_digest.len != SYNC_DIGEST_LEN ||
	    (unsigned)m->role >= SYNC_ROLE_COUNT)
		return SYNCF_BAD;
	if (m->node_name == NULL || syncf_name_import(m->node_name,
	    h->node_name) != SYNCF_OK)
		return SYNCF_BAD;
	if (m->has_node_addr) {
		if (syncf_endpoint_import(&m->node_addr, 0, &h->node) != 0)
			return SYNCF_BAD;
	}
	h->proto_version = m->proto_version;
	h->boot_epoch = m->boot_epoch;
	memcpy(h->config_digest, m->config_digest.data, SYNC_DIGEST_LEN);
	h->role = (enum sync_role)m->role;
	h->sync_epoch = m->sync_epoch;
	h->resume_epoch = m->resume_epoch;
	h->resume_after = m->resume_after;
	h->nonce = m->nonce;
	return syncf_hello_valid(h) ? SYNCF_OK : SYNCF_BAD;
}

/* ---- scanning unauthenticated bytes ----------------------------------- */

/*
 * Walk the top-level fields of a protobuf message, so that a cut-off one
 * can be told from a malformed one (protobuf-c only says "no"), and so
 * that repeated fields can be counted before protobuf-c allocates them.
 * Returns 0, -ENODATA (a field runs past the end) or -EBADMSG; *count is
 * the number of length-delimited fields numbered count_field.
 */
static int
syncf_walk(const uint8_t *p, size_t len, size_t off, uint64_t count_field,
    size_t *count)
{
	uint64_t tag, v;
	int r;

	*count = 0;
	while (off < len) {
		size_t need;

		if ((r = pbuf_varint(p, len, &off, &tag)) < 0)
			return r;
		if ((tag >> 3) == 0 || (tag >> 3) > 536870911u)
			return -EBADMSG;
		switch (tag & 7) {
		case SYNCF_WT_VARINT:
			if ((r = pbuf_varint(p, len, &off, &v)) < 0)
				return r;
			continue;
		case SYNCF_WT_I64:
			need = 8;
			break;
		case SYNCF_WT_I32:
			need = 4;
			break;
		case SYNCF_WT_LEN:
			if ((r = pbuf_varint(p, len, &off, &v)) < 0)
				return r;
			if (v > len)
				return -ENODATA;
			need = (size_t)v;
			if ((tag >> 3) == count_field)
				(*count)++;
			break;
		default:
			return -EBADMSG;
		}
		if (need > len - off)
			return -ENODATA;
		off += need;
	}
	return 0;
}

/*
 * An Envelope starts with its version (field 1, written first): anything
 * else is garbage. The version is judged before the rest, because a later
 * version may lay the rest out differently.
 */
static int
syncf_env_scan(const uint8_t *p, size_t len, enum sync_drop *why)
{
	size_t off = 0, n;
	uint64_t tag, v;
	int r;

	*why = SYNC_DROP_TRUNCATED;
	if (len == 0)
		return -EBADMSG;
	r = pbuf_varint(p, len, &off, &tag);
	if (r < 0 || tag != SYNCF_ENV_TAG_VERSION) {
		*why = r == -ENODATA ? SYNC_DROP_TRUNCATED : SYNC_DROP_GARBAGE;
		return -EBADMSG;
	}
	r = pbuf_varint(p, len, &off, &v);
	if (r < 0) {
		*why = r == -ENODATA ? SYNC_DROP_TRUNCATED : SYNC_DROP_GARBAGE;
		return -EBADMSG;
	}
	if (v != WIRE_VERSION) {
		*why = SYNC_DROP_BAD_VERSION;
		return -EBADMSG;
	}
	r = syncf_walk(p, len, off, 0, &n);
	if (r < 0) {
		*why = r == -ENODATA ? SYNC_DROP_TRUNCATED : SYNC_DROP_GARBAGE;
		return -EBADMSG;
	}
	return 0;
}

/*
 * version, type, key id, payload and mac are all needed, in that order on
 * the wire: a missing tail is a cut at a field boundary (truncated), a gap
 * is garbage.
 */
static int
syncf_env_check(const Tandem__Envelope *e, enum sync_drop *why)
{
	const int have[] = {
		e->has_version, e->has_type, e->has_key_id, e->has_payload,
		e->has_mac,
	};
	size_t n = sizeof(have) / sizeof(have[0]);
	size_t first_missing = n;

	*why = SYNC_DROP_GARBAGE;
	for (size_t i = 0; i < n; i++) {
		if (!have[i] && first_missing == n)
			first_missing = i;
		if (have[i] && first_missing != n)
			return -EBADMSG;
	}
	if (first_missing != n) {
		*why = SYNC_DROP_TRUNCATED;
		return -EBADMSG;
	}
	/* Again after the scan: a later copy of a field wins in protobuf. */
	if (e->version != WIRE_VERSION) {
		*why = SYNC_DROP_BAD_VERSION;
		return -EBADMSG;
	}
	return e->mac.len == AUTH_MAC_LEN ? 0 : -EBADMSG;
}

static int
syncf_open_frame(const uint8_t *p, size_t len, struct pbuf_alloc *al,
    struct sync_msg *out, enum sync_drop *why)
{
	Tandem__SyncFrame *m;
	size_t nev;
	int ret, r;

	*why = SYNC_DROP_GARBAGE;
	if (syncf_walk(p, len, 0, SYNCF_FRAME_FIELD_EVENTS, &nev) < 0)
		return -EBADMSG;
	if (nev > SYNC_FRAME_EVENTS_MAX) {
		*why = SYNC_DROP_OVERSIZED;
		return -EBADMSG;
	}
	m = tandem__sync_frame__unpack(&al->pa, len, p);
	if (m == NULL)
		return al->failed ? -ENOMEM : -EBADMSG;
	ret = -EBADMSG;
	if (!m->has_sync_epoch || !m->has_seq || !m->has_ack ||
	    !m->has_ack_epoch)
		goto free_frame;
	/* A numbered frame carries events; a pure ack (seq 0) none. */
	if (m->seq == 0 ? m->n_events != 0 || (m->has_echo && m->echo == 0) :
	    m->n_events == 0 || m->sync_epoch == 0 || m->has_echo)
		goto free_frame;
	out->hdr.epoch = m->sync_epoch;
	out->hdr.seq = m->seq;
	out->hdr.ack_epoch = m->ack_epoch;
	out->hdr.ack = m->ack;
	out->hdr.echo = m->has_echo ? m->echo : 0;
	if (m->n_events > 0) {
		out->events = calloc(m->n_events, sizeof(*out->events));
		if (out->events == NULL) {
			ret = -ENOMEM;
			goto free_frame;
		}
	}
	for (size_t i = 0; i < m->n_events; i++) {
		/* Counted before the import, so a partial event is released too. */
		out->nevents = i + 1;
		r = syncf_event_import(m->events[i], &out->events[i]);
		if (r < 0) {
			ret = r;
			goto free_events;
		}
		if (r > 0) {
			*why = (enum sync_drop)(r - 1);
			goto free_events;
		}
	}
	ret = 0;
	goto free_frame;

free_events:
	syncf_events_release(out->events, out->nevents);
	out->events = NULL;
	out->nevents = 0;
free_frame:
	tandem__sync_frame__free_unpacked(m, &al->pa);
	return ret;
}

int
syncf_open(const uint8_t *buf, size_t len, size_t max,
    const struct auth_keyring *kr, struct sync_msg *out, enum sync_drop *why)
{
	struct pbuf_alloc al;
	Tandem__Envelope *env;
	Tandem__SyncHello *hello;
	struct auth_hdr hdr;
	int ret;

	memset(out, 0, sizeof(*out));
	if (len > max) {
		*why = SYNC_DROP_OVERSIZED;
		return -EBADMSG;
	}
	if (syncf_env_scan(buf, len, why) < 0)
		return -EBADMSG;
	pbuf_alloc_init(&al);
	env = tandem__envelope__unpack(&al.pa, len, buf);
	if (env == NULL) {
		if (al.failed)
			return -ENOMEM;
		*why = SYNC_DROP_GARBAGE;
		return -EBADMSG;
	}
	ret = -EBADMSG;
	if (syncf_env_check(env, why) < 0)
		goto free_envelope;

	/*
	 * One keyring for the whole channel, so unlike adverts the MAC can be
	 * checked before the payload is parsed: only authentic bytes reach
	 * the payload decoders.
	 */
	hdr.version = env->version;
	hdr.type = (uint32_t)env->type;
	hdr.key_id = env->key_id;
	ret = auth_verify(kr, &hdr, env->payload.data, env->payload.len,
	    env->mac.data, env->mac.len);
	if (ret == -ENOKEY || ret == -EBADMSG) {
		*why = ret == -ENOKEY ? SYNC_DROP_UNKNOWN_KEY : SYNC_DROP_BAD_MAC;
		ret = -EBADMSG;
		goto free_envelope;
	}
	if (ret < 0)
		goto free_envelope;
	out->authenticated = true;
	out->key_id = env->key_id;

	ret = -EBADMSG;
	switch ((int)env->type) {
	case TANDEM__MSG_TYPE__MSG_SYNC_HELLO:
		out->type = WIRE_MSG_SYNC_HELLO;
		*why = SYNC_DROP_GARBAGE;
		if (env->payload.len > SYNC_HELLO_MAX) {
			*why = SYNC_DROP_OVERSIZED;
			break;
		}
		hello = tandem__sync_hello__unpack(&al.pa, env->payload.len,
		    env->payload.data);
		if (hello == NULL) {
			if (al.failed)
				ret = -ENOMEM;
			break;
		}
		if (syncf_hello_import(hello, &out->hello) == SYNCF_OK)
			ret = 0;
		tandem__sync_hello__free_unpacked(hello, &al.pa);
		break;
	case TANDEM__MSG_TYPE__MSG_SYNC_FRAME:
		out->type = WIRE_MSG_SYNC_FRAME;
		ret = syncf_open_frame(env->payload.data, env->payload.len, &al,
		    out, why);
		break;
	default:
		*why = SYNC_DROP_UNKNOWN_TYPE;
		break;
	}

free_envelope:
	tandem__envelope__free_unpacked(env, &al.pa);
	if (ret < 0) {
		bool authenticated = out->authenticated;

		syncf_msg_clear(out);
		out->authenticated = authenticated;
	}
	return ret;
}

void
syncf_msg_clear(struct sync_msg *m)
{
	syncf_events_release(m->events, m->nevents);
	memset(m, 0, sizeof(*m));
}
