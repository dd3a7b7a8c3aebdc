// CIPVSShim: the kernel's generic netlink and IPVS UAPI headers for the
// IPVS load-balancer back end (Sources/LoadBalancing), kept apart from
// CNetlinkShim so that rtnetlink users do not see IPVS names.
//
// - <linux/genetlink.h>: genlmsghdr, GENL_ID_CTRL, CTRL_CMD_GETFAMILY and
//   CTRL_ATTR_*, to resolve the "IPVS" family id.
// - <linux/ip_vs.h>: IPVS_CMD_*, IPVS_SVC_ATTR_*, IPVS_DEST_ATTR_*,
//   struct ip_vs_flags, IP_VS_SVC_F_* and IP_VS_CONN_F_* forwarding methods,
//   so Swift uses the kernel's own names and values.
// - Functions in place of macros Swift does not import (a macro defined by
//   another macro, a string macro). Every symbol is prefixed `cipvs_`;
//   layouts are checked with _Static_assert in CIPVSShim.c.
#ifndef CIPVSSHIM_H
#define CIPVSSHIM_H

#include <stdint.h>
// glibc's network headers first, as in CNetlinkShim (linux/libc-compat.h).
#include <sys/socket.h>
#include <netinet/in.h>
#include <linux/netlink.h>
#include <linux/genetlink.h>
#include <linux/ip_vs.h>

/// GENL_ID_CTRL (defined as NLMSG_MIN_TYPE): the generic netlink controller.
uint16_t cipvs_genl_id_ctrl(void);
/// GENL_HDRLEN: the aligned size of struct genlmsghdr.
uint32_t cipvs_genl_hdrlen(void);
/// IPVS_GENL_NAME ("IPVS"), NUL-terminated.
const char *cipvs_genl_name(void);
/// IPVS_GENL_VERSION.
uint8_t cipvs_genl_version(void);
/// IP_VS_SCHEDNAME_MAXLEN, including the terminating NUL.
uint32_t cipvs_schedname_maxlen(void);
/// IP_VS_CONN_F_FWD_MASK: the forwarding-method bits of a destination.
uint32_t cipvs_conn_f_fwd_mask(void);

#endif
