/* loopstat.c — how long an event loop stays away from epoll, per iteration.
 *
 *   cc -O2 -shared -fPIC -o libloopstat.so bench/loopstat.c -ldl
 *   LOOPSTAT_OUT=/tmp/loop.txt LD_PRELOAD=./libloopstat.so deploy-mcp ...
 *
 * Interposes epoll_wait/epoll_pwait (libuv calls them through the PLT) in the
 * thread that calls them first (the loop thread). The time between returning
 * from one wait and entering the next is one loop iteration's work: a request
 * that arrives meanwhile (a ping) waits for the rest of it. Both the wall time
 * and the thread's CPU time of every iteration are recorded, so on a machine
 * shared with other work the CPU figures still say what the server itself
 * costs. At exit, writes histograms and time-weighted percentiles ("a request
 * arriving at a random moment of busy time finds an iteration at least this
 * long") to $LOOPSTAT_OUT (default stderr). Optional $LOOPSTAT_SKIP_MS: ignore
 * iterations in the first N ms (start-up).
 *
 * SIGUSR2 ends a phase: at the loop's next wait the figures so far are
 * written as "phase N" and counting starts again (bench/run.py --loopstat
 * marks the ramp-up, steady and wind-down phases of its concurrent relays). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#define BUCKETS 32 /* log2 µs: [0,1) [1,2) [2,4) ... */
#define TOP 128

typedef struct series {
    uint64_t count[BUCKETS];
    uint64_t total_us[BUCKETS];
    uint64_t top[TOP];
    uint64_t n, sum_us;
} series;

static series wall, cpu;
static uint64_t t_ret_wall, t_ret_cpu, t_start, skip_us;
static int active, phase, last_ready;
static struct { uint64_t cpu_us, wall_us, at_ms; int ready; } slow[64];
static int nslow;
static volatile sig_atomic_t marks;
static sig_atomic_t marks_seen;

static void dump(void);

static uint64_t now_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void add(series *s, uint64_t us)
{
    int b = 0;
    while (b < BUCKETS - 1 && (1ull << b) <= us)
        b++;
    s->count[b]++;
    s->total_us[b] += us;
    s->n++;
    s->sum_us += us;
    for (int i = 0; i < TOP; i++)
        if (us > s->top[i]) {
            for (int j = TOP - 1; j > i; j--)
                s->top[j] = s->top[j - 1];
            s->top[i] = us;
            break;
        }
}

static void enter_wait(void)
{
    if (!active)
        return;
    if (marks != marks_seen) {
        marks_seen = marks;
        dump();
        memset(&wall, 0, sizeof wall);
        memset(&cpu, 0, sizeof cpu);
        phase++;
    }
    uint64_t w = now_us(CLOCK_MONOTONIC);
    if (w - t_start < skip_us)
        return;
    uint64_t c = now_us(CLOCK_THREAD_CPUTIME_ID) - t_ret_cpu;
    add(&wall, w - t_ret_wall);
    add(&cpu, c);
    if (c >= 5000 && nslow < 64) { /* iterations of 5 ms CPU and more, for the report */
        slow[nslow].cpu_us = c;
        slow[nslow].wall_us = w - t_ret_wall;
        slow[nslow].at_ms = (t_ret_wall - t_start) / 1000u;
        slow[nslow].ready = last_ready;
        nslow++;
    }
}

static void leave_wait(void)
{
    if (!active) {
        active = 1;
        t_start = now_us(CLOCK_MONOTONIC);
        const char *s = getenv("LOOPSTAT_SKIP_MS");
        skip_us = s ? (uint64_t)strtoull(s, NULL, 10) * 1000u : 0;
    }
    t_ret_wall = now_us(CLOCK_MONOTONIC);
    t_ret_cpu = now_us(CLOCK_THREAD_CPUTIME_ID);
}

