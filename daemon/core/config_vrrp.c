/*
 * config_vrrp — the vrrp-group, sync-group and sync sections of the config.
 * Grammar in include/tandem/config.h; how the parser is split in config_int.h.
 *
 * Names that point elsewhere (track-backend, sync-group members) are resolved
 * in cfg_vrrp_check once the whole file is read, so blocks may come in any
 * order, as frontend -> backend already may.
 */
#include "config_int.h"

#include <stdlib.h>
#include <string.h>

#define CFG_VRRP_PORT 5798        /* the adverts' UDP port when none is given */
#define CFG_TRACK_WEIGHT_MAX 254  /* a weight is subtracted from a 1..254 priority */

/* The "key value" options after the argument of a track-* line. */
enum cfg_topt {
	CFG_TOPT_FALL = 0,
	CFG_TOPT_INTERVAL,
	CFG_TOPT_RISE,
	CFG_TOPT_TIMEOUT,
	CFG_TOPT_WEIGHT,
	CFG_TOPT_COUNT
};

static const char *const cfg_topt_names[CFG_TOPT_COUNT] = {
	[CFG_TOPT_FALL] = "fall",
	[CFG_TOPT_INTERVAL] = "interval",
	[CFG_TOPT_RISE] = "rise",
	[CFG_TOPT_TIMEOUT] = "timeout",
	[CFG_TOPT_WEIGHT] = "weight",
};

#define CFG_TOPT(o) (1u << (o))

/* ---- vrrp-group ---- */

static struct cfg_vrrp *
cfg_cur_vr(struct cfg_parser *p)
{
	return &p->cfg->vrrp[cfg_top(p)->idx];
}

/*
 * Split the options argv[2..argc-1] of a "kw ARG [key value]..." line into
 * val[] (NULL = not given), accepting the options in the mask allowed; hint
 * lists them for the message. Returns 0, or -1 after reporting each problem.
 */
static int
cfg_track_opts(struct cfg_parser *p, int argc, char **argv, unsigned allowed,
    const char *hint, const char *val[CFG_TOPT_COUNT])
{
	int bad = 0;

	for (int a = 2; a < argc; a += 2) {
		size_t k;

		for (k = 0; k < CFG_TOPT_COUNT; k++)
			if ((allowed & CFG_TOPT(k)) && strcmp(argv[a], cfg_topt_names[k]) == 0)
				break;
		if (k == CFG_TOPT_COUNT) {
			cfg_err(p, "unknown key \"%s\" in %s \"%s\" (%s)", argv[a], argv[0],
			    argv[1], hint);
			bad = -1;
			continue;
		}
		if (a + 1 >= argc) {
			cfg_err(p, "missing value for \"%s\" in %s \"%s\"", argv[a], argv[0],
			    argv[1]);
			bad = -1;
			break;
		}
		if (val[k] != NULL) {
			cfg_err(p, "\"%s\" given twice in %s \"%s\"", argv[a], argv[0], argv[1]);
			bad = -1;
			continue;
		}
		val[k] = argv[a + 1];
	}
	return bad;
}

static int
vr_advert_interval(struct cfg_parser *p, int argc, char **argv)
{
	/* RFC 5798 allows up to 40.95 s; below 10 ms a busy loop fails over by itself. */
	return cfg_dur(p, "advert-interval", argv[1], 10, 40000,
	    &cfg_cur_vr(p)->advert_interval_ms);
}

static int
vr_auth_key(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_abs_path(p, "auth-key", argv[1], cfg_cur_vr(p)->auth_key);
}

static int
vr_garp_count(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_uint(p, "garp-count", argv[1], 1, 100, &cfg_cur_vr(p)->garp_count);
}

static int
vr_garp_interval(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_dur(p, "garp-interval", argv[1], 0, 10000,
	    &cfg_cur_vr(p)->garp_interval_ms);
}

