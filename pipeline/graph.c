/* graph.c - the task graph: one owner for every task, edges, cycle check. */
#include "graph.h"

#include <stdlib.h>
#include <string.h>
#include "strmap.h"
#include "../lib/buf.h"
#include "../lib/err.h"

/* Every string of every task but its command lives in big
 * blocks freed with the graph, and a string repeated from task to task (the
 * stage name, its folder, the working folder) or passed on from a
 * producer's output to a reader's input is stored once. */
typedef struct block {
    struct block *next;
    size_t used, cap;
    char data[];
} block;

enum { LAST_NAME, LAST_BASE, LAST_CWD, LAST_DIR, LAST_WHERE, N_LAST };

struct kp_graph {
    kp_task *tasks;
    int n, cap;
    kp_strmap *ids;        /* id -> index */
    kp_strmap *producers;  /* output path -> index of the first task writing it */
    block *blocks;         /* the strings, newest block first */
    char *last[N_LAST];    /* the last string stored of each kind, to share */
};

#define BLOCK_SIZE 65536

kp_graph *kp_graph_create(void)
{
    kp_graph *g = calloc(1, sizeof *g);
    if (g && (!(g->ids = kp_strmap_create()) || !(g->producers = kp_strmap_create()))) {
        kp_graph_free(g);
        g = NULL;
    }
    return g;
}

/* Returns a copy of s in the graph's blocks (freed with the graph), or NULL. */
static char *store(kp_graph *g, const char *s)
{
    size_t n = strlen(s) + 1;
    block *b = g->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > BLOCK_SIZE ? n : BLOCK_SIZE;
        if (!(b = malloc(sizeof *b + cap)))
            return NULL;
        b->next = g->blocks, b->used = 0, b->cap = cap;
        g->blocks = b;
    }
    char *copy = memcpy(b->data + b->used, s, n);
    b->used += n;
    return copy;
}

/* As store, but the same text as the last string of this kind is shared. */
static char *store_shared(kp_graph *g, int kind, const char *s)
{
    if (!g->last[kind] || strcmp(g->last[kind], s) != 0)
        g->last[kind] = store(g, s);
    return g->last[kind];
}

static void task_free(kp_task *t)
{
    free(t->command);
    free(t->inputs);
    free(t->external);
    free(t->outputs);
    free(t->deps);
    free(t->users);
}

void kp_graph_free(kp_graph *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n; i++)
        task_free(&g->tasks[i]);
    free(g->tasks);
    kp_strmap_free(g->ids);
    kp_strmap_free(g->producers);
    for (block *b = g->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(g);
}

/* Sets *field to a stored copy of value (NULL clears); 0 or KP_ERR_NOMEM. */
static int set_str(kp_graph *g, int kind, char **field, const char *value)
{
    char *copy = NULL;
    if (value && !(copy = kind < 0 ? store(g, value) : store_shared(g, kind, value)))
        return KP_ERR_NOMEM;
    *field = copy;
    return 0;
}

int kp_graph_add(kp_graph *g, const char *id, const char *stage_name, const char *base,
                 int part, int *index, char *err, size_t errlen)
{
    if (kp_strmap_get(g->ids, id) >= 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "two tasks are called '%s'", id);
    if (g->n == g->cap) {
        int cap = g->cap ? g->cap * 2 : 16;
        kp_task *nt = realloc(g->tasks, (size_t)cap * sizeof *nt);
        if (!nt)
            return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory adding task '%s'", id);
        g->tasks = nt;
        g->cap = cap;
    }
    kp_task *t = &g->tasks[g->n];
    memset(t, 0, sizeof *t);
    t->stage = -1;
    t->part = part;
    t->param_text = (char *)"";
    int rc = set_str(g, -1, &t->id, id);
    if (rc == 0 && strcmp(stage_name, id) == 0)
        t->stage_name = t->id;   /* a single task is called as its stage */
    else if (rc == 0)
        rc = set_str(g, LAST_NAME, &t->stage_name, stage_name);
    if (rc < 0 || set_str(g, LAST_BASE, &t->stage_base, base ? base : stage_name) < 0 ||
        kp_strmap_put(g->ids, id, g->n) < 0) {
        task_free(t);
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory adding task '%s'", id);
    }
    *index = g->n++;
    return 0;
}

