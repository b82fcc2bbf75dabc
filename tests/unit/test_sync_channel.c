/*
 * Unit tests for the sync channel (daemon/sync/channel.c) over loopback TCP
 * (127.0.0.1 only): two channels on one libev loop for handshake, ordered
 * delivery, acks, resume, resync, overflow and config mismatch; and a
 * hand-driven fake peer (a plain socket speaking the codec) for each drop
 * reason the channel judges on a live stream.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include <tandem/auth.h>
#include <tandem/log.h>
#include <tandem/sync.h>

/*
 * Allocation failure injection (tests/unit/meson.build links this test with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc): test_seal_failures fails
 * the allocations of one frame seal in turn.
 */
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
extern void *__real_malloc(size_t n) __attribute__((weak));
extern void *__real_calloc(size_t n, size_t size) __attribute__((weak));
extern void *__real_realloc(void *p, size_t n) __attribute__((weak));

static long alloc_fail_at = -1;
static long alloc_count;
static int alloc_wrapped;

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

/* The same for the outgoing connection (-Wl,--wrap=socket,--wrap=connect). */
int __wrap_socket(int domain, int type, int protocol);
int __real_socket(int domain, int type, int protocol);
int __wrap_connect(int fd, const struct sockaddr *sa, socklen_t len);
int __real_connect(int fd, const struct sockaddr *sa, socklen_t len);

static int fail_socket;     /* the next socket() fails with EMFILE */
static int fail_connect;    /* the next connect() fails with ENETUNREACH */

int
__wrap_socket(int domain, int type, int protocol)
{
	if (fail_socket) {
		fail_socket = 0;
		errno = EMFILE;
		return -1;
	}
	return __real_socket(domain, type, protocol);
}

int
__wrap_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	if (fail_connect) {
		fail_connect = 0;
		errno = ENETUNREACH;
		return -1;
	}
	return __real_connect(fd, sa, len);
}

static const uint8_t key_a[32] = "0123456789abcdef0123456789abcdef";
static const uint8_t key_b[32] = "fedcba9876543210fedcba9876543210";

#define RUN_LIMIT 10.0      /* s: no condition in these tests takes this long */

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- one node: a channel and what its callbacks saw ------------------------ */

struct node {
	const char *name;
	struct sync *ch;
	struct sync_cfg cfg;
	struct sockaddr_in addr;
	int ups, downs, resyncs, bulk_begins, bulk_ends, mismatches;
	uint64_t bulk_id;
	uint64_t last_bulk_count;
	bool last_bulk_complete;
	size_t snapshot;            /* CONN events queued per snapshot */
	bool answer_resync;         /* end the snapshot inside on_resync_needed */
	uint64_t sent;              /* update ids queued so far */
	uint64_t events;            /* events delivered */
	uint64_t updates;
	uint64_t conns;
	uint64_t last_update;       /* id of the last update delivered */
	bool any_next;              /* after BULK BEGIN: any id may come next */
	int order_broken;
	uint64_t big_ok;            /* 1 MiB receive queues that arrived intact */
	uint64_t big_bad;
	struct sync_event last_conn;
	uint64_t switches;          /* SWITCH events delivered */
	uint64_t conns_at_switch;   /* conns delivered before the last one */
	uint64_t updates_at_switch;
	struct sync_switch last_switch;
	struct sync_peer peer;
	bool fd_taken;              /* cfg.listen_fd went to sync_new() */
};

static void
on_event(void *arg, const struct sync_event *ev)
{
	struct node *n = arg;

	n->events++;
	if (ev->type == SYNC_EV_UPDATE) {
		if (!n->any_next && ev->u.update.id != n->last_update + 1)
			n->order_broken++;
		n->any_next = false;
		n->last_update = ev->u.update.id;
		n->updates++;
	} else if (ev->type == SYNC_EV_CONN) {
		const struct sync_sock *c = &ev->u.conn.client;

		n->conns++;
		if (c->recv_queue_len == (1u << 20)) {
			size_t i = 0;

			while (i < c->recv_queue_len &&
			    c->recv_queue[i] == (uint8_t)(i * 7))
				i++;
			if (i == c->recv_queue_len)
				n->big_ok++;
			else
				n->big_bad++;
		}
		n->last_conn = *ev;
		/* The queues are only borrowed for the callback. */
		n->last_conn.u.conn.client.recv_queue = NULL;
		n->last_conn.u.conn.client.send_queue = NULL;
		n->last_conn.u.conn.server_sock.recv_queue = NULL;
		n->last_conn.u.conn.server_sock.send_queue = NULL;
	} else if (ev->type == SYNC_EV_SWITCH) {
		n->switches++;
		n->conns_at_switch = n->conns;
		n->updates_at_switch = n->updates;
		n->last_switch = ev->u.sw;
	}
}

static void
on_peer_up(void *arg, const struct sync_peer *p)
{
	struct node *n = arg;

	n->ups++;
	n->peer = *p;
}

static void
on_peer_down(void *arg, const char *why)
{
	((struct node *)arg)->downs++;
}

static void
conn_event(struct sync_event *ev, uint64_t id)
{
	struct sync_sock *s = &ev->u.conn.client;

	memset(ev, 0, sizeof(*ev));
	ev->type = SYNC_EV_CONN;
	ev->u.conn.id = id;
	snprintf(ev->u.conn.frontend, sizeof(ev->u.conn.frontend), "www");
	snprintf(ev->u.conn.backend, sizeof(ev->u.conn.backend), "web");
	s->local.family = s->peer.family = AF_INET;
	s->local.port = 80;
	s->peer.port = (uint16_t)(1024 + id % 60000);
	inet_pton(AF_INET, "198.18.0.100", s->local.addr);
	inet_pton(AF_INET, "198.18.0.10", s->peer.addr);
	s->mss_clamp = 1460;
	s->snd_isn = 0xfffffff0u;
	s->bytes_written = id;
}

static void
on_resync_needed(void *arg, uint64_t bulk_id)
{
	struct node *n = arg;

	n->resyncs++;
	n->bulk_id = bulk_id;
	for (size_t i = 0; i < n->snapshot; i++) {
		struct sync_event ev;

		conn_event(&ev, 1000 + i);
		assert_int_equal(sync_queue_event(n->ch, &ev), 0);
	}
	if (n->answer_resync)
		assert_int_equal(sync_bulk_end(n->ch, bulk_id), 0);
}

static void
on_bulk_begin(void *arg)
{
	struct node *n = arg;

	n->bulk_begins++;
	n->any_next = true;
}

static void
on_bulk_end(void *arg, uint64_t count, bool complete)
{
	struct node *n = arg;

	n->bulk_ends++;
	n->last_bulk_count = count;
	n->last_bulk_complete = complete;
}

static void
on_mismatch(void *arg, const uint8_t digest[SYNC_DIGEST_LEN])
{
	((struct node *)arg)->mismatches++;
}

static const struct sync_ops ops = {
	.on_event = on_event,
	.on_peer_up = on_peer_up,
	.on_peer_down = on_peer_down,
	.on_resync_needed = on_resync_needed,
	.on_bulk_begin = on_bulk_begin,
	.on_bulk_end = on_bulk_end,
	.on_mismatch = on_mismatch,
};

/* ---- fixture --------------------------------------------------------------------- */

struct fx {
	struct ev_loop *loop;
	ev_timer tick;              /* wakes EVRUN_ONCE so conditions are polled */
	struct auth_keyring *kr;
	struct auth_keyring *other;
	struct node a;              /* "lb1": the lower name, keeps its outgoing link */
	struct node b;              /* "lb2" */
};

static void
tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
}

