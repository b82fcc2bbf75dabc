/* log — see include/tandem/log.h */
#include <tandem/log.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/*
 * The one process-wide setting we allow ourselves: written once by log_init()
 * before any thread starts, read-only afterwards (OBSD log.c does the same).
 */
static enum log_level log_threshold = LOG_LVL_INFO;
static int log_syslog;

static const char *const log_names[LOG_LVL_COUNT] = {
	[LOG_LVL_ERR] = "error",
	[LOG_LVL_WARN] = "warning",
	[LOG_LVL_INFO] = "info",
	[LOG_LVL_DEBUG] = "debug",
};

static const int log_prio[LOG_LVL_COUNT] = {
	[LOG_LVL_ERR] = LOG_ERR,
	[LOG_LVL_WARN] = LOG_WARNING,
	[LOG_LVL_INFO] = LOG_INFO,
	[LOG_LVL_DEBUG] = LOG_DEBUG,
};

int
log_level_parse(const char *name)
{
	for (int i = 0; i < LOG_LVL_COUNT; i++)
		if (strcmp(name, log_names[i]) == 0)
			return i;
	return -1;
}

void
log_init(enum log_level level, int to_syslog, const char *ident)
{
	log_threshold = level;
	log_syslog = to_syslog;
	if (to_syslog)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

static void log_vemit(enum log_level lvl, int errnum, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void
log_vemit(enum log_level lvl, int errnum, const char *fmt, va_list ap)
{
	char line[1024];
	size_t n = 0;
	int r;

	if (lvl > log_threshold)
		return;
	if (!log_syslog) {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s ",
		    ts.tv_nsec / 1000000, log_names[lvl]);
		if (r > 0)
			n += (size_t)r;
	}
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (r > 0)
		n += (size_t)r;
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	if (errnum) {
		r = snprintf(line + n, sizeof(line) - n, ": %s", strerror(errnum));
		if (r > 0)
			n += (size_t)r;
		if (n >= sizeof(line) - 1)
			n = sizeof(line) - 2;
	}
	if (log_syslog) {
		syslog(log_prio[lvl], "%s", line);
		return;
	}
	line[n++] = '\n';
	/* One write per line keeps lines from different threads whole. */
	(void)!write(STDERR_FILENO, line, n);
}

#define LOG_BODY(lvl, errnum)                    \
	do {                                     \
		va_list ap;                      \
		va_start(ap, fmt);               \
		log_vemit((lvl), (errnum), fmt, ap); \
		va_end(ap);                      \
	} while (0)

void
log_warn(const char *fmt, ...)
{
	int e = errno;

	LOG_BODY(LOG_LVL_WARN, e);
	errno = e;
}

void
log_warnx(const char *fmt, ...)
{
	LOG_BODY(LOG_LVL_WARN, 0);
}

void
log_info(const char *fmt, ...)
{
	LOG_BODY(LOG_LVL_INFO, 0);
}

void
log_debug(const char *fmt, ...)
{
	LOG_BODY(LOG_LVL_DEBUG, 0);
}

void
fatal(const char *fmt, ...)
{
	int e = errno;

	LOG_BODY(LOG_LVL_ERR, e);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	LOG_BODY(LOG_LVL_ERR, 0);
	exit(1);
}

int
log_ratelimit_ok(struct log_ratelimit *rl, double now, double interval,
    unsigned *suppressed)
{
	if (now < rl->next) {
		rl->suppressed++;
		return 0;
	}
	*suppressed = rl->suppressed;
	rl->suppressed = 0;
	rl->next = now + interval;
	return 1;
}
