/* common.c — small helpers the tool files share (tool_internal.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/session.h"
#include "providers/utf8.h"
#include "tools/tool_internal.h"

const char *tool_arg_str(json_t *args, const char *key)
{
    return json_string_value(json_object_get(args, key));
}

const char *tool_arg_opt(json_t *args, const char *key)
{
    const char *s = tool_arg_str(args, key);
    return s && *s ? s : NULL;
}

long long tool_arg_int(json_t *args, const char *key, long long dflt)
{
    json_t *v = json_object_get(args, key);
    if (json_is_integer(v))
        return (long long)json_integer_value(v);
    if (json_is_real(v))   /* integral by validation (e.g. 30.0) */
        return (long long)llround(json_real_value(v));
    return dflt;
}

bool tool_arg_bool(json_t *args, const char *key, bool dflt)
{
    json_t *v = json_object_get(args, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

json_t *tool_json_text(const char *s, size_t len)
{
    if (!s)
        return json_string("");
    json_t *j = json_stringn(s, len);
    if (j)
        return j;
    size_t rlen = 0;
    char *fixed = utf8_repair(s, len, &rlen);
    if (!fixed)
        return NULL;
    j = json_stringn(fixed, rlen);
    free(fixed);
    return j;
}

void tool_finish_prov_error(mcp_request *req, const prov_target *t, const prov_error *e)
{
    mcp_req_finish(req, tool_error_result(t ? t->cfg->provider : NULL, e));
}

void tool_finish_oom(mcp_request *req)
{
    mcp_req_finish(req, tool_error_simple(NULL, "internal_error",
                                          "deploy-mcp ran out of memory handling this call"));
}

void tool_fill_origin(json_t *obj, const prov_target *t)
{
    if (!json_is_object(obj))
        return;
    if (!json_object_get(obj, "target"))
        json_object_set_new(obj, "target", json_string(t->cfg->name));
    if (!json_object_get(obj, "provider"))
        json_object_set_new(obj, "provider", json_string(t->cfg->provider));
}

void tool_add_local_note(json_t *sc, const prov_target *t)
{
    if (!t->ops->local_records_only || !json_is_object(sc))
        return;
    char note[512];
    snprintf(note, sizeof note,
             "%s has no API to look deployments up, so this answer comes from what this "
             "deploy-mcp process created and observed since it started; deployments made "
             "elsewhere or before a restart are not known here.",
             t->ops->display_name);
    json_object_set_new(sc, "note", json_string(note));
}

/* ---- one provider operation per call ---------------------------------- */

typedef struct op_call {
    mcp_request *req;
    prov_target *t;
    prov_op *op;
    json_t *args;            /* the call's own copy (see tool_op_start_fn) */
    tool_op_shape_fn shape;
} op_call;

static void op_call_free(op_call *c)
{
    json_decref(c->args);
    free(c);
}

static void op_call_cancel(void *ud)
{
    op_call *c = ud;
    if (c->op)
        prov_op_cancel(c->op);
    op_call_free(c);
}

static void op_call_done(void *ud, json_t *result, const prov_error *err)
{
    op_call *c = ud;
    c->op = NULL;   /* freed by the op machinery after we return */
    if (err) {
        tool_finish_prov_error(c->req, c->t, err);
    } else {
        json_t *sc = c->shape(c->t, c->args, result);
        if (sc)
            mcp_req_finish(c->req, tool_result(sc));
        else
            tool_finish_oom(c->req);
    }
    op_call_free(c);
}

void tool_run_op(mcp_request *req, prov_target *t, json_t *args, tool_op_start_fn start,
                 tool_op_shape_fn shape)
{
    op_call *c = calloc(1, sizeof *c);
    if (!c || !(c->args = json_deep_copy(args))) {
        free(c);
        tool_finish_oom(req);
        return;
    }
    c->req = req;
    c->t = t;
    c->shape = shape;
    prov_error err;
    memset(&err, 0, sizeof err);
    c->op = start(t, c->args, op_call_done, c, &err);
    if (!c->op) {
        tool_finish_prov_error(req, t, &err);
        op_call_free(c);
        return;
    }
    mcp_req_on_cancel(req, op_call_cancel, c);
}
