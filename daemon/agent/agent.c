/*
 * agent — runs the VRRP-style FSM of every vrrp-group on the main loop.
 * See include/tandem/agent.h. Tracking, scripts and notify hooks are in
 * agent_track.c.
 *
 * The FSM owns every timer as a deadline; this file owns one ev_timer per
 * group and re-arms all of them after every call into the FSM, because a
 * call on one sync-group member can move another member's deadlines.
 * The FSM's clock is CLOCK_MONOTONIC (agent_clock), not ev_now(), which
 * follows the wall clock and would turn a clock step into a takeover.
 */
#include "agent_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <tandem/log.h>
#include <tandem/nl.h>

#define AGENT_REPLAY_PEERS 64      /* (node, group) pairs remembered */
#define AGENT_RX_BURST 64          /* datagrams read per wake-up */
#define AGENT_LOG_INTERVAL 10.0    /* s between two lines about one problem */

double
agent_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static enum wire_state
agent_wire_state(enum agent_state s)
{
	static const enum wire_state map[AGENT_STATE_COUNT] = {
		[AGENT_INIT] = WIRE_STATE_INIT,
		[AGENT_BACKUP] = WIRE_STATE_BACKUP,
		[AGENT_MASTER] = WIRE_STATE_MASTER,
		[AGENT_FAULT] = WIRE_STATE_FAULT,
	};

	return (unsigned)s < AGENT_STATE_COUNT ? map[s] : WIRE_STATE_INIT;
}

void
agent_rearm_all(struct agent *a)
{
	double now;

	if (!a->running)
		return;
	/* The loop's cached time lags: without this the timers fire early. */
	ev_now_update(a->loop);
	now = agent_clock();
	for (size_t i = 0; i < a->nvgs; i++) {
		struct agent_vg *vg = &a->vgs[i];
		double d = agent_next_deadline(vg->fsm);

		ev_timer_stop(a->loop, &vg->timer);
		if (d == AGENT_NO_DEADLINE)
			continue;
		ev_timer_set(&vg->timer, d > now ? d - now : 0., 0.);
		ev_timer_start(a->loop, &vg->timer);
	}
}

/* ---- boot epoch ------------------------------------------------------- */

static void
agent_mkdir_parents(const char *path)
{
	char dir[CFG_PATH_MAX];

	snprintf(dir, sizeof(dir), "%s", path);
	for (char *p = dir + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0750) == -1 && errno != EEXIST)
			return;
		*p = '/';
	}
}

static int
agent_epoch_write(const char *path, uint64_t epoch)
{
	char tmp[CFG_PATH_MAX + 8], text[32], dir[CFG_PATH_MAX];
	char *slash;
	int fd, n, ret = -EIO;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	n = snprintf(text, sizeof(text), "%" PRIu64 "\n", epoch);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd == -1)
		return -errno;
	if (write(fd, text, (size_t)n) != n || fsync(fd) == -1) {
		ret = errno ? -errno : -EIO;
		goto close_fd;
	}
	if (close(fd) == -1) {
		ret = -errno;
		goto unlink_tmp;
	}
	/* rename: a crash leaves the old number or the new one, never half. */
	if (rename(tmp, path) == -1) {
		ret = -errno;
		goto unlink_tmp;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash != NULL && slash != dir) {
		*slash = '\0';
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd != -1) {
			(void)fsync(fd);
			close(fd);
		}
	}
	return 0;
close_fd:
	close(fd);
unlink_tmp:
	unlink(tmp);
	return ret;
}

/*
 * The last epoch + 1, and never below the wall-clock seconds: a lost or
 * unwritable file must not make us restart at 1, which the peer would drop
 * as an old epoch until it restarts itself.
 */
static uint64_t
agent_boot_epoch(const char *path)
{
	uint64_t prev = 0, next, wall = (uint64_t)time(NULL);
	char text[32];
	ssize_t n;
	int fd, r;

	agent_mkdir_parents(path);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd != -1) {
		n = read(fd, text, sizeof(text) - 1);
		close(fd);
		if (n > 0) {
			char *end;

			text[n] = '\0';
			errno = 0;
			prev = strtoull(text, &end, 10);
			if (errno != 0 || end == text) {
				log_warnx("agent: boot epoch file %s unreadable, "
				    "starting from the clock", path);
				prev = 0;
			}
		}
	}
	next = prev + 1 > wall ? prev + 1 : wall;
	r = agent_epoch_write(path, next);
	if (r < 0) {
		errno = -r;
		log_warn("agent: cannot write boot epoch file %s, using the "
		    "wall-clock seconds %" PRIu64, path, wall > prev ? wall : prev + 1);
		return wall > prev ? wall : prev + 1;
	}
	return next;
}

