/*
 * vip — VIP sets and link tracking. See include/tandem/vip.h.
 *
 * What the kernel has is learnt only from its notifications (and from dumps
 * after notifications were lost), never inferred from our own requests:
 *
 *   present      the kernel said RTM_NEWADDR (not tentative) and no
 *                RTM_DELADDR since;
 *   pending_add  our add was ACKed, its RTM_NEWADDR not seen yet;
 *   pending_del  our delete was ACKed, its RTM_DELADDR not seen yet. An
 *                RTM_DELADDR with pending_del clear, while held, is someone
 *                else's: log, count, re-add.
 *
 * Requests are synchronous (nl_talk) and notifications come in order on the
 * event socket, so these three flags are exact as long as no notification
 * is lost; when some are (ENOBUFS), vip_reconcile() rebuilds them from a dump.
 */
#include <tandem/vip.h>
#include <tandem/nl.h>
#include <tandem/log.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <net/if_arp.h>

#include <ev.h>

#define VIP_RETRY_S 1.0          /* failed requests and unconfirmed takes */
#define VIP_LOG_INTERVAL_S 10.0  /* rate limit for repeated warnings */
#define VIP_DELMSG_MAX 96        /* RTM_DELADDR for one IPv6 address: 64 bytes */
#define VIP_TEXT_MAX (INET6_ADDRSTRLEN + 5)

enum vip_phase {
	VIP_PHASE_IDLE = 0,
	VIP_PHASE_BURST1,
	VIP_PHASE_BURST2,
	VIP_PHASE_REFRESH,
};

struct vip_addr {
	struct sockaddr_storage sa;
	unsigned prefixlen;
	char text[VIP_TEXT_MAX];
	bool present;
	bool pending_add;
	bool pending_del;
	bool retry;          /* the last request for it failed */
	uint64_t lost_ns;    /* someone else deleted it while held; 0 = not lost */
	/* Per address: a fight over one VIP must not hide news about another. */
	struct log_ratelimit rl_lost;
	struct log_ratelimit rl_foreign;
	/* Prebuilt RTM_DELADDR for vip_drop_signal_safe(). */
	uint8_t delmsg[VIP_DELMSG_MAX] __attribute__((aligned(4)));
	size_t delmsg_len;
};

struct vip_set {
	struct nl_ctx *nl;
	struct ev_loop *loop;
	char ifname[IF_NAMESIZE];
	int ifindex;         /* 0 while the interface is gone */
	uint8_t mac[6];
	bool ether;          /* announcements possible */
	bool if_up;          /* IFF_UP, to explain losses (IPv6 is flushed on down) */
	bool na_router;
	int psock;
	struct vip_garp_cfg cfg;
	vip_event_cb cb;
	void *arg;
	struct nl_watch watch;

	/* Read by vip_drop_signal_safe(): entries are complete before naddrs counts them. */
	struct vip_addr addrs[VIP_MAX_ADDRS];
	volatile size_t naddrs;

	bool held;
	bool up_reported;    /* VIP_EV_UP sent for the current take */
	bool down_reported;  /* VIP_EV_DOWN sent for the current release */
	uint64_t take_ns;
	uint64_t release_ns;
	int in_cb;

	ev_timer kick;       /* 0 s: completion check from the loop, never from a call */
	ev_timer retry;
	ev_timer announce;
	enum vip_phase phase;
	unsigned rounds_left;
	ev_tstamp burst_start;

	struct log_ratelimit rl_send;
	struct vip_stats stats;
};

struct vip_link {
	struct nl_ctx *nl;
	char name[IF_NAMESIZE];
	int ifindex;
	bool up;
	uint64_t changes;
	vip_link_cb cb;
	void *arg;
	struct nl_watch watch;
};

static const char *const vip_event_names[VIP_EV_COUNT] = {
#define VIP_EV_NAME(e, s) [e] = s,
	VIP_EVENTS(VIP_EV_NAME)
#undef VIP_EV_NAME
};

static void vip_on_nl(struct nl_watch *w, const struct nl_event *ev);
static void vip_reconcile(struct vip_set *set);

const char *
vip_event_name(enum vip_event_type type)
{
	if ((unsigned)type >= VIP_EV_COUNT)
		return "?";
	return vip_event_names[type];
}

int
vip_garp_cfg_check(const struct vip_garp_cfg *cfg)
{
	if (cfg->count < 1 || cfg->count > 100 || cfg->interval_ms > 10000 ||
	    cfg->refresh_count < 1 || cfg->refresh_count > 100)
		return -EINVAL;
	/* The second burst must not start before the first has ended. */
	if (cfg->second_delay_ms != 0 &&
	    cfg->second_delay_ms < (cfg->count - 1) * cfg->interval_ms)
		return -EINVAL;
	if (cfg->refresh_ms != 0 &&
	    cfg->refresh_ms < (cfg->refresh_count - 1) * cfg->interval_ms)
		return -EINVAL;
	switch (cfg->na_router) {
	case VIP_NA_ROUTER_AUTO:
	case VIP_NA_ROUTER_ON:
	case VIP_NA_ROUTER_OFF:
		return 0;
	}
	return -EINVAL;
}

