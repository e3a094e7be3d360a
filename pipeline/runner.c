/* runner.c - what every runner shares. */
#include "runner.h"

void kp_runner_free(kp_runner *r)
{
    if (r)
        r->ops->free(r);
}

int kp_runner_thread_budget(int cores, int jobs)
{
    int t = jobs > 0 ? cores / jobs : cores;
    return t > 1 ? t : 1;
}
