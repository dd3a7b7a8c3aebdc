#include "CIPVSShim.h"

#include <stddef.h>

// Swift copies these structures byte for byte into and out of generic
// netlink messages; a kernel header that changed them would corrupt every
// IPVS request, so the build stops instead.
_Static_assert(sizeof(struct genlmsghdr) == 4, "genlmsghdr is 4 bytes");
_Static_assert(GENL_HDRLEN == 4, "generic netlink header length");
_Static_assert(sizeof(struct ip_vs_flags) == 8, "ip_vs_flags is two u32: flags, mask");
_Static_assert(offsetof(struct ip_vs_flags, mask) == 4, "ip_vs_flags.mask follows flags");
_Static_assert(IP_VS_SCHEDNAME_MAXLEN == 16, "scheduler names are at most 15 bytes");
_Static_assert(IP_VS_CONN_F_MASQ == 0, "masquerading is forwarding method 0");
_Static_assert(IPVS_CMD_FLUSH == 17, "IPVS command numbering (ABI)");
_Static_assert(IPVS_DEST_ATTR_ADDR_FAMILY == 11, "IPVS destination attribute numbering (ABI)");

uint16_t cipvs_genl_id_ctrl(void) { return GENL_ID_CTRL; }
uint32_t cipvs_genl_hdrlen(void) { return GENL_HDRLEN; }
const char *cipvs_genl_name(void) { return IPVS_GENL_NAME; }
uint8_t cipvs_genl_version(void) { return IPVS_GENL_VERSION; }
uint32_t cipvs_schedname_maxlen(void) { return IP_VS_SCHEDNAME_MAXLEN; }
uint32_t cipvs_conn_f_fwd_mask(void) { return IP_VS_CONN_F_FWD_MASK; }