/* Grows an array of n elements of size `size`, appended one at a time, when
 * it is full: its capacity is the next power of two >= n.  0 or KP_ERR_NOMEM. */
static int grow(void **v, int n, size_t size)
{
    if (n & (n - 1))
        return 0;
    void *nv = realloc(*v, (n ? 2 * (size_t)n : 1) * size);
    if (!nv)
        return KP_ERR_NOMEM;
    *v = nv;
    return 0;
}

/* Appends s (stored already) to the array *v of *n strings; 0 or KP_ERR_NOMEM. */
static int push_str(char ***v, int *n, char *s)
{
    if (!s || grow((void **)v, *n, sizeof **v) < 0)
        return KP_ERR_NOMEM;
    (*v)[(*n)++] = s;
    return 0;
}

static int push_int(int **v, int *n, int x)
{
    if (grow((void **)v, *n, sizeof **v) < 0)
        return KP_ERR_NOMEM;
    (*v)[(*n)++] = x;
    return 0;
}

/* Appends the stored path s to task's inputs. */
static int push_input(kp_graph *g, int task, char *s, int external)
{
    kp_task *t = &g->tasks[task];
    if (grow((void **)&t->external, t->n_inputs, 1) < 0)
        return KP_ERR_NOMEM;
    t->external[t->n_inputs] = (unsigned char)(external != 0);
    return push_str(&t->inputs, &t->n_inputs, s);
}

int kp_graph_add_input(kp_graph *g, int task, const char *path, int external)
{
    return push_input(g, task, store(g, path), external);
}

int kp_graph_add_input_from(kp_graph *g, int task, int from, int output)
{
    return push_input(g, task, g->tasks[from].outputs[output], 0);
}

int kp_graph_add_output(kp_graph *g, int task, const char *path)
{
    kp_task *t = &g->tasks[task];
    if (kp_strmap_get(g->producers, path) < 0 && kp_strmap_put(g->producers, path, task) < 0)
        return KP_ERR_NOMEM;
    return push_str(&t->outputs, &t->n_outputs, store(g, path));
}

int kp_graph_add_dep(kp_graph *g, int task, int dep)
{
    kp_task *t = &g->tasks[task];
    for (int i = 0; i < t->n_deps; i++)
        if (t->deps[i] == dep)
            return 0;
    return push_int(&t->deps, &t->n_deps, dep);
}

int kp_graph_set_params(kp_graph *g, int task, const char *text)
{
    return set_str(g, -1, &g->tasks[task].param_text, text);
}

int kp_graph_reserve(kp_graph *g, int n)
{
    if (n <= g->cap)
        return 0;
    kp_task *nt = realloc(g->tasks, (size_t)n * sizeof *nt);
    if (!nt)
        return KP_ERR_NOMEM;
    g->tasks = nt;
    g->cap = n;
    return 0;
}

int kp_graph_set_command(kp_graph *g, int task, const char *command, const char *cwd)
{
    kp_task *t = &g->tasks[task];
    char *copy = NULL;   /* on the heap: tests replace it */
    if ((command && !(copy = strdup(command))) || set_str(g, LAST_CWD, &t->cwd, cwd) < 0) {
        free(copy);
        return KP_ERR_NOMEM;
    }
    free(t->command);
    t->command = copy;
    return 0;
}

int kp_graph_set_files(kp_graph *g, int task, const char *dir, const char *log_path)
{
    kp_task *t = &g->tasks[task];
    return set_str(g, LAST_DIR, &t->dir, dir) < 0 || set_str(g, -1, &t->log_path, log_path) < 0
               ? KP_ERR_NOMEM : 0;
}

int kp_graph_set_where(kp_graph *g, int task, const char *where)
{
    return set_str(g, LAST_WHERE, &g->tasks[task].where, where);
}

