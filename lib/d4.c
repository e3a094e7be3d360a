/* d4.c - the eight square symmetries on CHW images (see d4.h). */
#include "d4.h"

#include <stddef.h>

int kp_d4_inverse(int t)
{
    /* flips are their own inverse; a rotation by q undoes with 4 - q */
    return t >= 4 ? t : (4 - t) % 4;
}

int kp_d4_swaps(int t)
{
    return t % 2 == 1;
}

/* The source pixel (sy, sx) that lands on output pixel (y, x) of an output
 * of Ho x Wo, for a source of H x W. */
static void source_of(int t, int y, int x, int Ho, int Wo, int *sy, int *sx)
{
    int q = t % 4;
    int a = y, b = x;   /* invert the rotation: output -> flipped source */
    switch (q) {
    case 0: a = y; b = x; break;
    case 1: a = x; b = Ho - 1 - y; break;           /* CCW quarter turn */
    case 2: a = Ho - 1 - y; b = Wo - 1 - x; break;
    case 3: a = Wo - 1 - x; b = y; break;
    }
    int W = q % 2 ? Ho : Wo;
    *sy = a;
    *sx = t >= 4 ? W - 1 - b : b;   /* then undo the horizontal flip */
}

void kp_d4_apply(const float *src, int C, int H, int W, int t, float *dst)
{
    int Ho = kp_d4_swaps(t) ? W : H, Wo = kp_d4_swaps(t) ? H : W;
    for (int y = 0; y < Ho; y++)
        for (int x = 0; x < Wo; x++) {
            int sy, sx;
            source_of(t, y, x, Ho, Wo, &sy, &sx);
            for (int c = 0; c < C; c++)
                dst[((size_t)c * Ho + y) * Wo + x] = src[((size_t)c * H + sy) * W + sx];
        }
}
