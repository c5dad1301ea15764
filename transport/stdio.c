/* stdio.c — newline-delimited JSON-RPC over stdin/stdout on the libuv loop. */
#include "transport/stdio.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcp/log.h"
#include "mcp/server.h"
#include "mcp/session.h"

#define STDIO_READ_CHUNK (64u << 10)

/* Messages handled per loop iteration. A read can bring a thousand
 * tools/call lines at once; handling them all in one callback would hold up
 * everything else the loop serves (upstream data, writes, timers) for
 * hundreds of milliseconds. The rest of the read waits, in order, for the
 * next iteration (consume_idle); stdin is not read meanwhile. */
#define STDIO_MSGS_PER_TURN 16

typedef union stdio_stream {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_pipe_t pipe;
    uv_tty_t tty;
} stdio_stream;

struct stdio_transport {
    mcp_server *srv;
    mcp_session *session;
    void (*on_eof)(void *ud);
    void *ud;

    /* input */
    bool in_is_file;
    stdio_stream in;
    bool in_open;
    uv_fs_t in_req;
    bool in_req_busy;
    char *fbuf;                 /* read buffer for file input */
    char *line;                 /* partial line carried across reads */
    size_t line_len, line_cap;
    bool discarding;            /* skipping the rest of an oversized line */
    bool eof_reported;
    char *rest;                 /* a read whose bytes from rest_off on are not yet */
    size_t rest_off, rest_len;  /* consumed (STDIO_MSGS_PER_TURN); NULL: none */
    bool rest_owned;            /* rest is a stream read buffer to free (else fbuf) */
    uv_idle_t consume_idle;     /* consumes `rest` on the next iterations */
    bool consume_scheduled;

    /* output */
    bool out_is_file;
    stdio_stream out;
    bool out_open;
    uv_fs_t out_req;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    uv_buf_t wbuf;              /* buffer being written */
    bool writing;
    char *q;                    /* queued bytes not yet handed to a write */
    size_t q_len, q_cap;
    size_t inflight_bytes;
    bool out_dead;
    bool warned_high_water;
    uv_idle_t flush_idle;       /* keeps the loop from blocking until flush_check */
    uv_check_t flush_check;     /* writes what this iteration queued */
    bool flush_scheduled;

    bool stopping;
    bool shutdown_pending;      /* uv_shutdown of stdout not yet called back */
    int open_handles;           /* closes outstanding before free */
};

static void maybe_free(stdio_transport *t)
{
    if (!t->stopping || t->open_handles > 0 || t->in_req_busy || t->writing ||
        t->shutdown_pending)
        return;
    if (t->rest_owned)
        free(t->rest);
    free(t->fbuf);
    free(t->line);
    free(t->q);
    free(t->wbuf.base);
    free(t);
}

static void on_handle_closed(uv_handle_t *h)
{
    stdio_transport *t = h->data;
    t->open_handles--;
    maybe_free(t);
}

static void close_handle(stdio_transport *t, uv_handle_t *h)
{
    if (uv_is_closing(h))
        return;
    h->data = t;
    t->open_handles++;
    uv_close(h, on_handle_closed);
}

/* ---- output ------------------------------------------------------------- */

static void flush(stdio_transport *t);
static void finish_output(stdio_transport *t);

static void after_write(stdio_transport *t, int status)
{
    t->writing = false;
    t->inflight_bytes = 0;
    free(t->wbuf.base);
    t->wbuf.base = NULL;
    if (status < 0 && !t->out_dead) {
        log_warn("stdio: writing to stdout failed: %s", uv_strerror(status));
        t->out_dead = true;
    }
    if (t->q_len > 0 && !t->out_dead)
        flush(t);
    else if (t->stopping)
        finish_output(t);
    /* The client is reading again: let paused streams go on. */
    if (t->session && !t->stopping && t->q_len + t->inflight_bytes < MCP_OUT_LOW_WATER)
        mcp_session_drained(t->session);
    maybe_free(t);
}

static void on_stream_written(uv_write_t *req, int status)
{
    after_write(req->data, status);
}

static void on_file_written(uv_fs_t *req)
{
    stdio_transport *t = req->data;
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    if (r >= 0 && (size_t)r < t->wbuf.len) {
        /* Short write to a file: write the rest. */
        memmove(t->wbuf.base, t->wbuf.base + r, t->wbuf.len - (size_t)r);
        t->wbuf.len -= (size_t)r;
        req->data = t;
        uv_buf_t rest = t->wbuf; /* libuv copies the buffer array */
        if (uv_fs_write(t->srv->loop, &t->out_req, STDOUT_FILENO, &rest, 1, -1,
                        on_file_written) == 0)
            return;
        r = -1;
    }
    after_write(t, r < 0 ? (int)r : 0);
}

