/* submit_upload.c - check, deduplicate, upload, record. */
#include "submit_upload.h"

#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/kaggle.h"
#include "../lib/ledger.h"

#define PATH_LEN 4096

/* The file's name relative to the ledger's folder (its last component). */
static const char *ledger_name(const char *file)
{
    const char *s = strrchr(file, '/');
    return s ? s + 1 : file;
}

/* Returns the last `written` row of this prediction, or NULL. */
static const kp_ledger_row *written_row(const kp_ledger *l, const char *hash)
{
    const kp_ledger_row *hit = NULL;
    for (int i = 0; i < kp_ledger_count(l); i++) {
        const kp_ledger_row *r = kp_ledger_at(l, i);
        if (!strcmp(r->event, "written") && !strcmp(r->prediction_hash, hash))
            hit = r;
    }
    return hit;
}

/* Refuses a prediction already uploaded to the competition, unless forced. */
static int check_duplicate(const kp_upload *u, const kp_ledger *l, const char *hash,
                           const char *ledger, char *err, size_t errlen)
{
    int i = kp_ledger_find_upload(l, u->competition, hash);
    if (i < 0)
        return 0;
    const kp_ledger_row *r = kp_ledger_at(l, i);
    if (u->force) {
        if (u->log)
            fprintf(u->log, "uploading again: the same prediction went up as ref %s at %s\n",
                    r->ref, r->time);
        return 0;
    }
    return kp_errf(err, errlen, KP_ERR_MISMATCH,
                   "%s: the same prediction (%s) was already uploaded to %s as ref %s at %s "
                   "(\"%s\", %s); not uploading it again without force", u->file, hash,
                   u->competition, r->ref, r->time, r->message, ledger);
}

int kp_upload_submission(const kp_upload *u, long *ref, char *err, size_t errlen)
{
    char ledger[PATH_LEN], hash[KP_HASH_HEXLEN], now[32], refs[32];
    kp_ledger *l = NULL;
    kp_kaggle *k = NULL;
    kp_kaggle_opts ko = {.endpoint = u->endpoint, .log = u->log, .verbose = u->verbose,
                         .tty = u->tty};
    int rc;
    *ref = 0;
    if (kp_ledger_path_for(u->file, ledger, sizeof ledger) < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "%s: path too long", u->file);
    if ((u->contract && (rc = kp_contract_check_file(u->contract, u->file, err, errlen)) < 0) ||
        (rc = kp_ledger_file_hash(u->file, hash, err, errlen)) < 0 ||
        (rc = kp_ledger_read(ledger, &l, err, errlen)) < 0 ||
        (rc = check_duplicate(u, l, hash, ledger, err, errlen)) < 0 ||
        (rc = kp_kaggle_create(&ko, &k, err, errlen)) < 0 ||
        (rc = kp_kaggle_submit(k, u->competition, u->file, u->message, ref, err, errlen)) < 0)
        goto done;
    const kp_ledger_row *w = written_row(l, hash);
    snprintf(refs, sizeof refs, "%ld", *ref);
    if ((rc = kp_ledger_now(now)) < 0) {
        kp_errf(err, errlen, rc, "KPIPE_NOW is not a time like 2026-11-30T12:00:00Z");
        goto done;
    }
    kp_ledger_row row = {
        .time = now, .event = "uploaded", .competition = (char *)u->competition,
        .file = (char *)ledger_name(u->file),
        .config_hash = (char *)(u->config_hash ? u->config_hash : w ? w->config_hash : ""),
        .prediction_hash = hash, .cv = w ? w->cv : "", .metric = w ? w->metric : "",
        .message = (char *)(u->message ? u->message : ""), .ref = refs};
    rc = kp_ledger_append(ledger, &row, err, errlen);
    if (rc < 0)
        kp_err_prefix(err, errlen, rc, "uploaded, but the ledger was not updated");
done:
    kp_kaggle_free(k);
    kp_ledger_free(l);
    return rc;
}
