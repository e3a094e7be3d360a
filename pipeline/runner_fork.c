/* runner_fork.c - runs tasks as child processes.
 *
 * A command task is started as make and ninja start theirs (posix_spawn
 * style): vfork() and execve, with everything the child needs (argv, the
 * program's path found on PATH, the environment, the log descriptor)
 * prepared in the parent, so no copy of kpipe's address space is made (a
 * fork of the whole process cost ~65% of the parent's CPU on a graph of
 * ~3,000 trivial tasks).  The words of the line are exec'd when it has no
 * shell metacharacters, else /bin/sh -c; a file that is not an executable
 * format runs under /bin/sh, as execvp does.
 *
 * A built-in stage task runs in a fork()ed child without exec (exec costs
 * ~11 ms here): the child already has the config in memory and calls
 * ops->run.
 *
 * Either child gets its own process group (signals are forwarded to the
 * whole group), dies with its parent (PR_SET_PDEATHSIG), reads /dev/null,
 * writes stdout and stderr to the task's log, and sees its thread budget in
 * OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and KPIPE_THREADS.  Children are
 * reaped with wait4 for CPU time and peak RSS.
 *
 * Signals: SIGINT, SIGTERM and SIGCHLD stay blocked in the parent while the
 * runner lives and are taken with sigtimedwait, so none is lost between a
 * check and a sleep, and no handler runs in the middle of anything.  A mask
 * is per thread, so no other thread may be left to take them: OpenBLAS's
 * workers (started by its library constructor, and ended by its atfork
 * handler only when something forks) are stopped when the runner is made;
 * a later BLAS call in this process would start them again.
 */
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "strmap.h"
#include "../lib/afile.h"
#include "../lib/blas.h"
#include "../lib/err.h"
#include "../stages/stage.h"

void openblas_set_num_threads(int);

extern char **environ;

typedef struct child {
    pid_t pid;
    int task;
    int64_t start_ns;
    struct timespec t0;     /* CLOCK_MONOTONIC at start */
} child;

typedef struct program {    /* a command name and where PATH put it */
    char *name, *path;
} program;

/* struct sched_attr as of Linux 3.14 (SCHED_ATTR_SIZE_VER0); glibc has no wrapper. */
typedef struct sched_attr0 {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;   /* runtime: the slice of a fair task (Linux 6.12+) */
} sched_attr0;

#define SHORT_SLICE_NS 100000   /* the shortest slice Linux accepts */

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
    pid_t self;             /* our pid, for the children's parent check */
    int devnull;            /* /dev/null (close-on-exec), the children's stdin */
    char **envp;            /* environ with the thread budget set */
    char *thread_vars[3];   /* the strings envp adds (owned) */
    char *path_var;         /* PATH as given to the children, or NULL */
    int path_cacheable;     /* every PATH entry is absolute: a lookup is valid anywhere */
    program *progs;         /* PATH lookups done so far */
    int n_progs;
    kp_strmap *dirs;        /* folders made (or found) in this run */
    sched_attr0 sched;      /* our scheduling with the default slice, for children and free */
    int short_slice;        /* the short slice is set: children and kp_runner_free undo it */
    int blas_loaded;        /* kp_blas_preload done (before the first built-in task) */
} fork_runner;

static fork_runner *R(kp_runner *r) { return (fork_runner *)r; }

static int64_t wall_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- built-in tasks: a fork()ed child ---- */

static void set_thread_env(int threads)
{
    char n[32];
    snprintf(n, sizeof n, "%d", threads);
    setenv("OPENBLAS_NUM_THREADS", n, 1);
    setenv("OMP_NUM_THREADS", n, 1);
    setenv("KPIPE_THREADS", n, 1);
}

/* In the fork()ed child: signals, parent death, process group, stdio, thread budget. */
static void child_setup(fork_runner *fr, int logfd)
{
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, &fr->orig_mask, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != fr->self)
        _exit(1);   /* the parent died before prctl took effect */
    setpgid(0, 0);
    if (fr->short_slice)
        syscall(SYS_sched_setattr, 0, &fr->sched, 0);
    dup2(fr->devnull, 0);
    dup2(logfd, 1);
    dup2(logfd, 2);
    close(logfd);
    set_thread_env(fr->threads);
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