/* ---- keys ------------------------------------------------------------- */

static int
agent_load_key(const struct cfg *cfg, const struct cfg_vrrp *vr,
    struct auth_keyring *kr, FILE *err)
{
	char why[256];
	int r;

	r = auth_keyring_load(kr, vr->auth_key, 1, NULL, why, sizeof(why));
	if (r < 0) {
		if (err != NULL)
			fprintf(err, "%s:%d: auth-key %s: %s\n", cfg->file, vr->line,
			    vr->auth_key, why);
		else
			log_warnx("%s:%d: auth-key %s: %s", cfg->file, vr->line,
			    vr->auth_key, why);
	}
	return r;
}

int
agent_check_keys(const struct cfg *cfg, FILE *err)
{
	int nerr = 0;

	for (size_t i = 0; i < cfg->nvrrp; i++) {
		struct auth_keyring *kr = auth_keyring_new();

		if (kr == NULL) {
			fprintf(err, "%s: out of memory\n", cfg->file);
			return nerr + 1;
		}
		if (agent_load_key(cfg, &cfg->vrrp[i], kr, err) < 0)
			nerr++;
		auth_keyring_free(kr);
	}
	return nerr;
}

/* ---- sending ---------------------------------------------------------- */

static int
agent_op_send(const struct agent_group *g, void *arg, uint8_t priority)
{
	struct agent_vg *vg = arg;
	struct agent_sock *s = vg->sock;
	struct wire_advert adv = vg->tpl;
	uint8_t buf[WIRE_ADVERT_MAX];
	int sent = 0, err = -EIO;

	adv.priority = priority;
	adv.state = agent_wire_state(agent_state(g));
	for (size_t i = 0; i < vg->ndst; i++) {
		size_t len;
		int r;

		/* Each copy its own number: see wire.h on several paths. */
		adv.seq = ++vg->seq;
		r = wire_advert_encode(&adv, vg->keys, buf, sizeof(buf), &len);
		if (r < 0)
			return r;
		if (sendto(s->fd, buf, len, 0, (const struct sockaddr *)&vg->dst[i],
		    vg->dstlen[i]) == -1) {
			err = -errno;
			continue;
		}
		sent++;
	}
	/* What the keeper says if we are killed before the next one. */
	if (priority != 0 && agent_state(g) == AGENT_MASTER)
		agent_lastword_prepare(vg, &adv);
	else if (priority == 0)
		agent_lastword_clear(vg);
	/* One path that works is enough: the others are redundancy. */
	return sent > 0 ? 0 : err;
}

/* ---- VIPs ------------------------------------------------------------- */

static void
agent_op_take(const struct agent_group *g, void *arg)
{
	struct agent_vg *vg = arg;
	int r = vip_take(vg->vips);

	if (r < 0)
		log_warnx("vrrp %s: adding the VIPs failed: %s (retrying every "
		    "second)", vg->cfg->name, strerror(-r));
}

static void
agent_op_release(const struct agent_group *g, void *arg)
{
	struct agent_vg *vg = arg;
	int r;

	agent_lastword_clear(vg);
	r = vip_release(vg->vips);

	if (r < 0)
		log_warnx("vrrp %s: removing the VIPs failed: %s (retrying every "
		    "second)", vg->cfg->name, strerror(-r));
}

static void
agent_op_announce(const struct agent_group *g, void *arg)
{
	struct agent_vg *vg = arg;
	int r = vip_announce(vg->vips);

	if (r < 0)
		log_warnx("vrrp %s: announcing the VIPs failed: %s", vg->cfg->name,
		    strerror(-r));
}

static void
agent_op_notify(const struct agent_group *g, void *arg, enum agent_state old,
    enum agent_state new_state, const char *why)
{
	struct agent_vg *vg = arg;

	if (vg->cfg->notify[0] != '\0')
		agent_notify_push(vg->a, vg, old, new_state);
}

static const struct agent_ops agent_vg_ops = {
	.send_advert = agent_op_send,
	.take_vips = agent_op_take,
	.release_vips = agent_op_release,
	.announce = agent_op_announce,
	.notify = agent_op_notify,
};

