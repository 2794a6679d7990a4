/*
 * loadgen: a single-process, epoll-driven load generator for chat servers.
 *
 * It opens C client connections to 127.0.0.1, registers them (IRC, the chathub
 * line protocol, or WebSocket carrying JSON chathub.v1 or IRC text.ircv3.net),
 * joins them to rooms, and then lets S of them send messages.  Every message
 * body carries a marker, the sender's index, a sequence number and the send
 * time (CLOCK_MONOTONIC ns), so each receiver measures latency without any
 * clock agreement beyond this one process.  It reports, as one JSON object on
 * stdout: deliveries/s, latency percentiles, messages lost (expected minus
 * received), connections dropped, registrations/s, and its own CPU use next
 * to the server's (from /proc), so each figure says which side was saturated.
 *
 * Everything is bounded: connection count (--clients <= 10000), message
 * count (--messages), phase duration (--duration, --drain) and a hard
 * wall-clock timeout (--timeout) after which it reports what it has and
 * exits with status 2.
 *
 * Why C: a receiver has to parse millions of lines per second on one core so
 * that the server, not the generator, is what gets measured.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef uint64_t u64;
typedef int64_t i64;

#define MAX_CLIENTS 10000
#define RBUF_SIZE (4 * 1024 * 1024)
#define MAX_CARRY (2 * 1024 * 1024)
#define MARK "~LG "
#define MARK_LEN 4
#define MAX_ERRORS_KEPT 8
#define MAX_MIX 4
#define MAX_PIDS 16 /* --server-pid: the nodes of a cluster */

/* ------------------------------------------------------------------ */
/* small utilities                                                     */

static u64 now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (u64)ts.tv_sec * 1000000000ull + (u64)ts.tv_nsec;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static char *put_u64(char *p, u64 v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *put_str(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

/* Parse a decimal number at *pp; returns false if there is no digit. */
static bool parse_u64(const char **pp, const char *end, u64 *out)
{
    const char *p = *pp;
    u64 v = 0;
    if (p >= end || *p < '0' || *p > '9')
        return false;
    while (p < end && *p >= '0' && *p <= '9')
        v = v * 10 + (u64)(*p++ - '0');
    *pp = p;
    *out = v;
    return true;
}

static bool starts(const char *p, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    return n >= m && memcmp(p, lit, m) == 0;
}

/* ------------------------------------------------------------------ */
/* latency histogram: log-linear, ~0.1% precision, microsecond units   */

#define H_LINEAR 2048 /* exact below 2.048 ms */
#define H_SUB 1024
#define H_BUCKETS (H_LINEAR + 40 * H_SUB)

struct hist {
    u64 count, sum_us, max_us;
    u64 b[H_BUCKETS];
};

static int hist_index(u64 us)
{
    if (us < H_LINEAR)
        return (int)us;
    int e = 63 - __builtin_clzll(us); /* >= 11 */
    int sub = (int)((us >> (e - 10)) & (H_SUB - 1));
    int idx = H_LINEAR + (e - 11) * H_SUB + sub;
    return idx < H_BUCKETS ? idx : H_BUCKETS - 1;
}

static u64 hist_value(int idx)
{
    if (idx < H_LINEAR)
        return (u64)idx;
    int e = (idx - H_LINEAR) / H_SUB + 11;
    int sub = (idx - H_LINEAR) % H_SUB;
    return ((u64)(H_SUB + sub)) << (e - 10);
}

static void hist_add(struct hist *h, u64 us)
{
    h->count++;
    h->sum_us += us;
    if (us > h->max_us)
        h->max_us = us;
    h->b[hist_index(us)]++;
}

static u64 hist_pct(const struct hist *h, double p)
{
    if (!h->count)
        return 0;
    u64 want = (u64)(p * (double)h->count + 0.999999);
    if (want < 1)
        want = 1;
    u64 seen = 0;
    for (int i = 0; i < H_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            u64 v = hist_value(i);
            return v > h->max_us ? h->max_us : v;
        }
    }
    return h->max_us;
}

/* ------------------------------------------------------------------ */
/* configuration                                                       */

enum proto { P_IRC, P_LINE, P_WSJSON, P_WSIRC, NPROTO };
static const char *proto_names[NPROTO] = {"irc", "line", "ws-json", "ws-irc"};

enum scenario { SC_FANOUT, SC_ROOMS, SC_RATE, SC_IDLE, SC_MIXED };
static const char *scenario_names[] = {"fanout", "rooms", "rate", "idle", "mixed"};

static struct {
    enum scenario scenario;
    int clients;
    int senders;
    int rooms;
    int window;
    double rate;           /* messages/s over all senders; 0 = window mode */
    double duration;       /* seconds of sending */
    u64 max_messages;      /* total messages sent at most */
    double drain;          /* seconds without progress before giving up */
    double timeout;        /* hard wall-clock limit for the whole run */
    double hold;           /* idle: seconds to hold the connections */
    int connect_window;    /* registrations in progress at once */
    int payload;           /* message body size in bytes (minimum: the stamp) */
    int server_pid;        /* the first of server_pids (0: none) */
    int server_pids[MAX_PIDS];
    int nserver_pids;      /* several: the nodes of a cluster, summed */
    int port[NPROTO];
    const char *irc_pass;  /* sent as PASS before NICK (Twisted Words needs one) */
    const char *nick_prefix;
    const char *room_prefix;
    const char *ws_path;
    enum proto mix[MAX_MIX];
    int nmix;
} cfg = {
    .scenario = SC_FANOUT,
    .clients = 100,
    .senders = 1,
    .rooms = 1,
    .window = 16,
    .rate = 0,
    .duration = 10,
    .max_messages = 10000000,
    .drain = 5,
    .timeout = 120,
    .hold = 1,
    .connect_window = 64,
    .payload = 0,
    .server_pid = 0,
    .nserver_pids = 0,
    .irc_pass = NULL,
    .nick_prefix = "lg",
    .room_prefix = "#bench",
    .ws_path = "/ws",
    .mix = {P_IRC},
    .nmix = 1,
};

/* ------------------------------------------------------------------ */
/* connections                                                         */

enum cstate {
    CS_NEW,
    CS_CONNECTING,
    CS_WS_HANDSHAKE,
    CS_REGISTERING,
    CS_READY,   /* registered, not in a room */
    CS_JOINING,
    CS_JOINED,
    CS_DEAD,
};

struct conn {
    int fd;
    uint8_t proto;
    uint8_t state;
    bool ws;        /* WebSocket framing */
    bool ws_open;
    bool want_out;  /* EPOLLOUT registered */
    bool corked;    /* collect writes; flushed by uncork() */
    int room;
    int sender;     /* index into senders, or -1 */
    int pings;      /* barrier pings outstanding */
    char *carry;
    uint32_t clen, ccap;
    char *out;
    uint32_t olen, ocap, ooff;
    char *frag;     /* WebSocket fragmented message being assembled */
    uint32_t flen, fcap;
};

struct sender {
    int conn;
    u64 next;       /* next sequence number to send */
    u64 oldest;     /* oldest sequence number not fully delivered */
    int32_t *ring;  /* window mode: deliveries still expected per slot */
    bool queued;
};

struct room {
    int members[NPROTO];
    int total;
};

static struct conn *conns;
static struct sender *senders;
static struct room *rooms;
static int nsenders;
static int epfd;
static char *rbuf;

/* ------------------------------------------------------------------ */
/* run state and counters                                              */

enum phase { PH_REGISTER, PH_JOIN, PH_BARRIER, PH_MEASURE, PH_HOLD, PH_DONE };
static const char *phase_names[] = {"register", "join", "barrier", "measure", "hold", "done"};
static enum phase phase = PH_REGISTER;

/* Announces each phase on stderr, so a runner can start a profiler at the right moment. */
static void enter_phase(enum phase ph)
{
    phase = ph;
    fprintf(stderr, "loadgen: phase %s\n", phase_names[ph]);
    fflush(stderr);
}

static u64 t_start, t_hard_deadline;
static int next_to_open, reg_pending, reg_done, reg_failed;
static u64 t_last_registered;
static int joins_pending, joined, join_failed;
static int pings_outstanding;
static u64 ping_token;
static bool teardown;

static bool sending;
static u64 t_send_start, t_send_stop, t_last_delivery, t_last_progress;
static u64 next_rate_send, rate_interval_ns, rate_rr;
static u64 sent_total, expected_total, expected_by[NPROTO];
static u64 received_by[NPROTO], echoes, duplicates, unexpected, malformed;
static struct hist hists[NPROTO];
static int dropped_by[NPROTO];
static int dropped_in_phase[PH_DONE + 1];
static u64 server_errors;
static char *errors_kept[MAX_ERRORS_KEPT];
static int nerrors_kept;

static int *ready_q; /* senders with window space */
static int rq_head, rq_tail, rq_cap;

static void keep_error(const struct conn *c, const char *what, const char *line, size_t n)
{
    server_errors++;
    if (nerrors_kept >= MAX_ERRORS_KEPT)
        return;
    if (n > 300)
        n = 300;
    char *s = malloc(n + 64);
    int k = snprintf(s, 64, "%s %s: ", proto_names[c->proto], what);
    memcpy(s + k, line, n);
    s[k + n] = 0;
    errors_kept[nerrors_kept++] = s;
}

/* ------------------------------------------------------------------ */
/* /proc readings                                                      */

static u64 proc_ticks(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    /* fields after the command: 3=state ... 14=utime 15=stime */
    int field = 2;
    unsigned long long ut = 0, st = 0;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        field++;
        if (field == 14)
            ut = strtoull(tok, NULL, 10);
        else if (field == 15) {
            st = strtoull(tok, NULL, 10);
            break;
        }
    }
    return ut + st;
}

