/* runner_fork.c - runs tasks as child processes.
 *
 * A built-in stage task runs in a fork()ed child without exec (exec costs
 * ~11 ms here): the child already has the config in memory and calls
 * ops->run.  A command task is fork+exec: execvp of its words when the line
 * has no shell metacharacters, else /bin/sh -c.  Each child gets its own
 * process group (signals are forwarded to the whole group), dies with its
 * parent (PR_SET_PDEATHSIG), writes stdout and stderr to the task's log, and
 * sees its thread budget in OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and
 * KPIPE_THREADS.  Children are reaped with wait4 for CPU time and peak RSS.
 *
 * Signals: SIGINT, SIGTERM and SIGCHLD stay blocked in the parent while the
 * runner lives and are taken with sigtimedwait, so none is lost between a
 * check and a sleep, and no handler runs in the middle of anything.
 */
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "../lib/afile.h"
#include "../lib/err.h"
#include "../stages/stage.h"

void openblas_set_num_threads(int);

typedef struct child {
    pid_t pid;
    int task;
    int64_t start_ns;
    struct timespec t0;     /* CLOCK_MONOTONIC at start */
} child;

typedef struct fork_runner {
    kp_runner base;         /* first: a kp_runner * is a fork_runner * */
    const kp_config *cfg;
    int jobs, threads;
    child *kids;
    int n_kids;
    kp_run_result *done;    /* reaped, not yet returned by wait */
    int n_done;
    sigset_t orig_mask;
    int n_signals;          /* interrupts forwarded so far */
} fork_runner;

static fork_runner *R(kp_runner *r) { return (fork_runner *)r; }

static int64_t wall_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the child ---- */

/* Returns 1 if the command line needs a shell (metacharacters, an assignment). */
static int needs_shell(const char *cmd)
{
    if (strpbrk(cmd, "|&;<>()$`\\\"'*?[]#~{}!\t\n"))
        return 1;
    const char *sp = strchr(cmd, ' ');
    const char *eq = strchr(cmd, '=');
    return eq && (!sp || eq < sp);
}

/* Splits cmd on spaces into a NULL-terminated heap argv (strings point into copy). */
static char **split_words(char *copy)
{
    size_t n = 0, cap = 8;
    char **argv = malloc(cap * sizeof *argv);
    for (char *tok = strtok(copy, " "); tok && argv; tok = strtok(NULL, " ")) {
        if (n + 2 > cap) {
            char **na = realloc(argv, (cap *= 2) * sizeof *na);
            if (!na)
                free(argv);
            argv = na;
        }
        if (argv)
            argv[n++] = tok;
    }
    if (argv)
        argv[n] = NULL;
    return argv;
}

static void set_thread_env(int threads)
{
    char n[32];
    snprintf(n, sizeof n, "%d", threads);
    setenv("OPENBLAS_NUM_THREADS", n, 1);
    setenv("OMP_NUM_THREADS", n, 1);
    setenv("KPIPE_THREADS", n, 1);
}

/* In the child: signals, parent death, process group, stdio, thread budget. */
static void child_setup(fork_runner *fr, pid_t parent, int logfd)
{
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, &fr->orig_mask, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);   /* the parent died before prctl took effect */
    setpgid(0, 0);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) {
        dup2(devnull, 0);
        close(devnull);
    }
    dup2(logfd, 1);
    dup2(logfd, 2);
    close(logfd);
    set_thread_env(fr->threads);
}

static void child_exec(const kp_task *t)
{
    if (t->cwd && chdir(t->cwd) != 0) {
        fprintf(stderr, "kpipe: %s: cannot enter %s: %s\n", t->id, t->cwd, strerror(errno));
        _exit(127);
    }
    char *copy = strdup(t->command);
    char **argv = copy && !needs_shell(t->command) ? split_words(copy) : NULL;
    if (argv && argv[0])
        execvp(argv[0], argv);
    else
        execl("/bin/sh", "sh", "-c", t->command, (char *)NULL);
    fprintf(stderr, "kpipe: %s: cannot run '%s': %s\n", t->id, t->command, strerror(errno));
    _exit(127);
}

