/* test_unpack.c - lib/unpack: archives made here with libarchive's write API,
 * honest ones unpacked byte for byte, hostile ones refused leaving dir as it was. */
#include "kp_test.h"
#include "../lib/unpack.h"
#include "../lib/err.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

typedef struct ent {
    char type;          /* 'f' file, 'd' folder, 'l' symlink, 'h' hard link, 'p' fifo, 'c' device */
    const char *name;
    const char *data;   /* a file's bytes, or a link's target */
    int perm;           /* 0: 0644 for files, 0755 for folders */
    int64_t size;       /* bytes of a file of repeated 'z' (data NULL) */
} ent;

enum fmt { ZIP, TAR, TGZ, TBZ2, TXZ, FMT_COUNT };
static const char *const fmt_ext[FMT_COUNT] = {".zip", ".tar", ".tar.gz", ".tar.bz2", ".tar.xz"};

/* Sets up the writer for one format. */
static struct archive *writer(int fmt)
{
    struct archive *a = archive_write_new();
    assert_non_null(a);
    if (fmt == ZIP) {
        assert_int_equal(archive_write_set_format_zip(a), ARCHIVE_OK);
        assert_int_equal(archive_write_set_options(a, "zip:hdrcharset=UTF-8"), ARCHIVE_OK);
        return a;
    }
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    if (fmt == TGZ)
        assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    if (fmt == TBZ2)
        assert_int_equal(archive_write_add_filter_bzip2(a), ARCHIVE_OK);
    if (fmt == TXZ)
        assert_int_equal(archive_write_add_filter_xz(a), ARCHIVE_OK);
    return a;
}

/* Writes one entry (and its data) to a: names as UTF-8 to a zip (flagged
 * so, as Python's zipfile does), as bytes to a tar (libarchive 3.6's pax
 * writer crashes on a UTF-8-only name in the C locale). */
static void write_entry(struct archive *a, const ent *e)
{
    int zip = archive_format(a) == ARCHIVE_FORMAT_ZIP;
    static const struct { char c; unsigned type; int perm; } kinds[] = {
        {'f', AE_IFREG, 0644}, {'d', AE_IFDIR, 0755}, {'l', AE_IFLNK, 0777},
        {'h', AE_IFREG, 0644}, {'p', AE_IFIFO, 0644}, {'c', AE_IFCHR, 0644},
    };
    struct archive_entry *ae = archive_entry_new();
    size_t k = 0;
    while (kinds[k].c != e->type)
        k++;
    (zip ? archive_entry_set_pathname_utf8 : archive_entry_set_pathname)(ae, e->name);
    archive_entry_set_filetype(ae, kinds[k].type);
    archive_entry_set_perm(ae, e->perm ? e->perm : kinds[k].perm);
    archive_entry_set_mtime(ae, 1700000000, 0);
    int64_t n = e->type == 'f' ? (e->data ? (int64_t)strlen(e->data) : e->size) : 0;
    archive_entry_set_size(ae, n);
    if (e->type == 'l')
        (zip ? archive_entry_set_symlink_utf8 : archive_entry_set_symlink)(ae, e->data);
    if (e->type == 'h')
        archive_entry_set_hardlink(ae, e->data);
    assert_true(archive_write_header(a, ae) >= ARCHIVE_WARN);   /* WARN: tar names as bytes */
    if (e->type == 'f' && e->data)
        assert_int_equal(archive_write_data(a, e->data, (size_t)n), n);
    char chunk[4096];
    memset(chunk, 'z', sizeof chunk);
    for (int64_t left = e->data ? 0 : n; e->type == 'f' && left > 0; left -= (int64_t)sizeof chunk) {
        size_t c = left < (int64_t)sizeof chunk ? (size_t)left : sizeof chunk;
        assert_int_equal(archive_write_data(a, chunk, c), (la_ssize_t)c);
    }
    archive_entry_free(ae);
}

/* Writes an archive DIR/NAME<ext> of the n entries; returns its heap path. */
static char *make_archive(const char *dir, const char *name, int fmt, const ent *e, size_t n)
{
    char *path;
    assert_true(asprintf(&path, "%s/%s%s", dir, name, fmt_ext[fmt]) > 0);
    struct archive *a = writer(fmt);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++)
        write_entry(a, &e[i]);
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    return path;
}

/* Appends dir's tree to b, sorted: "name/" folders, "name=bytes" files,
 * "name->target" links, "name?" anything else. */