static int
listen_on(struct sockaddr_in *sin, const char *addr)
{
	socklen_t len = sizeof(*sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, addr, &sin->sin_addr);
	assert_int_equal(bind(fd, (struct sockaddr *)sin, sizeof(*sin)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)sin, &len), 0);
	return fd;
}

/* A loopback port nobody listens on (connecting there is refused). */
static void
dead_port(struct sockaddr_in *sin)
{
	int fd = listen_on(sin, "127.0.0.1");

	close(fd);
}

static void
node_prepare(struct node *n, const char *name, uint64_t boot)
{
	memset(n, 0, sizeof(*n));
	n->name = name;
	n->answer_resync = true;
	n->cfg.node_name = name;
	n->cfg.have_listen_fd = true;
	n->cfg.listen_fd = listen_on(&n->addr, "127.0.0.1");
	memcpy(&n->cfg.listen, &n->addr, sizeof(n->addr));
	n->cfg.listenlen = sizeof(n->addr);
	n->cfg.boot_epoch = boot;
	memset(n->cfg.config_digest, 0x5a, SYNC_DIGEST_LEN);
	n->cfg.keepalive_ms = 100;
	n->cfg.dead_ms = 2000;
	n->cfg.backoff_min_ms = 10;
	n->cfg.backoff_max_ms = 100;
}

static void
node_create(struct fx *f, struct node *n, const struct sockaddr_in *peer,
    const struct auth_keyring *kr)
{
	memcpy(&n->cfg.peer, peer, sizeof(*peer));
	n->cfg.peerlen = sizeof(*peer);
	n->fd_taken = true;
	assert_int_equal(sync_new(f->loop, &n->cfg, kr, &ops, n, &n->ch), 0);
}

static int
fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	/* SYNC_TEST_LOG=1 shows the channel's log lines when debugging. */
	log_init(getenv("SYNC_TEST_LOG") != NULL ? LOG_LVL_DEBUG : LOG_LVL_ERR,
	    0, "test_sync_channel");
	f->loop = ev_loop_new(EVFLAG_AUTO);
	f->kr = auth_keyring_new();
	f->other = auth_keyring_new();
	if (f->loop == NULL || f->kr == NULL || f->other == NULL ||
	    auth_keyring_add(f->kr, key_a, 32, 1, NULL) < 0 ||
	    auth_keyring_add(f->other, key_b, 32, 1, NULL) < 0)
		return -1;
	ev_timer_init(&f->tick, tick_cb, 0.005, 0.005);
	ev_timer_start(f->loop, &f->tick);
	node_prepare(&f->a, "lb1", 10);
	node_prepare(&f->b, "lb2", 20);
	*state = f;
	return 0;
}

static int
fx_teardown(void **state)
{
	struct fx *f = *state;

	sync_free(f->a.ch);
	sync_free(f->b.ch);
	if (!f->a.fd_taken && f->a.cfg.listen_fd >= 0)
		close(f->a.cfg.listen_fd);
	if (!f->b.fd_taken && f->b.cfg.listen_fd >= 0)
		close(f->b.cfg.listen_fd);
	ev_timer_stop(f->loop, &f->tick);
	ev_loop_destroy(f->loop);
	auth_keyring_free(f->kr);
	auth_keyring_free(f->other);
	free(f);
	return 0;
}

/* Run the loop until cond holds; false after RUN_LIMIT seconds. */
static bool
run_until(struct fx *f, bool (*cond)(struct fx *), double limit)
{
	double end = now_s() + limit;

	while (!cond(f)) {
		if (now_s() > end)
			return false;
		ev_run(f->loop, EVRUN_ONCE);
	}
	return true;
}

static void
run_for(struct fx *f, double secs)
{
	double end = now_s() + secs;

	while (now_s() < end)
		ev_run(f->loop, EVRUN_ONCE);
}

static bool
node_up(const struct node *n)
{
	struct sync_info in;

	if (n->ch == NULL)
		return false;
	sync_info(n->ch, &in);
	return in.state == SYNC_STATE_UP;
}

/* Both up, each holding a complete snapshot of the other's (new) stream. */
static bool
both_synced(struct fx *f)
{
	return node_up(&f->a) && node_up(&f->b) &&
	    sync_stats(f->a.ch)->bulks_in == (uint64_t)f->a.bulk_begins &&
	    sync_stats(f->b.ch)->bulks_in == (uint64_t)f->b.bulk_begins &&
	    f->a.bulk_begins > 0 && f->b.bulk_begins > 0;
}

/* Both up on the same connection for a while: crossings are resolved. */
static bool
both_stable(struct fx *f)
{
	struct sync_info ia, ib;

	if (!node_up(&f->a) || !node_up(&f->b))
		return false;
	sync_info(f->a.ch, &ia);
	sync_info(f->b.ch, &ib);
	return ia.up_for > 0.05 && ib.up_for > 0.05 &&
	    ia.peer.outgoing != ib.peer.outgoing;
}

static void
pair_up(struct fx *f)
{
	node_create(f, &f->a, &f->b.addr, f->kr);
	node_create(f, &f->b, &f->a.addr, f->kr);
	sync_start(f->a.ch);
	sync_start(f->b.ch);
	assert_true(run_until(f, both_synced, RUN_LIMIT));
	assert_true(run_until(f, both_stable, RUN_LIMIT));
}

static void
queue_updates(struct node *n, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		struct sync_event ev = { .type = SYNC_EV_UPDATE };

		ev.u.update.id = ++n->sent;
		ev.u.update.client_written = n->sent * 3;
		assert_int_equal(sync_queue_event(n->ch, &ev), 0);
	}
}

static struct node *want_node;
static uint64_t want_updates;

static bool
got_updates(struct fx *f)
{
	return want_node->updates >= want_updates;
}

static bool
a_all_acked(struct fx *f)
{
	struct sync_info in;

	sync_info(f->a.ch, &in);
	return in.unacked_frames == 0 && in.tx_acked == in.tx_seq;
}

static uint64_t
tx_seq_of(const struct sync *ch)
{
	struct sync_info in;

	sync_info(ch, &in);
	return in.tx_seq;
}

/* ---- pair tests ---------------------------------------------------------------------- */

static void
test_handshake(void **state)
{
	struct fx *f = *state;
	struct sync_info ia, ib;

	pair_up(f);
	/* Settle: any crossed connection is resolved and closed by now. */
	run_for(f, 0.1);
	sync_info(f->a.ch, &ia);
	sync_info(f->b.ch, &ib);
	assert_int_equal(f->a.ups, 1);
	assert_int_equal(f->b.ups, 1);
	assert_int_equal(f->a.downs, 0);
	assert_int_equal(f->b.downs, 0);
	assert_string_equal(ia.peer.name, "lb2");
	assert_string_equal(ib.peer.name, "lb1");
	assert_int_equal(ia.peer.boot_epoch, 20);
	assert_int_equal(ib.peer.boot_epoch, 10);
	/* Both keep the connection lb1 (the lower name) opened. */
	assert_true(ia.peer.outgoing);
	assert_false(ib.peer.outgoing);
	assert_true(ia.digest_match && ib.digest_match);
	assert_int_equal(f->a.mismatches + f->b.mismatches, 0);
	/* The first handshake opens a stream each way, with a snapshot. */
	assert_int_equal(f->a.resyncs, 1);
	assert_int_equal(f->b.resyncs, 1);
	assert_int_equal(ia.tx_epoch, (UINT64_C(10) << SYNC_EPOCH_GEN_BITS) + 1);
	assert_int_equal(ia.rx_epoch, (UINT64_C(20) << SYNC_EPOCH_GEN_BITS) + 1);
	assert_int_equal(ib.rx_epoch, ia.tx_epoch);
	assert_true(f->a.last_bulk_complete && f->b.last_bulk_complete);
	assert_int_equal(f->a.last_bulk_count, 0);
	assert_false(ia.bulk_sending || ia.bulk_receiving || ia.resync_pending);
	/* Each handshake after the first was a crossed connection, closed. */
	assert_int_equal(sync_stats(f->a.ch)->handshakes,
	    1 + sync_stats(f->a.ch)->duplicates);
	assert_int_equal(sync_stats(f->b.ch)->handshakes,
	    1 + sync_stats(f->b.ch)->duplicates);
	for (int i = 0; i < SYNC_DROP_COUNT; i++) {
		/* A crossed connection can resend a frame: nothing else drops. */
		if (i == SYNC_DROP_REPLAY)
			continue;
		assert_int_equal(sync_stats(f->a.ch)->drops[i], 0);
		assert_int_equal(sync_stats(f->b.ch)->drops[i], 0);
	}
}

