/* io.c - the I/O seam and small durable-file helpers. */
#include "io.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static ssize_t sys_pwrite(int fd, const void *buf, size_t len, off_t pos)
{
	return pwrite(fd, buf, len, pos);
}

static int sys_fdatasync(int fd) { return fdatasync(fd); }
static int sys_fsync(int fd) { return fsync(fd); }

struct mq_io_ops mq_io = { sys_pwrite, sys_fdatasync, sys_fsync };

void mq_io_reset(void)
{
	mq_io.pwrite = sys_pwrite;
	mq_io.fdatasync = sys_fdatasync;
	mq_io.fsync = sys_fsync;
}

int mq_pwrite_full(int fd, const void *buf, size_t len, off_t pos)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = mq_io.pwrite(fd, p, len, pos);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {	/* no progress: treat as a full disk */
			errno = ENOSPC;
			return -1;
		}
		p += n;
		len -= (size_t)n;
		pos += n;
	}
	return 0;
}

ssize_t mq_pread_full(int fd, void *buf, size_t len, off_t pos)
{
	char *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, p + done, len - done, pos + (off_t)done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int mq_fsync_dir(const char *path, mq_err *err)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return mq_errsys(err, MQ_E_IO, errno, "open %s", path);
	if (mq_io.fsync(fd) < 0) {
		int e = errno;
		close(fd);
		return mq_errsys(err, MQ_E_IO, e, "fsync %s", path);
	}
	close(fd);
	return 0;
}

int mq_write_file_atomic(const char *path, const void *data, size_t len,
			 mq_err *err)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	char *slash;
	int fd, e;

	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
		return mq_errf(err, MQ_E_INVAL, "path too long: %s", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return mq_errsys(err, MQ_E_IO, errno, "create %s", tmp);
	if (mq_pwrite_full(fd, data, len, 0) < 0 || mq_io.fsync(fd) < 0) {
		e = errno;
		close(fd);
		unlink(tmp);
		return mq_errsys(err, MQ_E_IO, e, "write %s", tmp);
	}
	if (close(fd) < 0) {
		e = errno;
		unlink(tmp);
		return mq_errsys(err, MQ_E_IO, e, "close %s", tmp);
	}
	if (rename(tmp, path) < 0) {
		e = errno;
		unlink(tmp);
		return mq_errsys(err, MQ_E_IO, e, "rename %s", tmp);
	}
	snprintf(dir, sizeof dir, "%s", path);
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		strcpy(dir, ".");
	return mq_fsync_dir(dir, err);
}

int mq_read_file(const char *path, size_t max, char **out, size_t *outlen,
		 mq_err *err)
{
	struct stat st;
	char *buf;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return mq_errsys(err, MQ_E_IO, errno, "open %s", path);
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return mq_errsys(err, MQ_E_IO, e, "stat %s", path);
	}
	if (st.st_size < 0 || (uint64_t)st.st_size > max) {
		close(fd);
		return mq_errf(err, MQ_E_CORRUPT, "%s: size %lld over limit %zu",
			       path, (long long)st.st_size, max);
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return mq_errf(err, MQ_E_NOMEM, "out of memory reading %s", path);
	}
	n = mq_pread_full(fd, buf, (size_t)st.st_size, 0);
	if (n < 0) {
		int e = errno;
		close(fd);
		free(buf);
		return mq_errsys(err, MQ_E_IO, e, "read %s", path);
	}
	close(fd);
	buf[n] = '\0';
	*out = buf;
	if (outlen)
		*outlen = (size_t)n;
	return 0;
}

int mq_pathf(char *buf, size_t size, mq_err *err, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size)
		return mq_errf(err, MQ_E_INVAL, "path too long: %.200s...",
			       buf);
	return 0;
}

int mq_mkdir_durable(const char *path, const char *parent, mq_err *err)
{
	struct stat st;

	if (mkdir(path, 0755) == 0)
		return mq_fsync_dir(parent, err);
	if (errno != EEXIST)
		return mq_errsys(err, MQ_E_IO, errno, "mkdir %s", path);
	if (stat(path, &st) < 0)
		return mq_errsys(err, MQ_E_IO, errno, "stat %s", path);
	if (!S_ISDIR(st.st_mode))
		return mq_errf(err, MQ_E_IO, "%s: not a directory", path);
	return 0;
}

bool mq_pid_alive(long pid)
{
	return pid > 0 && pid <= INT_MAX &&
	       (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

void mq_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}