/* Latencies are measured with the monotonic clock, not ev_now(): the loop
 * time is taken when the loop wakes and would hide the work done since. */
static uint64_t
vip_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t
vip_since_us(uint64_t start_ns)
{
	return (vip_now_ns() - start_ns) / 1000;
}

static void
vip_emit(struct vip_set *set, enum vip_event_type type, const struct vip_addr *a,
    uint64_t latency_us, int error)
{
	struct vip_event ev = {
		.type = type,
		.addr = a != NULL ? (const struct sockaddr *)&a->sa : NULL,
		.addr_text = a != NULL ? a->text : NULL,
		.latency_us = latency_us,
		.error = error,
	};

	set->in_cb++;
	set->cb(set, &ev, set->arg);
	set->in_cb--;
}

static bool
vip_same_ip(const struct sockaddr_storage *x, const struct sockaddr_storage *y)
{
	if (x->ss_family != y->ss_family)
		return false;
	if (x->ss_family == AF_INET)
		return ((const struct sockaddr_in *)x)->sin_addr.s_addr ==
		    ((const struct sockaddr_in *)y)->sin_addr.s_addr;
	return memcmp(&((const struct sockaddr_in6 *)x)->sin6_addr,
	    &((const struct sockaddr_in6 *)y)->sin6_addr, 16) == 0;
}

static struct vip_addr *
vip_find(struct vip_set *set, const struct nl_ifaddr *ifa)
{
	if (set->ifindex == 0 || ifa->ifindex != set->ifindex)
		return NULL;
	for (size_t i = 0; i < set->naddrs; i++) {
		struct vip_addr *a = &set->addrs[i];

		if (a->prefixlen == ifa->prefixlen && vip_same_ip(&a->sa, &ifa->addr))
			return a;
	}
	return NULL;
}

static void
vip_kick(struct vip_set *set)
{
	if (!ev_is_active(&set->kick)) {
		ev_timer_set(&set->kick, 0., 0.);
		ev_timer_start(set->loop, &set->kick);
	}
}

static void
vip_retry_arm(struct vip_set *set)
{
	if (!ev_is_active(&set->retry)) {
		ev_timer_set(&set->retry, VIP_RETRY_S, VIP_RETRY_S);
		ev_timer_start(set->loop, &set->retry);
	}
}

/* Send VIP_EV_UP / VIP_EV_DOWN when the kernel has confirmed the whole move. */
static void
vip_check_done(struct vip_set *set)
{
	uint64_t lat;
	size_t i;

	if (set->held && !set->up_reported) {
		for (i = 0; i < set->naddrs; i++) {
			const struct vip_addr *a = &set->addrs[i];

			if (!a->present || a->pending_add || a->pending_del)
				return;
		}
		lat = vip_since_us(set->take_ns);
		set->up_reported = true;
		/* Nothing left for the retry timer armed by vip_take(). */
		for (i = 0; i < set->naddrs && !set->addrs[i].retry; i++)
			;
		if (i == set->naddrs)
			ev_timer_stop(set->loop, &set->retry);
		log_info("vip %s: %zu address(es) up in %llu us", set->ifname,
		    (size_t)set->naddrs, (unsigned long long)lat);
		vip_emit(set, VIP_EV_UP, NULL, lat, 0);
		return;
	}
	if (!set->held && !set->down_reported) {
		for (i = 0; i < set->naddrs; i++) {
			const struct vip_addr *a = &set->addrs[i];

			if (a->present || a->pending_del)
				return;
		}
		lat = vip_since_us(set->release_ns);
		set->down_reported = true;
		log_info("vip %s: %zu address(es) down in %llu us", set->ifname,
		    (size_t)set->naddrs, (unsigned long long)lat);
		vip_emit(set, VIP_EV_DOWN, NULL, lat, 0);
	}
}

static int
vip_add_one(struct vip_set *set, struct vip_addr *a)
{
	int r = -ENODEV;

	if (set->ifindex != 0)
		r = nl_ifaddr_add(set->nl, set->ifindex,
		    (const struct sockaddr *)&a->sa, a->prefixlen);
	if (r < 0) {
		if (!a->retry)
			log_warnx("vip %s %s: add failed: %s, retrying", set->ifname,
			    a->text, strerror(-r));
		a->retry = true;
		set->stats.nl_errors++;
		vip_retry_arm(set);
		return r;
	}
	a->retry = false;
	a->pending_add = true;
	set->stats.adds++;
	return 0;
}

