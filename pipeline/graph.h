/* graph.h - the task graph: tasks, the files they read and write, their edges.
 *
 * The graph owns every task (as ninja's State owns nodes and edges); the
 * plan, the runner and the run log only borrow them.  kp_graph_build() makes
 * one from a loaded config (graph_build.c): a stage whose ops->n_parts gives
 * n > 0 becomes n part tasks "STAGE#partI" plus a final merge task "STAGE"
 * that depends on them all; any other stage is one task "STAGE".  Part tasks
 * (or the single task) depend on the final task of every stage it needs.
 * Tests build graphs by hand with kp_graph_add() and friends, no config.
 */
#ifndef KP_GRAPH_H
#define KP_GRAPH_H

#include <stddef.h>
#include "config.h"

typedef struct kp_task {
    char *id;               /* unique: "lr/C=0.1" or "lr/C=0.1#part2" */
    char *stage_name;       /* the stage it belongs to ("lr/C=0.1") */
    char *stage_base;       /* the stage's matrix base ("lr") */
    int stage;              /* index into cfg->stages, or -1 in a hand-built graph */
    int part;               /* 0..n_parts-1 for a part task, -1 for a single or merge task */
    int n_parts;            /* part tasks of its stage (0: a single task) */
    char *param_text;       /* everything but input files that decides its outputs */
    char **inputs;          /* files it reads, in cache-key order */
    unsigned char *external;/* per input: 1 = from outside the graph (must exist up front) */
    int n_inputs;
    char **outputs;         /* files it must write */
    int n_outputs;
    int *deps, n_deps;      /* tasks it waits for (indices, in order added) */
    int *users, n_users;    /* tasks that wait for it (filled by kp_graph_finish) */
    char *command;          /* command line to exec, or NULL: a built-in stage task */
    char *cwd;              /* command's working folder, or NULL (inherit) */
    char *dir;              /* folder made before it runs, or NULL */
    char *log_path;         /* where its stdout/stderr go, or NULL (/dev/null) */
    char *where;            /* "FILE:LINE:COL: stages.NAME" of its declaration, or NULL */
    void *user;             /* caller data (tests: the fake task's behaviour); not owned */
} kp_task;

typedef struct kp_graph kp_graph;

/* Returns a new empty graph, or NULL on allocation failure; free with kp_graph_free. */
kp_graph *kp_graph_create(void);

/* Makes room for n tasks in all (optional: saves regrowing); 0 or KP_ERR_NOMEM. */
int kp_graph_reserve(kp_graph *g, int n);

/* Frees the graph and every task; NULL is accepted. */
void kp_graph_free(kp_graph *g);

/* Adds a task (strings copied; base NULL = stage_name) and returns its index
 * in *index; KP_ERR_ARG if the id is taken, KP_ERR_NOMEM. */
int kp_graph_add(kp_graph *g, const char *id, const char *stage_name, const char *base,
                 int part, int *index, char *err, size_t errlen);

/* Adds an input path (copied); external = 1 for a file no task produces. */
int kp_graph_add_input(kp_graph *g, int task, const char *path, int external);

/* Adds output number `output` of task `from` as an internal input of task
 * (its path shared, not copied). */
int kp_graph_add_input_from(kp_graph *g, int task, int from, int output);

/* Adds an output path (copied). */
int kp_graph_add_output(kp_graph *g, int task, const char *path);

/* Makes task wait for dep (a repeated edge is ignored). */
int kp_graph_add_dep(kp_graph *g, int task, int dep);

/* Sets the param text (copied, replacing any earlier one). */
int kp_graph_set_params(kp_graph *g, int task, const char *text);

/* Makes task a command (copied; cwd may be NULL). */
int kp_graph_set_command(kp_graph *g, int task, const char *command, const char *cwd);

/* Sets the folder made before the task runs and its log path (copied; either may be NULL). */
int kp_graph_set_files(kp_graph *g, int task, const char *dir, const char *log_path);

/* Sets where the task's stage is declared (copied), for error messages. */
int kp_graph_set_where(kp_graph *g, int task, const char *where);

/* Fills the users lists and checks the graph: a cycle is KP_ERR_CYCLE with
 * its path ("a -> b -> a"), two tasks writing one file is KP_ERR_CONFIG.
 * Call once, after the last add. */
int kp_graph_finish(kp_graph *g, char *err, size_t errlen);

/* Returns the number of tasks. */
int kp_graph_count(const kp_graph *g);

/* Returns task i (borrowed from g; valid until kp_graph_free). */
kp_task *kp_graph_task(const kp_graph *g, int i);

/* Returns the index of the task with this id, or -1. */
int kp_graph_find(const kp_graph *g, const char *id);

/* Returns the index of the task that writes path, or -1. */
int kp_graph_producer(const kp_graph *g, const char *path);

/* Builds the task graph of a loaded config (graph_build.c); *out caller-owned. */
int kp_graph_build(const kp_config *cfg, kp_graph **out, char *err, size_t errlen);

/* Writes the param text of a task into out (graph_build.c): kpipe version,
 * stage type, task id, canonical opts, params and competition, and the
 * command line with the run and config folders as {run_dir}, {config_dir}.
 * comp is kp_config_competition_canonical's text, or NULL to make it here. */
int kp_graph_param_text(const kp_config *cfg, const kp_stage *st, const char *task_id,
                        const char *command, const char *comp, kp_buf *out);

#endif