static long proc_rss_kib(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kib;
}

#define MAX_CPUS 16

struct snap {
    u64 t, gen_ticks, srv_ticks;
    long srv_rss_kib;
    int ncpu;
    /* from /proc/stat: other processes' load shows up here, and so does interrupt
     * time (loopback TCP runs in softirq, which is not charged to the process) */
    u64 cpu_busy[MAX_CPUS], cpu_irq[MAX_CPUS], cpu_total[MAX_CPUS];
};

static void read_cpu_times(struct snap *s)
{
    FILE *f = fopen("/proc/stat", "r");
    char line[512];
    s->ncpu = 0;
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "cpu", 3) != 0)
            break;
        if (line[3] < '0' || line[3] > '9')
            continue;
        unsigned long long v[8] = {0};
        int cpu;
        if (sscanf(line + 3, "%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7]) < 5 ||
            cpu >= MAX_CPUS)
            continue;
        u64 total = 0;
        for (int i = 0; i < 8; i++)
            total += v[i];
        s->cpu_total[cpu] = total;
        s->cpu_busy[cpu] = total - v[3] - v[4]; /* minus idle and iowait */
        s->cpu_irq[cpu] = v[5] + v[6];
        if (cpu + 1 > s->ncpu)
            s->ncpu = cpu + 1;
    }
    fclose(f);
}

static struct snap take_snap(void)
{
    struct snap s;
    s.t = now_ns();
    s.gen_ticks = proc_ticks(getpid());
    s.srv_ticks = 0;
    s.srv_rss_kib = cfg.server_pid ? 0 : -1;
    for (int i = 0; i < cfg.nserver_pids; i++) { /* every node of a cluster, summed */
        s.srv_ticks += proc_ticks(cfg.server_pids[i]);
        long kib = proc_rss_kib(cfg.server_pids[i]);
        if (kib > 0)
            s.srv_rss_kib += kib;
    }
    read_cpu_times(&s);
    return s;
}

/* ------------------------------------------------------------------ */
/* output: a tiny JSON writer                                          */

static int js_depth;
static bool js_need_comma[32];

static void js_sep(void)
{
    if (js_need_comma[js_depth])
        fputc(',', stdout);
    js_need_comma[js_depth] = true;
}
static void js_key(const char *k)
{
    if (k) {
        js_sep();
        printf("\"%s\":", k);
    } else {
        js_sep();
    }
}
static void js_open(const char *k, char c)
{
    js_key(k);
    fputc(c, stdout);
    js_need_comma[++js_depth] = false;
}
static void js_close(char c)
{
    js_depth--;
    fputc(c, stdout);
}
static void js_str(const char *k, const char *v)
{
    js_key(k);
    if (!v) {
        fputs("null", stdout);
        return;
    }
    fputc('"', stdout);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            fputc(*p, stdout);
    }
    fputc('"', stdout);
}
static void js_u64(const char *k, u64 v)
{
    js_key(k);
    printf("%llu", (unsigned long long)v);
}
static void js_i64(const char *k, i64 v)
{
    js_key(k);
    printf("%lld", (long long)v);
}
static void js_num(const char *k, double v)
{
    js_key(k);
    printf("%.6g", v);
}
static void js_bool(const char *k, bool v)
{
    js_key(k);
    fputs(v ? "true" : "false", stdout);
}

static void js_cpu(const struct snap *a, const struct snap *b)
{
    double secs = (double)(b->t - a->t) / 1e9;
    double hz = (double)sysconf(_SC_CLK_TCK);
    js_num("seconds", secs);
    js_num("gen_cpu", secs > 0 ? (double)(b->gen_ticks - a->gen_ticks) / hz / secs : 0);
    if (cfg.server_pid)
        js_num("server_cpu", secs > 0 ? (double)(b->srv_ticks - a->srv_ticks) / hz / secs : 0);
    else
        js_str("server_cpu", NULL);
    /* how busy each CPU was, whoever used it: shows load from other processes */
    js_open("cpu_busy", '[');
    for (int i = 0; i < a->ncpu && i < b->ncpu; i++) {
        u64 tot = b->cpu_total[i] - a->cpu_total[i];
        js_num(NULL, tot ? (double)(b->cpu_busy[i] - a->cpu_busy[i]) / (double)tot : 0);
    }
    js_close(']');
    js_open("cpu_irq", '[');
    for (int i = 0; i < a->ncpu && i < b->ncpu; i++) {
        u64 tot = b->cpu_total[i] - a->cpu_total[i];
        js_num(NULL, tot ? (double)(b->cpu_irq[i] - a->cpu_irq[i]) / (double)tot : 0);
    }
    js_close(']');
}

static void js_latency(const char *k, const struct hist *h)
{
    js_open(k, '{');
    js_u64("samples", h->count);
    js_u64("p50", hist_pct(h, 0.50));
    js_u64("p90", hist_pct(h, 0.90));
    js_u64("p99", hist_pct(h, 0.99));
    js_u64("p999", hist_pct(h, 0.999));
    js_u64("max", h->max_us);
    js_num("mean", h->count ? (double)h->sum_us / (double)h->count : 0);
    js_close('}');
}

/* ------------------------------------------------------------------ */
/* socket I/O                                                          */

static void conn_kill(struct conn *c, const char *why);

static void set_out_interest(struct conn *c, bool on)
{
    if (c->want_out == on)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = (uint32_t)(c - conns)};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = on;
}

