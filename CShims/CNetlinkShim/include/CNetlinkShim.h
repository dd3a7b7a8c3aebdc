// CNetlinkShim: the few things Swift cannot reach directly.
//
// - Kernel UAPI headers for rtnetlink and netfilter netlink (ctnetlink), so Swift uses the kernel's own names
//   and values (RTM_NEWLINK, IFLA_VXLAN_ID, NTF_SELF...) instead of copies.
// - Wrappers for glibc functions that are only declared under _GNU_SOURCE
//   (setns, unshare, gettid), which Swift's Glibc module does not define.
// - Functions in place of the netlink macros (NLMSG_ALIGN, NLA_ALIGN...).
// Every symbol is prefixed `cnl_`; structure layouts are checked with
// _Static_assert in CNetlinkShim.c.
#ifndef CNETLINKSHIM_H
#define CNETLINKSHIM_H

#include <stdint.h>
#include <stddef.h>
#include <sys/socket.h>
// glibc's network headers first: the kernel's UAPI headers then skip the
// definitions glibc already made (linux/libc-compat.h).
#include <netinet/in.h>
#include <net/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/if_addr.h>
#include <linux/neighbour.h>
#include <linux/veth.h>
#include <linux/if_arp.h>
// Netfilter netlink (NETLINK_NETFILTER): struct nfgenmsg, NFNL_SUBSYS_*, and
// ctnetlink's message types and attributes (IPCTNL_MSG_CT_*, CTA_*, IPS_*)
// for the conntrack client (Sources/Netlink/Conntrack*.swift).
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netfilter/nf_conntrack_common.h>
// nf_tables netlink (NFT_MSG_*, NFTA_*, NFT_*) and the NAT range flags, for
// the nftables back end's own batches (Sources/LoadBalancing/NFTablesNetlink.swift).
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nf_nat.h>

/// setns(2): moves the calling thread into the namespace `fd` refers to.
int cnl_setns(int fd, int nstype);
/// unshare(2) for the calling thread only.
int cnl_unshare(int flags);
/// The kernel thread id of the caller (gettid(2)).
int cnl_gettid(void);
/// mount(2) and umount2(2) with the flags iproute2 uses for /run/netns.
int cnl_mount_bind(const char *source, const char *target);
int cnl_mount_make_shared(const char *target);
int cnl_mount_self_bind(const char *target);
int cnl_umount_detach(const char *target);

/// 1 when `path` is a namespace file (nsfs), 0 when not, -1 with errno set.
int cnl_is_nsfs(const char *path);

/// CLONE_NEWNET, a macro in <sched.h> under _GNU_SOURCE.
int cnl_clone_newnet(void);

/// NLMSG_ALIGN and NLA_ALIGN as functions.
uint32_t cnl_nlmsg_align(uint32_t len);
uint32_t cnl_nla_align(uint32_t len);

#endif
