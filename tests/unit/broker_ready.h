/*
 * broker_ready.h - for the unit tests that start mq-brokerd: wait until
 * the broker just forked answers, or has died; stop it again.
 */
#ifndef MQ_BROKER_READY_H
#define MQ_BROKER_READY_H

#include "harness.h"
#include "client.h"

/*
 * Up to ms, try to open a client to addr (the broker is child pid).
 * Returns 0 once one opens, -1 if the child exited first (*status gets
 * its wait status; the pid is reaped), -2 if ms passed (err says why the
 * last try failed).
 */
__attribute__((unused))
static int broker_wait_ready(pid_t pid, const char *addr, int ms,
			     int *status, mq_err *err)
{
	mq_client_opts o = { .connect_timeout_ms = 500,
			     .request_timeout_ms = 2000 };
	mq_client *c;

	mq_errf(err, MQ_E_CONNECT, "not tried");
	for (int64_t end = mq_mono_ms() + ms; mq_mono_ms() < end;) {
		if (waitpid(pid, status, WNOHANG) == pid)
			return -1;
		if (mq_client_open(addr, &o, &c, err) == 0) {
			mq_client_close(c);
			return 0;
		}
		sleep_ms(10);
	}
	return -2;
}

/*
 * Send SIGTERM to the broker (child pid) and wait up to ms for it. Returns
 * its wait status, or -1 if it was still running (it is then killed with
 * SIGKILL and reaped).
 */
__attribute__((unused))
static int broker_sigterm(pid_t pid, int ms)
{
	int st;

	kill(pid, SIGTERM);
	st = wait_exit(pid, ms);
	if (st == -1) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	return st;
}

#endif