static int
vip_del_one(struct vip_set *set, struct vip_addr *a)
{
	int r = -ENODEV;

	if (set->ifindex != 0)
		r = nl_ifaddr_del(set->nl, set->ifindex,
		    (const struct sockaddr *)&a->sa, a->prefixlen);
	/* Already gone, with or without its interface: nothing to wait for. */
	if (r == -EADDRNOTAVAIL || r == -ENODEV) {
		a->present = false;
		a->pending_add = false;
		a->retry = false;
		return 0;
	}
	if (r < 0) {
		if (!a->retry)
			log_warnx("vip %s %s: delete failed: %s, retrying",
			    set->ifname, a->text, strerror(-r));
		a->retry = true;
		set->stats.nl_errors++;
		vip_retry_arm(set);
		return r;
	}
	a->retry = false;
	a->pending_add = false;
	a->pending_del = true;
	set->stats.removes++;
	return 0;
}

/* " (N earlier messages suppressed)" when some were, else "". */
static const char *
vip_supp(char *buf, size_t len, unsigned supp)
{
	if (supp == 0)
		return "";
	snprintf(buf, len, " (%u earlier messages suppressed)", supp);
	return buf;
}

/* Someone else removed a held address: say so and put it back. */
static void
vip_lost(struct vip_set *set, struct vip_addr *a)
{
	char sb[48];
	unsigned supp;
	int r;

	set->stats.readds++;
	if (log_ratelimit_ok(&a->rl_lost, ev_now(set->loop), VIP_LOG_INTERVAL_S, &supp))
		log_warnx("vip %s %s: %s while held, re-adding%s", set->ifname, a->text,
		    !set->if_up && a->sa.ss_family == AF_INET6 ?
		    "flushed by the kernel (interface down)" : "deleted by someone else",
		    vip_supp(sb, sizeof(sb), supp));
	if (a->lost_ns == 0)
		a->lost_ns = vip_now_ns();
	/* Re-add before telling the owner, who may release from its callback. */
	r = vip_add_one(set, a);
	vip_emit(set, VIP_EV_LOST, a, 0, 0);
	if (r < 0 && set->held)
		vip_emit(set, VIP_EV_ERROR, a, 0, r);
}

static void
vip_on_addr(struct vip_set *set, const struct nl_ifaddr *ifa, bool is_new)
{
	struct vip_addr *a = vip_find(set, ifa);
	char sb[48];
	unsigned supp;

	if (a == NULL)
		return;
	if (is_new) {
		bool ours = a->pending_add || a->pending_del;

		/* Tentative (DAD running) or failed: not usable, not up. */
		if (ifa->flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED))
			return;
		a->present = true;
		a->pending_add = false;
		if (!set->held && !ours &&
		    log_ratelimit_ok(&a->rl_foreign, ev_now(set->loop),
		    VIP_LOG_INTERVAL_S, &supp))
			log_warnx("vip %s %s: added by someone else while not held,"
			    " leaving it%s", set->ifname, a->text,
			    vip_supp(sb, sizeof(sb), supp));
		if (set->held && a->lost_ns != 0) {
			uint64_t lat = vip_since_us(a->lost_ns);

			a->lost_ns = 0;
			log_info("vip %s %s: back after %llu us", set->ifname, a->text,
			    (unsigned long long)lat);
			vip_emit(set, VIP_EV_READDED, a, lat, 0);
		}
		vip_check_done(set);
		return;
	}
	if (a->pending_del || !set->held) {
		a->present = false;
		a->pending_del = false;
		vip_check_done(set);
		return;
	}
	a->present = false;
	vip_lost(set, a);
}

static void
vip_fill_delmsg(struct vip_set *set, struct vip_addr *a)
{
	int n;

	n = nl_ifaddr_del_msg(set->ifindex, (const struct sockaddr *)&a->sa,
	    a->prefixlen, a->delmsg, sizeof(a->delmsg));
	a->delmsg_len = n > 0 ? (size_t)n : 0;
}

/*
 * The interface came back with a new index: point the prebuilt delete
 * messages at it with one aligned store each, so a signal handler reading
 * them concurrently sees the old index or the new one, never a mix.
 */
static void
vip_set_ifindex(struct vip_set *set, int ifindex)
{
	const size_t off = NLMSG_HDRLEN + offsetof(struct ifaddrmsg, ifa_index);

	set->ifindex = ifindex;
	for (size_t i = 0; i < set->naddrs; i++) {
		struct vip_addr *a = &set->addrs[i];

		if (a->delmsg_len == 0) {
			vip_fill_delmsg(set, a);
			continue;
		}
		*(volatile uint32_t *)(void *)(a->delmsg + off) = (uint32_t)ifindex;
	}
}