static void child_builtin(fork_runner *fr, const kp_task *t)
{
    char err[KP_ERRLEN] = "";
    const kp_stage *st = &fr->cfg->stages[t->stage];
    openblas_set_num_threads(fr->threads);
    int fd = dup(1);
    FILE *log = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!log)
        _exit(1);
    setvbuf(log, NULL, _IOLBF, 0);
    int rc = st->dir ? kp_mkdirs(st->dir, err, sizeof err) : 0;
    if (rc == 0) {
        kp_task_ctx ctx = { fr->cfg, st, t->part, t->n_parts, fr->threads, log };
        rc = st->ops->run(&ctx, err, sizeof err);
    }
    if (rc < 0)
        fprintf(log, "kpipe: %s: %s\n", t->id, err[0] ? err : kp_strerror(rc));
    fflush(stdout);
    fflush(stderr);
    fclose(log);
    _exit(rc < 0 ? 1 : 0);
}

/* ---- the parent ---- */

static int open_log(const kp_task *t, char *err, size_t errlen)
{
    const char *path = t->log_path ? t->log_path : "/dev/null";
    if (t->dir && kp_mkdirs(t->dir, err, errlen) < 0)
        return KP_ERR_IO;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0)
        return kp_errf(err, errlen, KP_ERR_IO, "%s: cannot create the log of %s: %s",
                       path, t->id, strerror(errno));
    return fd;
}

static int fork_can_start_more(kp_runner *r)
{
    return R(r)->n_kids + R(r)->n_done < R(r)->jobs;   /* done[] has room for jobs */
}

static int fork_start(kp_runner *r, const kp_graph *g, int task, char *err, size_t errlen)
{
    fork_runner *fr = R(r);
    const kp_task *t = kp_graph_task(g, task);
    if (!t->command && (!fr->cfg || t->stage < 0 || !fr->cfg->stages[t->stage].ops->run))
        return kp_errf(err, errlen, KP_ERR_INTERNAL, "task %s has nothing to run", t->id);
    int logfd = open_log(t, err, errlen);
    if (logfd < 0)
        return logfd;
    child *k = &fr->kids[fr->n_kids];
    k->task = task;
    k->start_ns = wall_now_ns();
    clock_gettime(CLOCK_MONOTONIC, &k->t0);
    pid_t parent = getpid();
    fflush(stdout);   /* or the child would write our buffered output again */
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(logfd);
        return kp_errf(err, errlen, KP_ERR_IO, "cannot start %s: fork: %s", t->id, strerror(errno));
    }
    if (pid == 0) {
        child_setup(fr, parent, logfd);
        if (t->command)
            child_exec(t);
        child_builtin(fr, t);
    }
    setpgid(pid, pid);   /* also done by the child: whichever runs first */
    close(logfd);
    k->pid = pid;
    fr->n_kids++;
    return 0;
}

/* Sends sig to every child's process group. */
static void forward(fork_runner *fr, int sig)
{
    for (int i = 0; i < fr->n_kids; i++)
        if (kill(-fr->kids[i].pid, sig) != 0)
            kill(fr->kids[i].pid, sig);
}

static void on_interrupt(fork_runner *fr)
{
    /* the first interrupt asks politely; a second one kills */
    forward(fr, fr->n_signals++ ? SIGKILL : SIGTERM);
}