static void conn_write(struct conn *c, const char *data, size_t n)
{
    if (c->state == CS_DEAD || n == 0)
        return;
    if (c->olen == 0 && c->state != CS_CONNECTING && !c->corked) {
        ssize_t w = send(c->fd, data, n, MSG_NOSIGNAL);
        if (w == (ssize_t)n)
            return;
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                conn_kill(c, "write error");
                return;
            }
            w = 0;
        }
        data += w;
        n -= (size_t)w;
    }
    if (c->olen + n > c->ocap) {
        uint32_t cap = c->ocap ? c->ocap : 4096;
        while (cap < c->olen + n)
            cap *= 2;
        c->out = realloc(c->out, cap);
        c->ocap = cap;
    }
    memcpy(c->out + c->olen, data, n);
    c->olen += (uint32_t)n;
    if (c->state != CS_CONNECTING && !c->corked)
        set_out_interest(c, true);
}

static void conn_flush(struct conn *c)
{
    while (c->ooff < c->olen) {
        ssize_t w = send(c->fd, c->out + c->ooff, c->olen - c->ooff, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            conn_kill(c, "write error");
            return;
        }
        c->ooff += (uint32_t)w;
    }
    c->olen = c->ooff = 0;
    set_out_interest(c, false);
}

/* Ends a cork: everything written since goes out in one send(). */
static void uncork(struct conn *c)
{
    c->corked = false;
    if (c->olen && c->state != CS_DEAD)
        conn_flush(c);
}

/* Send one protocol command (no line ending): framed for WebSocket, else
 * terminated with CRLF (IRC) or LF (line protocol). */
static void conn_send_cmd(struct conn *c, const char *cmd, size_t n)
{
    char stackbuf[2048];
    char *buf = n + 16 <= sizeof stackbuf ? stackbuf : malloc(n + 16);
    size_t k = 0;
    if (c->ws) {
        buf[k++] = (char)0x81; /* FIN, text */
        if (n < 126) {
            buf[k++] = (char)(0x80 | n);
        } else if (n < 65536) {
            buf[k++] = (char)(0x80 | 126);
            buf[k++] = (char)(n >> 8);
            buf[k++] = (char)n;
        } else {
            buf[k++] = (char)(0x80 | 127);
            for (int i = 7; i >= 0; i--)
                buf[k++] = (char)((u64)n >> (8 * i));
        }
        /* An all-zero masking key: legal, and the payload goes out as is. */
        memset(buf + k, 0, 4);
        k += 4;
        memcpy(buf + k, cmd, n);
        k += n;
    } else {
        memcpy(buf, cmd, n);
        k = n;
        if (c->proto == P_IRC) {
            buf[k++] = '\r';
        }
        buf[k++] = '\n';
    }
    conn_write(c, buf, k);
    if (buf != stackbuf)
        free(buf);
}

static void conn_sendf(struct conn *c, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof buf)
        n = sizeof buf - 1;
    conn_send_cmd(c, buf, (size_t)n);
}

/* ------------------------------------------------------------------ */
/* deliveries                                                          */

static void sender_enqueue(int s)
{
    if (senders[s].queued)
        return;
    senders[s].queued = true;
    ready_q[rq_tail] = s;
    rq_tail = (rq_tail + 1) % rq_cap;
}

/* p points just after the marker: "<sid> <seq> <ts>[ padding]". */
static void on_delivery(struct conn *c, const char *p, const char *end, u64 t_read)
{
    u64 sid, seq, ts;
    if (!parse_u64(&p, end, &sid) || p >= end || *p++ != ' ' || !parse_u64(&p, end, &seq) || p >= end ||
        *p++ != ' ' || !parse_u64(&p, end, &ts) || sid >= (u64)nsenders) {
        malformed++;
        return;
    }
    struct sender *s = &senders[sid];
    if (s->conn == c - conns) {
        echoes++;
        return;
    }
    if (seq >= s->next) {
        unexpected++;
        return;
    }
    if (cfg.rate <= 0) {
        if (seq < s->oldest) {
            duplicates++;
            return;
        }
        int32_t *slot = &s->ring[seq % (u64)cfg.window];
        if (*slot <= 0) {
            duplicates++;
            return;
        }
        if (--*slot == 0 && seq == s->oldest) {
            while (s->oldest < s->next && s->ring[s->oldest % (u64)cfg.window] == 0)
                s->oldest++;
            sender_enqueue((int)sid);
        }
    }
    received_by[c->proto]++;
    hist_add(&hists[c->proto], t_read > ts ? (t_read - ts) / 1000 : 0);
    t_last_delivery = t_read;
    t_last_progress = t_read;
}

