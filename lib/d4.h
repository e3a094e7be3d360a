/* d4.h - the eight symmetries of a square (the dihedral group D4) on CHW
 * float images: flips, rotations by 90 degrees and transposes, for
 * augmentation and test-time augmentation (TTA), where a prediction made on
 * a transformed image (or mask) is mapped back by the inverse transform.
 *
 * Transform t in 0..7 is: rotate counter-clockwise by (t % 4) quarter turns,
 * after a horizontal flip when t >= 4.  So 0 is the identity, 4 the
 * horizontal flip, 2 the half turn, 6 the vertical flip, 5 and 7 the two
 * transposes.  Odd t (and 5, 7) swap height and width.
 */
#ifndef KP_D4_H
#define KP_D4_H

#define KP_D4_COUNT 8

/* Returns the transform that undoes t. */
int kp_d4_inverse(int t);

/* Returns 1 if t swaps height and width. */
int kp_d4_swaps(int t);

/* Writes transform t of src (C x H x W) into dst (C x H' x W', where
 * H' x W' is W x H when kp_d4_swaps(t)); src and dst must not overlap. */
void kp_d4_apply(const float *src, int C, int H, int W, int t, float *dst);

#endif