static int
vr_garp_refresh(struct cfg_parser *p, int argc, char **argv)
{
	/* Every VIP announced more often than each second would be a flood, not a refresh. */
	return cfg_dur_off(p, "garp-refresh", argv[1], 1000, 86400000,
	    &cfg_cur_vr(p)->garp_refresh_ms);
}

static int
vr_garp_repeat(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_dur(p, "garp-repeat", argv[1], 0, 3600000,
	    &cfg_cur_vr(p)->garp_repeat_ms);
}

static int
vr_id(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg_vrrp *vr = cfg_cur_vr(p);
	size_t me = cfg_top(p)->idx;

	if (cfg_uint(p, "id", argv[1], 1, 255, &vr->id) != 0)
		return -1;
	/* Groups after this one have no id yet. */
	for (size_t i = 0; i < me; i++) {
		if (p->vr_id_lines[i] != 0 && p->cfg->vrrp[i].id == vr->id) {
			cfg_err(p, "id %u already used by vrrp-group \"%s\" (line %d)", vr->id,
			    p->cfg->vrrp[i].name, p->vr_id_lines[i]);
			return -1;
		}
	}
	p->vr_id_lines[me] = p->line;
	return 0;
}

static int
vr_interface(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_ifname(p, argv[1], cfg_cur_vr(p)->interface);
}

static int
vr_multicast(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg_vrrp *vr = cfg_cur_vr(p);
	struct sockaddr_storage ss;
	socklen_t len = 0;

	if (cfg_host_report(p, "multicast", argv[1], &ss, &len) != 0)
		return -1;
	if (!cfg_is_multicast(&ss)) {
		cfg_err(p, "multicast address %s is not a multicast group (224.0.0.0/4, "
		    "ff00::/8)", argv[1]);
		return -1;
	}
	vr->multicast = ss;
	vr->multicastlen = len;
	return 0;
}

static int
vr_notify(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_abs_path(p, "notify", argv[1], cfg_cur_vr(p)->notify);
}

static int
vr_notify_timeout(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_dur(p, "notify-timeout", argv[1], 100, 3600000,
	    &cfg_cur_vr(p)->notify_timeout_ms);
}

static int
vr_peer(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg_vrrp *vr = cfg_cur_vr(p);
	struct cfg_peer peer;
	char a[CFG_ADDR_TEXT];

	memset(&peer, 0, sizeof(peer));
	peer.line = p->line;
	if (cfg_host_report(p, "peer", argv[1], &peer.addr, &peer.addrlen) != 0)
		return -1;
	cfg_fmt_host(&peer.addr, a, sizeof(a));
	if (cfg_is_multicast(&peer.addr)) {
		cfg_err(p, "peer %s is a multicast group (write \"multicast %s\" instead)",
		    a, a);
		return -1;
	}
	if (cfg_is_wildcard(&peer.addr)) {
		cfg_err(p, "peer %s is not a unicast address", a);
		return -1;
	}
	for (size_t i = 0; i < vr->npeers; i++) {
		if (cfg_same_host(&vr->peers[i].addr, &peer.addr)) {
			cfg_err(p, "peer %s given twice in vrrp-group \"%s\" (first at line %d)",
			    a, vr->name, vr->peers[i].line);
			return -1;
		}
	}
	if (vr->npeers >= CFG_MAX_PEERS) {
		cfg_err(p, "too many peers in vrrp-group \"%s\" (max %d)", vr->name,
		    CFG_MAX_PEERS);
		return -1;
	}
	vr->peers[vr->npeers++] = peer;
	return 0;
}

static int
vr_port(struct cfg_parser *p, int argc, char **argv)
{
	unsigned v = 0;

	if (cfg_uint(p, "port", argv[1], 1, 65535, &v) != 0)
		return -1;
	cfg_cur_vr(p)->port = (uint16_t)v;
	return 0;
}

static int
vr_preempt(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_onoff(p, "preempt", argv[1], &cfg_cur_vr(p)->preempt);
}

static int
vr_preempt_delay(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_dur(p, "preempt-delay", argv[1], 0, 3600000,
	    &cfg_cur_vr(p)->preempt_delay_ms);
}