static int64_t elapsed_ms(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Moves a reaped child to the done queue. */
static void record_exit(fork_runner *fr, int i, int status, const struct rusage *ru)
{
    child *k = &fr->kids[i];
    kp_run_result *d = &fr->done[fr->n_done++];
    d->task = k->task;
    d->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) :
                     WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 255;
    d->start_ns = k->start_ns;
    d->wall_ms = elapsed_ms(&k->t0);
    d->cpu_ms = (int64_t)(ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1000 +
                (ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) / 1000;
    d->rss_kb = ru->ru_maxrss;
    fr->kids[i] = fr->kids[--fr->n_kids];
}

/* Reaps every child that has exited, without blocking. */
static void reap(fork_runner *fr)
{
    for (;;) {
        int status;
        struct rusage ru;
        pid_t pid = wait4(-1, &status, WNOHANG, &ru);
        if (pid <= 0)
            return;
        for (int i = 0; i < fr->n_kids; i++)
            if (fr->kids[i].pid == pid) {
                record_exit(fr, i, status, &ru);
                break;
            }
    }
}

static int pop_done(fork_runner *fr, kp_run_result *out)
{
    *out = fr->done[0];
    fr->n_done--;
    memmove(fr->done, fr->done + 1, (size_t)fr->n_done * sizeof *fr->done);
    return KP_WAIT_DONE;
}

static int fork_wait(kp_runner *r, int timeout_ms, kp_run_result *out, char *err, size_t errlen)
{
    fork_runner *fr = R(r);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    for (;;) {
        reap(fr);
        if (fr->n_done > 0)
            return pop_done(fr, out);
        if (fr->n_kids == 0 && timeout_ms < 0)
            return KP_WAIT_IDLE;
        struct timespec ts = { timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000 };
        int sig = timeout_ms < 0 ? sigwaitinfo(&set, NULL) : sigtimedwait(&set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            on_interrupt(fr);
            return KP_WAIT_INTERRUPTED;
        }
        if (sig < 0 && errno == EAGAIN)
            return fr->n_kids ? KP_WAIT_TIMEOUT : KP_WAIT_IDLE;
        if (sig < 0 && errno != EINTR)
            return kp_errf(err, errlen, KP_ERR_IO, "waiting for tasks: %s", strerror(errno));
    }
}

static int fork_interrupted(kp_runner *r)
{
    fork_runner *fr = R(r);
    sigset_t pending, set;
    sigpending(&pending);
    if (!sigismember(&pending, SIGINT) && !sigismember(&pending, SIGTERM))
        return 0;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    struct timespec zero = { 0, 0 };
    if (sigtimedwait(&set, NULL, &zero) < 0)
        return 0;
    on_interrupt(fr);
    return 1;
}

static int fork_running(kp_runner *r)
{
    return R(r)->n_kids + R(r)->n_done;   /* reaped but not yet returned by wait count too */
}

static void fork_free(kp_runner *r)
{
    fork_runner *fr = R(r);
    forward(fr, SIGKILL);
    for (int i = 0; i < fr->n_kids; i++)
        waitpid(fr->kids[i].pid, NULL, 0);
    sigprocmask(SIG_SETMASK, &fr->orig_mask, NULL);
    free(fr->kids);
    free(fr->done);
    free(fr);
}

static const kp_runner_ops fork_ops = {
    fork_can_start_more, fork_start, fork_wait, fork_interrupted, fork_running, fork_free,
};

int kp_runner_fork_create(const kp_config *cfg, int jobs, int threads, kp_runner **out,
                          char *err, size_t errlen)
{
    fork_runner *fr = calloc(1, sizeof *fr);
    if (jobs < 1)
        jobs = 1;
    if (!fr || !(fr->kids = calloc((size_t)jobs, sizeof *fr->kids)) ||
        !(fr->done = calloc((size_t)jobs, sizeof *fr->done))) {
        if (fr)
            free(fr->kids);
        free(fr);
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    }
    fr->base.ops = &fork_ops;
    fr->cfg = cfg;
    fr->jobs = jobs;
    fr->threads = threads > 0 ? threads : 1;
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &fr->orig_mask);
    *out = &fr->base;
    return 0;
}
