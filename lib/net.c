/* net.c - parse broker addresses, listen and connect. */
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int mq_addr_parse(const char *s, mq_addr *a, mq_err *err)
{
	const char *colon, *host;
	size_t hlen;

	memset(a, 0, sizeof *a);
	if (!s || !*s)
		return mq_errf(err, MQ_E_INVAL, "empty broker address");
	if (strncmp(s, "unix:", 5) == 0) {
		a->is_unix = true;
		if (!s[5])
			return mq_errf(err, MQ_E_INVAL,
				       "address %s: empty socket path", s);
		if (strlen(s + 5) >= sizeof a->path)
			return mq_errf(err, MQ_E_INVAL,
				       "address %s: socket path longer than %zu bytes",
				       s, sizeof a->path - 1);
		strcpy(a->path, s + 5);
		return 0;
	}
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (!end)
			return mq_errf(err, MQ_E_INVAL, "address %s: missing ']'", s);
		host = s + 1;
		hlen = (size_t)(end - host);
		colon = end[1] == ':' ? end + 1 : NULL;
		if (end[1] && !colon)
			return mq_errf(err, MQ_E_INVAL,
				       "address %s: expected ':' after ']'", s);
	} else {
		colon = strrchr(s, ':');
		if (colon && strchr(s, ':') != colon)
			return mq_errf(err, MQ_E_INVAL,
				       "address %s: write IPv6 hosts as [addr]:port", s);
		host = s;
		hlen = colon ? (size_t)(colon - s) : strlen(s);
	}
	if (hlen == 0 || hlen >= sizeof a->host)
		return mq_errf(err, MQ_E_INVAL, "address %s: bad host", s);
	memcpy(a->host, host, hlen);
	a->host[hlen] = '\0';
	if (colon) {
		const char *p = colon + 1;
		char *end;
		long port;
		if (!*p || strlen(p) >= sizeof a->port)
			return mq_errf(err, MQ_E_INVAL, "address %s: bad port", s);
		errno = 0;
		port = strtol(p, &end, 10);
		if (errno || *end || port < 0 || port > 65535)
			return mq_errf(err, MQ_E_INVAL,
				       "address %s: port must be 0..65535", s);
		snprintf(a->port, sizeof a->port, "%ld", port);
	} else {
		strcpy(a->port, MQ_DEFAULT_PORT);
	}
	return 0;
}

void mq_addr_format(const mq_addr *a, char *buf, size_t size)
{
	if (a->is_unix)
		snprintf(buf, size, "unix:%s", a->path);
	else if (strchr(a->host, ':'))
		snprintf(buf, size, "[%s]:%s", a->host, a->port);
	else
		snprintf(buf, size, "%s:%s", a->host, a->port);
}

static int set_flags(int fd, bool nonblock)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -1;
	fl = nonblock ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
	return fcntl(fd, F_SETFL, fl);
}

/* Is something accepting connections on the unix socket at path? */
static bool unix_socket_live(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live;

	if (fd < 0)
		return true;	/* be conservative: do not remove */
	live = connect(fd, (const struct sockaddr *)sun, sizeof *sun) == 0 ||
	       errno != ECONNREFUSED;
	close(fd);
	return live;
}

static int listen_unix(const mq_addr *a, int backlog, mq_err *err)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, a->path, strlen(a->path));
	if (lstat(a->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return mq_errf(err, MQ_E_INVAL,
				       "unix:%s exists and is not a socket", a->path);
		if (unix_socket_live(&sun))
			return mq_errf(err, MQ_E_BUSY,
				       "unix:%s: another process is listening", a->path);
		unlink(a->path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return mq_errsys(err, MQ_E_IO, errno, "socket");
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0 ||
	    listen(fd, backlog) < 0) {
		int e = errno;
		close(fd);
		return mq_errsys(err, MQ_E_IO, e, "listen on unix:%s", a->path);
	}
	return fd;
}

int mq_listen(const mq_addr *a, int backlog, int *bound_port, mq_err *err)
{
	struct addrinfo hints, *res, *ai;
	int fd = -1, e = 0, rc, one = 1;

	if (a->is_unix)
		return listen_unix(a, backlog, err);
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(a->host, a->port, &hints, &res);
	if (rc != 0)
		return mq_errf(err, MQ_E_INVAL, "listen on %s:%s: %s", a->host,
			       a->port, gai_strerror(rc));
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family,
			    ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			e = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, backlog) == 0)
			break;
		e = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return mq_errsys(err, MQ_E_IO, e, "listen on %s:%s", a->host,
				 a->port);
	if (bound_port) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		*bound_port = 0;
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
			if (ss.ss_family == AF_INET)
				*bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
			else if (ss.ss_family == AF_INET6)
				*bound_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		}
	}
	return fd;
}

/* Connect fd to sa within the deadline; 0 or -1 with errno. */
static int connect_within(int fd, const struct sockaddr *sa, socklen_t len,
			  int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	int soerr = 0;
	socklen_t sl = sizeof soerr;

	if (set_flags(fd, true) < 0)
		return -1;
	if (connect(fd, sa, len) < 0) {
		if (errno != EINPROGRESS)
			return -1;
		int n;
		do
			n = poll(&pfd, 1, timeout_ms);
		while (n < 0 && errno == EINTR);
		if (n == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (n < 0)
			return -1;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			return -1;
		if (soerr) {
			errno = soerr;
			return -1;
		}
	}
	return set_flags(fd, false);
}

int mq_connect(const mq_addr *a, int timeout_ms, mq_err *err)
{
	char name[400];
	int fd, e = 0;

	mq_addr_format(a, name, sizeof name);
	if (a->is_unix) {
		struct sockaddr_un sun;
		memset(&sun, 0, sizeof sun);
		sun.sun_family = AF_UNIX;
		memcpy(sun.sun_path, a->path, strlen(a->path));
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return mq_errsys(err, MQ_E_CONNECT, errno, "socket");
		if (connect_within(fd, (struct sockaddr *)&sun, sizeof sun,
				   timeout_ms) < 0) {
			e = errno;
			close(fd);
			mq_errsys(err, MQ_E_CONNECT, e, "cannot reach broker at %s",
				  name);
			err->code = MQ_E_CONNECT;
			return -1;
		}
		return fd;
	}

	struct addrinfo hints, *res, *ai;
	int rc, one = 1;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	rc = getaddrinfo(a->host, a->port, &hints, &res);
	if (rc != 0)
		return mq_errf(err, MQ_E_CONNECT, "cannot reach broker at %s: %s",
			       name, gai_strerror(rc));
	fd = -1;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			e = errno;
			continue;
		}
		if (connect_within(fd, ai->ai_addr, ai->ai_addrlen,
				   timeout_ms) == 0)
			break;
		e = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		mq_errsys(err, MQ_E_CONNECT, e, "cannot reach broker at %s", name);
		err->code = MQ_E_CONNECT;
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}
