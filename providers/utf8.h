/* utf8.h — UTF-8 validation and repair.
 *
 * jansson rejects invalid UTF-8, so every upstream string is repaired before
 * it goes into JSON: each maximal invalid subsequence (per Unicode's
 * "substitution of maximal subparts" practice, as WHATWG's decoder does)
 * becomes U+FFFD. Overlong forms, surrogates (U+D800..DFFF) and code points
 * above U+10FFFF are invalid. NUL bytes are kept (they are valid UTF-8;
 * jansson's json_stringn accepts them). */
#ifndef DEPLOY_MCP_UTF8_H
#define DEPLOY_MCP_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when s[0..len) is entirely valid UTF-8 (an ASCII run is checked
 * eight bytes at a time). */
bool utf8_valid(const char *s, size_t len);

/* Length (1..4) of the well-formed code point at s[0], 0 when s[0..len)
 * does not start with one (len 0, invalid or truncated). */
size_t utf8_seq_len(const char *s, size_t len);

/* Returns a newly malloc'd NUL-terminated copy of s[0..len) with invalid
 * sequences replaced by U+FFFD; *out_len (if not NULL) gets its length.
 * Returns NULL only when out of memory. The caller frees the result. */
char *utf8_repair(const char *s, size_t len, size_t *out_len);

/* Truncates a valid UTF-8 string to at most max bytes without splitting a
 * code point; returns the new length. */
size_t utf8_truncate(const char *s, size_t len, size_t max);

/* Length of s[0..len) without a trailing incomplete UTF-8 sequence (what
 * snprintf leaves when it cuts text to fit a buffer mid-character). */
size_t utf8_trim_incomplete(const char *s, size_t len);

/* Same, in place on a NUL-terminated buffer; returns the new length. */
size_t utf8_trim_cstr(char *s);

#endif
