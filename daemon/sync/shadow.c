/* shadow — see include/tandem/shadow.h */
#include <tandem/shadow.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SHADOW_BUCKETS_MIN 64

struct shadow_entry {
	struct shadow_entry *hnext;     /* hash chain */
	struct shadow_entry *prev;      /* idle order: prev is idler */
	struct shadow_entry *next;
	uint64_t gen;                   /* snapshot generation that last opened it */
	double updated;
	struct sync_conn_state st;      /* queue bytes owned */
};

struct shadow {
	struct shadow_entry **buckets;
	size_t nbuckets;                /* a power of two */
	size_t count;
	size_t max;
	struct shadow_entry *idlest;    /* head of the idle order */
	struct shadow_entry *newest;
	uint64_t gen;
	struct shadow_stats stats;
};

/* splitmix64's finaliser: ids from a counter spread over every bucket. */
static size_t
shadow_hash(const struct shadow *sh, uint64_t id)
{
	id ^= id >> 30;
	id *= UINT64_C(0xbf58476d1ce4e5b9);
	id ^= id >> 27;
	id *= UINT64_C(0x94d049bb133111eb);
	id ^= id >> 31;
	return (size_t)id & (sh->nbuckets - 1);
}

int
shadow_new(size_t max_entries, struct shadow **out)
{
	struct shadow *sh;

	if (max_entries == 0)
		return -EINVAL;
	sh = calloc(1, sizeof(*sh));
	if (sh == NULL)
		return -ENOMEM;
	sh->nbuckets = SHADOW_BUCKETS_MIN;
	sh->buckets = calloc(sh->nbuckets, sizeof(*sh->buckets));
	if (sh->buckets == NULL)
		goto free_sh;
	sh->max = max_entries;
	*out = sh;
	return 0;

free_sh:
	free(sh);
	return -ENOMEM;
}

static void
shadow_state_release(struct sync_conn_state *st)
{
	free((void *)(uintptr_t)st->client.recv_queue);
	free((void *)(uintptr_t)st->client.send_queue);
	free((void *)(uintptr_t)st->server_sock.recv_queue);
	free((void *)(uintptr_t)st->server_sock.send_queue);
}

static void
shadow_entry_free(struct shadow_entry *e)
{
	shadow_state_release(&e->st);
	free(e);
}

void
shadow_clear(struct shadow *sh)
{
	struct shadow_entry *e, *next;

	for (e = sh->idlest; e != NULL; e = next) {
		next = e->next;
		shadow_entry_free(e);
	}
	memset(sh->buckets, 0, sh->nbuckets * sizeof(*sh->buckets));
	sh->idlest = NULL;
	sh->newest = NULL;
	sh->count = 0;
}

void
shadow_free(struct shadow *sh)
{
	if (sh == NULL)
		return;
	shadow_clear(sh);
	free(sh->buckets);
	free(sh);
}

static struct shadow_entry *
shadow_find(const struct shadow *sh, uint64_t id)
{
	struct shadow_entry *e = sh->buckets[shadow_hash(sh, id)];

	while (e != NULL && e->st.id != id)
		e = e->hnext;
	return e;
}

static void
shadow_list_unlink(struct shadow *sh, struct shadow_entry *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		sh->idlest = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		sh->newest = e->prev;
	e->prev = NULL;
	e->next = NULL;
}

static void
shadow_list_append(struct shadow *sh, struct shadow_entry *e)
{
	e->prev = sh->newest;
	e->next = NULL;
	if (sh->newest != NULL)
		sh->newest->next = e;
	else
		sh->idlest = e;
	sh->newest = e;
}

static void
shadow_touch(struct shadow *sh, struct shadow_entry *e, double now)
{
	e->updated = now;
	if (sh->newest == e)
		return;
	shadow_list_unlink(sh, e);
	shadow_list_append(sh, e);
}

