/* zip.c — packaging a deploy artifact off the loop (see zip.h).
 *
 * The worker runs on libuv's thread pool and touches only its own job; the
 * loop thread reads the outcome in the after-work callback (libuv orders the
 * two). Cancellation is one atomic flag the worker polls between entries and
 * between read chunks.
 *
 * Format: plain PKZIP with deflate (raw, windowBits -15) and no data
 * descriptors: each file is compressed into memory first (at most what is
 * left of the size budget), so its local header can carry the CRC and sizes
 * and the archive is written strictly sequentially — which also lets the
 * SHA-256 digest be computed as the bytes go out. Archives with more than
 * 65 535 entries get a ZIP64 end record (counts only: the size cap keeps
 * every offset far below 4 GiB).
 *
 * Symlinks inside a zipped directory are followed only to regular files that
 * stay inside the directory: the tool layer confined the top path to the
 * artifactRoot, and a link to /etc/passwd must not smuggle it out. Linked
 * directories, special files and escaping links fail the job with a message
 * naming the entry. */
#include "providers/zip.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "tools/sha256.h"

#define ZIP_ERROR_MAX       768
#define ZIP_READ_CHUNK      (64u << 10)   /* bytes read from a source file at once */
#define ZIP_MAX_DEPTH       128           /* directory nesting */
#define ZIP_MAX_NAME        0xFFFFu       /* the format's 16-bit name length */
#define ZIP_MAX_FILE        0xFFFFFFFFu   /* no ZIP64 sizes: 4 GiB - 1 per file */
#define ZIP_TAIL_SCAN       (65535u + 22u) /* EOCD search window of a given zip */
_Static_assert(ZIP_READ_CHUNK < ZIP_TAIL_SCAN, "the tail window must outgrow a chunk");
#define ZIP_TMP_TEMPLATE    "deploy-mcp-artifact-XXXXXX"
#define ZIP_VERSION_NEEDED  20            /* 2.0: deflate, directories */
#define ZIP_VERSION_ZIP64   45
#define ZIP_MADE_BY_UNIX    (3u << 8)
#define ZIP_FLAG_UTF8       (1u << 11)

struct zip_job {
    uv_work_t work;
    uv_loop_t *loop;
    char *path;
    char *prefix;                 /* "" or ending in '/' */
    uint64_t max_bytes;
    zip_done_cb cb;
    void *ud;
    atomic_int canceled;

    /* written by the worker, read on the loop after it finished */
    int status;
    char error[ZIP_ERROR_MAX];
    char tmp_path[PATH_MAX];
    bool temporary;
    uint64_t size;
    char digest[ZIP_DIGEST_HEX + 1];
    unsigned long files;

    /* loop thread only */
    bool finished;                /* the after-work callback ran */
    bool in_callback;
    bool free_requested;          /* zip_job_free from inside the callback */
    zip_result res;
};

/* ---- helpers ------------------------------------------------------------ */

static void fail(zip_job *j, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(zip_job *j, int status, const char *fmt, ...)
{
    if (j->status != 0)
        return; /* keep the first cause */
    j->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->error, sizeof j->error, fmt, ap);
    va_end(ap);
}

static bool canceled(zip_job *j)
{
    if (atomic_load(&j->canceled)) {
        fail(j, -ECANCELED, "packaging the artifact was cancelled");
        return true;
    }
    return false;
}

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v & 0xFF);
    p[1] = (unsigned char)((v >> 8) & 0xFF);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)((v >> (8 * i)) & 0xFF);
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)((v >> (8 * i)) & 0xFF);
}