static void
agent_vip_cb(struct vip_set *set, const struct vip_event *ev, void *arg)
{
	struct agent_vg *vg = arg;

	switch (ev->type) {
	case VIP_EV_UP:
		vg->up_latency_us = ev->latency_us;
		log_info("vrrp %s: VIPs up on %s, %.1f ms after the request",
		    vg->cfg->name, vip_ifname(set), (double)ev->latency_us / 1e3);
		if (vg->a->hooks.vips_up != NULL &&
		    vg->a->hooks.vips_up(vg->a->hooks_arg, (size_t)(vg - vg->a->vgs)))
			break;   /* the hook announces when the sessions are back */
		agent_vips_up(vg->fsm, agent_clock());
		agent_rearm_all(vg->a);
		break;
	case VIP_EV_DOWN:
		vg->down_latency_us = ev->latency_us;
		log_info("vrrp %s: VIPs removed from %s, %.1f ms after the request",
		    vg->cfg->name, vip_ifname(set), (double)ev->latency_us / 1e3);
		if (vg->a->hooks.vips_down != NULL)
			vg->a->hooks.vips_down(vg->a->hooks_arg, (size_t)(vg - vg->a->vgs));
		break;
	case VIP_EV_LOST:
		vg->lost++;
		log_warnx("vrrp %s: VIP %s deleted by someone else while MASTER, "
		    "re-adding", vg->cfg->name, ev->addr_text ? ev->addr_text : "?");
		break;
	case VIP_EV_READDED:
		log_info("vrrp %s: VIP %s re-added (%.1f ms)", vg->cfg->name,
		    ev->addr_text ? ev->addr_text : "?", (double)ev->latency_us / 1e3);
		break;
	case VIP_EV_ERROR:
		log_warnx("vrrp %s: VIP %s: netlink request failed: %s (retrying)",
		    vg->cfg->name, ev->addr_text ? ev->addr_text : "?",
		    strerror(-ev->error));
		break;
	case VIP_EV_COUNT:
		break;
	}
}

/* ---- receiving -------------------------------------------------------- */

static struct agent_vg *
agent_vg_by_vrid(struct agent *a, const struct agent_sock *s, uint32_t vrid)
{
	for (size_t i = 0; i < a->nvgs; i++)
		if (a->vgs[i].sock == s && a->vgs[i].cfg->id == vrid)
			return &a->vgs[i];
	return NULL;
}

/*
 * Two nodes with different frontends or backends would restore sessions into
 * the wrong servers after a failover: say so loudly, once per change of the
 * verdict (not once per advert), and show it in tandemctl status and metrics.
 */
static void
agent_check_digest(struct agent_vg *vg, const struct wire_advert *adv)
{
	static const uint8_t zero[WIRE_DIGEST_LEN];
	char ours[17], theirs[17], peer[64];
	bool mismatch;

	if (memcmp(adv->config_digest, zero, sizeof(zero)) == 0)
		return;   /* a peer that could not compute one: nothing to compare */
	mismatch = memcmp(adv->config_digest, vg->a->digest, WIRE_DIGEST_LEN) != 0;
	if (vg->peer_digest_known && mismatch == vg->peer_mismatch &&
	    memcmp(adv->config_digest, vg->peer_digest, WIRE_DIGEST_LEN) == 0)
		return;
	memcpy(vg->peer_digest, adv->config_digest, WIRE_DIGEST_LEN);
	vg->peer_digest_known = true;
	vg->peer_mismatch = mismatch;
	for (int i = 0; i < 8; i++) {
		snprintf(ours + 2 * i, 3, "%02x", vg->a->digest[i]);
		snprintf(theirs + 2 * i, 3, "%02x", adv->config_digest[i]);
	}
	wire_ip_ntop(&adv->node, 0, peer, sizeof(peer));
	if (mismatch)
		log_warnx("vrid %u: peer %s runs a DIFFERENT proxy configuration "
		    "(frontends/backends digest %s…, ours %s…): sessions cannot be "
		    "restored safely between the two", vg->cfg->id, peer, theirs, ours);
	else
		log_info("vrid %u: peer %s runs the same proxy configuration (%s…)",
		    vg->cfg->id, peer, ours);
}

static void
agent_sock_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct agent_sock *s = w->data;
	struct agent *a = s->a;
	for (int i = 0; i < AGENT_RX_BURST; i++) {
		/* One byte more than allowed: a longer datagram reads as oversized. */
		uint8_t buf[WIRE_ADVERT_MAX + 1];
		struct sockaddr_storage from;
		socklen_t fromlen = sizeof(from);
		struct wire_advert adv;
		struct agent_vg *vg;
		ssize_t n;
		double now;

		n = recvfrom(s->fd, buf, sizeof(buf), 0, (struct sockaddr *)&from,
		    &fromlen);
		if (n == -1) {
			unsigned suppressed;

			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				break;
			a->counters.rx_errors++;
			if (log_ratelimit_ok(&a->rl_rx, agent_clock(),
			    AGENT_LOG_INTERVAL, &suppressed))
				log_warn("agent: port %u: recvfrom (%u more since the "
				    "last line)", s->port, suppressed);
			break;
		}
		now = agent_clock();
		if (wire_advert_recv(&s->rx, buf, (size_t)n,
		    (const struct sockaddr *)&from, now, &adv, NULL) < 0)
			continue;
		vg = agent_vg_by_vrid(a, s, adv.group);
		if (vg == NULL)
			continue;   /* wire_advert_recv checked the group: cannot happen */
		agent_check_digest(vg, &adv);
		agent_rx_advert(vg->fsm, &adv, now);
		agent_rearm_all(a);
	}
}

