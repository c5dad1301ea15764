/* approval.c — approval requests and their journal (see approval.h). */
#include "tools/approval.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mcp/log.h"

typedef struct apr_write {
    struct apr_write *next;
    char *buf;
    size_t len;
    apr_done_fn done;
    void *ud;
    apr_request *makes_durable; /* set for create records */
} apr_write;

struct apr_store {
    uv_loop_t *loop;
    char *path;
    int fd;
    apr_request **reqs;
    size_t nreqs, cap;
    apr_write *head, *tail;     /* queue; head is in flight when busy */
    bool busy;
    bool closing;
    uv_fs_t fsreq;
    uv_buf_t buf;
};

static int64_t default_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t (*clock_fn)(void) = default_now;

int64_t apr_now_ms(void) { return clock_fn(); }
void apr_set_clock(int64_t (*now_ms)(void)) { clock_fn = now_ms ? now_ms : default_now; }

static const char *const status_names[] = {
    "pending_approval", "approved", "publishing", "published", "failed", "rejected", "expired",
};

const char *apr_status_name(apr_status st)
{
    return st >= APR_PENDING && st <= APR_EXPIRED ? status_names[st] : "unknown";
}

static int status_parse(const char *w)
{
    for (int i = 0; w && i <= APR_EXPIRED; i++)
        if (strcmp(w, status_names[i]) == 0)
            return i;
    return -1;
}

bool apr_status_final(apr_status st)
{
    return st == APR_PUBLISHED || st == APR_FAILED || st == APR_REJECTED || st == APR_EXPIRED;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void req_free(apr_request *r)
{
    if (!r)
        return;
    free(r->target);
    free(r->provider);
    free(r->source_id);
    free(r->plan);
    free(r->notes);
    json_decref(r->source);
    free(r->decided_by);
    free(r->decided_from);
    free(r->decision_note);
    free(r->production_id);
    free(r->error);
    free(r);
}

static void random_hex(char *out, size_t nbytes)
{
    unsigned char raw[32];
    static const char hex[] = "0123456789abcdef";
    if (nbytes > sizeof raw)
        nbytes = sizeof raw;
    if (uv_random(NULL, NULL, raw, nbytes, 0, NULL) != 0) {
        /* getrandom failing is exotic; ids must still be unguessable enough
         * to not collide, so mix time and address. */
        uint64_t x = uv_hrtime() ^ (uint64_t)(uintptr_t)out;
        for (size_t i = 0; i < nbytes; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            raw[i] = (unsigned char)x;
        }
    }
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * nbytes] = '\0';
}

static int add_request(apr_store *st, apr_request *r)
{
    if (st->nreqs >= APR_MAX_REQUESTS)
        return -1;
    if (st->nreqs == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 16;
        apr_request **n = realloc(st->reqs, cap * sizeof *n);
        if (!n)
            return -1;
        st->reqs = n;
        st->cap = cap;
    }
    st->reqs[st->nreqs++] = r;
    return 0;
}

static apr_request *find(apr_store *st, const char *id)
{
    for (size_t i = 0; id && i < st->nreqs; i++)
        if (strcmp(st->reqs[i]->id, id) == 0)
            return st->reqs[i];
    return NULL;
}

/* ---- journal writer ------------------------------------------------------ */

static void start_write(apr_store *st);

static void finish_head(apr_store *st, int status)
{
    apr_write *w = st->head;
    st->head = w->next;
    if (!st->head)
        st->tail = NULL;
    st->busy = false;
    if (status == 0 && w->makes_durable)
        w->makes_durable->durable = true;
    if (status < 0)
        log_error("approval journal %s: write failed: %s", st->path, uv_strerror(status));
    if (w->done)
        w->done(w->ud, status);
    free(w->buf);
    free(w);
    start_write(st);
}

static void on_fsync(uv_fs_t *req)
{
    apr_store *st = req->data;
    int status = (int)req->result;
    uv_fs_req_cleanup(req);
    finish_head(st, status < 0 ? status : 0);
}

static void on_written(uv_fs_t *req)
{
    apr_store *st = req->data;
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    apr_write *w = st->head;
    if (r >= 0 && (size_t)r < w->len) {
        /* A short write: the rest goes next (O_APPEND keeps it in place). */
        memmove(w->buf, w->buf + r, w->len - (size_t)r);
        w->len -= (size_t)r;
        st->buf = uv_buf_init(w->buf, (unsigned)w->len);
        st->fsreq.data = st;
        if (uv_fs_write(st->loop, &st->fsreq, st->fd, &st->buf, 1, -1, on_written) == 0)
            return;
        r = -EIO;
    }
    if (r < 0) {
        finish_head(st, (int)r);
        return;
    }
    st->fsreq.data = st;
    if (uv_fs_fsync(st->loop, &st->fsreq, st->fd, on_fsync) != 0)
        finish_head(st, -EIO);
}

