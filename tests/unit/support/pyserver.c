/* pyserver.c — see pyserver.h. */
#include "pyserver.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int pyserver_start(pyserver *s, const char *script)
{
    s->pid = -1;
    s->stdin_fd = -1;
    s->port = 0;
    const char *py = getenv("PYTHON");
    const char *tests_dir = getenv("TESTS_DIR");
    if (!py || !*py)
        py = "python3";
    if (!tests_dir || !*tests_dir)
        tests_dir = "tests";
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", tests_dir, script);

    int out[2], in[2];
    if (pipe(out) != 0)
        return -1;
    if (pipe(in) != 0) {
        close(out[0]);
        close(out[1]);
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, in[0]);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    posix_spawn_file_actions_addclose(&fa, out[1]);
    char *argv[] = {(char *)py, (char *)"-u", path, NULL};
    int rc = posix_spawnp(&s->pid, py, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    if (rc != 0) {
        fprintf(stderr, "cannot start %s: %s\n", py, strerror(rc));
        s->pid = -1;
        close(in[1]);
        close(out[0]);
        return -1;
    }
    s->stdin_fd = in[1];
    fcntl(s->stdin_fd, F_SETFD, FD_CLOEXEC);

    char line[128];
    size_t len = 0;
    while (len < sizeof line - 1) {
        struct pollfd pfd = {.fd = out[0], .events = POLLIN};
        if (poll(&pfd, 1, PYSERVER_START_TIMEOUT_MS) <= 0)
            break;
        ssize_t n = read(out[0], line + len, 1);
        if (n <= 0 || line[len] == '\n')
            break;
        len++;
    }
    line[len] = '\0';
    close(out[0]);
    if (sscanf(line, "PORT %d", &s->port) != 1 || s->port <= 0) {
        fprintf(stderr, "%s did not report its port (got '%s')\n", script, line);
        return -1;
    }
    return 0;
}

void pyserver_stop(pyserver *s)
{
    if (s->stdin_fd >= 0)
        close(s->stdin_fd);
    s->stdin_fd = -1;
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = -1;
}