static void
vip_take_link(struct vip_set *set, const struct nl_iflink *link)
{
	static const uint8_t unset[6];

	if (link->hwaddr_len == 6 && memcmp(set->mac, link->hwaddr, 6) != 0) {
		bool first = memcmp(set->mac, unset, 6) == 0;

		memcpy(set->mac, link->hwaddr, 6);
		if (!first)
			log_info("vip %s: MAC is now %02x:%02x:%02x:%02x:%02x:%02x",
			    set->ifname, set->mac[0], set->mac[1], set->mac[2],
			    set->mac[3], set->mac[4], set->mac[5]);
	}
	set->ether = link->arptype == ARPHRD_ETHER && link->hwaddr_len == 6;
	set->if_up = (link->flags & IFF_UP) != 0;
}

static void
vip_on_link(struct vip_set *set, const struct nl_iflink *link, bool is_new)
{
	if (!is_new) {
		if (set->ifindex == 0 || link->ifindex != set->ifindex)
			return;
		log_warnx("vip %s: interface removed", set->ifname);
		set->ifindex = 0;
		for (size_t i = 0; i < set->naddrs; i++) {
			struct vip_addr *a = &set->addrs[i];

			a->present = a->pending_add = a->pending_del = false;
		}
		if (set->held)
			vip_retry_arm(set);
		else
			vip_check_done(set);
		return;
	}
	if (set->ifindex != 0 && link->ifindex == set->ifindex) {
		vip_take_link(set, link);
		return;
	}
	if (set->ifindex == 0 && strcmp(link->name, set->ifname) == 0) {
		log_info("vip %s: interface back (index %d)", set->ifname, link->ifindex);
		vip_set_ifindex(set, link->ifindex);
		vip_take_link(set, link);
		if (set->held)
			vip_reconcile(set);
	}
}

static void
vip_on_nl(struct nl_watch *w, const struct nl_event *ev)
{
	struct vip_set *set = w->data;

	switch (ev->type) {
	case NL_EV_ADDR_NEW:
	case NL_EV_ADDR_DEL:
		vip_on_addr(set, &ev->u.ifaddr, ev->type == NL_EV_ADDR_NEW);
		break;
	case NL_EV_LINK_NEW:
	case NL_EV_LINK_DEL:
		vip_on_link(set, &ev->u.link, ev->type == NL_EV_LINK_NEW);
		break;
	case NL_EV_RESYNC:
		set->stats.resyncs++;
		vip_reconcile(set);
		break;
	case NL_EV_COUNT:
		break;
	}
}

struct vip_seen {
	struct vip_set *set;
	bool seen[VIP_MAX_ADDRS];
};

static int
vip_seen_one(const struct nl_ifaddr *ifa, void *arg)
{
	struct vip_seen *s = arg;
	struct vip_addr *a = vip_find(s->set, ifa);

	if (a != NULL && !(ifa->flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)))
		s->seen[a - s->set->addrs] = true;
	return 0;
}

/*
 * Rebuild what we know from the kernel (after lost notifications, or while a
 * take is unconfirmed or a request failed), then make it what we want:
 * held -> every address present; released -> retry deletes that failed.
 */
static void
vip_reconcile(struct vip_set *set)
{
	struct vip_seen s = { .set = set };
	struct nl_iflink link;
	size_t i;
	int r;

	if (nl_iflink_get(set->nl, set->ifname, 0, &link) == 0) {
		if (link.ifindex != set->ifindex)
			vip_set_ifindex(set, link.ifindex);
		vip_take_link(set, &link);
	} else if (set->ifindex != 0 &&
	    nl_iflink_get(set->nl, NULL, set->ifindex, &link) == 0) {
		vip_take_link(set, &link);  /* renamed: follow the index */
	} else {
		set->ifindex = 0;
	}
	if (set->ifindex != 0) {
		r = nl_ifaddr_dump(set->nl, AF_UNSPEC, set->ifindex, vip_seen_one, &s);
		if (r < 0) {
			log_warnx("vip %s: cannot read addresses: %s", set->ifname,
			    strerror(-r));
			vip_retry_arm(set);
			return;
		}
	}
	/* The dump is the truth now: nothing of ours is still in flight. */
	for (i = 0; i < set->naddrs; i++) {
		struct vip_addr *a = &set->addrs[i];

		a->present = s.seen[i];
		a->pending_add = a->pending_del = false;
	}
	for (i = 0; i < set->naddrs; i++) {
		struct vip_addr *a = &set->addrs[i];

		if (set->held && a->present && a->lost_ns != 0) {
			/* Re-added while notifications were being lost. */
			uint64_t lat = vip_since_us(a->lost_ns);

			a->lost_ns = 0;
			vip_emit(set, VIP_EV_READDED, a, lat, 0);
		} else if (set->held && !a->present) {
			bool was_failing = a->retry;

			if (set->up_reported && a->lost_ns == 0) {
				vip_lost(set, a);
				continue;
			}
			r = vip_add_one(set, a);
			if (r < 0 && !was_failing && set->held)
				vip_emit(set, VIP_EV_ERROR, a, 0, r);
		} else if (!set->held && a->present && a->retry) {
			vip_del_one(set, a);
		}
	}
	vip_check_done(set);
}

