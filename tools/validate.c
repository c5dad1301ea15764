/* validate.c — checks tool arguments against the subset of JSON Schema the
 * tools' inputSchemas use, and says precisely what is wrong, naming the
 * argument, so a model can correct its call in one try.
 *
 * Supported keywords: type (a name or a list of names: object, string,
 * integer, number, boolean, array, null), properties, required,
 * additionalProperties:false, items, enum, minimum, maximum, minLength,
 * maxLength, anyOf (the output schemas use it; tests check results with it). Others (description, default, pattern, ...) are for clients and
 * ignored here; tools check what they need beyond this themselves.
 *
 * "integer" accepts JSON integers and reals with an integral value (5.0),
 * as JSON Schema does; booleans are never numbers. String lengths count
 * Unicode code points, as JSON Schema does. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tools/tool.h"

/* Largest integer a double holds exactly: integral reals beyond it are not
 * accepted as integers. */
#define VALIDATE_MAX_SAFE_INT 9007199254740991.0
#define VALIDATE_MAX_PATH 256
#define VALIDATE_MAX_DEPTH 16      /* our schemas are flat; guards recursion */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static bool is_integral(const json_t *v)
{
    if (json_is_integer(v))
        return true;
    if (!json_is_real(v))
        return false;
    double d = json_real_value(v);
    return isfinite(d) && floor(d) == d && fabs(d) <= VALIDATE_MAX_SAFE_INT;
}

static bool type_matches(const char *type, const json_t *v)
{
    if (strcmp(type, "object") == 0)
        return json_is_object(v);
    if (strcmp(type, "string") == 0)
        return json_is_string(v);
    if (strcmp(type, "integer") == 0)
        return is_integral(v);
    if (strcmp(type, "number") == 0)
        return json_is_number(v);
    if (strcmp(type, "boolean") == 0)
        return json_is_boolean(v);
    if (strcmp(type, "array") == 0)
        return json_is_array(v);
    if (strcmp(type, "null") == 0)
        return json_is_null(v);
    return false;
}

static const char *type_phrase(const char *type)
{
    if (strcmp(type, "object") == 0)
        return "an object";
    if (strcmp(type, "string") == 0)
        return "a string";
    if (strcmp(type, "integer") == 0)
        return "an integer";
    if (strcmp(type, "number") == 0)
        return "a number";
    if (strcmp(type, "boolean") == 0)
        return "true or false";
    if (strcmp(type, "array") == 0)
        return "an array";
    if (strcmp(type, "null") == 0)
        return "null";
    return type;
}

static double num_value(const json_t *v)
{
    return json_is_integer(v) ? (double)json_integer_value(v) : json_real_value(v);
}

/* Formats a bound as the schema wrote it (3600, not 3600.000000). */
static void fmt_num(char *buf, size_t n, const json_t *v)
{
    if (json_is_integer(v))
        snprintf(buf, n, "%lld", (long long)json_integer_value(v));
    else
        snprintf(buf, n, "%g", json_real_value(v));
}

