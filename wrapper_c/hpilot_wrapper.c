/*
 * hpilot-wrapper: runs one task as its child and reports exactly when it ran.
 *
 *   hpilot-wrapper [-r FD | -f PATH] [-t TASK_ID] [-c CPUS] [-e EXE] -- PROGRAM [ARG...]
 *
 * The record is ONE line of JSON, written with ONE write() of less than PIPE_BUF
 * bytes, so records of concurrent wrappers sharing a pipe, a FIFO or an O_APPEND
 * file never interleave.  Where it goes:
 *   -r FD    an inherited descriptor (hpilot passes the write end of a pipe whose
 *            reader it keeps open for the whole run, so no record is ever lost to
 *            the EOF/re-open race of a FIFO reader);
 *   -f PATH  a file or FIFO, opened O_WRONLY|O_APPEND|O_CREAT;
 *   neither  standard error (handy by hand).
 * -c CPUS (e.g. "0-3,8") binds the task (and the wrapper) to those cores before
 * the task starts, so binding costs the launcher nothing.  -e EXE is the already
 * resolved program path; without it PROGRAM is searched in PATH.
 *
 * The wrapper exits with the task's exit status, or 128+N when signal N killed it.
 * It shares the task's process group and survives the usual termination signals
 * sent to that group, so that it can still report a task killed by SIGTERM.
 *
 * C99 + POSIX/Linux only (posix_spawn, wait4, sched_setaffinity); no dependencies.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RECORD_MAX 4000 /* < PIPE_BUF (4096 on Linux): one atomic write */
#define TEXT_MAX 1024   /* longest task id / error kept in a record */
#define FORMAT_VERSION 1

extern char **environ;

/* Signals the wrapper catches (a no-op handler) instead of dying: the task gets
 * them too, since it is in the same process group, and ends; the wrapper reports. */
static const int CAUGHT[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGPIPE};
#define NCAUGHT ((int)(sizeof(CAUGHT) / sizeof(CAUGHT[0])))

static void on_signal(int sig) { (void)sig; }

static void usage(void) {
    fputs("usage: hpilot-wrapper [-r FD | -f PATH] [-t TASK_ID] [-c CPUS] [-e EXE] -- PROGRAM [ARG...]\n",
          stderr);
    exit(125);
}

/* Append s to buf as JSON string content (quotes not included), at most max bytes of s. */
static size_t json_str(char *buf, size_t cap, const char *s, size_t max) {
    size_t n = 0;
    for (size_t i = 0; s[i] != '\0' && i < max && n + 7 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", c);
        } else {
            buf[n++] = (char)c;
        }
    }
    buf[n] = '\0';
    return n;
}

/* "0-3,8,10-11" -> set; returns 0 on success, -1 on a malformed list. */
static int parse_cpus(const char *list, cpu_set_t *set) {
    CPU_ZERO(set);
    const char *p = list;
    while (*p) {
        char *end;
        long lo = strtol(p, &end, 10), hi;
        if (end == p || lo < 0) return -1;
        hi = lo;
        if (*end == '-') {
            p = end + 1;
            hi = strtol(p, &end, 10);
            if (end == p || hi < lo) return -1;
        }
        if (hi >= CPU_SETSIZE) return -1;
        for (long c = lo; c <= hi; c++) CPU_SET((int)c, set);
        if (*end == ',') end++;
        else if (*end != '\0') return -1;
        p = end;
    }
    return 0;
}

/* Nothing the launcher had open but 0-2 reaches the task: mark every other descriptor
 * close-on-exec here, in C, so the launcher need not scan its descriptors per task. */
static void no_inherited_fds(void) {
#if defined(SYS_close_range) && defined(CLOSE_RANGE_CLOEXEC)
    if (syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) == 0) return;
#elif defined(SYS_close_range)
    if (syscall(SYS_close_range, 3u, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */) == 0) return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536) max = 65536;
    for (int fd = 3; fd < (int)max; fd++) {
        int flags = fcntl(fd, F_GETFD);
        if (flags >= 0 && !(flags & FD_CLOEXEC)) (void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    }
}

static double secs(const struct timespec *t) { return (double)t->tv_sec + (double)t->tv_nsec / 1e9; }
static double tv_secs(const struct timeval *t) { return (double)t->tv_sec + (double)t->tv_usec / 1e6; }

