/* image.c - PNG images in and out with libpng (see image.h).
 *
 * libpng reports errors by longjmp to the setjmp of the call that set it
 * up: each of read and write does its libpng work in one function with one
 * setjmp, and everything that function allocates is reachable from a
 * struct the error path frees, so no local is changed between setjmp and
 * longjmp (C11 7.13.2.1).
 */
#include "image.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "afile.h"
#include "err.h"

/* What an error handler needs: the message libpng gave. */
typedef struct png_msg {
    char text[256];
} png_msg;

static void on_error(png_structp png, png_const_charp msg)
{
    png_msg *m = png_get_error_ptr(png);
    snprintf(m->text, sizeof m->text, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;   /* warnings (e.g. a bad sRGB chunk) do not stop a read */
}

size_t kp_image_bytes(const kp_image *img)
{
    return (size_t)img->height * (size_t)img->width * (size_t)img->channels *
           (size_t)(img->depth / 8);
}

void kp_image_free(kp_image *img)
{
    if (!img)
        return;
    free(img->data);
    memset(img, 0, sizeof *img);
}

/* ---- reading ---- */

typedef struct reader {
    png_structp png;
    png_infop info;
    png_bytep *rows;
    png_msg msg;
    int too_big;
    int labels;         /* 1: palette images keep their indices (label masks) */
    int header_only;    /* 1: read the size and stop */
} reader;

/* Sets libpng's transforms so that the rows come out as image.h says. */
static void set_transforms(png_structp png, png_infop info, int labels)
{
    int color = png_get_color_type(png, info), bits = png_get_bit_depth(png, info);
    if (color == PNG_COLOR_TYPE_PALETTE && labels && bits < 8)
        png_set_packing(png);
    else if (color == PNG_COLOR_TYPE_PALETTE) {
        png_set_palette_to_rgb(png);
        if (png_get_valid(png, info, PNG_INFO_tRNS))
            png_set_tRNS_to_alpha(png);
    }
    if (color == PNG_COLOR_TYPE_GRAY && bits < 8)
        png_set_expand_gray_1_2_4_to_8(png);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (bits == 16)
        png_set_swap(png);   /* PNG is big-endian; samples are native uint16_t */
#endif
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

/* Decodes f (past its signature) into img; 0, or -1 with r->msg set. */
static int decode(reader *r, FILE *f, kp_image *img)
{
    if (setjmp(png_jmpbuf(r->png)))
        return -1;
    png_init_io(r->png, f);
    png_set_sig_bytes(r->png, 8);
    png_set_user_limits(r->png, KP_IMAGE_MAX_SIDE, KP_IMAGE_MAX_SIDE);
    png_read_info(r->png, r->info);
    if (r->header_only) {
        img->width = (int)png_get_image_width(r->png, r->info);
        img->height = (int)png_get_image_height(r->png, r->info);
        return 0;
    }
    set_transforms(r->png, r->info, r->labels);
    size_t h = png_get_image_height(r->png, r->info);
    size_t rowbytes = png_get_rowbytes(r->png, r->info);
    if (h * rowbytes > KP_IMAGE_MAX_BYTES) {
        r->too_big = 1;
        png_error(r->png, "image too big to decode");
    }
    img->width = (int)png_get_image_width(r->png, r->info);
    img->height = (int)h;
    img->channels = png_get_channels(r->png, r->info);
    img->depth = png_get_bit_depth(r->png, r->info);
    img->data = malloc(h > 0 && rowbytes > 0 ? h * rowbytes : 1);
    r->rows = malloc(sizeof *r->rows * (h ? h : 1));
    if (!img->data || !r->rows)
        png_error(r->png, "out of memory");
    for (size_t y = 0; y < h; y++)
        r->rows[y] = (png_bytep)img->data + y * rowbytes;
    png_read_image(r->png, r->rows);
    png_read_end(r->png, NULL);
    return 0;
}

/* Reads path as the reader flags say. */
static int read_png(const char *path, kp_image *img, int labels, int header_only, char *err,
                    size_t errlen)
{
    memset(img, 0, sizeof *img);
    FILE *f = fopen(path, "rb");
    if (!f)
        return kp_errf(err, errlen, KP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char sig[8];
    if (fread(sig, 1, sizeof sig, f) != sizeof sig || png_sig_cmp(sig, 0, sizeof sig) != 0) {
        fclose(f);
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: not a PNG file", path);
    }
    reader r = {.labels = labels, .header_only = header_only};
    int rc = 0;
    r.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r.msg, on_error, on_warning);
    r.info = r.png ? png_create_info_struct(r.png) : NULL;
    if (!r.png || !r.info)
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
    else if (decode(&r, f, img) < 0)
        rc = kp_errf(err, errlen, KP_ERR_FORMAT, "%s: %s PNG: %s", path,
                     r.too_big ? "refusing a" : "corrupt", r.msg.text);
    png_destroy_read_struct(&r.png, &r.info, NULL);
    free(r.rows);
    fclose(f);
    if (rc < 0)
        kp_image_free(img);
    return rc;
}

int kp_image_read_png(const char *path, kp_image *img, char *err, size_t errlen)
{
    return read_png(path, img, 0, 0, err, errlen);
}

int kp_image_read_labels(const char *path, kp_image *img, char *err, size_t errlen)
{
    return read_png(path, img, 1, 0, err, errlen);
}

int kp_image_png_size(const char *path, int *width, int *height, char *err, size_t errlen)
{
    kp_image img;
    int rc = read_png(path, &img, 0, 1, err, errlen);
    *width = img.width;
    *height = img.height;
    return rc;
}

/* ---- writing ---- */

typedef struct writer {
    png_structp png;
    png_infop info;
    png_msg msg;
} writer;

/* Encodes img to f; 0, or -1 with w->msg set. */
static int encode(writer *w, FILE *f, const kp_image *img)
{
    static const int color[5] = { 0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                  PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA };
    if (setjmp(png_jmpbuf(w->png)))
        return -1;
    png_init_io(w->png, f);
    png_set_IHDR(w->png, w->info, (png_uint_32)img->width, (png_uint_32)img->height, img->depth,
                 color[img->channels], PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(w->png, w->info);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (img->depth == 16)
        png_set_swap(w->png);
#endif
    size_t rowbytes = (size_t)img->width * (size_t)img->channels * (size_t)(img->depth / 8);
    for (int y = 0; y < img->height; y++)
        png_write_row(w->png, (png_const_bytep)img->data + (size_t)y * rowbytes);
    png_write_end(w->png, NULL);
    return 0;
}

int kp_image_write_png(const char *path, const kp_image *img, char *err, size_t errlen)
{
    if (img->channels < 1 || img->channels > 4 || (img->depth != 8 && img->depth != 16) ||
        img->width < 1 || img->height < 1 || img->width > KP_IMAGE_MAX_SIDE ||
        img->height > KP_IMAGE_MAX_SIDE || !img->data)
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "%s: cannot write a %d x %d image of %d channels at %d bits", path,
                       img->width, img->height, img->channels, img->depth);
    kp_afile *af = NULL;
    int rc = kp_afile_open(path, &af, err, errlen);
    if (rc < 0)
        return rc;
    writer w = { 0 };
    w.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &w.msg, on_error, on_warning);
    w.info = w.png ? png_create_info_struct(w.png) : NULL;
    if (!w.png || !w.info)
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
    else if (encode(&w, kp_afile_stream(af), img) < 0)
        rc = kp_errf(err, errlen, KP_ERR_IO, "%s: cannot write the PNG: %s", path, w.msg.text);
    png_destroy_write_struct(&w.png, &w.info);
    if (rc < 0) {
        kp_afile_abort(af);
        return rc;
    }
    return kp_afile_commit(af, err, errlen);
}