static void
vip_kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	vip_check_done(w->data);
}

static void
vip_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct vip_set *set = w->data;
	bool need = set->held && !set->up_reported;

	vip_reconcile(set);
	for (size_t i = 0; i < set->naddrs; i++) {
		const struct vip_addr *a = &set->addrs[i];

		need |= a->retry || (set->held && !a->present);
	}
	if (!need)
		ev_timer_stop(loop, w);
}

/* One announcement round: every confirmed address, once. */
static int
vip_round(struct vip_set *set)
{
	uint8_t frame[VIP_FRAME_MAX];
	int ret = 0;

	for (size_t i = 0; i < set->naddrs; i++) {
		const struct vip_addr *a = &set->addrs[i];
		int ops[2] = { VIP_ARP_REQUEST, VIP_ARP_REPLY };
		int nops = set->cfg.arp_reply ? 2 : 1;
		char sb[48];
		unsigned supp;

		if (!a->present || a->pending_del || set->ifindex == 0)
			continue;
		if (a->sa.ss_family == AF_INET6)
			nops = 1;
		for (int k = 0; k < nops; k++) {
			int n, r;

			if (a->sa.ss_family == AF_INET)
				n = vip_frame_arp(frame, sizeof(frame), set->mac,
				    &((const struct sockaddr_in *)&a->sa)->sin_addr, ops[k]);
			else
				n = vip_frame_na(frame, sizeof(frame), set->mac,
				    &((const struct sockaddr_in6 *)&a->sa)->sin6_addr,
				    set->na_router);
			r = n < 0 ? n : vip_psock_send(set->psock, set->ifindex, frame,
			    (size_t)n);
			if (r < 0) {
				set->stats.send_errors++;
				if (ret == 0)
					ret = r;
				if (log_ratelimit_ok(&set->rl_send, ev_now(set->loop),
				    VIP_LOG_INTERVAL_S, &supp))
					log_warnx("vip %s %s: announcement not sent: %s%s",
					    set->ifname, a->text, strerror(-r),
					    vip_supp(sb, sizeof(sb), supp));
				continue;
			}
			if (a->sa.ss_family == AF_INET)
				set->stats.garps_sent++;
			else
				set->stats.nas_sent++;
		}
	}
	return ret;
}

/* After a round: when the next one is due, per the schedule in vip.h. */
static void
vip_announce_plan(struct vip_set *set)
{
	const struct vip_garp_cfg *c = &set->cfg;
	ev_tstamp after;

	if (set->rounds_left > 0) {
		after = c->interval_ms / 1000.;
	} else {
		switch (set->phase) {
		case VIP_PHASE_BURST1:
			if (c->second_delay_ms != 0) {
				set->phase = VIP_PHASE_BURST2;
				set->rounds_left = c->count;
				after = set->burst_start + c->second_delay_ms / 1000. -
				    ev_now(set->loop);
				if (after < 0)
					after = 0;
				break;
			}
			/* FALLTHROUGH */
		case VIP_PHASE_BURST2:
		case VIP_PHASE_REFRESH:
			if (c->refresh_ms != 0) {
				set->phase = VIP_PHASE_REFRESH;
				set->rounds_left = c->refresh_count;
				after = c->refresh_ms / 1000.;
				break;
			}
			set->phase = VIP_PHASE_IDLE;
			return;
		case VIP_PHASE_IDLE:
		default:
			return;
		}
	}
	ev_timer_set(&set->announce, after, 0.);
	ev_timer_start(set->loop, &set->announce);
}

static void
vip_announce_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct vip_set *set = w->data;

	if (!set->held) {
		set->phase = VIP_PHASE_IDLE;
		return;
	}
	vip_round(set);
	set->rounds_left--;
	vip_announce_plan(set);
}

int
vip_announce(struct vip_set *set)
{
	int r;

	if (!set->held)
		return -EINVAL;
	if (!set->ether) {
		log_warnx("vip %s: not an Ethernet interface, not announcing",
		    set->ifname);
		return -EOPNOTSUPP;
	}
	ev_timer_stop(set->loop, &set->announce);
	set->phase = VIP_PHASE_BURST1;
	set->rounds_left = set->cfg.count;
	ev_now_update(set->loop);
	set->burst_start = ev_now(set->loop);
	r = vip_round(set);
	set->rounds_left--;
	vip_announce_plan(set);
	return r;
}

