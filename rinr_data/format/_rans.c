/* Tabulated rANS coder (record coder id 4, docs/FORMAT.md): the compiled inner loops of rinr_data.format.entropy.
 *
 * Why compiled: a 384x288 record holds ~10k coded integers, and a per-symbol model evaluated in Python or NumPy costs
 * more than a JPEG decode. Here each symbol is a table lookup: its Laplace (centre, scale) picks one of the tables of
 * _rans_tables.h, and the state update is one multiply. The latent-grid checkerboard context model
 * (rinr_data/codecs/grid/context.py, `pass_models`, which stays the specification) is evaluated here too, in
 * integers, so all levels of a record decode in one call. Its means and scales are integers times dyadic numbers:
 * exact in integers and in double on any machine.
 *
 * Stream: 32-bit state in [2^16, 2^32), 16-bit little-endian words, the state written first. A symbol is coded as
 *   - scale < RANS_S_TOP: the offset of the value from floor(centre) under table (scale bin, centre fraction);
 *   - scale >= RANS_S_TOP: halved k times until below; the offset is split into hi = floor(offset / 2^k), coded under
 *     the table of the halved scale and hi's own centre, and its k low bits, coded raw;
 *   - an offset beyond +-RANS_HALF is the escape symbol, then its sign and Exp-Golomb magnitude as raw bits.
 * Every read is bounds-checked: a forged stream is an error, never a read past the buffer or a value past `bound`.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_rans_tables.h"

#define RANS_L (1u << 16)
#define RANS_MASK ((1u << RANS_PREC) - 1)
#define MAX_SHIFT 15
#define MAX_GOLOMB 20
#define MIN_SCALE 0.01
#define MAX_MEAN 1e12 /* far beyond any value a record holds, far inside int64 */
#define MAX_BOUND ((1LL << 31) - 1)

/* Lookup tables derived from _rans_tables.h at import, so a model costs no search (a data-dependent branch a step
 * would cost more than the rest of a symbol):
 * - scale_start: the bin of the smallest scale of each binary-exponent-and-4-mantissa-bits bucket. A bucket spans a
 *   ratio of at most 17/16, less than the ratio between neighbouring table scales, so one comparison with the next
 *   threshold finishes the search, and the result is the exact one of the thresholds.
 * - slot_start: the symbol holding the first of each 1/128 of the probability range, from which at most a few steps
 *   reach the symbol holding any state.
 */
#define EXP_LOW (-12)
#define EXP_BUCKETS 16 /* 2^-12 .. 2^3: scales are >= MIN_SCALE and < RANS_S_TOP (8) here */
#define SLOT_BITS 7
static double thresholds_pad[RANS_SCALES];
static uint8_t scale_start[EXP_BUCKETS * 16];
static uint8_t slot_start[RANS_SCALES][RANS_FRACTIONS][1 << SLOT_BITS];

static int bins_at_or_below(double scale) {
    int n = 0;
    while (n < RANS_SCALES - 1 && rans_thresholds[n] <= scale)
        n++;
    return n;
}

static inline int scale_bucket(double scale) {
    uint64_t bits;
    memcpy(&bits, &scale, sizeof(bits));
    int e = (int)((bits >> 52) & 0x7ff) - 1023 - EXP_LOW;
    e = e < 0 ? 0 : (e >= EXP_BUCKETS ? EXP_BUCKETS - 1 : e);
    return e * 16 + (int)((bits >> 48) & 0xf);
}

static void derive_tables(void) {
    for (int i = 0; i < RANS_SCALES; i++)
        thresholds_pad[i] = i < RANS_SCALES - 1 ? rans_thresholds[i] : HUGE_VAL;
    for (int e = 0; e < EXP_BUCKETS; e++)
        for (int m = 0; m < 16; m++)
            scale_start[e * 16 + m] = (uint8_t)bins_at_or_below(ldexp(1.0 + m / 16.0, e + EXP_LOW));
    for (int j = 0; j < RANS_SCALES; j++)
        for (int f = 0; f < RANS_FRACTIONS; f++) {
            int s = 0;
            for (int slot = 0; slot < (1 << SLOT_BITS); slot++) {
                uint32_t y = (uint32_t)slot << (RANS_PREC - SLOT_BITS);
                while (rans_cum[j][f][s + 1] <= y)
                    s++;
                slot_start[j][f][slot] = (uint8_t)s;
            }
        }
}