static size_t utf8_codepoints(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

/* "must be an integer between 1 and 3600" and friends: the whole expected
 * shape in one phrase, used for wrong types and out-of-range values alike. */
static void number_phrase(char *buf, size_t n, const char *what, const json_t *min,
                          const json_t *max)
{
    char lo[32], hi[32];
    if (min && max) {
        fmt_num(lo, sizeof lo, min);
        fmt_num(hi, sizeof hi, max);
        snprintf(buf, n, "%s between %s and %s", what, lo, hi);
    } else if (min) {
        fmt_num(lo, sizeof lo, min);
        snprintf(buf, n, "%s >= %s", what, lo);
    } else if (max) {
        fmt_num(hi, sizeof hi, max);
        snprintf(buf, n, "%s <= %s", what, hi);
    } else {
        snprintf(buf, n, "%s", what);
    }
}

static void enum_list(char *buf, size_t n, const json_t *values)
{
    size_t i, off = 0;
    json_t *v;
    buf[0] = '\0';
    json_array_foreach(values, i, v) {
        char one[128];
        if (json_is_string(v))
            snprintf(one, sizeof one, "%s", json_string_value(v));
        else {
            char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            snprintf(one, sizeof one, "%s", t ? t : "?");
            free(t);
        }
        int w = snprintf(buf + off, n - off, "%s%s", i ? ", " : "", one);
        if (w < 0 || (size_t)w >= n - off)
            return;
        off += (size_t)w;
    }
}

static int check_object(const char *path, json_t *schema, json_t *obj, int depth, char *err,
                        size_t errlen);

static int check_value(const char *path, json_t *schema, json_t *v, int depth, char *err,
                       size_t errlen)
{
    if (!json_is_object(schema))
        return 0;   /* true / {} schemas accept anything */
    if (depth > VALIDATE_MAX_DEPTH)
        return fail(err, errlen, "arguments are nested too deeply");
    json_t *type = json_object_get(schema, "type");
    json_t *min = json_object_get(schema, "minimum");
    json_t *max = json_object_get(schema, "maximum");
    if (!json_is_number(min))
        min = NULL;
    if (!json_is_number(max))
        max = NULL;

    /* type: one name or a list of names. */
    const char *first_type = NULL;
    bool ok = true;
    if (json_is_string(type)) {
        first_type = json_string_value(type);
        ok = type_matches(first_type, v);
    } else if (json_is_array(type) && json_array_size(type) > 0) {
        size_t i;
        json_t *t;
        ok = false;
        json_array_foreach(type, i, t) {
            if (!json_is_string(t))
                continue;
            if (!first_type)
                first_type = json_string_value(t);
            if (type_matches(json_string_value(t), v))
                ok = true;
        }
    }
    if (!ok) {
        if (first_type && (strcmp(first_type, "integer") == 0 ||
                           strcmp(first_type, "number") == 0)) {
            char phrase[160];
            number_phrase(phrase, sizeof phrase, type_phrase(first_type), min, max);
            return fail(err, errlen, "argument \"%s\" must be %s", path, phrase);
        }
        if (json_is_array(type)) {
            char list[256];
            enum_list(list, sizeof list, type);
            return fail(err, errlen, "argument \"%s\" must be of type %s", path, list);
        }
        return fail(err, errlen, "argument \"%s\" must be %s", path,
                    first_type ? type_phrase(first_type) : "valid");
    }

    json_t *values = json_object_get(schema, "enum");
    if (json_is_array(values)) {
        size_t i;
        json_t *e;
        bool found = false;
        json_array_foreach(values, i, e) {
            if (json_equal(e, v)) {
                found = true;
                break;
            }
        }
        if (!found) {
            char list[512];
            enum_list(list, sizeof list, values);
            return fail(err, errlen, "argument \"%s\" must be one of: %s", path, list);
        }
    }

    if (json_is_number(v) && ((min && num_value(v) < num_value(min)) ||
                              (max && num_value(v) > num_value(max)))) {
        bool integer = first_type && strcmp(first_type, "integer") == 0;
        char phrase[160];
        number_phrase(phrase, sizeof phrase, integer ? "an integer" : "a number", min, max);
        return fail(err, errlen, "argument \"%s\" must be %s", path, phrase);
    }

    if (json_is_string(v)) {
        json_t *minl = json_object_get(schema, "minLength");
        json_t *maxl = json_object_get(schema, "maxLength");
        size_t n = utf8_codepoints(json_string_value(v), json_string_length(v));
        bool too_short = json_is_integer(minl) && (json_int_t)n < json_integer_value(minl);
        bool too_long = json_is_integer(maxl) && (json_int_t)n > json_integer_value(maxl);
        if (too_short || too_long) {
            if (too_short && json_integer_value(minl) == 1)
                return fail(err, errlen, "argument \"%s\" must not be empty", path);
            if (json_is_integer(minl) && json_is_integer(maxl))
                return fail(err, errlen, "argument \"%s\" must be a string of %lld to %lld "
                            "characters", path, (long long)json_integer_value(minl),
                            (long long)json_integer_value(maxl));
            if (too_short)
                return fail(err, errlen, "argument \"%s\" must be at least %lld characters "
                            "long", path, (long long)json_integer_value(minl));
            return fail(err, errlen, "argument \"%s\" must be at most %lld characters long",
                        path, (long long)json_integer_value(maxl));
        }
    }

    if (json_is_object(v) && (json_is_object(json_object_get(schema, "properties")) ||
                              json_is_array(json_object_get(schema, "required"))) &&
        check_object(path, schema, v, depth + 1, err, errlen) != 0)
        return -1;

    json_t *any = json_object_get(schema, "anyOf");
    if (json_is_array(any) && json_array_size(any) > 0) {
        size_t i;
        json_t *alt;
        char first[256] = "";
        json_array_foreach(any, i, alt) {
            char scratch[256];
            if (check_value(path, alt, v, depth + 1, scratch, sizeof scratch) == 0)
                return 0;
            if (i == 0)
                snprintf(first, sizeof first, "%s", scratch);
        }
        return fail(err, errlen, "%s (and no other allowed shape matches)", first);
    }

    json_t *items = json_object_get(schema, "items");
    if (json_is_array(v) && json_is_object(items)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            char sub[VALIDATE_MAX_PATH];
            snprintf(sub, sizeof sub, "%s[%zu]", path, i);
            if (check_value(sub, items, e, depth + 1, err, errlen) != 0)
                return -1;
        }
    }
    return 0;
}

