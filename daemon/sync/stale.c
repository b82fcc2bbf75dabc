/*
 * stale — after a crash takeover, tell rebuilt connections whose state the
 * peer contradicts from those that are whole. See struct repair_watch in
 * include/tandem/repair.h and research case 8a.
 *
 * Every rebuilt socket sends one window probe when it leaves repair mode; the
 * peer answers at once with its own seq (its snd_nxt) and ACK (its rcv_nxt).
 * A packet socket sees those answers before TCP does. Per connection:
 *
 *   PENDING --RST-----------------------------> GONE
 *      |  \--ACK outside [snd_una, snd_nxt]---> STALE (ack-below / ack-beyond)
 *      |  \--segment at (or spanning) rcv_nxt-> OK
 *      |  \--seq beyond rcv_nxt--> (hole: PENDING with the hole deadline)
 *      |                              |--segment at rcv_nxt--> OK
 *      |                              \--hole deadline-------> STALE (seq-hole)
 *      \--silence deadline------------------------------------> SILENT
 *
 * A seq behind rcv_nxt that does not reach it (a retransmission of bytes we
 * have, a keepalive probe) says nothing and changes nothing. Decisions are
 * final.
 */
#include <tandem/repair.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <sys/socket.h>

/* IPv4 with options (60) + the TCP fixed header (20), rounded up. */
#define WATCH_SNAPLEN 128
/* Packets read per repair_watch_process() call: keeps one call short. */
#define WATCH_BATCH 256
/* Enough for the answers of tens of thousands of probes arriving at once. */
#define WATCH_RCVBUF (16 * 1024 * 1024)
/* arm() throws away what was queued before; bounded like every loop. */
#define WATCH_DRAIN_MAX 65536

#define TCP_FL_FIN 0x01
#define TCP_FL_SYN 0x02
#define TCP_FL_RST 0x04
#define TCP_FL_ACK 0x10

struct watch_key {
	uint8_t family;   /* AF_INET / AF_INET6 (fits a byte on Linux) */
	uint8_t zero;
	uint16_t lport;   /* network byte order, as on the wire */
	uint16_t pport;
	uint8_t laddr[16];
	uint8_t paddr[16];
};

struct watch_entry {
	struct watch_key key;
	uint64_t cookie;
	uint32_t ack_lo;      /* our snd_una after the restore */
	uint32_t ack_hi;      /* our snd_nxt once the send queue is written again */
	uint32_t rcv_nxt;
	uint32_t peer_seq;
	uint32_t peer_ack;
	bool seen;
	bool ack_ok;          /* an ACK within [ack_lo, ack_hi] was seen */
	bool hole;
	enum repair_verdict_kind verdict;
	enum repair_reason reason;
	uint64_t added_ms;
	uint64_t deadline_ms;
	uint64_t decided_ms;
};

struct repair_watch {
	int fd;
	bool armed;
	struct repair_watch_cfg cfg;
	struct watch_entry *ents;
	size_t n, cap;
	uint32_t *index;          /* open addressing: entry index + 1, 0 = free */
	size_t index_cap;         /* power of two, >= 2 * cap */
	uint32_t *decided;        /* entry indices in decision order */
	size_t n_decided, next_out;
	size_t pending;
	uint64_t earliest;        /* no pending deadline before this (may be early) */
	struct repair_watch_stats stats;
};

static const char *const repair_verdict_names[] = {
#define REPAIR_VERDICT_NAME(e, s) [e] = s,
	REPAIR_VERDICTS(REPAIR_VERDICT_NAME)
#undef REPAIR_VERDICT_NAME
};

static const char *const repair_reason_names[] = {
#define REPAIR_REASON_NAME(e, s) [e] = s,
	REPAIR_REASONS(REPAIR_REASON_NAME)
#undef REPAIR_REASON_NAME
};

const char *
repair_verdict_name(enum repair_verdict_kind v)
{
	return (unsigned)v < REPAIR_VERDICT_COUNT ? repair_verdict_names[v] : "?";
}

const char *
repair_reason_name(enum repair_reason r)
{
	return (unsigned)r < REPAIR_REASON_COUNT ? repair_reason_names[r] : "?";
}