static void
test_snapshot_and_events_in_order(void **state)
{
	struct fx *f = *state;
	struct sync_event ev, sticky;
	struct sync_info in;

	f->a.snapshot = 50;
	pair_up(f);
	assert_int_equal(f->b.conns, 50);
	assert_int_equal(f->b.last_bulk_count, 50);
	assert_true(f->b.last_bulk_complete);

	/* Many turns, several frames per turn, every kind of event. */
	for (int turn = 0; turn < 20; turn++) {
		queue_updates(&f->a, 500);
		ev_run(f->loop, EVRUN_NOWAIT);
	}
	conn_event(&ev, 77);
	ev.u.conn.has_server_sock = true;
	ev.u.conn.server_sock = ev.u.conn.client;
	ev.u.conn.server_sock.local.port = 33333;
	assert_int_equal(sync_queue_event(f->a.ch, &ev), 0);
	memset(&sticky, 0, sizeof(sticky));
	sticky.type = SYNC_EV_STICKY;
	snprintf(sticky.u.sticky.backend, sizeof(sticky.u.sticky.backend), "web");
	snprintf(sticky.u.sticky.server, sizeof(sticky.u.sticky.server), "be1");
	sticky.u.sticky.keylen = 1;
	assert_int_equal(sync_queue_event(f->a.ch, &sticky), 0);
	queue_updates(&f->a, 10);
	want_node = &f->b;
	want_updates = 10010;
	assert_true(run_until(f, got_updates, RUN_LIMIT));
	assert_int_equal(f->b.updates, 10010);
	assert_int_equal(f->b.last_update, 10010);
	assert_int_equal(f->b.order_broken, 0);
	assert_int_equal(f->b.conns, 51);
	assert_int_equal(f->b.last_conn.u.conn.id, 77);
	assert_true(f->b.last_conn.u.conn.has_server_sock);
	assert_int_equal(f->b.last_conn.u.conn.server_sock.local.port, 33333);
	assert_int_equal(f->b.events, 50 + 10010 + 1 + 1);
	assert_int_equal(sync_stats(f->b.ch)->events_in, f->b.events);

	/* The acks trim the retransmit queue to nothing. */
	assert_true(run_until(f, a_all_acked, RUN_LIMIT));
	sync_info(f->a.ch, &in);
	assert_int_equal(in.queued_bytes, 0);
	assert_int_equal(in.lag_ms, 0);
	assert_true(in.tx_seq > 10);            /* batches were split into frames */
	assert_true(sync_stats(f->b.ch)->acks_out > 0);
}

static bool
b_got_switch_and_update(struct fx *f)
{
	return f->b.switches > 0 && f->b.updates > 0;
}

/*
 * A planned handover's marker is an ordinary event for the channel: queued
 * by the caller, delivered through on_event, after every event queued
 * before it (across frames too).
 */
static void
test_switch_in_order(void **state)
{
	struct fx *f = *state;
	struct sync_event ev;
	uint64_t frames_before;

	pair_up(f);
	frames_before = tx_seq_of(f->a.ch);
	/* Enough CONN events for several frames. */
	for (uint64_t id = 1; id <= 1500; id++) {
		conn_event(&ev, id);
		assert_int_equal(sync_queue_event(f->a.ch, &ev), 0);
	}
	memset(&ev, 0, sizeof(ev));
	ev.type = SYNC_EV_SWITCH;
	ev.u.sw.phase = SYNC_SWITCH_FROZEN;
	ev.u.sw.id = 7;
	ev.u.sw.last_frame = 1234;
	ev.u.sw.ngroups = 2;
	ev.u.sw.groups[0] = 1;
	ev.u.sw.groups[1] = 42;
	snprintf(ev.u.sw.reason, sizeof(ev.u.sw.reason), "tandemctl");
	assert_int_equal(sync_queue_event(f->a.ch, &ev), 0);
	queue_updates(&f->a, 1);
	assert_true(run_until(f, b_got_switch_and_update, RUN_LIMIT));
	assert_true(tx_seq_of(f->a.ch) - frames_before > 1);
	assert_int_equal(f->b.switches, 1);
	assert_int_equal(f->b.conns_at_switch, 1500);
	assert_int_equal(f->b.last_conn.u.conn.id, 1500);
	assert_int_equal(f->b.updates_at_switch, 0);
	assert_int_equal(f->b.updates, 1);
	assert_int_equal(f->b.last_switch.phase, SYNC_SWITCH_FROZEN);
	assert_int_equal(f->b.last_switch.id, 7);
	assert_int_equal(f->b.last_switch.last_frame, 1234);
	assert_int_equal(f->b.last_switch.ngroups, 2);
	assert_int_equal(f->b.last_switch.groups[1], 42);
	assert_string_equal(f->b.last_switch.reason, "tandemctl");
	assert_int_equal(sync_stats(f->b.ch)->events_in, f->b.events);
	assert_int_equal(f->b.events, 1500 + 1 + 1);

	/* Invalid markers are refused at the sender. */
	ev.u.sw.id = 0;
	assert_int_equal(sync_queue_event(f->a.ch, &ev), -EINVAL);
	ev.u.sw.id = 8;
	ev.u.sw.phase = SYNC_SWITCH_COUNT;
	assert_int_equal(sync_queue_event(f->a.ch, &ev), -EINVAL);
}

/* Frames written but never read are lost with the connection; resumed. */
static void
test_resume_after_reconnect(void **state)
{
	struct fx *f = *state;
	uint64_t resyncs_a, begins_b;

	pair_up(f);
	run_for(f, 0.05);
	resyncs_a = sync_stats(f->a.ch)->resyncs;
	begins_b = f->b.bulk_begins;
	queue_updates(&f->a, 300);
	assert_int_equal(sync_flush(f->a.ch), 0);  /* in B's socket, unread */
	sync_reconnect(f->b.ch, "test: drop with unread frames");
	queue_updates(&f->a, 300);                  /* while the link is down */
	want_node = &f->b;
	want_updates = 600;
	assert_true(run_until(f, got_updates, RUN_LIMIT));
	run_for(f, 0.05);
	assert_int_equal(f->b.updates, 600);
	assert_int_equal(f->b.last_update, 600);
	assert_int_equal(f->b.order_broken, 0);
	/* No snapshot: the stream went on where B was. */
	assert_int_equal(sync_stats(f->a.ch)->resyncs, resyncs_a);
	assert_int_equal(f->b.bulk_begins, begins_b);
	assert_true(sync_stats(f->a.ch)->resumes >= 1);
	assert_true(sync_stats(f->a.ch)->retransmits >= 1);
	assert_true(f->a.downs >= 1 && f->b.downs >= 1);
	assert_true(f->a.ups == 1 + f->a.downs);
	assert_true(run_until(f, a_all_acked, RUN_LIMIT));
}

