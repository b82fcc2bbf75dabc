/*
 * log — one line per event, key=value friendly, to stderr or syslog.
 *
 * Messages start with the object they concern ("backend web: server be1 down").
 * log_warn() appends strerror(errno); the x variants do not. Safe to call from
 * any thread: each line is formatted into one buffer and written with one write().
 */
#ifndef TANDEM_LOG_H
#define TANDEM_LOG_H

#include <stdarg.h>

enum log_level {
	LOG_LVL_ERR = 0,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
	LOG_LVL_COUNT
};

/* Parse "error|warning|info|debug"; returns the level or -1. */
int log_level_parse(const char *name);

/*
 * Set the threshold and destination. to_syslog != 0 opens syslog with ident.
 * Call from the main thread before workers start (the setting is then read-only).
 */
void log_init(enum log_level level, int to_syslog, const char *ident);

void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Rate limit for dropped-input messages: at most one line per interval;
 * the next line that passes says how many were suppressed in between.
 * Embed one per drop reason in the object that owns the reason.
 */
struct log_ratelimit {
	double next;          /* monotonic seconds before which lines are suppressed */
	unsigned suppressed;  /* lines suppressed since the last one printed */
};

/*
 * Returns 1 if a line may be printed now (and then *suppressed holds how many
 * were held back, which the caller should mention), else 0 and counts it.
 */
int log_ratelimit_ok(struct log_ratelimit *rl, double now, double interval,
    unsigned *suppressed);

#endif
