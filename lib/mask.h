/* mask.h - binary masks and probability maps: thresholding, connected
 * components, small-component removal, resizing.
 *
 * A mask is h x w bytes, row-major (mask[y * w + x]), nonzero = in the mask.
 * A map is h x w floats, row-major (one channel of a CHW prediction).
 * Components are labelled in two raster passes with union-find over pixel
 * indices (no recursion, no allocation, near-linear time): labels are 1..count
 * in raster order of each component's first pixel, 0 for the background.
 * Nothing here allocates: the caller sizes the scratch once.
 */
#ifndef KP_MASK_H
#define KP_MASK_H

#include <stddef.h>
#include <stdint.h>

/* Thresholds a probability map: mask[i] = p[i] > t (0 or 1; NaN gives 0). */
void kp_mask_threshold(const float *p, int w, int h, float t, uint8_t *mask);

/* Labels the connected components of mask (nonzero pixels) into labels
 * (h * w int32, caller-owned): connectivity 8 joins diagonal neighbours, 4
 * only edge neighbours.  Returns the count of components, or KP_ERR_ARG when
 * connectivity is not 4 or 8 or h * w is 2^31 or more. */
int kp_mask_label(const uint8_t *mask, int w, int h, int connectivity, int32_t *labels);

/* Returns the bytes of scratch kp_mask_remove_small needs for a w x h mask. */
size_t kp_mask_work_size(int w, int h);

/* Removes (sets to 0) the 8-connected components of mask smaller than
 * min_size pixels; work: caller-owned scratch of kp_mask_work_size(w, h)
 * bytes, 4-byte aligned.  Returns how many components were removed, or
 * KP_ERR_ARG as kp_mask_label. */
int kp_mask_remove_small(uint8_t *mask, int w, int h, int min_size, void *work);

/* Resizes a w x h float map to w2 x h2 into dst (caller-owned), bilinear with
 * half-pixel centres and edges clamped, as OpenCV's INTER_LINEAR and
 * PyTorch's interpolate(mode="bilinear", align_corners=False): output pixel
 * x samples the source at (x + 0.5) * w / w2 - 0.5. */
void kp_map_resize(const float *src, int w, int h, float *dst, int w2, int h2);

/* Resizes a w x h float map to w2 x h2 into dst, nearest neighbour with
 * half-pixel centres: output x takes source floor((x + 0.5) * w / w2), as
 * PyTorch's mode="nearest-exact", OpenCV's INTER_NEAREST_EXACT and PIL. */
void kp_map_resize_nearest(const float *src, int w, int h, float *dst, int w2, int h2);

/* The same nearest-neighbour resize for a mask or label image of bytes. */
void kp_mask_resize_nearest(const uint8_t *src, int w, int h, uint8_t *dst, int w2, int h2);

#endif
