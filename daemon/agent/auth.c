/* auth — see include/tandem/auth.h */
#include <tandem/auth.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

_Static_assert(AUTH_DROP_GARBAGE == 0, "drop reasons index arrays from 0");

#define AUTH_DROP_NAME_(sym, name, desc) [AUTH_DROP_##sym] = name,
static const char *const auth_drop_names[AUTH_DROP_COUNT] = {
	AUTH_DROP_LIST(AUTH_DROP_NAME_)
};
#undef AUTH_DROP_NAME_

#define AUTH_DROP_DESC_(sym, name, desc) [AUTH_DROP_##sym] = desc,
static const char *const auth_drop_descs[AUTH_DROP_COUNT] = {
	AUTH_DROP_LIST(AUTH_DROP_DESC_)
};
#undef AUTH_DROP_DESC_

/* Domain separation: a key id can never equal a MAC or digest made elsewhere. */
static const char auth_id_label[] = "tandem key id";
static const char auth_mac_magic[4] = { 'T', 'N', 'D', 'M' };

struct auth_key {
	uint32_t id;
	size_t len;
	uint8_t *bytes;        /* kept to tell a reload of the same key from an id collision */
	EVP_MAC_CTX *tmpl;     /* keyed once; each MAC works on a copy */
};

struct auth_keyring {
	EVP_MAC *hmac;
	struct auth_key keys[AUTH_KEYS_MAX];
	size_t nkeys;
	int send;              /* index into keys, -1 = none */
};

struct auth_peer {
	uint8_t node[AUTH_NODE_MAX];
	size_t nodelen;
	uint32_t group;
	uint64_t epoch;
	uint64_t seq;
	double seen;
};

struct auth_replay {
	struct auth_peer *peers;
	size_t npeers;
	size_t max;
};

const char *
auth_drop_name(enum auth_drop why)
{
	if ((unsigned)why >= AUTH_DROP_COUNT)
		return "?";
	return auth_drop_names[why];
}

const char *
auth_drop_desc(enum auth_drop why)
{
	if ((unsigned)why >= AUTH_DROP_COUNT)
		return "?";
	return auth_drop_descs[why];
}

int
auth_stats_drop(struct auth_stats *st, enum auth_drop why, double now,
    unsigned *suppressed)
{
	if ((unsigned)why >= AUTH_DROP_COUNT)
		return 0;
	st->drops[why]++;
	return log_ratelimit_ok(&st->rl[why], now, AUTH_LOG_INTERVAL, suppressed);
}

/* ---- keys ------------------------------------------------------------ */

static void
auth_key_clear(struct auth_key *k)
{
	if (k->bytes != NULL) {
		explicit_bzero(k->bytes, k->len);
		free(k->bytes);
	}
	/* OpenSSL cleanses the HMAC state (and its copy of the key) on free. */
	EVP_MAC_CTX_free(k->tmpl);
	explicit_bzero(k, sizeof(*k));
}

struct auth_keyring *
auth_keyring_new(void)
{
	struct auth_keyring *kr;

	kr = calloc(1, sizeof(*kr));
	if (kr == NULL)
		return NULL;
	kr->hmac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
	if (kr->hmac == NULL)
		goto free_kr;
	kr->send = -1;
	return kr;

free_kr:
	free(kr);
	return NULL;
}

void
auth_keyring_free(struct auth_keyring *kr)
{
	if (kr == NULL)
		return;
	for (size_t i = 0; i < kr->nkeys; i++)
		auth_key_clear(&kr->keys[i]);
	EVP_MAC_free(kr->hmac);
	free(kr);
}