static void join_path(char *out, size_t n, const char *parent, const char *key)
{
    if (parent && *parent)
        snprintf(out, n, "%s.%s", parent, key);
    else
        snprintf(out, n, "%s", key);
}

static int check_object(const char *path, json_t *schema, json_t *obj, int depth, char *err,
                        size_t errlen)
{
    if (depth > VALIDATE_MAX_DEPTH)
        return fail(err, errlen, "arguments are nested too deeply");
    json_t *props = json_object_get(schema, "properties");
    json_t *addl = json_object_get(schema, "additionalProperties");
    const char *key;
    json_t *v;

    if (json_is_false(addl)) {
        json_object_foreach(obj, key, v) {
            if (json_object_get(props, key))
                continue;
            char allowed[512] = "";
            size_t off = 0;
            const char *k;
            json_t *ps;
            json_object_foreach(props, k, ps) {
                int w = snprintf(allowed + off, sizeof allowed - off, "%s%s", off ? ", " : "",
                                 k);
                if (w < 0 || (size_t)w >= sizeof allowed - off)
                    break;
                off += (size_t)w;
            }
            char name[VALIDATE_MAX_PATH];
            join_path(name, sizeof name, path, key);
            if (!off)
                return fail(err, errlen, "unknown argument \"%s\" (this tool takes no "
                            "arguments)", name);
            return fail(err, errlen, "unknown argument \"%s\" (allowed: %s)", name, allowed);
        }
    }

    json_t *required = json_object_get(schema, "required");
    if (json_is_array(required)) {
        size_t i;
        json_t *r;
        json_array_foreach(required, i, r) {
            if (json_is_string(r) && !json_object_get(obj, json_string_value(r))) {
                char name[VALIDATE_MAX_PATH];
                join_path(name, sizeof name, path, json_string_value(r));
                return fail(err, errlen, "missing required argument \"%s\"", name);
            }
        }
    }

    /* Check in the schema's order, so the first complaint is stable. */
    json_t *ps;
    json_object_foreach(props, key, ps) {
        v = json_object_get(obj, key);
        if (!v)
            continue;
        char name[VALIDATE_MAX_PATH];
        join_path(name, sizeof name, path, key);
        if (check_value(name, ps, v, depth, err, errlen) != 0)
            return -1;
    }
    return 0;
}

int tool_validate_args(json_t *schema, json_t *args, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!json_is_object(args))
        return fail(err, errlen, "arguments must be a JSON object");
    if (!json_is_object(schema))
        return fail(err, errlen, "internal error: the tool has no input schema");
    return check_value("", schema, args, 0, err, errlen);
}
