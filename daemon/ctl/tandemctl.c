/*
 * tandemctl — ask a running tandemd something over its control socket.
 *
 *   tandemctl [-s SOCKET] status | servers | drain NAME | ready NAME | maint NAME
 *             | switchover [GROUP] | sync | help
 *   tandemctl -V | -h
 *
 * The socket is -s, else $TANDEM_CTL, else /run/tandem/tandem.sock.
 * Exit status: 0 the daemon answered "ok", 1 it answered "error: ...",
 * 2 usage error or no (valid) answer from the daemon.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <tandem/ctl.h>

#define TANDEMCTL_TIMEOUT_S 10
#define TANDEMCTL_MAX_ANSWER (64u << 20)  /* a sanity bound, far above real answers */

enum {
	TANDEMCTL_OK = 0,
	TANDEMCTL_ERROR = 1,
	TANDEMCTL_FAIL = 2,
};

struct tandemctl_cmd {
	const char *name;
	int nargs;                /* -1: zero or one */
};

static const struct tandemctl_cmd tandemctl_cmds[] = {
	{ "status", 0 },
	{ "servers", 0 },
	{ "drain", 1 },
	{ "ready", 1 },
	{ "maint", 1 },
	{ "help", 0 },
	{ "switchover", -1 },
	{ "sync", 0 },
};

static void
tandemctl_usage(FILE *f)
{
	fprintf(f,
	    "usage: tandemctl [-s SOCKET] COMMAND | -V | -h\n"
	    "  status          node, version, uptime, frontends, backends\n"
	    "  servers         servers of every backend: state, weight, health\n"
	    "  drain NAME      no new connections to the server, existing ones stay\n"
	    "  ready NAME      put the server back in service\n"
	    "  maint NAME      take the server out of service\n"
	    "  switchover [GROUP]  hand the VIP group(s) over to the peer, with\n"
	    "                  their sessions when session sync can\n"
	    "  sync            session sync: channel, peer, streams, takeovers\n"
	    "NAME is BACKEND/SERVER, or SERVER when only one backend has it.\n"
	    "SOCKET defaults to $%s, else %s.\n", CTL_ENV_PATH, CTL_DEFAULT_PATH);
}

static int
tandemctl_connect(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = TANDEMCTL_TIMEOUT_S };
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	/* A wedged daemon must not hang scripts that call us. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1 ||
	    connect(fd, (const struct sockaddr *)&sun, sizeof(sun)) == -1) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static const char *
tandemctl_hint(int err)
{
	switch (err) {
	case EACCES:
	case EPERM:
		return "is your user in the socket's group?";
	case EAGAIN:
		return "is it overloaded?";
	default:
		return "is it running?";
	}
}

static int
tandemctl_send(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read until EOF into a malloc'd NUL-terminated buffer; NULL with errno set. */
static char *
tandemctl_recv(int fd, size_t *lenp)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap), *p;

	if (buf == NULL)
		return NULL;
	for (;;) {
		ssize_t n;

		if (cap - len < 2) {
			if (cap >= TANDEMCTL_MAX_ANSWER) {
				errno = EMSGSIZE;
				goto err_free;
			}
			p = realloc(buf, cap * 2);
			if (p == NULL)
				goto err_free;
			buf = p;
			cap *= 2;
		}
		n = recv(fd, buf + len, cap - len - 1, 0);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			goto err_free;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*lenp = len;
	return buf;

err_free:
	{
		int e = errno;

		free(buf);
		errno = e;
	}
	return NULL;
}