typedef struct {
    int table_bin; /* scale bin */
    int fraction;  /* centre fraction, 0..RANS_FRACTIONS-1 */
    int64_t base;  /* value - base is coded: as it is, or split into hi and k low bits */
    int shift;     /* k: raw low bits */
    int hi_base;   /* the integer the table's offsets of hi count from */
} Model;

/* floor() of a value far inside the int64 range (means are clipped to a tensor's bound) without a libm call. */
static inline double floor_small(double x) {
    double t = (double)(int64_t)x;
    return t > x ? t - 1.0 : t;
}

/* The table bin and the number of raw low bits of a scale (>= MIN_SCALE): all a model takes from its scale. */
static inline __attribute__((always_inline)) Model scale_model(double scale) {
    Model m;
    int k = 0;
    while (scale >= RANS_S_TOP && k < MAX_SHIFT) {
        scale *= 0.5;
        k++;
    }
    int lo = RANS_SCALES - 1; /* a scale still >= RANS_S_TOP after MAX_SHIFT halvings takes the widest table */
    if (scale < RANS_S_TOP) {
        lo = scale_start[scale_bucket(scale)];
        lo += thresholds_pad[lo] <= scale;
    }
    m.table_bin = lo;
    m.shift = k;
    return m;
}

/* The centre's part of a model whose scale part (`m.shift`) is set. */
static inline __attribute__((always_inline)) Model centre_model(Model m, double centre) {
    /* The coded integer counts from floor(centre); its own centre, `at`, lies in [0, 1). Split by 2^k, the values
     * j 2^k .. (j+1) 2^k - 1 make hi = j: hi is centred at (at + 1/2) / 2^k - 1/2, in [-1/2, 1/2). All exact. */
    double c = floor_small(centre);
    double at = centre - c;
    if (m.shift)
        at = (at + 0.5) * (1.0 / (double)((int64_t)1 << m.shift)) - 0.5;
    double at_floor = floor_small(at);
    int f = (int)((at - at_floor) * RANS_FRACTIONS + 0.5); /* non-negative: truncation is floor */
    if (f == RANS_FRACTIONS) {
        f = 0;
        at_floor += 1;
    }
    m.base = (int64_t)c;
    m.hi_base = (int)at_floor;
    m.fraction = f;
    return m;
}

static inline __attribute__((always_inline)) Model make_model(double centre, double scale) {
    return centre_model(scale_model(scale), centre);
}

/* ---------------------------------------------------------------- encoder */

typedef struct {
    uint16_t *words; /* emitted in reverse stream order */
    size_t n, cap;
    uint32_t x;
    int failed;
} Enc;

static void emit(Enc *e, uint16_t w) {
    if (e->n == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 1024;
        uint16_t *grown = (uint16_t *)realloc(e->words, cap * sizeof(uint16_t));
        if (!grown) {
            e->failed = 1;
            return;
        }
        e->words = grown;
        e->cap = cap;
    }
    e->words[e->n++] = w;
}

static void put(Enc *e, uint32_t start, uint32_t freq) {
    uint64_t x_max = (uint64_t)((RANS_L >> RANS_PREC) << 16) * freq;
    if (e->x >= x_max) {
        emit(e, (uint16_t)(e->x & 0xffff));
        e->x >>= 16;
    }
    e->x = ((e->x / freq) << RANS_PREC) + (e->x % freq) + start;
}

typedef struct {
    uint32_t start, freq;
} Op;

static void put_bits(Op *ops, int *n, uint32_t value, int bits) {
    ops[*n].start = value << (RANS_PREC - bits);
    ops[*n].freq = 1u << (RANS_PREC - bits);
    (*n)++;
}

/* The ops of one symbol in decoding order; returns their count, or -1 when the value cannot be coded. */
static int symbol_ops(int64_t value, Model m, Op *ops) {
    int n = 0;
    int64_t r = value - m.base, hi = r, low = 0;
    if (m.shift) {
        int64_t step = (int64_t)1 << m.shift;
        hi = r >= 0 ? r / step : -((-r + step - 1) / step);
        low = r - hi * step;
    }
    hi -= m.hi_base;
    const unsigned short *cum = rans_cum[m.table_bin][m.fraction];
    if (hi >= -RANS_HALF && hi <= RANS_HALF) {
        int s = (int)(hi + RANS_HALF);
        ops[n].start = cum[s];
        ops[n].freq = (uint32_t)(cum[s + 1] - cum[s]);
        n++;
    } else {
        int s = RANS_SYMBOLS - 1;
        ops[n].start = cum[s];
        ops[n].freq = (uint32_t)(cum[s + 1] - cum[s]);
        n++;
        put_bits(ops, &n, hi < 0, 1);
        uint64_t u = (uint64_t)((hi < 0 ? -hi : hi) - RANS_HALF); /* >= 1: Exp-Golomb of u - 1, written as u */
        int len = 0;
        while ((u >> (len + 1)) != 0)
            len++;
        if (len > MAX_GOLOMB)
            return -1;
        for (int i = 0; i < len; i++)
            put_bits(ops, &n, 1, 1);
        put_bits(ops, &n, 0, 1);
        for (int i = len - 1; i >= 0; i--)
            put_bits(ops, &n, (uint32_t)((u >> i) & 1), 1);
    }
    if (m.shift)
        put_bits(ops, &n, (uint32_t)low, m.shift);
    return n;
}