static int
vr_priority(struct cfg_parser *p, int argc, char **argv)
{
	/* 0 is the "I am leaving" advert, 255 the address owner: neither is configured. */
	return cfg_uint(p, "priority", argv[1], 1, 254, &cfg_cur_vr(p)->priority);
}

static int
vr_track_backend(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg_vrrp *vr = cfg_cur_vr(p);
	struct cfg_track_backend t;
	const char *val[CFG_TOPT_COUNT] = { NULL };
	int bad;

	memset(&t, 0, sizeof(t));
	t.line = p->line;
	bad = cfg_name(p, "backend", argv[1], t.name);
	bad |= cfg_track_opts(p, argc, argv, CFG_TOPT(CFG_TOPT_WEIGHT), "weight", val);
	if (val[CFG_TOPT_WEIGHT] != NULL)
		bad |= cfg_uint(p, "weight", val[CFG_TOPT_WEIGHT], 1, CFG_TRACK_WEIGHT_MAX,
		    &t.weight);
	else if (bad == 0) {
		/* A backend going down is no reason to give up every VIP: no FAULT form. */
		cfg_err(p, "track-backend \"%s\" needs \"weight N\" (1..%d)", argv[1],
		    CFG_TRACK_WEIGHT_MAX);
		bad = -1;
	}
	if (bad != 0)
		return -1;
	for (size_t i = 0; i < vr->ntrack_backend; i++) {
		if (strcmp(vr->track_backend[i].name, t.name) == 0) {
			cfg_err(p, "track-backend %s given twice in vrrp-group \"%s\" (first "
			    "at line %d)", t.name, vr->name, vr->track_backend[i].line);
			return -1;
		}
	}
	if (vr->ntrack_backend >= CFG_MAX_TRACK) {
		cfg_err(p, "too many track-backend lines in vrrp-group \"%s\" (max %d)",
		    vr->name, CFG_MAX_TRACK);
		return -1;
	}
	vr->track_backend[vr->ntrack_backend++] = t;
	return 0;
}

static int
vr_track_interface(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg_vrrp *vr = cfg_cur_vr(p);
	struct cfg_track_if t;
	const char *val[CFG_TOPT_COUNT] = { NULL };
	int bad;

	memset(&t, 0, sizeof(t));
	t.line = p->line;
	bad = cfg_ifname(p, argv[1], t.ifname);
	bad |= cfg_track_opts(p, argc, argv, CFG_TOPT(CFG_TOPT_WEIGHT), "weight", val);
	if (val[CFG_TOPT_WEIGHT] != NULL)
		bad |= cfg_uint(p, "weight", val[CFG_TOPT_WEIGHT], 1, CFG_TRACK_WEIGHT_MAX,
		    &t.weight);
	if (bad != 0)
		return -1;
	for (size_t i = 0; i < vr->ntrack_if; i++) {
		if (strcmp(vr->track_if[i].ifname, t.ifname) == 0) {
			cfg_err(p, "track-interface %s given twice in vrrp-group \"%s\" (first "
			    "at line %d)", t.ifname, vr->name, vr->track_if[i].line);
			return -1;
		}
	}
	if (vr->ntrack_if >= CFG_MAX_TRACK) {
		cfg_err(p, "too many track-interface lines in vrrp-group \"%s\" (max %d)",
		    vr->name, CFG_MAX_TRACK);
		return -1;
	}
	vr->track_if[vr->ntrack_if++] = t;
	return 0;
}

