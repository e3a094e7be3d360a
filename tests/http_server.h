/* http_server.h - a small HTTP server on 127.0.0.1 for the tests
 * (libmicrohttpd, one thread per connection), playing a file host and
 * Kaggle's API, and told by each test how to misbehave.
 *
 * Files: ts_add_file(s, "/files/a.csv", bytes) serves GET (and HEAD) of
 * that path with Content-Length, honouring "Range: bytes=N-" with 206 and
 * Content-Range (416 past the end).
 *
 * Kaggle: every API call is POST /v1/competitions.CompetitionApiService/METHOD
 * with a JSON body.  When ts_set_auth was called, an API call whose
 * Authorization header is not exactly that value gets 401
 * {"code":401,"message":"Unauthenticated"}.  Methods:
 *   ListDataFiles {competitionName, pageToken?} -> {"files":[{"name","totalBytes","creationDate"}],
 *                 "nextPageToken":""} (the competition's files, by ts_add_competition_file)
 *   DownloadDataFile {competitionName, fileName} -> 302 Location: URL/files/COMP/FILE
 *   DownloadDataFiles {competitionName}           -> 302 Location: URL/files/COMP.zip
 *                 (the test adds that zip with ts_add_file)
 *   StartSubmissionUpload {competitionName, fileName, contentLength,
 *                 lastModifiedEpochSeconds} -> {"token":"blob-N","createUrl":URL/upload/N}
 *   PUT /upload/N: a resumable upload (Google Cloud Storage's protocol): the
 *                 body with "Content-Range: bytes A-B/TOTAL" appends at A (A must equal the
 *                 bytes held, else 400); complete -> 200, partial -> 308 with
 *                 "Range: bytes=0-(held-1)"; "Content-Range: bytes * /TOTAL" (no spaces) with
 *                 an empty body asks the status: 308 (+ Range when held > 0) or 200.
 *   CreateSubmission {competitionName, blobFileTokens, submissionDescription}
 *                 -> {"message":"Successfully submitted to COMP","ref":R} (400 if the token is
 *                 unknown or its upload incomplete)
 *   ListSubmissions {competitionName, page?} -> {"submissions":[{"ref","date","description",
 *                 "fileName","status":"COMPLETE","publicScore","privateScore","totalBytes"}]},
 *                 newest first; publicScore is "" until ts_set_score.
 * An unknown competition answers 404 {"code":404,"message":"Competition not found"};
 * ts_forbid(s, COMP) makes its download methods answer 403 {"code":403,
 * "message":"You must accept this competition's rules before you'll be able to download files."}.
 * Other unknown paths: 404.
 *
 * Faults, armed per path (exact match on the URL path, e.g. "/files/a.csv"
 * or "/v1/competitions.CompetitionApiService/ListSubmissions" or "/upload/1"),
 * each consumed by the next request(s) to that path:
 *   ts_fail(s, path, n, status, retry_after)  the next n requests get `status`
 *                                             (with "Retry-After: retry_after" when >= 0)
 *   ts_cut(s, path, n, after)                 the next n responses announce the full
 *                                             Content-Length, send `after` bytes, then close
 *                                             the connection (for an upload: keep `after`
 *                                             bytes of the body, then answer 503)
 *   ts_stall(s, path, n, after, seconds)      send `after` bytes, then nothing for `seconds`,
 *                                             then close
 *   ts_ignore_range(s, path)                  answer every Range request with 200 and the whole file
 *
 * Every request is recorded (method, path, Range and Authorization headers)
 * for the tests to check; all functions are thread-safe.
 *
 * Details the implementation fixes: a competition exists once it has a file
 * (ts_add_competition_file) or was forbidden; upload N has token "blob-N";
 * submission refs count 1001, 1002, ...; ListSubmissions answers page 1 (or no
 * page) in full and later pages empty; totalBytes and ref are JSON integers.
 * A stall with after > 0 trips curl's low-speed limit only once curl's
 * average over its ~5 s window falls below it: use after = 0 for a prompt trip.
 */
#ifndef KP_TEST_HTTP_SERVER_H
#define KP_TEST_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

typedef struct ts_server ts_server;

typedef struct ts_request {
    char method[8];
    char path[256];
    char range[64];            /* the Range header, "" if none */
    char content_range[64];    /* the Content-Range header, "" if none */
    int had_auth;              /* an Authorization header was sent */
    int auth_ok;               /* ... and it matched ts_set_auth's */
    int status;                /* what the server answered */
} ts_request;

/* Starts a server on 127.0.0.1 at a free port; NULL on failure. Free with ts_stop. */
ts_server *ts_start(void);

/* Stops the server and frees everything; NULL is accepted. */
void ts_stop(ts_server *s);

/* Returns "http://127.0.0.1:PORT" (borrowed). */
const char *ts_url(const ts_server *s);

/* Serves len bytes (copied) at path. */
void ts_add_file(ts_server *s, const char *path, const void *data, size_t len);

/* The Authorization header value API calls must carry, e.g. "Bearer tok" (copied). */
void ts_set_auth(ts_server *s, const char *authorization);

/* Adds a file to competition comp's data (served at /files/COMP/NAME; copied). */
void ts_add_competition_file(ts_server *s, const char *comp, const char *name, const void *data,
                             size_t len);

/* Makes comp's downloads answer 403 (rules not accepted). */
void ts_forbid(ts_server *s, const char *comp);

/* Sets the public and private scores of submission ref (strings as Kaggle sends them). */
void ts_set_score(ts_server *s, long ref, const char *public_score, const char *private_score);

/* Returns the bytes of submission ref (borrowed until ts_stop; NULL if none) and its length. */
const void *ts_submission(const ts_server *s, long ref, size_t *len, char *desc, size_t desclen);

/* Returns how many submissions were created. */
int ts_submission_count(const ts_server *s);

/* Fault injection, see above. */
void ts_fail(ts_server *s, const char *path, int n, int status, int retry_after);
void ts_cut(ts_server *s, const char *path, int n, int64_t after);
void ts_stall(ts_server *s, const char *path, int n, int64_t after, int seconds);
void ts_ignore_range(ts_server *s, const char *path);

/* Returns the number of requests recorded, and copies request i into *out (0 or -1). */
int ts_request_count(const ts_server *s);
int ts_request_at(const ts_server *s, int i, ts_request *out);

/* Returns the number of requests recorded for path. */
int ts_requests_to(const ts_server *s, const char *path);

/* Forgets the recorded requests. */
void ts_clear_requests(ts_server *s);

#endif
