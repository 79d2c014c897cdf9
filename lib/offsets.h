/*
 * offsets.h - committed offsets of one consumer group, stored durably in
 * GROUPS_DIR/<group>/offsets. A committed offset is the next offset to
 * process. The file is rewritten whole on save (temp file, fsync, rename,
 * fsync the directory); it is text with a version line and a CRC-32C line
 * so a damaged file is detected rather than trusted:
 *
 *   mq-offsets 1
 *   <topic> <partition> <offset> <commit-time-ms>
 *   ...
 *   crc <8 hex digits of CRC-32C over all lines above>
 *
 * If you change this layout, bump the version.
 */
#ifndef MQ_OFFSETS_H
#define MQ_OFFSETS_H

#include "mq.h"

typedef struct mq_offsets mq_offsets;

typedef struct mq_offset_entry {
	char *topic;
	int32_t partition;
	int64_t offset;
	int64_t commit_ms;
} mq_offset_entry;

/*
 * Load the offsets of group (validated) from groups_dir. A group with no
 * file yet loads empty. With create, the group's directory is created
 * (durably) if missing. A file that fails its CRC or does not parse is an
 * error (MQ_E_CORRUPT), never silently treated as empty.
 */
int mq_offsets_load(const char *groups_dir, const char *group, bool create,
		    mq_offsets **out, mq_err *err);
void mq_offsets_free(mq_offsets *o);

/* Committed offset of (topic, partition), or -1 if none. */
int64_t mq_offsets_get(const mq_offsets *o, const char *topic,
		       int32_t partition);
/* Set in memory (commit_ms = now). Persist with mq_offsets_save. */
int mq_offsets_set(mq_offsets *o, const char *topic, int32_t partition,
		   int64_t offset, mq_err *err);
/* Commit offset for (topic, partition) in memory, as mq_offsets_set;
 * with forward_only, a higher offset already committed is kept (commits
 * from outside the group move only forward unless asked otherwise). */
int mq_offsets_commit(mq_offsets *o, const char *topic, int32_t partition,
		      int64_t offset, bool forward_only, mq_err *err);
/* Forget an entry (in memory). */
void mq_offsets_remove(mq_offsets *o, const char *topic, int32_t partition);
/* Durably write the whole set. */
int mq_offsets_save(mq_offsets *o, mq_err *err);

size_t mq_offsets_count(const mq_offsets *o);
/* i-th entry, sorted by topic then partition. */
const mq_offset_entry *mq_offsets_at(const mq_offsets *o, size_t i);

/* Names of the groups that have a directory under groups_dir (sorted,
 * invalid names skipped). Free with mq_names_free. */
int mq_offsets_list_groups(const char *groups_dir, char ***names, size_t *n,
			   mq_err *err);
void mq_names_free(char **names, size_t n);

#endif