/* Forks a child that runs the built-in task t; returns its pid or -1 (errno set). */
static pid_t fork_builtin(fork_runner *fr, const kp_task *t, int logfd)
{
    fflush(stdout);   /* or the child would write our buffered output again */
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        child_setup(fr, logfd);
        child_builtin(fr, t);
    }
    if (pid > 0)
        setpgid(pid, pid);   /* also done by the child: whichever runs first */
    return pid;
}

/* ---- command tasks: vfork + execve ---- */

/* What a vforked child needs, all prepared by the parent.  The child shares
 * the parent's memory until it execs: it only reads this, and writes the
 * errno of a failed step into err (which the parent then reports). */
typedef struct spawn {
    const char *path;       /* the program to execve */
    char **argv;            /* argv[0] as the line spells it */
    char **sh_argv;         /* /bin/sh PATH ARGS... for a file of no executable format, or NULL */
    char **envp;
    const char *cwd;        /* or NULL */
    int logfd, devnull;
    const sched_attr0 *sched;   /* the scheduling to give back, or NULL */
    pid_t parent;
    const sigset_t *mask;   /* the signal mask the program starts with */
    volatile int err;       /* set by the child: errno of the step that failed */
    volatile int failed_at; /* 0, or 1: chdir, 2: execve */
} spawn;

/* The vforked child: async-signal-safe system calls only. */
__attribute__((noreturn)) static void spawn_child(spawn *s)
{
    static const int reset[] = { SIGINT, SIGTERM, SIGCHLD, SIGPIPE };
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (size_t i = 0; i < sizeof reset / sizeof reset[0]; i++)
        sigaction(reset[i], &dfl, NULL);
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != s->parent)
        _exit(1);   /* the parent died before prctl took effect */
    if (s->sched)
        syscall(SYS_sched_setattr, 0, s->sched, 0);
    dup2(s->devnull, 0);
    dup2(s->logfd, 1);
    dup2(s->logfd, 2);
    sigprocmask(SIG_SETMASK, s->mask, NULL);
    if (s->cwd && chdir(s->cwd) != 0) {
        s->err = errno;
        s->failed_at = 1;
        _exit(127);
    }
    execve(s->path, s->argv, s->envp);
    if (errno == ENOEXEC && s->sh_argv)
        execve(s->sh_argv[0], s->sh_argv, s->envp);
    s->err = errno;
    s->failed_at = 2;
    _exit(127);
}

/* vforks the child of s; returns its pid (it has exec'd or exited) or -1. */
static pid_t spawn_vfork(spawn *s)
{
    pid_t pid = vfork();
    if (pid == 0)
        spawn_child(s);
    return pid;
}

/* Returns 1 if the command line needs a shell (metacharacters, an assignment). */
static int needs_shell(const char *cmd)
{
    if (strpbrk(cmd, "|&;<>()$`\\\"'*?[]#~{}!\t\n"))
        return 1;
    const char *sp = strchr(cmd, ' ');
    const char *eq = strchr(cmd, '=');
    return eq && (!sp || eq < sp);
}

/* Splits copy on spaces in place into argv with room for the sh_argv form:
 * returns a heap array of 2n+4 slots, argv in [0, n], sh_argv from n+1. */
