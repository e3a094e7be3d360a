/* csv.h - RFC 4180 CSV files read whole into a table of strings (on libcsv).
 *
 * Quotes, doubled quotes, embedded commas and newlines, CRLF or LF line ends
 * and UTF-8 (a leading BOM is dropped) are accepted.  A ragged row, a stray
 * quote or an empty file is an error naming "FILE:ROW:COL" (1-based; row 1
 * is the header).
 */
#ifndef KP_CSV_H
#define KP_CSV_H

#include <stddef.h>

typedef struct kp_csv kp_csv;

/* Reads path into *out (caller-owned, free with kp_csv_free); the first row is the header. */
int kp_csv_read(const char *path, kp_csv **out, char *err, size_t errlen);

/* Parses an in-memory CSV text; `name` is used in error messages. */
int kp_csv_parse(const char *name, const char *text, size_t len, kp_csv **out,
                 char *err, size_t errlen);

/* Frees the table; NULL is accepted. */
void kp_csv_free(kp_csv *t);

/* Returns the number of data rows (the header excluded). */
size_t kp_csv_rows(const kp_csv *t);

/* Returns the number of columns. */
size_t kp_csv_cols(const kp_csv *t);

/* Returns the header name of column c; borrowed from t. */
const char *kp_csv_header(const kp_csv *t, size_t c);

/* Returns the index of the column named `name`, or -1. */
long kp_csv_find(const kp_csv *t, const char *name);

/* Returns the field at data row r, column c (NUL-terminated); borrowed from t. */
const char *kp_csv_get(const kp_csv *t, size_t r, size_t c);

/* Returns the 1-based file line on which data row r starts (0 if r is out of
 * range); differs from r + 2 after blank lines or fields holding newlines. */
size_t kp_csv_line(const kp_csv *t, size_t r);

/* Returns the file name given at read time; borrowed from t. */
const char *kp_csv_name(const kp_csv *t);

/* Writes one field to f, quoting it when it holds a comma, quote, CR or LF. */
int kp_csv_write_field(void *file /* FILE* */, const char *s);

#endif
