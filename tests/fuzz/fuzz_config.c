/*
 * fuzz_config — libFuzzer target for cfg_parse: any input must give either a
 * config that keeps the contract's invariants or a positive error count, and
 * never a crash, a leak or undefined behaviour.
 */
#include <tandem/config.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_addr(const struct sockaddr_storage *ss, socklen_t len)
{
	if (!(ss->ss_family == AF_INET && len == sizeof(struct sockaddr_in)) &&
	    !(ss->ss_family == AF_INET6 && len == sizeof(struct sockaddr_in6)))
		abort();
}

/* What the rest of the daemon relies on once cfg_parse said yes. */
static void
check_cfg(const struct cfg *c)
{
	if (c->node.name[0] == '\0' || c->node.workers > 64)
		abort();
	if (c->node.metrics.ss_family != AF_UNSPEC)
		check_addr(&c->node.metrics, c->node.metricslen);
	if (c->nbackends == 0 || c->nfrontends == 0)
		abort();
	for (size_t i = 0; i < c->nbackends; i++) {
		const struct cfg_backend *be = &c->backends[i];

		if (be->nservers == 0 || be->nservers > BAL_MAX_SERVERS ||
		    (unsigned)be->algo >= BAL_ALGO_COUNT)
			abort();
		if (be->hc.type != CFG_HC_NONE &&
		    (be->hc.timeout_ms > be->hc.interval_ms || be->hc.rise == 0 ||
		    be->hc.fall == 0 || be->hc.jitter_pct > 50 ||
		    be->hc.status_min > be->hc.status_max))
			abort();
		for (size_t j = 0; j < be->nservers; j++) {
			const struct cfg_server *s = &be->servers[j];

			check_addr(&s->addr, s->addrlen);
			if (s->weight < 1 || s->weight > 256 ||
			    (s->state != BAL_UP && s->state != BAL_DRAIN &&
			    s->state != BAL_MAINT))
				abort();
			for (size_t k = 0; k < j; k++)
				if (strcmp(be->servers[k].name, s->name) == 0)
					abort();
		}
	}
	for (size_t i = 0; i < c->nfrontends; i++) {
		const struct cfg_frontend *fe = &c->frontends[i];

		check_addr(&fe->bind, fe->bindlen);
		if (fe->backend >= c->nbackends ||
		    strcmp(c->backends[fe->backend].name, fe->backend_name) != 0)
			abort();
		if (fe->mode != CFG_MODE_TCP || fe->bufsize < 1024 ||
		    fe->bufsize > 1024 * 1024 || fe->max_conns == 0)
			abort();
		if (fe->source == CFG_SOURCE_ADDR &&
		    fe->source_addr.ss_family != fe->bind.ss_family)
			abort();
	}
}