/* Hands everything queued to one write (one syscall per loop turn). */
static void flush(stdio_transport *t)
{
    if (t->writing || t->q_len == 0 || !t->out_open)
        return;
    if (t->out_dead) {
        t->q_len = 0;
        return;
    }
    t->wbuf = uv_buf_init(t->q, (unsigned)t->q_len);
    t->inflight_bytes = t->q_len;
    t->q = NULL;
    t->q_len = t->q_cap = 0;
    t->writing = true;
    int rc;
    if (t->out_is_file) {
        t->out_req.data = t;
        uv_buf_t all = t->wbuf;
        rc = uv_fs_write(t->srv->loop, &t->out_req, STDOUT_FILENO, &all, 1, -1,
                         on_file_written);
    } else {
        t->wreq.data = t;
        rc = uv_write(&t->wreq, &t->out.stream, &t->wbuf, 1, on_stream_written);
    }
    if (rc < 0) {
        t->writing = false;
        after_write(t, rc);
    }
}

static void on_flush_idle(uv_idle_t *h)
{
    (void)h; /* only there so that the poll that follows does not block */
}

static void on_flush_check(uv_check_t *h)
{
    stdio_transport *t = h->data;
    uv_check_stop(h);
    uv_idle_stop(&t->flush_idle);
    t->flush_scheduled = false;
    flush(t);
}

static int stdio_send(void *io, const char *msg, size_t len)
{
    stdio_transport *t = io;
    if (t->out_dead || !t->out_open)
        return -1;
    size_t need = t->q_len + len + 1;
    if (need > t->q_cap) {
        size_t cap = t->q_cap ? t->q_cap : 4096;
        while (cap < need)
            cap *= 2;
        char *nq = realloc(t->q, cap);
        if (!nq)
            return -1;
        t->q = nq;
        t->q_cap = cap;
    }
    memcpy(t->q + t->q_len, msg, len);
    t->q[t->q_len + len] = '\n';
    t->q_len += len + 1;
    size_t pending = t->q_len + t->inflight_bytes;
    if (pending > STDIO_OUT_HIGH_WATER && !t->warned_high_water) {
        t->warned_high_water = true;
        log_warn("stdio: %zu bytes waiting for the client to read stdout", pending);
    } else if (pending < STDIO_OUT_HIGH_WATER / 2) {
        t->warned_high_water = false;
    }
    if (!t->flush_scheduled) {
        /* The write goes out at the end of this loop iteration (check
         * phase, right after the I/O callbacks): one write for everything
         * the iteration produced, and a response does not wait for the
         * next iteration's timers. An active idle handle makes the loop
         * poll without blocking, so a message queued before the poll (by
         * a timer) does not wait for the poll's timeout. */
        t->flush_scheduled = true;
        uv_idle_start(&t->flush_idle, on_flush_idle);
        uv_check_start(&t->flush_check, on_flush_check);
    }
    return 0;
}

static size_t stdio_pending_io(void *io) { return stdio_pending(io); }

static const mcp_transport stdio_tp = {
    .name = "stdio", .send = stdio_send, .pending = stdio_pending_io,
};

size_t stdio_pending(const stdio_transport *t) { return t->q_len + t->inflight_bytes; }

static void on_shutdown(uv_shutdown_t *req, int status)
{
    stdio_transport *t = req->data;
    (void)status;
    t->shutdown_pending = false;
    close_handle(t, &t->out.handle);
}

/* Called when stopping and nothing more is in flight: close stdout. */
static void finish_output(stdio_transport *t)
{
    if (!t->out_open)
        return;
    t->out_open = false;
    if (t->out_is_file)
        return;
    t->sreq.data = t;
    if (!t->out_dead && uv_shutdown(&t->sreq, &t->out.stream, on_shutdown) == 0)
        t->shutdown_pending = true;
    else
        close_handle(t, &t->out.handle);
}

/* ---- input -------------------------------------------------------------- */

static void report_eof(stdio_transport *t)
{
    if (t->eof_reported)
        return;
    t->eof_reported = true;
    if (t->on_eof)
        t->on_eof(t->ud);
}

