/* test_zip.c — packaging deploy artifacts (providers/zip.c): a directory
 * zipped under a prefix and checked by Python's zipfile (the PYTHON variable
 * ctest sets, else python3), stable digests, the size cap, a given .zip used
 * as it is, symlink confinement, ZIP64 entry counts, and cancellation that
 * leaves no temporary file. Every test runs its own loop and ends with
 * uv_loop_close() == 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "providers/zip.h"
#include "tools/sha256.h"

#define TEST_MAX_BYTES ((uint64_t)64 << 20)
#define CMD_MAX (PATH_MAX * 3)

static char g_dir[PATH_MAX];   /* per-test scratch directory */
static char g_tmp[PATH_MAX];   /* TMPDIR for the jobs: must be empty afterwards */

/* ---- fixtures ----------------------------------------------------------- */

static void join(char *out, const char *a, const char *b)
{
    assert_true((size_t)snprintf(out, PATH_MAX, "%s/%s", a, b) < PATH_MAX);
}

static void write_file(const char *rel, const void *data, size_t len)
{
    char p[PATH_MAX];
    join(p, g_dir, rel);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    if (len)
        assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void make_dir(const char *rel)
{
    char p[PATH_MAX];
    join(p, g_dir, rel);
    assert_int_equal(mkdir(p, 0755), 0);
}

static void fill_random(unsigned char *b, size_t n, uint32_t seed)
{
    uint32_t x = seed ? seed : 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = (unsigned char)x;
    }
}

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            char sub[PATH_MAX];
            join(sub, path, de->d_name);
            rm_rf(sub);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    if (d)
        closedir(d);
    return n;
}

static int setup(void **state)
{
    (void)state;
    /* The jobs' TMPDIR is set per test below: remember the real one. */
    static char base[PATH_MAX / 2];
    if (!base[0]) {
        const char *env = getenv("TMPDIR");
        snprintf(base, sizeof base, "%s", env && *env ? env : "/tmp");
    }
    assert_true((size_t)snprintf(g_dir, sizeof g_dir, "%s/zip-test-XXXXXX", base) <
                sizeof g_dir);
    assert_non_null(mkdtemp(g_dir));
    join(g_tmp, g_dir, "jobtmp");
    assert_int_equal(mkdir(g_tmp, 0700), 0);
    setenv("TMPDIR", g_tmp, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rm_rf(g_dir);
    return 0;
}

/* A typical build output: nested dirs, an empty file and dir, text that
 * compresses and binary that does not. */
static void make_tree(const char *root)
{
    char p[PATH_MAX];
    make_dir(root);
    snprintf(p, sizeof p, "%s/assets", root);
    make_dir(p);
    snprintf(p, sizeof p, "%s/assets/img", root);
    make_dir(p);
    snprintf(p, sizeof p, "%s/emptydir", root);
    make_dir(p);
    snprintf(p, sizeof p, "%s/deep", root);
    make_dir(p);
    snprintf(p, sizeof p, "%s/deep/a", root);
    make_dir(p);
    snprintf(p, sizeof p, "%s/deep/a/b", root);
    make_dir(p);
    snprintf(p, sizeof p, "%s/index.html", root);
    write_file(p, "<html>hello</html>\n", 19);
    snprintf(p, sizeof p, "%s/empty.txt", root);
    write_file(p, "", 0);
    static char text[200000];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = "abcdefghij\n"[i % 11];
    snprintf(p, sizeof p, "%s/assets/app.js", root);
    write_file(p, text, sizeof text);
    static unsigned char bin[150000];
    fill_random(bin, sizeof bin, 42);
    snprintf(p, sizeof p, "%s/assets/img/logo.bin", root);
    write_file(p, bin, sizeof bin);
    snprintf(p, sizeof p, "%s/deep/a/b/leaf.txt", root);
    write_file(p, "leaf", 4);
}

/* ---- running a job ------------------------------------------------------ */

typedef struct outcome {
    bool called;
    int status;
    char error[512];
    char path[PATH_MAX];
    bool temporary;
    uint64_t size;
    char digest[ZIP_DIGEST_HEX + 1];
    unsigned long entries;
    bool free_inside;
} outcome;

static void on_done(void *ud, zip_job *job, const zip_result *res)
{
    outcome *o = ud;
    o->called = true;
    o->status = res->status;
    snprintf(o->error, sizeof o->error, "%s", res->error ? res->error : "");
    snprintf(o->path, sizeof o->path, "%s", res->path ? res->path : "");
    o->temporary = res->temporary;
    o->size = res->size;
    memcpy(o->digest, res->digest, sizeof o->digest);
    o->entries = res->entries;
    if (o->free_inside)
        zip_job_free(job);
}

/* Runs one job to completion; returns it (NULL when freed inside). */
static zip_job *run(const char *rel, const char *prefix, uint64_t max, outcome *o)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char p[PATH_MAX];
    join(p, g_dir, rel);
    zip_job *job = zip_job_start(&loop, p, prefix, max, on_done, o);
    assert_non_null(job);
    assert_false(o->called); /* never inside the starting call */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(o->called);
    assert_int_equal(uv_loop_close(&loop), 0);
    return o->free_inside ? NULL : job;
}

