/* submit_upload.h - a submission file to Kaggle, checked and recorded.
 *
 * The one path every upload takes (the submit stage's `kaggle:` option and
 * `kpipe kaggle submit`): the file is checked against the competition's
 * contract (when one is given) and refused if it fails; a prediction whose
 * hash the ledger already shows uploaded to that competition is refused
 * unless forced; then lib/kaggle.h uploads it and an `uploaded` row goes
 * to the ledger beside the file, with the CV of the `written` row of the
 * same prediction when there is one.
 */
#ifndef KP_SUBMIT_UPLOAD_H
#define KP_SUBMIT_UPLOAD_H

#include <stdio.h>
#include "contract.h"

typedef struct kp_upload {
    const char *file;              /* the submission file; borrowed */
    const char *competition;       /* the Kaggle competition (the last part of its URL) */
    const char *message;           /* the submission's description */
    const kp_contract *contract;   /* checked first; NULL = not checked */
    const char *config_hash;       /* hex; NULL = the written row's, if any */
    const char *endpoint;          /* NULL = lib/kaggle.h's default */
    int force;                     /* upload an identical prediction again */
    FILE *log;                     /* progress lines; NULL = quiet; borrowed */
    int tty;
    FILE *verbose;                 /* HTTP headers, secrets redacted; NULL = quiet */
} kp_upload;

/* Uploads u->file as above; *ref gets Kaggle's submission ref. KP_ERR_MISMATCH
 * for a duplicate without force, the contract's status for a refused file. */
int kp_upload_submission(const kp_upload *u, long *ref, char *err, size_t errlen);

#endif
