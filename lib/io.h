/*
 * io.h - the I/O seam. Every write and flush of durable data in the library
 * goes through mq_io, so tests can replace a hook to simulate a full disk,
 * a short write, a torn write or a failing fsync (as beanstalkd swaps its
 * falloc). Production code never changes mq_io.
 */
#ifndef MQ_IO_H
#define MQ_IO_H

#include <sys/types.h>
#include "mq.h"

struct mq_io_ops {
	ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t pos);
	int (*fdatasync)(int fd);
	int (*fsync)(int fd);
};

/* The hooks in force; defaults are the system calls. */
extern struct mq_io_ops mq_io;

/* Restore the default hooks (for tests). */
void mq_io_reset(void);

/*
 * Write all of buf at pos through mq_io.pwrite, retrying EINTR and short
 * writes. Returns 0, or -1 with errno set (nothing is undone: the caller
 * truncates back to its last good size if a partial write matters).
 */
int mq_pwrite_full(int fd, const void *buf, size_t len, off_t pos);

/* Read exactly len bytes at pos unless EOF comes first. Returns the number
 * of bytes read (short only at EOF), or -1 with errno set. */
ssize_t mq_pread_full(int fd, void *buf, size_t len, off_t pos);

/* snprintf into a path buffer: 0, or -1 + err (MQ_E_INVAL) when the path
 * does not fit; never a silently shortened path. */
int mq_pathf(char *buf, size_t size, mq_err *err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* fsync a directory by path (so a create/rename in it is durable). */
int mq_fsync_dir(const char *path, mq_err *err);

/* mkdir path unless it is a directory already; when created, fsync
 * parent (the directory holding it) so that the new entry survives a
 * crash. 0 or -1 + err. */
int mq_mkdir_durable(const char *path, const char *parent, mq_err *err);

/* Whether process pid exists (it may belong to another user). */
bool mq_pid_alive(long pid);

/* Sleep ms milliseconds, signals or not. */
void mq_sleep_ms(int ms);

/*
 * Durably replace the file at path with len bytes of data: write to
 * path.tmp, fsync, rename over path, fsync the directory. 0 or -1 + err.
 */
int mq_write_file_atomic(const char *path, const void *data, size_t len,
			 mq_err *err);

/*
 * Read a whole small file (at most max bytes) into a malloc'd buffer,
 * NUL-terminated. Returns 0, or -1 + err (MQ_E_NO_TOPIC is never used here:
 * a missing file gives MQ_E_IO with err->sys_errno == ENOENT).
 */
int mq_read_file(const char *path, size_t max, char **out, size_t *outlen,
		 mq_err *err);

#endif
