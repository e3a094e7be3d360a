/* augment.h - seeded on-the-fly augmentation of CHW float images.
 *
 * The cnn training loop calls kp_augment_apply once per image of a batch with
 * an RNG derived from (seed, epoch, image index), so the result depends on
 * nothing else (not the thread count).  The images are already normalised by
 * the per-channel mean and std, so the zero that pads or fills a border is the
 * mean colour.  Transforms follow albumentations (RandomRotate90,
 * ShiftScaleRotate, RandomBrightnessContrast) and torchvision's RandomCrop
 * with padding; docs/augment.md is the user's reference.
 *
 * The transforms run in a fixed order, whatever order the config lists them
 * in: hflip, vflip, rot90, transpose (composed into one D4 symmetry and
 * applied in one pass), then crop, ssr, bc.  For each enabled transform
 * (p > 0), in that order, one uniform u is drawn and the transform happens
 * when u < p; its own random parameters are drawn next.
 *
 * kp_augment is a plain struct: all zeros means "no augmentation".
 */
#ifndef KP_AUGMENT_H
#define KP_AUGMENT_H

#include <stddef.h>
#include "params.h"
#include "rng.h"

/* What lies outside the image: zeros, or its mirror image without repeating
 * the edge pixel (numpy "reflect", OpenCV BORDER_REFLECT_101). */
typedef enum kp_aug_border { KP_AUG_ZERO, KP_AUG_REFLECT } kp_aug_border;

typedef struct kp_augment {
    double hflip, vflip;    /* probabilities of a horizontal / vertical flip */
    double rot90;           /* probability of turning by k quarter turns, k uniform
                             * in 0..3 (albumentations RandomRotate90); square images */
    double transpose;       /* probability of swapping rows and columns; square images */
    struct {
        double p;
        int pad;            /* pad by pad pixels, crop H x W back at a random offset */
        kp_aug_border border;
    } crop;
    struct {
        double p;
        double shift;       /* dx, dy uniform in +-shift, fractions of W and H */
        double scale;       /* zoom uniform in 1 +- scale */
        double rotate;      /* angle uniform in +-rotate degrees, counter-clockwise */
        kp_aug_border border;
    } ssr;
    struct {
        double p;
        double brightness;  /* beta uniform in +-brightness */
        double contrast;    /* alpha uniform in 1 +- contrast; x = alpha x + beta */
    } bc;
} kp_augment;

/* Parses a config list such as {"hflip", "crop 4", "ssr 0.0625 0.1 15 p=0.3"}
 * (grammar in docs/augment.md) into *out; an empty list is no augmentation.
 * 0, or KP_ERR_CONFIG with "augment[I] 'ITEM': problem" and *out untouched. */
int kp_augment_parse(const char *const *items, int n, kp_augment *out, char *err,
                     size_t errlen);

/* Parses list `key` of params (absent: no augmentation) into *out; errors
 * read "FILE:LINE:COL: WHERE.KEY[I] 'ITEM': problem" (file NULL or "":
 * "WHERE.KEY[I] 'ITEM': problem").  *out untouched on error. */
int kp_augment_from_params(const kp_params *p, const char *key, const char *file,
                           const char *where, kp_augment *out, char *err, size_t errlen);

/* Checks that a suits C x H x W images (rot90 and transpose need H == W, the
 * crop padding must be below H and W); 0 or KP_ERR_CONFIG with a message. */
int kp_augment_check(const kp_augment *a, int C, int H, int W, char *err, size_t errlen);

/* Returns 1 if a may change an image (some probability is above 0). */
int kp_augment_any(const kp_augment *a);

/* Floats of workspace kp_augment_apply needs for one C x H x W image. */
size_t kp_augment_workspace(const kp_augment *a, int C, int H, int W);

/* Augments img (C x H x W, in place) drawing from rng; tmp holds
 * kp_augment_workspace floats (borrowed, any contents).  Allocates nothing;
 * a must have passed kp_augment_check for this shape. */
void kp_augment_apply(const kp_augment *a, kp_rng *rng, float *img, int C, int H, int W,
                      float *tmp);

/* As kp_augment_apply, on an image followed by its target maps (segmentation):
 * img holds C image channels then M mask channels (C + M x H x W); the
 * geometric transforms move all of them alike (their borders fill masks with 0),
 * brightness/contrast touches only the C image channels.  ssr interpolates
 * masks bilinearly: the caller rounds them.  tmp: kp_augment_workspace(a, C + M, H, W). */
void kp_augment_apply_masked(const kp_augment *a, kp_rng *rng, float *img, int C, int M,
                             int H, int W, float *tmp);

/* Writes src moved by dy rows down and dx columns right into dst:
 * dst(y, x) = src(y - dy, x - dx), the border filling what comes in (the
 * crop of a padded image).  src and dst must not overlap. */
void kp_augment_shift(const float *src, int C, int H, int W, int dy, int dx,
                      kp_aug_border border, float *dst);

/* Writes into dst the shift-scale-rotate of src with these parameters, as
 * albumentations' shift_scale_rotate: OpenCV's rotation matrix about the
 * centre ((W-1)/2, (H-1)/2) by angle degrees counter-clockwise and scale,
 * then a shift of (dx W, dy H) pixels; bilinear.  No overlap. */
void kp_augment_warp(const float *src, int C, int H, int W, double angle, double scale,
                     double dx, double dy, kp_aug_border border, float *dst);

#endif
