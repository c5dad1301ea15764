/* log.h — diagnostics on stderr, never on stdout (stdout carries only MCP).
 *
 * Levels follow PRODUCT.md's --log-level words. Callers must never pass a
 * secret (token, key, signature) in a format argument; secrets are kept out
 * at the source rather than scrubbed here. */
#ifndef DEPLOY_MCP_LOG_H
#define DEPLOY_MCP_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARNING = 2, LOG_ERROR = 3 };

/* Sets the minimum level written to stderr (default LOG_INFO). */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Parses "debug|info|warning|error" (also "warn"). Returns 0 and sets *out,
 * or -1 for an unknown word. */
int log_parse_level(const char *word, enum log_level *out);

/* printf-style; one line per call, a newline is appended. */
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