/* Finds the stamp in a message text; returns false if there is none. */
static bool find_mark(const char *p, const char *end, const char **after)
{
    while (p + MARK_LEN <= end) {
        const char *q = memchr(p, '~', (size_t)(end - p));
        if (!q || q + MARK_LEN > end)
            return false;
        if (memcmp(q, MARK, MARK_LEN) == 0) {
            *after = q + MARK_LEN;
            return true;
        }
        p = q + 1;
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* protocol-independent events                                         */

static void start_more_connections(void);

static void registered(struct conn *c)
{
    if (c->state != CS_REGISTERING)
        return;
    c->state = CS_READY;
    reg_pending--;
    reg_done++;
    t_last_registered = now_ns();
    start_more_connections();
}

static void joined_room(struct conn *c)
{
    if (c->state != CS_JOINING)
        return;
    c->state = CS_JOINED;
    joins_pending--;
    joined++;
    rooms[c->room].members[c->proto]++;
    rooms[c->room].total++;
}

static void got_pong(struct conn *c)
{
    if (c->pings > 0) {
        c->pings--;
        pings_outstanding--;
    }
}

/* ------------------------------------------------------------------ */
/* IRC                                                                 */

static void nick_of(int i, char *buf, size_t n) { snprintf(buf, n, "%s%d", cfg.nick_prefix, i); }
static void room_of(int r, char *buf, size_t n) { snprintf(buf, n, "%s%d", cfg.room_prefix, r); }

static void irc_open(struct conn *c)
{
    char nick[64];
    nick_of((int)(c - conns), nick, sizeof nick);
    if (cfg.irc_pass)
        conn_sendf(c, "PASS %s", cfg.irc_pass);
    conn_sendf(c, "NICK %s", nick);
    conn_sendf(c, "USER %s 0 * :loadgen %s", nick, nick);
}

static void irc_join(struct conn *c)
{
    char room[64];
    room_of(c->room, room, sizeof room);
    conn_sendf(c, "JOIN %s", room);
}

static void irc_ping(struct conn *c) { conn_sendf(c, "PING :lgsync%llu", (unsigned long long)ping_token); }

static void irc_line(struct conn *c, char *l, size_t n, u64 t_read)
{
    while (n && (l[n - 1] == '\r' || l[n - 1] == '\n'))
        n--;
    if (!n)
        return;
    const char *p = l, *end = l + n;
    if (*p == '@') { /* message tags: not needed here */
        const char *sp = memchr(p, ' ', n);
        if (!sp)
            return;
        p = sp + 1;
    }
    if (p < end && *p == ':') {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        if (!sp)
            return;
        p = sp + 1;
    }
    while (p < end && *p == ' ')
        p++;
    const char *cmd = p;
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    size_t clen = (size_t)((sp ? sp : end) - cmd);
    const char *params = sp ? sp + 1 : end;

    if (clen == 7 && memcmp(cmd, "PRIVMSG", 7) == 0) {
        const char *after;
        const char *text = memmem(params, (size_t)(end - params), " :", 2);
        if (text && starts(text + 2, (size_t)(end - text - 2), MARK)) {
            after = text + 2 + MARK_LEN;
            on_delivery(c, after, end, t_read);
        } else if (find_mark(params, end, &after)) {
            on_delivery(c, after, end, t_read);
        }
        return;
    }
    if (clen == 4 && memcmp(cmd, "PING", 4) == 0) {
        char buf[600];
        size_t k = (size_t)(end - params);
        if (k > 500)
            k = 500;
        memcpy(buf, "PONG ", 5);
        memcpy(buf + 5, params, k);
        conn_send_cmd(c, buf, k + 5);
        return;
    }
    if (clen == 4 && memcmp(cmd, "PONG", 4) == 0) {
        /* Any PONG closes a barrier ping: Twisted Words answers "PING x"
         * with "PONG <servername>" and drops the token. */
        got_pong(c);
        return;
    }
    if (clen == 3 && cmd[0] >= '0' && cmd[0] <= '9') {
        if (memcmp(cmd, "001", 3) == 0) {
            registered(c);
        } else if (memcmp(cmd, "366", 3) == 0) {
            joined_room(c);
        } else if (cmd[0] == '4' || cmd[0] == '5') {
            keep_error(c, "numeric", l, n);
            if (c->state == CS_REGISTERING && (memcmp(cmd, "433", 3) == 0 || memcmp(cmd, "432", 3) == 0 ||
                                               memcmp(cmd, "464", 3) == 0 || memcmp(cmd, "465", 3) == 0))
                conn_kill(c, "registration refused");
            else if (c->state == CS_JOINING && cmd[0] == '4' &&
                     (memcmp(cmd, "403", 3) == 0 || memcmp(cmd, "405", 3) == 0 || memcmp(cmd, "471", 3) == 0 ||
                      memcmp(cmd, "473", 3) == 0 || memcmp(cmd, "474", 3) == 0 || memcmp(cmd, "475", 3) == 0 ||
                      memcmp(cmd, "479", 3) == 0)) {
                c->state = CS_READY;
                joins_pending--;
                join_failed++;
            }
        }
        return;
    }
    if (clen == 5 && memcmp(cmd, "ERROR", 5) == 0) {
        keep_error(c, "ERROR", l, n);
        return;
    }
    if (clen == 4 && memcmp(cmd, "FAIL", 4) == 0) {
        keep_error(c, "FAIL", l, n);
        return;
    }
}

static void irc_send_text(struct conn *c, const char *text, size_t n)
{
    char buf[1200];
    char *p = put_str(buf, "PRIVMSG ");
    char room[64];
    room_of(c->room, room, sizeof room);
    p = put_str(p, room);
    p = put_str(p, " :");
    memcpy(p, text, n);
    p += n;
    conn_send_cmd(c, buf, (size_t)(p - buf));
}

/* ------------------------------------------------------------------ */
/* line protocol (telnet): "/nick NAME", "/join #room", plain text      */

static void line_open(struct conn *c)
{
    /* The nick is sent at once: the greeting is not a prompt we must wait for. */
    char nick[64];
    nick_of((int)(c - conns), nick, sizeof nick);
    conn_sendf(c, "/nick %s", nick);
}

static void line_join(struct conn *c)
{
    char room[64];
    room_of(c->room, room, sizeof room);
    conn_sendf(c, "/join %s", room);
}

/* The line protocol has no ping; /help answers at once with one line starting
 * "Commands:", in order with everything else on the connection. */
static void line_ping(struct conn *c) { conn_send_cmd(c, "/help", 5); }

static void line_line(struct conn *c, char *l, size_t n, u64 t_read)
{
    while (n && (l[n - 1] == '\r' || l[n - 1] == '\n'))
        n--;
    if (!n)
        return;
    const char *end = l + n, *after;
    if (l[0] == '[') {
        /* "[#room] <nick> text" */
        const char *gt = memmem(l, n, "> ", 2);
        if (gt && starts(gt + 2, (size_t)(end - gt - 2), MARK))
            on_delivery(c, gt + 2 + MARK_LEN, end, t_read);
        else if (find_mark(l, end, &after))
            on_delivery(c, after, end, t_read);
        return;
    }
    if (l[0] == '!') { /* "! error text" */
        keep_error(c, "error", l, n);
        if (c->state == CS_REGISTERING)
            conn_kill(c, "nick refused");
        else if (c->state == CS_JOINING) {
            c->state = CS_READY;
            joins_pending--;
            join_failed++;
        }
        return;
    }
    if (c->state == CS_REGISTERING && starts(l, n, "* you are ")) {
        /* "* you are NICK, a guest. ..." */
        char nick[64];
        nick_of((int)(c - conns), nick, sizeof nick);
        size_t nl = strlen(nick);
        if (n > 10 + nl && memcmp(l + 10, nick, nl) == 0 && (l[10 + nl] == ',' || l[10 + nl] == ' '))
            registered(c);
        return;
    }
    if (c->state == CS_JOINING && starts(l, n, "* you joined ")) {
        joined_room(c);
        return;
    }
    if (c->pings && starts(l, n, "Commands:")) {
        got_pong(c);
        return;
    }
}

static void line_send_text(struct conn *c, const char *text, size_t n) { conn_send_cmd(c, text, n); }

/* ------------------------------------------------------------------ */
/* WebSocket JSON (chathub.v1): one compact JSON object per text message */

static void wsjson_open(struct conn *c)
{
    char nick[64];
    nick_of((int)(c - conns), nick, sizeof nick);
    conn_sendf(c, "{\"type\":\"login\",\"nick\":\"%s\"}", nick);
}

static void wsjson_join(struct conn *c)
{
    char room[64];
    room_of(c->room, room, sizeof room);
    conn_sendf(c, "{\"type\":\"join\",\"room\":\"%s\"}", room);
}

static void wsjson_ping(struct conn *c)
{
    conn_sendf(c, "{\"type\":\"ping\",\"token\":\"lgsync%llu\"}", (unsigned long long)ping_token);
}

/* True if the object's "type" is `type`: the server writes "type" first; any order is accepted. */
static bool json_type_is(const char *l, size_t n, const char *type)
{
    char pat[64];
    int k = snprintf(pat, sizeof pat, "\"type\":\"%s\"", type);
    if (n > (size_t)k && l[0] == '{' && memcmp(l + 1, pat, (size_t)k) == 0)
        return true;
    return memmem(l, n, pat, (size_t)k) != NULL;
}

static void wsjson_msg(struct conn *c, char *l, size_t n, u64 t_read)
{
    const char *after;
    if (n > 17 && memcmp(l, "{\"type\":\"message\"", 17) == 0) {
        const char *text = memmem(l, n, "\"text\":\"" MARK, 8 + MARK_LEN);
        if (text)
            on_delivery(c, text + 8 + MARK_LEN, l + n, t_read);
        else if (find_mark(l, l + n, &after))
            on_delivery(c, after, l + n, t_read);
        return;
    }
    if (json_type_is(l, n, "pong")) {
        got_pong(c);
    } else if (json_type_is(l, n, "welcome")) {
        registered(c);
    } else if (json_type_is(l, n, "room")) {
        joined_room(c);
    } else if (json_type_is(l, n, "error") || json_type_is(l, n, "closing")) {
        keep_error(c, "error", l, n);
        if (c->state == CS_REGISTERING)
            conn_kill(c, "login refused");
        else if (c->state == CS_JOINING) {
            c->state = CS_READY;
            joins_pending--;
            join_failed++;
        }
    } else if (json_type_is(l, n, "message") && find_mark(l, l + n, &after)) {
        on_delivery(c, after, l + n, t_read);
    }
}

static void wsjson_send_text(struct conn *c, const char *text, size_t n)
{
    /* the stamp and padding are plain ASCII: nothing to escape */
    char buf[1300], room[64];
    room_of(c->room, room, sizeof room);
    char *p = put_str(buf, "{\"type\":\"message\",\"target\":\"");
    p = put_str(p, room);
    p = put_str(p, "\",\"text\":\"");
    memcpy(p, text, n);
    p += n;
    p = put_str(p, "\"}");
    conn_send_cmd(c, buf, (size_t)(p - buf));
}

/* ------------------------------------------------------------------ */
/* protocol table                                                      */

struct proto_ops {
    void (*open)(struct conn *);
    void (*join)(struct conn *);
    void (*ping)(struct conn *);
    void (*msg)(struct conn *, char *, size_t, u64);
    void (*send_text)(struct conn *, const char *, size_t);
    const char *ws_subprotocol;
};

static const struct proto_ops ops[NPROTO] = {
    [P_IRC] = {irc_open, irc_join, irc_ping, irc_line, irc_send_text, NULL},
    [P_LINE] = {line_open, line_join, line_ping, line_line, line_send_text, NULL},
    [P_WSJSON] = {wsjson_open, wsjson_join, wsjson_ping, wsjson_msg, wsjson_send_text, "chathub.v1"},
    [P_WSIRC] = {irc_open, irc_join, irc_ping, irc_line, irc_send_text, "text.ircv3.net"},
};

/* ------------------------------------------------------------------ */
/* connection lifecycle                                                */

static void conn_kill(struct conn *c, const char *why)
{
    if (c->state == CS_DEAD)
        return;
    enum cstate was = (enum cstate)c->state;
    c->state = CS_DEAD;
    if (!teardown) {
        if (was == CS_CONNECTING || was == CS_WS_HANDSHAKE || was == CS_REGISTERING) {
            reg_pending--;
            reg_failed++;
            if (nerrors_kept < MAX_ERRORS_KEPT)
                keep_error(c, "registration failed", why, strlen(why));
        } else {
            dropped_by[c->proto]++;
            dropped_in_phase[phase]++;
            if (nerrors_kept < MAX_ERRORS_KEPT)
                keep_error(c, "dropped", why, strlen(why));
        }
        if (was == CS_JOINING)
            joins_pending--;
        if (c->pings) {
            pings_outstanding -= c->pings;
            c->pings = 0;
        }
        if (c->sender >= 0)
            senders[c->sender].queued = true; /* never sends again */
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    if (!teardown && (was == CS_CONNECTING || was == CS_WS_HANDSHAKE || was == CS_REGISTERING))
        start_more_connections();
}

static void conn_opened(struct conn *c)
{
    if (c->ws) {
        char req[512];
        int n = snprintf(req, sizeof req,
                         "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: bG9hZGdlbmxvYWRnZW4xMg==\r\nSec-WebSocket-Version: 13\r\n"
                         "Sec-WebSocket-Protocol: %s\r\nOrigin: http://127.0.0.1:%d\r\n\r\n",
                         cfg.ws_path, cfg.port[c->proto], ops[c->proto].ws_subprotocol, cfg.port[c->proto]);
        c->state = CS_WS_HANDSHAKE;
        conn_write(c, req, (size_t)n);
    } else {
        c->state = CS_REGISTERING;
        ops[c->proto].open(c);
    }
}

static void conn_start(int i)
{
    struct conn *c = &conns[i];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s (raise the fd limit: ulimit -n)", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg.port[c->proto])};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = fd;
    c->state = CS_CONNECTING;
    reg_pending++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i};
    c->want_out = true;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)
        conn_kill(c, strerror(errno));
}

static void start_more_connections(void)
{
    while (phase == PH_REGISTER && reg_pending < cfg.connect_window && next_to_open < cfg.clients)
        conn_start(next_to_open++);
}

/* WebSocket: returns bytes consumed from buf. */
static size_t ws_consume(struct conn *c, char *buf, size_t n, u64 t_read)
{
    size_t off = 0;
    if (!c->ws_open) {
        char *hdr_end = memmem(buf, n, "\r\n\r\n", 4);
        if (!hdr_end)
            return 0;
        if (!(n > 12 && memcmp(buf, "HTTP/1.1 101", 12) == 0)) {
            char *eol = memchr(buf, '\r', n);
            keep_error(c, "ws handshake", buf, eol ? (size_t)(eol - buf) : n);
            conn_kill(c, "WebSocket handshake refused");
            return n;
        }
        c->ws_open = true;
        c->state = CS_REGISTERING;
        ops[c->proto].open(c);
        off = (size_t)(hdr_end + 4 - buf);
    }
    while (c->state != CS_DEAD) {
        size_t avail = n - off;
        if (avail < 2)
            break;
        const unsigned char *h = (const unsigned char *)buf + off;
        bool fin = h[0] & 0x80;
        int op = h[0] & 0x0f;
        bool masked = h[1] & 0x80;
        u64 len = h[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            if (avail < 4)
                break;
            len = ((u64)h[2] << 8) | h[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | h[2 + i];
            hl = 10;
        }
        if (masked)
            hl += 4;
        if (len > MAX_CARRY) {
            conn_kill(c, "WebSocket frame too large");
            return n;
        }
        if (avail < hl + len)
            break;
        char *payload = buf + off + hl;
        if (masked) {
            const unsigned char *key = h + hl - 4;
            for (u64 i = 0; i < len; i++)
                payload[i] ^= (char)key[i & 3];
        }
        off += hl + (size_t)len;
        if (op == 0x8) { /* close: answer it; the peer ended the session */
            conn_kill(c, "WebSocket close from server");
            return n;
        }
        if (op == 0x9) { /* ping -> pong */
            char pong[256];
            size_t pl = len < 125 ? (size_t)len : 125;
            pong[0] = (char)0x8a;
            pong[1] = (char)(0x80 | pl);
            memset(pong + 2, 0, 4);
            memcpy(pong + 6, payload, pl);
            conn_write(c, pong, pl + 6);
            continue;
        }
        if (op == 0xa)
            continue;
        if (op == 0x0 || !fin) { /* fragmented message */
            if (c->flen + len > MAX_CARRY) {
                conn_kill(c, "WebSocket message too large");
                return n;
            }
            if (c->flen + len > c->fcap) {
                c->fcap = (uint32_t)(c->flen + len) * 2;
                c->frag = realloc(c->frag, c->fcap);
            }
            memcpy(c->frag + c->flen, payload, (size_t)len);
            c->flen += (uint32_t)len;
            if (fin) {
                ops[c->proto].msg(c, c->frag, c->flen, t_read);
                c->flen = 0;
            }
            continue;
        }
        ops[c->proto].msg(c, payload, (size_t)len, t_read);
    }
    return off;
}

static size_t lines_consume(struct conn *c, char *buf, size_t n, u64 t_read)
{
    size_t off = 0;
    void (*msg)(struct conn *, char *, size_t, u64) = ops[c->proto].msg;
    while (off < n && c->state != CS_DEAD) {
        char *nl = memchr(buf + off, '\n', n - off);
        if (!nl)
            break;
        size_t len = (size_t)(nl - (buf + off));
        msg(c, buf + off, len, t_read);
        off += len + 1;
    }
    return off;
}

static void conn_readable(struct conn *c)
{
    size_t have = c->clen;
    if (have)
        memcpy(rbuf, c->carry, have);
    ssize_t r = read(c->fd, rbuf + have, RBUF_SIZE - have);
    if (r == 0) {
        conn_kill(c, "connection closed by server");
        return;
    }
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        conn_kill(c, strerror(errno));
        return;
    }
    u64 t_read = now_ns();
    size_t n = have + (size_t)r;
    size_t used = c->ws ? ws_consume(c, rbuf, n, t_read) : lines_consume(c, rbuf, n, t_read);
    if (c->state == CS_DEAD)
        return;
    size_t left = n - used;
    if (left > MAX_CARRY) {
        conn_kill(c, "line too long");
        return;
    }
    if (left > c->ccap) {
        c->ccap = (uint32_t)(left < 512 ? 512 : left * 2);
        c->carry = realloc(c->carry, c->ccap);
    }
    memcpy(c->carry, rbuf + used, left);
    c->clen = (uint32_t)left;
}

static void conn_writable(struct conn *c)
{
    if (c->state == CS_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            conn_kill(c, strerror(err));
            return;
        }
        c->state = CS_REGISTERING; /* provisional; conn_opened sets the real one */
        set_out_interest(c, false);
        conn_opened(c);
        if (c->state == CS_DEAD)
            return;
        if (c->olen)
            set_out_interest(c, true);
        return;
    }
    conn_flush(c);
}

