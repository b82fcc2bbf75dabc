/*
 * tnetem — packet loss and delay for the lab where the kernel has no
 * sch_netem. scripts/lab splices it between a node's bridge port and the
 * bridge, inside the bridge's namespace:
 *
 *   node eth0 ── <node-dev> ⇄ tnetem ⇄ <bridge-dev> ── r<node> ── br0
 *
 *   tnetem --node-dev DEV --bridge-dev DEV [--loss PCT] [--delay MS]
 *          [--dir out|in|both] [--seed N] [--ready-file PATH]
 *
 * "out" is what the node sends (node-dev → bridge-dev), "in" what it
 * receives. Frames travel with their virtio-net header (PACKET_VNET_HDR), so
 * GSO super-frames and pending checksums pass through unchanged instead of
 * being too big to resend. Delay is constant, so each direction is a FIFO
 * ordered by release time; like netem it holds at most TN_QUEUE_MAX frames
 * per direction and drops beyond that. SIGTERM/SIGINT: exit 0.
 */
#include "tt.h"

#include <tandem/log.h>

#include <ev.h>

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TN_FRAME_MAX (sizeof(struct virtio_net_hdr) + 65536 + 64)
#define TN_QUEUE_MAX 10000
#define TN_BURST 64

enum tn_dir {
	TN_OUT = 0,   /* node → bridge */
	TN_IN,        /* bridge → node */
	TN_DIR_COUNT
};

static const char *const tn_dir_names[TN_DIR_COUNT] = {
	[TN_OUT] = "out",
	[TN_IN] = "in",
};

struct tn_frame {
	struct tn_frame *next;
	double release;
	size_t len;
	unsigned char data[];
};

struct tn_ctx;

/* One direction: frames read on `from` leave on the other side's socket. */
struct tn_path {
	struct tn_ctx *ctx;
	enum tn_dir dir;
	int fd;                  /* bound to the device we read from */
	struct tn_path *peer;    /* whose fd we send on */
	bool impaired;
	ev_io io;
	ev_timer release;
	struct tn_frame *head, *tail;
	unsigned queued;
	uint64_t rx, tx, lost, overflow, send_err;
};

struct tn_ctx {
	struct ev_loop *loop;
	struct tn_path path[TN_DIR_COUNT];
	double loss;             /* probability in [0, 1] */
	double delay;            /* seconds */
	uint64_t rng;
	ev_signal sig_term, sig_int;
	unsigned char buf[TN_FRAME_MAX];
};

/* xorshift64*: enough randomness for dropping frames. */
static double
tn_random(struct tn_ctx *ctx)
{
	uint64_t x = ctx->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	ctx->rng = x;
	return (double)((x * 0x2545f4914f6cdd1dULL) >> 11) / 9007199254740992.0;
}

static int
tn_open(const char *dev)
{
	struct sockaddr_ll sll = { 0 };
	struct packet_mreq mr = { 0 };
	int fd, one = 1, rcvbuf = 4 << 20;
	unsigned idx;

	idx = if_nametoindex(dev);
	if (idx == 0)
		return -errno;
	/* Protocol 0 until bound, so no frame of another device sneaks in. */
	fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = (int)idx;
	mr.mr_ifindex = (int)idx;
	mr.mr_type = PACKET_MR_PROMISC;
	if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)) == -1 ||
	    setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) == -1 ||
	    setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr)) == -1 ||
	    bind(fd, (struct sockaddr *)&sll, sizeof(sll)) == -1) {
		int e = errno;

		close(fd);
		return -e;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &rcvbuf, sizeof(rcvbuf));
	return fd;
}

static void
tn_send(struct tn_path *p, const unsigned char *data, size_t len)
{
	/* A full device queue drops the frame, as a real link would. */
	if (send(p->peer->fd, data, len, 0) == -1)
		p->send_err++;
	else
		p->tx++;
}

static void
tn_arm(struct tn_path *p)
{
	struct tn_ctx *ctx = p->ctx;
	double in;

	ev_timer_stop(ctx->loop, &p->release);
	if (p->head == NULL)
		return;
	in = p->head->release - ev_now(ctx->loop);
	ev_timer_set(&p->release, in > 0. ? in : 0., 0.);
	ev_timer_start(ctx->loop, &p->release);
}

static void
tn_release_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct tn_path *p = w->data;
	double now;

	ev_now_update(loop);
	now = ev_now(loop);
	while (p->head != NULL && p->head->release <= now) {
		struct tn_frame *f = p->head;

		p->head = f->next;
		if (p->head == NULL)
			p->tail = NULL;
		p->queued--;
		tn_send(p, f->data, f->len);
		free(f);
	}
	tn_arm(p);
}

