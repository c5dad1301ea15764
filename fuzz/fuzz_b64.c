/* fuzz_b64.c — base64url without padding (providers/b64.h), which carries
 * stream cursors that come back from clients.
 *
 * Invariants:
 *  - decode(encode(bytes)) == bytes, and encode's output has ceil(4n/3)
 *    characters from the base64url alphabet, no padding;
 *  - decode(text) of any text: NULL, or (after stripping trailing '=') only
 *    alphabet characters, length % 4 != 1, floor(6n/8) bytes, NUL-appended;
 *    and then encode(decoded) decodes to the same bytes again. */
#include <stdbool.h>

#include "fuzz/fuzz.h"
#include "providers/b64.h"

static const char ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* bytes → text → bytes */
    char *enc = b64url_encode(data, size);
    FUZZ_CHECK(enc != NULL, "encode returned NULL");
    size_t elen = strlen(enc);
    FUZZ_CHECK(elen == (size * 4 + 2) / 3, "encoded %zu bytes into %zu characters", size, elen);
    FUZZ_CHECK(strspn(enc, ALPHABET) == elen, "encoding has a character outside the alphabet");
    size_t dlen = (size_t)-1;
    unsigned char *dec = b64url_decode(enc, &dlen);
    FUZZ_CHECK(dec != NULL, "decode refused its own encoding \"%.100s\"", enc);
    FUZZ_CHECK(dlen == size && memcmp(dec, data, size) == 0, "round trip changed the bytes");
    FUZZ_CHECK(dec[dlen] == '\0', "decode did not append a NUL");
    free(dec);
    free(enc);

    /* text → bytes, for text as a client could send it */
    char *text = fz_dup(data, size, 1);
    size_t tlen = strlen(text);   /* up to an embedded NUL, as a C string */
    size_t n = tlen;
    while (n > 0 && text[n - 1] == '=')
        n--;
    bool shape_ok = strspn(text, ALPHABET) == n && n % 4 != 1;
    dlen = (size_t)-1;
    dec = b64url_decode(text, &dlen);
    FUZZ_CHECK((dec != NULL) == shape_ok, "decode %s \"%.100s\"", dec ? "accepted" : "refused",
               text);
    if (dec) {
        FUZZ_CHECK(dlen == n * 6 / 8, "decoded %zu characters into %zu bytes", n, dlen);
        FUZZ_CHECK(dec[dlen] == '\0', "decode did not append a NUL");
        char *re = b64url_encode(dec, dlen);
        FUZZ_CHECK(re != NULL && strlen(re) == n, "re-encoding has the wrong length");
        size_t rlen = 0;
        unsigned char *again = b64url_decode(re, &rlen);
        FUZZ_CHECK(again && rlen == dlen && memcmp(again, dec, dlen) == 0,
                   "decode(encode(decode(t))) != decode(t)");
        free(again);
        free(re);
        free(dec);
    }
    free(text);
    return 0;
}