static PyObject *py_encode(PyObject *self, PyObject *args) {
    Py_buffer values, means, scales;
    if (!PyArg_ParseTuple(args, "y*z*y*", &values, &means, &scales))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = values.len / (Py_ssize_t)sizeof(int32_t);
    if (values.len % sizeof(int32_t) || scales.len != n * (Py_ssize_t)sizeof(double) ||
        (means.buf && means.len != n * (Py_ssize_t)sizeof(double))) {
        PyErr_SetString(PyExc_ValueError, "values (int32), means and scales (float64) must have one entry each");
        goto done;
    }
    const int32_t *v = (const int32_t *)values.buf;
    const double *mu = (const double *)means.buf, *sc = (const double *)scales.buf;
    Enc e = {NULL, 0, 0, RANS_L, 0};
    Op ops[4 + 2 * MAX_GOLOMB + 4];
    for (Py_ssize_t i = n - 1; i >= 0 && !e.failed; i--) {
        double scale = sc[i] > MIN_SCALE ? sc[i] : MIN_SCALE;
        if (!(scale < 1e300) || (mu && !(fabs(mu[i]) < MAX_MEAN))) {
            PyErr_Format(PyExc_ValueError, "symbol %zd has a non-finite model", i);
            free(e.words);
            goto done;
        }
        int count = symbol_ops(v[i], make_model(mu ? mu[i] : 0.0, scale), ops);
        if (count < 0) {
            PyErr_Format(PyExc_ValueError, "symbol %zd (%d) is too far from its model's centre to code", i, v[i]);
            free(e.words);
            goto done;
        }
        for (int j = count - 1; j >= 0; j--)
            put(&e, ops[j].start, ops[j].freq);
    }
    if (n > 0) {
        emit(&e, (uint16_t)(e.x & 0xffff));
        emit(&e, (uint16_t)(e.x >> 16));
    }
    if (e.failed) {
        PyErr_NoMemory();
        free(e.words);
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(2 * e.n));
    if (result) {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        for (size_t i = 0; i < e.n; i++) { /* reversed, little-endian */
            uint16_t w = e.words[e.n - 1 - i];
            out[2 * i] = (unsigned char)(w & 0xff);
            out[2 * i + 1] = (unsigned char)(w >> 8);
        }
    }
    free(e.words);
done:
    PyBuffer_Release(&values);
    PyBuffer_Release(&means);
    PyBuffer_Release(&scales);
    return result;
}

/* ---------------------------------------------------------------- decoder */

typedef struct {
    const unsigned char *data;
    uint32_t words, pos, x;
    uint32_t ended; /* set by refill when the stream ran out: an error the caller reports */
    const char *error;
} Dec;

static const char ENDED[] = "stream ends before its last symbol";

/* Refill without a branch: whether a symbol needs a word depends on the data, and the mispredicted branch cost more
 * than the rest of the refill. A stream that runs out sets `ended` (the word read is a zero one, never past the
 * buffer); the caller turns it into an error. */
static const unsigned char zero_word[2] = {0, 0};

static inline __attribute__((always_inline)) void refill(Dec *d) {
    uint32_t need = d->x < RANS_L, more = d->pos < d->words;
    const unsigned char *src = more ? d->data + 2 * (size_t)d->pos : zero_word;
    uint32_t word = (uint32_t)(src[0] | (src[1] << 8));
    d->x = need ? (d->x << 16) | word : d->x;
    d->pos += need & more;
    d->ended |= need & !more;
}

static inline uint32_t get_bits(Dec *d, int bits) {
    uint32_t y = d->x & RANS_MASK;
    uint32_t value = y >> (RANS_PREC - bits);
    uint32_t freq = 1u << (RANS_PREC - bits);
    d->x = freq * (d->x >> RANS_PREC) + y - (value << (RANS_PREC - bits));
    refill(d);
    return value;
}

