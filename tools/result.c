/* result.c — CallToolResult shapes (PRODUCT.md §3 "Errors").
 *
 * A success carries structuredContent and, for clients that only read text,
 * the same JSON as a text block. An error carries isError, a sentence a
 * model can act on (what failed, whether trying again can help) and the
 * machine-readable {error:{...}} object. Messages come from prov_error or
 * from the tool layer and never contain secrets. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/result.h"
#include "tools/tool.h"

/* The advice appended to every error text: the one thing a model most needs
 * to decide its next step. */
#define ADVICE_RETRYABLE "Retryable: the same call may succeed if made again after a short wait."
#define ADVICE_FINAL \
    "Not retryable: waiting will not clear it; repeating the same call will fail the same way."

static json_t *text_block(const char *text)
{
    json_t *s = json_string(text);
    if (!s)
        s = json_string("(unprintable)");   /* not valid UTF-8: never expected */
    return json_pack("{s:s, s:o}", "type", "text", "text", s);
}

/* The text of a tool_result block until it is sent (tools/result.h): one
 * string whose identity (not its value) marks the block. Created on first
 * use, never freed (a still-reachable global, not a leak). */
static json_t *placeholder;

static json_t *placeholder_text(void)
{
    if (!placeholder)
        placeholder = json_string("");
    return placeholder;
}

json_t *tool_result(json_t *sc)
{
    if (!sc)
        return NULL;
    json_t *ph = placeholder_text();
    json_t *block = ph ? json_pack("{s:s, s:O}", "type", "text", "text", ph) : NULL;
    json_t *res = block ? json_pack("{s:[o], s:o}", "content", block, "structuredContent", sc)
                        : NULL;
    if (!res && !block)
        json_decref(sc);
    return res;
}

json_t *tool_result_deferred(json_t *result, int *is_error)
{
    if (!placeholder || !json_is_object(result))
        return NULL;
    size_t n = json_object_size(result);
    json_t *content = json_object_get(result, "content");
    json_t *sc = json_object_get(result, "structuredContent");
    json_t *err = json_object_get(result, "isError");
    if (!sc || json_array_size(content) != 1 || n != (err ? 3u : 2u) ||
        (err && !json_is_boolean(err)))
        return NULL;
    json_t *block = json_array_get(content, 0);
    json_t *type = json_object_get(block, "type");
    if (json_object_size(block) != 2 || json_object_get(block, "text") != placeholder ||
        !json_is_string(type) || strcmp(json_string_value(type), "text") != 0)
        return NULL;
    *is_error = err ? json_is_true(err) : -1;
    return sc;
}

int tool_result_materialize(json_t *result)
{
    json_t *content = json_object_get(result, "content");
    if (!placeholder || !json_is_array(content))
        return 0;
    int rc = 0;
    char *text = NULL;
    size_t i;
    json_t *block;
    json_array_foreach(content, i, block) {
        if (json_object_get(block, "text") != placeholder)
            continue;
        if (!text) {
            json_t *sc = json_object_get(result, "structuredContent");
            text = sc ? json_dumps(sc, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("");
        }
        json_t *s = text ? json_string(text) : NULL;
        if (!s) {
            s = json_string("(unprintable)");
            rc = -1;
        }
        json_object_set_new(block, "text", s);
    }
    free(text);
    return rc;
}

json_t *tool_error_result(const char *provider, const prov_error *e)
{
    const char *code = e && e->code[0] ? e->code : "error";
    const char *message = e && e->message[0] ? e->message : "the operation failed";
    long status = e ? e->http_status : 0;
    bool retryable = e && e->retryable;

    json_t *err = json_pack("{s:s, s:s}", "code", code, "message", message);
    if (!err) {
        /* The message was not valid UTF-8 (never expected: prov_error
         * messages are built from repaired text). Keep the code. */
        err = json_pack("{s:s, s:s}", "code", code, "message", "the operation failed");
        if (!err)
            return NULL;
    }
    if (status > 0)
        json_object_set_new(err, "httpStatus", json_integer(status));
    json_object_set_new(err, "provider", provider ? json_string(provider) : json_null());
    json_object_set_new(err, "retryable", json_boolean(retryable));

    char head[160];
    if (provider && status > 0)
        snprintf(head, sizeof head, "%s error %s (HTTP %ld)", provider, code, status);
    else if (provider)
        snprintf(head, sizeof head, "%s error %s", provider, code);
    else if (status > 0)
        snprintf(head, sizeof head, "Error %s (HTTP %ld)", code, status);
    else
        snprintf(head, sizeof head, "Error %s", code);
    size_t mlen = strlen(message);
    const char *sep = mlen && strchr(".!?", message[mlen - 1]) ? " " : ". ";
    char *text = NULL;
    size_t tlen = strlen(head) + mlen + 256;
    text = malloc(tlen);
    if (text)
        snprintf(text, tlen, "%s: %s%s%s", head, message, sep,
                 retryable ? ADVICE_RETRYABLE : ADVICE_FINAL);
    json_t *block = text_block(text ? text : message);
    free(text);
    json_t *res = json_pack("{s:[o], s:o, s:b}", "content", block, "structuredContent",
                            json_pack("{s:o}", "error", err), "isError", 1);
    return res;
}

/* vsnprintf may cut a message inside a multi-byte character; drop the
 * partial character so the text stays valid UTF-8. */
static void trim_partial_utf8(char *s)
{
    size_t n = strlen(s), i = n;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0)
        return;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (n - (i - 1) < need)
        s[i - 1] = '\0';
}

json_t *tool_error_simple(const char *provider, const char *code, const char *fmt, ...)
{
    prov_error e;
    memset(&e, 0, sizeof e);
    snprintf(e.code, sizeof e.code, "%s", code ? code : "error");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    trim_partial_utf8(e.message);
    return tool_error_result(provider, &e);
}
