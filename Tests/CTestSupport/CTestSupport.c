#define _GNU_SOURCE
#include "CTestSupport.h"

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

int cts_drop_net_admin_on_this_thread(void) {
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    if (syscall(SYS_capget, &header, data) != 0) return -1;
    data[CAP_TO_INDEX(CAP_NET_ADMIN)].effective &= ~CAP_TO_MASK(CAP_NET_ADMIN);
    return (int)syscall(SYS_capset, &header, data);
}