static void hex_digest(const unsigned char d[TOOL_SHA256_LEN], char out[ZIP_DIGEST_HEX + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < TOOL_SHA256_LEN; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[ZIP_DIGEST_HEX] = '\0';
}

/* "64 MiB" style, for messages. */
static void human_size(uint64_t n, char *buf, size_t cap)
{
    if (n >= (1u << 20) && n % (1u << 20) == 0)
        snprintf(buf, cap, "%llu MiB", (unsigned long long)(n >> 20));
    else if (n >= (1u << 20))
        snprintf(buf, cap, "%.1f MiB", (double)n / (double)(1u << 20));
    else
        snprintf(buf, cap, "%llu bytes", (unsigned long long)n);
}

/* ---- a given .zip ------------------------------------------------------- */

static bool ends_with_zip(const char *path)
{
    size_t n = strlen(path);
    return n > 4 && strcasecmp(path + n - 4, ".zip") == 0;
}

static void use_given_zip(zip_job *j, const struct stat *st)
{
    char lim[32];
    if (!ends_with_zip(j->path)) {
        fail(j, -EINVAL, "artifact %s is a file but not a .zip archive: pass a .zip of the "
                         "build output, or the build output directory itself", j->path);
        return;
    }
    if ((uint64_t)st->st_size > j->max_bytes) {
        human_size(j->max_bytes, lim, sizeof lim);
        fail(j, -EFBIG, "artifact %s is %llu bytes, over the %s limit for the zipped bundle",
             j->path, (unsigned long long)st->st_size, lim);
        return;
    }
    FILE *f = fopen(j->path, "rb");
    if (!f) {
        fail(j, -errno, "cannot open artifact %s: %s", j->path, strerror(errno));
        return;
    }
    unsigned char *buf = malloc(ZIP_READ_CHUNK);
    if (!buf) {
        fclose(f);
        fail(j, -ENOMEM, "out of memory reading the artifact");
        return;
    }
    tool_sha256_ctx h;
    tool_sha256_init(&h);
    uint64_t total = 0;
    unsigned char head[4] = {0};
    /* The end-of-central-directory record sits in the last 64 KiB + 22
     * bytes; remember that tail while hashing so the file is read once. */
    unsigned char *tail = malloc(ZIP_TAIL_SCAN);
    size_t tail_len = 0;
    size_t got;
    while (tail && !canceled(j) && (got = fread(buf, 1, ZIP_READ_CHUNK, f)) > 0) {
        if (total == 0)
            memcpy(head, buf, got < 4 ? got : 4);
        tool_sha256_update(&h, buf, got);
        total += got;
        /* got <= ZIP_READ_CHUNK < ZIP_TAIL_SCAN: slide the window. */
        size_t keep = tail_len + got > ZIP_TAIL_SCAN ? ZIP_TAIL_SCAN - got : tail_len;
        memmove(tail, tail + tail_len - keep, keep);
        memcpy(tail + keep, buf, got);
        tail_len = keep + got;
        if (total > j->max_bytes)
            break;
    }
    bool read_err = ferror(f) != 0;
    fclose(f);
    free(buf);
    if (!tail) {
        fail(j, -ENOMEM, "out of memory reading the artifact");
        return;
    }
    if (j->status == 0 && read_err)
        fail(j, -EIO, "error reading artifact %s", j->path);
    if (j->status == 0 && total > j->max_bytes) {
        human_size(j->max_bytes, lim, sizeof lim);
        fail(j, -EFBIG, "artifact %s grew over the %s limit while it was read", j->path, lim);
    }
    bool sig = memcmp(head, "PK\x03\x04", 4) == 0 || memcmp(head, "PK\x05\x06", 4) == 0;
    bool eocd = false;
    for (size_t i = tail_len >= 22 ? tail_len - 22 + 1 : 0; i-- > 0;)
        if (memcmp(tail + i, "PK\x05\x06", 4) == 0) {
            eocd = true;
            break;
        }
    free(tail);
    if (j->status != 0)
        return;
    if (!sig || !eocd) {
        fail(j, -EINVAL, "artifact %s is not a valid zip archive (%s): rebuild it, or pass the "
                         "build output directory and let deploy-mcp zip it", j->path,
             !sig ? "no zip signature at the start" : "no end-of-central-directory record; "
                                                       "truncated?");
        return;
    }
    unsigned char d[TOOL_SHA256_LEN];
    tool_sha256_final(&h, d);
    hex_digest(d, j->digest);
    j->size = total;
    j->files = 0;
    snprintf(j->tmp_path, sizeof j->tmp_path, "%s", j->path);
    j->temporary = false;
}

/* ---- walking a directory ------------------------------------------------ */

typedef struct zentry {
    char *name;         /* name in the archive */
    char *src;          /* file to read (NULL for directories) */
    bool dir;
    bool empty;         /* a 0-byte file: stored, without zlib */
    uint32_t mode;
    time_t mtime;
    /* filled while writing */
    uint32_t crc, csize, usize, offset;
    unsigned method;
} zentry;

typedef struct zlist {
    zentry *v;
    size_t n, cap;
} zlist;

static void zlist_free(zlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].src);
    }
    free(l->v);
}

