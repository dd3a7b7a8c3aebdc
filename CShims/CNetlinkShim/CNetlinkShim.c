#define _GNU_SOURCE
#include "CNetlinkShim.h"

#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <linux/magic.h>

// Swift copies these structures byte for byte into and out of netlink
// messages; a kernel header that changed their size would corrupt every
// request, so the build stops instead.
_Static_assert(sizeof(struct nlmsghdr) == 16, "nlmsghdr is 16 bytes");
_Static_assert(sizeof(struct nlmsgerr) == 20, "nlmsgerr is 20 bytes");
_Static_assert(sizeof(struct nlattr) == 4, "nlattr is 4 bytes");
_Static_assert(sizeof(struct ifinfomsg) == 16, "ifinfomsg is 16 bytes");
_Static_assert(sizeof(struct ifaddrmsg) == 8, "ifaddrmsg is 8 bytes");
_Static_assert(sizeof(struct rtmsg) == 12, "rtmsg is 12 bytes");
_Static_assert(sizeof(struct ndmsg) == 12, "ndmsg is 12 bytes");
_Static_assert(sizeof(struct ifa_cacheinfo) == 16, "ifa_cacheinfo is 16 bytes");
_Static_assert(sizeof(struct nfgenmsg) == 4, "nfgenmsg is 4 bytes");
_Static_assert(NLMSG_HDRLEN == 16, "netlink header length");
_Static_assert(NLA_HDRLEN == 4, "netlink attribute header length");

int cnl_setns(int fd, int nstype) { return setns(fd, nstype); }
int cnl_unshare(int flags) { return unshare(flags); }
int cnl_gettid(void) { return (int)syscall(SYS_gettid); }
int cnl_is_nsfs(const char *path) {
    struct statfs fs;
    if (statfs(path, &fs) != 0) return -1;
    return fs.f_type == NSFS_MAGIC;
}
int cnl_clone_newnet(void) { return CLONE_NEWNET; }

int cnl_mount_bind(const char *source, const char *target) {
    return mount(source, target, "none", MS_BIND, NULL);
}
int cnl_mount_make_shared(const char *target) {
    return mount("", target, "none", MS_SHARED | MS_REC, NULL);
}
// iproute2 bind-mounts /run/netns onto itself when it is not yet a mount
// point, so that it can be made shared (and later mounts propagate).
int cnl_mount_self_bind(const char *target) {
    return mount(target, target, "none", MS_BIND | MS_REC, NULL);
}
int cnl_umount_detach(const char *target) { return umount2(target, MNT_DETACH); }

uint32_t cnl_nlmsg_align(uint32_t len) { return NLMSG_ALIGN(len); }
uint32_t cnl_nla_align(uint32_t len) { return NLA_ALIGN(len); }