static int
auth_key_derive_id(const uint8_t *key, size_t len, uint32_t *id)
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	EVP_MD_CTX *c;
	int ok;

	c = EVP_MD_CTX_new();
	if (c == NULL)
		return -ENOMEM;
	ok = EVP_DigestInit_ex(c, EVP_sha256(), NULL) &&
	    EVP_DigestUpdate(c, auth_id_label, sizeof(auth_id_label) - 1) &&
	    EVP_DigestUpdate(c, key, len) &&
	    EVP_DigestFinal_ex(c, md, &mdlen) && mdlen >= 4;
	EVP_MD_CTX_free(c);
	if (!ok)
		return -EIO;
	*id = (uint32_t)md[0] << 24 | (uint32_t)md[1] << 16 |
	    (uint32_t)md[2] << 8 | (uint32_t)md[3];
	return 0;
}

static const struct auth_key *
auth_keyring_find(const struct auth_keyring *kr, uint32_t id)
{
	for (size_t i = 0; i < kr->nkeys; i++)
		if (kr->keys[i].id == id)
			return &kr->keys[i];
	return NULL;
}

int
auth_keyring_add(struct auth_keyring *kr, const uint8_t *key, size_t len,
    int send, uint32_t *id)
{
	OSSL_PARAM params[2];
	struct auth_key k = { 0 };
	uint32_t kid;
	int ret;

	if (len == 0 || len > AUTH_KEY_MAX)
		return -EINVAL;
	ret = auth_key_derive_id(key, len, &kid);
	if (ret < 0)
		return ret;
	for (size_t i = 0; i < kr->nkeys; i++) {
		const struct auth_key *o = &kr->keys[i];

		if (o->id != kid)
			continue;
		if (o->len != len || CRYPTO_memcmp(o->bytes, key, len) != 0)
			return -EEXIST;
		if (send)
			kr->send = (int)i;
		if (id != NULL)
			*id = kid;
		return 0;
	}
	if (kr->nkeys == AUTH_KEYS_MAX)
		return -ENOSPC;

	ret = -ENOMEM;
	k.id = kid;
	k.len = len;
	k.bytes = malloc(len);
	if (k.bytes == NULL)
		goto clear_key;
	memcpy(k.bytes, key, len);
	k.tmpl = EVP_MAC_CTX_new(kr->hmac);
	if (k.tmpl == NULL)
		goto clear_key;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)(uintptr_t)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (!EVP_MAC_init(k.tmpl, k.bytes, k.len, params)) {
		ret = -EIO;
		goto clear_key;
	}
	kr->keys[kr->nkeys] = k;
	if (send)
		kr->send = (int)kr->nkeys;
	kr->nkeys++;
	if (id != NULL)
		*id = kid;
	return 0;

clear_key:
	auth_key_clear(&k);
	return ret;
}

static void
auth_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
auth_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/*
 * Read at most cap bytes; *n is how many. More than cap bytes in the file
 * is reported by filling buf exactly and the caller checking *n == cap with
 * one extra byte of room.
 */