/* Returns true when the line was a message (not blank). */
static bool handle_line(stdio_transport *t, const char *p, size_t n)
{
    if (n > 0 && p[n - 1] == '\r')
        n--;
    /* Blank lines carry no message; skip them quietly. */
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    if (i == n)
        return false;
    mcp_session_handle(t->session, p, n);
    return true;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_stream_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* Splits buf into lines and handles them, at most `budget` messages; returns
 * the number of bytes consumed (len unless the budget ran out). */
static size_t consume(stdio_transport *t, const char *buf, size_t len, unsigned budget)
{
    const char *start = buf;
    while (len > 0 && !t->stopping) {
        if (budget == 0)
            break;
        const char *nl = memchr(buf, '\n', len);
        size_t take = nl ? (size_t)(nl - buf) : len;
        if (t->discarding) {
            if (nl) {
                t->discarding = false;
                budget--;
                mcp_session_reject(t->session, RPC_INVALID_REQUEST,
                                   "message too large: a line may hold at most 4 MiB");
            }
        } else if (t->line_len + take > MCP_MAX_MESSAGE_BYTES) {
            t->line_len = 0;
            if (nl) {
                budget--;
                mcp_session_reject(t->session, RPC_INVALID_REQUEST,
                                   "message too large: a line may hold at most 4 MiB");
            } else {
                t->discarding = true;
            }
        } else if (nl && t->line_len == 0) {
            if (handle_line(t, buf, take)) /* whole line in this chunk: no copy */
                budget--;
        } else {
            if (t->line_len + take > t->line_cap) {
                size_t cap = t->line_cap ? t->line_cap : 4096;
                while (cap < t->line_len + take)
                    cap *= 2;
                char *nb = realloc(t->line, cap);
                if (!nb) {
                    log_error("stdio: out of memory reading a message");
                    t->line_len = 0;
                    t->discarding = !nl;
                    goto next;
                }
                t->line = nb;
                t->line_cap = cap;
            }
            memcpy(t->line + t->line_len, buf, take);
            t->line_len += take;
            if (nl) {
                size_t n = t->line_len;
                t->line_len = 0;
                if (handle_line(t, t->line, n))
                    budget--;
            }
        }
    next:
        if (!nl) {
            buf += len;
            break;
        }
        len -= take + 1;
        buf = nl + 1;
    }
    return (size_t)(buf - start);
}

static void start_file_read(stdio_transport *t);

/* Reading resumes once a read is consumed entirely. */
static void resume_reading(stdio_transport *t)
{
    if (t->stopping || t->eof_reported)
        return;
    if (t->in_is_file)
        start_file_read(t);
    else if (t->in_open)
        uv_read_start(&t->in.stream, on_alloc, on_stream_read);
}

static void release_rest(stdio_transport *t)
{
    if (t->rest_owned)
        free(t->rest);
    t->rest = NULL;
    t->rest_off = t->rest_len = 0;
    t->rest_owned = false;
}

/* Handles up to STDIO_MSGS_PER_TURN messages of `rest`. Returns true when
 * it is all consumed (or the transport stops). */
static bool consume_rest(stdio_transport *t)
{
    size_t left = t->rest_len - t->rest_off;
    size_t used = consume(t, t->rest + t->rest_off, left, STDIO_MSGS_PER_TURN);
    if (t->stopping || used >= left) {
        release_rest(t);
        return true;
    }
    t->rest_off += used;
    return false;
}

static void on_consume_idle(uv_idle_t *h)
{
    stdio_transport *t = h->data;
    if (t->stopping || !t->rest) {
        uv_idle_stop(h);
        t->consume_scheduled = false;
        return;
    }
    if (!consume_rest(t))
        return; /* more next iteration */
    uv_idle_stop(h);
    t->consume_scheduled = false;
    resume_reading(t);
}

/* Takes a read's bytes: handles the first messages now, the rest from
 * consume_idle, with reading paused until all are handled. Returns true
 * when everything was consumed now (the caller may read on). */
static bool take_read(stdio_transport *t, char *data, size_t len, bool owned)
{
    t->rest = data;
    t->rest_off = 0;
    t->rest_len = len;
    t->rest_owned = owned;
    if (consume_rest(t))
        return true;
    /* The rest waits: stop reading so that order is kept (and stdin's
     * pipe pushes back on the client meanwhile). */
    if (!t->in_is_file && t->in_open)
        uv_read_stop(&t->in.stream);
    if (!t->consume_scheduled) {
        t->consume_scheduled = true;
        uv_idle_start(&t->consume_idle, on_consume_idle);
    }
    return false;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = malloc(STDIO_READ_CHUNK);
    buf->len = buf->base ? STDIO_READ_CHUNK : 0;
}

static void on_stream_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    stdio_transport *t = st->data;
    if (nread > 0) {
        if (t->stopping) {
            free(buf->base);
            return;
        }
        take_read(t, buf->base, (size_t)nread, true); /* owns buf->base now */
        return;
    }
    free(buf->base);
    if (nread < 0) {
        if (nread != UV_EOF)
            log_warn("stdio: reading stdin failed: %s", uv_strerror((int)nread));
        uv_read_stop(st);
        report_eof(t);
    }
}