static void sha256_file(const char *path, char hex[ZIP_DIGEST_HEX + 1])
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    tool_sha256_ctx c;
    tool_sha256_init(&c);
    unsigned char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        tool_sha256_update(&c, buf, n);
    fclose(f);
    unsigned char d[TOOL_SHA256_LEN];
    tool_sha256_final(&c, d);
    for (int i = 0; i < TOOL_SHA256_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

/* Checks the archive with Python's zipfile against the source directory:
 * CRCs (testzip), every file's bytes, names under the prefix, explicit
 * directory entries. Prints OK on success. */
static const char *const verify_py =
    "import os,sys,zipfile\n"
    "z=zipfile.ZipFile(sys.argv[1]); src=sys.argv[2]; pre=sys.argv[3]\n"
    "assert z.testzip() is None\n"
    "names=z.namelist(); assert len(names)==len(set(names)), 'duplicate names'\n"
    "assert all(n.startswith(pre) for n in names), names\n"
    "if len(sys.argv)>4: print('OK', len(names)); sys.exit(0)\n"
    "want={}\n"
    "for d,ds,fs in os.walk(src):\n"
    "  for f in fs:\n"
    "    p=os.path.join(d,f); want[pre+os.path.relpath(p,src)]=open(p,'rb').read()\n"
    "  for x in ds:\n"
    "    want[pre+os.path.relpath(os.path.join(d,x),src)+'/']=None\n"
    "got={n:(None if n.endswith('/') else z.read(n)) for n in names if n!=pre}\n"
    "assert got==want, (sorted(got), sorted(want))\n"
    "for i in z.infolist():\n"
    "  assert (i.external_attr>>16)!=0, i\n"
    "print('OK', len(names))\n";

static void verify_with_python(const char *zip, const char *srcdir, const char *prefix,
                               int expect_names, bool names_only)
{
    char script[PATH_MAX];
    join(script, g_dir, "verify.py");
    write_file("verify.py", verify_py, strlen(verify_py));
    const char *py = getenv("PYTHON");
    char cmd[CMD_MAX];
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' '%s' '%s'%s 2>&1", py && *py ? py : "python3",
             script, zip, srcdir, prefix, names_only ? " names-only" : "");
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[4096] = "";
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int rc = pclose(p);
    if (rc != 0 || strncmp(out, "OK", 2) != 0)
        fail_msg("python zipfile check failed: %s", out);
    if (expect_names >= 0) {
        char want[32];
        snprintf(want, sizeof want, "OK %d", expect_names);
        assert_string_equal(strtok(out, "\n"), want);
    }
}

/* ---- tests -------------------------------------------------------------- */