static char **split_words(char *copy, int *n_words)
{
    size_t n = 0;
    for (const char *p = copy; *p; p++)
        n += *p != ' ' && (p == copy || p[-1] == ' ');
    char **argv = malloc((2 * n + 4) * sizeof *argv);
    if (!argv)
        return NULL;
    n = 0;
    for (char *save = NULL, *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
        argv[n++] = tok;
    argv[n] = NULL;
    *n_words = (int)n;
    return argv;
}

/* Returns 1 if path is a regular file we may execute. */
static int executable(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && access(path, X_OK) == 0;
}

/* Looks name up in PATH as execvp would (relative entries from cwd); heap
 * result, or NULL when no entry has it (or out of memory). */
static char *search_path(const fork_runner *fr, const char *name, const char *cwd)
{
    const char *p = fr->path_var ? fr->path_var : "/bin:/usr/bin";
    char *found = NULL;
    for (;;) {
        const char *end = strchrnul(p, ':');
        int len = (int)(end - p);
        char *cand = NULL;
        int rc = len == 0 ? asprintf(&cand, "%s%s%s", cwd ? cwd : "", cwd ? "/" : "", name) :
                 p[0] != '/' && cwd ? asprintf(&cand, "%s/%.*s/%s", cwd, len, p, name) :
                 asprintf(&cand, "%.*s/%s", len, p, name);
        if (rc < 0)
            return NULL;
        if (executable(cand))
            return cand;
        if (!found && access(cand, F_OK) == 0)
            found = cand;   /* execve will say why it cannot run it (EACCES) */
        else
            free(cand);
        if (!*end)
            return found;
        p = end + 1;
    }
}

/* Returns where the program word lives (heap): itself when it has a '/',
 * else its PATH entry (remembered when PATH is all absolute), else itself. */
static char *find_program(fork_runner *fr, const char *word, const char *cwd)
{
    if (strchr(word, '/'))
        return strdup(word);
    for (int i = 0; i < fr->n_progs; i++)
        if (strcmp(fr->progs[i].name, word) == 0)
            return strdup(fr->progs[i].path);
    char *path = search_path(fr, word, cwd);
    if (!path)
        return strdup(word);   /* execve fails with ENOENT, as execvp would */
    program *np = fr->path_cacheable ? realloc(fr->progs, (size_t)(fr->n_progs + 1) * sizeof *np) : NULL;
    if (np) {
        fr->progs = np;
        np[fr->n_progs].name = strdup(word);
        np[fr->n_progs].path = strdup(path);
        if (np[fr->n_progs].name && np[fr->n_progs].path)
            fr->n_progs++;
        else
            free(np[fr->n_progs].name), free(np[fr->n_progs].path);
    }
    return path;
}

/* Fills s->path, s->argv and s->sh_argv for t; *copy and *path are what to free after. */
static int prepare_argv(fork_runner *fr, const kp_task *t, spawn *s, char **copy, char **path)
{
    static char sh[] = "/bin/sh", sh0[] = "sh", dash_c[] = "-c";
    int n = 0;
    *path = NULL;
    if (!(*copy = strdup(t->command)))
        return KP_ERR_NOMEM;
    char **argv = !needs_shell(t->command) ? split_words(*copy, &n) : NULL;
    if (argv && n > 0) {
        if (!(*path = find_program(fr, argv[0], t->cwd))) {
            free(argv);
            return KP_ERR_NOMEM;
        }
        char **sh_argv = argv + n + 1;   /* /bin/sh PATH ARGS... */
        sh_argv[0] = sh;
        sh_argv[1] = *path;
        memcpy(sh_argv + 2, argv + 1, (size_t)n * sizeof *argv);   /* with the NULL */
        s->path = *path, s->argv = argv, s->sh_argv = sh_argv;
        return 0;
    }
    free(argv);
    if (!(argv = malloc(4 * sizeof *argv)))
        return KP_ERR_NOMEM;
    argv[0] = sh0, argv[1] = dash_c, argv[2] = *copy, argv[3] = NULL;
    strcpy(*copy, t->command);   /* split_words may have cut it */
    s->path = sh, s->argv = argv, s->sh_argv = NULL;
    return 0;
}

/* Starts command task t with its output on logfd; returns the pid, or a
 * negative status (err filled).  A chdir or exec failure is written to the log. */
static pid_t spawn_command(fork_runner *fr, const kp_task *t, int logfd, char *err, size_t errlen)
{
    spawn s;
    char *copy = NULL, *path = NULL;
    memset(&s, 0, sizeof s);
    int rc = prepare_argv(fr, t, &s, &copy, &path);
    if (rc < 0) {
        free(copy);
        return kp_errf(err, errlen, rc, "cannot start %s: out of memory", t->id);
    }
    s.envp = fr->envp, s.cwd = t->cwd, s.logfd = logfd, s.devnull = fr->devnull;
    s.parent = fr->self, s.mask = &fr->orig_mask;
    s.sched = fr->short_slice ? &fr->sched : NULL;
    pid_t pid = spawn_vfork(&s);
    if (pid < 0)
        rc = kp_errf(err, errlen, KP_ERR_IO, "cannot start %s: vfork: %s", t->id, strerror(errno));
    else if (s.failed_at == 1)
        dprintf(logfd, "kpipe: %s: cannot enter %s: %s\n", t->id, t->cwd, strerror(s.err));
    else if (s.failed_at == 2)
        dprintf(logfd, "kpipe: %s: cannot run '%s': %s\n", t->id, t->command, strerror(s.err));
    free(s.argv);
    free(copy);
    free(path);
    return pid < 0 ? rc : pid;
}

/* ---- folders and logs ---- */

/* Makes path and any missing parents: one mkdir when only the last is missing. */
static int mkdir_p(char *path)
{
    struct stat sb;
    if (mkdir(path, 0777) == 0)
        return 0;
    if (errno == EEXIST)
        return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) ? 0 : (errno = ENOTDIR, -1);
    char *slash = strrchr(path, '/');
    if (errno != ENOENT || !slash || slash == path)
        return -1;
    *slash = 0;
    int rc = mkdir_p(path);
    *slash = '/';
    if (rc < 0)
        return -1;
    return mkdir(path, 0777) == 0 || errno == EEXIST ? 0 : -1;
}