static void
check_vrrp(const struct cfg *c)
{
	if (c->node.boot_epoch_file[0] != '/' || c->nvrrp > CFG_MAX_GROUPS)
		abort();
	for (size_t g = 0; g < c->nvrrp; g++) {
		const struct cfg_vrrp *vr = &c->vrrp[g];
		uint64_t burst = (uint64_t)(vr->garp_count - 1) * vr->garp_interval_ms;

		if (vr->id < 1 || vr->id > 255 || vr->interface[0] == '\0' ||
		    strlen(vr->interface) >= CFG_IFNAME_MAX || vr->nvips < 1 ||
		    vr->nvips > CFG_MAX_VIPS || vr->priority < 1 || vr->priority > 254 ||
		    vr->advert_interval_ms < 10 || vr->advert_interval_ms > 40000 ||
		    vr->npeers > CFG_MAX_PEERS || vr->port == 0 || vr->auth_key[0] != '/' ||
		    vr->garp_count < 1 || vr->garp_count > 100 ||
		    vr->garp_interval_ms > 10000 ||
		    (vr->garp_repeat_ms != 0 && vr->garp_repeat_ms < burst) ||
		    (vr->garp_refresh_ms != 0 && vr->garp_refresh_ms < 1000) ||
		    (vr->notify[0] != '\0' && vr->notify[0] != '/') ||
		    vr->ntrack_if > CFG_MAX_TRACK || vr->ntrack_backend > CFG_MAX_TRACK ||
		    vr->ntrack_script > CFG_MAX_TRACK)
			abort();
		if ((vr->npeers > 0) == (vr->multicast.ss_family != AF_UNSPEC))
			abort();
		if (vr->multicast.ss_family != AF_UNSPEC) {
			check_addr(&vr->multicast, vr->multicastlen);
			if (ntohs(((const struct sockaddr_in *)&vr->multicast)->sin_port) != vr->port)
				abort();
		}
		for (size_t i = 0; i < vr->npeers; i++) {
			check_addr(&vr->peers[i].addr, vr->peers[i].addrlen);
			if (ntohs(((const struct sockaddr_in *)&vr->peers[i].addr)->sin_port) !=
			    vr->port || vr->peers[i].line <= 0)
				abort();
		}
		for (size_t i = 0; i < vr->nvips; i++) {
			const struct cfg_vip *v = &vr->vips[i];

			check_addr(&v->addr, v->addrlen);
			if (v->prefix < 1 || v->prefix > (v->addr.ss_family == AF_INET6 ? 128u : 32u))
				abort();
			for (size_t h = 0; h <= g; h++)
				for (size_t j = 0; j < (h == g ? i : c->vrrp[h].nvips); j++) {
					const struct cfg_vip *w = &c->vrrp[h].vips[j];

					if (w->addr.ss_family == v->addr.ss_family &&
					    memcmp(&w->addr, &v->addr, w->addrlen) == 0)
						abort();
				}
		}
		for (size_t h = 0; h < g; h++)
			if (c->vrrp[h].id == vr->id || strcmp(c->vrrp[h].name, vr->name) == 0)
				abort();
		for (size_t i = 0; i < vr->ntrack_if; i++)
			if (vr->track_if[i].ifname[0] == '\0' || vr->track_if[i].weight > 254 ||
			    vr->track_if[i].line <= 0)
				abort();
		for (size_t i = 0; i < vr->ntrack_backend; i++) {
			const struct cfg_track_backend *t = &vr->track_backend[i];

			if (t->backend >= c->nbackends || t->weight < 1 || t->weight > 254 ||
			    strcmp(c->backends[t->backend].name, t->name) != 0 || t->line <= 0)
				abort();
		}
		for (size_t i = 0; i < vr->ntrack_script; i++) {
			const struct cfg_track_script *t = &vr->track_script[i];

			if (t->path[0] != '/' || t->timeout_ms > t->interval_ms || t->rise < 1 ||
			    t->rise > 100 || t->fall < 1 || t->fall > 100 || t->weight > 254 ||
			    t->line <= 0)
				abort();
		}
		if (vr->sync_group != CFG_NO_SYNC_GROUP) {
			const struct cfg_sync_group *sg;
			size_t m;

			if (vr->sync_group >= c->nsync_groups)
				abort();
			sg = &c->sync_groups[vr->sync_group];
			for (m = 0; m < sg->nmembers; m++)
				if (sg->members[m].group == g)
					break;
			if (m == sg->nmembers)
				abort();
		}
	}
	for (size_t s = 0; s < c->nsync_groups; s++) {
		const struct cfg_sync_group *sg = &c->sync_groups[s];

		if (sg->nmembers < 2 || sg->nmembers > CFG_MAX_GROUPS)
			abort();
		for (size_t m = 0; m < sg->nmembers; m++) {
			size_t g = sg->members[m].group;

			if (g >= c->nvrrp || c->vrrp[g].sync_group != s ||
			    strcmp(c->vrrp[g].name, sg->members[m].name) != 0)
				abort();
		}
	}
	if (c->sync.enabled) {
		check_addr(&c->sync.listen, c->sync.listenlen);
		check_addr(&c->sync.peer, c->sync.peerlen);
		if (c->sync.listen.ss_family != c->sync.peer.ss_family ||
		    c->sync.auth_key[0] != '/' || c->sync.max_entries < 1 ||
		    c->sync.max_entries > 10000000)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Opened once: the harness's only state, so messages are formatted for real. */
	static FILE *devnull;
	struct cfg *c = NULL;
	int r;

	if (devnull == NULL && (devnull = fopen("/dev/null", "w")) == NULL)
		abort();
	r = cfg_parse("fuzz.conf", (const char *)data, size, devnull, &c);
	if (r == 0) {
		if (c == NULL)
			abort();
		check_cfg(c);
		check_vrrp(c);
	} else if (c != NULL || (r < 0 && r != -ENOMEM)) {
		abort();
	}
	cfg_free(c);
	return 0;
}
