/*
 * vip_drive — drives one vip_set and link trackers from commands on stdin, for
 * tests/integration/test_vip.py (run inside a network namespace the test made).
 *
 *   vip_drive --if IF --vip ADDR/LEN [--vip ...] [--track IF ...]
 *             [--count N] [--interval MS] [--second-delay MS] [--refresh MS]
 *             [--refresh-count N] [--no-arp-reply] [--router on|off|auto]
 *             [--rcvbuf BYTES] [--crash-handler] [--debug]
 *
 * Commands (one per line): take, announce, release, cleanup, drop, stats,
 * pause MS (blocks the loop, to let notifications pile up), crash (abort()),
 * quit. Output, one line each, on stdout: "ready", "ok cmd=... rc=...",
 * "event type=... [addr=...] [latency_us=...] [error=...]",
 * "link name=... up=0|1", "stats k=v ...".
 */
#include <tandem/log.h>
#include <tandem/nl.h>
#include <tandem/vip.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <ev.h>

#define DRIVE_MAX_TRACK 8

struct drive {
	struct ev_loop *loop;
	struct nl_ctx *nl;
	struct vip_set *set;
	struct vip_link *links[DRIVE_MAX_TRACK];
	size_t nlinks;
	ev_io in;
	char line[512];
	size_t len;
	int quit;
};

/*
 * The one global: a signal handler has no other way to find the set. The
 * daemon's fatal-signal handler will need the same.
 */
static struct vip_set *volatile drive_crash_set;