/*
 * Inbound TCP over IPv4 or IPv6 addressed to this host, cut to the headers.
 * Classic BPF on a SOCK_DGRAM packet socket: offset 0 is the network header.
 * Anything not PACKET_HOST (our own outgoing copies, frames flooded to the
 * old node's MAC) is dropped in the kernel.
 */
static const struct sock_filter watch_tcp_code[] = {
	/* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE)),
	/* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_HOST, 0, 7),
	/* 2 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_PROTOCOL)),
	/* 3 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, 0, 2),
	/* 4 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 9),
	/* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, 4, 3),
	/* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IPV6, 0, 2),
	/* 7 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 6),
	/* 8 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, 1, 0),
	/* 9 */ BPF_STMT(BPF_RET | BPF_K, 0),
	/* 10 */ BPF_STMT(BPF_RET | BPF_K, WATCH_SNAPLEN),
};

static const struct sock_filter watch_none_code[] = {
	BPF_STMT(BPF_RET | BPF_K, 0),
};

static int
watch_set_filter(int fd, const struct sock_filter *code, size_t len)
{
	struct sock_fprog prog = {
		.len = (unsigned short)len,
		/* The kernel only reads the program; the API lacks the const. */
		.filter = (struct sock_filter *)(uintptr_t)code,
	};

	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) == -1)
		return -errno;
	return 0;
}

static void
watch_drain(int fd)
{
	uint8_t buf[WATCH_SNAPLEN];
	int i;

	for (i = 0; i < WATCH_DRAIN_MAX; i++)
		if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) == -1)
			break;
}

int
repair_watch_new(unsigned ifindex, struct repair_watch **out)
{
	struct sockaddr_ll sll;
	struct repair_watch *w;
	int ret, size = WATCH_RCVBUF;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return -ENOMEM;
	w->cfg = (struct repair_watch_cfg)REPAIR_WATCH_CFG_DEFAULT;
	/*
	 * Protocol 0: no packet hook yet, so the bind() below registers one
	 * without first waiting for an RCU grace period to unregister it.
	 */
	w->fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (w->fd == -1) {
		ret = -errno;
		goto free_w;
	}
	if ((ret = watch_set_filter(w->fd, watch_none_code,
	    sizeof(watch_none_code) / sizeof(watch_none_code[0]))) < 0)
		goto close_fd;
	if (setsockopt(w->fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) == -1 &&
	    setsockopt(w->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)) == -1) {
		ret = -errno;
		goto close_fd;
	}
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = (int)ifindex;
	if (bind(w->fd, (struct sockaddr *)&sll, sizeof(sll)) == -1) {
		ret = -errno;
		goto close_fd;
	}
	*out = w;
	return 0;

close_fd:
	(void)close(w->fd);
free_w:
	free(w);
	return ret;
}

static void
watch_forget(struct repair_watch *w)
{
	free(w->ents);
	free(w->index);
	free(w->decided);
	w->ents = NULL;
	w->index = NULL;
	w->decided = NULL;
	w->n = w->cap = w->index_cap = 0;
	w->n_decided = w->next_out = w->pending = 0;
	w->earliest = UINT64_MAX;
}

void
repair_watch_free(struct repair_watch *w)
{
	if (w == NULL)
		return;
	watch_forget(w);
	(void)close(w->fd);
	free(w);
}

int
repair_watch_fd(const struct repair_watch *w)
{
	return w->fd;
}

