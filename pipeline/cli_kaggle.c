/* cli_kaggle.c - `kpipe kaggle download|submit|submissions`: Kaggle from the shell. */
#include "cli.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../lib/err.h"
#include "../lib/kaggle.h"
#include "../lib/ledger.h"
#include "../stages/contract.h"
#include "../stages/stage.h"
#include "../stages/submit_upload.h"

const char kp_help_kaggle[] =
    "usage: kpipe kaggle download COMPETITION [-o DIR] [-f FILE]... [--force]\n"
    "       kpipe kaggle submit FILE -c COMPETITION -m MESSAGE [--config CONFIG] [--force]\n"
    "                           [--dry-run]\n"
    "       kpipe kaggle submissions COMPETITION [--ledger LEDGER]\n"
    "\n"
    "download    fetches a competition's data into DIR (default: the current folder):\n"
    "            every file as COMPETITION.zip, unpacked, or only the files named by -f.\n"
    "            Interrupted downloads resume; files already there are kept (--force\n"
    "            fetches them again).\n"
    "submit      uploads FILE as a submission.  With --config, FILE is first checked\n"
    "            against the competition's submission contract and refused if it\n"
    "            fails.  A prediction the ledger (ledger.csv beside FILE) shows already\n"
    "            uploaded to COMPETITION is refused unless --force.  The upload is\n"
    "            recorded in the ledger.  --dry-run does every check (contract, ledger)\n"
    "            and prints the contract, without credentials or network.\n"
    "submissions lists your submissions with their scores, newest first, and writes\n"
    "            the public and private scores into the ledger (default\n"
    "            submissions/ledger.csv) for the uploads it recorded.\n"
    "\n"
    "Credentials: KAGGLE_API_TOKEN (a token or a file), ~/.kaggle/access_token,\n"
    "KAGGLE_USERNAME and KAGGLE_KEY, or ~/.kaggle/kaggle.json (KAGGLE_CONFIG_DIR or\n"
    "XDG_CONFIG_HOME/kaggle instead of ~/.kaggle); files must be chmod 600.\n"
    "KAGGLE_API_ENDPOINT or --endpoint points at another server (tests, mirrors).\n"
    "\n"
    "options:\n"
    "  -o, --output DIR        download: where the files go\n"
    "  -f, --file FILE         download: only this data file (repeatable)\n"
    "  -c, --competition NAME  submit: the competition (the last part of its URL)\n"
    "  -m, --message TEXT      submit: the submission's description\n"
    "      --config CONFIG     submit: check FILE against this config's contract\n"
    "      --ledger LEDGER     submissions: the ledger to update\n"
    "      --force             download again / upload an identical prediction again\n"
    "      --dry-run           submit: check only, upload nothing\n"
    "      --endpoint URL      the API endpoint (default https://api.kaggle.com)\n"
    "  -v, --verbose           print the HTTP requests and answers (secrets redacted)\n"
    "  -h, --help              this help\n";

enum { OPT_CONFIG = 1000, OPT_LEDGER, OPT_FORCE, OPT_ENDPOINT, OPT_DRY_RUN };

#define MAX_FILES 256

typedef struct kaggle_args {
    const char *dir, *competition, *message, *config, *ledger, *endpoint;
    const char *files[MAX_FILES];
    int n_files, force, verbose, dry_run;
} kaggle_args;

static int on_kaggle_opt(int opt, const char *arg, void *data)
{
    kaggle_args *a = data;
    switch (opt) {
    case 'o': a->dir = arg; return 0;
    case 'c': a->competition = arg; return 0;
    case 'm': a->message = arg; return 0;
    case 'v': a->verbose = 1; return 0;
    case OPT_CONFIG: a->config = arg; return 0;
    case OPT_LEDGER: a->ledger = arg; return 0;
    case OPT_FORCE: a->force = 1; return 0;
    case OPT_DRY_RUN: a->dry_run = 1; return 0;
    case OPT_ENDPOINT: a->endpoint = arg; return 0;
    case 'f':
        if (a->n_files == MAX_FILES)
            return kp_cli_error(KP_EXIT_USAGE, "kaggle: at most %d -f files", MAX_FILES);
        a->files[a->n_files++] = arg;
        return 0;
    default:
        return kp_cli_error(KP_EXIT_USAGE, "kaggle: unexpected option");
    }
}

static const struct option kaggle_longopts[] = {
    {"output", required_argument, NULL, 'o'},
    {"file", required_argument, NULL, 'f'},
    {"competition", required_argument, NULL, 'c'},
    {"message", required_argument, NULL, 'm'},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"ledger", required_argument, NULL, OPT_LEDGER},
    {"force", no_argument, NULL, OPT_FORCE},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"endpoint", required_argument, NULL, OPT_ENDPOINT},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static kp_kaggle_opts client_opts(const kaggle_args *a)
{
    return (kp_kaggle_opts){.endpoint = a->endpoint, .log = stderr, .tty = isatty(2),
                            .verbose = a->verbose ? stderr : NULL};
}

