/* gate.c — the human approval gate (see gate.h). */
#include "tools/gate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/log.h"
#include "mcp/server.h"
#include "tools/approval.h"
#include "tools/tool_internal.h"
#include "transport/approval_page.h"

#define GATE_POLL_MS 1000       /* followers re-check expiry and decisions */
#define GATE_PROBLEM_MAX 768
/* How long a request waits for a decision: env DEPLOY_MCP_APPROVAL_TTL_SECONDS
 * (whole seconds, 1 .. 30 days), default APR_DEFAULT_TTL_MS (24 h). */
#define GATE_TTL_ENV "DEPLOY_MCP_APPROVAL_TTL_SECONDS"
#define GATE_TTL_MAX_SECONDS (30LL * 24 * 3600)

typedef struct follower {
    struct gate *g;
    mcp_request *req;
    prov_target *t;
    char id[APR_ID_LEN + 1];
    char *cursor;
    unsigned max_seconds;
    bool include_logs;
    uint64_t started;
    uv_timer_t timer;
    watch *w;
    int announced;              /* last status announced, -1 none */
    double progress;
    unsigned long events;
    bool ended;
    struct follower *next;
} follower;

typedef struct elicit {
    char id[APR_ID_LEN + 1];
    mcp_session *s;
    struct elicit *next;
} elicit;

typedef struct publish_job {
    struct gate *g;
    char id[APR_ID_LEN + 1];
    prov_op *op;
    struct publish_job *next;
} publish_job;

struct gate {
    mcp_server *srv;
    apr_store *store;
    apage *page;
    char problem[GATE_PROBLEM_MAX];
    int64_t ttl_ms;
    follower *followers;
    elicit *elicits;
    uv_timer_t *sweep;          /* notices expiry for elicitations (heap: outlives g) */
    publish_job *jobs;
};

