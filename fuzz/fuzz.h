/* fuzz.h — what every libFuzzer target here shares: the entry points, a
 * reader that takes control bytes off the front of an input, a small PRNG
 * seeded from the input (so a run is reproducible from its input alone), and
 * FUZZ_CHECK for invariants.
 *
 * A broken invariant prints what was expected and aborts; libFuzzer then
 * saves the input as a crash artifact, exactly as for a sanitizer report. */
#ifndef DEPLOY_MCP_FUZZ_H
#define DEPLOY_MCP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond, ...)                                                               \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "\n%s:%d: fuzz invariant failed: %s\n  ", __FILE__, __LINE__,  \
                    #cond);                                                                 \
            fprintf(stderr, __VA_ARGS__);                                                   \
            fputc('\n', stderr);                                                            \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

/* Consumes an input from the front. Past the end it yields zeros. */
typedef struct fuzz_in {
    const uint8_t *p;
    size_t n;
} fuzz_in;

static inline uint8_t fz_u8(fuzz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint32_t fz_u32(fuzz_in *in)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 8 | fz_u8(in);
    return v;
}

/* xorshift32; never returns to 0. */
typedef struct fuzz_rng {
    uint32_t s;
} fuzz_rng;

static inline void fz_rng_seed(fuzz_rng *r, uint32_t seed) { r->s = seed ? seed : 0x9e3779b9u; }

static inline uint32_t fz_rng(fuzz_rng *r)
{
    uint32_t x = r->s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return r->s = x;
}

/* Uniform-ish in [0, n); 0 when n == 0. */
static inline size_t fz_below(fuzz_rng *r, size_t n) { return n ? fz_rng(r) % n : 0; }

/* An exact-size heap copy (not NUL-terminated unless nul is set), so ASan
 * sees any read past the end of what the code under test was given. */
static inline char *fz_dup(const void *p, size_t n, int nul)
{
    char *c = malloc(n + (nul ? 1 : 0) + (n == 0 && !nul));
    if (!c)
        abort();
    if (n)
        memcpy(c, p, n);
    if (nul)
        c[n] = '\0';
    return c;
}

/* Finds `needle` (n bytes) in hay (h bytes). */
static inline int fz_contains(const char *hay, size_t h, const char *needle, size_t n)
{
    if (n == 0)
        return 1;
    for (size_t i = 0; i + n <= h; i++)
        if (memcmp(hay + i, needle, n) == 0)
            return 1;
    return 0;
}

#endif
