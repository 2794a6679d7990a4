/*
 * relay: a minimal IRC relay in C, used only to calibrate the load generator.
 *
 * It is not a chat server: it knows NICK, USER, JOIN, PRIVMSG to a channel and
 * PING, formats each channel message once and appends it to every member's
 * buffer, and writes each buffer once per event-loop turn.  Run loadgen
 * against it (`make -C bench relay && bench/relay 127.0.0.1:PORT`) to see how
 * many deliveries per second the generator can take in on this machine, so a
 * figure measured against a real server can be told apart from the
 * generator's own ceiling.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXC 20000
#define MAXROOMS 4096

struct client {
    int fd;
    char nick[32];
    int room; /* -1: none */
    char in[8192];
    int inlen;
    char *out;
    size_t olen, ocap;
    bool dirty;
};

struct room {
    char name[64];
    int *members;
    int n, cap;
};

static struct client *cl[MAXC];
static struct room rooms[MAXROOMS];
static int nrooms, epfd;
static int dirty[MAXC], ndirty;

static void queue(struct client *c, const char *s, size_t n)
{
    if (c->olen + n > c->ocap) {
        size_t cap = c->ocap ? c->ocap * 2 : 16384;
        while (cap < c->olen + n)
            cap *= 2;
        c->out = realloc(c->out, cap);
        c->ocap = cap;
    }
    memcpy(c->out + c->olen, s, n);
    c->olen += n;
    if (!c->dirty) {
        c->dirty = true;
        dirty[ndirty++] = c->fd;
    }
}

static void queuef(struct client *c, const char *fmt, const char *a, const char *b)
{
    char buf[600];
    int n = snprintf(buf, sizeof buf, fmt, a, b);
    queue(c, buf, (size_t)n);
}

static void drop(int fd)
{
    struct client *c = cl[fd];
    if (!c)
        return;
    if (c->room >= 0) {
        struct room *r = &rooms[c->room];
        for (int i = 0; i < r->n; i++)
            if (r->members[i] == fd) {
                r->members[i] = r->members[--r->n];
                break;
            }
    }
    close(fd);
    free(c->out);
    free(c);
    cl[fd] = NULL;
}

static void line(struct client *c, char *l, size_t n)
{
    if (n && l[n - 1] == '\r')
        l[--n] = 0;
    l[n] = 0;
    if (strncmp(l, "NICK ", 5) == 0) {
        snprintf(c->nick, sizeof c->nick, "%s", l + 5);
    } else if (strncmp(l, "USER ", 5) == 0) {
        queuef(c, ":relay 001 %s :welcome%s\r\n", c->nick, "");
    } else if (strncmp(l, "PING ", 5) == 0) {
        queuef(c, ":relay PONG relay %s%s\r\n", l + 5, "");
    } else if (strncmp(l, "JOIN ", 5) == 0 && c->room < 0) {
        int r;
        for (r = 0; r < nrooms; r++)
            if (strcmp(rooms[r].name, l + 5) == 0)
                break;
        if (r == nrooms) {
            if (nrooms == MAXROOMS)
                return;
            snprintf(rooms[nrooms++].name, sizeof rooms[r].name, "%s", l + 5);
        }
        struct room *rm = &rooms[r];
        if (rm->n == rm->cap) {
            rm->cap = rm->cap ? rm->cap * 2 : 16;
            rm->members = realloc(rm->members, sizeof(int) * (size_t)rm->cap);
        }
        rm->members[rm->n++] = c->fd;
        c->room = r;
        queuef(c, ":relay 366 %s %s :End of /NAMES list\r\n", c->nick, rm->name);
    } else if (strncmp(l, "PRIVMSG ", 8) == 0 && c->room >= 0) {
        char *text = strstr(l, " :");
        if (!text)
            return;
        struct room *rm = &rooms[c->room];
        char buf[1200];
        int k = snprintf(buf, sizeof buf, ":%s!%s@relay PRIVMSG %s %s\r\n", c->nick, c->nick, rm->name, text + 1);
        for (int i = 0; i < rm->n; i++)
            if (rm->members[i] != c->fd)
                queue(cl[rm->members[i]], buf, (size_t)k);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: relay PORT (listens on 127.0.0.1)\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl = {MAXC, MAXC};
    setrlimit(RLIMIT_NOFILE, &rl);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1]))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 1024) < 0) {
        perror("relay: listen");
        return 1;
    }
    epfd = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(epfd, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event evs[1024];
    for (;;) {
        int n = epoll_wait(epfd, evs, 1024, ndirty ? 1 : -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c;
                while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (c >= MAXC) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    cl[c] = calloc(1, sizeof(struct client));
                    cl[c]->fd = c;
                    cl[c]->room = -1;
                    struct epoll_event e = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, c, &e);
                }
                continue;
            }
            struct client *c = cl[fd];
            if (!c)
                continue;
            ssize_t r = read(fd, c->in + c->inlen, sizeof c->in - 1 - (size_t)c->inlen);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN)
                    continue;
                drop(fd);
                continue;
            }
            c->inlen += (int)r;
            char *p = c->in, *end = c->in + c->inlen, *nl;
            while ((nl = memchr(p, '\n', (size_t)(end - p)))) {
                line(c, p, (size_t)(nl - p));
                p = nl + 1;
            }
            c->inlen = (int)(end - p);
            memmove(c->in, p, (size_t)c->inlen);
            if (c->inlen == (int)sizeof c->in - 1)
                c->inlen = 0;
        }
        /* one write per client per turn; a client that cannot take it all keeps the rest */
        int still = 0;
        for (int i = 0; i < ndirty; i++) {
            struct client *c = cl[dirty[i]];
            if (!c)
                continue;
            ssize_t w = send(c->fd, c->out, c->olen, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN) {
                drop(c->fd);
                continue;
            }
            if (w > 0) {
                memmove(c->out, c->out + w, c->olen - (size_t)w);
                c->olen -= (size_t)w;
            }
            if (c->olen)
                dirty[still++] = c->fd;
            else
                c->dirty = false;
        }
        ndirty = still;
    }
}