bool gate_is_request_id(const char *id)
{
    if (!id || strncmp(id, "apr_", 4) != 0 || strlen(id) != APR_ID_LEN)
        return false;
    for (const char *p = id + 4; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

static prov_target *target_named(gate *g, const char *name)
{
    for (size_t i = 0; name && i < g->srv->ntargets; i++)
        if (strcmp(g->srv->targets[i].cfg->name, name) == 0)
            return &g->srv->targets[i];
    return NULL;
}

static void approval_url(gate *g, const char *id, char *out, size_t n)
{
    snprintf(out, n, "%s/approvals/%s", g->page ? apage_base_url(g->page) : "", id);
}

/* ---- what a request looks like to tools ------------------------------------ */

static prov_status normalized(apr_status st)
{
    switch (st) {
    case APR_PENDING:
    case APR_APPROVED:
        return PROV_ST_QUEUED;
    case APR_PUBLISHING:
    case APR_PUBLISHED:
        return PROV_ST_BUILDING;
    case APR_FAILED:
        return PROV_ST_FAILED;
    default:
        return PROV_ST_CANCELED; /* rejected, expired */
    }
}

static json_t *request_json(gate *g, const apr_request *r)
{
    json_t *j = apr_request_json(r);
    char url[1024];
    approval_url(g, r->id, url, sizeof url);
    if (j)
        json_object_set_new(j, "webApprovalUrl", json_string(url));
    return j;
}

static json_t *request_failure(const apr_request *r)
{
    if (r->status == APR_REJECTED)
        return json_pack("{s:s, s:s}", "code", "rejected", "message",
                         "a human rejected this production publish; nothing was published");
    if (r->status == APR_EXPIRED)
        return json_pack("{s:s, s:s}", "code", "expired", "message",
                         "nobody decided this request before it expired; nothing was "
                         "published. Call request_publish again for a new one");
    if (r->status == APR_FAILED)
        return json_pack("{s:s, s:s}", "code", "publish_failed", "message",
                         r->error ? r->error : "publishing failed");
    return NULL;
}

/* A Deployment standing for the request until production exists. */
static json_t *request_deployment(gate *g, const apr_request *r, const prov_target *t)
{
    json_t *d = prov_deployment(t, r->id, "production", normalized(r->status),
                                apr_status_name(r->status), NULL, NULL);
    if (!d)
        return NULL;
    json_t *rj = request_json(g, r);
    json_object_set(d, "createdAt", json_object_get(rj, "createdAt"));
    json_object_set_new(d, "request", rj);
    json_t *f = request_failure(r);
    if (f)
        json_object_set_new(d, "error", f);
    return d;
}

/* ---- elicitation completion and followers ---------------------------------- */

static void notify_elicitation_complete(gate *g, const char *id)
{
    for (elicit **pp = &g->elicits; *pp;) {
        elicit *e = *pp;
        if (strcmp(e->id, id) == 0) {
            mcp_session_notify(e->s, "notifications/elicitation/complete",
                               json_pack("{s:s}", "elicitationId", id));
            *pp = e->next;
            free(e);
        } else {
            pp = &e->next;
        }
    }
}

static void evaluate(follower *f);

static void sweep_closed(uv_handle_t *h) { free(h); }

/* Expiry is not a decision: nothing else tells an elicitation that waits on
 * a request nobody decided. While elicitations are open, look every
 * GATE_POLL_MS (apr_get marks a request expired once its time is up). */
static void on_sweep(uv_timer_t *timer)
{
    gate *g = timer->data;
    for (elicit *e = g->elicits; e;) {
        apr_request *r = apr_get(g->store, e->id);
        if (!r || r->status == APR_EXPIRED) {
            char id[APR_ID_LEN + 1];
            memcpy(id, e->id, sizeof id);
            notify_elicitation_complete(g, id);   /* unlinks e: start over */
            e = g->elicits;
            continue;
        }
        e = e->next;
    }
    if (!g->elicits)
        uv_timer_stop(timer);
}

static void notify_followers(gate *g, const char *id)
{
    follower *f = g->followers;
    while (f) {
        follower *next = f->next;
        if (!f->ended && !f->w && strcmp(f->id, id) == 0)
            evaluate(f);
        f = next;
    }
}

/* ---- publishing ------------------------------------------------------------- */

static void job_unlink(gate *g, publish_job *j)
{
    for (publish_job **pp = &g->jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            return;
        }
}

static void publish_done(void *ud, json_t *result, const prov_error *err)
{
    publish_job *j = ud;
    gate *g = j->g;
    job_unlink(g, j);
    apr_request *r = apr_get(g->store, j->id);
    if (r) {
        const char *pid = json_string_value(json_object_get(result, "id"));
        if (err || !pid) {
            apr_set_status(g->store, r, APR_FAILED, NULL,
                           err ? err->message : "the platform returned no deployment id",
                           NULL, NULL);
            log_warn("approval %s: publishing failed: %s", r->id,
                     err ? err->message : "no deployment id");
        } else {
            apr_set_status(g->store, r, APR_PUBLISHED, pid, NULL, NULL, NULL);
            log_info("approval %s: published as %s", r->id, pid);
        }
        notify_elicitation_complete(g, j->id);
        notify_followers(g, j->id);
    }
    json_decref(result);
    free(j);
}

static void start_publish(gate *g, apr_request *r)
{
    prov_target *t = target_named(g, r->target);
    if (!t || strcmp(t->ops->name, r->provider) != 0 || !t->ops->publish) {
        apr_set_status(g->store, r, APR_FAILED, NULL,
                       "the target of this request is no longer configured for this platform; "
                       "nothing was published", NULL, NULL);
        notify_followers(g, r->id);
        return;
    }
    publish_job *j = calloc(1, sizeof *j);
    if (!j) {
        apr_set_status(g->store, r, APR_FAILED, NULL, "out of memory", NULL, NULL);
        return;
    }
    j->g = g;
    memcpy(j->id, r->id, sizeof j->id);
    apr_set_status(g->store, r, APR_PUBLISHING, NULL, NULL, NULL, NULL);
    prov_error err;
    memset(&err, 0, sizeof err);
    j->op = t->ops->publish(t, r->source, publish_done, j, &err);
    if (!j->op) {
        free(j);
        apr_set_status(g->store, r, APR_FAILED, NULL, err.message, NULL, NULL);
        notify_followers(g, r->id);
        return;
    }
    j->next = g->jobs;
    g->jobs = j;
    notify_followers(g, r->id);
}

static void on_decided(void *ud, apr_request *r)
{
    gate *g = ud;
    if (r->status == APR_APPROVED) {
        start_publish(g, r);
    } else {
        notify_elicitation_complete(g, r->id);
        notify_followers(g, r->id);
    }
}

/* After a restart: an approval whose publish never started is carried out;
 * one interrupted mid-publish is not repeated blindly (it may have reached
 * the platform) but reported. */
static void recover(gate *g)
{
    size_t cur = 0;
    apr_request *r;
    while ((r = apr_next(g->store, &cur))) {
        if (r->status == APR_APPROVED)
            start_publish(g, r);
        else if (r->status == APR_PUBLISHING)
            apr_set_status(g->store, r, APR_FAILED, NULL,
                           "deploy-mcp restarted while publishing; check the platform for a "
                           "production deployment before requesting a new publish",
                           NULL, NULL);
    }
}

static int64_t ttl_from_env(void)
{
    const char *v = getenv(GATE_TTL_ENV);
    if (!v || !*v)
        return APR_DEFAULT_TTL_MS;
    char *end;
    long long secs = strtoll(v, &end, 10);
    if (*end || secs < 1 || secs > GATE_TTL_MAX_SECONDS) {
        log_warn("%s=\"%.32s\" is not a number of seconds between 1 and %lld; approval "
                 "requests expire after the default 24 h", GATE_TTL_ENV, v,
                 GATE_TTL_MAX_SECONDS);
        return APR_DEFAULT_TTL_MS;
    }
    return secs * 1000;
}

gate *gate_new(mcp_server *srv)
{
    bool needed = false;
    for (size_t i = 0; i < srv->ntargets; i++)
        needed |= srv->targets[i].ops->publish != NULL;
    if (!needed)
        return NULL;
    gate *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->srv = srv;
    g->ttl_ms = ttl_from_env();
    char err[512] = "";
    const char *dir = getenv("DEPLOY_MCP_STATE_DIR");
    g->store = apr_store_open(srv->loop, dir && *dir ? dir : NULL, err, sizeof err);
    if (!g->store) {
        snprintf(g->problem, sizeof g->problem, "the approval journal could not be opened: %s",
                 err);
        log_warn("%s", g->problem);
        return g;
    }
    if ((g->sweep = malloc(sizeof *g->sweep)) != NULL) {
        uv_timer_init(srv->loop, g->sweep);
        g->sweep->data = g;
    }
    cfg *c = srv->config;
    g->page = apage_start(srv->loop, g->store, c->approval_listen, c->approval_public_url,
                          c->approval_secret_env, on_decided, g, err, sizeof err);
    if (!g->page) {
        snprintf(g->problem, sizeof g->problem,
                 "the approval page could not start: %s. Set approval.listen in the config "
                 "to a free HOST:PORT and restart deploy-mcp", err);
        log_warn("%s", g->problem);
    }
    recover(g);
    return g;
}

/* ---- request_publish ----------------------------------------------------------- */

typedef struct publish_req {
    gate *g;
    mcp_request *req;           /* NULL once cancelled */
    prov_target *t;
    prov_op *op;
    char *source_id, *notes;
    char id[APR_ID_LEN + 1];
} publish_req;

static void publish_req_free(publish_req *p)
{
    free(p->source_id);
    free(p->notes);
    free(p);
}

static void on_request_durable(void *ud, int status)
{
    publish_req *p = ud;
    if (!p->req) {              /* cancelled while the journal was writing */
        publish_req_free(p);
        return;
    }
    gate *g = p->g;
    apr_request *r = apr_get(g->store, p->id);
    if (status != 0 || !r) {
        mcp_req_finish(p->req, tool_error_simple(p->t->cfg->provider, "journal_error",
                                                 "the approval request could not be recorded "
                                                 "(%s); nothing was requested",
                                                 apr_store_path(g->store)));
        publish_req_free(p);
        return;
    }
    char url[1024];
    approval_url(g, r->id, url, sizeof url);
    mcp_session *s = mcp_req_session(p->req);
    if (mcp_session_client_has(s, "elicitation.url")) {
        char msg[512];
        snprintf(msg, sizeof msg, "Approve or reject the production publish of %s on %s: %s",
                 r->source_id, r->target, r->plan ? r->plan : "");
        mcp_req_send_request(p->req, "elicitation/create",
                             json_pack("{s:s, s:s, s:s, s:s}", "mode", "url", "elicitationId",
                                       r->id, "url", url, "message", msg));
        elicit *e = calloc(1, sizeof *e);
        if (e) {
            memcpy(e->id, r->id, sizeof e->id);
            e->s = s;
            e->next = g->elicits;
            g->elicits = e;
            if (g->sweep && !uv_is_active((uv_handle_t *)g->sweep))
                uv_timer_start(g->sweep, on_sweep, GATE_POLL_MS, GATE_POLL_MS);
        }
    }
    json_t *rq = request_json(g, r);
    json_t *sc = json_pack("{s:o}", "request", rq);
    mcp_req_finish(p->req, sc ? tool_result(sc) : NULL);
    publish_req_free(p);
}

static void on_prepared(void *ud, json_t *result, const prov_error *err)
{
    publish_req *p = ud;
    p->op = NULL;
    if (err) {
        tool_finish_prov_error(p->req, p->t, err);
        publish_req_free(p);
        return;
    }
    const char *plan = json_string_value(json_object_get(result, "plan"));
    json_t *source = json_object_get(result, "source");
    apr_request *r = apr_create(p->g->store, p->t->cfg->name, p->t->ops->name, p->source_id,
                                plan, p->notes, source, p->g->ttl_ms, on_request_durable, p);
    json_decref(result);
    if (!r) {
        tool_finish_oom(p->req);
        publish_req_free(p);
        return;
    }
    memcpy(p->id, r->id, sizeof p->id);
    log_info("approval %s: requested for %s on target %s", r->id, p->source_id, r->target);
}

static void publish_req_cancel(void *ud)
{
    publish_req *p = ud;
    if (p->op) {
        prov_op_cancel(p->op);
        publish_req_free(p);
    } else {
        p->req = NULL; /* on_request_durable frees it */
    }
}

void gate_request(gate *g, mcp_request *req, prov_target *t, json_t *args)
{
    const char *provider = t->cfg->provider;
    if (!g || !g->store || !g->page) {
        mcp_req_finish(req, tool_error_simple(
            provider, "approval_unavailable",
            "production publishes on %s need a human approval on deploy-mcp's approval page, "
            "which is not available: %s", t->ops->display_name,
            g && g->problem[0] ? g->problem : "it did not start"));
        return;
    }
    if (!apage_secret_configured(g->page)) {
        mcp_req_finish(req, tool_error_simple(
            provider, "approver_secret_missing",
            "production publishes on %s need a human approval on deploy-mcp's approval page, "
            "and no approver secret is configured, so nobody could approve. Ask the user to "
            "set the environment variable %s for the deploy-mcp process (a secret only the "
            "people who may approve know; config approval.secretEnv can name another "
            "variable) and restart deploy-mcp. You never need this secret yourself.",
            t->ops->display_name, g->srv->config->approval_secret_env));
        return;
    }
    publish_req *p = calloc(1, sizeof *p);
    const char *notes = tool_arg_str(args, "notes");
    if (!p || !(p->source_id = strdup(tool_arg_str(args, "sourceDeploymentId"))) ||
        (notes && !(p->notes = strdup(notes)))) {
        if (p)
            publish_req_free(p);
        tool_finish_oom(req);
        return;
    }
    p->g = g;
    p->req = req;
    p->t = t;
    prov_error err;
    memset(&err, 0, sizeof err);
    p->op = t->ops->prepare_publish(t, p->source_id, on_prepared, p, &err);
    if (!p->op) {
        tool_finish_prov_error(req, t, &err);
        publish_req_free(p);
        return;
    }
    mcp_req_on_cancel(req, publish_req_cancel, p);
}

/* ---- get_deployment on a request id -------------------------------------------- */

typedef struct get_req {
    gate *g;
    mcp_request *req;
    prov_target *t;
    prov_op *op;
    char id[APR_ID_LEN + 1];
} get_req;

static void on_production(void *ud, json_t *result, const prov_error *err)
{
    get_req *q = ud;
    apr_request *r = apr_get(q->g->store, q->id);
    if (err) {
        tool_finish_prov_error(q->req, q->t, err);
    } else {
        if (r)
            json_object_set_new(result, "request", request_json(q->g, r));
        tool_fill_origin(result, q->t);
        mcp_req_finish(q->req, tool_result(json_pack("{s:o}", "deployment", result)));
    }
    free(q);
}

static void get_req_cancel(void *ud)
{
    get_req *q = ud;
    prov_op_cancel(q->op);
    free(q);
}

static apr_request *find_or_answer(gate *g, mcp_request *req, prov_target *t, const char *id)
{
    apr_request *r = g && g->store ? apr_get(g->store, id) : NULL;
    if (!r)
        mcp_req_finish(req, tool_error_simple(t->cfg->provider, "not_found",
                                              "there is no approval request %s in this "
                                              "deploy-mcp's journal", id));
    return r;
}

void gate_get(gate *g, mcp_request *req, prov_target *t, const char *id)
{
    apr_request *r = find_or_answer(g, req, t, id);
    if (!r)
        return;
    prov_target *rt = target_named(g, r->target);
    if (!rt)
        rt = t;
    if (r->production_id && rt->ops->get_deployment) {
        get_req *q = calloc(1, sizeof *q);
        if (!q) {
            tool_finish_oom(req);
            return;
        }
        q->g = g;
        q->req = req;
        q->t = rt;
        memcpy(q->id, r->id, sizeof q->id);
        prov_error err;
        memset(&err, 0, sizeof err);
        q->op = rt->ops->get_deployment(rt, r->production_id, on_production, q, &err);
        if (!q->op) {
            free(q);
            tool_finish_prov_error(req, rt, &err);
            return;
        }
        mcp_req_on_cancel(req, get_req_cancel, q);
        return;
    }
    json_t *d = request_deployment(g, r, rt);
    mcp_req_finish(req, d ? tool_result(json_pack("{s:o}", "deployment", d)) : NULL);
}

/* ---- stream_events on a request id ---------------------------------------------- */

static void follower_closed(uv_handle_t *h) { free(h->data); }

static void follower_end(follower *f)
{
    f->ended = true;
    for (follower **pp = &f->g->followers; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    free(f->cursor);
    f->cursor = NULL;
    uv_close((uv_handle_t *)&f->timer, follower_closed);
}

static void follow_watch_done(void *ud, const watch_end *end)
{
    follower *f = ud;
    f->w = NULL;
    if (end->err) {
        mcp_req_finish(f->req, tool_stream_error_result(f->t, end));
    } else {
        json_t *sc = tool_events_summary(end);
        apr_request *r = apr_get(f->g->store, f->id);
        if (sc && r) {
            json_object_set_new(sc, "requestId", json_string(f->id));
            json_object_set_new(sc, "request", request_json(f->g, r));
        }
        mcp_req_finish(f->req, sc ? tool_result(sc) : NULL);
    }
    follower_end(f);
}

static void finish_without_production(follower *f, const apr_request *r, bool terminal)
{
    json_t *sc = json_pack("{s:s, s:s, s:s, s:b, s:I, s:i, s:[], s:s, s:I}",
                           "deploymentId", f->id, "status",
                           prov_status_name(normalized(r->status)), "providerStatus",
                           apr_status_name(r->status), "terminal", terminal,
                           "eventCount", (json_int_t)f->events, "logLineCount", 0,
                           "lastLines", "cursor", "",
                           "durationMs", (json_int_t)(uv_now(f->g->srv->loop) - f->started));
    json_t *fail = request_failure(r);
    if (sc && fail)
        json_object_set_new(sc, "failure", fail);
    else
        json_decref(fail);
    if (sc)
        json_object_set_new(sc, "request", request_json(f->g, r));
    mcp_req_finish(f->req, sc ? tool_result(sc) : NULL);
    follower_end(f);
}

static void announce(follower *f, const apr_request *r)
{
    if (f->announced == (int)r->status)
        return;
    f->announced = (int)r->status;
    f->events++;
    char url[1024], msg[1200];
    approval_url(f->g, r->id, url, sizeof url);
    if (r->status == APR_PENDING)
        snprintf(msg, sizeof msg, "pending_approval · waiting for a human to approve at %s", url);
    else
        snprintf(msg, sizeof msg, "%s · %s", apr_status_name(r->status),
                 r->status == APR_PUBLISHING ? "publishing to production" : "approved");
    mcp_req_progress(f->req, ++f->progress, -1, msg);
    char logger[300];
    snprintf(logger, sizeof logger, "deploy-mcp/%s", f->t->cfg->name);
    mcp_req_log(f->req, MCP_LOG_INFO, logger,
                json_pack("{s:s, s:s, s:[s]}", "deploymentId", f->id, "status",
                          apr_status_name(r->status), "lines", msg));
}

static void evaluate(follower *f)
{
    apr_request *r = apr_get(f->g->store, f->id);
    if (!r) {
        mcp_req_finish(f->req, tool_error_simple(f->t->cfg->provider, "not_found",
                                                 "approval request %s disappeared", f->id));
        follower_end(f);
        return;
    }
    if (r->production_id) {
        uint64_t elapsed = (uv_now(f->g->srv->loop) - f->started) / 1000;
        unsigned left = elapsed >= f->max_seconds ? 1 : f->max_seconds - (unsigned)elapsed;
        prov_error err;
        memset(&err, 0, sizeof err);
        uv_timer_stop(&f->timer);
        f->w = tool_follow_events(f->req, f->t, r->production_id, f->cursor, left,
                                  f->include_logs, follow_watch_done, f, &err);
        if (!f->w) {
            tool_finish_prov_error(f->req, f->t, &err);
            follower_end(f);
        }
        return;
    }
    if (apr_status_final(r->status)) {
        finish_without_production(f, r, true);
        return;
    }
    announce(f, r);
}

static void on_follow_tick(uv_timer_t *timer)
{
    follower *f = timer->data;
    if ((uv_now(f->g->srv->loop) - f->started) / 1000 >= f->max_seconds) {
        apr_request *r = apr_get(f->g->store, f->id);
        if (r && !r->production_id && !apr_status_final(r->status)) {
            finish_without_production(f, r, false);
            return;
        }
    }
    evaluate(f);
}

static void follower_cancel(void *ud)
{
    follower *f = ud;
    if (f->w)
        watch_cancel(f->w);
    f->w = NULL;
    follower_end(f);
}

void gate_follow(gate *g, mcp_request *req, prov_target *t, json_t *args)
{
    const char *id = tool_arg_str(args, "deploymentId");
    apr_request *r = find_or_answer(g, req, t, id);
    if (!r)
        return;
    follower *f = calloc(1, sizeof *f);
    const char *cursor = tool_arg_opt(args, "cursor");
    if (!f || (cursor && !(f->cursor = strdup(cursor)))) {
        free(f);
        tool_finish_oom(req);
        return;
    }
    f->g = g;
    f->req = req;
    prov_target *rt = target_named(g, r->target);
    f->t = rt ? rt : t;
    memcpy(f->id, r->id, sizeof f->id);
    f->max_seconds = (unsigned)tool_arg_int(args, "maxSeconds", TOOL_STREAM_DEFAULT_SECONDS);
    f->include_logs = tool_arg_bool(args, "includeLogs", true);
    f->started = uv_now(g->srv->loop);
    f->announced = -1;
    uv_timer_init(g->srv->loop, &f->timer);
    f->timer.data = f;
    f->next = g->followers;
    g->followers = f;
    mcp_req_on_cancel(req, follower_cancel, f);
    uv_timer_start(&f->timer, on_follow_tick, GATE_POLL_MS, GATE_POLL_MS);
    evaluate(f);
}

void gate_session_closed(gate *g, mcp_session *s)
{
    for (elicit **pp = &g->elicits; *pp;) {
        elicit *e = *pp;
        if (e->s == s) {
            *pp = e->next;
            free(e);
        } else {
            pp = &e->next;
        }
    }
}

void gate_free(gate *g)
{
    if (!g)
        return;
    while (g->followers) {
        follower *f = g->followers;
        if (f->w)
            watch_cancel(f->w);
        f->w = NULL;
        follower_end(f);
    }
    while (g->jobs) {
        publish_job *j = g->jobs;
        g->jobs = j->next;
        prov_op_cancel(j->op);
        free(j);
    }
    while (g->elicits) {
        elicit *e = g->elicits;
        g->elicits = e->next;
        free(e);
    }
    if (g->sweep)
        uv_close((uv_handle_t *)g->sweep, sweep_closed);
    apage_stop(g->page);
    apr_store_close(g->store);
    free(g);
}
