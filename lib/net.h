/*
 * net.h - broker addresses: "host:port", "[v6]:port" or "unix:/path".
 * Shared by the broker (listen) and the client (connect).
 */
#ifndef MQ_NET_H
#define MQ_NET_H

#include <sys/socket.h>
#include "mq.h"

#define MQ_DEFAULT_ADDR "127.0.0.1:7420"
#define MQ_DEFAULT_PORT "7420"

typedef struct mq_addr {
	bool is_unix;
	char host[256];    /* TCP host (brackets stripped) */
	char port[16];     /* TCP port, digits */
	char path[108];    /* unix socket path */
} mq_addr;

/* Parse s into a; a missing port in "host" form means 7420. 0 or -1+err. */
int mq_addr_parse(const char *s, mq_addr *a, mq_err *err);
/* Printable form of a ("127.0.0.1:7420", "unix:/x"). */
void mq_addr_format(const mq_addr *a, char *buf, size_t size);

/* Listen on a (non-blocking, close-on-exec, SO_REUSEADDR; a stale unix
 * socket file left by a dead process is replaced, a live one is not).
 * If the TCP port is 0, *bound_port gets the port chosen (may be NULL).
 * Returns the fd or -1 + err. */
int mq_listen(const mq_addr *a, int backlog, int *bound_port, mq_err *err);

/* Connect to a within timeout_ms (blocking socket on return, TCP_NODELAY,
 * close-on-exec). Returns the fd or -1 + err (MQ_E_CONNECT). */
int mq_connect(const mq_addr *a, int timeout_ms, mq_err *err);

#endif
