/* polygon.h - masks traced into polygons, written as WKT (Dstl's submission
 * format, and any competition scored on shapes).
 *
 * A mask is h x w bytes, row-major (mask[y * w + x]), nonzero = in the mask;
 * pixel (x, y) is the closed unit square [x, x+1] x [y, y+1], so the
 * polygons cover exactly the mask's pixels (area = pixel count) and their
 * vertices are pixel corners, with collinear vertices merged.
 *
 * Connectivity, chosen so that every output is OGC-valid (shapely's
 * is_valid): each polygon is one 4-connected component of the mask, since a
 * polygon's interior must be connected and two squares meeting only at a
 * corner do not share interior.  Where pixels meet diagonally the rings are
 * kept apart at that corner:
 *   - two diagonal pixels of different components are two polygons touching
 *     at one point (valid in a MULTIPOLYGON: boundaries meet at finitely many
 *     points);
 *   - two diagonal pixels of the same component leave the two background
 *     pixels between them in different rings: a hole touching the shell, or
 *     another hole, at one point (valid: rings may touch at a point if the
 *     interior stays connected).  A single ring through a vertex twice (the
 *     "inverted" form) is never written: GEOS calls it a self-intersection.
 * Holes are the bounded 4-connected regions of non-component pixels; a
 * component inside a hole of another is a polygon of its own.
 *
 * Polygons are written in raster order of their first pixel; in each, the
 * shell, then the holes in raster order of their first pixel.  Each ring
 * starts at its top-left vertex and repeats it at the end.  Orientation:
 * shells counter-clockwise and holes clockwise in the output coordinates
 * taken as a plane with x to the right and y up, i.e. the shoelace area of a
 * shell is positive, of a hole negative (shapely's orient(p, sign=1.0),
 * exterior.is_ccw true).  Rings are reversed as needed when sx * sy < 0
 * (Dstl's negative y scale).
 *
 * Cost: linear in the pixels plus the text; about 5 bytes per pixel of
 * scratch (labels and traced-edge bits) and 8 bytes per corner, freed on
 * return.
 */
#ifndef KP_POLYGON_H
#define KP_POLYGON_H

#include <stddef.h>
#include <stdint.h>
#include "buf.h"

/* Appends "MULTIPOLYGON (((x y, ...), (hole ...)), ...)" for mask (borrowed,
 * w, h >= 0) to out, each vertex (x, y) written as (x * sx, y * sy) with %.*g
 * of digits significant digits (1..17; enough that neighbouring corners stay
 * distinct); an empty mask gives "MULTIPOLYGON EMPTY".  0, KP_ERR_NOMEM (out
 * keeps only what it held before) or KP_ERR_ARG (h * w of 2^31 or more). */
KP_WARN_UNUSED int kp_wkt_multipolygon(const uint8_t *mask, int w, int h, double sx, double sy,
                                       int digits, kp_buf *out);

/* Dstl's scale from pixels of a w x h image to its grid, whose x runs from 0
 * to xmax and y from 0 to ymin (negative): *sx = xmax / W', *sy = ymin / H'
 * with W' = w * w / (w + 1) and H' = h * h / (h + 1). */
void kp_dstl_scale(int w, int h, double xmax, double ymin, double *sx, double *sy);

#endif