static void
watch_read_drops(struct repair_watch *w)
{
	struct tpacket_stats st;
	socklen_t len = sizeof(st);

	/* Reading resets the kernel's counters: accumulate. */
	if (getsockopt(w->fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0)
		w->stats.kernel_drops += st.tp_drops;
}

int
repair_watch_arm(struct repair_watch *w, const struct repair_watch_cfg *cfg, uint64_t now_ms)
{
	int ret;

	(void)now_ms;
	watch_forget(w);
	w->cfg = cfg != NULL ? *cfg : (struct repair_watch_cfg)REPAIR_WATCH_CFG_DEFAULT;
	memset(&w->stats, 0, sizeof(w->stats));
	if ((ret = watch_set_filter(w->fd, watch_tcp_code,
	    sizeof(watch_tcp_code) / sizeof(watch_tcp_code[0]))) < 0)
		return ret;
	watch_drain(w->fd);
	watch_read_drops(w);
	w->stats.kernel_drops = 0;
	w->armed = true;
	return 0;
}

void
repair_watch_disarm(struct repair_watch *w)
{
	(void)watch_set_filter(w->fd, watch_none_code,
	    sizeof(watch_none_code) / sizeof(watch_none_code[0]));
	watch_drain(w->fd);
	watch_forget(w);
	w->armed = false;
}

static uint32_t
watch_hash(const struct watch_key *k)
{
	const uint8_t *p = (const uint8_t *)k;
	uint32_t h = 2166136261u;   /* FNV-1a */
	size_t i;

	for (i = 0; i < sizeof(*k); i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}

/* The slot holding key, or the free slot where it would go. */
static size_t
watch_slot(const struct repair_watch *w, const struct watch_key *k)
{
	size_t mask = w->index_cap - 1, i = watch_hash(k) & mask;

	while (w->index[i] != 0 &&
	    memcmp(&w->ents[w->index[i] - 1].key, k, sizeof(*k)) != 0)
		i = (i + 1) & mask;
	return i;
}

static struct watch_entry *
watch_find(const struct repair_watch *w, const struct watch_key *k)
{
	size_t i;

	if (w->index_cap == 0)
		return NULL;
	i = watch_slot(w, k);
	return w->index[i] != 0 ? &w->ents[w->index[i] - 1] : NULL;
}

static int
watch_grow(struct repair_watch *w)
{
	size_t cap = w->cap != 0 ? w->cap * 2 : 64, icap = cap * 2, i;
	struct watch_entry *ents;
	uint32_t *index, *decided;

	if (cap > UINT32_MAX / 4)
		return -ENOMEM;
	if ((ents = realloc(w->ents, cap * sizeof(*ents))) == NULL)
		return -ENOMEM;
	w->ents = ents;
	if ((decided = realloc(w->decided, cap * sizeof(*decided))) == NULL)
		return -ENOMEM;
	w->decided = decided;
	if ((index = calloc(icap, sizeof(*index))) == NULL)
		return -ENOMEM;
	free(w->index);
	w->index = index;
	w->index_cap = icap;
	w->cap = cap;
	for (i = 0; i < w->n; i++)
		w->index[watch_slot(w, &w->ents[i].key)] = (uint32_t)i + 1;
	return 0;
}

static int
watch_key_from(struct watch_key *k, const struct repair_sock *rs)
{
	memset(k, 0, sizeof(*k));
	switch (rs->local.sa.sa_family) {
	case AF_INET:
		if (rs->peer.sa.sa_family != AF_INET)
			return -EINVAL;
		k->family = AF_INET;
		k->lport = rs->local.in4.sin_port;
		k->pport = rs->peer.in4.sin_port;
		memcpy(k->laddr, &rs->local.in4.sin_addr, 4);
		memcpy(k->paddr, &rs->peer.in4.sin_addr, 4);
		return 0;
	case AF_INET6:
		if (rs->peer.sa.sa_family != AF_INET6)
			return -EINVAL;
		k->family = AF_INET6;
		k->lport = rs->local.in6.sin6_port;
		k->pport = rs->peer.in6.sin6_port;
		memcpy(k->laddr, &rs->local.in6.sin6_addr, 16);
		memcpy(k->paddr, &rs->peer.in6.sin6_addr, 16);
		return 0;
	default:
		return -EINVAL;
	}
}

static void
watch_set_deadline(struct repair_watch *w, struct watch_entry *e, uint64_t at)
{
	e->deadline_ms = at;
	if (at < w->earliest)
		w->earliest = at;
}

int
repair_watch_add(struct repair_watch *w, const struct repair_sock *rs, uint64_t cookie,
    uint64_t now_ms)
{
	struct watch_entry *e;
	struct watch_key k;
	size_t slot;
	int ret;

	if (!w->armed)
		return -ENOTCONN;
	if ((ret = watch_key_from(&k, rs)) < 0)
		return ret;
	if (watch_find(w, &k) != NULL)
		return -EEXIST;
	if (w->n == w->cap && (ret = watch_grow(w)) < 0)
		return ret;
	e = &w->ents[w->n];
	memset(e, 0, sizeof(*e));
	e->key = k;
	e->cookie = cookie;
	e->ack_lo = rs->write_seq - rs->sndq_len;
	e->ack_hi = rs->write_seq;
	e->rcv_nxt = rs->rcv_nxt;
	e->verdict = REPAIR_VERDICT_PENDING;
	e->reason = REPAIR_REASON_NONE;
	e->added_ms = now_ms;
	watch_set_deadline(w, e, now_ms + w->cfg.silence_timeout_ms);
	slot = watch_slot(w, &k);
	w->index[slot] = (uint32_t)w->n + 1;
	w->n++;
	w->pending++;
	return 0;
}

static void
watch_decide(struct repair_watch *w, struct watch_entry *e, enum repair_verdict_kind v,
    enum repair_reason r, uint64_t now_ms)
{
	e->verdict = v;
	e->reason = r;
	e->decided_ms = now_ms;
	w->decided[w->n_decided++] = (uint32_t)(e - w->ents);
	w->pending--;
}

/* What the watch needs from one TCP segment. */
struct watch_seg {
	struct watch_key key;
	uint32_t seq, ack, len;   /* len counts FIN, as sequence space does */
	uint8_t flags;
};

static uint16_t
watch_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
watch_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Parse pkt (network header first). Returns 0, or -EINVAL for anything else. */
static int
watch_parse(const uint8_t *pkt, size_t len, struct watch_seg *s)
{
	size_t iphl, total, doff;
	const uint8_t *tcp;

	memset(s, 0, sizeof(*s));
	if (len < 1)
		return -EINVAL;
	switch (pkt[0] >> 4) {
	case 4:
		if (len < 20)
			return -EINVAL;
		iphl = (size_t)(pkt[0] & 0x0f) * 4;
		total = watch_get16(pkt + 2);
		/* Only a first fragment (or none) carries the TCP header. */
		if (iphl < 20 || pkt[9] != IPPROTO_TCP || (watch_get16(pkt + 6) & 0x1fff) != 0)
			return -EINVAL;
		s->key.family = AF_INET;
		memcpy(s->key.paddr, pkt + 12, 4);
		memcpy(s->key.laddr, pkt + 16, 4);
		break;
	case 6:
		if (len < 40)
			return -EINVAL;
		iphl = 40;
		total = 40 + (size_t)watch_get16(pkt + 4);
		/* Extension headers before TCP are not followed: rare on a LAN. */
		if (pkt[6] != IPPROTO_TCP)
			return -EINVAL;
		s->key.family = AF_INET6;
		memcpy(s->key.paddr, pkt + 8, 16);
		memcpy(s->key.laddr, pkt + 24, 16);
		break;
	default:
		return -EINVAL;
	}
	if (len < iphl + 20)
		return -EINVAL;
	tcp = pkt + iphl;
	doff = (size_t)(tcp[12] >> 4) * 4;
	if (doff < 20 || total < iphl + doff)
		return -EINVAL;
	memcpy(&s->key.pport, tcp, 2);
	memcpy(&s->key.lport, tcp + 2, 2);
	s->seq = watch_get32(tcp + 4);
	s->ack = watch_get32(tcp + 8);
	s->flags = tcp[13];
	s->len = (uint32_t)(total - iphl - doff) + ((s->flags & TCP_FL_FIN) ? 1u : 0u);
	return 0;
}

static void
watch_judge(struct repair_watch *w, struct watch_entry *e, const struct watch_seg *s,
    uint64_t now_ms)
{
	if (s->flags & TCP_FL_SYN)
		return;   /* a new connection reusing the 4-tuple: not our peer's state */
	e->seen = true;
	e->peer_seq = s->seq;
	if (s->flags & TCP_FL_RST) {
		watch_decide(w, e, REPAIR_VERDICT_GONE, REPAIR_REASON_PEER_RST, now_ms);
		return;
	}
	/*
	 * Only until one ACK fell in range: after that the relay sends new data
	 * (a restored peer echoing its retransmitted bytes, say), and the
	 * peer's later ACKs rightly pass ack_hi.
	 */
	if (s->flags & TCP_FL_ACK)
		e->peer_ack = s->ack;   /* the latest: what a reset must carry */
	if ((s->flags & TCP_FL_ACK) && !e->ack_ok) {
		e->ack_ok = repair_seq_between(s->ack, e->ack_lo, e->ack_hi);
		if (!e->ack_ok) {
			watch_decide(w, e, REPAIR_VERDICT_STALE,
			    repair_seq_before(s->ack, e->ack_lo) ?
			    REPAIR_REASON_ACK_BELOW : REPAIR_REASON_ACK_BEYOND, now_ms);
			return;
		}
	}
	if (s->seq == e->rcv_nxt ||
	    (repair_seq_before(s->seq, e->rcv_nxt) &&
	     repair_seq_after(s->seq + s->len, e->rcv_nxt))) {
		watch_decide(w, e, REPAIR_VERDICT_OK, REPAIR_REASON_IN_ORDER, now_ms);
		return;
	}
	if (repair_seq_after(s->seq, e->rcv_nxt) && !e->hole) {
		e->hole = true;
		watch_set_deadline(w, e, now_ms + w->cfg.hole_timeout_ms);
	}
}

void
repair_watch_input(struct repair_watch *w, const uint8_t *pkt, size_t len, uint64_t now_ms)
{
	struct watch_entry *e;
	struct watch_seg s;

	if (!w->armed)
		return;
	w->stats.packets++;
	if (watch_parse(pkt, len, &s) < 0) {
		w->stats.malformed++;
		return;
	}
	if ((e = watch_find(w, &s.key)) == NULL)
		return;
	w->stats.matched++;
	if (e->verdict == REPAIR_VERDICT_PENDING)
		watch_judge(w, e, &s, now_ms);
}

void
repair_watch_expire(struct repair_watch *w, uint64_t now_ms)
{
	uint64_t earliest = UINT64_MAX;
	struct watch_entry *e;
	size_t i;

	if (w->pending == 0 || now_ms < w->earliest)
		return;
	for (i = 0; i < w->n; i++) {
		e = &w->ents[i];
		if (e->verdict != REPAIR_VERDICT_PENDING)
			continue;
		if (e->deadline_ms <= now_ms) {
			if (e->hole)
				watch_decide(w, e, REPAIR_VERDICT_STALE, REPAIR_REASON_SEQ_HOLE, now_ms);
			else
				watch_decide(w, e, REPAIR_VERDICT_SILENT, REPAIR_REASON_TIMEOUT, now_ms);
		} else if (e->deadline_ms < earliest) {
			earliest = e->deadline_ms;
		}
	}
	w->earliest = earliest;
}

int
repair_watch_process(struct repair_watch *w, uint64_t now_ms)
{
	uint8_t buf[WATCH_SNAPLEN];
	ssize_t n;
	int count = 0;

	for (;;) {
		if (count == WATCH_BATCH)
			return count;   /* more may be queued: no deadline applies yet */
		n = recv(w->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			return -errno;
		}
		count++;
		repair_watch_input(w, buf, (size_t)n, now_ms);
	}
	/*
	 * Only with the socket drained: an answer that arrived before a deadline
	 * but was read after it (the loop was busy rebuilding sockets) still counts.
	 */
	repair_watch_expire(w, now_ms);
	return count;
}

int
repair_watch_next_deadline(const struct repair_watch *w, uint64_t *deadline_ms)
{
	if (w->pending == 0)
		return -ENOENT;
	*deadline_ms = w->earliest;
	return 0;
}

size_t
repair_watch_pending(const struct repair_watch *w)
{
	return w->pending;
}

bool
repair_watch_verdict(struct repair_watch *w, struct repair_verdict *out)
{
	const struct watch_entry *e;

	if (w->next_out >= w->n_decided)
		return false;
	e = &w->ents[w->decided[w->next_out++]];
	out->cookie = e->cookie;
	out->verdict = e->verdict;
	out->reason = e->reason;
	out->seen = e->seen;
	out->peer_seq = e->peer_seq;
	out->peer_ack = e->peer_ack;
	out->after_ms = e->decided_ms - e->added_ms;
	return true;
}

void
repair_watch_get_stats(struct repair_watch *w, struct repair_watch_stats *out)
{
	watch_read_drops(w);
	*out = w->stats;
}