int
vip_take(struct vip_set *set)
{
	int ret = 0;

	if (set->held)
		return 0;
	set->held = true;
	set->up_reported = false;
	set->take_ns = vip_now_ns();
	/*
	 * Add even what looks present: the replace makes the kernel confirm it
	 * again, so "up" always rests on a notification that follows this take.
	 */
	for (size_t i = 0; i < set->naddrs; i++) {
		struct vip_addr *a = &set->addrs[i];
		int r;

		a->lost_ns = 0;
		r = vip_add_one(set, a);
		if (r < 0 && ret == 0)
			ret = r;
	}
	/* Until VIP_EV_UP, the retry timer re-reads the kernel's view each second. */
	vip_retry_arm(set);
	vip_kick(set);
	return ret;
}

int
vip_release(struct vip_set *set)
{
	int ret = 0;

	set->held = false;
	set->down_reported = false;
	set->release_ns = vip_now_ns();
	ev_timer_stop(set->loop, &set->announce);
	set->phase = VIP_PHASE_IDLE;
	/* Delete even what looks absent: an operator expects none left behind. */
	for (size_t i = 0; i < set->naddrs; i++) {
		struct vip_addr *a = &set->addrs[i];
		int r;

		a->lost_ns = 0;
		r = vip_del_one(set, a);
		if (r < 0 && ret == 0)
			ret = r;
	}
	vip_kick(set);
	return ret;
}

void
vip_drop_signal_safe(const struct vip_set *set)
{
	size_t n = set->naddrs;

	for (size_t i = 0; i < n; i++)
		if (set->addrs[i].delmsg_len != 0)
			(void)nl_send_raw(set->nl, set->addrs[i].delmsg,
			    set->addrs[i].delmsg_len);
}

struct vip_stale {
	struct vip_set *set;
	struct nl_ifaddr victims[VIP_MAX_ADDRS * 2];
	size_t n;
	bool truncated;
};

/* Is ip configured in a set on this nl context other than self? held_only: and held. */
static bool
vip_claimed_elsewhere(const struct vip_set *self, const struct sockaddr_storage *ip,
    bool held_only)
{
	for (const struct nl_watch *w = nl_watches(self->nl); w != NULL; w = w->next) {
		const struct vip_set *o = w->data;

		if (w->cb != vip_on_nl || o == self || (held_only && !o->held))
			continue;
		for (size_t i = 0; i < o->naddrs; i++)
			if (vip_same_ip(&o->addrs[i].sa, ip))
				return true;
	}
	return false;
}

static int
vip_stale_one(const struct nl_ifaddr *ifa, void *arg)
{
	struct vip_stale *s = arg;
	const struct vip_set *set = s->set;
	bool mine = false;

	for (size_t i = 0; i < set->naddrs && !mine; i++)
		mine = vip_same_ip(&set->addrs[i].sa, &ifa->addr);
	/*
	 * Ours by configuration (any prefix length: the config may have changed),
	 * unless a held sibling set uses the same address; or ours by mark and no
	 * other set configures it (a VIP since dropped from the config).
	 */
	if (mine ? vip_claimed_elsewhere(set, &ifa->addr, true) :
	    ifa->proto != NL_IFA_PROTO_TANDEM ||
	    vip_claimed_elsewhere(set, &ifa->addr, false))
		return 0;
	if (s->n == sizeof(s->victims) / sizeof(s->victims[0])) {
		s->truncated = true;
		return 0;
	}
	s->victims[s->n++] = *ifa;
	return 0;
}