int
main(int argc, char **argv)
{
	const char *path = getenv(CTL_ENV_PATH);
	const struct tandemctl_cmd *cmd = NULL;
	char req[CTL_MAX_REQUEST + 1];
	size_t reqlen = 0, alen;
	char *answer, *body;
	int opt, fd, rc;

	if (path == NULL || path[0] == '\0')
		path = CTL_DEFAULT_PATH;
	while ((opt = getopt(argc, argv, "+hs:V")) != -1) {
		switch (opt) {
		case 'h':
			tandemctl_usage(stdout);
			return TANDEMCTL_OK;
		case 'V':
			printf("tandemctl %s\n", TANDEM_VERSION);
			return TANDEMCTL_OK;
		case 's':
			path = optarg;
			break;
		default:
			tandemctl_usage(stderr);
			return TANDEMCTL_FAIL;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1) {
		tandemctl_usage(stderr);
		return TANDEMCTL_FAIL;
	}
	for (size_t i = 0; i < sizeof(tandemctl_cmds) / sizeof(tandemctl_cmds[0]); i++)
		if (strcmp(argv[0], tandemctl_cmds[i].name) == 0)
			cmd = &tandemctl_cmds[i];
	if (cmd == NULL) {
		fprintf(stderr, "tandemctl: unknown command \"%s\"\n", argv[0]);
		tandemctl_usage(stderr);
		return TANDEMCTL_FAIL;
	}
	if (cmd->nargs == -1 ? argc - 1 > 1 : argc - 1 != cmd->nargs) {
		fprintf(stderr, "tandemctl: %s takes %s\n", cmd->name,
		    cmd->nargs == 0 ? "no argument" : cmd->nargs == -1 ?
		    "at most one argument, a vrrp-group NAME" :
		    "one argument, a server NAME");
		return TANDEMCTL_FAIL;
	}
	for (int i = 0; i < argc; i++) {
		int n = snprintf(req + reqlen, sizeof(req) - reqlen, "%s%s",
		    i > 0 ? " " : "", argv[i]);

		if (n < 0 || (size_t)n >= sizeof(req) - reqlen - 1 ||
		    strpbrk(argv[i], " \t\r\n") != NULL) {
			fprintf(stderr, "tandemctl: argument \"%s\" is too long or "
			    "holds white space\n", argv[i]);
			return TANDEMCTL_FAIL;
		}
		reqlen += (size_t)n;
	}
	req[reqlen++] = '\n';

	fd = tandemctl_connect(path);
	if (fd == -1) {
		int e = errno;

		fprintf(stderr, "tandemctl: cannot reach tandemd at %s: %s — %s\n",
		    path, strerror(e), tandemctl_hint(e));
		return TANDEMCTL_FAIL;
	}
	if (tandemctl_send(fd, req, reqlen) == -1 || shutdown(fd, SHUT_WR) == -1 ||
	    (answer = tandemctl_recv(fd, &alen)) == NULL) {
		int e = errno;

		fprintf(stderr, "tandemctl: talking to tandemd at %s: %s\n", path,
		    e == EAGAIN || e == EWOULDBLOCK ? "no answer in time" : strerror(e));
		close(fd);
		return TANDEMCTL_FAIL;
	}
	close(fd);

	if (strncmp(answer, "ok\n", 3) == 0 || strcmp(answer, "ok") == 0) {
		body = answer[2] == '\n' ? answer + 3 : answer + 2;
		fwrite(body, 1, alen - (size_t)(body - answer), stdout);
		rc = TANDEMCTL_OK;
	} else if (strncmp(answer, "error: ", 7) == 0) {
		fwrite(answer, 1, alen, stderr);
		if (alen > 0 && answer[alen - 1] != '\n')
			fputc('\n', stderr);
		rc = TANDEMCTL_ERROR;
	} else {
		fprintf(stderr, "tandemctl: unexpected answer from %s%s\n", path,
		    alen == 0 ? " (empty: did the daemon close early?)" : "");
		rc = TANDEMCTL_FAIL;
	}
	free(answer);
	if (fflush(stdout) == EOF) {
		fprintf(stderr, "tandemctl: writing output: %s\n", strerror(errno));
		rc = TANDEMCTL_FAIL;
	}
	return rc;
}