static int do_download(const kaggle_args *a, const char *competition)
{
    char err[KP_ERRLEN] = "";
    kp_kaggle_opts o = client_opts(a);
    kp_kaggle *k = NULL;
    const char *dir = a->dir ? a->dir : ".";
    int rc = kp_kaggle_create(&o, &k, err, sizeof err);
    if (rc == 0)
        rc = kp_kaggle_download(k, competition, dir, a->files, a->n_files, 0, a->force, err,
                                sizeof err);
    kp_kaggle_free(k);
    if (rc < 0)
        return kp_cli_error(kp_cli_exit_code(rc), "kaggle download: %s", err);
    printf("%s: data of %s in %s\n", competition, competition, dir);
    return KP_EXIT_OK;
}

/* Returns the submit stage of cfg that writes file (or the only one), or NULL with err. */
static const kp_stage *submit_stage_for(const kp_config *cfg, const char *file, char *err,
                                        size_t errlen)
{
    char want[PATH_MAX], have[PATH_MAX];
    const kp_stage *only = NULL;
    int n = 0;
    if (!realpath(file, want))
        snprintf(want, sizeof want, "%s", file);
    for (int i = 0; i < cfg->n_stages; i++) {
        const kp_stage *st = &cfg->stages[i];
        const char *out = kp_params_str(st->opts, "output", NULL);
        if (strcmp(st->type, "submit") != 0)
            continue;
        n++;
        only = st;
        if (out && kp_config_path(cfg, out, have, sizeof have) == 0) {
            char real[PATH_MAX];
            if (realpath(have, real) && strcmp(real, want) == 0)
                return st;
        }
    }
    if (n == 1)
        return only;
    kp_errf(err, errlen, KP_ERR_CONFIG, "%s: %s submit stage writes %s", cfg->path,
            n ? "no" : "the config has no", file);
    return NULL;
}

/* Loads CONFIG's contract for file into *out, and its text hash into hash. */
static int load_contract(const char *config, const char *file, kp_contract **out,
                         char hash[KP_HASH_HEXLEN], char *err, size_t errlen)
{
    kp_config *cfg = NULL;
    int rc = kp_config_load(config, &cfg, err, errlen);
    const kp_stage *st = rc == 0 ? submit_stage_for(cfg, file, err, errlen) : NULL;
    if (rc == 0 && !st)
        rc = KP_ERR_CONFIG;
    if (rc == 0)
        rc = kp_contract_for_stage(cfg, st, out, err, errlen);
    if (rc == 0)
        kp_hash_hex(cfg->text_hash, hash);
    kp_config_free(cfg);
    return rc;
}

/* --dry-run: the contract and ledger checks of an upload, without one. */
static int dry_run(const kaggle_args *a, const char *file, const kp_contract *c, char *err,
                   size_t errlen)
{
    char ledger[4096], hash[KP_HASH_HEXLEN];
    kp_ledger *l = NULL;
    kp_buf rules;
    int rc = 0;
    kp_buf_init(&rules, 0);
    if (c && ((rc = kp_contract_check_file(c, file, err, errlen)) < 0 ||
              (rc = kp_contract_describe(c, &rules)) < 0))
        goto done;
    if (kp_ledger_path_for(file, ledger, sizeof ledger) < 0) {
        rc = kp_errf(err, errlen, KP_ERR_ARG, "%s: path too long", file);
        goto done;
    }
    if ((rc = kp_ledger_file_hash(file, hash, err, errlen)) < 0 ||
        (rc = kp_ledger_read(ledger, &l, err, errlen)) < 0)
        goto done;
    if (c)
        printf("%s meets the contract:\n%s", file, kp_buf_str(&rules));
    int i = kp_ledger_find_upload(l, a->competition, hash);
    if (i >= 0 && !a->force)
        printf("it would NOT be uploaded: the same prediction went up as ref %s at %s "
               "(--force uploads it again)\n", kp_ledger_at(l, i)->ref, kp_ledger_at(l, i)->time);
    else
        printf("it would be uploaded to %s as \"%s\" (prediction %s)\n", a->competition,
               a->message, hash);
done:
    kp_ledger_free(l);
    kp_buf_free(&rules);
    return rc;
}