static void
vip_sa_text(const struct sockaddr_storage *ss, unsigned prefixlen, char *buf,
    size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	const void *src = ss->ss_family == AF_INET ?
	    (const void *)&((const struct sockaddr_in *)ss)->sin_addr :
	    (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;

	inet_ntop(ss->ss_family, src, ip, sizeof(ip));
	snprintf(buf, len, "%s/%u", ip, prefixlen);
}

int
vip_cleanup_stale(struct vip_set *set)
{
	struct vip_stale *s;
	int ret, removed = 0;

	if (set->held)
		return -EBUSY;
	if (set->ifindex == 0)
		return 0;   /* no interface, no addresses */
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->set = set;
	ret = nl_ifaddr_dump(set->nl, AF_UNSPEC, set->ifindex, vip_stale_one, s);
	if (ret < 0) {
		log_warnx("vip %s: cannot read addresses: %s", set->ifname,
		    strerror(-ret));
		goto free_s;
	}
	if (s->truncated)
		log_warnx("vip %s: more stale addresses than expected, removing %zu"
		    " now", set->ifname, s->n);
	for (size_t i = 0; i < s->n; i++) {
		const struct nl_ifaddr *v = &s->victims[i];
		struct vip_addr *a = vip_find(set, v);
		char text[VIP_TEXT_MAX];
		int r;

		vip_sa_text(&v->addr, v->prefixlen, text, sizeof(text));
		r = nl_ifaddr_del(set->nl, set->ifindex,
		    (const struct sockaddr *)&v->addr, v->prefixlen);
		if (r == -EADDRNOTAVAIL)
			continue;
		if (r < 0) {
			log_warnx("vip %s %s: cannot remove stale address: %s",
			    set->ifname, text, strerror(-r));
			set->stats.nl_errors++;
			if (ret == 0)
				ret = r;
			continue;
		}
		log_info("vip %s %s: removed, left by a previous run", set->ifname, text);
		set->stats.stale_removed++;
		removed++;
		if (a != NULL) {
			a->pending_del = true;
			a->pending_add = false;
		}
	}
	if (ret == 0)
		ret = removed;
free_s:
	free(s);
	return ret;
}

static bool
vip_read_forwarding(const char *ifname)
{
	char path[96], c = '0';
	FILE *f;

	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/forwarding", ifname);
	f = fopen(path, "re");
	if (f == NULL)
		return false;   /* IPv6 off on it: no NAs anyway */
	if (fread(&c, 1, 1, f) != 1)
		c = '0';
	fclose(f);
	return c == '1';
}

int
vip_new(struct nl_ctx *nl, const char *ifname, const struct vip_garp_cfg *cfg,
    vip_event_cb cb, void *arg, struct vip_set **out)
{
	static const struct vip_garp_cfg defaults = VIP_GARP_CFG_DEFAULT;
	struct ev_loop *loop = nl_loop(nl);
	struct nl_iflink link;
	struct vip_set *set;
	int ret;

	if (cfg == NULL)
		cfg = &defaults;
	ret = vip_garp_cfg_check(cfg);
	if (ret < 0)
		goto fail;
	ret = nl_iflink_get(nl, ifname, 0, &link);
	if (ret < 0)
		goto fail;
	ret = -ENOMEM;
	set = calloc(1, sizeof(*set));
	if (set == NULL)
		goto fail;
	set->nl = nl;
	set->loop = loop;
	snprintf(set->ifname, sizeof(set->ifname), "%s", ifname);
	set->cfg = *cfg;
	set->cb = cb;
	set->arg = arg;
	set->ifindex = link.ifindex;
	vip_take_link(set, &link);
	if (!set->ether)
		log_warnx("vip %s: not an Ethernet interface: no ARP/NA announcements",
		    ifname);
	switch (cfg->na_router) {
	case VIP_NA_ROUTER_AUTO:
		set->na_router = vip_read_forwarding(ifname);
		break;
	case VIP_NA_ROUTER_ON:
		set->na_router = true;
		break;
	case VIP_NA_ROUTER_OFF:
		set->na_router = false;
		break;
	}
	/* Up front: see the header about the cost of closing packet sockets. */
	set->psock = vip_psock_open();
	if (set->psock < 0) {
		ret = set->psock;
		goto free_set;
	}
	set->down_reported = true;   /* nothing was released yet */
	ev_timer_init(&set->kick, vip_kick_cb, 0., 0.);
	set->kick.data = set;
	ev_timer_init(&set->retry, vip_retry_cb, VIP_RETRY_S, VIP_RETRY_S);
	set->retry.data = set;
	ev_timer_init(&set->announce, vip_announce_cb, 0., 0.);
	set->announce.data = set;
	set->watch.cb = vip_on_nl;
	set->watch.data = set;
	nl_watch_add(nl, &set->watch);
	*out = set;
	return 0;

free_set:
	free(set);
fail:
	return ret;
}

void
vip_free(struct vip_set *set)
{
	if (set == NULL)
		return;
	if (set->in_cb) {
		/* Contract breach (vip.h): freeing now would crash the caller's caller. */
		log_warnx("vip %s: vip_free from inside its own callback, leaking it",
		    set->ifname);
		return;
	}
	nl_watch_del(set->nl, &set->watch);
	ev_timer_stop(set->loop, &set->kick);
	ev_timer_stop(set->loop, &set->retry);
	ev_timer_stop(set->loop, &set->announce);
	if (set->psock >= 0)
		close(set->psock);
	free(set);
}

int
vip_add_addr(struct vip_set *set, const struct sockaddr *addr, unsigned prefixlen)
{
	struct sockaddr_storage ss;
	struct vip_addr *a;

	if (set->held)
		return -EBUSY;
	memset(&ss, 0, sizeof(ss));
	switch (addr->sa_family) {
	case AF_INET: {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		uint32_t ip;

		memcpy(sin, addr, sizeof(*sin));
		sin->sin_port = 0;
		ip = ntohl(sin->sin_addr.s_addr);
		if (prefixlen > 32 || ip == 0 || IN_MULTICAST(ip) || ip == INADDR_BROADCAST)
			return -EINVAL;
		break;
	}
	case AF_INET6: {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		memcpy(sin6, addr, sizeof(*sin6));
		sin6->sin6_port = 0;
		sin6->sin6_flowinfo = 0;
		sin6->sin6_scope_id = 0;
		if (prefixlen > 128 || IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr) ||
		    IN6_IS_ADDR_MULTICAST(&sin6->sin6_addr))
			return -EINVAL;
		break;
	}
	default:
		return -EAFNOSUPPORT;
	}
	for (size_t i = 0; i < set->naddrs; i++)
		if (vip_same_ip(&set->addrs[i].sa, &ss))
			return -EEXIST;
	if (set->naddrs == VIP_MAX_ADDRS)
		return -ENOSPC;
	a = &set->addrs[set->naddrs];
	memset(a, 0, sizeof(*a));
	a->sa = ss;
	a->prefixlen = prefixlen;
	vip_sa_text(&ss, prefixlen, a->text, sizeof(a->text));
	vip_fill_delmsg(set, a);
	/* The entry is whole before a signal handler can count it. */
	atomic_signal_fence(memory_order_release);
	set->naddrs = set->naddrs + 1;
	return 0;
}