/* ------------------------------------------------------------------ */
/* sending                                                             */

static size_t make_text(char *buf, int sid, u64 seq)
{
    char *p = put_str(buf, MARK);
    p = put_u64(p, (u64)sid);
    *p++ = ' ';
    p = put_u64(p, seq);
    *p++ = ' ';
    p = put_u64(p, now_ns());
    size_t n = (size_t)(p - buf);
    if ((int)n < cfg.payload) {
        *p++ = ' ';
        n++;
        while ((int)n < cfg.payload) {
            *p++ = 'x';
            n++;
        }
    }
    return n;
}

static bool send_one(int sid)
{
    struct sender *s = &senders[sid];
    struct conn *c = &conns[s->conn];
    if (c->state != CS_JOINED)
        return false;
    struct room *r = &rooms[c->room];
    if (cfg.rate <= 0)
        s->ring[s->next % (u64)cfg.window] = r->total - 1;
    for (int p = 0; p < NPROTO; p++)
        expected_by[p] += (u64)(r->members[p] - (p == c->proto ? 1 : 0));
    expected_total += (u64)(r->total - 1);
    char text[1100];
    size_t n = make_text(text, sid, s->next);
    s->next++;
    sent_total++;
    ops[c->proto].send_text(c, text, n);
    if (cfg.rate <= 0 && r->total - 1 <= 0 && s->oldest == s->next - 1)
        s->oldest++;
    return true;
}