static int
agent_sock_open(struct agent_sock *s)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	int one = 1, ttl = 255, fd;

	fd = socket(s->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	if (s->family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &ttl, sizeof(ttl));
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &ttl, sizeof(ttl));
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(s->port);
		len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		(void)setsockopt(fd, IPPROTO_IP, IP_TTL, &ttl, sizeof(ttl));
		(void)setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl));
		sin->sin_family = AF_INET;
		sin->sin_port = htons(s->port);
		len = sizeof(*sin);
	}
	if (bind(fd, (struct sockaddr *)&ss, len) == -1) {
		int e = -errno;

		close(fd);
		return e;
	}
	s->fd = fd;
	return 0;
}

/* Join the group's multicast address on its interface; own adverts stay local. */
static int
agent_sock_multicast(struct agent_sock *s, const struct cfg_vrrp *vr)
{
	unsigned ifindex = if_nametoindex(vr->interface);
	int zero = 0;

	if (ifindex == 0)
		return -ENODEV;
	if (s->family == AF_INET) {
		const struct sockaddr_in *grp = (const struct sockaddr_in *)&vr->multicast;
		struct ip_mreqn mr = { .imr_multiaddr = grp->sin_addr,
		    .imr_ifindex = (int)ifindex };

		if (setsockopt(s->fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr,
		    sizeof(mr)) == -1 && errno != EADDRINUSE)
			return -errno;
		(void)setsockopt(s->fd, IPPROTO_IP, IP_MULTICAST_LOOP, &zero,
		    sizeof(zero));
		if (setsockopt(s->fd, IPPROTO_IP, IP_MULTICAST_IF, &mr,
		    sizeof(mr)) == -1)
			return -errno;
	} else {
		const struct sockaddr_in6 *grp =
		    (const struct sockaddr_in6 *)&vr->multicast;
		struct ipv6_mreq mr = { .ipv6mr_multiaddr = grp->sin6_addr,
		    .ipv6mr_interface = ifindex };

		if (setsockopt(s->fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &mr,
		    sizeof(mr)) == -1 && errno != EADDRINUSE)
			return -errno;
		(void)setsockopt(s->fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &zero,
		    sizeof(zero));
		if (setsockopt(s->fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex,
		    sizeof(ifindex)) == -1)
			return -errno;
	}
	return 0;
}

static int
agent_vg_family(const struct cfg_vrrp *vr)
{
	if (vr->multicast.ss_family != AF_UNSPEC)
		return vr->multicast.ss_family;
	return vr->npeers > 0 ? vr->peers[0].addr.ss_family : AF_INET;
}

/* The socket for (family, port), opened on first use. */
static int
agent_vg_sock(struct agent *a, struct agent_vg *vg)
{
	const struct cfg_vrrp *vr = vg->cfg;
	int family = agent_vg_family(vr);
	struct agent_sock *s = NULL;
	struct wire_rx_group *groups;
	int r;

	for (size_t i = 0; i < a->nsocks; i++)
		if (a->socks[i].family == family && a->socks[i].port == vr->port)
			s = &a->socks[i];
	if (s == NULL) {
		s = &a->socks[a->nsocks];
		s->a = a;
		s->family = family;
		s->port = vr->port;
		s->fd = -1;
		if ((r = agent_sock_open(s)) < 0) {
			log_warnx("%s:%d: vrrp-group %s: cannot open UDP port %u: %s",
			    a->cfg->file, vr->line, vr->name, vr->port, strerror(-r));
			return r;
		}
		ev_io_init(&s->io, agent_sock_cb, s->fd, EV_READ);
		s->io.data = s;
		s->rx.replay = a->replay;
		s->rx.stats = &a->stats;
		a->nsocks++;
	}
	if (vr->multicast.ss_family != AF_UNSPEC &&
	    (r = agent_sock_multicast(s, vr)) < 0) {
		log_warnx("%s:%d: vrrp-group %s: cannot join the multicast group on "
		    "%s: %s", a->cfg->file, vr->line, vr->name, vr->interface,
		    strerror(-r));
		return r;
	}
	groups = realloc(s->groups, (s->ngroups + 1) * sizeof(*groups));
	if (groups == NULL)
		return -ENOMEM;
	s->groups = groups;
	s->groups[s->ngroups].group = vr->id;
	s->groups[s->ngroups].keys = vg->keys;
	s->ngroups++;
	s->rx.groups = s->groups;
	s->rx.ngroups = s->ngroups;
	vg->sock = s;
	return 0;
}

