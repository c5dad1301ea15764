/* watch.c — one followed stream per tool call (see watch.h). */
#include "tools/watch.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "mcp/server.h"

#define WATCH_LOOKUP_MS 2000   /* the final status lookup's own time limit */

/* Reported when the stream's own error could not be kept (out of memory). */
static const prov_error WATCH_ERR_OOM = {
    .code = "internal_error",
    .message = "the event stream failed, and its error could not be kept (out of memory)",
    .retryable = true,
};

static void on_deadline(uv_timer_t *timer);

struct watch {
    mcp_request *req;
    prov_target *t;
    prov_stream *stream;
    prov_op *lookup;             /* final get_deployment in flight */
    relay *relay;
    uv_timer_t deadline;         /* the watch is freed in its close callback */
    watch_done_fn done;
    void *ud;
    char *id;
    char *cursor;                /* captured when the stream ends */
    char *cursor_in;             /* the caller's cursor: the answer when no newer one exists */
    uint64_t started_ns, ended_ns;
    bool resolve_final;
    bool timed_out;
    bool have_err;
    bool over;                   /* the stream has ended or was closed */
    bool paused;                 /* upstream paused: the client is not reading */
    prov_error *err;             /* the stream's failure (have_err); allocated only then:
                                    a live watch does not carry 1 KiB for it */
};

static void on_deadline_closed(uv_handle_t *h)
{
    watch *w = h->data;
    free(w->id);
    free(w->cursor);
    free(w->cursor_in);
    free(w->err);
    free(w);
}

static void watch_destroy(watch *w)
{
    relay_free(w->relay);
    w->relay = NULL;
    uv_timer_stop(&w->deadline);
    uv_close((uv_handle_t *)&w->deadline, on_deadline_closed);
}

static void complete(watch *w)
{
    relay_finish(w->relay);
    watch_end end = {
        .relay = w->relay,
        .cursor = w->cursor ? w->cursor : w->cursor_in ? w->cursor_in : "",
        .duration_ms = (w->ended_ns - w->started_ns) / 1000000u,
        .timed_out = w->timed_out,
        .err = !w->have_err ? NULL : w->err ? w->err : &WATCH_ERR_OOM,
    };
    w->done(w->ud, &end);
    watch_destroy(w);
}

static void on_lookup(void *ud, json_t *result, const prov_error *err)
{
    watch *w = ud;
    w->lookup = NULL;
    /* A failed lookup leaves what the stream said; the stream's own outcome
     * is still worth reporting. */
    if (!err && result)
        relay_apply_deployment(w->relay, result);
    json_decref(result);
    complete(w);
}

/* The stream is over (ended, failed or timed out): maybe look the outcome
 * up, then report. */
static void stream_over(watch *w)
{
    w->over = true;
    if (w->paused) {
        mcp_req_on_writable(w->req, NULL, NULL);
        w->paused = false;
    }
    w->ended_ns = uv_hrtime();
    uv_timer_stop(&w->deadline);
    prov_status st = relay_status(w->relay);
    bool unknown_end = st == PROV_ST_UNKNOWN || (!w->timed_out && !prov_status_terminal(st));
    if (w->resolve_final && !w->have_err && unknown_end && w->id &&
        (w->t->ops->caps & PROV_CAP_GET) && w->t->ops->get_deployment) {
        /* Lines still in the chunk window go out now rather than wait for
         * the lookup. */
        relay_flush(w->relay);
        prov_error e;
        memset(&e, 0, sizeof e);
        w->lookup = w->t->ops->get_deployment(w->t, w->id, on_lookup, w, &e);
        if (w->lookup) {
            uv_timer_start(&w->deadline, on_deadline, WATCH_LOOKUP_MS, 0);
            return;
        }
    }
    complete(w);
}

static void capture_cursor(watch *w)
{
    char *c = prov_stream_cursor(w->stream);
    if (c) {
        free(w->cursor);
        w->cursor = c;
    }
}

static void on_writable(void *ud)
{
    watch *w = ud;
    w->paused = false;
    if (w->stream)
        prov_stream_pause(w->stream, false);
}

static void on_event(void *ud, const prov_event *ev)
{
    watch *w = ud;
    if (w->over)
        return;
    relay_event(w->relay, ev);
    /* Backpressure: while the client does not read, stop reading upstream
     * (the platform's connection holds the rest) instead of queueing without
     * bound; resume when the transport has drained. */
    if (!w->paused && w->stream && mcp_req_congested(w->req)) {
        w->paused = true;
        prov_stream_pause(w->stream, true);
        mcp_req_on_writable(w->req, on_writable, w);
    }
}

static void on_end(void *ud, const prov_error *err)
{
    watch *w = ud;
    if (w->over)
        return;
    capture_cursor(w);     /* the stream is still valid inside on_end */
    w->stream = NULL;      /* and dead once we return */
    if (err) {
        free(w->err);
        w->err = malloc(sizeof *w->err);
        if (w->err)
            *w->err = *err;
        w->have_err = true;
    }
    stream_over(w);
}

static void on_deadline(uv_timer_t *timer)
{
    watch *w = timer->data;
    if (w->lookup) {
        /* The final lookup took too long: answer with what the stream said
         * rather than keep the caller waiting past its time limit. */
        prov_op_cancel(w->lookup);
        w->lookup = NULL;
        complete(w);
        return;
    }
    if (w->over || !w->stream)
        return;
    capture_cursor(w);
    prov_stream_close(w->stream);
    w->stream = NULL;
    w->timed_out = true;
    stream_over(w);
}

watch *watch_start(mcp_request *req, prov_target *t, const watch_opts *o, watch_done_fn done,
                   void *ud, prov_error *err)
{
    watch *w = calloc(1, sizeof *w);
    if (!w) {
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    w->req = req;
    w->t = t;
    w->done = done;
    w->ud = ud;
    w->resolve_final = o->resolve_final;
    w->id = o->id ? strdup(o->id) : NULL;
    w->cursor_in = o->cursor ? strdup(o->cursor) : NULL;
    w->relay = relay_new(req, t->cfg->name, &o->relay);
    if (!w->relay || (o->id && !w->id) || (o->cursor && !w->cursor_in)) {
        relay_free(w->relay);
        free(w->id);
        free(w->cursor_in);
        free(w);
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    uv_timer_init(mcp_req_server(req)->loop, &w->deadline);
    w->deadline.data = w;
    static const prov_stream_callbacks cbs = {on_event, on_end};
    w->started_ns = uv_hrtime();
    w->stream = prov_stream_open(t, o->kind, o->id, o->cursor, &cbs, w, err);
    if (!w->stream) {
        relay_detach(w->relay);
        watch_destroy(w);
        return NULL;
    }
    /* A cursor carries the status seen so far: start from it. */
    const char *ps = NULL, *url = NULL;
    prov_status st = prov_stream_status(w->stream, &ps, &url);
    relay_seed_status(w->relay, st, ps, url);
    uv_timer_start(&w->deadline, on_deadline, (uint64_t)o->max_seconds * 1000u, 0);
    return w;
}

relay *watch_relay(watch *w) { return w->relay; }

void watch_cancel(watch *w)
{
    if (!w)
        return;
    if (w->stream) {
        prov_stream_close(w->stream);
        w->stream = NULL;
    }
    if (w->lookup) {
        prov_op_cancel(w->lookup);
        w->lookup = NULL;
    }
    /* The request is already gone (cancelled): its writable registration
     * went with it, so w->req must not be touched here. */
    w->over = true;
    relay_detach(w->relay);
    watch_destroy(w);
}