int main(int argc, char **argv) {
    int out_fd = -1;
    const char *out_path = NULL, *task = "", *cpus = NULL, *exe = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "+r:f:t:c:e:")) != -1) {
        switch (opt) {
        case 'r': out_fd = atoi(optarg); break;
        case 'f': out_path = optarg; break;
        case 't': task = optarg; break;
        case 'c': cpus = optarg; break;
        case 'e': exe = optarg; break;
        default: usage();
        }
    }
    if (optind >= argc) usage();
    char **task_argv = argv + optind;
    no_inherited_fds(); /* includes the record descriptor: the task does not inherit it */

    char err[TEXT_MAX] = "";
    char affinity_err[128] = "";
    if (cpus != NULL && cpus[0] != '\0') {
        cpu_set_t set;
        if (parse_cpus(cpus, &set) != 0)
            snprintf(affinity_err, sizeof affinity_err, "bad cpu list");
        else if (sched_setaffinity(0, sizeof set, &set) != 0)
            snprintf(affinity_err, sizeof affinity_err, "sched_setaffinity: %s", strerror(errno));
    }

    /* Catch termination signals; the task must start with default dispositions. */
    sigset_t defaults, empty;
    sigemptyset(&defaults);
    sigemptyset(&empty);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < NCAUGHT; i++) {
        sigaction(CAUGHT[i], &sa, NULL);
        sigaddset(&defaults, CAUGHT[i]);
    }
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

    struct timespec start_rt, start_mono, stop_rt, stop_mono;
    pid_t pid = 0;
    clock_gettime(CLOCK_REALTIME, &start_rt);
    clock_gettime(CLOCK_MONOTONIC, &start_mono);
    int rc = exe != NULL ? posix_spawn(&pid, exe, NULL, &attr, task_argv, environ)
                         : posix_spawnp(&pid, task_argv[0], NULL, &attr, task_argv, environ);
    posix_spawnattr_destroy(&attr);

    int status = 0, exit_code, sig = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    if (rc != 0) {
        snprintf(err, sizeof err, "cannot execute %s: %s", exe != NULL ? exe : task_argv[0], strerror(rc));
        exit_code = (rc == ENOENT || rc == ENOTDIR) ? 127 : 126;
        pid = 0;
        stop_rt = start_rt;
        stop_mono = start_mono;
    } else {
        pid_t got;
        do {
            got = wait4(pid, &status, 0, &ru);
        } while (got < 0 && errno == EINTR);
        clock_gettime(CLOCK_REALTIME, &stop_rt);
        clock_gettime(CLOCK_MONOTONIC, &stop_mono);
        if (got < 0) {
            snprintf(err, sizeof err, "wait4: %s", strerror(errno));
            exit_code = 125;
        } else if (WIFSIGNALED(status)) {
            sig = WTERMSIG(status);
            exit_code = 128 + sig;
        } else {
            exit_code = WEXITSTATUS(status);
        }
    }
    if (err[0] != '\0') fprintf(stderr, "hpilot-wrapper: %s\n", err);

    char host[256] = "";
    gethostname(host, sizeof host - 1);
    char task_json[TEXT_MAX * 6 + 8], host_json[256 * 6 + 8], err_json[TEXT_MAX * 6 + 8];
    json_str(task_json, sizeof task_json, task, TEXT_MAX / 2);
    json_str(host_json, sizeof host_json, host, 128);
    json_str(err_json, sizeof err_json, err[0] ? err : affinity_err, 256);

    char rec[RECORD_MAX + 1];
    int n = snprintf(rec, sizeof rec,
                     "{\"v\":%d,\"task\":\"%s\",\"host\":\"%s\",\"wpid\":%ld,\"pid\":%ld,"
                     "\"start\":%.6f,\"stop\":%.6f,\"start_mono\":%.9f,\"stop_mono\":%.9f,"
                     "\"exit\":%d,\"signal\":%d,\"utime\":%.6f,\"stime\":%.6f,\"maxrss_kb\":%ld,"
                     "\"cpus\":\"%s\",\"error\":\"%s\"}\n",
                     FORMAT_VERSION, task_json, host_json, (long)getpid(), (long)pid, secs(&start_rt),
                     secs(&stop_rt), secs(&start_mono), secs(&stop_mono), exit_code, sig,
                     tv_secs(&ru.ru_utime), tv_secs(&ru.ru_stime), ru.ru_maxrss,
                     cpus != NULL ? cpus : "", err_json);
    if (n < 0 || n > RECORD_MAX) { /* cannot happen with the limits above; keep the record parseable */
        n = snprintf(rec, sizeof rec, "{\"v\":%d,\"task\":\"%.200s\",\"exit\":%d,\"error\":\"record too long\"}\n",
                     FORMAT_VERSION, task_json, exit_code);
    }

    int fd = out_fd >= 0 ? out_fd : 2;
    if (out_path != NULL) {
        fd = open(out_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            fprintf(stderr, "hpilot-wrapper: cannot open %s: %s\n", out_path, strerror(errno));
            fd = 2;
        }
    }
    ssize_t w;
    do {
        w = write(fd, rec, (size_t)n); /* blocks while a pipe is full: late, never lost */
    } while (w < 0 && errno == EINTR);
    if (w != n) fprintf(stderr, "hpilot-wrapper: record not written: %s\n", w < 0 ? strerror(errno) : "short");
    return exit_code;
}