int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
    static int (*real)(int, struct epoll_event *, int, int);
    if (!real)
        real = (int (*)(int, struct epoll_event *, int, int))dlsym(RTLD_NEXT, "epoll_wait");
    enter_wait();
    int r = real(epfd, ev, max, timeout);
    leave_wait();
    last_ready = r;
    return r;
}

int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout, const sigset_t *ss)
{
    static int (*real)(int, struct epoll_event *, int, int, const sigset_t *);
    if (!real)
        real = (int (*)(int, struct epoll_event *, int, int, const sigset_t *))dlsym(
            RTLD_NEXT, "epoll_pwait");
    enter_wait();
    int r = real(epfd, ev, max, timeout, ss);
    leave_wait();
    last_ready = r;
    return r;
}

/* Busy time in iterations of at least `us`, as a share of all busy time. */
static void report(FILE *f, const char *name, const series *s)
{
    fprintf(f, "%s: %llu iterations, %.3f s busy, mean %.1f µs, max %llu µs\n", name,
            (unsigned long long)s->n, s->sum_us / 1e6, s->n ? (double)s->sum_us / s->n : 0.0,
            (unsigned long long)s->top[0]);
    fprintf(f, "  %-16s %10s %8s %12s\n", "iteration", "count", "share", "busy ≥ this");
    uint64_t above = s->sum_us;
    for (int b = 0; b < BUCKETS; b++) {
        if (!s->count[b]) {
            continue;
        }
        char lab[32];
        if (b == 0)
            snprintf(lab, sizeof lab, "< 1 µs");
        else
            snprintf(lab, sizeof lab, "%llu–%llu µs", 1ull << (b - 1), (1ull << b) - 1);
        fprintf(f, "  %-16s %10llu %7.2f%% %11.2f%%\n", lab, (unsigned long long)s->count[b],
                s->sum_us ? 100.0 * s->total_us[b] / s->sum_us : 0.0,
                s->sum_us ? 100.0 * above / s->sum_us : 0.0);
        above -= s->total_us[b];
    }
    /* the count-based p99: exact when it is among the TOP longest */
    uint64_t k = s->n / 100, p99 = 0;
    if (k < TOP)
        p99 = s->top[k];
    else {
        uint64_t seen = 0;
        for (int b = BUCKETS - 1; b >= 0; b--) {
            seen += s->count[b];
            if (seen > k) {
                p99 = 1ull << b;
                break;
            }
        }
    }
    fprintf(f, "summary %s n=%llu busy_us=%llu p99_us=%llu max_us=%llu\n", name,
            (unsigned long long)s->n, (unsigned long long)s->sum_us, (unsigned long long)p99,
            (unsigned long long)s->top[0]);
    fprintf(f, "  longest:");
    for (int i = 0; i < 16 && s->top[i]; i++)
        fprintf(f, " %llu", (unsigned long long)s->top[i]);
    fprintf(f, " µs\n");
}

static void dump(void)
{
    const char *path = getenv("LOOPSTAT_OUT");
    FILE *f = path ? fopen(path, "a") : stderr;
    if (!f)
        return;
    fprintf(f, "phase %d\n", phase);
    report(f, "wall", &wall);
    report(f, "cpu", &cpu);
    fprintf(f, "  iterations ≥ 5 ms CPU (at ms since start: cpu/wall µs, fds ready):");
    for (int i = 0; i < nslow; i++)
        fprintf(f, " %llu:%llu/%llu,%d", (unsigned long long)slow[i].at_ms,
                (unsigned long long)slow[i].cpu_us, (unsigned long long)slow[i].wall_us,
                slow[i].ready);
    fprintf(f, "\n");
    nslow = 0;
    if (f != stderr)
        fclose(f);
}

static void on_mark(int sig)
{
    (void)sig;
    marks++;
}

__attribute__((constructor)) static void init(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_mark;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR2, &sa, NULL);
}

__attribute__((destructor)) static void done(void) { dump(); }
