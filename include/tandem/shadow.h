/*
 * shadow — the standby's table of the peer's connections
 * (daemon/sync/shadow.c), fed from the sync channel's events and read at
 * takeover to rebuild the sockets.
 *
 * Keyed by the connection id of the peer's stream (u64): both halves' socket
 * state (struct sync_conn_state, queue bytes included, owned by the table),
 * the current byte counts, and when the entry last changed. Lookup, open,
 * update and close are O(1) (a hash table that doubles as it fills); the
 * entries also sit on a list from least to most recently changed, which is
 * both the eviction order and the iteration order.
 *
 * Bounded: at most max_entries (cfg_sync.max_entries). Opening one more
 * drops the entry that has been idle longest (counted in evicted): a
 * connection that has not moved for the longest time is the one most likely
 * gone already, and the cheapest to lose (it is reset at takeover rather
 * than restored).
 *
 * Snapshots: shadow_bulk_begin() when the peer's snapshot starts (its new
 * stream), shadow_bulk_end() when it ends: entries no ConnState refreshed in
 * between are removed (counted in bulk_removed). Until the end the old
 * entries stay, so a takeover in the middle of a snapshot still has them.
 * Ids are only unique within one stream of the peer; a snapshot replaces
 * every entry it names, so an id reused by the new stream is harmless.
 *
 * The table never opens sockets and has no clock: now is the caller's
 * monotonic seconds. One thread.
 */
#ifndef TANDEM_SHADOW_H
#define TANDEM_SHADOW_H

#include <stddef.h>
#include <stdint.h>

#include <tandem/sync.h>

struct shadow;
struct shadow_entry;

struct shadow_stats {
	size_t entries;
	size_t max_entries;
	uint64_t opened;        /* entries created */
	uint64_t replaced;      /* a ConnState for an id already held */
	uint64_t updated;
	uint64_t closed;
	uint64_t evicted;       /* dropped at the bound, the longest idle first */
	uint64_t unknown;       /* update or close for an id not held */
	uint64_t bulks;         /* snapshots ended */
	uint64_t bulk_removed;  /* entries a snapshot did not carry */
};

/* Returns 0 and *out, -EINVAL (max_entries 0) or -ENOMEM. */
int shadow_new(size_t max_entries, struct shadow **out);

/* Free every entry and the table. NULL is a no-op. */
void shadow_free(struct shadow *sh);

/*
 * A connection opened, or its full state in a snapshot: create the entry
 * or replace it whole; the queue bytes are copied. Evicts the longest idle
 * entry when the table is full. Returns 0, -EINVAL (!syncf_event_valid) or
 * -ENOMEM (the table is unchanged).
 */
int shadow_open(struct shadow *sh, const struct sync_conn_state *c, double now);

/*
 * New byte counts and half-close flags. The server half's counts are kept
 * only when the entry has a server socket. Returns 0 or -ENOENT (counted
 * in unknown).
 */
int shadow_update(struct shadow *sh, const struct sync_conn_update *u,
    double now);

/* Remove a closed connection. Returns 0 or -ENOENT (counted in unknown). */
int shadow_close(struct shadow *sh, uint64_t id);

/*
 * One event from the channel: CONN, UPDATE and CLOSE as above, BULK as
 * shadow_bulk_begin/end. Returns what those return, or -ENOTSUP for the
 * event kinds the table does not hold (sticky entries, server states).
 */
int shadow_apply(struct shadow *sh, const struct sync_event *ev, double now);

/* The peer's snapshot starts / ends; end returns how many entries it removed. */
void shadow_bulk_begin(struct shadow *sh);
size_t shadow_bulk_end(struct shadow *sh);

/* Remove every entry (counters stay). */
void shadow_clear(struct shadow *sh);

size_t shadow_count(const struct shadow *sh);
void shadow_get_stats(const struct shadow *sh, struct shadow_stats *out);

/* NULL when id is not held. Valid until the entry is changed or removed. */
const struct shadow_entry *shadow_lookup(const struct shadow *sh, uint64_t id);

/*
 * Iteration from the longest idle entry to the most recently changed one.
 * Removing the current entry invalidates it: fetch the next one first.
 */
const struct shadow_entry *shadow_first(const struct shadow *sh);
const struct shadow_entry *shadow_next(const struct shadow_entry *e);

/* The connection (queue pointers owned by the table). */
const struct sync_conn_state *shadow_entry_state(const struct shadow_entry *e);
/* now of the last open or update. */
double shadow_entry_updated(const struct shadow_entry *e);

#endif