/* Makes the folder dir once per run (a folder made or found is remembered). */
static int make_dir(fork_runner *fr, const char *dir, int again, char *err, size_t errlen)
{
    if (!again && kp_strmap_get(fr->dirs, dir) >= 0)
        return 0;
    char *p = strdup(dir);
    int rc = p && mkdir_p(p) < 0 ? kp_errf(err, errlen, KP_ERR_IO, "%s: cannot create directory: %s",
                                          dir, strerror(errno)) : 0;
    free(p);
    if (rc == 0 && (!p || kp_strmap_put(fr->dirs, dir, 0) < 0))
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", dir);
    return rc;
}

/* Opens path (flags include O_CLOEXEC) as a descriptor above 2, which the
 * children dup2 onto 0, 1 and 2 (dup2 onto itself would keep close-on-exec). */
static int open_above_2(const char *path, int flags)
{
    int fd = open(path, flags, 0666);
    if (fd >= 0 && fd <= 2) {
        int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        int saved = errno;
        close(fd);
        errno = saved;
        fd = moved;
    }
    return fd;
}

/* Makes the task's folder and opens its log; the fd or a negative status. */
static int open_log(fork_runner *fr, const kp_task *t, char *err, size_t errlen)
{
    const char *path = t->log_path ? t->log_path : "/dev/null";
    int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, fd;
    if (t->dir && make_dir(fr, t->dir, 0, err, errlen) < 0)
        return KP_ERR_IO;
    fd = open_above_2(path, flags);
    if (fd < 0 && errno == ENOENT && t->dir) {   /* the folder went away during the run */
        if (make_dir(fr, t->dir, 1, err, errlen) < 0)
            return KP_ERR_IO;
        fd = open_above_2(path, flags);
    }
    if (fd < 0)
        return kp_errf(err, errlen, KP_ERR_IO, "%s: cannot create the log of %s: %s",
                       path, t->id, strerror(errno));
    return fd;
}

/* ---- the parent ---- */

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
    if (!t->command && !fr->blas_loaded) {
        /* once, here: the forked children then find it loaded */
        int rc = kp_blas_preload(err, errlen);
        if (rc < 0)
            return rc;
        kp_blas_stop_threads();
        fr->blas_loaded = 1;
    }
    int logfd = open_log(fr, t, err, errlen);
    if (logfd < 0)
        return logfd;
    child *k = &fr->kids[fr->n_kids];
    k->task = task;
    k->start_ns = wall_now_ns();
    clock_gettime(CLOCK_MONOTONIC, &k->t0);
    pid_t pid = t->command ? spawn_command(fr, t, logfd, err, errlen) : fork_builtin(fr, t, logfd);
    if (pid < 0 && !t->command)
        pid = kp_errf(err, errlen, KP_ERR_IO, "cannot start %s: fork: %s", t->id, strerror(errno));
    close(logfd);
    if (pid < 0)
        return pid;
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
    while (fr->n_kids > 0) {
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
    if (fr->short_slice)
        syscall(SYS_sched_setattr, 0, &fr->sched, 0);
    for (int i = 0; i < fr->n_progs; i++)
        free(fr->progs[i].name), free(fr->progs[i].path);
    for (int i = 0; i < 3; i++)
        free(fr->thread_vars[i]);
    if (fr->devnull >= 0)
        close(fr->devnull);
    kp_strmap_free(fr->dirs);
    free(fr->progs);
    free(fr->envp);
    free(fr->path_var);
    free(fr->kids);
    free(fr->done);
    free(fr);
}