static int
vr_track_script(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg_vrrp *vr = cfg_cur_vr(p);
	struct cfg_track_script t;
	const char *val[CFG_TOPT_COUNT] = { NULL };
	char a[32], b[32];
	int bad;

	memset(&t, 0, sizeof(t));
	t.line = p->line;
	t.interval_ms = 2000;
	t.timeout_ms = 1000;
	t.rise = 2;
	t.fall = 2;
	bad = cfg_abs_path(p, "track-script", argv[1], t.path);
	bad |= cfg_track_opts(p, argc, argv, CFG_TOPT(CFG_TOPT_FALL) |
	    CFG_TOPT(CFG_TOPT_INTERVAL) | CFG_TOPT(CFG_TOPT_RISE) |
	    CFG_TOPT(CFG_TOPT_TIMEOUT) | CFG_TOPT(CFG_TOPT_WEIGHT),
	    "interval, timeout, rise, fall, weight", val);
	if (val[CFG_TOPT_INTERVAL] != NULL)
		bad |= cfg_dur(p, "interval", val[CFG_TOPT_INTERVAL], 100, 3600000,
		    &t.interval_ms);
	if (val[CFG_TOPT_TIMEOUT] != NULL)
		bad |= cfg_dur(p, "timeout", val[CFG_TOPT_TIMEOUT], 10, 3600000,
		    &t.timeout_ms);
	if (val[CFG_TOPT_RISE] != NULL)
		bad |= cfg_uint(p, "rise", val[CFG_TOPT_RISE], 1, 100, &t.rise);
	if (val[CFG_TOPT_FALL] != NULL)
		bad |= cfg_uint(p, "fall", val[CFG_TOPT_FALL], 1, 100, &t.fall);
	if (val[CFG_TOPT_WEIGHT] != NULL)
		bad |= cfg_uint(p, "weight", val[CFG_TOPT_WEIGHT], 1, CFG_TRACK_WEIGHT_MAX,
		    &t.weight);
	if (bad != 0)
		return -1;
	/* A run still going when the next is due would pile up. */
	if (t.timeout_ms > t.interval_ms) {
		cfg_err(p, "track-script timeout %s%s is longer than interval %s%s",
		    cfg_fmt_ms(t.timeout_ms, a, sizeof(a)),
		    val[CFG_TOPT_TIMEOUT] != NULL ? "" : " (the default)",
		    cfg_fmt_ms(t.interval_ms, b, sizeof(b)),
		    val[CFG_TOPT_INTERVAL] != NULL ? "" : " (the default)");
		return -1;
	}
	if (vr->ntrack_script >= CFG_MAX_TRACK) {
		cfg_err(p, "too many track-script lines in vrrp-group \"%s\" (max %d)",
		    vr->name, CFG_MAX_TRACK);
		return -1;
	}
	vr->track_script[vr->ntrack_script++] = t;
	return 0;
}

static int
vr_vip(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg *cfg = p->cfg;
	struct cfg_vrrp *vr = cfg_cur_vr(p);
	struct cfg_vip vip;
	char a[CFG_ADDR_TEXT];

	memset(&vip, 0, sizeof(vip));
	vip.line = p->line;
	if (cfg_prefix_report(p, "vip", argv[1], &vip.addr, &vip.addrlen,
	    &vip.prefix) != 0)
		return -1;
	cfg_fmt_host(&vip.addr, a, sizeof(a));
	if (cfg_is_wildcard(&vip.addr) || cfg_is_multicast(&vip.addr)) {
		cfg_err(p, "vip %s is not a unicast address", a);
		return -1;
	}
	/* Two groups holding one address would fight over it at every failover. */
	for (size_t g = 0; g < cfg->nvrrp; g++) {
		const struct cfg_vrrp *other = &cfg->vrrp[g];

		for (size_t i = 0; i < other->nvips; i++) {
			if (!cfg_same_host(&other->vips[i].addr, &vip.addr))
				continue;
			if (other == vr)
				cfg_err(p, "vip %s given twice in vrrp-group \"%s\" (first at "
				    "line %d)", a, vr->name, other->vips[i].line);
			else
				cfg_err(p, "vip %s already belongs to vrrp-group \"%s\" (line "
				    "%d)", a, other->name, other->vips[i].line);
			return -1;
		}
	}
	if (vr->nvips >= CFG_MAX_VIPS) {
		cfg_err(p, "too many vips in vrrp-group \"%s\" (max %d)", vr->name,
		    CFG_MAX_VIPS);
		return -1;
	}
	vr->vips[vr->nvips++] = vip;
	return 0;
}