static void
shadow_remove(struct shadow *sh, struct shadow_entry *e)
{
	struct shadow_entry **pp = &sh->buckets[shadow_hash(sh, e->st.id)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	shadow_list_unlink(sh, e);
	sh->count--;
	shadow_entry_free(e);
}

/* Double the buckets; a failure only leaves the chains longer. */
static void
shadow_grow(struct shadow *sh)
{
	size_t n = sh->nbuckets * 2;
	struct shadow_entry **b;
	struct shadow_entry *e;

	b = calloc(n, sizeof(*b));
	if (b == NULL)
		return;
	free(sh->buckets);
	sh->buckets = b;
	sh->nbuckets = n;
	for (e = sh->idlest; e != NULL; e = e->next) {
		size_t h = shadow_hash(sh, e->st.id);

		e->hnext = b[h];
		b[h] = e;
	}
}

/* Copy c with queues of its own into *st. 0 or -ENOMEM (nothing allocated). */
static int
shadow_state_copy(struct sync_conn_state *st, const struct sync_conn_state *c)
{
	const uint8_t *src[4] = {
		c->client.recv_queue, c->client.send_queue,
		c->has_server_sock ? c->server_sock.recv_queue : NULL,
		c->has_server_sock ? c->server_sock.send_queue : NULL,
	};
	const size_t len[4] = {
		c->client.recv_queue_len, c->client.send_queue_len,
		c->has_server_sock ? c->server_sock.recv_queue_len : 0,
		c->has_server_sock ? c->server_sock.send_queue_len : 0,
	};
	uint8_t *dst[4] = { NULL, NULL, NULL, NULL };
	int i;

	for (i = 0; i < 4; i++) {
		if (len[i] == 0)
			continue;
		dst[i] = malloc(len[i]);
		if (dst[i] == NULL)
			goto free_copies;
		memcpy(dst[i], src[i], len[i]);
	}
	*st = *c;
	if (!c->has_server_sock)
		memset(&st->server_sock, 0, sizeof(st->server_sock));
	st->client.recv_queue = dst[0];
	st->client.recv_queue_len = len[0];
	st->client.send_queue = dst[1];
	st->client.send_queue_len = len[1];
	st->server_sock.recv_queue = dst[2];
	st->server_sock.recv_queue_len = len[2];
	st->server_sock.send_queue = dst[3];
	st->server_sock.send_queue_len = len[3];
	return 0;

free_copies:
	while (i-- > 0)
		free(dst[i]);
	return -ENOMEM;
}

int
shadow_open(struct shadow *sh, const struct sync_conn_state *c, double now)
{
	struct sync_event check = { .type = SYNC_EV_CONN };
	struct shadow_entry *e;
	struct sync_conn_state st;
	size_t h;

	check.u.conn = *c;
	if (!syncf_event_valid(&check))
		return -EINVAL;
	e = shadow_find(sh, c->id);
	if (e != NULL) {
		if (shadow_state_copy(&st, c) < 0)
			return -ENOMEM;
		shadow_state_release(&e->st);
		e->st = st;
		e->gen = sh->gen;
		shadow_touch(sh, e, now);
		sh->stats.replaced++;
		return 0;
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return -ENOMEM;
	if (shadow_state_copy(&e->st, c) < 0)
		goto free_entry;
	if (sh->count >= sh->max) {
		shadow_remove(sh, sh->idlest);
		sh->stats.evicted++;
	}
	if (sh->count >= sh->nbuckets)
		shadow_grow(sh);
	e->gen = sh->gen;
	e->updated = now;
	h = shadow_hash(sh, c->id);
	e->hnext = sh->buckets[h];
	sh->buckets[h] = e;
	shadow_list_append(sh, e);
	sh->count++;
	sh->stats.opened++;
	return 0;

free_entry:
	free(e);
	return -ENOMEM;
}

int
shadow_update(struct shadow *sh, const struct sync_conn_update *u, double now)
{
	struct shadow_entry *e = shadow_find(sh, u->id);

	if (e == NULL) {
		sh->stats.unknown++;
		return -ENOENT;
	}
	e->st.client.bytes_written = u->client_written;
	e->st.client.bytes_read = u->client_read;
	if (e->st.has_server_sock) {
		e->st.server_sock.bytes_written = u->server_written;
		e->st.server_sock.bytes_read = u->server_read;
	}
	e->st.client_eof = u->client_eof;
	e->st.server_eof = u->server_eof;
	shadow_touch(sh, e, now);
	sh->stats.updated++;
	return 0;
}

int
shadow_close(struct shadow *sh, uint64_t id)
{
	struct shadow_entry *e = shadow_find(sh, id);

	if (e == NULL) {
		sh->stats.unknown++;
		return -ENOENT;
	}
	shadow_remove(sh, e);
	sh->stats.closed++;
	return 0;
}

void
shadow_bulk_begin(struct shadow *sh)
{
	sh->gen++;
}

size_t
shadow_bulk_end(struct shadow *sh)
{
	struct shadow_entry *e, *next;
	size_t removed = 0;

	for (e = sh->idlest; e != NULL; e = next) {
		next = e->next;
		if (e->gen == sh->gen)
			continue;
		shadow_remove(sh, e);
		removed++;
	}
	sh->stats.bulks++;
	sh->stats.bulk_removed += removed;
	return removed;
}

int
shadow_apply(struct shadow *sh, const struct sync_event *ev, double now)
{
	switch (ev->type) {
	case SYNC_EV_CONN:
		return shadow_open(sh, &ev->u.conn, now);
	case SYNC_EV_UPDATE:
		return shadow_update(sh, &ev->u.update, now);
	case SYNC_EV_CLOSE:
		return shadow_close(sh, ev->u.close.id);
	case SYNC_EV_BULK:
		if (ev->u.bulk.phase == SYNC_BULK_BEGIN)
			shadow_bulk_begin(sh);
		else
			shadow_bulk_end(sh);
		return 0;
	case SYNC_EV_STICKY:
	case SYNC_EV_SERVER:
	case SYNC_EV_SWITCH:        /* the session layer's, not a table entry */
	case SYNC_EV_COUNT:
		break;
	}
	return -ENOTSUP;
}

size_t
shadow_count(const struct shadow *sh)
{
	return sh->count;
}

void
shadow_get_stats(const struct shadow *sh, struct shadow_stats *out)
{
	*out = sh->stats;
	out->entries = sh->count;
	out->max_entries = sh->max;
}

const struct shadow_entry *
shadow_lookup(const struct shadow *sh, uint64_t id)
{
	return shadow_find(sh, id);
}

const struct shadow_entry *
shadow_first(const struct shadow *sh)
{
	return sh->idlest;
}

const struct shadow_entry *
shadow_next(const struct shadow_entry *e)
{
	return e->next;
}

const struct sync_conn_state *
shadow_entry_state(const struct shadow_entry *e)
{
	return &e->st;
}

double
shadow_entry_updated(const struct shadow_entry *e)
{
	return e->updated;
}
