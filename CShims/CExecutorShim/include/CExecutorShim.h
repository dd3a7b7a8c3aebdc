// CExecutorShim: what the executor (Sources/Executor) and the task shim
// (Sources/swarmnet-shim) need from libc that Swift's Glibc module does not
// give: extended attributes (overlayfs whiteouts), the wait-status macros,
// prctl (variadic), pidfd_open (no glibc wrapper in Debian 12's glibc),
// mount flags, and posix_spawn with setsid and close-from. Every symbol is
// prefixed `cex_`.
#ifndef CEXECUTORSHIM_H
#define CEXECUTORSHIM_H

#include <sys/types.h>
#include <sys/xattr.h>
#include <sys/mount.h>

int cex_lsetxattr(const char *path, const char *name, const void *value, size_t size);
ssize_t cex_lgetxattr(const char *path, const char *name, void *value, size_t size);

int cex_wifexited(int status);
int cex_wexitstatus(int status);
int cex_wifsignaled(int status);
int cex_wtermsig(int status);

/// prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants (a container's
/// init, once runc exits) become this process's children.
int cex_set_child_subreaper(void);
/// prctl(PR_SET_PDEATHSIG, signal).
int cex_set_parent_death_signal(int signal);

/// pidfd_open(2): a descriptor that polls readable when the process exits.
int cex_pidfd_open(pid_t pid);

/// Starts `path` with `argv`/`envp`. `fds` maps the child's descriptors
/// 0..count-1 to the parent's (-1: /dev/null); every other descriptor is
/// closed in the child. With `new_session`, the child calls setsid().
/// Returns the pid, or -errno.
pid_t cex_spawn(const char *path, char *const argv[], char *const envp[], const int *fds, int count, int new_session);

/// eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK): wakes a poll loop.
int cex_eventfd(void);

/// pipe2(fds, O_CLOEXEC).
int cex_pipe_cloexec(int fds[2]);

int cex_mount(const char *source, const char *target, const char *type, unsigned long flags, const char *data);
int cex_umount(const char *target, int flags);
unsigned long cex_ms_rdonly(void);
int cex_mnt_detach(void);

#endif