static const struct cfg_kw cfg_vrrp_kw[] = {
	{ "advert-interval", 1, 1, 0, vr_advert_interval },
	{ "auth-key", 1, 1, 0, vr_auth_key },
	{ "garp-count", 1, 1, 0, vr_garp_count },
	{ "garp-interval", 1, 1, 0, vr_garp_interval },
	{ "garp-refresh", 1, 1, 0, vr_garp_refresh },
	{ "garp-repeat", 1, 1, 0, vr_garp_repeat },
	{ "id", 1, 1, 0, vr_id },
	{ "interface", 1, 1, 0, vr_interface },
	{ "multicast", 1, 1, 0, vr_multicast },
	{ "notify", 1, 1, 0, vr_notify },
	{ "notify-timeout", 1, 1, 0, vr_notify_timeout },
	{ "peer", 1, 1, CFG_KW_REPEAT, vr_peer },
	{ "port", 1, 1, 0, vr_port },
	{ "preempt", 1, 1, 0, vr_preempt },
	{ "preempt-delay", 1, 1, 0, vr_preempt_delay },
	{ "priority", 1, 1, 0, vr_priority },
	{ "track-backend", 1, 3, CFG_KW_REPEAT, vr_track_backend },
	{ "track-interface", 1, 3, CFG_KW_REPEAT, vr_track_interface },
	{ "track-script", 1, CFG_MAX_ARGS - 1, CFG_KW_REPEAT, vr_track_script },
	{ "vip", 1, 1, CFG_KW_REPEAT, vr_vip },
};

_Static_assert(CFG_ARRAY_SIZE(cfg_vrrp_kw) <= CFG_KW_MAX, "seen[] too small");

static void
vrrp_close(struct cfg_parser *p, struct cfg_open *o)
{
	static const char *const required[] = {
		"id", "interface", "vip", "priority", "auth-key",
	};
	struct cfg_vrrp *vr = &p->cfg->vrrp[o->idx];
	int peer = vr->npeers > 0 ? vr->peers[0].line : cfg_seen(o, "peer");
	int mcast = cfg_seen(o, "multicast");
	char a[32], b[32];
	uint64_t burst;
	int line;

	for (size_t i = 0; i < CFG_ARRAY_SIZE(required); i++)
		if (!cfg_seen(o, required[i]))
			cfg_err_at(p, o->line, "missing required key \"%s\" in vrrp-group "
			    "\"%s\"", required[i], vr->name);
	if (peer != 0 && mcast != 0)
		cfg_err_at(p, peer > mcast ? peer : mcast, "peer and multicast both given "
		    "in vrrp-group \"%s\" (peer at line %d, multicast at line %d): use "
		    "one or the other", vr->name, peer, mcast);
	else if (peer == 0 && mcast == 0)
		cfg_err_at(p, o->line, "vrrp-group \"%s\" needs \"peer ADDR\" (one per "
		    "heartbeat path) or \"multicast GROUP\"", vr->name);
	/* Ready to sendto(). */
	for (size_t i = 0; i < vr->npeers; i++)
		cfg_set_port(&vr->peers[i].addr, vr->port);
	cfg_set_port(&vr->multicast, vr->port);

	/* The announcer refuses a second burst that would overlap the first. */
	burst = (uint64_t)(vr->garp_count - 1) * vr->garp_interval_ms;
	if (vr->garp_repeat_ms != 0 && vr->garp_repeat_ms < burst) {
		line = cfg_seen(o, "garp-repeat");
		if (line == 0)
			line = cfg_seen(o, "garp-interval") > cfg_seen(o, "garp-count") ?
			    cfg_seen(o, "garp-interval") : cfg_seen(o, "garp-count");
		cfg_err_at(p, line, "garp-repeat %s%s starts before the first burst ends "
		    "(%u announcements %s apart)", cfg_fmt_ms(vr->garp_repeat_ms, a,
		    sizeof(a)), cfg_seen(o, "garp-repeat") ? "" : " (the default)",
		    vr->garp_count, cfg_fmt_ms(vr->garp_interval_ms, b, sizeof(b)));
	}
}

