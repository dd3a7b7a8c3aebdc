// libmnl (pkg-config libmnl): swarmnet's netlink sockets.
#include <libmnl/libmnl.h>
