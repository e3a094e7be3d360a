/* seg_loss.c - segmentation losses (seg_loss.h): parsing and evaluation.
 *
 * Each image is one work item of kp_parallel_for.  Pass 1 walks its pixels
 * 16 at a time and makes the probabilities, the BCE / CE sum and, per
 * channel, the overlap sums (sum p y, sum p, sum y).  Dice and Jaccard are
 * functions of those sums whose derivative in p_j is affine in y_j, a + b y_j,
 * so pass 2 writes dz in one more walk (kb = bce / (n P)):
 *   C == 1:  dz = kb (p - y) + p (1 - p) (a + b y)
 *   C >= 2:  dz_k = kb (p_k - [y = k]) + p_k (g_k - sum_m p_m g_m),
 *            g_k = a_k + b_k [y = k], g_0 = 0
 * exp and log are Cephes' single-precision polynomials (about 1 ulp) on GCC
 * vectors of 16 floats: one source that compiles to AVX-512 (chosen at run
 * time) or to SSE, with the same operations in the same order, so both give
 * the same bits (ISO C mode does not contract a * b + c into an FMA).
 * Lane sums are kept in double and added in lane order.  A partial last
 * block loads zeros and masks its lanes out of every sum.
 */
#include "seg_loss.h"

#include <assert.h>
#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../../lib/err.h"
#include "../../lib/parallel.h"

#ifdef __GNUC__
/* The 64-byte vectors never cross a call (every helper is always_inline), so
 * the compiler's note that their calling convention differs without AVX-512
 * is moot (GCC and clang both know this warning). */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#define SEG_X86 1
#endif

#define VL 16
#define INL static inline __attribute__((always_inline))

typedef float v16 __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef uint32_t v16u __attribute__((vector_size(64)));
typedef double v16d __attribute__((vector_size(128)));

/* ---- parsing ---- */

static const struct { const char *name; int slot; } term_names[] = {
    { "bce", 0 }, { "ce", 0 }, { "dice", 1 }, { "jaccard", 2 },
};