static void
drive_fatal_signal(int sig)
{
	if (drive_crash_set != NULL)
		vip_drop_signal_safe(drive_crash_set);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void
drive_event(struct vip_set *set, const struct vip_event *ev, void *arg)
{
	printf("event type=%s", vip_event_name(ev->type));
	if (ev->addr_text != NULL)
		printf(" addr=%s", ev->addr_text);
	printf(" latency_us=%llu", (unsigned long long)ev->latency_us);
	if (ev->error != 0)
		printf(" error=%s", strerror(-ev->error));
	printf("\n");
}

static void
drive_link(struct vip_link *link, bool up, void *arg)
{
	printf("link name=%s up=%d\n", vip_link_name(link), up ? 1 : 0);
}

static void
drive_stats(const struct drive *d)
{
	const struct vip_stats *s = vip_stats(d->set);
	const struct nl_stats *n = nl_stats(d->nl);

	printf("stats adds=%llu removes=%llu readds=%llu stale_removed=%llu"
	    " garps_sent=%llu nas_sent=%llu send_errors=%llu nl_errors=%llu"
	    " resyncs=%llu overflows=%llu stale_replies=%llu held=%d up=%d\n",
	    (unsigned long long)s->adds, (unsigned long long)s->removes,
	    (unsigned long long)s->readds, (unsigned long long)s->stale_removed,
	    (unsigned long long)s->garps_sent, (unsigned long long)s->nas_sent,
	    (unsigned long long)s->send_errors, (unsigned long long)s->nl_errors,
	    (unsigned long long)s->resyncs, (unsigned long long)n->overflows,
	    (unsigned long long)n->stale_replies,
	    vip_is_held(d->set), vip_is_up(d->set));
}

static void
drive_command(struct drive *d, char *cmd)
{
	char *arg = strchr(cmd, ' ');
	int rc = 0;

	if (arg != NULL)
		*arg++ = '\0';
	if (strcmp(cmd, "take") == 0) {
		rc = vip_take(d->set);
	} else if (strcmp(cmd, "announce") == 0) {
		rc = vip_announce(d->set);
	} else if (strcmp(cmd, "release") == 0) {
		rc = vip_release(d->set);
	} else if (strcmp(cmd, "cleanup") == 0) {
		rc = vip_cleanup_stale(d->set);
	} else if (strcmp(cmd, "drop") == 0) {
		vip_drop_signal_safe(d->set);
	} else if (strcmp(cmd, "stats") == 0) {
		drive_stats(d);
	} else if (strcmp(cmd, "pause") == 0 && arg != NULL) {
		long ms = strtol(arg, NULL, 10);
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

		if (ms < 0 || ms > 10000)
			rc = -EINVAL;
		else
			while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
				;
	} else if (strcmp(cmd, "crash") == 0) {
		fflush(stdout);
		abort();
	} else if (strcmp(cmd, "quit") == 0) {
		d->quit = 1;
		ev_break(d->loop, EVBREAK_ALL);
	} else {
		rc = -EINVAL;
	}
	printf("ok cmd=%s rc=%d\n", cmd, rc);
}

static void
drive_stdin(struct ev_loop *loop, ev_io *w, int revents)
{
	struct drive *d = w->data;
	ssize_t n = read(STDIN_FILENO, d->line + d->len, sizeof(d->line) - 1 - d->len);
	char *nlp;

	if (n <= 0) {
		/* The test went away: leave, like "quit". */
		d->quit = 1;
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	d->len += (size_t)n;
	d->line[d->len] = '\0';
	while ((nlp = strchr(d->line, '\n')) != NULL) {
		*nlp = '\0';
		drive_command(d, d->line);
		d->len -= (size_t)(nlp + 1 - d->line);
		memmove(d->line, nlp + 1, d->len + 1);
		if (d->quit)
			return;
	}
	if (d->len == sizeof(d->line) - 1)
		d->len = 0;   /* overlong line: drop it */
}

static int
drive_parse_vip(const char *s, struct sockaddr_storage *ss, unsigned *plen)
{
	char buf[80], *slash;

	snprintf(buf, sizeof(buf), "%s", s);
	slash = strchr(buf, '/');
	if (slash == NULL)
		return -1;
	*slash++ = '\0';
	*plen = (unsigned)strtoul(slash, NULL, 10);
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, buf, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
		ss->ss_family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, buf, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1) {
		ss->ss_family = AF_INET6;
		return 0;
	}
	return -1;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "if", required_argument, NULL, 'i' },
		{ "vip", required_argument, NULL, 'v' },
		{ "track", required_argument, NULL, 't' },
		{ "count", required_argument, NULL, 'c' },
		{ "interval", required_argument, NULL, 'I' },
		{ "second-delay", required_argument, NULL, 's' },
		{ "refresh", required_argument, NULL, 'r' },
		{ "refresh-count", required_argument, NULL, 'R' },
		{ "no-arp-reply", no_argument, NULL, 'n' },
		{ "router", required_argument, NULL, 'o' },
		{ "rcvbuf", required_argument, NULL, 'b' },
		{ "crash-handler", no_argument, NULL, 'C' },
		{ "debug", no_argument, NULL, 'd' },
		{ NULL, 0, NULL, 0 },
	};
	struct vip_garp_cfg cfg = VIP_GARP_CFG_DEFAULT;
	const char *ifname = NULL, *vips[VIP_MAX_ADDRS], *track[DRIVE_MAX_TRACK];
	size_t nvips = 0, ntrack = 0;
	struct drive d = { 0 };
	int c, r, rcvbuf = 0, crash = 0, debug = 0;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'i': ifname = optarg; break;
		case 'v':
			if (nvips < VIP_MAX_ADDRS)
				vips[nvips++] = optarg;
			break;
		case 't':
			if (ntrack < DRIVE_MAX_TRACK)
				track[ntrack++] = optarg;
			break;
		case 'c': cfg.count = (unsigned)atoi(optarg); break;
		case 'I': cfg.interval_ms = (unsigned)atoi(optarg); break;
		case 's': cfg.second_delay_ms = (unsigned)atoi(optarg); break;
		case 'r': cfg.refresh_ms = (unsigned)atoi(optarg); break;
		case 'R': cfg.refresh_count = (unsigned)atoi(optarg); break;
		case 'n': cfg.arp_reply = false; break;
		case 'o':
			cfg.na_router = strcmp(optarg, "on") == 0 ? VIP_NA_ROUTER_ON :
			    strcmp(optarg, "off") == 0 ? VIP_NA_ROUTER_OFF :
			    VIP_NA_ROUTER_AUTO;
			break;
		case 'b': rcvbuf = atoi(optarg); break;
		case 'C': crash = 1; break;
		case 'd': debug = 1; break;
		default:
			fprintf(stderr, "usage: see the comment at the top of vip_drive.c\n");
			return 2;
		}
	}
	if (ifname == NULL || nvips == 0) {
		fprintf(stderr, "vip_drive: --if and --vip are required\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	log_init(LOG_LVL_DEBUG, 0, "vip_drive");

	d.loop = ev_default_loop(0);
	r = nl_new(d.loop, debug ? NL_DEBUG : 0, &d.nl);
	if (r < 0)
		fatalx("nl_new: %s", strerror(-r));
	if (rcvbuf > 0 && (r = nl_set_event_rcvbuf(d.nl, rcvbuf)) < 0)
		fatalx("rcvbuf: %s", strerror(-r));
	r = vip_new(d.nl, ifname, &cfg, drive_event, &d, &d.set);
	if (r < 0)
		fatalx("vip_new %s: %s", ifname, strerror(-r));
	for (size_t i = 0; i < nvips; i++) {
		struct sockaddr_storage ss;
		unsigned plen;

		if (drive_parse_vip(vips[i], &ss, &plen) < 0)
			fatalx("bad --vip %s", vips[i]);
		r = vip_add_addr(d.set, (struct sockaddr *)&ss, plen);
		if (r < 0)
			fatalx("vip_add_addr %s: %s", vips[i], strerror(-r));
	}
	for (size_t i = 0; i < ntrack; i++) {
		r = vip_link_new(d.nl, track[i], drive_link, &d, &d.links[d.nlinks]);
		if (r < 0)
			fatalx("vip_link_new %s: %s", track[i], strerror(-r));
		printf("link name=%s up=%d initial\n", track[i],
		    vip_link_is_up(d.links[d.nlinks]) ? 1 : 0);
		d.nlinks++;
	}
	if (crash) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = drive_fatal_signal;
		sigemptyset(&sa.sa_mask);
		drive_crash_set = d.set;
		sigaction(SIGABRT, &sa, NULL);
	}
	ev_io_init(&d.in, drive_stdin, STDIN_FILENO, EV_READ);
	d.in.data = &d;
	ev_io_start(d.loop, &d.in);
	printf("ready\n");
	ev_run(d.loop, 0);

	ev_io_stop(d.loop, &d.in);
	for (size_t i = 0; i < d.nlinks; i++)
		vip_link_free(d.links[i]);
	drive_crash_set = NULL;
	vip_free(d.set);
	nl_free(d.nl);
	ev_loop_destroy(d.loop);
	return 0;
}