/* B applied frames whose acks never left: the resume starts after them. */
static void
test_no_duplicates_before_ack(void **state)
{
	struct fx *f = *state;

	pair_up(f);
	queue_updates(&f->a, 200);
	want_node = &f->b;
	want_updates = 200;
	assert_true(run_until(f, got_updates, RUN_LIMIT));
	/* Whatever B acked or not, A drops at once. */
	sync_reconnect(f->a.ch, "test: drop before the acks");
	queue_updates(&f->a, 50);
	want_updates = 250;
	assert_true(run_until(f, got_updates, RUN_LIMIT));
	run_for(f, 0.1);
	assert_int_equal(f->b.updates, 250);
	assert_int_equal(f->b.order_broken, 0);
	assert_int_equal(f->b.bulk_begins, 1);
}

static bool
b_synced_again(struct fx *f)
{
	return node_up(&f->b) && f->b.bulk_ends > 0 && node_up(&f->a);
}

/* B restarts with nothing: A cannot resume and sends a new snapshot. */
static void
test_resync_when_peer_lost_state(void **state)
{
	struct fx *f = *state;
	uint64_t epoch;
	struct sync_info in;

	f->a.snapshot = 10;
	pair_up(f);
	queue_updates(&f->a, 100);
	want_node = &f->b;
	want_updates = 100;
	assert_true(run_until(f, got_updates, RUN_LIMIT));
	sync_info(f->a.ch, &in);
	epoch = in.tx_epoch;

	sync_free(f->b.ch);
	f->b.ch = NULL;
	/* A new boot on a new port: A still dials the old one (refused), and
	 * takes B's connection, which comes from the peer address it knows. */
	node_prepare(&f->b, "lb2", 21);
	node_create(f, &f->b, &f->a.addr, f->kr);
	sync_start(f->b.ch);
	assert_true(run_until(f, b_synced_again, RUN_LIMIT));
	assert_int_equal(f->a.resyncs, 2);
	assert_int_equal(f->b.bulk_begins, 1);
	assert_int_equal(f->b.conns, 10);
	assert_int_equal(f->b.last_bulk_count, 10);
	assert_true(f->b.last_bulk_complete);
	sync_info(f->a.ch, &in);
	assert_true(in.tx_epoch > epoch);
	assert_int_equal(in.peer.boot_epoch, 21);
	/* Updates after the snapshot arrive in order on the new stream. */
	queue_updates(&f->a, 5);
	want_updates = 5;
	assert_true(run_until(f, got_updates, RUN_LIMIT));
	assert_int_equal(f->b.order_broken, 0);
	assert_int_equal(f->b.last_update, f->a.sent);
}

static bool
resynced_twice(struct fx *f)
{
	return node_up(&f->a) && f->b.bulk_begins == 2 && f->b.bulk_ends == 2;
}

/* The peer does not ack: the queue overflows, the link drops, a resync follows. */
static void
test_overflow_resync(void **state)
{
	struct fx *f = *state;
	struct sync_info in;
	int i;

	f->a.cfg.max_queue_bytes = 16 << 10;
	f->a.snapshot = 3;
	pair_up(f);
	for (i = 0; i < 1000 && sync_stats(f->a.ch)->overflows == 0; i++) {
		queue_updates(&f->a, 50);
		assert_int_equal(sync_flush(f->a.ch), 0);
	}
	assert_int_equal(sync_stats(f->a.ch)->overflows, 1);
	sync_info(f->a.ch, &in);
	assert_true(in.resync_pending);
	assert_int_equal(in.queued_bytes, 0);
	assert_int_equal(f->a.downs, 1);
	/* Until the next handshake, events are discarded (counted). */
	queue_updates(&f->a, 10);
	assert_true(sync_stats(f->a.ch)->discarded >= 10);
	assert_int_equal(sync_bulk_end(f->a.ch, f->a.bulk_id), -ESTALE);

	assert_true(run_until(f, resynced_twice, RUN_LIMIT));
	assert_int_equal(f->a.resyncs, 2);
	assert_true(f->b.last_bulk_complete);
	assert_int_equal(f->b.last_bulk_count, 3);
	assert_int_equal(f->b.order_broken, 0);
	sync_info(f->a.ch, &in);
	assert_false(in.resync_pending);
}

static void
test_digest_mismatch(void **state)
{
	struct fx *f = *state;
	struct sync_info in;

	f->b.cfg.config_digest[5] ^= 0xff;
	pair_up(f);
	assert_true(f->a.mismatches >= 1);
	assert_true(f->b.mismatches >= 1);
	sync_info(f->a.ch, &in);
	assert_false(in.digest_match);
	assert_true(in.peer_known);
	assert_int_equal(in.peer.config_digest[5], 0x5a ^ 0xff);
	assert_true(sync_stats(f->a.ch)->mismatches >= 1);
	/* Reported, not fatal: the channel stays up for tandemctl. */
	assert_int_equal(in.state, SYNC_STATE_UP);
	/* Fixing the config reconnects and both sides agree again. */
	sync_set_digest(f->b.ch, f->a.cfg.config_digest);
	run_for(f, 0.3);
	assert_true(node_up(&f->a));
	sync_info(f->a.ch, &in);
	assert_true(in.digest_match);
}

static void
test_api_errors(void **state)
{
	struct fx *f = *state;
	struct sync_event ev = { .type = SYNC_EV_BULK };

	pair_up(f);
	assert_int_equal(sync_queue_event(f->a.ch, &ev), -EINVAL);
	ev.type = SYNC_EV_STICKY;   /* no names */
	assert_int_equal(sync_queue_event(f->a.ch, &ev), -EINVAL);
	assert_int_equal(sync_bulk_end(f->a.ch, f->a.bulk_id), -ESTALE);
	assert_int_equal(sync_bulk_end(f->a.ch, 12345), -ESTALE);
	assert_int_equal(sync_set_keyring(f->a.ch, f->other), 0);
	{
		struct auth_keyring *nosend = auth_keyring_new();

		assert_non_null(nosend);
		assert_int_equal(sync_set_keyring(f->a.ch, nosend), -ENOKEY);
		auth_keyring_free(nosend);
	}
	assert_int_equal(sync_set_keyring(f->a.ch, f->kr), 0);
}

static bool
b_last_is_20(struct fx *f)
{
	return f->b.last_update == 20;
}

/* sync_resync on a live link: a new stream and snapshot, no reconnect. */
static void
test_resync_live(void **state)
{
	struct fx *f = *state;
	uint64_t handshakes;

	f->a.snapshot = 4;
	pair_up(f);
	handshakes = sync_stats(f->a.ch)->handshakes;
	queue_updates(&f->a, 10);
	ev_run(f->loop, EVRUN_NOWAIT);
	sync_resync(f->a.ch);
	assert_int_equal(f->a.resyncs, 2);
	queue_updates(&f->a, 10);
	assert_true(run_until(f, resynced_twice, RUN_LIMIT));
	assert_true(run_until(f, b_last_is_20, RUN_LIMIT));
	run_for(f, 0.05);
	assert_int_equal(f->b.order_broken, 0);
	assert_int_equal(f->b.last_update, 20);
	assert_int_equal(sync_stats(f->a.ch)->handshakes, handshakes);
	assert_int_equal(f->b.conns, 8);
}

static bool
b_has_big(struct fx *f)
{
	return f->b.bulk_begins == 2 && f->b.bulk_ends == 2;
}

/*
 * Megabyte frames (a switchover's queues) fill the socket, so the last one
 * written is cut; a new stream started then must finish that frame first,
 * or the peer would read garbage.
 */
