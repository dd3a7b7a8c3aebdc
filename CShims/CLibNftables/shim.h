// libnftables (pkg-config libnftables): the nftables load-balancer back end.
// Every function of <nftables/libnftables.h> is callable from Swift (no
// macros, variadics or inline functions), so no C shim is needed.
#include <nftables/libnftables.h>