/* ---- node address ------------------------------------------------------ */

struct agent_addr_pick {
	const struct cfg_vrrp *vr;
	int family;
	struct wire_ip *out;
	bool found;
};

static bool
agent_is_vip(const struct cfg_vrrp *vr, const struct sockaddr *sa)
{
	for (size_t i = 0; i < vr->nvips; i++) {
		const struct sockaddr *v = (const struct sockaddr *)&vr->vips[i].addr;

		if (v->sa_family != sa->sa_family)
			continue;
		if (sa->sa_family == AF_INET &&
		    ((const struct sockaddr_in *)v)->sin_addr.s_addr ==
		    ((const struct sockaddr_in *)sa)->sin_addr.s_addr)
			return true;
		if (sa->sa_family == AF_INET6 &&
		    memcmp(&((const struct sockaddr_in6 *)v)->sin6_addr,
		    &((const struct sockaddr_in6 *)sa)->sin6_addr,
		    sizeof(struct in6_addr)) == 0)
			return true;
	}
	return false;
}

static int
agent_addr_pick_cb(const struct nl_ifaddr *ifa, void *arg)
{
	struct agent_addr_pick *p = arg;
	const struct sockaddr *sa = (const struct sockaddr *)&ifa->addr;

	if (p->found || sa->sa_family != p->family || ifa->proto == NL_IFA_PROTO_TANDEM ||
	    agent_is_vip(p->vr, sa))
		return 0;
	if (sa->sa_family == AF_INET6 &&
	    IN6_IS_ADDR_LINKLOCAL(&((const struct sockaddr_in6 *)sa)->sin6_addr))
		return 0;
	if (wire_ip_from_sockaddr(p->out, sa, 0) == 0)
		p->found = true;
	return 0;
}

/*
 * The source address towards the first peer that has a route; else the
 * first address of the group's interface that is not a VIP.
 */
static int
agent_vg_node_addr(struct agent *a, struct agent_vg *vg)
{
	const struct cfg_vrrp *vr = vg->cfg;
	struct agent_addr_pick pick = { .vr = vr, .family = agent_vg_family(vr),
	    .out = &vg->node };
	int ifindex;

	for (size_t i = 0; i < vr->npeers; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = socket(vr->peers[i].addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);

		if (fd == -1)
			continue;
		if (connect(fd, (const struct sockaddr *)&vr->peers[i].addr,
		    vr->peers[i].addrlen) == 0 &&
		    getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
		    !agent_is_vip(vr, (struct sockaddr *)&ss) &&
		    wire_ip_from_sockaddr(&vg->node, (struct sockaddr *)&ss, 0) == 0) {
			close(fd);
			return 0;
		}
		close(fd);
	}
	ifindex = (int)if_nametoindex(vr->interface);
	if (ifindex > 0 && nl_ifaddr_dump(a->nl, pick.family, ifindex,
	    agent_addr_pick_cb, &pick) == 0 && pick.found)
		return 0;
	log_warnx("%s:%d: vrrp-group %s: no route to any peer and no address on "
	    "%s to use as the node address", a->cfg->file, vr->line, vr->name,
	    vr->interface);
	return -EADDRNOTAVAIL;
}

/* ---- set-up ----------------------------------------------------------- */

static void
agent_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct agent_vg *vg = w->data;

	agent_poll(vg->fsm, agent_clock());
	agent_rearm_all(vg->a);
}

static bool
agent_name_ok(const char *s)
{
	for (; *s != '\0'; s++)
		if (*s <= ' ' || *s > '~')
			return false;
	return true;
}

