// Test-only helpers that Swift cannot express directly.
#ifndef CTESTSUPPORT_H
#define CTESTSUPPORT_H

/// Drops CAP_NET_ADMIN from the calling thread's effective set (capset(2)
/// acts on one thread), so a test can provoke EPERM from rtnetlink.
/// Returns 0 or -1 with errno set.
int cts_drop_net_admin_on_this_thread(void);

#endif