static void on_file_read(uv_fs_t *req)
{
    stdio_transport *t = req->data;
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    t->in_req_busy = false;
    if (t->stopping) {
        maybe_free(t);
        return;
    }
    if (r > 0) {
        if (take_read(t, t->fbuf, (size_t)r, false))
            start_file_read(t);
        return;
    }
    if (r < 0)
        log_warn("stdio: reading stdin failed: %s", uv_strerror((int)r));
    report_eof(t);
}

static void start_file_read(stdio_transport *t)
{
    if (t->stopping)
        return;
    uv_buf_t b = uv_buf_init(t->fbuf, STDIO_READ_CHUNK);
    t->in_req.data = t;
    t->in_req_busy = true;
    if (uv_fs_read(t->srv->loop, &t->in_req, STDIN_FILENO, &b, 1, -1, on_file_read) != 0) {
        t->in_req_busy = false;
        report_eof(t);
    }
}

/* Opens fd as a uv stream (pipe, socket or tty). Returns 0, or -1 when the fd
 * is a regular file (or anything else) to be used through uv_fs. */
static int open_stream(uv_loop_t *loop, int fd, stdio_stream *st, bool readable)
{
    switch (uv_guess_handle(fd)) {
    case UV_TTY:
        return uv_tty_init(loop, &st->tty, fd, readable) == 0 ? 0 : -1;
    case UV_NAMED_PIPE:
    case UV_TCP:
    case UV_UDP:
        if (uv_pipe_init(loop, &st->pipe, 0) != 0)
            return -1;
        if (uv_pipe_open(&st->pipe, fd) != 0) {
            uv_close(&st->handle, NULL);
            return -2;
        }
        return 0;
    default:
        return -1;
    }
}

/* stdio_start could not finish (out of memory): its handles are already
 * registered with the loop, so they are closed and t is freed by maybe_free
 * once they are (the caller still runs the loop to shut down). */
static stdio_transport *start_failed(stdio_transport *t)
{
    t->stopping = true;
    if (t->session)
        mcp_session_close(t->session);
    t->session = NULL;
    if (!t->in_is_file)
        close_handle(t, &t->in.handle);
    if (!t->out_is_file)
        close_handle(t, &t->out.handle);
    t->out_open = false;
    close_handle(t, (uv_handle_t *)&t->flush_idle);
    close_handle(t, (uv_handle_t *)&t->flush_check);
    close_handle(t, (uv_handle_t *)&t->consume_idle);
    maybe_free(t);
    return NULL;
}

stdio_transport *stdio_start(mcp_server *srv, void (*on_eof)(void *ud), void *ud)
{
    stdio_transport *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->srv = srv;
    t->on_eof = on_eof;
    t->ud = ud;
    uv_idle_init(srv->loop, &t->flush_idle);
    t->flush_idle.data = t;
    uv_check_init(srv->loop, &t->flush_check);
    t->flush_check.data = t;
    uv_idle_init(srv->loop, &t->consume_idle);
    t->consume_idle.data = t;

    int rc = open_stream(srv->loop, STDOUT_FILENO, &t->out, false);
    t->out_is_file = rc != 0;
    t->out.handle.data = t;
    t->out_open = true;

    rc = open_stream(srv->loop, STDIN_FILENO, &t->in, true);
    t->in_is_file = rc != 0;
    t->session = mcp_session_new(srv, &stdio_tp, t);
    if (!t->session)
        return start_failed(t);
    if (t->in_is_file) {
        t->fbuf = malloc(STDIO_READ_CHUNK);
        if (!t->fbuf)
            return start_failed(t);
        start_file_read(t);
    } else {
        t->in.handle.data = t;
        t->in_open = true;
        uv_read_start(&t->in.stream, on_alloc, on_stream_read);
    }
    return t;
}

void stdio_stop(stdio_transport *t)
{
    if (t->stopping)
        return;
    /* Close the session first: cancelled requests send nothing, and any
     * response already queued is flushed below before stdout closes. */
    mcp_session_close(t->session);
    t->session = NULL;
    t->stopping = true;
    if (t->in_open) {
        uv_read_stop(&t->in.stream);
        close_handle(t, &t->in.handle);
        t->in_open = false;
    } else if (t->in_req_busy) {
        uv_cancel((uv_req_t *)&t->in_req);
    }
    close_handle(t, (uv_handle_t *)&t->flush_idle);
    close_handle(t, (uv_handle_t *)&t->flush_check);
    close_handle(t, (uv_handle_t *)&t->consume_idle);
    flush(t);
    if (!t->writing)
        finish_output(t);
    maybe_free(t);
}
