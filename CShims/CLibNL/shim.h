// libnl-3 and libnl-route-3, as Debian ships them (pkg-config libnl-route-3.0).
// swarmnet uses libnl-route-3's name tables (flags, states, scopes, protocols)
// so the debug commands print the words iproute2 users know.
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/route.h>
#include <netlink/route/rtnl.h>
#include <netlink/route/addr.h>