static int
agent_vg_vips(struct agent *a, struct agent_vg *vg)
{
	const struct cfg_vrrp *vr = vg->cfg;
	struct vip_garp_cfg garp = VIP_GARP_CFG_DEFAULT;
	int r;

	garp.count = vr->garp_count;
	garp.interval_ms = vr->garp_interval_ms;
	garp.second_delay_ms = vr->garp_repeat_ms;
	garp.refresh_ms = vr->garp_refresh_ms;
	r = vip_new(a->nl, vr->interface, &garp, agent_vip_cb, vg, &vg->vips);
	if (r < 0) {
		log_warnx("%s:%d: vrrp-group %s: interface %s: %s", a->cfg->file,
		    vr->line, vr->name, vr->interface, strerror(-r));
		return r;
	}
	for (size_t i = 0; i < vr->nvips; i++) {
		r = vip_add_addr(vg->vips, (const struct sockaddr *)&vr->vips[i].addr,
		    vr->vips[i].prefix);
		if (r < 0) {
			log_warnx("%s:%d: vip: %s", a->cfg->file, vr->vips[i].line,
			    strerror(-r));
			return r;
		}
		if (wire_ip_from_sockaddr(&vg->tpl.vips[i],
		    (const struct sockaddr *)&vr->vips[i].addr, vr->vips[i].prefix) == 0)
			vg->tpl.nvips++;
	}
	/* A previous run killed by SIGKILL may have left them: not ours now. */
	r = vip_cleanup_stale(vg->vips);
	if (r < 0) {
		log_warnx("vrrp %s: removing stale VIPs from %s: %s", vr->name,
		    vr->interface, strerror(-r));
		return r;
	}
	if (r > 0)
		log_info("vrrp %s: removed %d stale VIP%s from %s left by a previous "
		    "run", vr->name, r, r == 1 ? "" : "s", vr->interface);
	return 0;
}

static int
agent_vg_init(struct agent *a, struct agent_vg *vg, const struct cfg_vrrp *vr)
{
	struct agent_cfg acfg = { 0 };
	int r;

	vg->a = a;
	vg->cfg = vr;
	ev_timer_init(&vg->timer, agent_timer_cb, 0., 0.);
	vg->timer.data = vg;
	vg->keys = auth_keyring_new();
	if (vg->keys == NULL)
		return -ENOMEM;
	if ((r = agent_load_key(a->cfg, vr, vg->keys, NULL)) < 0)
		return r;
	if ((r = agent_vg_sock(a, vg)) < 0)
		return r;
	if (vr->multicast.ss_family != AF_UNSPEC) {
		vg->dst[0] = vr->multicast;
		vg->dstlen[0] = vr->multicastlen;
		vg->ndst = 1;
	} else {
		for (size_t i = 0; i < vr->npeers; i++) {
			vg->dst[i] = vr->peers[i].addr;
			vg->dstlen[i] = vr->peers[i].addrlen;
		}
		vg->ndst = vr->npeers;
	}
	if ((r = agent_vg_vips(a, vg)) < 0)
		return r;
	if ((r = agent_vg_node_addr(a, vg)) < 0)
		return r;

	vg->tpl.group = vr->id;
	vg->tpl.interval_ms = vr->advert_interval_ms;
	vg->tpl.node = vg->node;
	if (agent_name_ok(a->cfg->node.name))
		snprintf(vg->tpl.node_name, sizeof(vg->tpl.node_name), "%s",
		    a->cfg->node.name);
	vg->tpl.boot_epoch = a->boot_epoch;
	memcpy(vg->tpl.config_digest, a->digest, sizeof(vg->tpl.config_digest));

	acfg.vrid = vr->id;
	acfg.priority = (uint8_t)vr->priority;
	acfg.interval_ms = vr->advert_interval_ms;
	acfg.node = vg->node;
	acfg.preempt = vr->preempt;
	acfg.preempt_delay_ms = vr->preempt_delay_ms;
	/* Unicast peers are the paths to our one peer: a pair, one backup. */
	acfg.sole_backup = vr->multicast.ss_family == AF_UNSPEC;
	r = agent_group_new(&acfg, &agent_vg_ops, vg, &vg->fsm);
	if (r < 0) {
		log_warnx("%s:%d: vrrp-group %s: %s", a->cfg->file, vr->line,
		    vr->name, strerror(-r));
		return r;
	}
	/*
	 * Nothing here needs the bulk state sync yet (the sync issue sets
	 * readiness): without sync, preemption is never gated.
	 */
	agent_set_sync_ready(vg->fsm, true, agent_clock());
	return agent_track_init(vg);
}

static int
agent_syncgroups_init(struct agent *a)
{
	const struct cfg *cfg = a->cfg;

	if (cfg->nsync_groups == 0)
		return 0;
	a->sgs = calloc(cfg->nsync_groups, sizeof(*a->sgs));
	if (a->sgs == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->nsync_groups; i++) {
		const struct cfg_sync_group *sg = &cfg->sync_groups[i];
		int r = agent_syncgroup_new(sg->name, &a->sgs[i]);

		if (r < 0)
			return r;
		a->nsgs++;
		for (size_t j = 0; j < sg->nmembers; j++) {
			size_t gi = sg->members[j].group;

			if (gi >= a->nvgs)
				return -EINVAL;
			r = agent_syncgroup_add(a->sgs[i], a->vgs[gi].fsm);
			if (r < 0) {
				log_warnx("%s:%d: sync-group %s: group %s: %s", cfg->file,
				    sg->members[j].line, sg->name, sg->members[j].name,
				    strerror(-r));
				return r;
			}
		}
	}
	return 0;
}