/* The rare escape: sign and Exp-Golomb magnitude (kept out of line so the common path stays small). */
static __attribute__((noinline)) int64_t get_escape(Dec *d) {
    int negative = (int)get_bits(d, 1);
    int len = 0;
    while (!d->error && get_bits(d, 1)) {
        if (++len > MAX_GOLOMB) {
            d->error = "escape code longer than any value";
            return 0;
        }
    }
    uint64_t u = 1;
    for (int i = 0; i < len && !d->error; i++)
        u = (u << 1) | get_bits(d, 1);
    int64_t off = (int64_t)u + RANS_HALF;
    return negative ? -off : off;
}

static inline __attribute__((always_inline)) int64_t get_symbol(Dec *d, const Model m) {
    const unsigned short *cum = rans_cum[m.table_bin][m.fraction];
    uint32_t y = d->x & RANS_MASK;
    int lo = slot_start[m.table_bin][m.fraction][y >> (RANS_PREC - SLOT_BITS)]; /* then the last s with cum[s] <= y */
    lo += cum[lo + 1] <= y; /* most symbols need at most this step: without a branch, it cannot be mispredicted */
    while (cum[lo + 1] <= y)
        lo++;
    d->x = (uint32_t)(cum[lo + 1] - cum[lo]) * (d->x >> RANS_PREC) + y - cum[lo];
    refill(d);
    int64_t off = lo - RANS_HALF;
    if (lo == RANS_SYMBOLS - 1) {
        /* Through a copy: a coder whose address reaches a function call is kept in memory from then on, and every
         * store to a level (int8, which may alias anything) would reload it. */
        Dec escaped = *d;
        off = get_escape(&escaped);
        *d = escaped;
    }
    off += m.hi_base;
    if (m.shift) {
        int64_t low = get_bits(d, m.shift);
        off = off * ((int64_t)1 << m.shift) + low;
    }
    return m.base + off;
}

/* state: 12 bytes (x, pos, words as uint32) kept by the Python reader between calls. */
static int load(Dec *d, Py_buffer *data, Py_buffer *state) {
    if (state->len != 3 * sizeof(uint32_t)) {
        PyErr_SetString(PyExc_ValueError, "reader state must be 12 bytes");
        return 0;
    }
    uint32_t s[3];
    memcpy(s, state->buf, sizeof(s));
    d->data = (const unsigned char *)data->buf;
    d->x = s[0];
    d->pos = s[1];
    d->words = s[2];
    d->ended = 0;
    d->error = NULL;
    if ((Py_ssize_t)d->words * 2 != data->len || d->pos > d->words) {
        PyErr_SetString(PyExc_ValueError, "reader state does not match its stream");
        return 0;
    }
    return 1;
}

static void store(Dec *d, Py_buffer *state) {
    uint32_t s[3] = {d->x, d->pos, d->words};
    memcpy(state->buf, s, sizeof(s));
}

static int check_value(Dec *d, int64_t v, int64_t bound) {
    if (!d->error && d->ended)
        d->error = ENDED;
    if (!d->error && (v > bound || v < -bound))
        d->error = "value beyond its tensor's declared bound";
    return d->error == NULL;
}

static PyObject *py_decode(PyObject *self, PyObject *args) {
    Py_buffer data, state, out, means, scales;
    long long bound;
    if (!PyArg_ParseTuple(args, "y*w*w*z*y*L", &data, &state, &out, &means, &scales, &bound))
        return NULL;
    PyObject *result = NULL;
    Dec d;
    Py_ssize_t n = out.len / (Py_ssize_t)sizeof(int32_t);
    if (out.len % sizeof(int32_t) || scales.len != n * (Py_ssize_t)sizeof(double) ||
        (means.buf && means.len != n * (Py_ssize_t)sizeof(double))) {
        PyErr_SetString(PyExc_ValueError, "out (int32), means and scales (float64) must have one entry each");
        goto done;
    }
    if (bound < 0 || bound > MAX_BOUND) {
        PyErr_SetString(PyExc_ValueError, "bound out of range");
        goto done;
    }
    if (!load(&d, &data, &state))
        goto done;
    int32_t *v = (int32_t *)out.buf;
    const double *mu = (const double *)means.buf, *sc = (const double *)scales.buf;
    /* No Python object is touched in the loop: other threads (a thread-based loader) run meanwhile. */
    Py_BEGIN_ALLOW_THREADS
    /* Runs of one model (a synthesis tensor: zero mean, one scale) evaluate it once. */
    double last_mean = NAN, last_scale = NAN;
    Model m = {0};
    for (Py_ssize_t i = 0; i < n; i++) {
        double scale = sc[i] > MIN_SCALE ? sc[i] : MIN_SCALE;
        double mean = mu ? mu[i] : 0.0;
        if (!(scale < 1e300) || !(fabs(mean) < MAX_MEAN)) {
            d.error = "non-finite model";
            break;
        }
        if (scale != last_scale || mean != last_mean) {
            m = make_model(mean, scale);
            last_mean = mean;
            last_scale = scale;
        }
        int64_t value = get_symbol(&d, m);
        if (!check_value(&d, value, bound))
            break;
        v[i] = (int32_t)value;
    }
    Py_END_ALLOW_THREADS
    if (d.error) {
        PyErr_SetString(PyExc_ValueError, d.error);
        goto done;
    }
    store(&d, &state);
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&state);
    PyBuffer_Release(&out);
    PyBuffer_Release(&means);
    PyBuffer_Release(&scales);
    return result;
}

