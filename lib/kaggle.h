/* kaggle.h - a client of Kaggle's API: competition data in, submissions out.
 *
 * Every call is POST {endpoint}/v1/competitions.CompetitionApiService/METHOD
 * with a camelCase JSON body; the endpoint is https://api.kaggle.com unless
 * opts or $KAGGLE_API_ENDPOINT say otherwise (tests, mirrors).  Downloads
 * ask DownloadDataFile(s), whose answer is a redirect to the file, then
 * fetch that URL with lib/download.h (resumable, retried; the redirect is
 * asked again on each run, signed URLs expire).  A submission is
 * StartSubmissionUpload -> PUT of the file to its createUrl (a resumable
 * upload: after a failure the bytes held are asked and the rest sent) ->
 * CreateSubmission.  HTTP 401 names the credentials' source, 403 says to
 * accept the rules on the website, 404 names the competition; secrets never
 * appear (see lib/kaggle_creds.h, lib/http.h).
 */
#ifndef KP_KAGGLE_H
#define KP_KAGGLE_H

#include <stdint.h>
#include <stdio.h>
#include "download.h"
#include "http.h"

typedef struct kp_kaggle kp_kaggle;

typedef struct kp_kaggle_opts {
    const char *endpoint;      /* NULL: $KAGGLE_API_ENDPOINT, else https://api.kaggle.com */
    FILE *log;                 /* progress and retry lines; NULL = quiet; borrowed */
    FILE *verbose;             /* HTTP headers, secrets redacted; NULL = quiet; borrowed */
    int tty;                   /* log is a terminal: progress redrawn in place */
} kp_kaggle_opts;

typedef struct kp_kaggle_file {
    char *name;
    int64_t size;              /* bytes, -1 if not given */
    char *created;             /* creation date as sent, or "" */
} kp_kaggle_file;

typedef struct kp_kaggle_sub {
    long ref;
    char *date, *description, *file_name, *status, *public_score, *private_score;
} kp_kaggle_sub;

/* Loads the credentials and makes a client; *out caller-owned (kp_kaggle_free). */
int kp_kaggle_create(const kp_kaggle_opts *o, kp_kaggle **out, char *err, size_t errlen);

/* Frees a client (wiping its secrets); NULL is accepted. */
void kp_kaggle_free(kp_kaggle *k);

/* Returns the endpoint in use (borrowed). */
const char *kp_kaggle_endpoint(const kp_kaggle *k);

/* Lists a competition's data files (every page); *files caller-owned
 * (kp_kaggle_files_free). */
int kp_kaggle_list_files(kp_kaggle *k, const char *competition, kp_kaggle_file **files, int *n,
                         char *err, size_t errlen);
void kp_kaggle_files_free(kp_kaggle_file *files, int n);

/* Downloads into dir either the named files (n_names > 0; each as DIR/NAME)
 * or the whole data as DIR/COMPETITION.zip, then unpacks every .zip among
 * them into dir (lib/unpack.h; at most max_unpacked bytes, 0 = default).
 * A file already there is not asked for again unless force (a partial
 * download is "<dest>.part", so a file there is whole). */
int kp_kaggle_download(kp_kaggle *k, const char *competition, const char *dir,
                       const char *const *names, int n_names, int64_t max_unpacked, int force,
                       char *err, size_t errlen);

/* Uploads path as a submission with message; *ref gets Kaggle's submission ref. */
int kp_kaggle_submit(kp_kaggle *k, const char *competition, const char *path,
                     const char *message, long *ref, char *err, size_t errlen);

/* Lists the user's submissions to a competition, newest first; *subs
 * caller-owned (kp_kaggle_subs_free). */
int kp_kaggle_submissions(kp_kaggle *k, const char *competition, kp_kaggle_sub **subs, int *n,
                          char *err, size_t errlen);
void kp_kaggle_subs_free(kp_kaggle_sub *subs, int n);

#endif