static void stop_sending(u64 t)
{
    if (!sending)
        return;
    sending = false;
    t_send_stop = t;
    t_last_progress = t;
}

static void pump_senders(u64 t)
{
    if (!sending)
        return;
    if (t - t_send_start >= (u64)(cfg.duration * 1e9) || sent_total >= cfg.max_messages) {
        stop_sending(t);
        return;
    }
    if (cfg.rate > 0) {
        while (sending && next_rate_send <= t) {
            int sid = (int)(rate_rr++ % (u64)nsenders);
            send_one(sid);
            next_rate_send += rate_interval_ns;
            if (sent_total >= cfg.max_messages)
                stop_sending(t);
        }
        return;
    }
    int budget = rq_cap;
    while (rq_head != rq_tail && budget-- > 0) {
        int sid = ready_q[rq_head];
        rq_head = (rq_head + 1) % rq_cap;
        struct sender *s = &senders[sid];
        struct conn *c = &conns[s->conn];
        s->queued = false;
        c->corked = true; /* one send() for all the messages the window allows now */
        while (s->next - s->oldest < (u64)cfg.window) {
            if (!send_one(sid)) {
                s->queued = true; /* dead sender: never requeue */
                break;
            }
            if (sent_total >= cfg.max_messages) {
                stop_sending(t);
                break;
            }
        }
        uncork(c);
        if (!sending)
            return;
    }
}

/* ------------------------------------------------------------------ */
/* event loop                                                          */

typedef bool (*done_fn)(u64 now);

static u64 secs_ns(double s) { return (u64)(s * 1e9); }

/* Runs the loop until done() or the deadline; returns false on the deadline. */
static bool run_until(done_fn done, u64 deadline)
{
    static struct epoll_event evs[1024];
    for (;;) {
        u64 t = now_ns();
        if (done(t))
            return true;
        if (t >= deadline || t >= t_hard_deadline)
            return false;
        u64 wake = deadline < t_hard_deadline ? deadline : t_hard_deadline;
        if (sending && cfg.rate > 0 && next_rate_send < wake)
            wake = next_rate_send;
        u64 tmo_ns = wake > t ? wake - t : 0;
        if (tmo_ns > 100000000ull)
            tmo_ns = 100000000ull;
        int tmo_ms = (int)((tmo_ns + 999999) / 1000000);
        int n = epoll_wait(epfd, evs, 1024, tmo_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = &conns[evs[i].data.u32];
            if (c->state == CS_DEAD)
                continue;
            if (evs[i].events & EPOLLOUT)
                conn_writable(c);
            if (c->state != CS_DEAD && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                conn_readable(c);
        }
        pump_senders(now_ns());
    }
}

static bool registration_done(u64 t)
{
    (void)t;
    return reg_done + reg_failed >= cfg.clients;
}
static bool joins_done(u64 t)
{
    (void)t;
    return joins_pending <= 0;
}
static bool pings_done(u64 t)
{
    (void)t;
    return pings_outstanding <= 0;
}
static bool never(u64 t)
{
    (void)t;
    return false;
}
static bool measure_done(u64 t)
{
    if (sending)
        return false;
    u64 got = 0;
    for (int p = 0; p < NPROTO; p++)
        got += received_by[p];
    if (got >= expected_total)
        return true;
    return t - t_last_progress >= secs_ns(cfg.drain);
}

static void barrier(void)
{
    ping_token++;
    for (int i = 0; i < cfg.clients; i++) {
        struct conn *c = &conns[i];
        if (c->state == CS_READY || c->state == CS_JOINED || c->state == CS_JOINING) {
            c->pings++;
            pings_outstanding++;
            ops[c->proto].ping(c);
        }
    }
}

/* ------------------------------------------------------------------ */
/* command line                                                        */

static int parse_proto(const char *s)
{
    for (int p = 0; p < NPROTO; p++)
        if (strcmp(s, proto_names[p]) == 0)
            return p;
    die("unknown protocol '%s' (irc, line, ws-json, ws-irc)", s);
    return -1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen --scenario fanout|rooms|rate|idle|mixed [options]\n"
            "  --clients C          connections (max %d)\n"
            "  --senders S          sending connections (rooms: every client)\n"
            "  --rooms R            rooms (rooms scenario)\n"
            "  --window W           messages in flight per sender (window mode)\n"
            "  --rate M             messages/s over all senders (rate mode; 0 = window mode)\n"
            "  --duration SEC       seconds of sending           --messages N  messages at most\n"
            "  --drain SEC          give up after SEC without a delivery once sending stopped\n"
            "  --timeout SEC        hard limit for the whole run  --hold SEC   idle: hold time\n"
            "  --connect-window N   registrations in progress at once\n"
            "  --payload BYTES      message text size (padded)\n"
            "  --server-pid PID     server process to read CPU and RSS of (repeat: summed)\n"
            "  --irc-port/--line-port/--ws-port PORT\n"
            "  --protocol P         irc, line, ws-json, ws-irc (all but mixed)\n"
            "  --mix P,P,...        mixed: protocols, assigned round robin\n"
            "  --irc-pass PASS      send PASS before NICK (Twisted Words wants one)\n"
            "  --ws-path PATH       WebSocket path (default /ws)\n"
            "  --nick-prefix S  --room-prefix S\n",
            MAX_CLIENTS);
    exit(1);
}