/* Levels travel in the smallest integer type that holds them (1, 2 or 4 bytes): a frame's finest level is 110k values,
 * and writing int32 to narrow it afterwards cost more than decoding it. */
static inline __attribute__((always_inline)) int64_t get_int(const void *p, int size, Py_ssize_t i) {
    switch (size) {
    case 1:
        return ((const int8_t *)p)[i];
    case 2:
        return ((const int16_t *)p)[i];
    default:
        return ((const int32_t *)p)[i];
    }
}

static inline __attribute__((always_inline)) void set_int(void *p, int size, Py_ssize_t i, int64_t v) {
    switch (size) {
    case 1:
        ((int8_t *)p)[i] = (int8_t)v;
        break;
    case 2:
        ((int16_t *)p)[i] = (int16_t)v;
        break;
    default:
        ((int32_t *)p)[i] = (int32_t)v;
    }
}

/* The context model in integers. Mean weights and spreads are int8 multiples of 1/64 (PARAM_STEP), latents are
 * integers: 64 x mean is the integer S = sum(weight x feature) and a scale is base[pass][region] + spread x A / 64
 * with A the integer sum of |feature|. So a scale's table bin and shift depend only on (pass, region, A), looked up
 * once per call and kept, and for shift 0 (the common case) floor(mean) and the centre fraction are integer
 * arithmetic on S. Both give exactly what make_model gives for the float64 mean and scale of the specification
 * (`context.pass_models`); a shifted scale (k > 0, rare) takes make_model's float path for its centre. */
#define MEMO_SUMS 256

typedef struct {
    int weight[6], spread[2];
    double base[2][2];
    uint16_t memo[2][2][MEMO_SUMS]; /* table bin | shift << 8; MEMO_UNKNOWN until first met */
    int non_finite;                 /* a scale was not finite: the call fails */
} LevelModels;

#define MEMO_UNKNOWN 0xffff

static inline __attribute__((always_inline)) Model scale_of(LevelModels *lm, int pass, int outside, int64_t sum) {
    Model m;
    uint16_t known = sum < MEMO_SUMS ? lm->memo[pass][outside][sum] : MEMO_UNKNOWN;
    if (known != MEMO_UNKNOWN) {
        m.table_bin = known & 0xff;
        m.shift = known >> 8;
        return m;
    }
    double scale = lm->base[pass][outside] + (double)lm->spread[pass] * (1.0 / 64.0) * (double)sum;
    m = scale_model(scale > MIN_SCALE ? scale : MIN_SCALE);
    if (!(scale < 1e300)) {
        m.table_bin = RANS_SCALES - 1; /* a valid table meanwhile: the caller refuses the call at the run's end */
        lm->non_finite = 1;
    } else if (sum < MEMO_SUMS)
        lm->memo[pass][outside][sum] = (uint16_t)(m.table_bin | m.shift << 8);
    return m;
}

/* The model of 64 x mean = s64 (clamped to the bound), under the scale part `m`. */
static inline __attribute__((always_inline)) Model model_of(Model m, int64_t s64, int64_t bound) {
    if (s64 > 64 * bound)
        s64 = 64 * bound;
    if (s64 < -64 * bound)
        s64 = -64 * bound;
    if (m.shift)
        return centre_model(m, (double)s64 * (1.0 / 64.0));
    int64_t frac = s64 & 63; /* two's complement: the non-negative remainder */
    int f = (int)((frac + 4) >> 3);
    m.base = (s64 - frac) / 64;
    m.hi_base = f >> 3;
    m.fraction = f & (RANS_FRACTIONS - 1);
    return m;
}