static void
test_resync_mid_frame(void **state)
{
	struct fx *f = *state;
	uint8_t *q = malloc(1u << 20);
	struct sync_info in;

	assert_non_null(q);
	for (size_t i = 0; i < (1u << 20); i++)
		q[i] = (uint8_t)(i * 7);
	pair_up(f);
	for (uint64_t id = 1; id <= 8; id++) {
		struct sync_event ev;

		conn_event(&ev, id);
		ev.u.conn.client.recv_queue = q;
		ev.u.conn.client.recv_queue_len = 1u << 20;
		assert_int_equal(sync_queue_event(f->a.ch, &ev), 0);
	}
	assert_int_equal(sync_flush(f->a.ch), 0);
	sync_info(f->a.ch, &in);
	assert_true(in.unsent_frames > 0);       /* the socket did not take it all */
	f->a.snapshot = 1;
	sync_resync(f->a.ch);
	assert_true(run_until(f, b_has_big, RUN_LIMIT));
	/* What went out before the new stream arrived whole; the rest was
	 * superseded by the snapshot. */
	assert_true(f->b.big_ok >= 1 && f->b.big_ok < 8);
	assert_int_equal(f->b.big_bad, 0);
	assert_int_equal(f->b.conns, f->b.big_ok + 1);
	assert_int_equal(sync_stats(f->b.ch)->drops[SYNC_DROP_GARBAGE], 0);
	assert_int_equal(sync_stats(f->b.ch)->drops[SYNC_DROP_TRUNCATED], 0);
	assert_int_equal(sync_stats(f->b.ch)->drops[SYNC_DROP_BAD_MAC], 0);
	assert_int_equal(f->b.downs, 0);
	assert_true(f->b.last_bulk_complete);
	assert_int_equal(f->b.last_bulk_count, 1);
	free(q);
}

static bool
a_resynced(struct fx *f)
{
	return node_up(&f->a) && f->b.bulk_ends == f->b.bulk_begins &&
	    (uint64_t)f->a.resyncs == sync_stats(f->a.ch)->resyncs &&
	    !f->a.order_broken && f->a.resyncs >= 2;
}

/*
 * A frame that cannot be sealed (no memory) loses our stream: the link
 * drops and the next handshake starts a new stream. Each allocation of the
 * seal fails in turn: the frame itself, then its payload.
 */
static void
test_seal_failures(void **state)
{
	struct fx *f = *state;

	pair_up(f);
	alloc_wrapped = 0;
	for (long at = 0; at < 2; at++) {
		int resyncs = f->a.resyncs, ret;

		queue_updates(&f->a, 5);
		alloc_count = 0;
		alloc_fail_at = at;
		ret = sync_flush(f->a.ch);
		alloc_fail_at = -1;
		if (!alloc_wrapped)
			skip();
		assert_int_equal(ret, -ENOMEM);
		assert_false(node_up(&f->a));
		assert_int_equal(f->a.downs, at + 1);
		assert_true(run_until(f, a_resynced, RUN_LIMIT));
		/* One new stream, or more if the reconnect crossed. */
		assert_true(f->a.resyncs > resyncs);
		assert_true(run_until(f, both_stable, RUN_LIMIT));
	}
	/* The new stream works (once any crossing after the drops is resolved:
	 * a new stream started meanwhile would supersede these updates). */
	assert_true(run_until(f, both_stable, RUN_LIMIT));
	assert_true(run_until(f, both_synced, RUN_LIMIT));
	queue_updates(&f->a, 5);
	want_node = &f->b;
	want_updates = f->b.updates + 5;
	assert_true(run_until(f, got_updates, RUN_LIMIT));
	assert_int_equal(f->b.order_broken, 0);
	assert_int_equal(f->b.last_update, f->a.sent);
}

static void
test_wrong_key_pair(void **state)
{
	struct fx *f = *state;

	node_create(f, &f->a, &f->b.addr, f->kr);
	node_create(f, &f->b, &f->a.addr, f->other);
	sync_start(f->a.ch);
	sync_start(f->b.ch);
	run_for(f, 0.2);
	assert_false(node_up(&f->a));
	assert_false(node_up(&f->b));
	assert_true(sync_stats(f->a.ch)->drops[SYNC_DROP_UNKNOWN_KEY] > 0);
	assert_true(sync_stats(f->b.ch)->drops[SYNC_DROP_UNKNOWN_KEY] > 0);
	assert_int_equal(f->a.ups + f->b.ups, 0);
}

/* ---- the fake peer: a plain socket speaking the codec ------------------------------ */

struct fake {
	int fd;
	struct sync_buf in;
	uint64_t a_nonce;           /* from A's hello */
	uint64_t a_epoch;           /* A's stream, from its frames */
};

/* Only A: its peer is a dead port, the fake connects to its listener. */
static void
a_alone(struct fx *f)
{
	struct sockaddr_in nobody;

	dead_port(&nobody);
	node_create(f, &f->a, &nobody, f->kr);
	sync_start(f->a.ch);
}