static int
auth_read_all(int fd, uint8_t *buf, size_t cap, size_t *n)
{
	size_t got = 0;

	while (got < cap) {
		ssize_t r = read(fd, buf + got, cap - got);

		if (r == -1) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	*n = got;
	return 0;
}

int
auth_keyring_load(struct auth_keyring *kr, const char *path, int send,
    uint32_t *id, char *err, size_t errlen)
{
	uint8_t buf[AUTH_KEY_MAX + 1];
	struct stat st;
	size_t n = 0;
	uid_t euid = geteuid();
	int fd, ret;

	/* O_NONBLOCK: a FIFO planted at the path must not hang startup. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd == -1) {
		ret = -errno;
		auth_err(err, errlen, "key file %s: cannot open: %s", path,
		    strerror(-ret));
		return ret;
	}
	/* fstat on the open file: what we check is what we read. */
	if (fstat(fd, &st) == -1) {
		ret = -errno;
		auth_err(err, errlen, "key file %s: cannot stat: %s", path,
		    strerror(-ret));
		goto close_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		auth_err(err, errlen, "key file %s: not a regular file", path);
		goto close_fd;
	}
	if (st.st_uid != euid && st.st_uid != 0) {
		ret = -EPERM;
		auth_err(err, errlen,
		    "key file %s: owned by uid %u; it must belong to root or to "
		    "the user tandemd runs as (uid %u)", path,
		    (unsigned)st.st_uid, (unsigned)euid);
		goto close_fd;
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		ret = -EPERM;
		auth_err(err, errlen,
		    "key file %s: mode %04o lets group or others access the "
		    "shared key; it must be 0600 (chmod 600 %s)", path,
		    (unsigned)(st.st_mode & 07777), path);
		goto close_fd;
	}
	ret = auth_read_all(fd, buf, sizeof(buf), &n);
	if (ret < 0) {
		auth_err(err, errlen, "key file %s: cannot read: %s", path,
		    strerror(-ret));
		goto wipe_buf;
	}
	if (n > AUTH_KEY_MAX) {
		ret = -EFBIG;
		auth_err(err, errlen,
		    "key file %s: longer than %d bytes; use 32 random bytes, "
		    "e.g. head -c 32 /dev/urandom | base64", path, AUTH_KEY_MAX);
		goto wipe_buf;
	}
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	if (n == 0) {
		ret = -ENODATA;
		auth_err(err, errlen,
		    "key file %s: empty; put the shared key in it, e.g. "
		    "head -c 32 /dev/urandom | base64 > %s", path, path);
		goto wipe_buf;
	}
	ret = auth_keyring_add(kr, buf, n, send, id);
	switch (ret) {
	case 0:
		if (n < AUTH_KEY_WEAK)
			log_warnx("key file %s: only %zu bytes of key; use at least "
			    "%d random bytes", path, n, AUTH_KEY_WEAK);
		break;
	case -ENOSPC:
		auth_err(err, errlen, "key file %s: more than %d keys for one "
		    "channel", path, AUTH_KEYS_MAX);
		break;
	case -EEXIST:
		auth_err(err, errlen, "key file %s: a different key loaded "
		    "before has the same key id; generate a new key", path);
		break;
	default:
		auth_err(err, errlen, "key file %s: %s", path, strerror(-ret));
		break;
	}

wipe_buf:
	explicit_bzero(buf, sizeof(buf));
close_fd:
	close(fd);
	return ret;
}

int
auth_keyring_send_id(const struct auth_keyring *kr, uint32_t *id)
{
	if (kr->send < 0)
		return -ENOKEY;
	*id = kr->keys[kr->send].id;
	return 0;
}

int
auth_keyring_has(const struct auth_keyring *kr, uint32_t id)
{
	return auth_keyring_find(kr, id) != NULL;
}

/* ---- MAC ------------------------------------------------------------- */

static void
auth_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static int
auth_mac(const struct auth_key *k, const struct auth_hdr *hdr,
    const uint8_t *payload, size_t len, uint8_t out[AUTH_MAC_LEN])
{
	uint8_t head[16];
	size_t outlen = 0;
	EVP_MAC_CTX *c;
	int ok;

	memcpy(head, auth_mac_magic, 4);
	auth_put_be32(head + 4, hdr->version);
	auth_put_be32(head + 8, hdr->type);
	auth_put_be32(head + 12, hdr->key_id);

	/* A copy of the keyed template: the keyring stays const and shareable. */
	c = EVP_MAC_CTX_dup(k->tmpl);
	if (c == NULL)
		return -ENOMEM;
	ok = EVP_MAC_update(c, head, sizeof(head)) &&
	    (len == 0 || EVP_MAC_update(c, payload, len)) &&
	    EVP_MAC_final(c, out, &outlen, AUTH_MAC_LEN) &&
	    outlen == AUTH_MAC_LEN;
	EVP_MAC_CTX_free(c);
	return ok ? 0 : -EIO;
}

int
auth_sign(const struct auth_keyring *kr, struct auth_hdr *hdr,
    const uint8_t *payload, size_t len, uint8_t mac[AUTH_MAC_LEN])
{
	const struct auth_key *k;

	if (kr->send < 0)
		return -ENOKEY;
	k = &kr->keys[kr->send];
	hdr->key_id = k->id;
	return auth_mac(k, hdr, payload, len, mac);
}

int
auth_verify(const struct auth_keyring *kr, const struct auth_hdr *hdr,
    const uint8_t *payload, size_t len, const uint8_t *mac, size_t maclen)
{
	uint8_t want[AUTH_MAC_LEN];
	const struct auth_key *k;
	int ret;

	k = auth_keyring_find(kr, hdr->key_id);
	if (k == NULL)
		return -ENOKEY;
	if (maclen != AUTH_MAC_LEN)
		return -EBADMSG;
	ret = auth_mac(k, hdr, payload, len, want);
	if (ret < 0)
		return ret;
	/* Constant time: a byte-wise early exit would leak the MAC prefix. */
	ret = CRYPTO_memcmp(want, mac, AUTH_MAC_LEN) == 0 ? 0 : -EBADMSG;
	explicit_bzero(want, sizeof(want));
	return ret;
}

/* ---- anti-replay ----------------------------------------------------- */

struct auth_replay *
auth_replay_new(size_t max_peers)
{
	struct auth_replay *rp;

	if (max_peers == 0)
		return NULL;
	rp = calloc(1, sizeof(*rp));
	if (rp == NULL)
		return NULL;
	rp->peers = calloc(max_peers, sizeof(*rp->peers));
	if (rp->peers == NULL)
		goto free_rp;
	rp->max = max_peers;
	return rp;

free_rp:
	free(rp);
	return NULL;
}

void
auth_replay_free(struct auth_replay *rp)
{
	if (rp == NULL)
		return;
	free(rp->peers);
	free(rp);
}

size_t
auth_replay_count(const struct auth_replay *rp)
{
	return rp->npeers;
}

int
auth_replay_accept(struct auth_replay *rp, const uint8_t *node,
    size_t nodelen, uint32_t group, uint64_t epoch, uint64_t seq, double now,
    enum auth_drop *why)
{
	struct auth_peer *p = NULL;

	if (nodelen == 0 || nodelen > AUTH_NODE_MAX)
		return -EINVAL;
	for (size_t i = 0; i < rp->npeers; i++) {
		struct auth_peer *c = &rp->peers[i];

		if (c->group == group && c->nodelen == nodelen &&
		    memcmp(c->node, node, nodelen) == 0) {
			p = c;
			break;
		}
	}
	if (p != NULL) {
		/*
		 * Forward only. A higher epoch is a restart of the peer, whose
		 * sequence starts over; within an epoch the sequence must grow,
		 * so an exact copy of an accepted packet is refused too.
		 */
		if (epoch < p->epoch) {
			if (why != NULL)
				*why = AUTH_DROP_OLD_EPOCH;
			return -EBADMSG;
		}
		if (epoch == p->epoch && seq <= p->seq) {
			if (why != NULL)
				*why = AUTH_DROP_REPLAY;
			return -EBADMSG;
		}
	} else if (rp->npeers < rp->max) {
		p = &rp->peers[rp->npeers++];
	} else {
		/*
		 * Full: forget the peer heard from least recently. Only
		 * authenticated messages get here, so this takes more peers
		 * than the pair and its groups, i.e. a misconfiguration.
		 */
		p = &rp->peers[0];
		for (size_t i = 1; i < rp->npeers; i++)
			if (rp->peers[i].seen < p->seen)
				p = &rp->peers[i];
	}
	memcpy(p->node, node, nodelen);
	p->nodelen = nodelen;
	p->group = group;
	p->epoch = epoch;
	p->seq = seq;
	p->seen = now;
	return 0;
}
