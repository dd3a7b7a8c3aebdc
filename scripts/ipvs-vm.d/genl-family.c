/* Probe for scripts/ipvs-vm selftest, built with `gcc -static`: resolves a
 * generic netlink family (default "IPVS") with CTRL_CMD_GETFAMILY and, for
 * IPVS, asks IPVS_CMD_GET_INFO for the version and connection table size.
 * Prints "FAMILY <name> id=<n> version=<v>" and exits 0, or explains and
 * exits 1. No libraries beyond libc. */
#include <errno.h>
#include <linux/genetlink.h>
#include <linux/ip_vs.h>
#include <linux/netlink.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ALIGNTO(n) (((n) + 3u) & ~3u)

static int fd;
static uint32_t seq = 1;

/* Sends one genl request (cmd, optional string attribute) and reads the reply into buf. */
static int request(uint16_t family, uint8_t cmd, uint8_t version, uint16_t attr_type,
                   const char *attr, char *buf, size_t buflen) {
    char req[256];
    memset(req, 0, sizeof req);
    struct nlmsghdr *nlh = (struct nlmsghdr *)req;
    struct genlmsghdr *g = (struct genlmsghdr *)(req + NLMSG_HDRLEN);
    nlh->nlmsg_type = family;
    nlh->nlmsg_flags = NLM_F_REQUEST; /* no ACK: one reply per request (errors still come) */
    nlh->nlmsg_seq = ++seq;
    g->cmd = cmd;
    g->version = version;
    size_t len = NLMSG_HDRLEN + GENL_HDRLEN;
    if (attr) {
        struct nlattr *na = (struct nlattr *)(req + len);
        size_t alen = strlen(attr) + 1;
        na->nla_type = attr_type;
        na->nla_len = (uint16_t)(NLA_HDRLEN + alen);
        memcpy((char *)na + NLA_HDRLEN, attr, alen);
        len += ALIGNTO(na->nla_len);
    }
    nlh->nlmsg_len = (uint32_t)len;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(fd, req, len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
        perror("sendto");
        return -1;
    }
    ssize_t n = recv(fd, buf, buflen, 0);
    if (n < 0) {
        perror("recv");
        return -1;
    }
    struct nlmsghdr *r = (struct nlmsghdr *)buf;
    if (!NLMSG_OK(r, (size_t)n)) {
        fprintf(stderr, "short reply\n");
        return -1;
    }
    if (r->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *e = NLMSG_DATA(r);
        fprintf(stderr, "netlink error: %s\n", strerror(-e->error));
        return -1;
    }
    return (int)n;
}

/* Finds attribute `type` in the genl payload of the reply; returns its data or NULL. */
static void *find_attr(char *buf, uint16_t type, uint16_t *len) {
    struct nlmsghdr *r = (struct nlmsghdr *)buf;
    char *p = (char *)NLMSG_DATA(r) + GENL_HDRLEN;
    char *end = (char *)r + r->nlmsg_len;
    while (p + NLA_HDRLEN <= end) {
        struct nlattr *na = (struct nlattr *)p;
        if (na->nla_len < NLA_HDRLEN || p + na->nla_len > end) break;
        if ((na->nla_type & NLA_TYPE_MASK) == type) {
            if (len) *len = (uint16_t)(na->nla_len - NLA_HDRLEN);
            return p + NLA_HDRLEN;
        }
        p += ALIGNTO(na->nla_len);
    }
    return NULL;
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : IPVS_GENL_NAME;
    char buf[8192];
    fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
    if (fd < 0) {
        perror("socket(AF_NETLINK, NETLINK_GENERIC)");
        return 1;
    }
    if (request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, CTRL_ATTR_FAMILY_NAME, name, buf, sizeof buf) < 0) {
        fprintf(stderr, "family %s: not resolved\n", name);
        return 1;
    }
    uint16_t *id = find_attr(buf, CTRL_ATTR_FAMILY_ID, NULL);
    if (!id) {
        fprintf(stderr, "family %s: reply without CTRL_ATTR_FAMILY_ID\n", name);
        return 1;
    }
    printf("FAMILY %s id=%u", name, *id);
    if (strcmp(name, IPVS_GENL_NAME) == 0) {
        if (request(*id, IPVS_CMD_GET_INFO, IPVS_GENL_VERSION, 0, NULL, buf, sizeof buf) < 0) {
            printf("\n");
            fprintf(stderr, "IPVS_CMD_GET_INFO failed\n");
            return 1;
        }
        uint32_t *v = find_attr(buf, IPVS_INFO_ATTR_VERSION, NULL);
        uint32_t *size = find_attr(buf, IPVS_INFO_ATTR_CONN_TAB_SIZE, NULL);
        if (!v || !size) {
            printf("\n");
            fprintf(stderr, "IPVS_CMD_GET_INFO: missing attributes\n");
            return 1;
        }
        printf(" version=%u.%u.%u conn_tab_size=%u", *v >> 16, (*v >> 8) & 0xff, *v & 0xff, *size);
    }
    printf("\n");
    close(fd);
    return 0;
}