const struct cfg_block cfg_vrrp_block = {
	"vrrp-group", cfg_vrrp_kw, CFG_ARRAY_SIZE(cfg_vrrp_kw), vrrp_close,
};

int
cfg_top_vrrp_group(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg *cfg = p->cfg;
	struct cfg_vrrp *vr;
	size_t i, cap = p->vr_cap;

	if (cfg->nvrrp >= CFG_MAX_GROUPS) {
		cfg_err(p, "too many vrrp-groups (max %d)", CFG_MAX_GROUPS);
		return -1;
	}
	if (cfg_grow(p, (void **)&cfg->vrrp, &p->vr_cap, cfg->nvrrp, sizeof(*vr)) != 0)
		return -1;
	if (cfg_grow(p, (void **)&p->vr_id_lines, &cap, cfg->nvrrp,
	    sizeof(*p->vr_id_lines)) != 0)
		return -1;
	vr = &cfg->vrrp[cfg->nvrrp];
	memset(vr, 0, sizeof(*vr));
	p->vr_id_lines[cfg->nvrrp] = 0;
	vr->advert_interval_ms = 1000;
	vr->preempt = true;
	vr->multicast.ss_family = AF_UNSPEC;
	vr->port = CFG_VRRP_PORT;
	vr->garp_count = 3;
	vr->garp_interval_ms = 100;
	vr->garp_repeat_ms = 2000;
	vr->notify_timeout_ms = 10000;
	vr->sync_group = CFG_NO_SYNC_GROUP;
	vr->line = p->line;
	cfg_name(p, "vrrp-group", argv[1], vr->name);
	for (i = 0; i < cfg->nvrrp; i++) {
		if (strcmp(cfg->vrrp[i].name, vr->name) == 0) {
			cfg_err(p, "duplicate vrrp-group \"%s\" (first defined at line %d)",
			    vr->name, cfg->vrrp[i].line);
			break;
		}
	}
	cfg->nvrrp++;
	return cfg_open_block(p, CFG_BLK_VRRP, cfg->nvrrp - 1);
}

/* ---- sync-group ---- */

static int
sg_group(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg_sync_group *sg = &p->cfg->sync_groups[cfg_top(p)->idx];
	struct cfg_sync_member m;

	memset(&m, 0, sizeof(m));
	m.line = p->line;
	/*
	 * A member with a blank name is skipped by cfg_vrrp_check: a bad name or
	 * a repeat is reported here only, and still counts as a line for the
	 * "two or more" check (one mistake, one message).
	 */
	if (cfg_name(p, "vrrp-group", argv[1], m.name) != 0)
		m.name[0] = '\0';
	for (size_t i = 0; i < sg->nmembers && m.name[0] != '\0'; i++) {
		if (strcmp(sg->members[i].name, m.name) == 0) {
			cfg_err(p, "group \"%s\" given twice in sync-group \"%s\" (first at "
			    "line %d)", m.name, sg->name, sg->members[i].line);
			m.name[0] = '\0';
			break;
		}
	}
	if (sg->nmembers >= CFG_MAX_GROUPS) {
		cfg_err(p, "too many groups in sync-group \"%s\" (max %d)", sg->name,
		    CFG_MAX_GROUPS);
		return -1;
	}
	sg->members[sg->nmembers++] = m;
	return m.name[0] != '\0' ? 0 : -1;
}

static const struct cfg_kw cfg_sync_group_kw[] = {
	{ "group", 1, 1, CFG_KW_REPEAT, sg_group },
};

