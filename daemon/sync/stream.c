/*
 * stream — the two streams of the sync channel (include/tandem/sync.h):
 * ours (events batched into numbered frames, the retransmit queue trimmed
 * by the peer's acks, resume after a reconnect, or a new stream opened by a
 * snapshot) and the peer's (sequence checks, in-order delivery to the
 * caller, acks owed). Sockets and the handshake are channel.c's; the two
 * files share sync_int.h.
 */
#include "sync_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tandem/log.h>

/* ---- names -------------------------------------------------------------- */

#define SYNC_DROP_NAME_(sym, name, desc) [SYNC_DROP_##sym] = name,
static const char *const sync_drop_names[SYNC_DROP_COUNT] = {
	SYNC_DROP_LIST(SYNC_DROP_NAME_)
};
#undef SYNC_DROP_NAME_

#define SYNC_DROP_DESC_(sym, name, desc) [SYNC_DROP_##sym] = desc,
static const char *const sync_drop_descs[SYNC_DROP_COUNT] = {
	SYNC_DROP_LIST(SYNC_DROP_DESC_)
};
#undef SYNC_DROP_DESC_

#define SYNC_STATE_NAME_(sym, name) [SYNC_STATE_##sym] = name,
static const char *const sync_state_names[SYNC_STATE_COUNT] = {
	SYNC_STATE_LIST(SYNC_STATE_NAME_)
};
#undef SYNC_STATE_NAME_

struct sync_counter_def {
	const char *name;
	const char *desc;
	size_t off;
};

