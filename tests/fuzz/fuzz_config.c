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
	} else if (c != NULL || (r < 0 && r != -ENOMEM)) {
		abort();
	}
	cfg_free(c);
	return 0;
}