static void
sync_group_close(struct cfg_parser *p, struct cfg_open *o)
{
	const struct cfg_sync_group *sg = &p->cfg->sync_groups[o->idx];

	if (sg->nmembers < 2)
		cfg_err_at(p, o->line, "sync-group \"%s\" needs two or more groups (has "
		    "%zu)", sg->name, sg->nmembers);
}

const struct cfg_block cfg_sync_group_block = {
	"sync-group", cfg_sync_group_kw, CFG_ARRAY_SIZE(cfg_sync_group_kw),
	sync_group_close,
};

int
cfg_top_sync_group(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg *cfg = p->cfg;
	struct cfg_sync_group *sg;

	/* Each needs two groups of its own: more than this cannot all be valid. */
	if (cfg->nsync_groups >= CFG_MAX_GROUPS / 2) {
		cfg_err(p, "too many sync-groups (max %d)", CFG_MAX_GROUPS / 2);
		return -1;
	}
	if (cfg_grow(p, (void **)&cfg->sync_groups, &p->sg_cap, cfg->nsync_groups,
	    sizeof(*sg)) != 0)
		return -1;
	sg = &cfg->sync_groups[cfg->nsync_groups];
	memset(sg, 0, sizeof(*sg));
	sg->line = p->line;
	cfg_name(p, "sync-group", argv[1], sg->name);
	for (size_t i = 0; i < cfg->nsync_groups; i++) {
		if (strcmp(cfg->sync_groups[i].name, sg->name) == 0) {
			cfg_err(p, "duplicate sync-group \"%s\" (first defined at line %d)",
			    sg->name, cfg->sync_groups[i].line);
			break;
		}
	}
	cfg->nsync_groups++;
	return cfg_open_block(p, CFG_BLK_SYNC_GROUP, cfg->nsync_groups - 1);
}

/* ---- sync ---- */

static int
sync_auth_key(struct cfg_parser *p, int argc, char **argv)
{
	p->sync_key_line = p->line;
	return cfg_abs_path(p, "auth-key", argv[1], p->cfg->sync.auth_key);
}

static int
sync_listen(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg_sync *s = &p->cfg->sync;

	return cfg_addr_report(p, argv[1], 1, &s->listen, &s->listenlen, NULL);
}

static int
sync_max_entries(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_uint(p, "max-entries", argv[1], 1, 10000000,
	    &p->cfg->sync.max_entries);
}

static int
sync_peer(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg_sync *s = &p->cfg->sync;
	struct sockaddr_storage ss;
	socklen_t len = 0;
	char a[CFG_ADDR_TEXT];

	if (cfg_addr_report(p, argv[1], 1, &ss, &len, NULL) != 0)
		return -1;
	if (cfg_is_wildcard(&ss) || cfg_is_multicast(&ss)) {
		cfg_err(p, "sync peer %s is not a unicast address",
		    cfg_fmt_addr(&ss, a, sizeof(a)));
		return -1;
	}
	s->peer = ss;
	s->peerlen = len;
	return 0;
}

static int
sync_shutdown_handover(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_onoff(p, "shutdown-handover", argv[1],
	    &p->cfg->sync.shutdown_handover);
}

static const struct cfg_kw cfg_sync_kw[] = {
	{ "auth-key", 1, 1, 0, sync_auth_key },
	{ "listen", 1, 1, 0, sync_listen },
	{ "max-entries", 1, 1, 0, sync_max_entries },
	{ "peer", 1, 1, 0, sync_peer },
	{ "shutdown-handover", 1, 1, 0, sync_shutdown_handover },
};

static void
sync_close(struct cfg_parser *p, struct cfg_open *o)
{
	const struct cfg_sync *s = &p->cfg->sync;
	char a[CFG_ADDR_TEXT], b[CFG_ADDR_TEXT];

	if (!cfg_seen(o, "listen"))
		cfg_err_at(p, o->line, "missing required key \"listen\" in sync");
	if (!cfg_seen(o, "peer"))
		cfg_err_at(p, o->line, "missing required key \"peer\" in sync");
	if (s->listenlen != 0 && s->peerlen != 0 &&
	    s->listen.ss_family != s->peer.ss_family)
		cfg_err_at(p, cfg_seen(o, "peer"), "sync peer %s and listen %s are of "
		    "different address families", cfg_fmt_addr(&s->peer, a, sizeof(a)),
		    cfg_fmt_addr(&s->listen, b, sizeof(b)));
}

