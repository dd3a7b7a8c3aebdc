#define _GNU_SOURCE
#include "CExecutorShim.h"
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int cex_lsetxattr(const char *path, const char *name, const void *value, size_t size) {
    return lsetxattr(path, name, value, size, 0);
}

ssize_t cex_lgetxattr(const char *path, const char *name, void *value, size_t size) {
    return lgetxattr(path, name, value, size);
}

int cex_wifexited(int status) { return WIFEXITED(status); }
int cex_wexitstatus(int status) { return WEXITSTATUS(status); }
int cex_wifsignaled(int status) { return WIFSIGNALED(status); }
int cex_wtermsig(int status) { return WTERMSIG(status); }

int cex_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }
int cex_set_parent_death_signal(int signal) { return prctl(PR_SET_PDEATHSIG, signal, 0, 0, 0); }

int cex_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

pid_t cex_spawn(const char *path, char *const argv[], char *const envp[], const int *fds, int count, int new_session) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attributes);
    // dup2 onto a high slot first, then down: a mapping such as 1->2, 2->1
    // must not overwrite a source before it is read.
    for (int i = 0; i < count; i++) {
        if (fds[i] < 0) {
            posix_spawn_file_actions_addopen(&actions, 1000 + i, "/dev/null", O_RDWR, 0);
        } else {
            posix_spawn_file_actions_adddup2(&actions, fds[i], 1000 + i);
        }
    }
    for (int i = 0; i < count; i++) {
        posix_spawn_file_actions_adddup2(&actions, 1000 + i, i);
    }
    posix_spawn_file_actions_addclosefrom_np(&actions, count);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (new_session) flags |= POSIX_SPAWN_SETSID;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setsigdefault(&attributes, &all);
    posix_spawnattr_setflags(&attributes, flags);
    pid_t pid = 0;
    int result = posix_spawn(&pid, path, &actions, &attributes, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    return result == 0 ? pid : -result;
}

int cex_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

int cex_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int cex_mount(const char *source, const char *target, const char *type, unsigned long flags, const char *data) {
    return mount(source, target, type, flags, data);
}
int cex_umount(const char *target, int flags) { return umount2(target, flags); }
unsigned long cex_ms_rdonly(void) { return MS_RDONLY; }
int cex_mnt_detach(void) { return MNT_DETACH; }
