/* zip.h — packaging a deploy artifact for upload, off the loop.
 *
 * Bundle platforms (BigCommerce, Mixpeek) upload a zip. The caller passes a
 * path that the tool layer has already confined to the target's artifactRoot
 * (realpath'd). A regular file ending in ".zip" is used as it is (after a
 * check of its local-file signature); a directory is zipped (deflate, via
 * zlib) into a new temporary file, each entry under `prefix` ("output/" for
 * BigCommerce, "" for none). All file I/O and compression run on libuv's
 * thread pool (uv_queue_work), never on the loop. */
#ifndef DEPLOY_MCP_ZIP_H
#define DEPLOY_MCP_ZIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define ZIP_MAX_ENTRIES 100000
#define ZIP_DIGEST_HEX 64          /* SHA-256 of the zip, lowercase hex */

typedef struct zip_job zip_job;

typedef struct zip_result {
    int status;                    /* 0, or a negative errno-style code */
    const char *error;             /* readable message when status != 0 */
    const char *path;              /* zip to upload (temporary or the original) */
    bool temporary;                /* path is a temp file: zip_job_free unlinks it */
    uint64_t size;                 /* bytes */
    char digest[ZIP_DIGEST_HEX + 1];
    unsigned long entries;         /* files in a zipped directory (0 for a given zip) */
} zip_result;

/* Called once on the loop thread when the job finishes (not after
 * zip_job_cancel). `res` is valid until zip_job_free. */
typedef void (*zip_done_cb)(void *ud, zip_job *job, const zip_result *res);

/* Starts packaging `path`. max_bytes caps the zip size (e.g. 64 MB for
 * BigCommerce): exceeding it fails the job with a clear message. Returns
 * NULL (and calls nothing) only when out of memory. */
zip_job *zip_job_start(uv_loop_t *loop, const char *path, const char *prefix,
                       uint64_t max_bytes, zip_done_cb cb, void *ud);

/* Cancels a running job: its callback will not run, and the temporary file
 * (if any) is removed once the worker stops. Frees the job eventually. */
void zip_job_cancel(zip_job *job);

/* Releases a finished job (after its callback ran), unlinking a temporary
 * zip. */
void zip_job_free(zip_job *job);

#endif