bool
vip_is_held(const struct vip_set *set)
{
	return set->held;
}

bool
vip_is_up(const struct vip_set *set)
{
	return set->held && set->up_reported;
}

size_t
vip_count(const struct vip_set *set)
{
	return set->naddrs;
}

const char *
vip_ifname(const struct vip_set *set)
{
	return set->ifname;
}

const struct vip_stats *
vip_stats(const struct vip_set *set)
{
	return &set->stats;
}

/* ---- link tracking ---- */

static void
vip_link_update(struct vip_link *l, int ifindex, bool up)
{
	l->ifindex = ifindex;
	if (up == l->up)
		return;
	l->up = up;
	l->changes++;
	log_info("link %s: %s", l->name, up ? "up" : "down");
	l->cb(l, up, l->arg);
}

static void
vip_link_on_nl(struct nl_watch *w, const struct nl_event *ev)
{
	struct vip_link *l = w->data;
	struct nl_iflink now;

	switch (ev->type) {
	case NL_EV_LINK_NEW:
		if (ev->u.link.ifindex == l->ifindex ||
		    (l->ifindex == 0 && strcmp(ev->u.link.name, l->name) == 0))
			vip_link_update(l, ev->u.link.ifindex,
			    nl_iflink_is_up(&ev->u.link));
		break;
	case NL_EV_LINK_DEL:
		if (l->ifindex != 0 && ev->u.link.ifindex == l->ifindex) {
			log_warnx("link %s: interface removed", l->name);
			vip_link_update(l, 0, false);
		}
		break;
	case NL_EV_RESYNC:
		if (nl_iflink_get(l->nl, l->name, 0, &now) == 0)
			vip_link_update(l, now.ifindex, nl_iflink_is_up(&now));
		else
			vip_link_update(l, 0, false);
		break;
	case NL_EV_ADDR_NEW:
	case NL_EV_ADDR_DEL:
	case NL_EV_COUNT:
		break;
	}
}

int
vip_link_new(struct nl_ctx *nl, const char *ifname, vip_link_cb cb, void *arg,
    struct vip_link **out)
{
	struct nl_iflink now;
	struct vip_link *l;
	int ret;

	ret = nl_iflink_get(nl, ifname, 0, &now);
	if (ret < 0)
		return ret;
	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return -ENOMEM;
	l->nl = nl;
	snprintf(l->name, sizeof(l->name), "%s", ifname);
	l->ifindex = now.ifindex;
	l->up = nl_iflink_is_up(&now);
	l->cb = cb;
	l->arg = arg;
	l->watch.cb = vip_link_on_nl;
	l->watch.data = l;
	nl_watch_add(nl, &l->watch);
	*out = l;
	return 0;
}

void
vip_link_free(struct vip_link *link)
{
	if (link == NULL)
		return;
	nl_watch_del(link->nl, &link->watch);
	free(link);
}

bool
vip_link_is_up(const struct vip_link *link)
{
	return link->up;
}

const char *
vip_link_name(const struct vip_link *link)
{
	return link->name;
}

uint64_t
vip_link_changes(const struct vip_link *link)
{
	return link->changes;
}
