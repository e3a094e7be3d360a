/* progress.c - start/done lines, or one live status line on a terminal. */
#include "progress.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define MAX_SHOWN 4   /* running task ids named in the status line */

struct kp_progress {
    FILE *out;
    int tty, jobs, total;
    int started, finished;
    int64_t sum_ms;          /* wall time of finished tasks */
    const char **running;    /* ids of running tasks (borrowed) */
    int n_running, cap_running;
    int line_shown;          /* the status line is on screen */
    struct timespec t0;
};

static int64_t since_ms(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

kp_progress *kp_progress_create(FILE *out, int tty, int jobs, int total)
{
    kp_progress *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->out = out;
    p->tty = out && tty;
    p->jobs = jobs > 0 ? jobs : 1;
    p->total = total;
    clock_gettime(CLOCK_MONOTONIC, &p->t0);
    return p;
}

static void clear_line(kp_progress *p)
{
    if (p->line_shown) {
        fputs("\r\033[K", p->out);
        p->line_shown = 0;
    }
}

void kp_progress_free(kp_progress *p)
{
    if (!p)
        return;
    if (p->out) {
        clear_line(p);
        fflush(p->out);
    }
    free(p->running);
    free(p);
}

void kp_progress_duration(int64_t ms, char *buf, size_t n)
{
    if (ms < 10000)
        snprintf(buf, n, "%.2fs", (double)ms / 1000);
    else if (ms < 60000)
        snprintf(buf, n, "%llds", (long long)(ms / 1000));
    else if (ms < 3600000)
        snprintf(buf, n, "%lldm%02llds", (long long)(ms / 60000), (long long)(ms / 1000 % 60));
    else
        snprintf(buf, n, "%lldh%02lldm", (long long)(ms / 3600000), (long long)(ms / 60000 % 60));
}

/* Writes "  eta 12s" (or "" before any task finished or when nothing remains). */
static void eta(const kp_progress *p, char *buf, size_t n)
{
    int remaining = p->total - p->finished;
    buf[0] = 0;
    if (p->finished == 0 || remaining <= 0)
        return;
    int64_t ms = p->sum_ms / p->finished * remaining / p->jobs;
    char d[32];
    kp_progress_duration(ms, d, sizeof d);
    snprintf(buf, n, "  eta %s", d);
}

static int term_width(const kp_progress *p)
{
    struct winsize ws;
    if (ioctl(fileno(p->out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
        return ws.ws_col;
    return 80;
}

/* Redraws "[ 12/130] 2 running: a, b  eta 12s  (1m02s)" cut to the terminal width. */
static void draw(kp_progress *p)
{
    char line[1024], e[64], el[32];
    int n = snprintf(line, sizeof line, "[%3d/%d] %d running", p->finished, p->total, p->n_running);
    for (int i = 0; i < p->n_running && i < MAX_SHOWN && n > 0 && (size_t)n < sizeof line; i++)
        n += snprintf(line + n, sizeof line - (size_t)n, "%s%s", i ? ", " : ": ", p->running[i]);
    if (p->n_running > MAX_SHOWN && n > 0 && (size_t)n < sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, ", ...");
    eta(p, e, sizeof e);
    kp_progress_duration(since_ms(&p->t0), el, sizeof el);
    if (n > 0 && (size_t)n < sizeof line)
        snprintf(line + n, sizeof line - (size_t)n, "%s  (%s)", e, el);
    int w = term_width(p) - 1;
    if ((int)strlen(line) > w)
        line[w] = 0;
    fprintf(p->out, "\r%s\033[K", line);
    fflush(p->out);
    p->line_shown = 1;
}

void kp_progress_skip(kp_progress *p)
{
    if (p && p->total > 0)
        p->total--;
}

void kp_progress_start(kp_progress *p, const char *id)
{
    if (!p || !p->out)
        return;
    p->started++;
    if (p->n_running == p->cap_running) {
        int cap = p->cap_running ? p->cap_running * 2 : 8;
        const char **nr = realloc(p->running, (size_t)cap * sizeof *nr);
        if (!nr)
            return;   /* only the status line loses a name */
        p->running = nr;
        p->cap_running = cap;
    }
    p->running[p->n_running++] = id;
    if (p->tty) {
        draw(p);
    } else {
        /* the count on every line is tasks finished, so it only ever grows */
        fprintf(p->out, "[%3d/%d] start %s\n", p->finished, p->total, id);
        fflush(p->out);
    }
}

static void forget(kp_progress *p, const char *id)
{
    for (int i = 0; i < p->n_running; i++)
        if (p->running[i] == id || strcmp(p->running[i], id) == 0) {
            memmove(p->running + i, p->running + i + 1,
                    (size_t)(p->n_running - i - 1) * sizeof *p->running);
            p->n_running--;
            return;
        }
}

void kp_progress_done(kp_progress *p, const char *id, int ok, int exit_status,
                      int64_t wall_ms, const char *log)
{
    if (!p || !p->out)
        return;
    char d[32], e[64];
    forget(p, id);
    p->finished++;
    p->sum_ms += wall_ms;
    kp_progress_duration(wall_ms, d, sizeof d);
    eta(p, e, sizeof e);
    clear_line(p);
    if (ok)
        fprintf(p->out, "[%3d/%d] done  %s  %s%s\n", p->finished, p->total, id, d, e);
    else if (exit_status == -1)
        fprintf(p->out, "[%3d/%d] FAIL  %s  %s  (an output is missing)%s%s\n", p->finished,
                p->total, id, d, log ? "  log: " : "", log ? log : "");
    else
        fprintf(p->out, "[%3d/%d] FAIL  %s  %s  (exit %d)%s%s\n", p->finished, p->total, id, d,
                exit_status, log ? "  log: " : "", log ? log : "");
    if (p->tty && p->n_running)
        draw(p);
    fflush(p->out);
}

void kp_progress_tick(kp_progress *p)
{
    if (p && p->tty && p->n_running)
        draw(p);
}

void kp_progress_printf(kp_progress *p, const char *fmt, ...)
{
    if (!p || !p->out)
        return;
    clear_line(p);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->out, fmt, ap);
    va_end(ap);
    fputc('\n', p->out);
    if (p->tty && p->n_running)
        draw(p);
    fflush(p->out);
}