static void parse_args(int argc, char **argv)
{
    enum {
        O_SCEN = 256, O_CLIENTS, O_SENDERS, O_ROOMS, O_WINDOW, O_RATE, O_DURATION, O_MESSAGES, O_DRAIN,
        O_TIMEOUT, O_HOLD, O_CWIN, O_PAYLOAD, O_PID, O_IRCPORT, O_LINEPORT, O_WSPORT, O_PROTO, O_MIX,
        O_PASS, O_WSPATH, O_NICKP, O_ROOMP,
    };
    static const struct option lo[] = {
        {"scenario", 1, 0, O_SCEN},       {"clients", 1, 0, O_CLIENTS},      {"senders", 1, 0, O_SENDERS},
        {"rooms", 1, 0, O_ROOMS},         {"window", 1, 0, O_WINDOW},        {"rate", 1, 0, O_RATE},
        {"duration", 1, 0, O_DURATION},   {"messages", 1, 0, O_MESSAGES},    {"drain", 1, 0, O_DRAIN},
        {"timeout", 1, 0, O_TIMEOUT},     {"hold", 1, 0, O_HOLD},            {"connect-window", 1, 0, O_CWIN},
        {"payload", 1, 0, O_PAYLOAD},     {"server-pid", 1, 0, O_PID},       {"irc-port", 1, 0, O_IRCPORT},
        {"line-port", 1, 0, O_LINEPORT},  {"ws-port", 1, 0, O_WSPORT},       {"protocol", 1, 0, O_PROTO},
        {"mix", 1, 0, O_MIX},             {"irc-pass", 1, 0, O_PASS},        {"ws-path", 1, 0, O_WSPATH},
        {"nick-prefix", 1, 0, O_NICKP},   {"room-prefix", 1, 0, O_ROOMP},    {"help", 0, 0, 'h'},
        {0, 0, 0, 0},
    };
    int senders_given = 0, rooms_given = 0;
    int o;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (o) {
        case O_SCEN: {
            int found = -1;
            for (int i = 0; i < 5; i++)
                if (strcmp(optarg, scenario_names[i]) == 0)
                    found = i;
            if (found < 0)
                die("unknown scenario '%s'", optarg);
            cfg.scenario = (enum scenario)found;
            break;
        }
        case O_CLIENTS: cfg.clients = atoi(optarg); break;
        case O_SENDERS: cfg.senders = atoi(optarg); senders_given = 1; break;
        case O_ROOMS: cfg.rooms = atoi(optarg); rooms_given = 1; break;
        case O_WINDOW: cfg.window = atoi(optarg); break;
        case O_RATE: cfg.rate = atof(optarg); break;
        case O_DURATION: cfg.duration = atof(optarg); break;
        case O_MESSAGES: cfg.max_messages = strtoull(optarg, NULL, 10); break;
        case O_DRAIN: cfg.drain = atof(optarg); break;
        case O_TIMEOUT: cfg.timeout = atof(optarg); break;
        case O_HOLD: cfg.hold = atof(optarg); break;
        case O_CWIN: cfg.connect_window = atoi(optarg); break;
        case O_PAYLOAD: cfg.payload = atoi(optarg); break;
        case O_PID:
            if (cfg.nserver_pids == MAX_PIDS)
                die("at most %d --server-pid", MAX_PIDS);
            cfg.server_pids[cfg.nserver_pids++] = atoi(optarg);
            cfg.server_pid = cfg.server_pids[0];
            break;
        case O_IRCPORT: cfg.port[P_IRC] = atoi(optarg); break;
        case O_LINEPORT: cfg.port[P_LINE] = atoi(optarg); break;
        case O_WSPORT: cfg.port[P_WSJSON] = cfg.port[P_WSIRC] = atoi(optarg); break;
        case O_PROTO: cfg.mix[0] = (enum proto)parse_proto(optarg); cfg.nmix = 1; break;
        case O_MIX: {
            cfg.nmix = 0;
            char *save = NULL;
            for (char *t = strtok_r(optarg, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (cfg.nmix >= MAX_MIX)
                    die("--mix takes at most %d protocols", MAX_MIX);
                cfg.mix[cfg.nmix++] = (enum proto)parse_proto(t);
            }
            break;
        }
        case O_PASS: cfg.irc_pass = optarg; break;
        case O_WSPATH: cfg.ws_path = optarg; break;
        case O_NICKP: cfg.nick_prefix = optarg; break;
        case O_ROOMP: cfg.room_prefix = optarg; break;
        default: usage();
        }
    }
    if (optind < argc)
        usage();
    if (cfg.clients < 1 || cfg.clients > MAX_CLIENTS)
        die("--clients must be 1..%d", MAX_CLIENTS);
    if (cfg.scenario == SC_ROOMS) {
        if (!rooms_given)
            cfg.rooms = cfg.clients / 10 > 0 ? cfg.clients / 10 : 1;
        if (!senders_given)
            cfg.senders = cfg.clients;
    } else {
        cfg.rooms = 1;
    }
    if (cfg.scenario == SC_MIXED && !senders_given)
        cfg.senders = cfg.nmix;
    if (cfg.scenario == SC_RATE && cfg.rate <= 0)
        cfg.rate = 50;
    if (cfg.scenario == SC_IDLE)
        cfg.senders = 0;
    if (cfg.senders > cfg.clients)
        cfg.senders = cfg.clients;
    if (cfg.rooms < 1 || cfg.rooms > cfg.clients)
        die("--rooms must be 1..clients");
    if (cfg.window < 1)
        die("--window must be at least 1");
    if (cfg.payload > 1000)
        die("--payload at most 1000");
    if (cfg.connect_window < 1)
        cfg.connect_window = 1;
    for (int i = 0; i < cfg.nmix; i++)
        if (!cfg.port[cfg.mix[i]])
            die("no port given for protocol %s", proto_names[cfg.mix[i]]);
}

/* ------------------------------------------------------------------ */
/* main                                                                */

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t want = (rlim_t)cfg.clients + 64;
    if (rl.rlim_cur >= want)
        return;
    if (rl.rlim_max < want) {
        rl.rlim_max = want; /* works as root */
    }
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < want)
            die("fd limit %llu is below %llu: raise it (ulimit -n)", (unsigned long long)rl.rlim_cur,
                (unsigned long long)want);
    }
}