static void tree_into(kp_buf *b, const char *dir, const char *rel)
{
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort);
    assert_true(n >= 0);
    for (int i = 0; i < n; i++) {
        const char *nm = list[i]->d_name;
        if (strcmp(nm, ".") != 0 && strcmp(nm, "..") != 0) {
            char *p = kp_test_join(dir, nm), *r;
            assert_true(asprintf(&r, "%s%s", rel, nm) > 0);
            struct stat sb;
            assert_int_equal(lstat(p, &sb), 0);
            if (S_ISDIR(sb.st_mode)) {
                assert_int_equal(kp_buf_printf(b, "%s/\n", r), 0);
                char *sub;
                assert_true(asprintf(&sub, "%s/", r) > 0);
                tree_into(b, p, sub);
                free(sub);
            } else if (S_ISLNK(sb.st_mode)) {
                char t[4096] = "";
                assert_true(readlink(p, t, sizeof t - 1) >= 0);
                assert_int_equal(kp_buf_printf(b, "%s->%s\n", r, t), 0);
            } else if (S_ISREG(sb.st_mode)) {
                char *text = kp_test_read(p);
                assert_int_equal(kp_buf_printf(b, "%s=%s\n", r, text), 0);
                free(text);
            } else {
                assert_int_equal(kp_buf_printf(b, "%s?\n", r), 0);
            }
            free(r);
            free(p);
        }
        free(list[i]);
    }
    free(list);
}

/* Returns dir's tree as a heap string (see tree_into). */
static char *tree(const char *dir)
{
    kp_buf b;
    kp_buf_init(&b, 0);
    tree_into(&b, dir, "");
    return kp_buf_take(&b);
}

/* Returns a new empty folder (heap path) inside one temporary folder for the
 * whole group, so the harness has only that one to remove. */
static char *fresh_dir(void)
{
    static char *base;
    static int count;
    if (!base)
        base = kp_test_tmpdir();
    assert_non_null(base);
    char *p;
    assert_true(asprintf(&p, "%s/d%d", base, count++) > 0);
    assert_int_equal(mkdir(p, 0755), 0);
    return p;
}

/* Returns the number of open file descriptors of this process. */
static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* A parent folder holding out/keep.txt, and a separate folder for archives. */
typedef struct scene {
    char *parent, *out, *arcdir;
} scene;

static scene scene_new(void)
{
    scene s = {fresh_dir(), NULL, fresh_dir()};
    s.out = kp_test_join(s.parent, "out");
    assert_int_equal(mkdir(s.out, 0755), 0);
    char *keep = kp_test_write(s.out, "keep.txt", "kept");
    assert_non_null(keep);
    free(keep);
    return s;
}

static void scene_free(scene *s)
{
    free(s->parent);
    free(s->out);
    free(s->arcdir);
}

/* Unpacks archive into s->out expecting a refusal with status and message
 * pieces (the archive path is always one); the parent and out are unchanged. */
static void expect_refused(scene *s, const char *archive, const kp_unpack_limits *lim,
                           int status, const char *piece1, const char *piece2)
{
    char err[KP_ERRLEN] = "";
    char *before = tree(s->parent);
    kp_buf files;
    kp_buf_init(&files, 0);
    assert_int_equal(kp_buf_adds(&files, "earlier\n"), 0);
    int fds = open_fds();
    int rc = kp_unpack(archive, s->out, lim, &files, err, sizeof err);
    if (rc != status)
        fail_msg("%s: status %d, expected %d (%s)", archive, rc, status, err);
    if (!strstr(err, archive) || (piece1 && !strstr(err, piece1)) ||
        (piece2 && !strstr(err, piece2)))
        fail_msg("message '%s' lacks '%s' or '%s' or '%s'", err, archive,
                 piece1 ? piece1 : "", piece2 ? piece2 : "");
    char *after = tree(s->parent);
    assert_string_equal(after, before);
    assert_string_equal(kp_buf_str(&files), "earlier\n");
    assert_int_equal(open_fds(), fds);
    kp_buf_free(&files);
    free(before);
    free(after);
}

/* Unpacks archive into dir expecting success; returns the files list (heap). */
static char *expect_unpacked(const char *archive, const char *dir, const kp_unpack_limits *lim)
{
    char err[KP_ERRLEN] = "";
    kp_buf files;
    kp_buf_init(&files, 0);
    int fds = open_fds();
    int rc = kp_unpack(archive, dir, lim, &files, err, sizeof err);
    if (rc != 0)
        fail_msg("%s: status %d: %s", archive, rc, err);
    assert_int_equal(open_fds(), fds);
    return kp_buf_take(&files);
}