/* ---- checks ---- */

enum { WHITE, GREY, BLACK };

/* Writes "a -> b -> ... -> a" for the cycle closing at task `at` on the stack. */
static int cycle_error(const kp_graph *g, const int *stack, int depth, int at,
                       char *err, size_t errlen)
{
    kp_buf b;
    kp_buf_init(&b, 4096);
    int start = depth - 1;
    while (start > 0 && stack[start] != at)
        start--;
    int ok = kp_buf_adds(&b, "the task graph has a cycle: ") == 0;
    for (int i = start; i < depth && ok; i++)
        ok = kp_buf_printf(&b, "%s -> ", g->tasks[stack[i]].id) == 0;
    ok = ok && kp_buf_adds(&b, g->tasks[at].id) == 0;
    kp_errf(err, errlen, KP_ERR_CYCLE, "%s", ok ? kp_buf_str(&b) : "the task graph has a cycle");
    kp_buf_free(&b);
    return KP_ERR_CYCLE;
}

/* Depth-first search from root with an explicit stack; grey = on the stack. */
static int visit(const kp_graph *g, int root, unsigned char *mark, int *stack, int *next,
                 char *err, size_t errlen)
{
    int depth = 0;
    stack[depth] = root;
    next[depth++] = 0;
    mark[root] = GREY;
    while (depth > 0) {
        const kp_task *t = &g->tasks[stack[depth - 1]];
        if (next[depth - 1] == t->n_deps) {
            mark[stack[--depth]] = BLACK;
            continue;
        }
        int d = t->deps[next[depth - 1]++];
        if (mark[d] == GREY)
            return cycle_error(g, stack, depth, d, err, errlen);
        if (mark[d] == WHITE) {
            mark[d] = GREY;
            stack[depth] = d;
            next[depth++] = 0;
        }
    }
    return 0;
}

static int check_cycles(const kp_graph *g, char *err, size_t errlen)
{
    unsigned char *mark = calloc((size_t)g->n + 1, 1);
    int *stack = malloc(((size_t)g->n + 1) * sizeof *stack);
    int *next = malloc(((size_t)g->n + 1) * sizeof *next);
    int rc = 0;
    if (!mark || !stack || !next)
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory checking the task graph");
    for (int i = 0; i < g->n && rc == 0; i++)
        if (mark[i] == WHITE)
            rc = visit(g, i, mark, stack, next, err, errlen);
    free(mark);
    free(stack);
    free(next);
    return rc;
}

/* Every output has one producer: the first task that declared it. */
static int check_outputs(kp_graph *g, char *err, size_t errlen)
{
    for (int i = 0; i < g->n; i++) {
        const kp_task *t = &g->tasks[i];
        for (int j = 0; j < t->n_outputs; j++) {
            int other = kp_strmap_get(g->producers, t->outputs[j]);
            if (other != i)
                return kp_errf(err, errlen, KP_ERR_CONFIG, "%s is written by both %s and %s",
                               t->outputs[j], g->tasks[other].id, t->id);
        }
    }
    return 0;
}

int kp_graph_finish(kp_graph *g, char *err, size_t errlen)
{
    for (int i = 0; i < g->n; i++) {
        kp_task *t = &g->tasks[i];
        for (int j = 0; j < t->n_deps; j++)
            if (push_int(&g->tasks[t->deps[j]].users, &g->tasks[t->deps[j]].n_users, i) < 0)
                return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    }
    int rc = check_outputs(g, err, errlen);
    return rc < 0 ? rc : check_cycles(g, err, errlen);
}

int kp_graph_count(const kp_graph *g)
{
    return g->n;
}

kp_task *kp_graph_task(const kp_graph *g, int i)
{
    return i >= 0 && i < g->n ? &g->tasks[i] : NULL;
}

int kp_graph_find(const kp_graph *g, const char *id)
{
    return kp_strmap_get(g->ids, id);
}

int kp_graph_producer(const kp_graph *g, const char *path)
{
    return kp_strmap_get(g->producers, path);
}
