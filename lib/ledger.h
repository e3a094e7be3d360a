/* ledger.h - the submissions ledger: every submission file written or uploaded.
 *
 * A ledger is the CSV file ledger.csv in the folder of the submissions it
 * records (the submit stage's output folder), with the header
 *   time,event,competition,file,config_hash,prediction_hash,cv,metric,message,
 *   ref,public_score,private_score
 * and one row per event:
 *   time             ISO-8601 UTC, "2026-11-30T12:00:00Z"
 *   event            written (by the submit stage) or uploaded (to Kaggle)
 *   competition      the Kaggle competition (or the config's competition name)
 *   file             the submission's path relative to the ledger's folder
 *   config_hash      hex of the config text's hash (kp_config.text_hash), or ""
 *   prediction_hash  hex of kp_hash (lib/hash.h) of the submission's
 *                    uncompressed bytes
 *   cv               the predictions' out-of-fold score ("%.6g"), or ""
 *   metric           the competition metric, message the upload's message,
 *   ref              the Kaggle submission ref of an upload,
 *   public_score, private_score  filled in later (kp_ledger_set_scores), or "".
 * Fields are CSV-quoted when they hold a comma, a quote or a line end.
 *
 * Writers take an exclusive flock on a lock file beside the ledger
 * (".ledger.csv.lock"), so appends from several processes lose no row and a
 * rewrite (scores) never races an append.  A ledger that is damaged or
 * hostile (another header, a bad time, event or hash) is an error naming
 * FILE:LINE: it is never silently rewritten.
 */
#ifndef KP_LEDGER_H
#define KP_LEDGER_H

#include <stddef.h>
#include "hash.h"

/* One row; in a kp_ledger every field is owned by the ledger and never NULL.
 * For kp_ledger_append a NULL field is written as "". */
typedef struct kp_ledger_row {
    char *time, *event, *competition, *file, *config_hash, *prediction_hash, *cv, *metric,
        *message, *ref, *public_score, *private_score;
} kp_ledger_row;

typedef struct kp_ledger kp_ledger;

/* Writes the ledger path for a submission file ("DIR/ledger.csv" for
 * "DIR/x.csv", "ledger.csv" without a folder) into out; 0 or KP_ERR_ARG
 * (too long). */
int kp_ledger_path_for(const char *submission_file, char *out, size_t outlen);

/* Reads and checks the ledger at path into *out (caller-owned, kp_ledger_free);
 * a missing or empty file is an empty ledger.  KP_ERR_FORMAT names FILE:LINE. */
int kp_ledger_read(const char *path, kp_ledger **out, char *err, size_t errlen);

/* Returns the number of rows. */
int kp_ledger_count(const kp_ledger *l);

/* Returns row i (0 <= i < count, file order); borrowed from l. */
const kp_ledger_row *kp_ledger_at(const kp_ledger *l, int i);

/* Frees a ledger; NULL is accepted. */
void kp_ledger_free(kp_ledger *l);

/* Appends row (borrowed; NULL fields are "") to the ledger at path under the
 * lock, creating the file with its header, then fsyncs.  The row is checked
 * as a read checks it (KP_ERR_ARG) and so is the ledger already there
 * (KP_ERR_FORMAT): nothing is written to a damaged ledger. */
int kp_ledger_append(const char *path, const kp_ledger_row *row, char *err, size_t errlen);

/* Returns the index of the last `uploaded` row of competition whose
 * prediction_hash is the given one, or -1. */
int kp_ledger_find_upload(const kp_ledger *l, const char *competition,
                          const char *prediction_hash);

/* Sets the scores (borrowed; "" or a number) of every `uploaded` row of
 * competition with submission ref `ref`, rewriting the ledger atomically
 * under the lock; KP_ERR_NOTFOUND when there is no such row (the file is
 * then untouched). */
int kp_ledger_set_scores(const char *path, const char *competition, const char *ref,
                         const char *public_score, const char *private_score, char *err,
                         size_t errlen);

/* Writes the current UTC time as "YYYY-MM-DDTHH:MM:SSZ" into out; the
 * environment variable KPIPE_NOW, when set, is used instead (tests).  0, or
 * KP_ERR_ARG when KPIPE_NOW is not such a time. */
int kp_ledger_now(char out[32]);

/* Writes the hex kp_hash of a submission file's uncompressed bytes (a .gz
 * file is gunzipped first) into hex; 0 or a negative status. */
int kp_ledger_file_hash(const char *path, char hex[KP_HASH_HEXLEN], char *err, size_t errlen);

#endif
