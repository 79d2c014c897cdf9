/*
 * lgroup.h - consumer groups without a broker: membership by locks.
 *
 * With no broker to keep the members of a group, the kernel does it:
 * every member holds an flock(2) on a file of its own for as long as it
 * lives, and one on a file per partition it consumes. When a member dies,
 * however it dies, its locks go with it, and the others see at once that
 * it is gone and that its partitions are free.
 *
 *   GROUPS_DIR/<group>/members/<pid>-<n>-<nonce>.lock   one per live member
 *       (the random nonce: pids repeat, in containers above all):
 *       "mq-member 1\nid <member id>\nclient <name>\ntopics <t> ...\n"
 *   GROUPS_DIR/<group>/owners/<topic>.<partition>.lock
 *       flock'ed by the partition's owner, which writes "<member id>\n"
 *       into it (and empties it when it lets go)
 *   GROUPS_DIR/<group>/generation   "<n>\n": bumped whenever a member's
 *       set of partitions changes (informative: fencing is by the locks)
 *
 * A member file appears under its final name already locked (it is made
 * under a temporary name and renamed), so a member file that can be
 * locked belongs to a dead member and may be removed. Owner files are
 * never removed: unlinking a file someone may be about to lock would let
 * two processes hold "the same" lock.
 *
 * Sharing: each member takes at most its share, ceil(P / N) of the P
 * partitions of its topics among the N live members subscribed to any of
 * them, gives back what it holds beyond that (or one partition when
 * another member holds two fewer), and takes free partitions while below
 * its share. A partition that stays free for a whole session timeout
 * (its subscribers are all full, e.g. their topics differ) is taken by
 * whoever sees it. Every member runs the same rule at each heartbeat, so
 * the group converges without talking.
 */
#ifndef MQ_LGROUP_H
#define MQ_LGROUP_H

#include "mq.h"
#include "client.h"

typedef struct mq_lgroup mq_lgroup;

/*
 * Become a member of group (a validated name) under groups_dir: creates
 * the group's directories (durably) and the member file. client names
 * the member in listings; topics is its subscription. The new member
 * holds no partition yet: call mq_lg_balance. 0 or -1 + err.
 */
int mq_lg_join(const char *groups_dir, const char *group, const char *client,
	       uint32_t session_ms, const char *const *topics, size_t ntopics,
	       mq_lgroup **out, mq_err *err);

/* Change the subscription (and session timeout). 0 or -1 + err. */
int mq_lg_subscribe(mq_lgroup *g, const char *const *topics, size_t ntopics,
		    uint32_t session_ms, mq_err *err);

/*
 * Apply the sharing rule over cands (the partitions of the member's
 * topics, sorted by topic then partition). Free partitions the member
 * is entitled to are taken at once. Partitions to give back are given
 * back only when apply is set (a join); without it (a heartbeat) they are
 * kept, so that the member can first commit its progress on them.
 * *changed is set when the member's partitions changed or should change
 * (then the member must join again). 0 or -1 + err.
 */
int mq_lg_balance(mq_lgroup *g, const mq_tp *cands, size_t n, bool apply,
		  bool *changed, mq_err *err);

/* The member's partitions (sorted), id and generation; bumps the group's
 * generation first if they changed since the last call. Free out with
 * mq_assignment_free. 0 or -1 + err. */
int mq_lg_assignment(mq_lgroup *g, mq_assignment *out, mq_err *err);

/* True if the member holds the lock of (topic, partition). */
bool mq_lg_owns(const mq_lgroup *g, const char *topic, int32_t partition);

const char *mq_lg_group(const mq_lgroup *g);
const char *mq_lg_member(const mq_lgroup *g);
int32_t mq_lg_generation(const mq_lgroup *g);
/* The subscription, sorted and distinct as given. */
const char *const *mq_lg_topics(const mq_lgroup *g, size_t *n);

/* Give back every partition, remove the member file, free g. */
void mq_lg_leave(mq_lgroup *g);

/* Count the live members of group; with cleanup, remove the files of
 * dead ones. A group that does not exist has none. 0 or -1 + err. */
int mq_lg_count_live(const char *groups_dir, const char *group, bool cleanup,
		     size_t *n, mq_err *err);

/*
 * Fill gi->state ("stable" or "empty"), generation and members (ids,
 * clients and partitions, from the member and owner files) of group.
 * Never modifies anything. gi->name and offsets are left alone. 0 or -1
 * + err (gi then holds what was filled: free it as usual).
 */
int mq_lg_describe(const char *groups_dir, const char *group,
		   mq_group_info *gi, mq_err *err);

#endif