static void
tn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct tn_path *p = w->data;
	struct tn_ctx *ctx = p->ctx;

	for (int i = 0; i < TN_BURST; i++) {
		struct tn_frame *f;
		ssize_t n;

		n = recv(p->fd, ctx->buf, sizeof(ctx->buf), MSG_TRUNC);
		if (n == -1) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_warn("tnetem %s: recv", tn_dir_names[p->dir]);
			return;
		}
		if ((size_t)n > sizeof(ctx->buf)) {
			p->send_err++;
			continue;
		}
		p->rx++;
		if (!p->impaired) {
			tn_send(p, ctx->buf, (size_t)n);
			continue;
		}
		if (ctx->loss > 0. && tn_random(ctx) < ctx->loss) {
			p->lost++;
			continue;
		}
		if (ctx->delay <= 0.) {
			tn_send(p, ctx->buf, (size_t)n);
			continue;
		}
		if (p->queued >= TN_QUEUE_MAX) {
			p->overflow++;
			continue;
		}
		f = malloc(sizeof(*f) + (size_t)n);
		if (f == NULL) {
			p->overflow++;
			continue;
		}
		f->next = NULL;
		f->len = (size_t)n;
		f->release = ev_now(loop) + ctx->delay;
		memcpy(f->data, ctx->buf, (size_t)n);
		if (p->tail != NULL)
			p->tail->next = f;
		else
			p->head = f;
		p->tail = f;
		p->queued++;
		if (!ev_is_active(&p->release))
			tn_arm(p);
	}
}

static void
tn_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

static _Noreturn void
tn_usage(void)
{
	fprintf(stderr,
	    "usage: tnetem --node-dev DEV --bridge-dev DEV [--loss PCT] [--delay MS]\n"
	    "              [--dir out|in|both] [--seed N] [--ready-file PATH]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "node-dev", required_argument, NULL, 'n' },
		{ "bridge-dev", required_argument, NULL, 'b' },
		{ "loss", required_argument, NULL, 'l' },
		{ "delay", required_argument, NULL, 'd' },
		{ "dir", required_argument, NULL, 'D' },
		{ "seed", required_argument, NULL, 's' },
		{ "ready-file", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	const char *node_dev = NULL, *bridge_dev = NULL, *ready = NULL, *dir = "both";
	struct tn_ctx *ctx;
	uint64_t seed = 0, delay_ms = 0;
	char *end;
	int o, ret;

	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'n': node_dev = optarg; break;
		case 'b': bridge_dev = optarg; break;
		case 'l':
			ctx->loss = strtod(optarg, &end) / 100.;
			if (*end != '\0' || !(ctx->loss >= 0.) || ctx->loss > 1.)
				tn_usage();
			break;
		case 'd':
			if (tt_parse_u64(optarg, 60000, &delay_ms) < 0)
				tn_usage();
			break;
		case 'D': dir = optarg; break;
		case 's':
			if (tt_parse_u64(optarg, UINT64_MAX, &seed) < 0)
				tn_usage();
			break;
		case 'r': ready = optarg; break;
		default: tn_usage();
		}
	}
	if (optind != argc || node_dev == NULL || bridge_dev == NULL)
		tn_usage();
	if (strcmp(dir, "out") != 0 && strcmp(dir, "in") != 0 && strcmp(dir, "both") != 0)
		tn_usage();
	log_init(LOG_LVL_INFO, 0, "tnetem");
	ctx->delay = (double)delay_ms / 1000.;
	ctx->rng = seed != 0 ? seed : (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL + 1;
	ctx->loop = ev_default_loop(EVFLAG_AUTO);

	for (int d = 0; d < TN_DIR_COUNT; d++) {
		struct tn_path *p = &ctx->path[d];
		const char *dev = d == TN_OUT ? node_dev : bridge_dev;

		p->ctx = ctx;
		p->dir = (enum tn_dir)d;
		p->peer = &ctx->path[d == TN_OUT ? TN_IN : TN_OUT];
		p->impaired = strcmp(dir, "both") == 0 || strcmp(dir, tn_dir_names[d]) == 0;
		p->fd = tn_open(dev);
		if (p->fd < 0) {
			errno = -p->fd;
			fatal("tnetem: packet socket on %s", dev);
		}
		ev_io_init(&p->io, tn_read_cb, p->fd, EV_READ);
		p->io.data = p;
		ev_init(&p->release, tn_release_cb);
		p->release.data = p;
		ev_io_start(ctx->loop, &p->io);
	}
	ev_signal_init(&ctx->sig_term, tn_signal_cb, SIGTERM);
	ev_signal_init(&ctx->sig_int, tn_signal_cb, SIGINT);
	ev_signal_start(ctx->loop, &ctx->sig_term);
	ev_signal_start(ctx->loop, &ctx->sig_int);
	if (ready != NULL && (ret = tt_write_ready_file(ready)) < 0) {
		errno = -ret;
		fatal("tnetem: ready file %s", ready);
	}
	log_info("tnetem %s<->%s: loss %.2f%% delay %llu ms dir %s", node_dev,
	    bridge_dev, ctx->loss * 100., (unsigned long long)delay_ms, dir);

	ev_run(ctx->loop, 0);

	for (int d = 0; d < TN_DIR_COUNT; d++) {
		struct tn_path *p = &ctx->path[d];

		log_info("tnetem %s: rx %llu tx %llu lost %llu overflow %llu send_err %llu",
		    tn_dir_names[d], (unsigned long long)p->rx, (unsigned long long)p->tx,
		    (unsigned long long)p->lost, (unsigned long long)p->overflow,
		    (unsigned long long)p->send_err);
		while (p->head != NULL) {
			struct tn_frame *f = p->head;

			p->head = f->next;
			free(f);
		}
		ev_io_stop(ctx->loop, &p->io);
		ev_timer_stop(ctx->loop, &p->release);
		close(p->fd);
	}
	ev_signal_stop(ctx->loop, &ctx->sig_term);
	ev_signal_stop(ctx->loop, &ctx->sig_int);
	ev_loop_destroy(ctx->loop);
	free(ctx);
	return 0;
}