static void test_zip_directory(void **state)
{
    (void)state;
    make_tree("build");
    outcome o = {0};
    zip_job *job = run("build", "output/", TEST_MAX_BYTES, &o);
    assert_int_equal(o.status, 0);
    assert_true(o.temporary);
    assert_int_equal(o.entries, 5);
    assert_int_equal(strncmp(o.path, g_tmp, strlen(g_tmp)), 0);
    struct stat st;
    assert_int_equal(stat(o.path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, o.size);
    /* Compressed: the 200 kB of text shrinks; the random 150 kB does not. */
    assert_true(o.size < 200000);
    char hex[ZIP_DIGEST_HEX + 1];
    sha256_file(o.path, hex);
    assert_string_equal(hex, o.digest);
    char src[PATH_MAX];
    join(src, g_dir, "build");
    /* output/ + 6 directories + 5 files */
    verify_with_python(o.path, src, "output/", 12, false);
    zip_job_free(job);
    assert_int_equal(access(o.path, F_OK), -1); /* the temporary zip is gone */
    assert_int_equal(count_entries(g_tmp), 0);
}

static void test_zip_no_prefix(void **state)
{
    (void)state;
    make_tree("site");
    outcome o = {0};
    zip_job *job = run("site", "", TEST_MAX_BYTES, &o);
    assert_int_equal(o.status, 0);
    char src[PATH_MAX];
    join(src, g_dir, "site");
    verify_with_python(o.path, src, "", 11, false);
    zip_job_free(job);
}

static void test_zip_digest_stable(void **state)
{
    (void)state;
    make_tree("build");
    outcome a = {0}, b = {0};
    zip_job *ja = run("build", "output/", TEST_MAX_BYTES, &a);
    zip_job *jb = run("build", "output/", TEST_MAX_BYTES, &b);
    assert_int_equal(a.status, 0);
    assert_int_equal(b.status, 0);
    assert_string_not_equal(a.path, b.path);
    assert_string_equal(a.digest, b.digest);
    assert_int_equal(a.size, b.size);
    zip_job_free(ja);
    zip_job_free(jb);
    assert_int_equal(count_entries(g_tmp), 0);
}

static void test_zip_cap(void **state)
{
    (void)state;
    make_dir("big");
    static unsigned char bin[300000];
    fill_random(bin, sizeof bin, 7);
    write_file("big/random.bin", bin, sizeof bin);
    outcome o = {0};
    zip_job *job = run("big", "output/", 100000, &o);
    assert_int_equal(o.status, -EFBIG);
    assert_non_null(strstr(o.error, "limit"));
    assert_string_equal(o.path, "");
    zip_job_free(job);
    assert_int_equal(count_entries(g_tmp), 0); /* no partial zip left behind */
}

static void test_zip_given_zip(void **state)
{
    (void)state;
    make_tree("build");
    outcome o = {0};
    zip_job *job = run("build", "output/", TEST_MAX_BYTES, &o);
    assert_int_equal(o.status, 0);
    /* Copy it to bundle.zip and pass that: it is used as it is. */
    FILE *in = fopen(o.path, "rb");
    char dst[PATH_MAX];
    join(dst, g_dir, "bundle.zip");
    FILE *out = fopen(dst, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
    zip_job_free(job);

    outcome g = {0};
    job = run("bundle.zip", "output/", TEST_MAX_BYTES, &g);
    assert_int_equal(g.status, 0);
    assert_false(g.temporary);
    assert_string_equal(g.path, dst);
    assert_string_equal(g.digest, o.digest);
    assert_int_equal(g.size, o.size);
    assert_int_equal(g.entries, 0);
    zip_job_free(job);
    assert_int_equal(access(dst, F_OK), 0); /* never deleted: not ours */

    outcome small = {0};
    job = run("bundle.zip", "output/", 100, &small); /* over the cap */
    assert_int_equal(small.status, -EFBIG);
    zip_job_free(job);

    write_file("fake.zip", "this is not a zip archive at all", 32);
    outcome bad = {0};
    job = run("fake.zip", "output/", TEST_MAX_BYTES, &bad);
    assert_int_equal(bad.status, -EINVAL);
    assert_non_null(strstr(bad.error, "not a valid zip"));
    zip_job_free(job);

    write_file("notes.txt", "hello", 5);
    outcome txt = {0};
    job = run("notes.txt", "output/", TEST_MAX_BYTES, &txt);
    assert_int_equal(txt.status, -EINVAL);
    assert_non_null(strstr(txt.error, "not a .zip"));
    zip_job_free(job);

    outcome missing = {0};
    job = run("does-not-exist", "output/", TEST_MAX_BYTES, &missing);
    assert_int_equal(missing.status, -ENOENT);
    zip_job_free(job);
}

static void test_zip_symlinks(void **state)
{
    (void)state;
    make_dir("linked");
    write_file("linked/real.txt", "real content", 12);
    write_file("secret.txt", "outside the artifact", 20);
    char p[PATH_MAX], target[PATH_MAX];
    join(p, g_dir, "linked/inside-link.txt");
    assert_int_equal(symlink("real.txt", p), 0);
    outcome o = {0};
    zip_job *job = run("linked", "output/", TEST_MAX_BYTES, &o);
    assert_int_equal(o.status, 0); /* a link to a file inside is packaged */
    assert_int_equal(o.entries, 2);
    zip_job_free(job);

    join(p, g_dir, "linked/escape.txt");
    join(target, g_dir, "secret.txt");
    assert_int_equal(symlink(target, p), 0);
    outcome e = {0};
    job = run("linked", "output/", TEST_MAX_BYTES, &e);
    assert_int_equal(e.status, -EPERM);
    assert_non_null(strstr(e.error, "outside the artifact"));
    zip_job_free(job);
    assert_int_equal(count_entries(g_tmp), 0);
}

static void test_zip_free_inside_callback(void **state)
{
    (void)state;
    make_tree("build");
    outcome o = {.free_inside = true};
    assert_null(run("build", "output/", TEST_MAX_BYTES, &o));
    assert_int_equal(o.status, 0);
    assert_int_equal(access(o.path, F_OK), -1);
}

static void never_called(void *ud, zip_job *job, const zip_result *res)
{
    (void)ud;
    (void)job;
    (void)res;
    fail_msg("a cancelled job reported");
}

static void cancel_later(uv_timer_t *t)
{
    zip_job_cancel(t->data);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_zip_cancel(void **state)
{
    (void)state;
    /* Enough incompressible data that the worker is still busy. */
    make_dir("huge");
    static unsigned char bin[1 << 20];
    for (int i = 0; i < 12; i++) {
        char name[64];
        fill_random(bin, sizeof bin, (uint32_t)i + 1);
        snprintf(name, sizeof name, "huge/part%02d.bin", i);
        write_file(name, bin, sizeof bin);
    }
    char p[PATH_MAX];
    join(p, g_dir, "huge");

    /* Cancelled at once (usually before a thread picked it up). */
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    zip_job *job = zip_job_start(&loop, p, "output/", TEST_MAX_BYTES, never_called, NULL);
    assert_non_null(job);
    zip_job_cancel(job);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(count_entries(g_tmp), 0);

    /* Cancelled while the worker is compressing. */
    assert_int_equal(uv_loop_init(&loop), 0);
    job = zip_job_start(&loop, p, "output/", TEST_MAX_BYTES, never_called, NULL);
    assert_non_null(job);
    uv_timer_t timer;
    uv_timer_init(&loop, &timer);
    timer.data = job;
    uv_timer_start(&timer, cancel_later, 30, 0);
    uint64_t t0 = uv_hrtime();
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_true(uv_hrtime() - t0 < 5000000000ull); /* the worker noticed promptly */
    assert_int_equal(count_entries(g_tmp), 0);
}

static void test_zip_many_entries(void **state)
{
    (void)state;
    /* More than 65 535 entries needs the ZIP64 end record. Creating 66 000
     * files takes tens of seconds on a loaded disk, so this runs only with
     * ZIP_TEST_SLOW=1 (as a developer does after touching write_central). */
    const char *slow = getenv("ZIP_TEST_SLOW");
    if (!slow || strcmp(slow, "1") != 0)
        skip();
    make_dir("many");
    for (int d = 0; d < 66; d++) {
        char dir[64];
        snprintf(dir, sizeof dir, "many/d%02d", d);
        make_dir(dir);
        for (int f = 0; f < 1000; f++) {
            char name[PATH_MAX], rel[96];
            snprintf(rel, sizeof rel, "%s/f%04d", dir, f);
            join(name, g_dir, rel);
            int fd = open(name, O_CREAT | O_WRONLY, 0644);
            assert_true(fd >= 0);
            close(fd);
        }
    }
    outcome o = {0};
    zip_job *job = run("many", "output/", TEST_MAX_BYTES, &o);
    assert_int_equal(o.status, 0);
    assert_int_equal(o.entries, 66000);
    char src[PATH_MAX];
    join(src, g_dir, "many");
    verify_with_python(o.path, src, "output/", 1 + 66 + 66000, true);
    zip_job_free(job);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_zip_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zip_no_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zip_digest_stable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zip_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zip_given_zip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zip_symlinks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zip_free_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zip_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zip_many_entries, setup, teardown),
    };
    /* ZIP_TEST_ONLY=test_zip_cancel runs one test (cmocka's glob filter). */
    const char *only = getenv("ZIP_TEST_ONLY");
    if (only && *only)
        cmocka_set_test_filter(only);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