static const char *skip_space(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* Returns the slot (0 bce, 1 dice, 2 jaccard) of the len-byte word w, or -1. */
static int term_slot(const char *w, size_t len)
{
    for (size_t i = 0; i < sizeof term_names / sizeof term_names[0]; i++)
        if (strlen(term_names[i].name) == len && memcmp(term_names[i].name, w, len) == 0)
            return term_names[i].slot;
    return -1;
}

/* Parses "WEIGHT *" at *at when one starts there (else leaves *w = 1). */
static int parse_weight(const char *s, const char **at, double *w, char *err, size_t errlen)
{
    const char *q = *at;
    char *end;
    *w = 1;
    if (!(isdigit((unsigned char)*q) || *q == '.' || *q == '-'))
        return 0;
    double v = strtod(q, &end);
    if (end == q)
        return 0;
    int len = (int)(end - q);
    if (!(v > 0 && v <= FLT_MAX && (float)v > 0))
        return kp_errf(err, errlen, KP_ERR_ARG, "loss \"%s\": weight \"%.*s\" must be a "
                       "positive finite number", s, len, q);
    const char *star = skip_space(end);
    if (*star != '*')
        return kp_errf(err, errlen, KP_ERR_ARG, "loss \"%s\": expected '*' after the weight "
                       "\"%.*s\" at column %d", s, len, q, (int)(star - s) + 1);
    *w = v;
    *at = skip_space(star + 1);
    return 0;
}

/* Parses one "[WEIGHT *] NAME" at *at into w[slot]; advances *at. */
static int parse_term(const char *s, const char **at, float w[3], char *err, size_t errlen)
{
    const char *q = skip_space(*at);
    double weight;
    int rc = parse_weight(s, &q, &weight, err, errlen);
    if (rc < 0)
        return rc;
    const char *word = q;
    while (isalnum((unsigned char)*q) || *q == '_')
        q++;
    int len = (int)(q - word);
    if (len == 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "loss \"%s\": expected a term (bce, ce, dice "
                       "or jaccard) at column %d", s, (int)(word - s) + 1);
    int slot = term_slot(word, (size_t)len);
    if (slot < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "loss \"%s\": unknown term \"%.*s\" (terms: "
                       "bce, ce, dice, jaccard)", s, len, word);
    if (w[slot] != 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "loss \"%s\": term \"%.*s\" appears twice%s", s,
                       len, word, slot == 0 ? " (bce and ce are the same term)" : "");
    w[slot] = (float)weight;
    *at = q;
    return 0;
}

int kp_seg_loss_parse(const char *s, kp_seg_loss *out, char *err, size_t errlen)
{
    float w[3] = { 0, 0, 0 };
    if (!s)
        return kp_errf(err, errlen, KP_ERR_ARG, "no loss given (bce, ce, dice or jaccard)");
    const char *at = s;
    for (;;) {
        int rc = parse_term(s, &at, w, err, errlen);
        if (rc < 0)
            return rc;
        at = skip_space(at);
        if (*at == 0)
            break;
        if (*at != '+')
            return kp_errf(err, errlen, KP_ERR_ARG, "loss \"%s\": expected '+' or the end at "
                           "column %d, not '%c'", s, (int)(at - s) + 1, *at);
        at++;
    }
    *out = (kp_seg_loss){ w[0], w[1], w[2] };
    return 0;
}

/* ---- vector helpers (always inlined: compiled once per instruction set) ----
 * Vectors go to helpers by pointer: GCC prints an ABI note for every file
 * whose functions take 64-byte vectors by value, even inlined ones.  Masks
 * come from sign bits (an arithmetic shift), never from vector comparisons:
 * GCC splits a 16-float comparison into scalar compares and branches when
 * the target's vectors are narrower (SSE), which made that path 4x slower. */

#define VSEL(mask, a, b) ((v16)(((v16i)(a) & (mask)) | ((v16i)(b) & ~(mask))))
/* All ones in the lanes whose sign bit is set (x < 0, and -0). */
#define VNEG(x) ((v16i)(x) >> 31)
#define VWIDE(v) __builtin_convertvector((v), v16d)
#define VABS(v) ((v16)((v16i)(v) & 0x7fffffff))

INL v16 vbc(float x) { return (v16){ 0 } + x; }

/* m (1..16) floats from p, zeros in the other lanes. */
INL v16 vload(const float *p, int m)
{
    v16 v = { 0 };
    if (m == VL)
        memcpy(&v, p, sizeof v);
    else
        memcpy(&v, p, sizeof(float) * (size_t)m);
    return v;
}

/* Stores the first m lanes of *v to p. */
INL void vstore(float *p, const v16 *v, int m)
{
    if (m == VL)
        memcpy(p, v, sizeof *v);
    else
        memcpy(p, v, sizeof(float) * (size_t)m);
}

/* The mask of the first m lanes. */
INL v16i vfirst(int m)
{
    const v16i iota = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
    return (iota - m) >> 31;
}

/* All ones in the lanes of the m class indices at y that equal k. */
INL v16i vmatch(const float *y, int m, float k)
{
    v16 d = vload(y, m) - k;
    return VNEG(VABS(d) - 0.5f);
}

/* 1 where the lane of the m targets at y equals k, else 0. */
INL v16 vhit(const float *y, int m, float k)
{
    return VSEL(vmatch(y, m, k), vbc(1.0f), vbc(0.0f));
}

/* The sum of the lanes, in lane order. */
INL double vsum(const v16d *a)
{
    double s = 0;
    for (int l = 0; l < VL; l++)
        s += (*a)[l];
    return s;
}

/* exp(x) for x <= 0, Cephes' expf: 2^n e^r, |r| <= ln2 / 2; NaN and -inf
 * give NaN (x - x), so a diverged net's loss is NaN.  n is rounded by adding
 * 1.5 * 2^23 and read back from the sum's low bits: no float-to-int
 * conversion ever sees a NaN. */
INL v16 vexp(const v16 *px)
{
    v16 x = VSEL(VNEG(*px + 87.0f), vbc(-87.0f), *px);
    v16 t = x * 1.44269504088896341f + 12582912.0f;
    v16 n = t - 12582912.0f;
    v16 r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    v16 q = r * 1.9875691500e-4f + 1.3981999507e-3f;
    q = q * r + 8.3334519073e-3f;
    q = q * r + 4.1665795894e-2f;
    q = q * r + 1.6666665459e-1f;
    q = q * r + 5.0000001201e-1f;
    q = q * (r * r) + r + 1.0f;
    v16u scale = (((v16u)t - 0x4b400000u) + 127u) << 23;
    return q * (v16)scale + (*px - *px);
}

/* log(u) for normal finite u > 0 (NaN gives NaN), Cephes' logf: u = m 2^k with
 * m in [sqrt(1/2), sqrt(2)). */
INL v16 vlog(const v16 *pu)
{
    v16i bits = (v16i)*pu;
    v16 k = __builtin_convertvector(((bits >> 23) & 0xff) - 127, v16);
    v16 m = (v16)((bits & 0x007fffff) | 0x3f800000);
    v16i big = (0x3fb504f3 - (v16i)m) >> 31;     /* m > sqrt(2) */
    m = VSEL(big, m * 0.5f, m);
    k = VSEL(big, k + 1.0f, k);
    v16 x = m - 1.0f, z = x * x;
    v16 y = x * 7.0376836292e-2f - 1.1514610310e-1f;
    y = y * x + 1.1676998740e-1f;
    y = y * x - 1.2420140846e-1f;
    y = y * x + 1.4249322787e-1f;
    y = y * x - 1.6668057665e-1f;
    y = y * x + 2.0000714765e-1f;
    y = y * x - 2.4999993993e-1f;
    y = y * x + 3.3333331174e-1f;
    y = y * x * z;
    y = y + k * -2.12194440e-4f;
    y = y - 0.5f * z;
    return x + y + k * 0.693359375f + (*pu - *pu);
}

/* log(1 + e) for e in [0, 1], exact to rounding even when 1 + e rounds to 1;
 * inv is 1 / (1 + e), which the caller has already. */
INL v16 vlog1p(const v16 *pe, const v16 *inv)
{
    v16 u = 1.0f + *pe;
    return vlog(&u) + (*pe - (u - 1.0f)) * *inv;
}

/* ---- per image ---- */

typedef struct seg_job {
    const kp_seg_loss *L;
    int n, c, P, avx512;
    const float *z, *y;
    float *p, *dz;
    float *loss;        /* one double (two floats) per image */
    float *coef;        /* 2 c floats per thread: a[c], b[c] */
    float kb;           /* bce / (n P): the BCE gradient's scale */
} seg_job;

/* An overlap sum of one channel: sum p y, sum p, sum y; and the BCE sum. */
typedef struct overlap { double py, p, y, bce; } overlap;

/* Weighted Dice + Jaccard loss of one channel from its sums; *a, *b the
 * coefficients of its gradient in p_j (a + b y_j), times scale. */
static double overlap_loss(const kp_seg_loss *L, overlap o, double scale, float *a, float *b)
{
    double s1 = o.p + o.y + 1, i1 = o.py + 1, u1 = o.p + o.y - o.py + 1;
    double loss = 0, ga = 0, gb = 0;
    if (L->dice) {
        loss += L->dice * (1 - (2 * o.py + 1) / s1);
        ga += L->dice * (2 * o.py + 1) / (s1 * s1);
        gb -= L->dice * 2 / s1;
    }
    if (L->jaccard) {
        loss += L->jaccard * (1 - i1 / u1);
        ga += L->jaccard * i1 / (u1 * u1);
        gb -= L->jaccard * (u1 + i1) / (u1 * u1);
    }
    *a = (float)(ga * scale);
    *b = (float)(gb * scale);
    return loss;
}

/* C == 1, pass 1: p = sigmoid(z), the BCE sum (when bce) and the overlap sums. */
INL overlap binary_pass1(int P, const float *z, const float *y, float *p, int bce)
{
    const v16 zero = { 0 };
    v16d al = { 0 }, ap = { 0 }, ay = { 0 }, apy = { 0 };
    for (int b = 0; b < P; b += VL) {
        int m = P - b < VL ? P - b : VL;
        v16i ok = vfirst(m);
        v16 zz = vload(z + b, m), yy = vload(y + b, m), nz = -VABS(zz);
        v16 e = vexp(&nz), inv = 1.0f / (1.0f + e);
        v16 pp = VSEL(ok, VSEL(VNEG(zz), e * inv, inv), zero);
        vstore(p + b, &pp, m);
        if (bce)
            al += VWIDE(VSEL(ok, VSEL(VNEG(zz), zero, zz) - zz * yy + vlog1p(&e, &inv), zero));
        ap += VWIDE(pp);
        ay += VWIDE(yy);
        apy += VWIDE(pp * yy);
    }
    return (overlap){ vsum(&apy), vsum(&ap), vsum(&ay), vsum(&al) };
}

/* C == 1, pass 2: dz = kb (p - y) + p (1 - p) (a + b y). */
INL void binary_grad(int P, const float *y, const float *p, float *dz, float kb, float a,
                     float b)
{
    for (int i = 0; i < P; i += VL) {
        int m = P - i < VL ? P - i : VL;
        v16 yy = vload(y + i, m), pp = vload(p + i, m);
        v16 g = kb * (pp - yy) + pp * (1.0f - pp) * (a + b * yy);
        vstore(dz + i, &g, m);
    }
}

INL double binary_image(const seg_job *j, size_t i)
{
    size_t off = i * (size_t)j->P;
    const kp_seg_loss *L = j->L;
    overlap o = binary_pass1(j->P, j->z + off, j->y + off, j->p + off, L->bce != 0);
    double loss = L->bce ? L->bce * o.bce / j->P : 0;
    float a = 0, b = 0;
    if (L->dice || L->jaccard)
        loss += overlap_loss(L, o, 1.0 / j->n, &a, &b);
    if (j->dz)
        binary_grad(j->P, j->y + off, j->p + off, j->dz + off, j->kb, a, b);
    return loss;
}

/* C >= 2, pass 1 for the m pixels at z (channel stride P) with targets y:
 * the softmax into p and each lane's cross-entropy -log p[y]. */
INL v16 softmax_block(int c, size_t P, int m, const float *z, const float *y, float *p)
{
    v16 mx = vload(z, m);
    for (int k = 1; k < c; k++) {
        v16 zk = vload(z + k * P, m);
        mx = VSEL(VNEG(mx - zk), zk, mx);
    }
    v16 s = { 0 }, zy = { 0 };
    for (int k = 0; k < c; k++) {
        v16 zk = vload(z + k * P, m), d = zk - mx, e = vexp(&d);
        vstore(p + k * P, &e, m);
        s += e;
        zy = VSEL(vmatch(y, m, (float)k), zk, zy);
    }
    v16 inv = 1.0f / s;
    for (int k = 0; k < c; k++) {
        v16 pk = vload(p + k * P, m) * inv;
        vstore(p + k * P, &pk, m);
    }
    return mx + vlog(&s) - zy;
}

/* The overlap sums of class k (>= 1) from its probability plane pk. */
INL overlap class_sums(int P, const float *pk, const float *y, float k)
{
    v16d ap = { 0 }, ay = { 0 }, apy = { 0 };
    for (int b = 0; b < P; b += VL) {
        int m = P - b < VL ? P - b : VL;
        v16 pp = vload(pk + b, m), hit = vhit(y + b, m, k);
        ap += VWIDE(pp);
        ay += VWIDE(hit);
        apy += VWIDE(pp * hit);
    }
    return (overlap){ vsum(&apy), vsum(&ap), vsum(&ay), 0 };
}

/* C >= 2, pass 2 for the m pixels at p (channel stride P) with targets y,
 * from the coefficients a[c], b[c]. */
INL void multi_grad_block(int c, size_t P, int m, const float *p, const float *y,
                          const float *a, const float *b, float kb, float *dz)
{
    v16 t = { 0 };
    for (int k = 1; k < c; k++)
        t += vload(p + k * P, m) * (a[k] + b[k] * vhit(y, m, (float)k));
    for (int k = 0; k < c; k++) {
        v16 pk = vload(p + k * P, m), hit = vhit(y, m, (float)k);
        v16 g = k ? a[k] + b[k] * hit : vbc(0.0f);
        v16 d = kb * (pk - hit) + pk * (g - t);
        vstore(dz + k * P, &d, m);
    }
}

INL double multi_image(const seg_job *j, size_t i, int tid)
{
    const kp_seg_loss *L = j->L;
    int c = j->c, P = j->P;
    size_t off = i * (size_t)c * P;
    const float *y = j->y + i * (size_t)P;
    float *p = j->p + off, *a = j->coef + (size_t)tid * 2 * c, *b = a + c;
    v16d acc = { 0 };
    for (int k = 0; k < P; k += VL) {
        int m = P - k < VL ? P - k : VL;
        v16 ce = softmax_block(c, (size_t)P, m, j->z + off + k, y + k, p + k);
        acc += VWIDE(VSEL(vfirst(m), ce, vbc(0.0f)));
    }
    double loss = L->bce ? L->bce * vsum(&acc) / P : 0;
    memset(a, 0, sizeof(float) * 2 * (size_t)c);
    for (int k = 1; k < c && (L->dice || L->jaccard); k++) {
        overlap o = class_sums(P, p + (size_t)k * P, y, (float)k);
        loss += overlap_loss(L, o, 1.0 / ((double)j->n * (c - 1)), &a[k], &b[k]) / (c - 1);
    }
    for (int k = 0; j->dz && k < P; k += VL) {
        int m = P - k < VL ? P - k : VL;
        multi_grad_block(c, (size_t)P, m, p + k, y + k, a, b, j->kb, j->dz + off + k);
    }
    return loss;
}

INL void image_body(const seg_job *j, size_t i, int tid)
{
    double loss = j->c == 1 ? binary_image(j, i) : multi_image(j, i, tid);
    memcpy(j->loss + 2 * i, &loss, sizeof loss);
}

#ifdef SEG_X86
__attribute__((target("avx512f"))) static void image_avx512(const seg_job *j, size_t i, int tid)
{
    image_body(j, i, tid);
}
#endif

/* The same code for the x86-64 baseline (SSE2).  An AVX2 copy would be no
 * faster: GCC keeps 64-byte vectors in memory when the target's are narrower. */
static void image_sse(const seg_job *j, size_t i, int tid)
{
    image_body(j, i, tid);
}

static void image_job(void *data, size_t i, int tid)
{
    const seg_job *j = data;
#ifdef SEG_X86
    if (j->avx512) {
        image_avx512(j, i, tid);
        return;
    }
#endif
    image_sse(j, i, tid);
}

/* ---- public ---- */

static int simd_off;

void kp_seg_loss_set_simd(int on)
{
    simd_off = !on;
}

static int have_avx512(void)
{
#ifdef SEG_X86
    return !simd_off && __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

size_t kp_seg_loss_workspace(int n, int c, int pixels, int threads)
{
    size_t t = threads > 1 ? (size_t)threads : 1;
    return (size_t)n * (size_t)c * (size_t)pixels + 2 * (size_t)n + 2 * (size_t)c * t;
}

double kp_seg_loss_eval(const kp_seg_loss *L, int n, int c, int pixels, const float *z,
                        const float *y, float *p, float *dz, float *ws, int threads)
{
    assert(L && n >= 0 && c >= 1 && pixels >= 1 && z && y && ws);
    if (n == 0)
        return 0;
    size_t maps = (size_t)n * (size_t)c * (size_t)pixels;
    seg_job j = {
        .L = L, .n = n, .c = c, .P = pixels, .avx512 = have_avx512(), .z = z, .y = y,
        .p = p ? p : ws, .dz = dz, .loss = ws + maps, .coef = ws + maps + 2 * (size_t)n,
        .kb = (float)(L->bce / ((double)n * pixels)),
    };
    kp_parallel_for(threads, image_job, &j, (size_t)n);
    double sum = 0;
    for (int i = 0; i < n; i++) {
        double li;
        memcpy(&li, j.loss + 2 * (size_t)i, sizeof li);
        sum += li;
    }
    return sum / n;
}