#define SYNC_COUNTER_DEF_(field, desc) \
	{ #field, desc, offsetof(struct sync_stats, field) },
static const struct sync_counter_def sync_counters[SYNC_COUNTER_COUNT] = {
	SYNC_COUNTER_LIST(SYNC_COUNTER_DEF_)
};
#undef SYNC_COUNTER_DEF_

const char *
sync_drop_name(enum sync_drop why)
{
	return (unsigned)why < SYNC_DROP_COUNT ? sync_drop_names[why] : "?";
}

const char *
sync_drop_desc(enum sync_drop why)
{
	return (unsigned)why < SYNC_DROP_COUNT ? sync_drop_descs[why] : "?";
}

const char *
sync_state_name(enum sync_state s)
{
	return (unsigned)s < SYNC_STATE_COUNT ? sync_state_names[s] : "?";
}

const char *
sync_counter_name(size_t i)
{
	return i < SYNC_COUNTER_COUNT ? sync_counters[i].name : NULL;
}

const char *
sync_counter_desc(size_t i)
{
	return i < SYNC_COUNTER_COUNT ? sync_counters[i].desc : NULL;
}

uint64_t
sync_counter_value(const struct sync_stats *st, size_t i)
{
	uint64_t v;

	if (i >= SYNC_COUNTER_COUNT)
		return 0;
	memcpy(&v, (const char *)st + sync_counters[i].off, sizeof(v));
	return v;
}

/* What we tell the peer about its stream: a position, or "start afresh". */
void
sync_rx_position(const struct sync *ch, uint64_t *epoch, uint64_t *seq)
{
	*epoch = ch->rx_valid ? ch->rx_epoch : 0;
	*seq = ch->rx_valid ? ch->rx_seq : 0;
}

/*
 * Forget our position in the peer's stream (it sent an authentic frame we
 * cannot apply): the next handshake asks it for a new stream. rx_epoch
 * stays as the floor, so no older stream is ever taken again.
 */
void
sync_rx_reset(struct sync *ch, const char *why)
{
	if (ch->rx_valid)
		log_warnx("sync: giving up on the peer's stream %" PRIu64
		    " at frame %" PRIu64 " (%s); asking for a full snapshot",
		    ch->rx_epoch, ch->rx_seq, why);
	ch->rx_valid = false;
	ch->rx_seq = 0;
	ch->rx_bulk_active = false;
}

/* ---- our stream: queue, batch, cursor ------------------------------------- */

void
sync_txframe_free(struct sync_txframe *f)
{
	free(f->data);
	free(f);
}

/* Free acknowledged frames; a frame half-written on ch->up stays until done. */
static void
sync_trim(struct sync *ch)
{
	while (ch->head != NULL && ch->head->seq <= ch->tx_acked) {
		struct sync_txframe *f = ch->head;

		if (f == ch->cur) {
			if (ch->cur_off > 0)
				break;
			ch->cur = f->next;   /* acked: no need to send it */
		}
		ch->head = f->next;
		if (ch->head == NULL)
			ch->tail = NULL;
		ch->q_frames--;
		ch->q_bytes -= f->len;
		sync_txframe_free(f);
	}
}

/*
 * Forget every frame of our stream. A frame half-written on ch->up is
 * finished first (its rest moves to the front of the control bytes),
 * because the peer parses the byte stream, not our queue.
 */
static void
sync_txq_clear(struct sync *ch)
{
	struct sync_txframe *f, *next;

	if (ch->up != NULL && ch->cur != NULL && ch->cur_off > 0) {
		struct sync_link *l = ch->up;
		size_t rest = ch->cur->len - ch->cur_off;
		size_t unsent = l->ctrl.len - l->ctrl_off;

		log_debug("sync: frame %" PRIu64 " cut at byte %zu of %zu: "
		    "finishing it before anything else", ch->cur->seq,
		    ch->cur_off, ch->cur->len);
		if (syncf_buf_reserve(&l->ctrl, rest) == 0) {
			memmove(l->ctrl.data + rest, l->ctrl.data + l->ctrl_off,
			    unsent);
			memcpy(l->ctrl.data, ch->cur->data + ch->cur_off, rest);
			l->ctrl.len = rest + unsent;
			l->ctrl_off = 0;
			l->ctrl_is_ack = false;
		} else {
			/* Cannot finish the frame: the byte stream is broken. */
			sync_link_event(l, SYNC_LEV_LOST,
			    "out of memory finishing a frame");
		}
	}
	for (f = ch->head; f != NULL; f = next) {
		next = f->next;
		sync_txframe_free(f);
	}
	ch->head = NULL;
	ch->tail = NULL;
	ch->q_frames = 0;
	ch->q_bytes = 0;
	ch->cur = NULL;
	ch->cur_off = 0;
	ch->batch.len = 0;
	ch->batch_events = 0;
}

static void
sync_kick(struct sync *ch)
{
	if (ch->started && !ev_is_active(&ch->idle))
		ev_idle_start(ch->loop, &ch->idle);
}

/*
 * Our stream lost frames (the queue overflowed, a frame could not be
 * sealed): it cannot be resumed. Drop the connection; the next handshake
 * starts a new stream with a snapshot.
 */
static void
sync_tx_lost(struct sync *ch, const char *why)
{
	sync_txq_clear(ch);
	ch->resync_pending = true;
	ch->tx_bulk_active = false;
	if (ch->up != NULL)
		sync_link_event(ch->up, SYNC_LEV_LOST, why);
}

void
sync_ack_fields(const struct sync *ch, struct sync_frame_hdr *h)
{
	sync_rx_position(ch, &h->ack_epoch, &h->ack);
}

/* Seal the batch into the next frame of our stream. */
int
sync_batch_seal(struct sync *ch)
{
	struct sync_frame_hdr h = { .epoch = ch->tx_epoch, .seq = ch->next_seq };
	struct sync_buf fb = { 0 };
	struct sync_txframe *f;
	int ret;

	if (ch->batch_events == 0)
		return 0;
	sync_ack_fields(ch, &h);
	f = calloc(1, sizeof(*f));
	if (f == NULL) {
		ret = -ENOMEM;
		goto lost;
	}
	ret = syncf_frame_seal(&fb, &h, ch->batch.data, ch->batch.len,
	    ch->batch_events, ch->kr);
	if (ret < 0)
		goto free_frame;
	f->seq = ch->next_seq++;
	f->queued = sync_clock();
	f->len = fb.len;
	f->data = fb.data;
	if (ch->tail != NULL)
		ch->tail->next = f;
	else
		ch->head = f;
	ch->tail = f;
	ch->q_frames++;
	ch->q_bytes += f->len;
	if (ch->up != NULL && ch->cur == NULL) {
		ch->cur = f;
		ch->cur_off = 0;
	}
	ch->ack_sent_epoch = h.ack_epoch;
	ch->ack_sent = h.ack;
	ch->stats.frames_out++;
	ch->batch.len = 0;
	ch->batch_events = 0;
	if (ch->q_bytes > ch->max_queue) {
		ch->stats.overflows++;
		log_warnx("sync: %zu frames (%zu bytes) not acknowledged by the "
		    "peer, over the bound of %zu bytes: dropping the connection "
		    "and the queue, a full resync follows", ch->q_frames,
		    ch->q_bytes, ch->max_queue);
		sync_tx_lost(ch, "send queue over its bound");
	}
	return 0;

free_frame:
	free(f);
lost:
	log_warnx("sync: cannot seal a frame of our stream (%s): a full "
	    "resync follows", strerror(-ret));
	sync_tx_lost(ch, ret == -ENOKEY ? "no send key" : "out of memory");
	return ret;
}

/*
 * Append one encoded event to the batch, sealing first when it would make
 * the frame too big. Returns 0 (also when the stream was lost meanwhile and
 * the event discarded), -EMSGSIZE or -ENOMEM.
 */
static int
sync_batch_add(struct sync *ch, const struct sync_event *ev)
{
	int ret;

	ch->scratch.len = 0;
	ret = syncf_event_append(&ch->scratch, ev);
	if (ret < 0)
		return ret;
	if (ch->scratch.len > SYNC_FRAME_MAX - 256)
		return -EMSGSIZE;
	if (ch->batch_events > 0 &&
	    (ch->batch.len + ch->scratch.len > SYNC_FRAME_TARGET ||
	    ch->batch_events >= SYNC_FRAME_EVENTS_MAX))
		sync_batch_seal(ch);
	if (ch->resync_pending) {
		ch->stats.discarded++;
		return 0;
	}
	if (syncf_buf_reserve(&ch->batch, ch->scratch.len) < 0)
		return -ENOMEM;
	memcpy(ch->batch.data + ch->batch.len, ch->scratch.data,
	    ch->scratch.len);
	ch->batch.len += ch->scratch.len;
	ch->batch_events++;
	if (ev->type != SYNC_EV_BULK) {
		ch->stats.events_out++;
		if (ch->tx_bulk_active)
			ch->bulk_events++;
	}
	if (ch->batch.len >= SYNC_FRAME_TARGET ||
	    ch->batch_events >= SYNC_FRAME_EVENTS_MAX)
		sync_batch_seal(ch);
	sync_kick(ch);
	return 0;
}

/*
 * Start a new stream of ours: forget the old one, open the new one with
 * BULK BEGIN and ask the caller for its state. Only while connected (or
 * from the handshake that makes us so): a snapshot queued while nobody
 * listens would be stale by the time it is sent.
 */
void
sync_tx_new_stream(struct sync *ch, const char *why)
{
	struct sync_event begin = { .type = SYNC_EV_BULK };
	uint64_t epoch = ch->tx_epoch + 1;
	uint64_t id;

	sync_txq_clear(ch);
	/* The peer saw a newer stream of ours: our boot epoch went backwards. */
	if (ch->up != NULL && ch->up->peer.resume_epoch >= epoch)
		epoch = ch->up->peer.resume_epoch + 1;
	ch->tx_epoch = epoch;
	ch->next_seq = 1;
	ch->tx_acked = 0;
	ch->resync_pending = false;
	ch->tx_bulk_active = true;
	ch->bulk_events = 0;
	id = ++ch->bulk_id;
	ch->stats.resyncs++;
	log_info("sync: new stream %" PRIu64 " with a full snapshot (%s)",
	    epoch, why);
	begin.u.bulk.phase = SYNC_BULK_BEGIN;
	if (sync_batch_add(ch, &begin) < 0) {
		sync_tx_lost(ch, "out of memory starting a stream");
		return;
	}
	if (ch->resync_pending)
		return;   /* lost again at once: the next handshake retries */
	if (ch->ops->on_resync_needed != NULL)
		ch->ops->on_resync_needed(ch->arg, id);
}

/*
 * The peer's hello said where it is in our stream: go on right after that
 * frame if we still hold everything from there. Returns true when resumed;
 * false when a new stream must start.
 *
 * switching: the link replaces one that is still up with the same boot of
 * the peer (crossed connections). Its hello may then predate a stream we
 * started on the other link, so an older epoch in it means "not there
 * yet", not "lost": resend from what the peer acknowledged, from frame 1
 * if nothing (a frame it has already is skipped there as a replay). Were
 * the hello a real request for a new stream, the peer refuses the old
 * stream's frames and reconnects, and the next handshake starts one.
 */
bool
sync_tx_resume(struct sync *ch, const struct sync_hello *h, bool switching)
{
	uint64_t last = ch->next_seq - 1, after = h->resume_after, from, first;

	ch->cur = NULL;
	ch->cur_off = 0;
	if (ch->resync_pending)
		return false;
	if (h->resume_epoch != ch->tx_epoch) {
		if (!switching || h->resume_epoch > ch->tx_epoch)
			return false;
		after = 0;
	}
	if (after > last) {
		log_warnx("sync: the peer claims frame %" PRIu64 " of our stream "
		    "%" PRIu64 ", we only sent %" PRIu64, after, ch->tx_epoch,
		    last);
		return false;
	}
	/* An ack that came over another link may be newer than the hello. */
	from = after > ch->tx_acked ? after : ch->tx_acked;
	first = ch->head != NULL ? ch->head->seq : ch->next_seq;
	if (from + 1 < first)
		return false;
	ch->tx_acked = from;
	sync_trim(ch);
	ch->cur = ch->head;
	ch->stats.resumes++;
	return true;
}

/* A cumulative ack from the peer. Returns -1 when it closed the link. */
static int
sync_ack_in(struct sync_link *l, const struct sync_frame_hdr *h)
{
	struct sync *ch = l->ch;

	if (h->ack_epoch != ch->tx_epoch)
		return 0;   /* an older stream of ours, or none yet */
	if (h->ack >= ch->next_seq) {
		sync_drop(l, SYNC_DROP_PROTOCOL, true, "ack for frame %" PRIu64
		    " of stream %" PRIu64 ", last sent %" PRIu64, h->ack,
		    h->ack_epoch, ch->next_seq - 1);
		sync_tx_lost(ch, "the peer acknowledged frames never sent");
		if (l->state != SYNC_LINK_CLOSED)
			sync_link_event(l, SYNC_LEV_LOST, "bad ack");
		return -1;
	}
	if (h->ack > ch->tx_acked) {
		ch->tx_acked = h->ack;
		sync_trim(ch);
	}
	return 0;
}

static void
sync_deliver(struct sync *ch, const struct sync_msg *m)
{
	for (size_t i = 0; i < m->nevents; i++) {
		const struct sync_event *ev = &m->events[i];

		if (ev->type != SYNC_EV_BULK) {
			ch->stats.events_in++;
			if (ch->rx_bulk_active)
				ch->rx_bulk_count++;
			if (ch->ops->on_event != NULL)
				ch->ops->on_event(ch->arg, ev);
			continue;
		}
		if (ev->u.bulk.phase == SYNC_BULK_BEGIN) {
			ch->rx_bulk_active = true;
			ch->rx_bulk_count = 0;
			if (ch->ops->on_bulk_begin != NULL)
				ch->ops->on_bulk_begin(ch->arg);
		} else {
			bool complete = ch->rx_bulk_active &&
			    ev->u.bulk.count == ch->rx_bulk_count;

			if (complete) {
				ch->stats.bulks_in++;
			} else {
				ch->stats.bulks_bad++;
				log_warnx("sync: the peer's snapshot ended with "
				    "%" PRIu64 " entries announced, %" PRIu64
				    " received%s", ev->u.bulk.count,
				    ch->rx_bulk_count, ch->rx_bulk_active ? "" :
				    " (no beginning seen)");
			}
			ch->rx_bulk_active = false;
			if (ch->ops->on_bulk_end != NULL)
				ch->ops->on_bulk_end(ch->arg, ev->u.bulk.count,
				    complete);
		}
	}
}

/* A frame on a link that is UP: sequence checks, ack, delivery. */
void
sync_link_frame(struct sync_link *l, const struct sync_msg *m)
{
	struct sync *ch = l->ch;
	const struct sync_frame_hdr *h = &m->hdr;
	bool new_stream = false;

	if (m->type != WIRE_MSG_SYNC_FRAME) {
		sync_drop(l, SYNC_DROP_PROTOCOL, true, "a second hello");
		sync_link_event(l, SYNC_LEV_LOST, "protocol error");
		return;
	}
	if (h->seq == 0) {
		sync_ack_in(l, h);
		return;
	}
	if (h->epoch == ch->rx_epoch && ch->rx_valid) {
		if (h->seq <= ch->rx_seq) {
			/* Authentic and already applied: resent after a switch. */
			sync_drop(l, SYNC_DROP_REPLAY, false, "stream %" PRIu64
			    " frame %" PRIu64 ", have %" PRIu64, h->epoch, h->seq,
			    ch->rx_seq);
			return;
		}
		if (h->seq != ch->rx_seq + 1) {
			sync_drop(l, SYNC_DROP_OUT_OF_ORDER, true, "stream %"
			    PRIu64 " frame %" PRIu64 " after %" PRIu64, h->epoch,
			    h->seq, ch->rx_seq);
			sync_link_event(l, SYNC_LEV_LOST, "frames lost");
			return;
		}
	} else if (h->epoch > ch->rx_epoch) {
		if (h->seq != 1) {
			sync_drop(l, SYNC_DROP_OUT_OF_ORDER, true, "new stream %"
			    PRIu64 " starts at frame %" PRIu64, h->epoch, h->seq);
			sync_link_event(l, SYNC_LEV_LOST, "frames lost");
			return;
		}
		if (m->events[0].type != SYNC_EV_BULK ||
		    m->events[0].u.bulk.phase != SYNC_BULK_BEGIN) {
			sync_drop(l, SYNC_DROP_PROTOCOL, true, "new stream %"
			    PRIu64 " does not open with a snapshot", h->epoch);
			sync_rx_reset(ch, "a stream without a snapshot");
			sync_link_event(l, SYNC_LEV_LOST, "protocol error");
			return;
		}
		new_stream = true;
	} else {
		sync_drop(l, SYNC_DROP_OLD_EPOCH, true, "stream %" PRIu64
		    " frame %" PRIu64 ", at stream %" PRIu64 " now", h->epoch,
		    h->seq, ch->rx_epoch);
		sync_link_event(l, SYNC_LEV_LOST, "old stream");
		return;
	}
	if (sync_ack_in(l, h) < 0)
		return;
	if (new_stream) {
		ch->rx_epoch = h->epoch;
		ch->rx_valid = true;
		ch->rx_bulk_active = false;
	}
	ch->rx_seq = h->seq;
	ch->stats.frames_in++;
	sync_kick(ch);   /* the ack goes out at the end of this turn */
	/* Applied means delivered: even if a callback drops the link. */
	sync_deliver(ch, m);
}

int
sync_queue_event(struct sync *ch, const struct sync_event *ev)
{
	if (ev->type == SYNC_EV_BULK || !syncf_event_valid(ev))
		return -EINVAL;
	if (ch->resync_pending) {
		ch->stats.discarded++;
		return 0;
	}
	return sync_batch_add(ch, ev);
}

int
sync_bulk_end(struct sync *ch, uint64_t bulk_id)
{
	struct sync_event end = { .type = SYNC_EV_BULK };
	int ret;

	if (ch->resync_pending || !ch->tx_bulk_active || bulk_id != ch->bulk_id)
		return -ESTALE;
	end.u.bulk.phase = SYNC_BULK_END;
	end.u.bulk.count = ch->bulk_events;
	ret = sync_batch_add(ch, &end);
	if (ret < 0)
		return ret;
	if (ch->resync_pending)
		return -ESTALE;
	ch->tx_bulk_active = false;
	return 0;
}

void
sync_resync(struct sync *ch)
{
	if (ch->up != NULL) {
		sync_tx_new_stream(ch, "asked for");
		return;
	}
	sync_txq_clear(ch);
	ch->resync_pending = true;
	ch->tx_bulk_active = false;
}

const struct sync_stats *
sync_stats(const struct sync *ch)
{
	return &ch->stats;
}