static int do_submit(const kaggle_args *a, const char *file)
{
    char err[KP_ERRLEN] = "", hash[KP_HASH_HEXLEN] = "";
    kp_contract *c = NULL;
    long ref = 0;
    if (!a->competition || !a->message)
        return kp_cli_error(KP_EXIT_USAGE, "kaggle submit: -c COMPETITION and -m MESSAGE are "
                            "required");
    int rc = a->config ? load_contract(a->config, file, &c, hash, err, sizeof err) : 0;
    if (rc == 0 && !a->config)
        fprintf(stderr, "kpipe: kaggle submit: no --config: %s is %s without a contract "
                "check\n", file, a->dry_run ? "checked" : "uploaded");
    kp_upload u = {.file = file, .competition = a->competition, .message = a->message,
                   .contract = c, .config_hash = a->config ? hash : NULL,
                   .endpoint = a->endpoint, .force = a->force, .log = stderr, .tty = isatty(2),
                   .verbose = a->verbose ? stderr : NULL};
    if (rc == 0 && a->dry_run) {
        rc = dry_run(a, file, c, err, sizeof err);
        kp_contract_free(c);
        return rc < 0 ? kp_cli_error(kp_cli_exit_code(rc), "kaggle submit: %s", err)
                      : KP_EXIT_OK;
    }
    if (rc == 0)
        rc = kp_upload_submission(&u, &ref, err, sizeof err);
    kp_contract_free(c);
    if (rc < 0)
        return kp_cli_error(rc == KP_ERR_MISMATCH ? KP_EXIT_USAGE : kp_cli_exit_code(rc),
                            "kaggle submit: %s", err);
    printf("%s: submitted %s as ref %ld\n", a->competition, file, ref);
    return KP_EXIT_OK;
}

/* Writes the scores Kaggle reports into the ledger's uploaded rows. */
static int update_ledger(const char *ledger, const char *competition, const kp_kaggle_sub *s,
                         int n, int *updated, char *err, size_t errlen)
{
    *updated = 0;
    if (access(ledger, F_OK) != 0)
        return 0;
    for (int i = 0; i < n; i++) {
        char ref[32];
        snprintf(ref, sizeof ref, "%ld", s[i].ref);
        int rc = kp_ledger_set_scores(ledger, competition, ref, s[i].public_score,
                                      s[i].private_score, err, errlen);
        if (rc == KP_ERR_NOTFOUND)
            continue;
        if (rc < 0)
            return rc;
        (*updated)++;
    }
    return 0;
}

static int do_submissions(const kaggle_args *a, const char *competition)
{
    char err[KP_ERRLEN] = "";
    kp_kaggle_opts o = client_opts(a);
    kp_kaggle *k = NULL;
    kp_kaggle_sub *s = NULL;
    const char *ledger = a->ledger ? a->ledger : "submissions/ledger.csv";
    int n = 0, updated = 0;
    int rc = kp_kaggle_create(&o, &k, err, sizeof err);
    if (rc == 0)
        rc = kp_kaggle_submissions(k, competition, &s, &n, err, sizeof err);
    if (rc == 0)
        rc = update_ledger(ledger, competition, s, n, &updated, err, sizeof err);
    if (rc == 0) {
        printf("%-10s  %-20s  %-10s  %-10s  %-10s  %s\n", "ref", "date", "status", "public",
               "private", "description");
        for (int i = 0; i < n; i++)
            printf("%-10ld  %-20.20s  %-10.10s  %-10s  %-10s  %s\n", s[i].ref, s[i].date,
                   s[i].status, *s[i].public_score ? s[i].public_score : "-",
                   *s[i].private_score ? s[i].private_score : "-", s[i].description);
        if (updated)
            printf("%d score%s written to %s\n", updated, updated == 1 ? "" : "s", ledger);
    }
    kp_kaggle_subs_free(s, n);
    kp_kaggle_free(k);
    return rc < 0 ? kp_cli_error(kp_cli_exit_code(rc), "kaggle submissions: %s", err)
                  : KP_EXIT_OK;
}

int kp_cmd_kaggle(int argc, char **argv)
{
    kaggle_args a = {0};
    const char *pos[2];
    int n_pos = 0;
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
            fputs(kp_help_kaggle, stdout);
            return KP_EXIT_OK;
        }
        return kp_cli_error(KP_EXIT_USAGE, "kaggle: expected download, submit or submissions "
                            "(see kpipe kaggle --help)");
    }
    const char *sub = argv[1];
    int rc = kp_cli_parse_args(argc - 1, argv + 1, "o:f:c:m:vh", kaggle_longopts, kp_help_kaggle,
                               on_kaggle_opt, &a, 1, 1,
                               !strcmp(sub, "submit") ? "FILE" : "COMPETITION", pos, &n_pos);
    if (rc)
        return rc < 0 ? KP_EXIT_OK : rc;
    if (!strcmp(sub, "download"))
        return do_download(&a, pos[0]);
    if (!strcmp(sub, "submit"))
        return do_submit(&a, pos[0]);
    if (!strcmp(sub, "submissions"))
        return do_submissions(&a, pos[0]);
    return kp_cli_error(KP_EXIT_USAGE, "kaggle: unknown subcommand '%s' (download, submit or "
                        "submissions)", sub);
}