static const ent NESTED[] = {
    {'d', "./", NULL, 0, 0},            /* tar -C dir . starts so: the root itself */
    {'d', "data/", NULL, 0, 0},
    {'f', "data/train.csv", "id,y\n1,0\n2,1\n", 0, 0},
    {'d', "data/images/", NULL, 0, 0},
    {'f', "data/images/a/1.png", "\x89PNG\r\n\x1a\n\x01\x02\xff", 0, 0},
    {'f', "./data/images/b/2.png", "two", 0, 0},
    {'f', "sample_submission.csv", "id,y\n", 0, 0},
    {'f', "empty.txt", "", 0, 0},
    {'f', "big.bin", NULL, 0, 100000},
    {'f', "caf\xc3\xa9/na\xc3\xafve.txt", "UTF-8 names", 0, 0},
};

static void test_unpack_every_format_unpacks_nested_folders_byte_identically(void **state)
{
    (void)state;
    char *big = malloc(100001);
    memset(big, 'z', 100000);
    big[100000] = 0;
    char *want;
    assert_true(asprintf(&want, "big.bin=%s\n"
                         "caf\xc3\xa9/\ncaf\xc3\xa9/na\xc3\xafve.txt=UTF-8 names\n"
                         "data/\ndata/images/\ndata/images/a/\n"
                         "data/images/a/1.png=\x89PNG\r\n\x1a\n\x01\x02\xff\n"
                         "data/images/b/\ndata/images/b/2.png=two\n"
                         "data/train.csv=id,y\n1,0\n2,1\n\nempty.txt=\n"
                         "sample_submission.csv=id,y\n\n", big) > 0);
    for (int f = 0; f < FMT_COUNT; f++) {
        char *arcdir = fresh_dir(), *out = fresh_dir();
        char *arc = make_archive(arcdir, "nested", f, NESTED, sizeof NESTED / sizeof NESTED[0]);
        char *files = expect_unpacked(arc, out, NULL);
        assert_string_equal(files, "data/train.csv\ndata/images/a/1.png\n"
                                   "data/images/b/2.png\nsample_submission.csv\n"
                                   "empty.txt\nbig.bin\ncaf\xc3\xa9/na\xc3\xafve.txt\n");
        char *got = tree(out);
        if (strcmp(got, want) != 0)
            fail_msg("%s: tree differs (big.bin left out):\n%s", fmt_ext[f],
                     strlen(got) > 100000 ? got + 100000 : got);
        free(got);
        free(files);
        free(arc);
        free(out);
        free(arcdir);
    }
    free(want);
    free(big);
}

static void test_unpack_creates_missing_dir_and_appends_to_files(void **state)
{
    (void)state;
    char *arcdir = fresh_dir(), *root = fresh_dir();
    char *out = kp_test_join(root, "x/y");
    const ent e[] = {{'f', "a.txt", "A", 0, 0}};
    char *arc = make_archive(arcdir, "one", TGZ, e, 1);
    kp_buf files;
    kp_buf_init(&files, 0);
    assert_int_equal(kp_buf_adds(&files, "before\n"), 0);
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_unpack(arc, out, NULL, &files, err, sizeof err), 0);
    assert_string_equal(kp_buf_str(&files), "before\na.txt\n");
    char *got = tree(root);
    assert_string_equal(got, "x/\nx/y/\nx/y/a.txt=A\n");   /* no temporary folder left */
    assert_int_equal(kp_unpack(arc, out, NULL, NULL, err, sizeof err), 0);   /* files NULL */
    kp_buf_free(&files);
    free(got);
    free(arc);
    free(out);
    free(root);
    free(arcdir);
}