static void free_store(apr_store *st)
{
    if (st->fd >= 0)
        close(st->fd);
    for (size_t i = 0; i < st->nreqs; i++)
        req_free(st->reqs[i]);
    free(st->reqs);
    free(st->path);
    free(st);
}

static void start_write(apr_store *st)
{
    if (st->busy)
        return;
    if (!st->head) {
        if (st->closing)
            free_store(st);
        return;
    }
    st->busy = true;
    st->buf = uv_buf_init(st->head->buf, (unsigned)st->head->len);
    st->fsreq.data = st;
    if (uv_fs_write(st->loop, &st->fsreq, st->fd, &st->buf, 1, -1, on_written) != 0) {
        st->busy = false;
        finish_head(st, -EIO);
    }
}

/* Queues one record (stolen) as a journal line. */
static void append(apr_store *st, json_t *rec, apr_request *makes_durable, apr_done_fn done,
                   void *ud)
{
    json_object_set_new(rec, "at", json_integer(apr_now_ms()));
    char *text = json_dumps(rec, JSON_COMPACT);
    json_decref(rec);
    apr_write *w = text ? calloc(1, sizeof *w) : NULL;
    size_t n = text ? strlen(text) : 0;
    char *line = w ? realloc(text, n + 2) : NULL;
    if (!line) {
        free(text);
        free(w);
        log_error("approval journal: out of memory");
        if (done)
            done(ud, -ENOMEM);
        return;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    w->buf = line;
    w->len = n + 1;
    w->done = done;
    w->ud = ud;
    w->makes_durable = makes_durable;
    if (st->tail)
        st->tail->next = w;
    else
        st->head = w;
    st->tail = w;
    start_write(st);
}

/* ---- replay -------------------------------------------------------------- */

static const char *jstr(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

static void replay_line(apr_store *st, json_t *rec)
{
    const char *type = jstr(rec, "t"), *id = jstr(rec, "id");
    if (!type || !id)
        return;
    apr_request *r = find(st, id);
    if (strcmp(type, "create") == 0 && !r && strlen(id) == APR_ID_LEN) {
        r = calloc(1, sizeof *r);
        if (!r)
            return;
        memcpy(r->id, id, APR_ID_LEN + 1);
        r->target = dup_or_null(jstr(rec, "target"));
        r->provider = dup_or_null(jstr(rec, "provider"));
        r->source_id = dup_or_null(jstr(rec, "sourceId"));
        r->plan = dup_or_null(jstr(rec, "plan"));
        r->notes = dup_or_null(jstr(rec, "notes"));
        json_t *src = json_object_get(rec, "source");
        r->source = json_is_object(src) ? json_deep_copy(src) : json_object();
        r->created_ms = json_integer_value(json_object_get(rec, "createdMs"));
        r->expires_ms = json_integer_value(json_object_get(rec, "expiresMs"));
        r->durable = true;
        random_hex(r->csrf, 16);
        if (!r->target || !r->provider || !r->source_id || add_request(st, r) != 0)
            req_free(r);
        return;
    }
    if (!r)
        return;
    if (strcmp(type, "decision") == 0) {
        bool approve = json_is_true(json_object_get(rec, "approve"));
        r->status = approve ? APR_APPROVED : APR_REJECTED;
        r->decided_ms = json_integer_value(json_object_get(rec, "at"));
        free(r->decided_by);
        r->decided_by = dup_or_null(jstr(rec, "by"));
        free(r->decided_from);
        r->decided_from = dup_or_null(jstr(rec, "from"));
        free(r->decision_note);
        r->decision_note = dup_or_null(jstr(rec, "note"));
    } else if (strcmp(type, "status") == 0) {
        int s = status_parse(jstr(rec, "status"));
        if (s >= 0)
            r->status = (apr_status)s;
        if (jstr(rec, "productionId")) {
            free(r->production_id);
            r->production_id = strdup(jstr(rec, "productionId"));
        }
        if (jstr(rec, "error")) {
            free(r->error);
            r->error = strdup(jstr(rec, "error"));
        }
    }
}

static int default_dir(char *out, size_t n)
{
    const char *xdg = getenv("XDG_STATE_HOME");
    if (xdg && xdg[0] == '/')
        return (size_t)snprintf(out, n, "%s/deploy-mcp", xdg) < n ? 0 : -1;
    const char *home = getenv("HOME");
    if (!home || !*home)
        return -1;
    return (size_t)snprintf(out, n, "%s/.local/state/deploy-mcp", home) < n ? 0 : -1;
}

/* mkdir -p with mode 0700 for the directories it creates. */
static int make_dirs(const char *dir)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp)
        return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(tmp, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

static int load(apr_store *st, char *err, size_t errlen)
{
    struct stat sb;
    if (fstat(st->fd, &sb) != 0) {
        snprintf(err, errlen, "approval journal %s: %s", st->path, strerror(errno));
        return -1;
    }
    if ((uint64_t)sb.st_size > APR_MAX_JOURNAL_BYTES) {
        snprintf(err, errlen, "approval journal %s is larger than %u MiB: archive it and "
                 "start a new one", st->path, APR_MAX_JOURNAL_BYTES >> 20);
        return -1;
    }
    size_t size = (size_t)sb.st_size;
    char *data = malloc(size + 1);
    size_t got = 0;
    while (data && got < size) {
        ssize_t r = pread(st->fd, data + got, size - got, (off_t)got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (!data || got != size) {
        free(data);
        snprintf(err, errlen, "approval journal %s: could not read it", st->path);
        return -1;
    }
    data[size] = '\0';
    size_t start = 0, good_end = 0;
    unsigned long bad = 0;
    for (size_t i = 0; i < size; i++) {
        if (data[i] != '\n')
            continue;
        size_t len = i - start;
        json_t *rec = len <= APR_MAX_LINE_BYTES ? json_loadb(data + start, len, 0, NULL) : NULL;
        if (rec)
            replay_line(st, rec);
        else if (len > 0)
            bad++;
        json_decref(rec);
        start = i + 1;
        good_end = i + 1;
    }
    free(data);
    if (bad)
        log_warn("approval journal %s: skipped %lu unreadable line(s)", st->path, bad);
    if (good_end < size) {
        /* A crash cut the last record short: drop it so appends start on a
         * fresh line. It was never acknowledged, so nothing acted on it. */
        log_warn("approval journal %s: dropping a torn last line (%zu bytes)", st->path,
                 size - good_end);
        if (ftruncate(st->fd, (off_t)good_end) != 0) {
            snprintf(err, errlen, "approval journal %s: could not cut a torn line: %s",
                     st->path, strerror(errno));
            return -1;
        }
    }
    return 0;
}

apr_store *apr_store_open(uv_loop_t *loop, const char *dir, char *err, size_t errlen)
{
    char dbuf[4096];
    if (!dir) {
        if (default_dir(dbuf, sizeof dbuf) != 0) {
            snprintf(err, errlen, "cannot place the approval journal: set XDG_STATE_HOME or HOME");
            return NULL;
        }
        dir = dbuf;
    }
    if (make_dirs(dir) != 0) {
        snprintf(err, errlen, "cannot create %s for the approval journal: %s", dir,
                 strerror(errno));
        return NULL;
    }
    apr_store *st = calloc(1, sizeof *st);
    size_t plen = strlen(dir) + sizeof APR_JOURNAL_NAME + 2;
    if (!st || !(st->path = malloc(plen))) {
        free(st);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(st->path, plen, "%s/%s", dir, APR_JOURNAL_NAME);
    st->loop = loop;
    st->fd = open(st->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (st->fd < 0) {
        snprintf(err, errlen, "cannot open the approval journal %s: %s", st->path,
                 strerror(errno));
        free_store(st);
        return NULL;
    }
    if (load(st, err, errlen) != 0) {
        free_store(st);
        return NULL;
    }
    return st;
}

void apr_store_close(apr_store *st)
{
    if (!st)
        return;
    st->closing = true;
    if (!st->busy && !st->head)
        free_store(st);
}

const char *apr_store_path(const apr_store *st) { return st->path; }

/* ---- operations ---------------------------------------------------------- */

apr_request *apr_create(apr_store *st, const char *target, const char *provider,
                        const char *source_id, const char *plan, const char *notes,
                        json_t *source, int64_t ttl_ms, apr_done_fn done, void *ud)
{
    apr_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    memcpy(r->id, "apr_", 4);
    random_hex(r->id + 4, 16);
    random_hex(r->csrf, 16);
    r->target = strdup(target);
    r->provider = strdup(provider);
    r->source_id = strdup(source_id);
    r->plan = dup_or_null(plan);
    r->notes = dup_or_null(notes);
    r->source = json_is_object(source) ? json_deep_copy(source) : json_object();
    r->created_ms = apr_now_ms();
    r->expires_ms = r->created_ms + (ttl_ms > 0 ? ttl_ms : APR_DEFAULT_TTL_MS);
    if (!r->target || !r->provider || !r->source_id || !r->source || add_request(st, r) != 0) {
        req_free(r);
        return NULL;
    }
    json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:s?, s:O, s:I, s:I}", "t", "create",
                            "id", r->id, "target", r->target, "provider", r->provider,
                            "sourceId", r->source_id, "plan", r->plan, "notes", r->notes,
                            "source", r->source, "createdMs", (json_int_t)r->created_ms,
                            "expiresMs", (json_int_t)r->expires_ms);
    append(st, rec, r, done, ud);
    return r;
}

/* Pending requests past their expiry become expired (journaled once). */
static void check_expiry(apr_store *st, apr_request *r)
{
    if (r->status == APR_PENDING && apr_now_ms() >= r->expires_ms) {
        r->status = APR_EXPIRED;
        append(st, json_pack("{s:s, s:s, s:s}", "t", "status", "id", r->id, "status",
                             "expired"), NULL, NULL, NULL);
    }
}

apr_request *apr_get(apr_store *st, const char *id)
{
    apr_request *r = find(st, id);
    if (r)
        check_expiry(st, r);
    return r;
}

apr_request *apr_next(apr_store *st, size_t *cursor)
{
    if (*cursor >= st->nreqs)
        return NULL;
    apr_request *r = st->reqs[(*cursor)++];
    check_expiry(st, r);
    return r;
}

int apr_decide(apr_store *st, apr_request *r, bool approve, const char *by, const char *from,
               const char *note, apr_done_fn done, void *ud, char *err, size_t errlen)
{
    check_expiry(st, r);
    if (!r->durable) {
        snprintf(err, errlen, "the request is still being recorded; try again in a moment");
        return -1;
    }
    if (r->status == APR_EXPIRED) {
        snprintf(err, errlen, "this request expired; ask the agent for a new one");
        return -1;
    }
    if (r->status != APR_PENDING) {
        snprintf(err, errlen, "this request was already decided (%s)",
                 apr_status_name(r->status));
        return -1;
    }
    r->status = approve ? APR_APPROVED : APR_REJECTED;
    r->decided_ms = apr_now_ms();
    r->decided_by = dup_or_null(by);
    r->decided_from = dup_or_null(from);
    r->decision_note = dup_or_null(note);
    json_t *rec = json_pack("{s:s, s:s, s:b, s:s?, s:s?, s:s?}", "t", "decision", "id", r->id,
                            "approve", approve, "by", by, "from", from, "note", note);
    append(st, rec, NULL, done, ud);
    return 0;
}

void apr_set_status(apr_store *st, apr_request *r, apr_status status,
                    const char *production_id, const char *error, apr_done_fn done, void *ud)
{
    r->status = status;
    if (production_id) {
        free(r->production_id);
        r->production_id = strdup(production_id);
    }
    if (error) {
        free(r->error);
        r->error = strdup(error);
    }
    json_t *rec = json_pack("{s:s, s:s, s:s, s:s?, s:s?}", "t", "status", "id", r->id,
                            "status", apr_status_name(status), "productionId", production_id,
                            "error", error);
    append(st, rec, NULL, done, ud);
}

static json_t *iso_time(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char buf[80];
    snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    return json_string(buf);
}

json_t *apr_request_json(const apr_request *r)
{
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o}", "id", r->id,
                          "status", apr_status_name(r->status), "target", r->target,
                          "provider", r->provider, "sourceDeploymentId", r->source_id,
                          "createdAt", iso_time(r->created_ms),
                          "expiresAt", iso_time(r->expires_ms));
    if (!j)
        return NULL;
    if (r->plan)
        json_object_set_new(j, "plan", json_string(r->plan));
    if (r->notes)
        json_object_set_new(j, "notes", json_string(r->notes));
    if (r->decided_ms)
        json_object_set_new(j, "decidedAt", iso_time(r->decided_ms));
    if (r->decided_by)
        json_object_set_new(j, "decidedBy", json_string(r->decided_by));
    if (r->production_id)
        json_object_set_new(j, "productionDeploymentId", json_string(r->production_id));
    if (r->error)
        json_object_set_new(j, "error", json_string(r->error));
    return j;
}
