/*
 * config digest — SHA-256 over the part of the configuration both nodes of a
 * pair must agree on: frontends and backends. A standby that restores sessions
 * into a different proxy configuration would send clients to the wrong
 * servers, so the digest travels in adverts and in the sync handshake and a
 * difference is reported, never silent.
 *
 * The input is a canonical text, one line per object, in file order, with
 * every value in one spelling (addresses as text, durations in ms): comments,
 * blank lines, key order and unit spelling do not change the digest; node
 * identity, vrrp-groups and sync (which differ per node by design) are left out.
 */
#include <tandem/config.h>

#include <errno.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "config_int.h"

static void cfg_digest_line(EVP_MD_CTX *md, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
cfg_digest_line(EVP_MD_CTX *md, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	EVP_DigestUpdate(md, line, (size_t)n);
	EVP_DigestUpdate(md, "\n", 1);
}

static void
cfg_digest_backend(EVP_MD_CTX *md, const struct cfg_backend *be)
{
	const struct cfg_health *hc = &be->hc;
	char a[64];

	cfg_digest_line(md, "backend %s algorithm=%s retries=%u slowstart=%u passive=%u",
	    be->name, bal_algo_name(be->algo), be->retries, be->slowstart_ms,
	    be->passive_fails);
	cfg_digest_line(md, " check type=%d interval=%u timeout=%u rise=%u fall=%u "
	    "jitter=%u method=%s path=%s host=%s status=%d-%d", (int)hc->type,
	    hc->interval_ms, hc->timeout_ms, hc->rise, hc->fall, hc->jitter_pct,
	    hc->method, hc->path, hc->host, hc->status_min, hc->status_max);
	for (size_t i = 0; i < be->nservers; i++) {
		const struct cfg_server *s = &be->servers[i];

		cfg_digest_line(md, " server %s %s weight=%u state=%s", s->name,
		    cfg_fmt_addr(&s->addr, a, sizeof(a)), s->weight,
		    bal_state_name(s->state));
	}
}

static void
cfg_digest_frontend(EVP_MD_CTX *md, const struct cfg_frontend *fe)
{
	char b[64], s[64];

	cfg_digest_line(md, "frontend %s bind=%s mode=%d backend=%s source=%d/%s "
	    "max=%u connect=%u client=%u server=%u idle=%u buf=%zu", fe->name,
	    cfg_fmt_addr(&fe->bind, b, sizeof(b)), (int)fe->mode, fe->backend_name,
	    (int)fe->source, fe->source == CFG_SOURCE_ADDR ?
	    cfg_fmt_host(&fe->source_addr, s, sizeof(s)) : "-", fe->max_conns,
	    fe->timeout_connect_ms, fe->timeout_client_ms, fe->timeout_server_ms,
	    fe->timeout_idle_ms, fe->bufsize);
}

int
cfg_digest(const struct cfg *cfg, uint8_t out[CFG_DIGEST_LEN])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned len = 0;
	int ret = -ENOMEM;

	if (md == NULL)
		return ret;
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		goto out;
	cfg_digest_line(md, "tandem-proxy-config 1");
	for (size_t i = 0; i < cfg->nbackends; i++)
		cfg_digest_backend(md, &cfg->backends[i]);
	for (size_t i = 0; i < cfg->nfrontends; i++)
		cfg_digest_frontend(md, &cfg->frontends[i]);
	if (EVP_DigestFinal_ex(md, out, &len) != 1 || len != CFG_DIGEST_LEN)
		goto out;
	ret = 0;
out:
	EVP_MD_CTX_free(md);
	return ret;
}