static void test_unpack_escaping_paths_refused_naming_archive_and_entry(void **state)
{
    (void)state;
    static const struct { const char *name, *why; } cases[] = {
        {"../evil.txt", "'..'"},
        {"a/../../evil", "'..'"},
        {"a/..", "'..'"},
        {"/etc/evil", "absolute"},
        {"//etc/evil", "absolute"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int f = ZIP; f <= TGZ; f += TGZ - ZIP) {
            scene s = scene_new();
            const ent e[] = {{'f', "good.txt", "good", 0, 0}, {'f', cases[i].name, "evil", 0, 0}};
            char *arc = make_archive(s.arcdir, "evil", f, e, 2);
            expect_refused(&s, arc, NULL, KP_ERR_FORMAT, cases[i].name, cases[i].why);
            assert_int_not_equal(access("/etc/evil", F_OK), 0);
            free(arc);
            scene_free(&s);
        }
}

/* Each archive is refused for its last entry. */
typedef struct hostile {
    const char *label;
    ent e[3];
    size_t n;
    const char *piece;
} hostile;

static void run_hostile(const hostile *cases, size_t n, int fmt)
{
    for (size_t i = 0; i < n; i++) {
        scene s = scene_new();
        char *arc = make_archive(s.arcdir, cases[i].label, fmt, cases[i].e, cases[i].n);
        expect_refused(&s, arc, NULL, KP_ERR_FORMAT, cases[i].e[cases[i].n - 1].name,
                       cases[i].piece);
        free(arc);
        scene_free(&s);
    }
}

static void test_unpack_symlinks_leaving_folder_refused(void **state)
{
    (void)state;
    static const hostile cases[] = {
        {"up2", {{'l', "link", "../../outside", 0, 0}}, 1, "symlink to '../../outside'"},
        {"up1", {{'l', "link", "../outside", 0, 0}}, 1, "outside the folder"},
        {"abs", {{'l', "link", "/etc/passwd", 0, 0}}, 1, "symlink to '/etc/passwd'"},
        {"deep", {{'f', "a/x", "x", 0, 0}, {'l', "a/l", "../../x", 0, 0}}, 2, "outside"},
        /* read as text "a/b/../s/.." is "a", but "a/s -> .." is the root,
         * so the link would point above it: no ".." after a name */
        {"chain", {{'l', "a/s", "..", 0, 0}, {'d', "a/b/", NULL, 0, 0},
                   {'l', "a/b/t", "../s/..", 0, 0}}, 3, "symlink to '../s/..'"},
        {"late", {{'l', "l", "a/../..", 0, 0}}, 1, "outside"},
        {"empty", {{'l', "l", "", 0, 0}}, 1, "symlink to ''"},
    };
    run_hostile(cases, sizeof cases / sizeof cases[0], TGZ);
    run_hostile(cases, 3, ZIP);
}

static void test_unpack_writing_through_a_symlink_refused(void **state)
{
    (void)state;
    static const hostile cases[] = {
        {"through", {{'d', "b/", NULL, 0, 0}, {'l', "s", "b", 0, 0}, {'f', "s/x.txt", "x", 0, 0}},
         3, "goes through the symlink 's'"},
        /* lexically "x/y/l -> ../.." stays inside; through "x -> ." it would not */
        {"dot", {{'l', "x", ".", 0, 0}, {'l', "x/y/l", "../..", 0, 0}}, 2, "symlink 'x'"},
        {"notdir", {{'f', "f", "file", 0, 0}, {'f', "f/g", "g", 0, 0}}, 2, "not a folder"},
    };
    run_hostile(cases, sizeof cases / sizeof cases[0], TGZ);
}

static void test_unpack_symlink_inside_folder_allowed(void **state)
{
    (void)state;
    const ent e[] = {
        {'f', "a.txt", "target text", 0, 0},
        {'l', "b/l", "../a.txt", 0, 0},
        {'l', "b/c/up", "../../b/./l", 0, 0},
        {'l', "here", ".", 0, 0},
    };
    for (int f = ZIP; f <= TGZ; f += TGZ - ZIP) {
        char *arcdir = fresh_dir(), *out = fresh_dir();
        char *arc = make_archive(arcdir, "links", f, e, sizeof e / sizeof e[0]);
        char *files = expect_unpacked(arc, out, NULL);
        assert_string_equal(files, "a.txt\n");
        char *got = tree(out), *l = kp_test_join(out, "b/c/up"), *text = kp_test_read(l);
        assert_string_equal(got, "a.txt=target text\nb/\nb/c/\nb/c/up->../../b/./l\n"
                                 "b/l->../a.txt\nhere->.\n");
        assert_string_equal(text, "target text");
        free(text);
        free(l);
        free(got);
        free(files);
        free(arc);
        free(out);
        free(arcdir);
    }
}

static void test_unpack_hard_links_outside_or_to_non_files_refused(void **state)
{
    (void)state;
    static const hostile cases[] = {
        {"hup", {{'h', "h", "../x", 0, 0}}, 1, "hard link to '../x'"},
        {"habs", {{'h', "h", "/etc/passwd", 0, 0}}, 1, "hard link to '/etc/passwd'"},
        {"hmissing", {{'h', "h", "nothing", 0, 0}}, 1, "not an earlier file"},
        {"hlink", {{'l', "a/l", "../b", 0, 0}, {'h', "h", "a/l", 0, 0}}, 2, "not an earlier file"},
        {"hdir", {{'d', "d/", NULL, 0, 0}, {'h', "h", "d", 0, 0}}, 2, "not an earlier file"},
    };
    run_hostile(cases, sizeof cases / sizeof cases[0], TAR);
}

static void test_unpack_hard_link_to_earlier_file_allowed_and_listed(void **state)
{
    (void)state;
    const ent e[] = {{'f', "a/x.txt", "shared", 0, 0}, {'h', "b/y.txt", "a/x.txt", 0, 0}};
    char *arcdir = fresh_dir(), *out = fresh_dir();
    char *arc = make_archive(arcdir, "hard", TGZ, e, 2);
    char *files = expect_unpacked(arc, out, NULL);
    assert_string_equal(files, "a/x.txt\nb/y.txt\n");
    char *got = tree(out);
    assert_string_equal(got, "a/\na/x.txt=shared\nb/\nb/y.txt=shared\n");
    free(got);
    free(files);
    free(arc);
    free(out);
    free(arcdir);
}

static void test_unpack_files_list_drops_entries_a_later_entry_replaced(void **state)
{
    (void)state;
    const ent e[] = {
        {'f', "data", "a file first", 0, 0},   /* replaced by a folder */
        {'d', "data/", NULL, 0, 0},
        {'f', "data/x.txt", "x", 0, 0},
        {'f', "link", "a file first", 0, 0},   /* replaced by a symlink */
        {'l', "link", "data/x.txt", 0, 0},
        {'f', "dup.txt", "one", 0, 0},         /* appended twice (tar -r): listed once, last */
        {'f', "keep.txt", "k", 0, 0},
        {'f', "dup.txt", "two", 0, 0},
    };
    char *arcdir = fresh_dir(), *out = fresh_dir();
    char *arc = make_archive(arcdir, "replaced", TAR, e, sizeof e / sizeof e[0]);
    char *files = expect_unpacked(arc, out, NULL);
    assert_string_equal(files, "data/x.txt\nkeep.txt\ndup.txt\n");
    char *got = tree(out);
    assert_string_equal(got, "data/\ndata/x.txt=x\ndup.txt=two\nkeep.txt=k\nlink->data/x.txt\n");
    free(got);
    free(files);
    free(arc);
    free(out);
    free(arcdir);
}

static void test_unpack_devices_and_fifos_refused(void **state)
{
    (void)state;
    static const hostile cases[] = {
        {"fifo", {{'p', "pipe", NULL, 0, 0}}, 1, "device, fifo or socket"},
        {"dev", {{'c', "dev/null", NULL, 0, 0}}, 1, "device, fifo or socket"},
    };
    run_hostile(cases, sizeof cases / sizeof cases[0], TAR);
}

static void test_unpack_reserved_and_control_character_names_refused(void **state)
{
    (void)state;
    static const hostile cases[] = {
        {"reserved", {{'f', ".kpipe-unpack.1.abc/x", "x", 0, 0}}, 1, "kpipe keeps"},
        {"newline", {{'f', "a\nb", "x", 0, 0}}, 1, "control character"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        scene s = scene_new();
        char *arc = make_archive(s.arcdir, cases[i].label, TGZ, cases[i].e, cases[i].n);
        expect_refused(&s, arc, NULL, KP_ERR_FORMAT, i == 0 ? cases[i].e[0].name : "'a?b'",
                       cases[i].piece);
        free(arc);
        scene_free(&s);
    }
}

static void test_unpack_total_bytes_over_max_refused_at_max_allowed(void **state)
{
    (void)state;
    const ent e[] = {{'f', "a.bin", NULL, 0, 600}, {'f', "b.bin", NULL, 0, 600}};
    for (int f = ZIP; f <= TGZ; f += TGZ - ZIP) {
        scene s = scene_new();
        char *arc = make_archive(s.arcdir, "sized", f, e, 2);
        kp_unpack_limits lim = {.max_bytes = 1199};
        expect_refused(&s, arc, &lim, KP_ERR_FORMAT, "'b.bin'", "more than 1199 bytes");
        lim.max_bytes = 1200;
        char *files = expect_unpacked(arc, s.out, &lim);
        assert_string_equal(files, "a.bin\nb.bin\n");
        free(files);
        free(arc);
        scene_free(&s);
    }
}

/* Overwrites every 32-bit little-endian v at the zip's size fields with w. */
static int patch_le32(unsigned char *p, size_t n, uint32_t v, uint32_t w)
{
    int k = 0;
    for (size_t i = 0; i + 4 <= n; i++)
        if ((uint32_t)(p[i] | p[i + 1] << 8 | p[i + 2] << 16 | (uint32_t)p[i + 3] << 24) == v) {
            for (int j = 0; j < 4; j++)
                p[i + j] = (unsigned char)(w >> (8 * j));
            k++;
        }
    return k;
}

/* A deflated zip entry whose headers claim 100 bytes but which inflates to
 * 300000: the bytes are counted as written, whatever the headers say. */
static void test_unpack_bytes_counted_as_written_when_headers_lie(void **state)
{
    (void)state;
    scene s = scene_new();
    const ent e[] = {{'f', "bomb.bin", NULL, 0, 300000}};
    char *arc = make_archive(s.arcdir, "liar", ZIP, e, 1);
    FILE *fp = fopen(arc, "r+b");
    assert_non_null(fp);
    unsigned char buf[8192];
    size_t n = fread(buf, 1, sizeof buf, fp);
    assert_true(n < sizeof buf);
    assert_true(patch_le32(buf, n, 300000, 100) >= 2);   /* local and central headers */
    rewind(fp);
    assert_int_equal(fwrite(buf, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
    kp_unpack_limits lim = {.max_bytes = 1000};
    expect_refused(&s, arc, &lim, KP_ERR_FORMAT, "'bomb.bin'", "more than 1000 bytes");
    free(arc);
    scene_free(&s);
}

static void test_unpack_more_entries_than_max_refused_at_max_allowed(void **state)
{
    (void)state;
    const ent e[] = {{'d', "d/", NULL, 0, 0}, {'f', "d/a", "a", 0, 0}, {'f', "d/b", "b", 0, 0}};
    scene s = scene_new();
    char *arc = make_archive(s.arcdir, "many", ZIP, e, 3);
    kp_unpack_limits lim = {.max_entries = 2};
    expect_refused(&s, arc, &lim, KP_ERR_FORMAT, "'d/b'", "more than 2 entries");
    lim.max_entries = 3;
    char *files = expect_unpacked(arc, s.out, &lim);
    assert_string_equal(files, "d/a\nd/b\n");
    free(files);
    free(arc);
    scene_free(&s);
}

/* Cuts the file at path to keep bytes. */
static void truncate_to(const char *path, double keep)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, (off_t)(sb.st_size * keep)), 0);
}

static void test_unpack_truncated_or_corrupt_archive_is_error_dir_unchanged(void **state)
{
    (void)state;
    static const struct { int fmt; double keep; const char *piece; } cases[] = {
        {ZIP, 0.5, "corrupt or truncated"},
        {TGZ, 0.5, "corrupt or truncated"},
        {TAR, 0.5, "corrupt or truncated"},
        {TXZ, 0.6, "corrupt or truncated"},
        {TGZ, 0.0, "corrupt or truncated"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        scene s = scene_new();
        char *arc = make_archive(s.arcdir, "cut", cases[i].fmt, NESTED,
                                 sizeof NESTED / sizeof NESTED[0]);
        truncate_to(arc, cases[i].keep);
        expect_refused(&s, arc, NULL, KP_ERR_FORMAT, cases[i].piece, NULL);
        free(arc);
        scene_free(&s);
    }
}

/* Flips the first byte of the first occurrence of what in the file at path. */
static void corrupt_bytes(const char *path, const char *what)
{
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf, fp);
    assert_true(n < sizeof buf);
    char *at = memmem(buf, n, what, strlen(what));
    assert_non_null(at);
    assert_int_equal(fseek(fp, at - buf, SEEK_SET), 0);
    assert_int_equal(fputc(*at ^ 1, fp), *at ^ 1);
    assert_int_equal(fclose(fp), 0);
}

/* A stored (uncompressed) zip entry with one byte changed fails its CRC. */
static void test_unpack_zip_with_bad_crc_is_error_dir_unchanged(void **state)
{
    (void)state;
    scene s = scene_new();
    char *arc;
    assert_true(asprintf(&arc, "%s/crc.zip", s.arcdir) > 0);
    struct archive *a = writer(ZIP);
    assert_int_equal(archive_write_set_options(a, "zip:compression=store"), ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, arc), ARCHIVE_OK);
    const ent e = {'f', "data.csv", "id,target\n1,0.25\n", 0, 0};
    write_entry(a, &e);
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    corrupt_bytes(arc, "0.25");
    expect_refused(&s, arc, NULL, KP_ERR_FORMAT, "at entry 'data.csv'", "CRC");
    free(arc);
    scene_free(&s);
}