int
agent_new(struct ev_loop *loop, struct nl_ctx *nl, const struct cfg *cfg,
    struct bal_pool *const *pools, size_t npools, struct agent **out)
{
	struct agent *a;
	int r = -ENOMEM;

	if (cfg->nvrrp == 0)
		return -EINVAL;
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return -ENOMEM;
	a->keeper_fd = -1;
	a->loop = loop;
	a->nl = nl;
	a->cfg = cfg;
	a->pools = pools;
	a->npools = npools;
	agent_notify_init(a);
	a->replay = auth_replay_new(AGENT_REPLAY_PEERS);
	a->vgs = calloc(cfg->nvrrp, sizeof(*a->vgs));
	a->socks = calloc(cfg->nvrrp, sizeof(*a->socks));
	if (a->replay == NULL || a->vgs == NULL || a->socks == NULL)
		goto free_agent;
	a->boot_epoch = agent_boot_epoch(cfg->node.boot_epoch_file);
	if (cfg_digest(cfg, a->digest) < 0)
		log_warnx("agent: cannot compute the config digest; adverts carry zeros");
	a->counters.boot_epoch = a->boot_epoch;
	for (size_t i = 0; i < cfg->nvrrp; i++) {
		a->nvgs++;
		if ((r = agent_vg_init(a, &a->vgs[i], &cfg->vrrp[i])) < 0)
			goto free_agent;
	}
	if ((r = agent_syncgroups_init(a)) < 0)
		goto free_agent;
	log_info("agent: %zu vrrp-group%s, boot epoch %" PRIu64, a->nvgs,
	    a->nvgs == 1 ? "" : "s", a->boot_epoch);
	*out = a;
	return 0;
free_agent:
	agent_free(a);
	return r;
}

void
agent_run(struct agent *a)
{
	double now = agent_clock();

	for (size_t i = 0; i < a->nsocks; i++)
		ev_io_start(a->loop, &a->socks[i].io);
	a->running = true;
	for (size_t i = 0; i < a->nvgs; i++) {
		struct agent_vg *vg = &a->vgs[i];
		char node[WIRE_ADDRSTRLEN];

		agent_track_start(vg);
		agent_start(vg->fsm, now);
		log_info("vrrp %s: vrid %u on %s, node %s, priority %u, advert "
		    "interval %u ms, %zu path%s", vg->cfg->name, vg->cfg->id,
		    vg->cfg->interface, wire_ip_ntop(&vg->node, 0, node, sizeof(node)),
		    vg->cfg->priority, vg->cfg->advert_interval_ms, vg->ndst,
		    vg->ndst == 1 ? "" : "s");
	}
	agent_rearm_all(a);
}

void
agent_stop(struct agent *a)
{
	double now;

	if (a == NULL || a->stopped)
		return;
	a->stopped = true;
	now = agent_clock();
	for (size_t i = 0; i < a->nvgs; i++)
		if (a->vgs[i].fsm != NULL)
			agent_shutdown(a->vgs[i].fsm, now);
	for (size_t i = 0; i < a->nvgs; i++) {
		struct agent_vg *vg = &a->vgs[i];

		/* Whatever the FSM thought: none may stay behind. */
		if (vg->vips != NULL)
			(void)vip_release(vg->vips);
		ev_timer_stop(a->loop, &vg->timer);
		agent_track_stop(vg);
	}
	for (size_t i = 0; i < a->nsocks; i++)
		ev_io_stop(a->loop, &a->socks[i].io);
	a->running = false;
	log_info("agent: stopped, VIPs released");
}

/* The fatal-signal handler has no argument: the one guarded agent. */
static struct agent *agent_crash_target;

static void
agent_crash_handler(int sig)
{
	const struct agent *a = agent_crash_target;

	if (a != NULL)
		for (size_t i = 0; i < a->nvgs; i++)
			if (a->vgs[i].vips != NULL)
				vip_drop_signal_safe(a->vgs[i].vips);
	if (a != NULL && a->hooks.crash != NULL)
		a->hooks.crash(a->hooks_arg);
	/* SA_RESETHAND put the default back: die of the same signal. */
	raise(sig);
}