static int add_entry(zip_job *j, zlist *l, const char *name, const char *src, bool dir,
                     const struct stat *st)
{
    if (l->n >= ZIP_MAX_ENTRIES) {
        fail(j, -EFBIG, "artifact %s has more than %d files and directories", j->path,
             ZIP_MAX_ENTRIES);
        return -1;
    }
    if (strlen(name) > ZIP_MAX_NAME) {
        fail(j, -ENAMETOOLONG, "a path in artifact %s is too long for a zip entry", j->path);
        return -1;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        zentry *nv = realloc(l->v, cap * sizeof *nv);
        if (!nv) {
            fail(j, -ENOMEM, "out of memory listing the artifact");
            return -1;
        }
        l->v = nv;
        l->cap = cap;
    }
    zentry *e = &l->v[l->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    e->src = src ? strdup(src) : NULL;
    if (!e->name || (src && !e->src)) {
        free(e->name);
        free(e->src);
        fail(j, -ENOMEM, "out of memory listing the artifact");
        return -1;
    }
    e->dir = dir;
    e->empty = !dir && st->st_size == 0;
    e->mode = (uint32_t)st->st_mode;
    e->mtime = st->st_mtime;
    l->n++;
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads the names of one directory, sorted (so the same tree always gives
 * the same archive and digest). */
static char **list_dir(zip_job *j, const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    if (!d) {
        fail(j, -errno, "cannot read directory %s: %s", dir, strerror(errno));
        return NULL;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 32;
            char **nn = realloc(names, nc * sizeof *nn);
            if (!nn)
                goto oom;
            names = nn;
            cap = nc;
        }
        if (!(names[n] = strdup(de->d_name)))
            goto oom;
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_names);
    *count = n;
    if (!names)
        names = malloc(sizeof *names); /* an empty directory is not an error */
    if (!names)
        fail(j, -ENOMEM, "out of memory listing the artifact");
    return names;
oom:
    closedir(d);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    fail(j, -ENOMEM, "out of memory listing the artifact");
    return NULL;
}

static int walk(zip_job *j, zlist *l, const char *root, const char *dir, const char *rel,
                int depth)
{
    if (depth > ZIP_MAX_DEPTH) {
        fail(j, -ELOOP, "artifact %s nests directories deeper than %d levels", j->path,
             ZIP_MAX_DEPTH);
        return -1;
    }
    size_t n = 0;
    char **names = list_dir(j, dir, &n);
    if (!names)
        return -1;
    int rc = 0;
    char path[PATH_MAX], name[PATH_MAX + 1], sub[PATH_MAX];
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (canceled(j)) {
            rc = -1;
            break;
        }
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= sizeof path ||
            (size_t)snprintf(sub, sizeof sub, "%s%s", rel, names[i]) >= sizeof sub) {
            fail(j, -ENAMETOOLONG, "a path in artifact %s is too long", j->path);
            rc = -1;
            break;
        }
        struct stat st;
        if (lstat(path, &st) != 0) {
            fail(j, -errno, "cannot read %s: %s", path, strerror(errno));
            rc = -1;
            break;
        }
        const char *src = path;
        char real[PATH_MAX];
        if (S_ISLNK(st.st_mode)) {
            size_t rl = strlen(root);
            if (!realpath(path, real)) {
                fail(j, -ENOENT, "artifact entry %s is a broken symlink", sub);
                rc = -1;
                break;
            }
            if (strncmp(real, root, rl) != 0 || real[rl] != '/') {
                fail(j, -EPERM, "artifact entry %s is a symlink to %s, outside the artifact "
                                "directory; refusing to package it", sub, real);
                rc = -1;
                break;
            }
            if (stat(real, &st) != 0 || !S_ISREG(st.st_mode)) {
                fail(j, -EINVAL, "artifact entry %s is a symlink to a directory or special "
                                 "file; only links to regular files are packaged", sub);
                rc = -1;
                break;
            }
            src = real;
        }
        if (S_ISDIR(st.st_mode)) {
            if ((size_t)snprintf(name, sizeof name, "%s%s/", j->prefix, sub) >= sizeof name) {
                fail(j, -ENAMETOOLONG, "a path in artifact %s is too long", j->path);
                rc = -1;
                break;
            }
            if (add_entry(j, l, name, NULL, true, &st) != 0) {
                rc = -1;
                break;
            }
            char subrel[PATH_MAX];
            if ((size_t)snprintf(subrel, sizeof subrel, "%s/", sub) >= sizeof subrel) {
                fail(j, -ENAMETOOLONG, "a path in artifact %s is too long", j->path);
                rc = -1;
                break;
            }
            rc = walk(j, l, root, path, subrel, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            if ((uint64_t)st.st_size > ZIP_MAX_FILE) {
                fail(j, -EFBIG, "artifact entry %s is larger than 4 GiB", sub);
                rc = -1;
                break;
            }
            if ((size_t)snprintf(name, sizeof name, "%s%s", j->prefix, sub) >= sizeof name ||
                add_entry(j, l, name, src, false, &st) != 0) {
                fail(j, -ENAMETOOLONG, "a path in artifact %s is too long", j->path);
                rc = -1;
                break;
            }
            j->files++;
        } else {
            fail(j, -EINVAL, "artifact entry %s is not a regular file or directory (a socket, "
                             "pipe or device); remove it from the build output", sub);
            rc = -1;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* ---- writing the archive ------------------------------------------------ */

typedef struct zwriter {
    zip_job *j;
    FILE *f;
    uint64_t written;
    tool_sha256_ctx h;
} zwriter;

static int wr(zwriter *w, const void *p, size_t n)
{
    if (n == 0)
        return 0; /* p may be NULL (directories, empty files) */
    if (w->written + n > w->j->max_bytes) {
        char lim[32];
        human_size(w->j->max_bytes, lim, sizeof lim);
        fail(w->j, -EFBIG, "the zipped artifact %s is larger than the %s limit for a "
                           "bundle; deploy only the build output", w->j->path, lim);
        return -1;
    }
    if (fwrite(p, 1, n, w->f) != n) {
        fail(w->j, -EIO, "cannot write the temporary zip: %s", strerror(errno));
        return -1;
    }
    tool_sha256_update(&w->h, p, n);
    w->written += n;
    return 0;
}

static void dos_time(time_t t, unsigned *dtime, unsigned *ddate)
{
    struct tm tm;
    if (!localtime_r(&t, &tm) || tm.tm_year < 80) {
        *dtime = 0;
        *ddate = (1u << 5) | 1u; /* 1980-01-01, the earliest the format has */
        return;
    }
    *dtime = ((unsigned)tm.tm_hour << 11) | ((unsigned)tm.tm_min << 5) |
             ((unsigned)tm.tm_sec / 2u);
    *ddate = ((unsigned)(tm.tm_year - 80) << 9) | ((unsigned)(tm.tm_mon + 1) << 5) |
             (unsigned)tm.tm_mday;
}

/* Compresses one source file into *out (malloc'd), at most `budget` bytes. */
static int deflate_file(zip_job *j, zentry *e, uint64_t budget, unsigned char **out,
                        size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    FILE *f = fopen(e->src, "rb");
    if (!f) {
        fail(j, -errno, "cannot open %s: %s", e->src, strerror(errno));
        return -1;
    }
    unsigned char *in = malloc(ZIP_READ_CHUNK);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (!in || deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8,
                            Z_DEFAULT_STRATEGY) != Z_OK) {
        free(in);
        fclose(f);
        fail(j, -ENOMEM, "out of memory compressing the artifact");
        return -1;
    }
    unsigned char *buf = NULL;
    size_t cap = 0, len = 0;
    uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
    uint64_t usize = 0;
    int rc = 0, zr = Z_OK;
    bool eof = false;
    while (rc == 0 && zr != Z_STREAM_END) {
        if (canceled(j)) {
            rc = -1;
            break;
        }
        if (!eof && zs.avail_in == 0) {
            size_t got = fread(in, 1, ZIP_READ_CHUNK, f);
            if (got < ZIP_READ_CHUNK) {
                if (ferror(f)) {
                    fail(j, -EIO, "error reading %s", e->src);
                    rc = -1;
                    break;
                }
                eof = true;
            }
            usize += got;
            if (usize > ZIP_MAX_FILE) {
                fail(j, -EFBIG, "artifact entry %s is larger than 4 GiB", e->name);
                rc = -1;
                break;
            }
            crc = (uint32_t)crc32(crc, in, (uInt)got);
            zs.next_in = in;
            zs.avail_in = (uInt)got;
        }
        if (cap - len < ZIP_READ_CHUNK) {
            size_t nc = cap ? cap * 2 : ZIP_READ_CHUNK * 2;
            if (nc > budget + ZIP_READ_CHUNK * 2)
                nc = (size_t)budget + ZIP_READ_CHUNK * 2;
            if (nc <= cap) {
                char lim[32];
                human_size(j->max_bytes, lim, sizeof lim);
                fail(j, -EFBIG, "the zipped artifact %s is larger than the %s limit for a "
                                "bundle; deploy only the build output", j->path, lim);
                rc = -1;
                break;
            }
            unsigned char *nb = realloc(buf, nc);
            if (!nb) {
                fail(j, -ENOMEM, "out of memory compressing the artifact");
                rc = -1;
                break;
            }
            buf = nb;
            cap = nc;
        }
        zs.next_out = buf + len;
        zs.avail_out = (uInt)(cap - len);
        zr = deflate(&zs, eof ? Z_FINISH : Z_NO_FLUSH);
        if (zr == Z_STREAM_ERROR) {
            fail(j, -EIO, "compression failed for %s", e->name);
            rc = -1;
            break;
        }
        len = cap - zs.avail_out;
        if (len > budget) {
            char lim[32];
            human_size(j->max_bytes, lim, sizeof lim);
            fail(j, -EFBIG, "the zipped artifact %s is larger than the %s limit for a "
                            "bundle; deploy only the build output", j->path, lim);
            rc = -1;
        }
    }
    deflateEnd(&zs);
    free(in);
    fclose(f);
    if (rc != 0) {
        free(buf);
        return -1;
    }
    e->crc = crc;
    e->usize = (uint32_t)usize;
    e->csize = (uint32_t)len;
    *out = buf;
    *out_len = len;
    return 0;
}

static int write_entry(zwriter *w, zentry *e)
{
    zip_job *j = w->j;
    if (w->written > ZIP_MAX_FILE) {
        fail(j, -EFBIG, "the zip would pass 4 GiB, which needs ZIP64 offsets");
        return -1;
    }
    e->offset = (uint32_t)w->written;
    unsigned char *data = NULL;
    size_t dlen = 0;
    e->method = 0;
    if (!e->dir && !e->empty) {
        uint64_t budget = j->max_bytes > w->written ? j->max_bytes - w->written : 0;
        if (deflate_file(j, e, budget, &data, &dlen) != 0)
            return -1;
        if (e->usize > 0) {
            e->method = 8;
        } else {
            dlen = 0; /* emptied since it was listed: store it */
            e->csize = 0;
        }
    }
    unsigned dt, dd;
    dos_time(e->mtime, &dt, &dd);
    size_t nlen = strlen(e->name);
    unsigned char h[30];
    put32(h, 0x04034b50u);
    put16(h + 4, ZIP_VERSION_NEEDED);
    put16(h + 6, ZIP_FLAG_UTF8);
    put16(h + 8, e->method);
    put16(h + 10, dt);
    put16(h + 12, dd);
    put32(h + 14, e->crc);
    put32(h + 18, e->csize);
    put32(h + 22, e->usize);
    put16(h + 26, (unsigned)nlen);
    put16(h + 28, 0);
    int rc = (wr(w, h, sizeof h) == 0 && wr(w, e->name, nlen) == 0 &&
              wr(w, data, dlen) == 0) ? 0 : -1;
    free(data);
    return rc;
}

static int write_central(zwriter *w, zlist *l)
{
    uint64_t cd_start = w->written;
    for (size_t i = 0; i < l->n; i++) {
        zentry *e = &l->v[i];
        unsigned dt, dd;
        dos_time(e->mtime, &dt, &dd);
        size_t nlen = strlen(e->name);
        unsigned char h[46];
        put32(h, 0x02014b50u);
        put16(h + 4, ZIP_MADE_BY_UNIX | ZIP_VERSION_NEEDED);
        put16(h + 6, ZIP_VERSION_NEEDED);
        put16(h + 8, ZIP_FLAG_UTF8);
        put16(h + 10, e->method);
        put16(h + 12, dt);
        put16(h + 14, dd);
        put32(h + 16, e->crc);
        put32(h + 20, e->csize);
        put32(h + 24, e->usize);
        put16(h + 28, (unsigned)nlen);
        put16(h + 30, 0);
        put16(h + 32, 0);
        put16(h + 34, 0);
        put16(h + 36, 0);
        /* Unix mode in the high half; MS-DOS directory bit in the low. */
        uint32_t mode = e->dir ? (S_IFDIR | (e->mode & 07777)) : (S_IFREG | (e->mode & 07777));
        put32(h + 38, (mode << 16) | (e->dir ? 0x10u : 0u));
        put32(h + 42, e->offset);
        if (wr(w, h, sizeof h) != 0 || wr(w, e->name, nlen) != 0)
            return -1;
    }
    uint64_t cd_size = w->written - cd_start;
    if (cd_start > ZIP_MAX_FILE || cd_size > ZIP_MAX_FILE) {
        fail(w->j, -EFBIG, "the zip would pass 4 GiB, which needs ZIP64 offsets");
        return -1;
    }
    bool zip64 = l->n > 0xFFFFu;
    if (zip64) {
        uint64_t z64_at = w->written;
        unsigned char z[56];
        put32(z, 0x06064b50u);
        put64(z + 4, sizeof z - 12);
        put16(z + 12, ZIP_MADE_BY_UNIX | ZIP_VERSION_ZIP64);
        put16(z + 14, ZIP_VERSION_ZIP64);
        put32(z + 16, 0);
        put32(z + 20, 0);
        put64(z + 24, l->n);
        put64(z + 32, l->n);
        put64(z + 40, cd_size);
        put64(z + 48, cd_start);
        unsigned char loc[20];
        put32(loc, 0x07064b50u);
        put32(loc + 4, 0);
        put64(loc + 8, z64_at);
        put32(loc + 16, 1);
        if (wr(w, z, sizeof z) != 0 || wr(w, loc, sizeof loc) != 0)
            return -1;
    }
    unsigned char eocd[22];
    unsigned count = zip64 ? 0xFFFFu : (unsigned)l->n;
    put32(eocd, 0x06054b50u);
    put16(eocd + 4, 0);
    put16(eocd + 6, 0);
    put16(eocd + 8, count);
    put16(eocd + 10, count);
    put32(eocd + 12, (uint32_t)cd_size);
    put32(eocd + 16, (uint32_t)cd_start);
    put16(eocd + 20, 0);
    return wr(w, eocd, sizeof eocd);
}

static int make_temp(zip_job *j, FILE **out)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    if ((size_t)snprintf(j->tmp_path, sizeof j->tmp_path, "%s/%s", dir, ZIP_TMP_TEMPLATE) >=
        sizeof j->tmp_path) {
        fail(j, -ENAMETOOLONG, "TMPDIR is too long for the temporary zip");
        return -1;
    }
    int fd = mkstemp(j->tmp_path);
    if (fd < 0) {
        fail(j, -errno, "cannot create the temporary zip in %s: %s", dir, strerror(errno));
        j->tmp_path[0] = '\0';
        return -1;
    }
    j->temporary = true;
    *out = fdopen(fd, "wb");
    if (!*out) {
        close(fd);
        fail(j, -errno, "cannot open the temporary zip: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void zip_directory(zip_job *j, const struct stat *root_st)
{
    zlist l = {0};
    if (j->prefix[0] && add_entry(j, &l, j->prefix, NULL, true, root_st) != 0)
        return;
    if (walk(j, &l, j->path, j->path, "", 0) != 0) {
        zlist_free(&l);
        return;
    }
    zwriter w = {.j = j};
    tool_sha256_init(&w.h);
    if (make_temp(j, &w.f) != 0) {
        zlist_free(&l);
        return;
    }
    int rc = 0;
    for (size_t i = 0; i < l.n && rc == 0; i++)
        rc = canceled(j) ? -1 : write_entry(&w, &l.v[i]);
    if (rc == 0)
        rc = write_central(&w, &l);
    if (fclose(w.f) != 0 && rc == 0) {
        fail(j, -EIO, "cannot write the temporary zip: %s", strerror(errno));
        rc = -1;
    }
    zlist_free(&l);
    if (rc != 0)
        return;
    unsigned char d[TOOL_SHA256_LEN];
    tool_sha256_final(&w.h, d);
    hex_digest(d, j->digest);
    j->size = w.written;
}

/* ---- the job ------------------------------------------------------------ */

static void work_cb(uv_work_t *req)
{
    zip_job *j = req->data;
    struct stat st;
    if (canceled(j))
        return;
    if (stat(j->path, &st) != 0)
        fail(j, -errno, "cannot read artifact %s: %s", j->path, strerror(errno));
    else if (S_ISREG(st.st_mode))
        use_given_zip(j, &st);
    else if (S_ISDIR(st.st_mode))
        zip_directory(j, &st);
    else
        fail(j, -EINVAL, "artifact %s is neither a .zip file nor a directory", j->path);
    if (j->status != 0 && j->temporary) {
        unlink(j->tmp_path);
        j->temporary = false;
        j->tmp_path[0] = '\0';
    }
}

static void job_release(zip_job *j)
{
    if (j->temporary && j->tmp_path[0])
        unlink(j->tmp_path);
    free(j->path);
    free(j->prefix);
    free(j);
}

static void after_cb(uv_work_t *req, int status)
{
    zip_job *j = req->data;
    j->finished = true;
    if (status == UV_ECANCELED || atomic_load(&j->canceled)) {
        job_release(j);
        return;
    }
    j->res.status = j->status;
    j->res.error = j->status ? j->error : NULL;
    j->res.path = j->status ? NULL : j->tmp_path;
    j->res.temporary = j->status ? false : j->temporary;
    j->res.size = j->size;
    memcpy(j->res.digest, j->digest, sizeof j->res.digest);
    j->res.entries = j->files;
    j->in_callback = true;
    j->cb(j->ud, j, &j->res);
    j->in_callback = false;
    if (j->free_requested)
        job_release(j);
}

zip_job *zip_job_start(uv_loop_t *loop, const char *path, const char *prefix,
                       uint64_t max_bytes, zip_done_cb cb, void *ud)
{
    zip_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    const char *pre = prefix ? prefix : "";
    size_t plen = strlen(pre);
    bool slash = plen > 0 && pre[plen - 1] != '/';
    j->path = strdup(path);
    j->prefix = malloc(plen + 2);
    if (!j->path || !j->prefix) {
        free(j->path);
        free(j->prefix);
        free(j);
        return NULL;
    }
    snprintf(j->prefix, plen + 2, "%s%s", pre, slash ? "/" : "");
    /* A realpath'd directory never ends in '/', except "/" itself. */
    size_t n = strlen(j->path);
    while (n > 1 && j->path[n - 1] == '/')
        j->path[--n] = '\0';
    j->loop = loop;
    j->max_bytes = max_bytes;
    j->cb = cb;
    j->ud = ud;
    atomic_init(&j->canceled, 0);
    j->work.data = j;
    if (uv_queue_work(loop, &j->work, work_cb, after_cb) != 0) {
        free(j->path);
        free(j->prefix);
        free(j);
        return NULL;
    }
    return j;
}

void zip_job_cancel(zip_job *job)
{
    if (!job)
        return;
    if (job->finished) {
        /* Already reported: cancelling now just releases it. */
        zip_job_free(job);
        return;
    }
    atomic_store(&job->canceled, 1);
    /* Succeeds only while the work is still queued; a running worker sees
     * the flag instead. Either way after_cb releases the job. */
    uv_cancel((uv_req_t *)&job->work);
}

void zip_job_free(zip_job *job)
{
    if (!job)
        return;
    if (!job->finished) {
        zip_job_cancel(job);
        return;
    }
    if (job->in_callback) {
        job->free_requested = true;
        return;
    }
    job_release(job);
}