static void test_unpack_non_archive_is_error_naming_it(void **state)
{
    (void)state;
    scene s = scene_new();
    char *arc = kp_test_write(s.arcdir, "train.zip", "id,target\n1,0\n2,1\n");
    expect_refused(&s, arc, NULL, KP_ERR_FORMAT, "corrupt or truncated archive", NULL);
    free(arc);
    scene_free(&s);
}

static void test_unpack_missing_archive_is_io_error_naming_it(void **state)
{
    (void)state;
    scene s = scene_new();
    char *arc = kp_test_join(s.arcdir, "absent.zip");
    expect_refused(&s, arc, NULL, KP_ERR_IO, "No such file or directory", NULL);
    free(arc);
    scene_free(&s);
}

static void test_unpack_refused_archive_does_not_create_missing_dir(void **state)
{
    (void)state;
    char *arcdir = fresh_dir(), *root = fresh_dir(), *out = kp_test_join(root, "new");
    const ent e[] = {{'f', "ok", "ok", 0, 0}, {'f', "../evil", "x", 0, 0}};
    char *arc = make_archive(arcdir, "evil", TGZ, e, 2);
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_unpack(arc, out, NULL, NULL, err, sizeof err), KP_ERR_FORMAT);
    assert_non_null(strstr(err, "'../evil'"));
    char *got = tree(root);
    assert_string_equal(got, "");
    free(got);
    free(arc);
    free(out);
    free(root);
    free(arcdir);
}