static void emit_protocol_figures(const char *key, int p, double secs)
{
    js_open(key, '{');
    u64 exp = expected_by[p], got = received_by[p];
    js_u64("expected", exp);
    js_u64("received", got);
    js_i64("lost", (i64)exp - (i64)got);
    js_num("deliveries_per_second", secs > 0 ? (double)got / secs : 0);
    js_u64("dropped", (u64)dropped_by[p]);
    js_latency("latency_us", &hists[p]);
    js_close('}');
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    conns = calloc((size_t)cfg.clients, sizeof *conns);
    rooms = calloc((size_t)cfg.rooms, sizeof *rooms);
    nsenders = cfg.senders;
    senders = calloc((size_t)(nsenders ? nsenders : 1), sizeof *senders);
    rq_cap = nsenders + 1;
    ready_q = calloc((size_t)rq_cap, sizeof *ready_q);
    rbuf = malloc(RBUF_SIZE);
    for (int i = 0; i < cfg.clients; i++) {
        struct conn *c = &conns[i];
        c->fd = -1;
        c->proto = (uint8_t)cfg.mix[i % cfg.nmix];
        c->ws = c->proto == P_WSJSON || c->proto == P_WSIRC;
        c->room = i % cfg.rooms;
        c->sender = i < nsenders ? i : -1;
    }
    for (int s = 0; s < nsenders; s++) {
        senders[s].conn = s;
        if (cfg.rate <= 0)
            senders[s].ring = calloc((size_t)cfg.window, sizeof(int32_t));
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);

    t_start = now_ns();
    t_hard_deadline = t_start + secs_ns(cfg.timeout);
    const char *error = NULL;

    /* 1. connect and register */
    struct snap s_reg0 = take_snap();
    enter_phase(PH_REGISTER);
    start_more_connections();
    if (!run_until(registration_done, t_hard_deadline))
        error = "timeout while registering";
    struct snap s_reg1 = take_snap();
    u64 t_reg_end = t_last_registered ? t_last_registered : s_reg1.t;

    struct snap s_join0 = s_reg1, s_join1 = s_reg1, s_m0 = s_reg1, s_m1 = s_reg1, s_idle = s_reg1;
    struct snap s_hold1 = s_reg1;
    bool idle = cfg.scenario == SC_IDLE;

    if (!error && idle) {
        enter_phase(PH_BARRIER);
        barrier();
        if (!run_until(pings_done, t_hard_deadline))
            error = "timeout waiting for PONGs after registration";
        s_idle = take_snap();
        enter_phase(PH_HOLD);
        if (!error) {
            run_until(never, now_ns() + secs_ns(cfg.hold));
            barrier();
            if (!run_until(pings_done, t_hard_deadline))
                error = "timeout waiting for PONGs after holding";
        }
        s_hold1 = take_snap();
    }

    if (!error && !idle) {
        /* 2. join */
        enter_phase(PH_JOIN);
        s_join0 = take_snap();
        for (int i = 0; i < cfg.clients; i++) {
            struct conn *c = &conns[i];
            if (c->state == CS_READY) {
                c->state = CS_JOINING;
                joins_pending++;
                ops[c->proto].join(c);
            }
        }
        if (!run_until(joins_done, t_hard_deadline))
            error = "timeout while joining";
        /* 3. barrier: every join announcement has arrived before we measure */
        enter_phase(PH_BARRIER);
        if (!error) {
            barrier();
            if (!run_until(pings_done, t_hard_deadline))
                error = "timeout waiting for PONGs after joining";
        }
        s_join1 = take_snap();
    }

    if (!error && !idle) {
        /* 4. measure */
        enter_phase(PH_MEASURE);
        s_m0 = take_snap();
        t_send_start = t_last_progress = s_m0.t;
        sending = nsenders > 0;
        if (cfg.rate > 0) {
            rate_interval_ns = (u64)(1e9 / cfg.rate);
            next_rate_send = t_send_start;
        } else {
            for (int s = 0; s < nsenders; s++)
                sender_enqueue(s);
        }
        pump_senders(now_ns());
        if (!run_until(measure_done, t_hard_deadline))
            error = "hard timeout while measuring";
        s_m1 = take_snap();
    }
    enter_phase(PH_DONE);

    /* report */
    u64 received = 0;
    for (int p = 0; p < NPROTO; p++)
        received += received_by[p];
    int dropped = 0;
    for (int p = 0; p < NPROTO; p++)
        dropped += dropped_by[p];

    js_open(NULL, '{');
    js_str("scenario", scenario_names[cfg.scenario]);
    js_bool("ok", error == NULL);
    js_str("error", error);
    js_open("params", '{');
    js_u64("clients", (u64)cfg.clients);
    js_u64("senders", (u64)nsenders);
    js_u64("rooms", (u64)cfg.rooms);
    js_str("mode", idle ? "idle" : cfg.rate > 0 ? "rate" : "window");
    js_u64("window", (u64)cfg.window);
    js_num("rate", cfg.rate);
    js_num("duration", cfg.duration);
    js_u64("payload", (u64)cfg.payload);
    js_u64("connect_window", (u64)cfg.connect_window);
    js_open("protocols", '[');
    for (int i = 0; i < cfg.nmix; i++)
        js_str(NULL, proto_names[cfg.mix[i]]);
    js_close(']');
    js_close('}');

    js_open("register", '{');
    js_u64("connections", (u64)cfg.clients);
    js_u64("registered", (u64)reg_done);
    js_u64("failed", (u64)reg_failed);
    {
        struct snap end = s_reg1;
        end.t = t_reg_end;
        js_cpu(&s_reg0, &end);
        double secs = (double)(t_reg_end - s_reg0.t) / 1e9;
        js_num("per_second", secs > 0 ? (double)reg_done / secs : 0);
    }
    js_close('}');

    if (idle) {
        js_open("idle", '{');
        js_i64("server_rss_before_kib", s_reg0.srv_rss_kib);
        js_i64("server_rss_after_kib", s_idle.srv_rss_kib);
        js_i64("server_rss_after_hold_kib", s_hold1.srv_rss_kib);
        long delta = s_idle.srv_rss_kib - s_reg0.srv_rss_kib;
        js_num("server_rss_per_connection_bytes",
               reg_done > 0 && s_reg0.srv_rss_kib >= 0 ? (double)delta * 1024.0 / reg_done : 0);
        js_num("hold_seconds", (double)(s_hold1.t - s_idle.t) / 1e9);
        js_cpu(&s_idle, &s_hold1);
        js_close('}');
    } else {
        js_open("join", '{');
        js_u64("joined", (u64)joined);
        js_u64("failed", (u64)join_failed);
        js_cpu(&s_join0, &s_join1);
        js_close('}');

        double secs = t_last_delivery > t_send_start ? (double)(t_last_delivery - t_send_start) / 1e9 : 0;
        double send_secs = (double)((t_send_stop ? t_send_stop : s_m1.t) - t_send_start) / 1e9;
        struct hist all = {0};
        for (int p = 0; p < NPROTO; p++) {
            all.count += hists[p].count;
            all.sum_us += hists[p].sum_us;
            if (hists[p].max_us > all.max_us)
                all.max_us = hists[p].max_us;
            for (int i = 0; i < H_BUCKETS; i++)
                all.b[i] += hists[p].b[i];
        }
        js_open("measure", '{');
        js_u64("sent", sent_total);
        js_num("send_seconds", send_secs);
        js_num("messages_per_second", send_secs > 0 ? (double)sent_total / send_secs : 0);
        js_u64("expected", expected_total);
        js_u64("received", received);
        js_i64("lost", (i64)expected_total - (i64)received);
        js_u64("duplicates", duplicates);
        js_u64("unexpected", unexpected);
        js_u64("malformed", malformed);
        js_u64("echoes", echoes);
        js_num("delivery_seconds", secs);
        js_num("deliveries_per_second", secs > 0 ? (double)received / secs : 0);
        js_latency("latency_us", &all);
        js_cpu(&s_m0, &s_m1);
        js_i64("server_rss_kib", s_m1.srv_rss_kib);
        js_close('}');

        js_open("per_protocol", '{');
        for (int i = 0; i < cfg.nmix; i++) {
            bool seen = false;
            for (int j = 0; j < i; j++)
                seen |= cfg.mix[j] == cfg.mix[i];
            if (!seen)
                emit_protocol_figures(proto_names[cfg.mix[i]], cfg.mix[i], secs);
        }
        js_close('}');
    }

    js_u64("dropped", (u64)dropped);
    js_open("dropped_in_phase", '{');
    for (int ph = 0; ph < PH_DONE; ph++)
        js_u64(phase_names[ph], (u64)dropped_in_phase[ph]);
    js_close('}');
    js_u64("server_errors", server_errors);
    js_open("first_errors", '[');
    for (int i = 0; i < nerrors_kept; i++)
        js_str(NULL, errors_kept[i]);
    js_close(']');
    js_num("wall_seconds", (double)(now_ns() - t_start) / 1e9);
    js_close('}');
    fputc('\n', stdout);
    fflush(stdout);

    /* Close with RST so thousands of client sockets don't linger in TIME_WAIT. */
    teardown = true;
    struct linger lg = {1, 0};
    for (int i = 0; i < cfg.clients; i++)
        if (conns[i].fd >= 0) {
            setsockopt(conns[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(conns[i].fd);
        }
    return error ? 2 : 0;
}