int
agent_crash_guard(struct agent *a)
{
	static const int sigs[] = { SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL };
	struct sigaction sa = { 0 };

	agent_crash_target = a;
	sa.sa_handler = agent_crash_handler;
	sa.sa_flags = SA_RESETHAND | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (sigaction(sigs[i], &sa, NULL) == -1)
			return -errno;
	return 0;
}

void
agent_free(struct agent *a)
{
	if (a == NULL)
		return;
	agent_keeper_stop(a);
	if (agent_crash_target == a) {
		static const int sigs[] = { SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL };

		for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
			signal(sigs[i], SIG_DFL);
		agent_crash_target = NULL;
	}
	agent_notify_stop(a);
	for (size_t i = 0; i < a->nsgs; i++)
		agent_syncgroup_free(a->sgs[i]);
	free(a->sgs);
	for (size_t i = 0; i < a->nvgs; i++) {
		struct agent_vg *vg = &a->vgs[i];

		ev_timer_stop(a->loop, &vg->timer);
		agent_track_free(vg);
		agent_group_free(vg->fsm);
		vip_free(vg->vips);
		auth_keyring_free(vg->keys);
	}
	free(a->vgs);
	for (size_t i = 0; i < a->nsocks; i++) {
		ev_io_stop(a->loop, &a->socks[i].io);
		if (a->socks[i].fd != -1)
			close(a->socks[i].fd);
		free(a->socks[i].groups);
	}
	free(a->socks);
	auth_replay_free(a->replay);
	free(a);
}

/* ---- views ------------------------------------------------------------ */

size_t
agent_count(const struct agent *a)
{
	return a != NULL ? a->nvgs : 0;
}

int
agent_find(const struct agent *a, const char *name)
{
	for (size_t i = 0; a != NULL && i < a->nvgs; i++)
		if (strcmp(a->vgs[i].cfg->name, name) == 0)
			return (int)i;
	return -ENOENT;
}

int
agent_status(const struct agent *a, size_t i, struct agent_status *out)
{
	const struct agent_vg *vg;
	double now = agent_clock();

	if (a == NULL || i >= a->nvgs)
		return -ENOENT;
	vg = &a->vgs[i];
	memset(out, 0, sizeof(*out));
	out->name = vg->cfg->name;
	out->ifname = vg->cfg->interface;
	agent_info(vg->fsm, &out->info);
	out->advert_age = out->info.master_known ?
	    now - out->info.master_last_advert : -1.;
	out->since_transition = out->info.transitions > 0 ?
	    now - out->info.last_transition : -1.;
	out->vip = *vip_stats(vg->vips);
	out->vips_held = vip_is_held(vg->vips);
	out->vips_up = vip_is_up(vg->vips);
	out->vip_up_latency_us = vg->up_latency_us;
	out->vip_down_latency_us = vg->down_latency_us;
	out->vip_lost = vg->lost;
	out->faults = vg->faults;
	out->decrement = vg->decrement;
	out->npeers = vg->ndst;
	out->peer_digest_known = vg->peer_digest_known;
	out->peer_config_mismatch = vg->peer_mismatch;
	return 0;
}

const struct auth_stats *
agent_auth_stats(const struct agent *a)
{
	return &a->stats;
}

void
agent_counters(const struct agent *a, struct agent_counters *out)
{
	*out = a->counters;
}

int
agent_handover(struct agent *a, size_t i)
{
	int r;

	if (a == NULL || i >= a->nvgs)
		return -ENOENT;
	r = agent_switchover(a->vgs[i].fsm, agent_clock());
	agent_rearm_all(a);
	return r;
}

void
agent_set_hooks(struct agent *a, const struct agent_hooks *h, void *arg)
{
	if (h == NULL) {
		memset(&a->hooks, 0, sizeof(a->hooks));
		a->hooks_arg = NULL;
		return;
	}
	a->hooks = *h;
	a->hooks_arg = arg;
}

void
agent_vips_ready(struct agent *a, size_t i)
{
	if (a == NULL || i >= a->nvgs)
		return;
	agent_vips_up(a->vgs[i].fsm, agent_clock());
	agent_rearm_all(a);
}

void
agent_set_sync_ready_all(struct agent *a, bool ready)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->nvgs; i++)
		agent_set_sync_ready(a->vgs[i].fsm, ready, agent_clock());
	agent_rearm_all(a);
}

bool
agent_is_master(const struct agent *a, size_t i)
{
	return a != NULL && i < a->nvgs && agent_state(a->vgs[i].fsm) == AGENT_MASTER;
}

void
agent_sync_lost(struct agent *a)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->nvgs; i++)
		agent_peer_silent(a->vgs[i].fsm, agent_clock());
	agent_rearm_all(a);
}