static void
fake_connect(struct fx *f, struct fake *k, const char *src)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };

	memset(k, 0, sizeof(*k));
	k->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(k->fd >= 0);
	inet_pton(AF_INET, src, &sin.sin_addr);
	assert_int_equal(bind(k->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(connect(k->fd, (struct sockaddr *)&f->a.addr,
	    sizeof(f->a.addr)), 0);
	assert_int_equal(fcntl(k->fd, F_SETFL, O_NONBLOCK), 0);
}

static void
fake_close(struct fake *k)
{
	if (k->fd >= 0)
		close(k->fd);
	k->fd = -1;
	syncf_buf_free(&k->in);
}

static void
fake_send(struct fake *k, const void *p, size_t n)
{
	assert_int_equal(send(k->fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/*
 * Run the loop until the fake has a whole message (0, *m filled) or the
 * connection was closed by A (-1); without block, 1 when there is none now.
 */
static int
fake_recv_opt(struct fx *f, struct fake *k, struct sync_msg *m, bool block)
{
	double end = now_s() + RUN_LIMIT;

	for (;;) {
		if (k->in.len >= 4) {
			uint32_t len = (uint32_t)k->in.data[0] << 24 |
			    (uint32_t)k->in.data[1] << 16 |
			    (uint32_t)k->in.data[2] << 8 | k->in.data[3];

			if (k->in.len >= 4 + (size_t)len) {
				enum sync_drop why;

				assert_int_equal(syncf_open(k->in.data + 4, len,
				    SYNC_FRAME_MAX, f->kr, m, &why), 0);
				memmove(k->in.data, k->in.data + 4 + len,
				    k->in.len - 4 - len);
				k->in.len -= 4 + len;
				return 0;
			}
		}
		assert_int_equal(syncf_buf_reserve(&k->in, 65536), 0);
		{
			ssize_t n = recv(k->fd, k->in.data + k->in.len,
			    k->in.cap - k->in.len, 0);

			if (n == 0 || (n == -1 && errno == ECONNRESET))
				return -1;
			if (n > 0) {
				k->in.len += (size_t)n;
				continue;
			}
			assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
		}
		if (!block)
			return 1;
		assert_true(now_s() < end);
		ev_run(f->loop, EVRUN_ONCE);
	}
}

static int
fake_recv(struct fx *f, struct fake *k, struct sync_msg *m)
{
	return fake_recv_opt(f, k, m, true);
}

/* Expect A to close the fake's connection (after any messages it sends). */
static void
fake_expect_closed(struct fx *f, struct fake *k)
{
	struct sync_msg m;
	int ret;

	while ((ret = fake_recv(f, k, &m)) == 0)
		syncf_msg_clear(&m);
	assert_int_equal(ret, -1);
}

/* Read A's hello, remember its nonce. */
static void
fake_read_hello(struct fx *f, struct fake *k)
{
	struct sync_msg m;

	assert_int_equal(fake_recv(f, k, &m), 0);
	assert_int_equal(m.type, WIRE_MSG_SYNC_HELLO);
	assert_string_equal(m.hello.node_name, "lb1");
	assert_int_equal(m.hello.boot_epoch, 10);
	k->a_nonce = m.hello.nonce;
	syncf_msg_clear(&m);
}

static void
fake_send_hello(struct fake *k, const struct auth_keyring *kr,
    const char *name, uint64_t boot)
{
	struct sync_hello h;
	struct sync_buf out = { 0 };

	memset(&h, 0, sizeof(h));
	snprintf(h.node_name, sizeof(h.node_name), "%s", name);
	h.proto_version = 1;
	h.boot_epoch = boot;
	memset(h.config_digest, 0x5a, SYNC_DIGEST_LEN);
	h.sync_epoch = boot << SYNC_EPOCH_GEN_BITS;
	h.nonce = 0x1234;
	assert_int_equal(syncf_hello_seal(&out, &h, kr), 0);
	fake_send(k, out.data, out.len);
	syncf_buf_free(&out);
}

static void
fake_send_frame(struct fake *k, const struct auth_keyring *kr,
    const struct sync_frame_hdr *h, const struct sync_event *evs, size_t n)
{
	struct sync_buf b = { 0 }, out = { 0 };

	for (size_t i = 0; i < n; i++)
		assert_int_equal(syncf_event_append(&b, &evs[i]), 0);
	assert_int_equal(syncf_frame_seal(&out, h, b.data, b.len, n, kr), 0);
	fake_send(k, out.data, out.len);
	syncf_buf_free(&b);
	syncf_buf_free(&out);
}

static bool
a_up(struct fx *f)
{
	return node_up(&f->a);
}

/* A full handshake as "lb2"; returns once A is up with the fake. */
static void
fake_handshake(struct fx *f, struct fake *k)
{
	struct sync_frame_hdr echo = { .epoch = 1 };
	struct sync_msg m;

	fake_connect(f, k, "127.0.0.1");
	fake_read_hello(f, k);
	fake_send_hello(k, f->kr, "lb2", 30);
	echo.echo = k->a_nonce;
	fake_send_frame(k, f->kr, &echo, NULL, 0);
	/* A's echo of our nonce first, then its new stream (BULK BEGIN, END). */
	assert_int_equal(fake_recv(f, k, &m), 0);
	assert_int_equal(m.hdr.seq, 0);
	assert_int_equal(m.hdr.echo, 0x1234);
	syncf_msg_clear(&m);
	assert_true(run_until(f, a_up, RUN_LIMIT));
	run_for(f, 0.02);
	while (fake_recv_opt(f, k, &m, false) == 0) {
		if (m.hdr.seq != 0)
			k->a_epoch = m.hdr.epoch;
		syncf_msg_clear(&m);
	}
	assert_true(k->a_epoch != 0);
}

static uint64_t
drops(struct fx *f, enum sync_drop why)
{
	return sync_stats(f->a.ch)->drops[why];
}

static void
test_drop_garbage_oversized_truncated(void **state)
{
	struct fx *f = *state;
	struct fake k;
	const uint8_t junk[] = "\0\0\0\x14" "GET / HTTP/1.1\r\n\r\n\r\n";
	const uint8_t huge[] = { 0x00, 0x10, 0x00, 0x00 };   /* 1 MiB before a hello */
	const uint8_t cut[] = { 0x00, 0x00, 0x00, 0x64, 0x08, 0x01, 0x10 };

	a_alone(f);
	fake_connect(f, &k, "127.0.0.1");
	fake_read_hello(f, &k);
	fake_send(&k, junk, sizeof(junk) - 1);
	fake_expect_closed(f, &k);
	assert_int_equal(drops(f, SYNC_DROP_GARBAGE), 1);
	fake_close(&k);

	fake_connect(f, &k, "127.0.0.1");
	fake_send(&k, huge, sizeof(huge));
	fake_expect_closed(f, &k);
	assert_int_equal(drops(f, SYNC_DROP_OVERSIZED), 1);
	fake_close(&k);

	fake_connect(f, &k, "127.0.0.1");
	fake_send(&k, cut, sizeof(cut));
	assert_int_equal(shutdown(k.fd, SHUT_WR), 0);
	fake_expect_closed(f, &k);
	assert_int_equal(drops(f, SYNC_DROP_TRUNCATED), 1);
	fake_close(&k);
	assert_int_equal(f->a.ups, 0);
}

static void
test_drop_wrong_key_bad_mac(void **state)
{
	struct fx *f = *state;
	struct fake k;
	struct sync_hello h;
	struct sync_buf out = { 0 };

	a_alone(f);
	fake_connect(f, &k, "127.0.0.1");
	fake_send_hello(&k, f->other, "lb2", 30);
	fake_expect_closed(f, &k);
	assert_int_equal(drops(f, SYNC_DROP_UNKNOWN_KEY), 1);
	fake_close(&k);

	memset(&h, 0, sizeof(h));
	snprintf(h.node_name, sizeof(h.node_name), "lb2");
	h.proto_version = 1;
	h.boot_epoch = 30;
	h.nonce = 9;
	assert_int_equal(syncf_hello_seal(&out, &h, f->kr), 0);
	out.data[out.len - 1] ^= 0x80;            /* the last byte of the MAC */
	fake_connect(f, &k, "127.0.0.1");
	fake_send(&k, out.data, out.len);
	fake_expect_closed(f, &k);
	assert_int_equal(drops(f, SYNC_DROP_BAD_MAC), 1);
	fake_close(&k);
	syncf_buf_free(&out);
	assert_int_equal(f->a.ups, 0);
}

static void
test_drop_protocol(void **state)
{
	struct fx *f = *state;
	struct fake k;
	struct sync_frame_hdr h = { .epoch = 1, .echo = 77 };

	a_alone(f);
	/* A frame before the hello. */
	fake_connect(f, &k, "127.0.0.1");
	fake_send_frame(&k, f->kr, &h, NULL, 0);
	fake_expect_closed(f, &k);
	assert_int_equal(drops(f, SYNC_DROP_PROTOCOL), 1);
	fake_close(&k);
	/* A peer with our own name. */
	fake_connect(f, &k, "127.0.0.1");
	fake_send_hello(&k, f->kr, "lb1", 30);
	fake_expect_closed(f, &k);
	assert_int_equal(drops(f, SYNC_DROP_PROTOCOL), 2);
	fake_close(&k);
	/* A wrong echo: a recorded session cannot answer a fresh nonce. */
	fake_connect(f, &k, "127.0.0.1");
	fake_read_hello(f, &k);
	fake_send_hello(&k, f->kr, "lb2", 30);
	h.echo = k.a_nonce + 1;
	fake_send_frame(&k, f->kr, &h, NULL, 0);
	fake_expect_closed(f, &k);
	assert_int_equal(drops(f, SYNC_DROP_PROTOCOL), 3);
	fake_close(&k);
	/* An older boot of the peer than one already seen. */
	fake_handshake(f, &k);
	fake_close(&k);
	fake_connect(f, &k, "127.0.0.1");
	fake_send_hello(&k, f->kr, "lb2", 29);
	fake_expect_closed(f, &k);
	assert_int_equal(drops(f, SYNC_DROP_OLD_EPOCH), 1);
	fake_close(&k);
}

static void
bulk_begin_event(struct sync_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = SYNC_EV_BULK;
	ev->u.bulk.phase = SYNC_BULK_BEGIN;
}

static void
update_event(struct sync_event *ev, uint64_t id)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = SYNC_EV_UPDATE;
	ev->u.update.id = id;
}

static bool
a_has_3(struct fx *f)
{
	return f->a.updates >= 3;
}

/* A replayed frame is skipped (the link stays); a gap closes the link. */
static void
test_drop_replay_out_of_order(void **state)
{
	struct fx *f = *state;
	struct fake k;
	struct sync_event evs[3];
	struct sync_frame_hdr h = { .epoch = UINT64_C(30) << 24 | 1, .seq = 1 };
	struct sync_info in;

	a_alone(f);
	fake_handshake(f, &k);
	bulk_begin_event(&evs[0]);
	update_event(&evs[1], 1);
	fake_send_frame(&k, f->kr, &h, evs, 2);
	fake_send_frame(&k, f->kr, &h, evs, 2);          /* again: a replay */
	h.seq = 2;
	update_event(&evs[0], 2);
	fake_send_frame(&k, f->kr, &h, evs, 1);
	h.seq = 1;
	update_event(&evs[0], 99);
	fake_send_frame(&k, f->kr, &h, evs, 1);          /* old seq, new data */
	h.seq = 3;
	update_event(&evs[0], 3);
	fake_send_frame(&k, f->kr, &h, evs, 1);
	assert_true(run_until(f, a_has_3, RUN_LIMIT));
	assert_int_equal(drops(f, SYNC_DROP_REPLAY), 2);
	assert_int_equal(f->a.updates, 3);
	assert_int_equal(f->a.last_update, 3);
	assert_int_equal(f->a.order_broken, 0);
	assert_true(node_up(&f->a));
	sync_info(f->a.ch, &in);
	assert_int_equal(in.rx_epoch, h.epoch);
	assert_int_equal(in.rx_seq, 3);

	h.seq = 5;                                        /* 4 is missing */
	update_event(&evs[0], 5);
	fake_send_frame(&k, f->kr, &h, evs, 1);
	fake_expect_closed(f, &k);
	assert_int_equal(drops(f, SYNC_DROP_OUT_OF_ORDER), 1);
	assert_int_equal(f->a.updates, 3);
	fake_close(&k);
	/* The position is kept: a new handshake asks to resume after 3. */
	fake_connect(f, &k, "127.0.0.1");
	{
		struct sync_msg m;

		assert_int_equal(fake_recv(f, &k, &m), 0);
		assert_int_equal(m.hello.resume_epoch, h.epoch);
		assert_int_equal(m.hello.resume_after, 3);
		syncf_msg_clear(&m);
	}
	fake_close(&k);
}

/* A new stream must open with a snapshot; an older stream is refused. */
static void
test_drop_stream_rules(void **state)
{
	struct fx *f = *state;
	struct fake k;
	struct sync_event evs[2];
	struct sync_frame_hdr h = { .epoch = UINT64_C(30) << 24 | 5, .seq = 1 };
	struct sync_info in;

	a_alone(f);
	fake_handshake(f, &k);
	update_event(&evs[0], 1);
	fake_send_frame(&k, f->kr, &h, evs, 1);          /* no BULK BEGIN */
	fake_expect_closed(f, &k);
	assert_int_equal(drops(f, SYNC_DROP_PROTOCOL), 1);
	assert_int_equal(f->a.events, 0);
	fake_close(&k);

	fake_handshake(f, &k);
	bulk_begin_event(&evs[0]);
	fake_send_frame(&k, f->kr, &h, evs, 1);
	h.epoch--;                                        /* an older stream */
	h.seq = 2;
	update_event(&evs[0], 1);
	fake_send_frame(&k, f->kr, &h, evs, 1);
	fake_expect_closed(f, &k);
	assert_int_equal(drops(f, SYNC_DROP_OLD_EPOCH), 1);
	fake_close(&k);

	fake_handshake(f, &k);
	h.epoch += 5;                                     /* new, but not from 1 */
	h.seq = 2;
	bulk_begin_event(&evs[0]);
	fake_send_frame(&k, f->kr, &h, evs, 1);
	fake_expect_closed(f, &k);
	assert_int_equal(drops(f, SYNC_DROP_OUT_OF_ORDER), 1);
	fake_close(&k);

	/* An ack for a frame A never sent: our stream is suspect, resync. */
	fake_handshake(f, &k);
	sync_info(f->a.ch, &in);
	h.seq = 0;
	h.ack_epoch = in.tx_epoch;
	h.ack = in.tx_seq + 10;
	fake_send_frame(&k, f->kr, &h, NULL, 0);
	fake_expect_closed(f, &k);
	assert_int_equal(drops(f, SYNC_DROP_PROTOCOL), 2);
	sync_info(f->a.ch, &in);
	assert_true(in.resync_pending);
	fake_close(&k);
}

/* An authentic frame that cannot be applied makes A ask for a new stream. */
static void
test_authentic_garbage_resets_position(void **state)
{
	struct fx *f = *state;
	struct fake k;
	struct sync_event evs[1];
	struct sync_frame_hdr h = { .epoch = UINT64_C(30) << 24 | 1, .seq = 1 };
	uint8_t payload[] = { 0xff, 0xff };
	uint8_t buf[256];
	size_t len;
	struct sync_msg m;

	a_alone(f);
	fake_handshake(f, &k);
	bulk_begin_event(&evs[0]);
	fake_send_frame(&k, f->kr, &h, evs, 1);
	assert_int_equal(wire_seal(WIRE_MSG_SYNC_FRAME, f->kr, payload,
	    sizeof(payload), buf + 4, sizeof(buf) - 4, &len), 0);
	buf[0] = 0;
	buf[1] = 0;
	buf[2] = (uint8_t)(len >> 8);
	buf[3] = (uint8_t)len;
	fake_send(&k, buf, 4 + len);
	fake_expect_closed(f, &k);
	assert_int_equal(drops(f, SYNC_DROP_GARBAGE), 1);
	assert_int_equal(f->a.bulk_begins, 1);
	fake_close(&k);
	fake_connect(f, &k, "127.0.0.1");
	assert_int_equal(fake_recv(f, &k, &m), 0);
	assert_int_equal(m.hello.resume_epoch, 0);   /* "send me everything" */
	assert_int_equal(m.hello.resume_after, 0);
	syncf_msg_clear(&m);
	fake_close(&k);
}

/* An authentic message of a type A does not handle is skipped, not fatal. */
static void
test_unknown_type_skipped(void **state)
{
	struct fx *f = *state;
	struct fake k;
	uint8_t buf[256];
	size_t len;

	a_alone(f);
	fake_handshake(f, &k);
	assert_int_equal(wire_seal(WIRE_MSG_SWITCHOVER, f->kr,
	    (const uint8_t *)"\x08\x01", 2, buf + 4, sizeof(buf) - 4, &len), 0);
	buf[0] = buf[1] = buf[2] = 0;
	buf[3] = (uint8_t)len;
	fake_send(&k, buf, 4 + len);
	run_for(f, 0.05);
	assert_int_equal(drops(f, SYNC_DROP_UNKNOWN_TYPE), 1);
	assert_true(node_up(&f->a));
	fake_close(&k);
}

static bool
a_down(struct fx *f)
{
	return f->a.downs > 0;
}

/* A silent peer is dropped after dead_ms; an idle link sends keepalives. */
static void
test_keepalive_and_timeout(void **state)
{
	struct fx *f = *state;
	struct fake k;
	uint64_t acks;

	f->a.cfg.keepalive_ms = 50;
	f->a.cfg.dead_ms = 300;
	a_alone(f);
	fake_handshake(f, &k);
	acks = sync_stats(f->a.ch)->acks_out;
	assert_true(run_until(f, a_down, RUN_LIMIT));
	assert_true(sync_stats(f->a.ch)->acks_out >= acks + 3);
	assert_int_equal(sync_stats(f->a.ch)->timeouts, 1);
	fake_close(&k);

	/* A connection that never says hello times out too. */
	fake_connect(f, &k, "127.0.0.1");
	fake_expect_closed(f, &k);
	assert_int_equal(sync_stats(f->a.ch)->timeouts, 2);
	fake_close(&k);
}

static bool
a_refused(struct fx *f)
{
	return sync_stats(f->a.ch)->accept_refused > 0;
}

/*
 * At most four handshakes at a time: a fifth connection is refused, so a
 * scanner cannot pile up half-open links. (The other refusal, a source that
 * is not the configured peer, needs a second local address: the lab's.)
 */
static void
test_refuse_too_many(void **state)
{
	struct fx *f = *state;
	struct fake k[5];

	a_alone(f);
	for (int i = 0; i < 4; i++) {
		fake_connect(f, &k[i], "127.0.0.1");
		fake_read_hello(f, &k[i]);
	}
	fake_connect(f, &k[4], "127.0.0.1");
	assert_true(run_until(f, a_refused, RUN_LIMIT));
	fake_expect_closed(f, &k[4]);
	assert_int_equal(sync_stats(f->a.ch)->accepts, 4);
	assert_int_equal(sync_stats(f->a.ch)->accept_refused, 1);
	for (int i = 0; i < 5; i++)
		fake_close(&k[i]);
}

static int
count_fds(void)
{
	int n = 0;

	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) != -1)
			n++;
	return n;
}

static bool
a_two_fails(struct fx *f)
{
	return sync_stats(f->a.ch)->connect_fails >= 2;
}

/* A connection attempt that fails at socket() or connect() is retried. */
static void
test_connect_failures(void **state)
{
	struct fx *f = *state;
	int fds;

	node_create(f, &f->a, &f->b.addr, f->kr);
	node_create(f, &f->b, &f->a.addr, f->kr);
	fds = count_fds();
	fail_socket = 1;
	sync_start(f->a.ch);
	assert_int_equal(fail_socket, 0);      /* the wrapper was reached */
	assert_int_equal(sync_stats(f->a.ch)->connect_fails, 1);
	assert_int_equal(count_fds(), fds);
	fail_connect = 1;
	assert_true(run_until(f, a_two_fails, RUN_LIMIT));
	assert_int_equal(fail_connect, 0);
	assert_int_equal(count_fds(), fds);    /* the failed socket was closed */
	sync_start(f->b.ch);
	assert_true(run_until(f, both_synced, RUN_LIMIT));
}

/* ---- construction -------------------------------------------------------------------- */

static int
fd_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

static void
test_new_errors(void **state)
{
	struct fx *f = *state;
	struct sync *ch = NULL;
	struct sync_cfg c;
	struct auth_keyring *nosend = auth_keyring_new();
	struct sockaddr_in any = { .sin_family = AF_INET };
	int fd;

	assert_non_null(nosend);
	memcpy(&f->a.cfg.peer, &f->b.addr, sizeof(f->b.addr));
	f->a.cfg.peerlen = sizeof(f->b.addr);

#define EXPECT_NEW(mutate, kr, err) do {                                       \
	c = f->a.cfg;                                                          \
	c.have_listen_fd = false;                                              \
	mutate;                                                                \
	assert_int_equal(sync_new(f->loop, &c, kr, &ops, NULL, &ch), err);     \
} while (0)

	EXPECT_NEW(c.node_name = NULL, f->kr, -EINVAL);
	EXPECT_NEW(c.node_name = "", f->kr, -EINVAL);
	EXPECT_NEW(c.node_name = "lb 1", f->kr, -EINVAL);
	EXPECT_NEW(c.boot_epoch = 0, f->kr, -EINVAL);
	EXPECT_NEW(c.boot_epoch = SYNC_BOOT_EPOCH_MAX + 1, f->kr, -EINVAL);
	EXPECT_NEW(c.role = SYNC_ROLE_COUNT, f->kr, -EINVAL);
	EXPECT_NEW(c.peerlen = 3, f->kr, -EINVAL);
	EXPECT_NEW(memcpy(&c.peer, &any, sizeof(any)), f->kr, -EINVAL);
	EXPECT_NEW(c.keepalive_ms = 1000; c.dead_ms = 1500, f->kr, -EINVAL);
	EXPECT_NEW(c.backoff_min_ms = 500; c.backoff_max_ms = 100, f->kr,
	    -EINVAL);
	EXPECT_NEW((void)0, nosend, -ENOKEY);
	/* The port is taken (a's own listener): the bind error comes back. */
	EXPECT_NEW((void)0, f->kr, -EADDRINUSE);
	/* Listening itself works with a free port (and needs one). */
	EXPECT_NEW(((struct sockaddr_in *)&c.listen)->sin_port = 0, f->kr,
	    -EINVAL);
	dead_port(&any);
	EXPECT_NEW(memcpy(&c.listen, &any, sizeof(any)), f->kr, 0);
	sync_free(ch);
	ch = NULL;
#undef EXPECT_NEW

	/* A given listener is the channel's, even when sync_new fails. */
	fd = f->a.cfg.listen_fd;
	c = f->a.cfg;
	c.boot_epoch = 0;
	f->a.fd_taken = true;
	assert_int_equal(sync_new(f->loop, &c, f->kr, &ops, NULL, &ch), -EINVAL);
	assert_false(fd_open(fd));
	auth_keyring_free(nosend);
	sync_free(NULL);
}