const struct cfg_block cfg_sync_block = {
	"sync", cfg_sync_kw, CFG_ARRAY_SIZE(cfg_sync_kw), sync_close,
};

int
cfg_top_sync(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg_sync *s = &p->cfg->sync;

	memset(s, 0, sizeof(*s));
	s->enabled = true;
	s->max_entries = 100000;
	s->shutdown_handover = true;
	s->line = p->line;
	return cfg_open_block(p, CFG_BLK_SYNC, 0);
}

/* ---- whole-file checks ---- */

static size_t
cfg_find_vrrp(const struct cfg *cfg, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->nvrrp; i++)
		if (strcmp(cfg->vrrp[i].name, name) == 0)
			break;
	return i;
}

/* The line where sync-group sg lists vrrp-group g. */
static int
cfg_member_line(const struct cfg_sync_group *sg, size_t g)
{
	for (size_t i = 0; i < sg->nmembers; i++)
		if (sg->members[i].name[0] != '\0' && sg->members[i].group == g)
			return sg->members[i].line;
	return sg->line;
}

void
cfg_vrrp_check(struct cfg_parser *p)
{
	struct cfg *cfg = p->cfg;

	for (size_t g = 0; g < cfg->nvrrp; g++) {
		struct cfg_vrrp *vr = &cfg->vrrp[g];

		for (size_t t = 0; t < vr->ntrack_backend; t++) {
			struct cfg_track_backend *tb = &vr->track_backend[t];
			size_t b;

			for (b = 0; b < cfg->nbackends; b++)
				if (strcmp(cfg->backends[b].name, tb->name) == 0)
					break;
			if (b == cfg->nbackends)
				cfg_err_at(p, tb->line, "vrrp-group \"%s\" tracks unknown "
				    "backend \"%s\"", vr->name, tb->name);
			else
				tb->backend = b;
		}
	}

	for (size_t s = 0; s < cfg->nsync_groups; s++) {
		struct cfg_sync_group *sg = &cfg->sync_groups[s];

		for (size_t i = 0; i < sg->nmembers; i++) {
			struct cfg_sync_member *m = &sg->members[i];
			size_t g;

			if (m->name[0] == '\0')
				continue;
			g = cfg_find_vrrp(cfg, m->name);
			if (g == cfg->nvrrp) {
				cfg_err_at(p, m->line, "sync-group \"%s\" names unknown "
				    "vrrp-group \"%s\"", sg->name, m->name);
				m->name[0] = '\0';
				continue;
			}
			/* Two sync-groups sharing a group would be one sync-group. */
			if (cfg->vrrp[g].sync_group != CFG_NO_SYNC_GROUP) {
				const struct cfg_sync_group *first =
				    &cfg->sync_groups[cfg->vrrp[g].sync_group];

				cfg_err_at(p, m->line, "vrrp-group \"%s\" is already in "
				    "sync-group \"%s\" (line %d)", m->name, first->name,
				    cfg_member_line(first, g));
				m->name[0] = '\0';
				continue;
			}
			m->group = g;
			cfg->vrrp[g].sync_group = s;
		}
	}

	if (cfg->sync.enabled && p->sync_key_line == 0) {
		/* One key file for the pair is the common case: do not make it say so twice. */
		if (cfg->nvrrp > 0)
			memcpy(cfg->sync.auth_key, cfg->vrrp[0].auth_key,
			    sizeof(cfg->sync.auth_key));
		else
			cfg_err_at(p, cfg->sync.line, "sync has no auth-key and there is no "
			    "vrrp-group to take it from (add \"auth-key PATH\" to sync)");
	}
}