/* One pass over a level: anchors ((row + col) even) or the others, row-major over the coded positions. Inlined with
 * constant integer sizes, so each of the nine size pairs gets its own loop without a switch per value. */
static inline __attribute__((always_inline)) int64_t decode_pass(Dec *state, LevelModels *lm, int pass, void *lv,
                                                                int out_size, int h, int w, const void *up,
                                                                int up_size, int cw,
                                                                const unsigned char *inside,
                                                                const unsigned char *where, int64_t bound) {
    int64_t peak = 0; /* largest |value|: records declare it, and checking it here saves a pass over the level */
    /* Local copies of the coder and the weights: stores to an int8 level may alias any memory, so values reached
     * through pointers would be reloaded after every store; locals stay in registers. */
    Dec coder = *state, *d = &coder;
    const int wa = lm->weight[0], wu = lm->weight[1], wd = lm->weight[2], wl = lm->weight[3], wr = lm->weight[4],
              wc = lm->weight[5];
    for (int r = 0; r < h && !d->error; r++) {
        const unsigned char *row = where ? where + (Py_ssize_t)r * w : NULL;
        /* Runs of coded positions: a whole row, or (box-only levels, few rows of a large grid coded) the runs
         * memchr finds, so uncoded positions are never visited one by one. */
        for (int c0 = 0; c0 < w && !d->error;) {
            int start = 0, end = w;
            if (row) {
                const unsigned char *p = memchr(row + c0, 1, (size_t)(w - c0));
                if (!p)
                    break;
                start = (int)(p - row);
                const unsigned char *q = memchr(row + start, 0, (size_t)(w - start));
                end = q ? (int)(q - row) : w;
            }
            c0 = end;
            const Py_ssize_t coarse_row = (Py_ssize_t)(r / 2) * cw;
            for (int c = start + ((r + pass + start) & 1); c < end; c += 2) {
                Py_ssize_t i = (Py_ssize_t)r * w + c;
                int64_t parent = up ? get_int(up, up_size, coarse_row + c / 2) : 0;
                int64_t s64, sum;
                if (pass == 0) {
                    s64 = wa * parent;
                    sum = parent < 0 ? -parent : parent;
                } else {
                    int64_t n_up = r > 0 ? get_int(lv, out_size, i - w) : 0;
                    int64_t n_down = r + 1 < h ? get_int(lv, out_size, i + w) : 0;
                    int64_t n_left = c > 0 ? get_int(lv, out_size, i - 1) : 0;
                    int64_t n_right = c + 1 < w ? get_int(lv, out_size, i + 1) : 0;
                    s64 = wu * n_up + wd * n_down + wl * n_left + wr * n_right + wc * parent;
                    sum = (n_up < 0 ? -n_up : n_up) + (n_down < 0 ? -n_down : n_down) +
                          (n_left < 0 ? -n_left : n_left) + (n_right < 0 ? -n_right : n_right) +
                          (parent < 0 ? -parent : parent);
                }
                Model m = scale_of(lm, pass, !inside[i], sum);
                int64_t value = get_symbol(d, model_of(m, s64, bound));
                set_int(lv, out_size, i, value);
                int64_t mag = value < 0 ? -value : value;
                peak = mag > peak ? mag : peak;
            }
            if (lm->non_finite && !d->error)
                d->error = "non-finite model";
            if (d->ended && !d->error)
                d->error = ENDED;
            /* |value| <= bound checked once a run, on the running peak: a value past it is an error of the whole
             * call, and the level buffer holds it (truncated) only until then. */
            if (peak > bound && !d->error)
                d->error = "value beyond its tensor's declared bound";
        }
    }
    *state = coder;
    return peak;
}

static inline __attribute__((always_inline)) int64_t decode_passes(Dec *d, LevelModels *lm, void *lv, int out_size,
                                                                  int h, int w, const void *up, int up_size, int cw,
                                                                  const unsigned char *inside,
                                                                  const unsigned char *where, int64_t bound) {
    int64_t a = decode_pass(d, lm, 0, lv, out_size, h, w, up, up_size, cw, inside, where, bound);
    if (d->error)
        return 0;
    int64_t b = decode_pass(d, lm, 1, lv, out_size, h, w, up, up_size, cw, inside, where, bound);
    return a > b ? a : b;
}