static void
test_info_idle(void **state)
{
	struct fx *f = *state;
	struct sync_info in;
	struct sync_event ev;

	node_create(f, &f->a, &f->b.addr, f->kr);
	sync_info(f->a.ch, &in);
	assert_int_equal(in.state, SYNC_STATE_IDLE);
	assert_false(in.peer_known);
	assert_false(in.digest_match);
	assert_true(in.resync_pending);
	/* Nothing to resume before a peer ever heard us: discarded. */
	update_event(&ev, 1);
	assert_int_equal(sync_queue_event(f->a.ch, &ev), 0);
	assert_int_equal(sync_stats(f->a.ch)->discarded, 1);
	close(f->b.cfg.listen_fd);   /* b never runs: refused connects */
	f->b.cfg.listen_fd = -1;
	sync_start(f->a.ch);
	sync_start(f->a.ch);
	run_for(f, 0.1);
	sync_info(f->a.ch, &in);
	assert_true(in.state == SYNC_STATE_DOWN ||
	    in.state == SYNC_STATE_CONNECTING);
	assert_true(sync_stats(f->a.ch)->connect_fails >= 2);   /* backoff retries */
	assert_string_equal(sync_counter_name(SYNC_COUNTER_COUNT - 1), "bulks_bad");
	assert_int_equal(sync_counter_value(sync_stats(f->a.ch), 0), 0);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
	const struct CMUnitTest tests[] = {
		T(test_handshake),
		T(test_snapshot_and_events_in_order),
		T(test_switch_in_order),
		T(test_resume_after_reconnect),
		T(test_no_duplicates_before_ack),
		T(test_resync_when_peer_lost_state),
		T(test_overflow_resync),
		T(test_digest_mismatch),
		T(test_api_errors),
		T(test_resync_live),
		T(test_resync_mid_frame),
		T(test_seal_failures),
		T(test_wrong_key_pair),
		T(test_drop_garbage_oversized_truncated),
		T(test_drop_wrong_key_bad_mac),
		T(test_drop_protocol),
		T(test_drop_replay_out_of_order),
		T(test_drop_stream_rules),
		T(test_authentic_garbage_resets_position),
		T(test_unknown_type_skipped),
		T(test_keepalive_and_timeout),
		T(test_refuse_too_many),
		T(test_connect_failures),
		T(test_new_errors),
		T(test_info_idle),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