static void test_unpack_existing_files_replaced_and_folders_merged(void **state)
{
    (void)state;
    scene s = scene_new();
    free(kp_test_write(s.out, "a.txt", "old a"));
    free(kp_test_write(s.out, "sub/b.txt", "old b"));
    free(kp_test_write(s.out, "sub/mine.txt", "mine"));
    char *l = kp_test_join(s.out, "ln");
    assert_int_equal(symlink("keep.txt", l), 0);
    const ent e[] = {
        {'f', "a.txt", "new a", 0, 0},
        {'f', "sub/b.txt", "new b", 0, 0},
        {'f', "sub/deeper/c.txt", "c", 0, 0},
        {'d', "ln/", NULL, 0, 0},        /* a folder replaces a link, not its target */
        {'f', "ln/in.txt", "in", 0, 0},
    };
    char *arc = make_archive(s.arcdir, "update", ZIP, e, sizeof e / sizeof e[0]);
    char *files = expect_unpacked(arc, s.out, NULL);
    char *got = tree(s.parent);
    assert_string_equal(got, "out/\nout/a.txt=new a\nout/keep.txt=kept\nout/ln/\n"
                             "out/ln/in.txt=in\nout/sub/\nout/sub/b.txt=new b\n"
                             "out/sub/deeper/\nout/sub/deeper/c.txt=c\n"
                             "out/sub/mine.txt=mine\n");
    free(got);
    free(files);
    free(arc);
    free(l);
    scene_free(&s);
}

