/* image.h - PNG images in and out (libpng), for the image stages.
 *
 * A kp_image is row-major, channels interleaved (H x W x C), 8 or 16 bits
 * per sample (uint8_t or native-endian uint16_t).  Reading keeps what the
 * file holds: gray (1 channel), gray + alpha (2), RGB (3) or RGBA (4), at 8
 * or 16 bits; gray below 8 bits is widened to 8 and a palette image becomes
 * RGB (RGBA with a transparency chunk).  Files are hostile: every libpng
 * error becomes "PATH: what libpng said", and images wider or taller than
 * KP_IMAGE_MAX_SIDE, or bigger than KP_IMAGE_MAX_BYTES decoded, are refused
 * before anything is allocated.
 */
#ifndef KP_IMAGE_H
#define KP_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#define KP_IMAGE_MAX_SIDE 65536
#define KP_IMAGE_MAX_BYTES ((size_t)1 << 31)

typedef struct kp_image {
    int width, height, channels;   /* channels 1..4 */
    int depth;                     /* bits per sample: 8 or 16 */
    void *data;                    /* height * width * channels samples, owned */
} kp_image;

/* Reads the PNG at path into *img (zeroed first; free with kp_image_free);
 * 0, KP_ERR_IO (cannot open) or KP_ERR_FORMAT (not a PNG, corrupt, too big). */
int kp_image_read_png(const char *path, kp_image *img, char *err, size_t errlen);

/* As kp_image_read_png, but a palette image keeps its palette indices (one
 * 8-bit channel): label masks, where the index is the class. */
int kp_image_read_labels(const char *path, kp_image *img, char *err, size_t errlen);

/* Reads only the size of the PNG at path (its header); 0 or a status. */
int kp_image_png_size(const char *path, int *width, int *height, char *err, size_t errlen);

/* Writes img as a PNG at path atomically (temp file, fsync, rename); img is
 * borrowed.  0 or a negative status. */
int kp_image_write_png(const char *path, const kp_image *img, char *err, size_t errlen);

/* Returns the bytes of img's samples (height * width * channels * depth / 8). */
size_t kp_image_bytes(const kp_image *img);

typedef enum kp_resize_mode {
    KP_RESIZE_AREA,      /* each output pixel averages the source area it covers (shrinking) */
    KP_RESIZE_BILINEAR   /* half-pixel centres, edges clamped (as PIL and OpenCV) */
} kp_resize_mode;

/* Resizes src to width x height into *dst (same channels and depth; samples
 * rounded to nearest; *dst caller-owned, kp_image_free); src borrowed.
 * 0, KP_ERR_ARG (a size below 1 or above KP_IMAGE_MAX_SIDE) or KP_ERR_NOMEM. */
int kp_image_resize(const kp_image *src, int width, int height, kp_resize_mode mode,
                    kp_image *dst, char *err, size_t errlen);

/* Frees img's data and zeroes it; NULL is accepted. */
void kp_image_free(kp_image *img);

#endif