#define SIZES(o, u)                                                                                                    \
    case (o) * 8 + (u):                                                                                                \
        return decode_passes(d, lm, lv, o, h, w, up, u, cw, inside, where, bound);

static int64_t decode_level_sized(Dec *d, LevelModels *lm, void *lv, int out_size, int h, int w, const void *up,
                                  int up_size, int cw, const unsigned char *inside, const unsigned char *where,
                                  int64_t bound) {
    switch (out_size * 8 + up_size) {
        SIZES(1, 1) SIZES(1, 2) SIZES(1, 4) SIZES(2, 1) SIZES(2, 2) SIZES(2, 4) SIZES(4, 1) SIZES(4, 2)
        default : return decode_passes(d, lm, lv, 4, h, w, up, 4, cw, inside, where, bound);
    }
}

/* Paints the byte mask [h, w] of a level's box-touching latents from the boxes' pixel regions (rects: int32 top,
 * left, bottom, right at full resolution, grown by the box margin and clipped): each level halves them rounding
 * outwards, as FORMAT.md's "touches a box" defines. A few row fills per box, where a mask built per frame and pooled
 * per level cost more than decoding the level. */
static void paint_mask(unsigned char *mask, const int32_t *rects, Py_ssize_t n, int level, int h, int w) {
    memset(mask, 0, (size_t)h * (size_t)w);
    for (Py_ssize_t b = 0; b < n; b++) {
        int64_t top = rects[4 * b], left = rects[4 * b + 1], bottom = rects[4 * b + 2], right = rects[4 * b + 3];
        for (int l = 0; l < level; l++) {
            top = top >> 1; /* floor: the regions are non-negative */
            left = left >> 1;
            bottom = (bottom + 1) >> 1;
            right = (right + 1) >> 1;
        }
        top = top < 0 ? 0 : top;
        left = left < 0 ? 0 : left;
        bottom = bottom > h ? h : bottom;
        right = right > w ? w : right;
        for (int64_t r = top; r < bottom && left < right; r++)
            memset(mask + r * w + left, 1, (size_t)(right - left));
    }
}

/* The context parameters of one level (6 mean weights and 2 spreads, each an integer / 64; base scales [pass][in
 * box, outside]) into `lm`, its scale memo emptied; 0 when a weight or spread is off the stored grid. */
static int set_level_models(LevelModels *lm, const double *p) {
    for (int j = 0; j < 8; j++) {
        double q = p[j] * 64.0;
        if (!(q >= -128.0 && q <= 127.0) || q != (double)(int)q)
            return 0;
        if (j < 6)
            lm->weight[j] = (int)q;
        else
            lm->spread[j - 6] = (int)q;
    }
    for (int j = 0; j < 4; j++)
        lm->base[j / 2][j % 2] = p[8 + j];
    memset(lm->memo, 0xff, sizeof(lm->memo));
    return 1;
}

/* Every latent level of a record under the checkerboard context model, coarsest first; within a level anchors ((row
 * + col) even) first, then the others, each row-major over the coded positions (box-only levels, l < box_levels:
 * the box-touching ones). One call per record: per-level calls cost more in Python than small levels take to decode.
 * out: one buffer holding level l at byte offsets[l], in ints of size[l] bytes (1, 2 or 4), zeroed here first.
 * levels: int64 [L, 5] of (h, w, offset, int size, bound); params: float64 [L, 12]. Returns the largest |value| of
 * each level (records declare it). */