static void test_unpack_file_over_existing_folder_refused_dir_unchanged(void **state)
{
    (void)state;
    scene s = scene_new();
    free(kp_test_write(s.out, "z/sub/x.txt", "x"));
    const ent e[] = {{'f', "a.txt", "a", 0, 0}, {'f', "z/sub", "a file", 0, 0}};
    char *arc = make_archive(s.arcdir, "clash", TGZ, e, 2);
    expect_refused(&s, arc, NULL, KP_ERR_FORMAT, "entry 'z/sub' would replace the folder",
                   "out/z/sub");
    free(arc);
    scene_free(&s);
}

static void test_unpack_modes_are_0644_0755_whatever_the_archive_says(void **state)
{
    (void)state;
    static const struct { char type; const char *name; int perm; unsigned want; } cases[] = {
        {'f', "plain", 0600, 0644},
        {'f', "world", 0666, 0644},
        {'f', "run.sh", 0700, 0755},
        {'f', "setuid", 04755, 0755},
        {'f', "grp_x", 0610, 0755},
        {'d', "private", 0700, 0755},
        {'d', "open", 0777, 0755},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    ent e[N];
    for (size_t i = 0; i < N; i++)
        e[i] = (ent){cases[i].type, cases[i].name, cases[i].type == 'f' ? "x" : NULL,
                     cases[i].perm, 0};
    char *arcdir = fresh_dir(), *out = fresh_dir();
    char *arc = make_archive(arcdir, "modes", TAR, e, N);
    free(expect_unpacked(arc, out, NULL));
    for (size_t i = 0; i < N; i++) {
        char *p = kp_test_join(out, cases[i].name);
        struct stat sb;
        assert_int_equal(stat(p, &sb), 0);
        if ((sb.st_mode & 07777) != cases[i].want)
            fail_msg("%s: mode %o, expected %o", cases[i].name, sb.st_mode & 07777, cases[i].want);
        free(p);
    }
    free(arc);
    free(out);
    free(arcdir);
}

static void test_unpack_is_archive_table(void **state)
{
    (void)state;
    static const struct { const char *name; int yes; } cases[] = {
        {"data.zip", 1}, {"DATA.ZIP", 1}, {"a.tar", 1}, {"a.tar.gz", 1}, {"a.tgz", 1},
        {"a.tar.bz2", 1}, {"a.tbz2", 1}, {"a.tar.xz", 1}, {"a.txz", 1},
        {"dir/x.zip", 1}, {"train.csv", 0}, {"train.csv.gz", 0}, {"a.bz2", 0},
        {"a.zipx", 0}, {"a.zip.part", 0}, {"zip", 0}, {".zip", 0}, {"", 0}, {NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (kp_unpack_is_archive(cases[i].name) != cases[i].yes)
            fail_msg("kp_unpack_is_archive(\"%s\") != %d", cases[i].name ? cases[i].name : "(null)",
                     cases[i].yes);
}

KP_TEST_GROUP(unpack) {
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_unpack_every_format_unpacks_nested_folders_byte_identically),
        cmocka_unit_test(test_unpack_creates_missing_dir_and_appends_to_files),
        cmocka_unit_test(test_unpack_escaping_paths_refused_naming_archive_and_entry),
        cmocka_unit_test(test_unpack_symlinks_leaving_folder_refused),
        cmocka_unit_test(test_unpack_writing_through_a_symlink_refused),
        cmocka_unit_test(test_unpack_symlink_inside_folder_allowed),
        cmocka_unit_test(test_unpack_hard_links_outside_or_to_non_files_refused),
        cmocka_unit_test(test_unpack_hard_link_to_earlier_file_allowed_and_listed),
        cmocka_unit_test(test_unpack_files_list_drops_entries_a_later_entry_replaced),
        cmocka_unit_test(test_unpack_devices_and_fifos_refused),
        cmocka_unit_test(test_unpack_reserved_and_control_character_names_refused),
        cmocka_unit_test(test_unpack_total_bytes_over_max_refused_at_max_allowed),
        cmocka_unit_test(test_unpack_bytes_counted_as_written_when_headers_lie),
        cmocka_unit_test(test_unpack_more_entries_than_max_refused_at_max_allowed),
        cmocka_unit_test(test_unpack_truncated_or_corrupt_archive_is_error_dir_unchanged),
        cmocka_unit_test(test_unpack_zip_with_bad_crc_is_error_dir_unchanged),
        cmocka_unit_test(test_unpack_non_archive_is_error_naming_it),
        cmocka_unit_test(test_unpack_missing_archive_is_io_error_naming_it),
        cmocka_unit_test(test_unpack_refused_archive_does_not_create_missing_dir),
        cmocka_unit_test(test_unpack_existing_files_replaced_and_folders_merged),
        cmocka_unit_test(test_unpack_file_over_existing_folder_refused_dir_unchanged),
        cmocka_unit_test(test_unpack_modes_are_0644_0755_whatever_the_archive_says),
        cmocka_unit_test(test_unpack_is_archive_table),
    };
    return KP_RUN(unpack, t);
}