static const kp_runner_ops fork_ops = {
    fork_can_start_more, fork_start, fork_wait, fork_interrupted, fork_running, fork_free,
};

/* Fills fr->envp: environ without the thread variables, then them set to fr->threads. */
static int make_env(fork_runner *fr)
{
    static const char *const names[3] = { "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "KPIPE_THREADS" };
    size_t n = 0, k = 0;
    while (environ && environ[n])
        n++;
    if (!(fr->envp = malloc((n + 4) * sizeof *fr->envp)))
        return KP_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        int ours = 0;
        for (int j = 0; j < 3; j++) {
            size_t len = strlen(names[j]);
            ours |= strncmp(environ[i], names[j], len) == 0 && environ[i][len] == '=';
        }
        if (!ours)
            fr->envp[k++] = environ[i];
    }
    for (int j = 0; j < 3; j++) {
        if (asprintf(&fr->thread_vars[j], "%s=%d", names[j], fr->threads) < 0) {
            fr->thread_vars[j] = NULL;
            return KP_ERR_NOMEM;
        }
        fr->envp[k++] = fr->thread_vars[j];
    }
    fr->envp[k] = NULL;
    return 0;
}

/* Reads PATH for the children's program lookups. */
static int read_path(fork_runner *fr)
{
    const char *p = getenv("PATH");
    if (p && !(fr->path_var = strdup(p)))
        return KP_ERR_NOMEM;
    const char *q = p ? p : "/bin:/usr/bin";
    fr->path_cacheable = q[0] == '/';
    for (const char *c = strchr(q, ':'); c && fr->path_cacheable; c = strchr(c + 1, ':'))
        fr->path_cacheable = c[1] == '/';
    return 0;
}

/* Asks for the shortest scheduler slice for this process (a fair task on
 * Linux 6.12+; elsewhere nothing changes).  Its work between a child's exit
 * and the next start is short but on the critical path: with the default
 * slice it waited, runnable, for a CPU-bound child's slice to end (1.5 s of
 * 3.3 s on 2,900 one-millisecond tasks at -j 2).  Children get the default back. */
static void ask_short_slice(fork_runner *fr)
{
    sched_attr0 a;
    memset(&a, 0, sizeof a);
    if (syscall(SYS_sched_getattr, 0, &a, sizeof a, 0) != 0 ||
        (a.policy != SCHED_OTHER && a.policy != SCHED_BATCH))
        return;
    a.size = sizeof a;
    fr->sched = a;
    fr->sched.runtime = 0;   /* the default slice (getattr reports its length) */
    a.runtime = SHORT_SLICE_NS;
    fr->short_slice = syscall(SYS_sched_setattr, 0, &a, 0) == 0;
}

int kp_runner_fork_create(const kp_config *cfg, int jobs, int threads, kp_runner **out,
                          char *err, size_t errlen)
{
    fork_runner *fr = calloc(1, sizeof *fr);
    if (jobs < 1)
        jobs = 1;
    if (!fr)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    fr->base.ops = &fork_ops;
    fr->cfg = cfg;
    fr->jobs = jobs;
    fr->threads = threads > 0 ? threads : 1;
    fr->self = getpid();
    fr->devnull = -1;
    kp_blas_stop_threads();   /* or a SIGCHLD or SIGTERM could go to one of its threads */
    ask_short_slice(fr);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &fr->orig_mask);   /* first: fork_free restores it */
    int rc = 0;
    if ((fr->devnull = open_above_2("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
        rc = kp_errf(err, errlen, KP_ERR_IO, "/dev/null: cannot open: %s", strerror(errno));
    else if (!(fr->kids = calloc((size_t)jobs, sizeof *fr->kids)) ||
             !(fr->done = calloc((size_t)jobs, sizeof *fr->done)) ||
             !(fr->dirs = kp_strmap_create()) || make_env(fr) < 0 || read_path(fr) < 0)
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    if (rc < 0) {
        fork_free(&fr->base);
        return rc;
    }
    *out = &fr->base;
    return 0;
}
