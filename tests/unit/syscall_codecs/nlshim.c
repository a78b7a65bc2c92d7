/* LD_PRELOAD shim for tests: each NETLINK_ROUTE socket a program opens becomes
 * one end of a new AF_UNIX SOCK_SEQPACKET pair whose other end is handed to
 * the test's server (SCM_RIGHTS over the control socket in $NV_NL_FD), so
 * that unmodified iproute2 decodes netvisor's replies instead of the
 * kernel's. Only the public libc entry points iproute2 calls are wrapped. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/netlink.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAXFD 1024
static char ours[MAXFD];

static int is_ours(int fd) { return fd >= 0 && fd < MAXFD && ours[fd]; }

static void fill_nl(struct sockaddr *addr, socklen_t *len, unsigned pid) {
    if (!addr || !len) return;
    struct sockaddr_nl nl = {.nl_family = AF_NETLINK, .nl_pid = pid};
    memcpy(addr, &nl, *len < sizeof(nl) ? *len : sizeof(nl));
    *len = sizeof(nl);
}

int socket(int domain, int type, int protocol) {
    static int (*real)(int, int, int);
    if (!real) real = dlsym(RTLD_NEXT, "socket");
    const char *env = getenv("NV_NL_FD");
    if (domain == AF_NETLINK && protocol == NETLINK_ROUTE && env) {
        static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
        if (!real_sendmsg) real_sendmsg = dlsym(RTLD_NEXT, "sendmsg");
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) < 0) return -1;
        char byte = 'n';
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } ctl;
        memset(&ctl, 0, sizeof(ctl));
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1,
                           .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &sv[1], sizeof(int));
        if (real_sendmsg(atoi(env), &m, 0) < 0) return -1;
        close(sv[1]);
        if (sv[0] < MAXFD) ours[sv[0]] = 1;
        return sv[0];
    }
    return real(domain, type, protocol);
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real)(int, const struct sockaddr *, socklen_t);
    if (!real) real = dlsym(RTLD_NEXT, "bind");
    return is_ours(fd) ? 0 : real(fd, addr, len);
}

int setsockopt(int fd, int level, int name, const void *val, socklen_t len) {
    static int (*real)(int, int, int, const void *, socklen_t);
    if (!real) real = dlsym(RTLD_NEXT, "setsockopt");
    return is_ours(fd) ? 0 : real(fd, level, name, val, len);
}

int getsockname(int fd, struct sockaddr *addr, socklen_t *len) {
    static int (*real)(int, struct sockaddr *, socklen_t *);
    if (!real) real = dlsym(RTLD_NEXT, "getsockname");
    if (!is_ours(fd)) return real(fd, addr, len);
    fill_nl(addr, len, 4242);
    return 0;
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
    static ssize_t (*real)(int, const struct msghdr *, int);
    if (!real) real = dlsym(RTLD_NEXT, "sendmsg");
    if (!is_ours(fd)) return real(fd, msg, flags);
    struct msghdr m = {.msg_iov = msg->msg_iov, .msg_iovlen = msg->msg_iovlen};
    return real(fd, &m, flags);
}

ssize_t send(int fd, const void *buf, size_t len, int flags) {
    static ssize_t (*real)(int, const void *, size_t, int);
    if (!real) real = dlsym(RTLD_NEXT, "send");
    return real(fd, buf, len, flags);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags) {
    static ssize_t (*real)(int, struct msghdr *, int);
    if (!real) real = dlsym(RTLD_NEXT, "recvmsg");
    if (!is_ours(fd)) return real(fd, msg, flags);
    void *name = msg->msg_name;
    socklen_t namelen = msg->msg_namelen;
    msg->msg_name = NULL;
    msg->msg_namelen = 0;
    ssize_t n = real(fd, msg, flags);
    msg->msg_name = name;
    msg->msg_namelen = namelen;
    if (n >= 0) fill_nl(name, &msg->msg_namelen, 0);  /* from the kernel */
    return n;
}

ssize_t recv(int fd, void *buf, size_t len, int flags) {
    static ssize_t (*real)(int, void *, size_t, int);
    if (!real) real = dlsym(RTLD_NEXT, "recv");
    return real(fd, buf, len, flags);
}
