/* pyserver.h — unit tests' scripted HTTP servers: a Python script under
 * tests/ started as a child process that prints "PORT <n>" on its first
 * line and exits when its stdin closes (so it cannot outlive a crashed
 * test). PYTHON and TESTS_DIR come from ctest's environment. */
#ifndef DEPLOY_MCP_TEST_PYSERVER_H
#define DEPLOY_MCP_TEST_PYSERVER_H

#include <sys/types.h>

#define PYSERVER_START_TIMEOUT_MS 10000

typedef struct pyserver {
    pid_t pid;
    int stdin_fd;
    int port;
} pyserver;

/* Starts TESTS_DIR/<script> and waits for its port. Returns 0, or -1 after
 * printing why to stderr. */
int pyserver_start(pyserver *s, const char *script);

/* Closes its stdin, terminates it and reaps it. Safe on a failed start. */
void pyserver_stop(pyserver *s);

#endif
