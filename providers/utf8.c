/* utf8.c — UTF-8 validation and repair (Unicode Table 3-7 well-formed byte
 * sequences; each maximal invalid subpart becomes one U+FFFD). */
#include "providers/utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define UTF8_MAX_SEQ 4
static const char REPLACEMENT[] = "\xEF\xBF\xBD"; /* U+FFFD */
#define REPLACEMENT_LEN (sizeof REPLACEMENT - 1)

/* Examines the sequence starting at s[0] (len >= 1). Returns true when it is
 * a well-formed code point and sets *n to its length; otherwise sets *n to the
 * length of the maximal invalid subpart (>= 1), i.e. the longest prefix that
 * could still have begun a well-formed sequence. */
static bool scan_one(const unsigned char *s, size_t len, size_t *n)
{
    unsigned char b = s[0];
    size_t need;              /* continuation bytes after the lead */
    unsigned char lo = 0x80;  /* allowed range of the first continuation; */
    unsigned char hi = 0xBF;  /* narrowed to exclude overlongs, surrogates, > U+10FFFF */

    if (b < 0x80) {
        *n = 1;
        return true;
    }
    if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        if (b == 0xE0)
            lo = 0xA0;        /* overlong below U+0800 */
        else if (b == 0xED)
            hi = 0x9F;        /* surrogates U+D800..DFFF */
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        if (b == 0xF0)
            lo = 0x90;        /* overlong below U+10000 */
        else if (b == 0xF4)
            hi = 0x8F;        /* above U+10FFFF */
    } else {
        /* 80..BF stray continuation, C0/C1 always overlong, F5..FF never valid */
        *n = 1;
        return false;
    }
    for (size_t k = 1; k <= need; k++) {
        if (k >= len) {       /* truncated at the end of input */
            *n = k;
            return false;
        }
        unsigned char c = s[k];
        if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) {
            *n = k;
            return false;
        }
    }
    *n = need + 1;
    return true;
}

bool utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        /* Relayed text is mostly ASCII: skip it eight bytes at a time. */
        if (i + 8 <= len) {
            uint64_t v;
            memcpy(&v, u + i, 8);
            if (!(v & UINT64_C(0x8080808080808080))) {
                i += 8;
                continue;
            }
        }
        size_t n;
        if (!scan_one(u + i, len - i, &n))
            return false;
        i += n;
    }
    return true;
}

size_t utf8_seq_len(const char *s, size_t len)
{
    size_t n;
    if (len == 0 || !scan_one((const unsigned char *)s, len, &n))
        return 0;
    return n;
}

char *utf8_repair(const char *s, size_t len, size_t *out_len)
{
    const unsigned char *u = (const unsigned char *)s;

    /* Worst case every byte becomes a 3-byte U+FFFD; refuse sizes that could
     * overflow rather than computing a wrong length. */
    if (len > (SIZE_MAX - 1) / REPLACEMENT_LEN)
        return NULL;

    size_t total = 0;
    for (size_t i = 0, n; i < len; i += n)
        total += scan_one(u + i, len - i, &n) ? n : REPLACEMENT_LEN;

    char *out = malloc(total + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0, n; i < len; i += n) {
        if (scan_one(u + i, len - i, &n)) {
            memcpy(out + o, s + i, n);
            o += n;
        } else {
            memcpy(out + o, REPLACEMENT, REPLACEMENT_LEN);
            o += REPLACEMENT_LEN;
        }
    }
    out[o] = '\0';
    if (out_len)
        *out_len = o;
    return out;
}

/* Length a lead byte announces (1 for bytes that cannot lead). */
static size_t lead_len(unsigned char b)
{
    if (b >= 0xF0 && b <= 0xF7)
        return 4;
    if (b >= 0xE0 && b <= 0xEF)
        return 3;
    if (b >= 0xC0 && b <= 0xDF)
        return 2;
    return 1;
}

size_t utf8_truncate(const char *s, size_t len, size_t max)
{
    const unsigned char *u = (const unsigned char *)s;
    if (len <= max)
        return len;
    /* u[max] is the first byte cut off; if it is a continuation byte, back up
     * (at most three bytes, the longest run a code point has) to the lead of
     * the code point it belongs to and cut before that lead. Checking the
     * lead's announced length keeps stray continuation bytes in invalid input
     * from pulling the cut further back than needed. */
    size_t n = max;
    for (size_t k = 1; k < UTF8_MAX_SEQ && n > 0 && (u[n] & 0xC0) == 0x80; k++)
        n--;
    if ((u[n] & 0xC0) != 0x80 && n + lead_len(u[n]) > max)
        return n;
    return max;
}

size_t utf8_trim_incomplete(const char *s, size_t len)
{
    /* Find the lead byte of the last sequence (at most 3 continuation bytes
     * back) and drop the sequence if it is shorter than the lead declares. */
    size_t back = 0;
    while (back < 4 && back < len && ((unsigned char)s[len - 1 - back] & 0xC0) == 0x80)
        back++;
    if (back == len)
        return len;
    unsigned char lead = (unsigned char)s[len - 1 - back];
    size_t need = lead < 0x80 ? 1 : (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3
                : (lead & 0xF8) == 0xF0 ? 4 : 1;
    return back + 1 < need ? len - 1 - back : len;
}

size_t utf8_trim_cstr(char *s)
{
    size_t n = strlen(s);
    size_t m = utf8_trim_incomplete(s, n);
    s[m] = '\0';
    return m;
}