static PyObject *py_decode_levels(PyObject *self, PyObject *args) {
    Py_buffer data, state, out, levels, rects, params;
    int box_levels;
    if (!PyArg_ParseTuple(args, "y*w*w*y*y*iy*", &data, &state, &out, &levels, &rects, &box_levels, &params))
        return NULL;
    PyObject *result = NULL;
    Dec d;
    LevelModels *lm = NULL;
    unsigned char *mask = NULL;
    const int64_t *lv_info = (const int64_t *)levels.buf;
    Py_ssize_t n_levels = levels.len / (5 * (Py_ssize_t)sizeof(int64_t));
    int64_t peaks[32];
    const char *bad = NULL;
    if (levels.len % (5 * (Py_ssize_t)sizeof(int64_t)) || n_levels < 1 || n_levels > 32 ||
        params.len != 12 * n_levels * (Py_ssize_t)sizeof(double) || rects.len % (4 * (Py_ssize_t)sizeof(int32_t)))
        bad = "level table, box regions or parameters have inconsistent sizes";
    for (Py_ssize_t l = 0; l < n_levels && !bad; l++) {
        const int64_t *v = lv_info + 5 * l;
        int64_t h = v[0], w = v[1], offset = v[2], size = v[3], bound = v[4];
        if (h < 1 || w < 1 || h * w > ((int64_t)1 << 30) || (size != 1 && size != 2 && size != 4) || offset < 0 ||
            offset % size || offset + h * w * size > out.len || bound < 0 ||
            bound > (size == 1 ? 127 : size == 2 ? 32767 : MAX_BOUND))
            bad = "a level's size, place or bound does not fit the output buffer";
        else if (l && (h > lv_info[5 * (l - 1)] || w > lv_info[5 * (l - 1) + 1]))
            bad = "levels must be given finest first";
        else if (l && (lv_info[5 * (l - 1)] > 2 * h || lv_info[5 * (l - 1) + 1] > 2 * w))
            bad = "a level is less than half the size of the one below";
        else if (l && offset < lv_info[5 * (l - 1) + 2] + lv_info[5 * (l - 1)] * lv_info[5 * (l - 1) + 1] *
                                                             lv_info[5 * (l - 1) + 3])
            bad = "levels overlap in the output buffer";
    }
    if (bad) {
        PyErr_SetString(PyExc_ValueError, bad);
        goto done;
    }
    lm = (LevelModels *)calloc(1, sizeof(LevelModels));
    mask = (unsigned char *)malloc((size_t)(lv_info[0] * lv_info[1]));
    if (!lm || !mask) {
        PyErr_NoMemory();
        goto done;
    }
    if (!load(&d, &data, &state))
        goto done;
    const double *p = (const double *)params.buf;
    const int32_t *boxes = (const int32_t *)rects.buf;
    Py_ssize_t n_rects = rects.len / (4 * (Py_ssize_t)sizeof(int32_t));
    unsigned char *base = (unsigned char *)out.buf;
    /* No Python object is touched in the loop: other threads (a thread-based loader) run meanwhile. */
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t l = n_levels - 1; l >= 0 && !d.error; l--) {
        const int64_t *v = lv_info + 5 * l;
        int h = (int)v[0], w = (int)v[1], size = (int)v[3];
        void *lv = base + v[2];
        memset(lv, 0, (size_t)(h * w * size)); /* the neighbours a pass reads must be zero until decoded */
        peaks[l] = 0;
        if (v[4] == 0)
            continue; /* a level of zeros codes nothing */
        if (!set_level_models(lm, p + 12 * l)) {
            d.error = "context weights and spreads must be int8 multiples of 1/64";
            break;
        }
        const int64_t *up_info = l + 1 < n_levels ? lv_info + 5 * (l + 1) : NULL;
        paint_mask(mask, boxes, n_rects, (int)l, h, w);
        peaks[l] = decode_level_sized(&d, lm, lv, size, h, w, up_info ? base + up_info[2] : NULL,
                                      up_info ? (int)up_info[3] : 4, up_info ? (int)up_info[1] : 0, mask,
                                      l < box_levels ? mask : NULL, v[4]);
    }
    Py_END_ALLOW_THREADS
    if (d.error) {
        PyErr_SetString(PyExc_ValueError, d.error);
        goto done;
    }
    store(&d, &state);
    result = PyTuple_New(n_levels);
    for (Py_ssize_t l = 0; result && l < n_levels; l++) {
        PyObject *peak = PyLong_FromLongLong(peaks[l]);
        if (!peak) {
            Py_CLEAR(result);
            break;
        }
        PyTuple_SET_ITEM(result, l, peak);
    }
done:
    free(lm);
    free(mask);
    PyBuffer_Release(&data);
    PyBuffer_Release(&state);
    PyBuffer_Release(&out);
    PyBuffer_Release(&levels);
    PyBuffer_Release(&rects);
    PyBuffer_Release(&params);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", py_encode, METH_VARARGS, "encode(values, means | None, scales) -> bytes: one rANS stream."},
    {"decode", py_decode, METH_VARARGS, "decode(data, state, out, means | None, scales, bound): the next len(out)."},
    {"decode_levels", py_decode_levels, METH_VARARGS,
     "decode_levels(data, state, out, levels, rects, box_levels, params) -> peaks: a record's latent levels."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rans", "Tabulated rANS coder (compiled).", -1, methods};

PyMODINIT_FUNC PyInit__rans(void) {
    derive_tables();
    return PyModule_Create(&module);
}
