/*
 * Compiled decode kernels of gep_ros.wire: EVT3 words and dvs_msgs/EventArray records into
 * the EVENT_DTYPE / TRIGGER_DTYPE records of gep_ros.wire.events.
 *
 * Plain C99 against Python's C API and its buffer protocol only (no numpy headers): one
 * build serves numpy 1.x and 2.x; arrays are made by calling numpy.empty, which setup()
 * hands over. The Python side (evt3.py, dvs.py, event_packet.py) checks its arguments; a
 * kernel fills arrays and reports counts and the state to carry, and the streaming path
 * (evt3_packet) also builds the DecodedPacket. Nothing here raises for bad data: the Python
 * side turns the reported positions into its WireErrors, so that both decoders fail alike.
 *
 * On x86-64 (GCC 8+ or clang) some loops have a second version compiled for AVX2 or
 * AVX-512 in a function of its own target, chosen at import by what the CPU has: the
 * package stays built for the baseline, as wheels and colcon build it, and an aarch64
 * (Jetson) build takes the plain C.
 *
 * Layouts (checked against the numpy dtypes at import, in kernels.py):
 *   event   16 bytes: int64 t at 0, uint16 x at 8, uint16 y at 10, uint8 p at 12, 3 zero bytes
 *   trigger 16 bytes: int64 t at 0, uint8 p at 8, uint8 id at 9, 6 zero bytes
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>  /* PyMemberDef (in Python.h itself from 3.12) */

#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
/* Functions compiled for AVX2 / AVX-512 targets (the EventArray copy, the wide EVT3 blocks),
 * chosen at import where the CPU has them. */
#if defined(__x86_64__) && defined(__GNUC__) \
    && (defined(__clang__) || __GNUC__ >= 8)
#define HAVE_X86_TARGETS 1
#include <immintrin.h>
#else
#define HAVE_X86_TARGETS 0
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gep_ros.wire._kernels writes little-endian records and needs a little-endian host"
#endif

/* Bumped whenever an argument list or a result tuple changes; kernels.py refuses another. */
#define INTERFACE_VERSION 8

typedef struct {
    int64_t t;
    uint16_t x, y;
    uint8_t p, pad[3];
} event_t;

typedef struct {
    int64_t t;
    uint8_t p, id, pad[6];
} trigger_t;

/* EVT3 word types (top nibble). */
enum {
    ADDR_Y = 0x0, ADDR_X = 0x2, VECT_BASE_X = 0x3, VECT_12 = 0x4, VECT_8 = 0x5,
    TIME_LOW = 0x6, CONTINUED_4 = 0x7, TIME_HIGH = 0x8, EXT_TRIGGER = 0xA, OTHERS = 0xE,
    CONTINUED_12 = 0xF
};
/* A TIME_HIGH that falls back by at most this many steps is bit noise, not a wrap. */
#define ROLLOVER_TOLERANCE 10
#define NS_PER_US 1000

static inline int popcount16(unsigned v)
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_popcount(v);
#else
    int n = 0;
    for (; v; v &= v - 1)
        n++;
    return n;
#endif
}

/* The position of the lowest set bit of v, which is not 0. */
static inline int lowest_bit(uint64_t v)
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctzll(v);
#else
    int b = 0;
    while (!(v & 1u)) {
        v >>= 1;
        b++;
    }
    return b;
#endif
}

static inline uint16_t load_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint32_t load_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* ---- argument helpers (METH_FASTCALL) --------------------------------------------------- */

static int arg_ll(PyObject *obj, long long *out)
{
    long long v = PyLong_AsLongLong(obj);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

static int arg_buffer(PyObject *obj, Py_buffer *view, int writable, const char *name)
{
    if (PyObject_GetBuffer(obj, view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous%s buffer", name,
                     writable ? " writable" : "");
        return -1;
    }
    return 0;
}

/* ---- EVT3 --------------------------------------------------------------------------------- */

/*
 * Upper bounds of the CD events and trigger edges that words can yield: one per ADDR_X, one
 * per set mask bit of VECT_12 / VECT_8, one per EXT_TRIGGER. The arrays are allocated this
 * size before decoding (and cut to what was decoded, which differs only where events were
 * dropped).
 */
static void evt3_bounds(const uint16_t *words, Py_ssize_t n, Py_ssize_t *n_events,
                        Py_ssize_t *n_triggers)
{
    /* Branch-free and vectorised by the compiler (a switch here costs as much as decoding),
     * with 16-bit counts per block so that the vectors stay 16 bits wide. */
    uint64_t events = 0, triggers = 0;
    for (Py_ssize_t block = 0; block < n; block += 2048) {
        Py_ssize_t end = n - block < 2048 ? n : block + 2048;
        uint16_t ev_count = 0, tr_count = 0;
        for (Py_ssize_t i = block; i < end; i++) {
            uint16_t w = words[i];
            uint16_t code = (uint16_t)(w >> 12);
            uint16_t bits = (uint16_t)(w & ((0xFFFu & -(unsigned)(code == VECT_12))
                                            | (0xFFu & -(unsigned)(code == VECT_8))));
            bits = (uint16_t)(bits - ((bits >> 1) & 0x5555u));
            bits = (uint16_t)((bits & 0x3333u) + ((bits >> 2) & 0x3333u));
            bits = (uint16_t)((bits + (bits >> 4)) & 0x0F0Fu);
            bits = (uint16_t)((bits + (bits >> 8)) & 0x1Fu);
            ev_count = (uint16_t)(ev_count + bits + (code == ADDR_X));
            tr_count = (uint16_t)(tr_count + (code == EXT_TRIGGER));
        }
        events += ev_count;  /* at most 12 * 2048, within 16 bits */
        triggers += tr_count;
    }
    *n_events = (Py_ssize_t)events;
    *n_triggers = (Py_ssize_t)triggers;
}

/* Decoder state and outputs while words are decoded. */
typedef struct {
    /* state carried across packets */
    unsigned y, pol;
    uint16_t base;
    int64_t low, high;
    /* time in ns of the current extended time (wrapping int64, like numpy) */
    int64_t now;
    /* configuration */
    long long width, height, limit, offset_us;
    int has_limit, rollover;
    /* outputs */
    event_t *ev;
    Py_ssize_t ev_cap, ne;
    trigger_t *tr;
    Py_ssize_t tr_cap, nt;
    /* how decode_span ended: 0 all words, 1 time limit, 2 unsupported word, 3 no room */
    int ended;
} evt3_ctx;

static inline int64_t time_ns(const evt3_ctx *c, int64_t high, int64_t low)
{
    /* Unsigned, so that it wraps in int64 like numpy's arithmetic. */
    return (int64_t)(((uint64_t)(high | low) + (uint64_t)c->offset_us) * NS_PER_US);
}

/* The high half of the clock after a TIME_HIGH with payload v. */
static inline int64_t next_high(int rollover, int64_t high, int64_t v)
{
    if (!rollover)
        return v << 12;
    int64_t wraps = (high >> 24) + (((high >> 12) & 0xFFF) - v > ROLLOVER_TOLERANCE);
    return (int64_t)((uint64_t)wraps << 24) | (v << 12);
}

static inline void put_event(event_t *e, int64_t t, uint64_t x, uint64_t y, uint64_t p)
{
    /* x, y, p and three zero bytes as one 8-byte store after t. */
    uint64_t rest = x | (y << 16) | (p << 32);
    memcpy(&e->t, &t, sizeof t);
    memcpy(&e->x, &rest, sizeof rest);
}

/*
 * Decode words[i:end) from the state in c, word after word as event_camera_codecs does;
 * return where decoding stopped (end, or the index of the word named by c->ended).
 */
static Py_ssize_t decode_words(evt3_ctx *c, const uint16_t *words, Py_ssize_t i,
                               Py_ssize_t end)
{
    unsigned y = c->y, pol = c->pol;
    uint16_t base = c->base;
    int64_t low = c->low, high = c->high, now = c->now;
    const uint64_t width = (uint64_t)c->width, height = (uint64_t)c->height;
    const int rollover = c->rollover;
    event_t *const ev = c->ev;
    const Py_ssize_t ev_cap = c->ev_cap;
    Py_ssize_t ne = c->ne, nt = c->nt;
    int ended = 0;

    while (i < end) {
        unsigned w = words[i];
        unsigned v = w & 0xFFFu;
        switch (w >> 12) {
        case ADDR_Y:
            y = v & 0x7FFu;
            break;
        case ADDR_X: {
            unsigned x = v & 0x7FFu;
            if (x < width && y < height) {
                if (ne >= ev_cap) {
                    ended = 3;
                    goto out;
                }
                put_event(&ev[ne++], now, x, y, v >> 11);
            }
            break;
        }
        case VECT_BASE_X:
            base = (uint16_t)(v & 0x7FFu);
            pol = v >> 11;
            break;
        case VECT_12:
        case VECT_8: {
            unsigned mask = (w >> 12) == VECT_12 ? v : (v & 0xFFu);
            if (y < height) {
                if (ne + popcount16(mask) > ev_cap) {
                    ended = 3;
                    goto out;
                }
                while (mask) {
                    int b = lowest_bit(mask);
                    mask &= mask - 1;
                    uint16_t x = (uint16_t)(base + b);
                    put_event(&ev[ne], now, x, y, pol);
                    ne += x < width;
                }
            }
            base = (uint16_t)(base + ((w >> 12) == VECT_12 ? 12 : 8));
            break;
        }
        case TIME_LOW:
            low = v;
            if (c->has_limit && (high | low) >= c->limit) {
                ended = 1;
                goto out;
            }
            now = time_ns(c, high, low);
            break;
        case TIME_HIGH:
            high = next_high(rollover, high, v);
            now = time_ns(c, high, low);
            break;
        case EXT_TRIGGER: {
            if (nt >= c->tr_cap) {
                ended = 3;
                goto out;
            }
            trigger_t *t = &c->tr[nt++];
            t->t = now;
            t->p = (uint8_t)(w & 1u);
            t->id = (uint8_t)((w >> 8) & 0xFu);
            memset(t->pad, 0, sizeof t->pad);
            break;
        }
        case CONTINUED_4:
        case OTHERS:
        case CONTINUED_12:
            break;
        default:
            ended = 2;
            goto out;
        }
        i++;
    }
out:
    c->y = y;
    c->pol = pol;
    c->base = base;
    c->low = low;
    c->high = high;
    c->now = now;
    c->ne = ne;
    c->nt = nt;
    c->ended = ended;
    return i;
}

/*
 * The streaming path decodes blocks of 63 words at a time while a block holds only ADDR_Y,
 * ADDR_X, TIME_LOW, TIME_HIGH, EXT_TRIGGER and quiet words (CONTINUED_4, OTHERS,
 * CONTINUED_12), as real recordings at moderate rates do. A word-by-word decoder pays for the
 * data's entropy: which word comes next is unpredictable, and mispredicted jumps cost more
 * than the decoding. Here one pass classifies the block into bit masks (16 words per SSE2
 * compare), and each event then finds its row and clock as the highest set bit of the
 * row's, TIME_LOW's and TIME_HIGH's masks below its own position: no branch depends on the
 * word order. Bit 0 of each mask stands for the value carried into the block, so a block is
 * the 63 words at positions 1..63. Anything else in a block (vectors, a TIME_HIGH that
 * wraps, an unsupported word) leaves that block to decode_words.
 */
#define BLOCK 63

typedef struct {
    uint64_t y, x, low, high, trigger, known;
} block_masks;

/* Masks of the word codes at positions 0..63 of words. */
static inline void classify(const uint16_t *words, block_masks *m)
{
#if defined(__SSE2__)
    __m128i codes[4];
    for (int k = 0; k < 4; k++) {
        __m128i a = _mm_srli_epi16(_mm_loadu_si128((const __m128i *)(words + 16 * k)), 12);
        __m128i b = _mm_srli_epi16(_mm_loadu_si128((const __m128i *)(words + 16 * k + 8)), 12);
        codes[k] = _mm_packus_epi16(a, b);
    }
#define BITS_OF(test) \
    ((uint64_t)(uint16_t)_mm_movemask_epi8(test(codes[0])) \
     | (uint64_t)(uint16_t)_mm_movemask_epi8(test(codes[1])) << 16 \
     | (uint64_t)(uint16_t)_mm_movemask_epi8(test(codes[2])) << 32 \
     | (uint64_t)(uint16_t)_mm_movemask_epi8(test(codes[3])) << 48)
#define IS_CODE(v, code) _mm_cmpeq_epi8(v, _mm_set1_epi8(code))
#define IS_Y(v) IS_CODE(v, ADDR_Y)
#define IS_X(v) IS_CODE(v, ADDR_X)
#define IS_LOW(v) IS_CODE(v, TIME_LOW)
#define IS_HIGH(v) IS_CODE(v, TIME_HIGH)
#define IS_TRIGGER(v) IS_CODE(v, EXT_TRIGGER)
#define IS_QUIET(v) _mm_or_si128(IS_CODE(v, CONTINUED_4), \
                                 _mm_cmpgt_epi8(v, _mm_set1_epi8(OTHERS - 1)))
    m->y = BITS_OF(IS_Y);
    m->x = BITS_OF(IS_X);
    m->low = BITS_OF(IS_LOW);
    m->high = BITS_OF(IS_HIGH);
    m->trigger = BITS_OF(IS_TRIGGER);
    m->known = m->y | m->x | m->low | m->high | m->trigger | BITS_OF(IS_QUIET);
#else
    uint64_t y = 0, x = 0, low = 0, high = 0, trigger = 0, quiet = 0;
    for (int k = 0; k < 64; k++) {
        unsigned code = words[k] >> 12;
        y |= (uint64_t)(code == ADDR_Y) << k;
        x |= (uint64_t)(code == ADDR_X) << k;
        low |= (uint64_t)(code == TIME_LOW) << k;
        high |= (uint64_t)(code == TIME_HIGH) << k;
        trigger |= (uint64_t)(code == EXT_TRIGGER) << k;
        quiet |= (uint64_t)(code == CONTINUED_4 || code >= OTHERS) << k;
    }
    m->y = y;
    m->x = x;
    m->low = low;
    m->high = high;
    m->trigger = trigger;
    m->known = y | x | low | high | trigger | quiet;
#endif
}

/* The position of the highest set bit of m, which is not 0. */
static inline int top_bit(uint64_t m)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    uint64_t r;
    __asm__("bsrq %1, %0" : "=r"(r) : "rm"(m));  /* 63 - clz, which compilers do not fold */
    return (int)r;
#elif defined(__GNUC__) || defined(__clang__)
    return 63 - __builtin_clzll(m);
#else
    int r = 0;
    while (m >>= 1)
        r++;
    return r;
#endif
}

#if defined(__GNUC__) || defined(__clang__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

/* The time (ns) of the word at position k of a block (decode_blocks): the last TIME_LOW and
 * TIME_HIGH at or before it, above the bits in `above`. steady: `above` holds the high half
 * already (a constant, so that the compiler writes the callers' loops once for each). */
static ALWAYS_INLINE uint64_t block_time(const block_masks *m, const uint16_t *lows,
                                         const uint16_t *highs, uint64_t above,
                                         uint64_t offset, int k, const int steady)
{
    const uint64_t below = ((uint64_t)2 << k) - 1;
    uint64_t us = above | (lows[top_bit((m->low | 1u) & below)] & 0xFFFu);
    if (!steady)
        us |= (uint64_t)(highs[top_bit((m->high | 1u) & below)] & 0xFFFu) << 12;
    return (us + offset) * NS_PER_US;
}

/* The events of a block (decode_blocks) from ne on; returns ne after them (steady: as
 * block_time's). */
static ALWAYS_INLINE Py_ssize_t block_events(
    const block_masks *m, const uint16_t *rows, const uint16_t *lows, const uint16_t *highs,
    uint64_t above, uint64_t offset, uint64_t width, uint64_t height, event_t *ev,
    Py_ssize_t ne, const int steady)
{
    const uint64_t row_bits = m->y | 1u;
    for (uint64_t b = m->x & ~(uint64_t)1; b; b &= b - 1) {
        int k = lowest_bit(b);
        uint64_t row = rows[top_bit(row_bits & (((uint64_t)2 << k) - 1))] & 0x7FFu;
        uint64_t t = block_time(m, lows, highs, above, offset, k, steady);
        uint64_t w = rows[k], x = w & 0x7FFu;
        /* Written always, counted only when inside the sensor: slot ne exists, since the
         * arrays hold one per ADDR_X and this ADDR_X has not been counted. */
        put_event(&ev[ne], (int64_t)t, x, row, (w >> 11) & 1u);
        ne += (x < width) & (row < height);
    }
    return ne;
}

/* Decode whole blocks from i as long as they qualify; return where it stopped. */
static Py_ssize_t decode_blocks(evt3_ctx *c, const uint16_t *words, Py_ssize_t i,
                                Py_ssize_t end)
{
    /* A row carried in above 11 bits (a state from elsewhere) does not fit the tables. */
    if (c->y > 0x7FFu)
        return i;
    uint64_t y = c->y, low = (uint64_t)c->low, high = ((uint64_t)c->high >> 12) & 0xFFFu;
    const uint64_t wraps = ((uint64_t)c->high >> 24) << 24;
    const uint64_t offset = (uint64_t)c->offset_us;
    const uint64_t width = (uint64_t)c->width, height = (uint64_t)c->height;
    event_t *const ev = c->ev;
    trigger_t *const tr = c->tr;
    Py_ssize_t ne = c->ne, nt = c->nt;
    /* The block's words at 1..63, behind the value carried in for the row, TIME_LOW and
     * TIME_HIGH: one table per field, so that a lookup needs no branch for position 0. */
    uint16_t rows[64], lows[64], highs[64];
    /* A block writes up to BLOCK events without checking: room for them, or word by word.
     * Triggers are written one per EXT_TRIGGER word, for which callers make room. */
    while (end - i >= BLOCK && c->ev_cap - ne >= BLOCK) {
        memcpy(rows + 1, words + i, BLOCK * sizeof *words);
        rows[0] = 0;
        block_masks m;
        classify(rows, &m);
        if ((m.known | 1u) != ~(uint64_t)0)
            break;
        /* The TIME_HIGHs in order; one that wraps leaves the block to decode_words. */
        uint64_t last = high, wrap = 0, changed = 0;
        for (uint64_t b = m.high & ~(uint64_t)1; b; b &= b - 1) {
            uint64_t v = rows[lowest_bit(b)] & 0xFFFu;
            wrap |= (int64_t)(last - v) > ROLLOVER_TOLERANCE;
            changed |= v != high;
            last = v;
        }
        if (wrap)
            break;
        memcpy(lows, rows, sizeof rows);
        memcpy(highs, rows, sizeof rows);
        rows[0] = (uint16_t)y;
        lows[0] = (uint16_t)low;
        highs[0] = (uint16_t)high;
        /* Most blocks' TIME_HIGHs repeat the carried one (see decode_blocks_wide): their
         * events need no look-up of it. */
        if (changed)
            ne = block_events(&m, rows, lows, highs, wraps, offset, width, height, ev, ne, 0);
        else
            ne = block_events(&m, rows, lows, highs, wraps | high << 12, offset, width, height,
                              ev, ne, 1);
        for (uint64_t b = m.trigger & ~(uint64_t)1; b; b &= b - 1) {
            int k = lowest_bit(b);
            uint64_t t = block_time(&m, lows, highs, wraps, offset, k, 0);
            trigger_t *out = &tr[nt++];
            out->t = (int64_t)t;
            out->p = (uint8_t)(rows[k] & 1u);
            out->id = (uint8_t)((rows[k] >> 8) & 0xFu);
            memset(out->pad, 0, sizeof out->pad);
        }
        if (m.y & ~(uint64_t)1)
            y = rows[top_bit(m.y & ~(uint64_t)1)] & 0x7FFu;
        if (m.low & ~(uint64_t)1)
            low = lows[top_bit(m.low & ~(uint64_t)1)] & 0xFFFu;
        high = last;
        i += BLOCK;
    }
    c->y = (unsigned)y;
    c->low = (int64_t)low;
    c->high = (int64_t)(wraps | high << 12);
    c->now = time_ns(c, c->high, c->low);
    c->ne = ne;
    c->nt = nt;
    return i;
}

#if HAVE_X86_TARGETS
/*
 * The wide blocks: 32 words a step in one AVX-512 register of 16-bit lanes, for the same
 * words as the 63-word blocks. Each lane finds the last TIME_LOW and TIME_HIGH at or before
 * it as a running maximum of those words' lane numbers (bytes: five steps of a permute and a
 * max, both in one register), then takes their values by one permute each; lanes before a
 * block's first take the carried values. Its row is the word before it where every ADDR_X
 * of the block follows its ADDR_Y, as in real recordings without vectors; otherwise the row
 * takes a running maximum of its own. A block whose TIME_HIGHs all repeat the carried one
 * (most blocks: sensors repeat TIME_HIGH far more often than it changes) keeps the carried
 * high half and runs the maximum for TIME_LOW alone. The events inside the sensor are
 * compressed to the front and written eight records per two stores. The carried values
 * meet a block only at that last step, so consecutive blocks overlap in the pipeline.
 */
#define WIDE 32
#define WIDE_TARGET \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi,avx512vbmi2,popcnt")))

static int use_wide;  /* set at import where the CPU has the instructions */

/* The wide blocks' lane tables, filled at import (wide_tables). back_from[s]: byte k takes
 * byte k - 2^s of its 32-byte half (itself where there is none, which leaves the running
 * maximum as it is); previous_from:
 * 16-bit lane k takes lane k - 1; lane_from: byte k holds k % 32. */
static uint8_t back_from[5][64], lane_from[64];
static uint16_t previous_from[WIDE];

static void wide_tables(void)
{
    for (int s = 0; s < 5; s++)
        for (int k = 0; k < 64; k++)
            back_from[s][k] = (uint8_t)((k % 32) >= (1 << s) ? k - (1 << s) : k);
    for (int k = 0; k < 64; k++)
        lane_from[k] = (uint8_t)(k % 32);
    for (int k = 0; k < WIDE; k++)
        previous_from[k] = (uint16_t)(k ? k - 1 : 0);
}

static int wide_cpu(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
           && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")
           && __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vbmi2");
}

/* Lane 31 of v. */
WIDE_TARGET static inline uint16_t last_lane(__m512i v)
{
    return (uint16_t)_mm_extract_epi16(_mm512_extracti32x4_epi32(v, 3), 7);
}

/* Write eight events: their x with polarity (bit 11), row, and the two 12-bit halves of
 * their clock as 16-bit lanes; `above` (ns) is added to the time. */
WIDE_TARGET static inline void put_events8(event_t *out, __m128i xp, __m128i row, __m128i low,
                                           __m128i high, __m512i above)
{
    const __m512i first = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0);
    const __m512i second = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4);
    const __m512i x64 = _mm512_cvtepu16_epi64(xp);
    const __m512i us = _mm512_or_si512(_mm512_slli_epi64(_mm512_cvtepu16_epi64(high), 12),
                                       _mm512_cvtepu16_epi64(low));
    const __m512i rest = _mm512_or_si512(
        _mm512_or_si512(_mm512_and_si512(x64, _mm512_set1_epi64(0x7FF)),
                        _mm512_slli_epi64(_mm512_cvtepu16_epi64(row), 16)),
        _mm512_slli_epi64(_mm512_srli_epi64(x64, 11), 32));
    __m512i t = _mm512_add_epi64(_mm512_mul_epu32(us, _mm512_set1_epi64(NS_PER_US)), above);
    __m512i a = _mm512_permutex2var_epi64(t, first, rest);
    __m512i b = _mm512_permutex2var_epi64(t, second, rest);
    _mm512_storeu_si512((void *)out, a);
    _mm512_storeu_si512((void *)(out + 4), b);
}

/* Byte k < 32: the largest lane j <= k whose bit is set in mask (0 where there is none): a
 * running maximum of their lane numbers, five steps of a permute and a max. */
WIDE_TARGET static inline __m256i last_set(uint32_t mask, __m512i lane_bytes,
                                           const __m512i *back)
{
    __m256i at = _mm256_maskz_mov_epi8(mask, _mm512_castsi512_si256(lane_bytes));
    for (int s = 0; s < 5; s++)
        at = _mm256_max_epu8(at, _mm256_permutexvar_epi8(_mm512_castsi512_si256(back[s]), at));
    return at;
}

WIDE_TARGET static Py_ssize_t decode_blocks_wide(evt3_ctx *c, const uint16_t *words,
                                                 Py_ssize_t i, Py_ssize_t end)
{
    if (end - i < WIDE || c->ev_cap - c->ne < WIDE)
        return i;  /* no whole block, or no room for one */
    if (c->low < 0 || c->low > 0xFFF)
        return i;  /* a state from elsewhere: its clock does not fit the lanes */
    uint16_t y = (uint16_t)c->y, low = (uint16_t)c->low;
    uint16_t high = (uint16_t)(((uint64_t)c->high >> 12) & 0xFFFu);
    /* Microseconds above the 24-bit clock, and the offset: fixed while no TIME_HIGH wraps. */
    const uint64_t above = ((uint64_t)c->high & ~(uint64_t)0xFFFFFF) + (uint64_t)c->offset_us;
    const __m512i width = _mm512_set1_epi16((short)(c->width > 0xFFFF ? 0xFFFF : c->width));
    const int every_row = c->height > 0xFFFF;
    const __m512i height = _mm512_set1_epi16((short)(every_row ? 0 : c->height));
    const __m512i m11 = _mm512_set1_epi16(0x7FF), m12 = _mm512_set1_epi16(0xFFF);
    const __m512i above_ns = _mm512_set1_epi64((long long)(above * NS_PER_US));
    event_t *const ev = c->ev;
    trigger_t *const tr = c->tr;
    Py_ssize_t ne = c->ne, nt = c->nt;
    /* The lane tables (see back_from). */
    __m512i back[5];
    for (int s = 0; s < 5; s++)
        back[s] = _mm512_loadu_si512((const void *)back_from[s]);
    const __m512i previous = _mm512_loadu_si512((const void *)previous_from);
    const __m512i lane_bytes = _mm512_loadu_si512((const void *)lane_from);
    while (end - i >= WIDE && c->ev_cap - ne >= WIDE) {
        const __m512i w = _mm512_loadu_si512((const void *)(words + i));
        const __m512i code = _mm512_srli_epi16(w, 12);
        const uint32_t is_y = _mm512_cmpeq_epi16_mask(code, _mm512_set1_epi16(ADDR_Y));
        const uint32_t is_x = _mm512_cmpeq_epi16_mask(code, _mm512_set1_epi16(ADDR_X));
        const uint32_t is_low = _mm512_cmpeq_epi16_mask(code, _mm512_set1_epi16(TIME_LOW));
        const uint32_t is_high = _mm512_cmpeq_epi16_mask(code, _mm512_set1_epi16(TIME_HIGH));
        const uint32_t is_trigger = _mm512_cmpeq_epi16_mask(code,
                                                             _mm512_set1_epi16(EXT_TRIGGER));
        const uint32_t quiet = _mm512_cmpeq_epi16_mask(code, _mm512_set1_epi16(CONTINUED_4))
                               | _mm512_cmpge_epu16_mask(code, _mm512_set1_epi16(OTHERS));
        if ((is_y | is_x | is_low | is_high | is_trigger | quiet) != 0xFFFFFFFFu)
            break;
        const __m512i v12 = _mm512_and_si512(w, m12);
        const uint32_t has_lo = is_low ? (uint32_t)-(is_low & -is_low) : 0;
        const __m512i w11 = _mm512_and_si512(w, m11);
        __m512i row;
        if (!(is_x & ~(is_y << 1 | 1u))) {
            /* Every event's row is the word before it (or the carried row): one step. */
            row = _mm512_mask_permutexvar_epi16(_mm512_set1_epi16((short)y), ~1u, previous, w11);
        } else {
            const uint32_t has_row = is_y ? (uint32_t)-(is_y & -is_y) : 0;
            row = _mm512_mask_mov_epi16(
                _mm512_set1_epi16((short)y), has_row,
                _mm512_permutexvar_epi16(_mm512_cvtepu8_epi16(last_set(is_y, lane_bytes, back)),
                                         w11));
        }
        const __m512i high_in = _mm512_set1_epi16((short)high);
        __m512i lo, hi;
        const int steady = !_mm512_mask_cmpneq_epi16_mask(is_high, v12, high_in);
        if (steady) {
            /* Its TIME_HIGHs, if any, repeat the carried one (97 to 99% of the blocks of the
             * real recordings in test/data): the high half is the carried one throughout. */
            lo = _mm512_permutexvar_epi16(_mm512_cvtepu8_epi16(last_set(is_low, lane_bytes, back)),
                                          v12);
            hi = high_in;
        } else {
            /* Index of the last TIME_LOW / TIME_HIGH (bytes 0..31 / 32..63) at or before
             * each lane: a running maximum of the lane numbers of those words. */
            const uint64_t both = (uint64_t)is_low | (uint64_t)is_high << 32;
            __m512i at = _mm512_maskz_mov_epi8(both, lane_bytes);
            for (int s = 0; s < 5; s++)
                at = _mm512_max_epu8(at, _mm512_permutexvar_epi8(back[s], at));
            const uint32_t has_hi = (uint32_t)-(is_high & -is_high);
            lo = _mm512_permutexvar_epi16(_mm512_cvtepu8_epi16(_mm512_castsi512_si256(at)), v12);
            hi = _mm512_mask_mov_epi16(
                high_in, has_hi,
                _mm512_permutexvar_epi16(_mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(at, 1)),
                                         v12));
            /* A TIME_HIGH more than the tolerance below the one before it wraps: word by word. */
            __m512i before = _mm512_mask_permutexvar_epi16(high_in, ~1u, previous, hi);
            if (_mm512_mask_cmpgt_epi16_mask(is_high, _mm512_sub_epi16(before, v12),
                                             _mm512_set1_epi16(ROLLOVER_TOLERANCE)))
                break;
        }
        lo = _mm512_mask_mov_epi16(_mm512_set1_epi16((short)low), has_lo, lo);
        uint32_t keep = is_x & _mm512_cmplt_epu16_mask(_mm512_and_si512(w, m11), width);
        if (!every_row)
            keep &= _mm512_cmplt_epu16_mask(row, height);
        const int n = __builtin_popcount(keep);
        const __m512i xp = _mm512_maskz_compress_epi16(keep, v12);
        const __m512i ys = _mm512_maskz_compress_epi16(keep, row);
        const __m512i los = _mm512_maskz_compress_epi16(keep, lo);
        const __m512i his = steady ? high_in : _mm512_maskz_compress_epi16(keep, hi);
        /* Eight records a group (the lane group must be a constant), whole groups: the loop
         * leaves room for WIDE records, and those past n are written again or never counted.
         * The first two groups unconditionally, since how many events a block holds (about
         * ten in real recordings) is a branch no predictor learns. */
#define EVENTS_GROUP(g)                                                                  \
        put_events8(ev + ne + 8 * (g), _mm512_extracti32x4_epi32(xp, g),                   \
                    _mm512_extracti32x4_epi32(ys, g), _mm512_extracti32x4_epi32(los, g),   \
                    _mm512_extracti32x4_epi32(his, g), above_ns)
        EVENTS_GROUP(0);
        EVENTS_GROUP(1);
        if (n > 16) {
            EVENTS_GROUP(2);
            EVENTS_GROUP(3);
        }
#undef EVENTS_GROUP
        ne += n;
        if (is_trigger) {
            uint16_t lows[WIDE], highs[WIDE];
            _mm512_storeu_si512((void *)lows, lo);
            _mm512_storeu_si512((void *)highs, hi);
            for (uint32_t b = is_trigger; b; b &= b - 1) {
                const int k = lowest_bit(b);
                trigger_t *out = &tr[nt++];
                out->t = (int64_t)((above + ((uint64_t)highs[k] << 12 | lows[k])) * NS_PER_US);
                out->p = (uint8_t)(words[i + k] & 1u);
                out->id = (uint8_t)((words[i + k] >> 8) & 0xFu);
                memset(out->pad, 0, sizeof out->pad);
            }
        }
        if (is_y)
            y = (uint16_t)(words[i + 31 - __builtin_clz(is_y)] & 0x7FFu);
        low = last_lane(lo);
        high = last_lane(hi);
        i += WIDE;
    }
    c->y = y;
    c->low = low;
    c->high = (int64_t)(((uint64_t)c->high & ~(uint64_t)0xFFFFFF) | (uint64_t)high << 12);
    c->now = time_ns(c, c->high, c->low);
    c->ne = ne;
    c->nt = nt;
    return i;
}
#endif

/*
 * Decode words[i:end) from the state in c; return where decoding stopped (end, or the index
 * of the word named by c->ended). Blocks while they qualify, otherwise word by word up to
 * the next block; the blocks are off under a time limit (decode-until is not the streaming
 * path) and for libcaer_cmp's clock, which never wraps.
 */
static Py_ssize_t decode_span(evt3_ctx *c, const uint16_t *words, Py_ssize_t i, Py_ssize_t end)
{
    const int blocks = !c->has_limit && c->rollover;
    Py_ssize_t step = BLOCK;
#if HAVE_X86_TARGETS
    if (use_wide)
        step = WIDE;
#endif
    while (i < end) {
        if (blocks) {
#if HAVE_X86_TARGETS
            if (use_wide)
                i = decode_blocks_wide(c, words, i, end);
            else
#endif
                i = decode_blocks(c, words, i, end);
            if (i >= end)
                break;
        }
        i = decode_words(c, words, i, end - i > step ? i + step : end);
        if (c->ended)
            break;
    }
    return i;
}

/* Set once by setup(): numpy.empty and the record dtypes; by setup_evt3(): the state class
 * and the state of a stream not seen yet; at import: the first element of a stream's key. */
static PyObject *np_empty, *event_dtype, *trigger_dtype, *int64_dtype, *state_type, *no_state;
static PyObject *evt3_name;

/* Hold args[0..count) in slots (a new reference each, the old ones let go). */
static void hold(PyObject **const *slots, PyObject *const *args, int count)
{
    for (int k = 0; k < count; k++) {
        Py_INCREF(args[k]);
        Py_XSETREF(*slots[k], args[k]);
    }
}

PyDoc_STRVAR(setup_doc,
"setup(empty, event_dtype, trigger_dtype, int64_dtype)\n\n"
"Give the kernels numpy.empty and the dtypes of the arrays they allocate and fill\n"
"(kernels.py calls this once at import).");

static PyObject *setup(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "setup(empty, event_dtype, trigger_dtype, int64_dtype)");
        return NULL;
    }
    PyObject **const slots[4] = {&np_empty, &event_dtype, &trigger_dtype, &int64_dtype};
    hold(slots, args, 4);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(setup_evt3_doc,
"setup_evt3(state_type, no_state)\n\n"
"Give the kernels the tuple subclass of the EVT3 state they return and the state of a new\n"
"stream (evt3.py calls this once at import).");

static PyObject *setup_evt3(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2 || !PyType_Check(args[0])
        || !PyType_IsSubtype((PyTypeObject *)args[0], &PyTuple_Type)
        || !PyObject_TypeCheck(args[1], (PyTypeObject *)args[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "setup_evt3(state_type, no_state) with a tuple subclass as state_type");
        return NULL;
    }
    PyObject **const slots[2] = {&state_type, &no_state};
    hold(slots, args, 2);
    Py_RETURN_NONE;
}

/* numpy.empty(n, dtype) and its writable buffer; NULL with an exception on failure. */
static PyObject *new_array(PyObject *dtype, Py_ssize_t n, Py_buffer *view)
{
    if (np_empty == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "gep_ros.wire._kernels: setup() was not called");
        return NULL;
    }
    PyObject *size = PyLong_FromSsize_t(n);
    if (size == NULL)
        return NULL;
    PyObject *call[2] = {size, dtype};
    PyObject *array = PyObject_Vectorcall(np_empty, call, 2, NULL);
    Py_DECREF(size);
    if (array == NULL)
        return NULL;
    if (PyObject_GetBuffer(array, view, PyBUF_WRITABLE) < 0) {
        Py_DECREF(array);
        return NULL;
    }
    return array;
}

/* array[:n] (a view), or the array itself when it is n long; steals the reference. */
static PyObject *cut(PyObject *array, Py_ssize_t n, Py_ssize_t size)
{
    if (array == NULL || n == size)
        return array;
    PyObject *view = PySequence_GetSlice(array, 0, n);
    Py_DECREF(array);
    return view;
}

PyDoc_STRVAR(evt3_decode_doc,
"evt3_decode(words, state, width, height, limit_us, rollover, time_offset_us, bounds)\n"
"    -> (bad, events, triggers, state, start, stop, first_us, marks)\n\n"
"Decode EVT3 words (a buffer of little-endian uint16) from `state` (an Evt3State: y,\n"
"time_low, time_high, polarity, base_x, valid) with the conventions of event_camera_codecs\n"
"(evt3.py), into new EVENT_DTYPE / TRIGGER_DTYPE arrays and a new state. `limit_us` (None:\n"
"no limit) stops before the first TIME_LOW after the first valid time whose extended time\n"
"reaches it; that TIME_LOW is applied to the returned clock but not consumed. With `bounds`\n"
"(int64 word offsets rising from 0 to the number of words; the state valid, no limit),\n"
"`marks` (int64, 3 per bound) holds for each bound the events and the triggers decoded\n"
"before it and the extended time in effect before its word.\n\n"
"`bad` is the index of the first unsupported word (the rest is then None), else -1;\n"
"`start` the first word decoded (the words before it only moved the clock), `stop` the\n"
"number of words consumed, `first_us` the extended time at `start` (None while invalid).");

/* The clock and row of an Evt3State into c; *valid its flag. -1 with an exception. */
static int state_into(PyObject *state, evt3_ctx *c, int *valid)
{
    if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) != 6) {
        PyErr_SetString(PyExc_TypeError, "state must be an Evt3State");
        return -1;
    }
    long long y, low, high, pol, base;
    if (arg_ll(PyTuple_GET_ITEM(state, 0), &y) < 0 || arg_ll(PyTuple_GET_ITEM(state, 1), &low) < 0
        || arg_ll(PyTuple_GET_ITEM(state, 2), &high) < 0
        || arg_ll(PyTuple_GET_ITEM(state, 3), &pol) < 0
        || arg_ll(PyTuple_GET_ITEM(state, 4), &base) < 0)
        return -1;
    if ((*valid = PyObject_IsTrue(PyTuple_GET_ITEM(state, 5))) < 0)
        return -1;
    c->y = (unsigned)y & 0xFFFFu;
    c->pol = (unsigned)pol & 1u;
    c->base = (uint16_t)base;
    c->low = low;
    c->high = high;
    return 0;
}

/* The Evt3State after decoding with c; NULL with an exception. The tuple subclass is filled
 * in place, as tuple.__new__ would fill it, without a tuple of arguments first. */
static PyObject *state_from(const evt3_ctx *c, int valid)
{
    PyObject *state = ((PyTypeObject *)state_type)->tp_alloc((PyTypeObject *)state_type, 6);
    if (state == NULL)
        return NULL;
    const long long fields[5] = {(long long)c->y, (long long)c->low, (long long)c->high,
                                 (long long)c->pol, (long long)c->base};
    for (int k = 0; k < 5; k++) {
        PyObject *value = PyLong_FromLongLong(fields[k]);
        if (value == NULL) {
            Py_DECREF(state);
            return NULL;
        }
        PyTuple_SET_ITEM(state, k, value);
    }
    PyTuple_SET_ITEM(state, 5, Py_NewRef(valid ? Py_True : Py_False));
    return state;
}

/* Above this many words a decode lets other Python threads run; below, the GIL's hand-over
 * would cost more than the decode. */
#define RELEASE_WORDS 16384

/*
 * Decode words[0:n) from the state in c (its outputs set): before the first valid time (a
 * TIME_HIGH, then a TIME_LOW) only the clock moves, then decode_span, or with bounds the
 * spans between them, writing the marks. *valid is updated; *start is the first word
 * decoded, *first_us the extended time there. Returns where decoding stopped, as c->ended
 * says. The caller holds the buffers: this releases the GIL for long inputs.
 */
static Py_ssize_t evt3_run(evt3_ctx *c, const uint16_t *words, Py_ssize_t n, int *valid,
                           Py_ssize_t *start, int64_t *first_us, const int64_t *bounds,
                           Py_ssize_t nbounds, int64_t *marks)
{
    Py_ssize_t i = 0, stop = n;
    if (!*valid) {
        int saw_high = 0;
        while (i < n) {
            unsigned w = words[i++];
            if (w >> 12 == TIME_LOW) {
                c->low = w & 0xFFFu;
                if (saw_high) {
                    *valid = 1;
                    break;
                }
            } else if (w >> 12 == TIME_HIGH) {
                c->high = next_high(c->rollover, c->high, w & 0xFFFu);
                saw_high = 1;
            }
        }
    }
    *start = *valid ? i : n;
    *first_us = c->high | c->low;
    c->now = time_ns(c, c->high, c->low);
    PyThreadState *saved = n > RELEASE_WORDS ? PyEval_SaveThread() : NULL;
    if (bounds != NULL) {
        for (Py_ssize_t k = 0; k < nbounds; k++) {
            marks[k] = c->ne;
            marks[nbounds + k] = c->nt;
            marks[2 * nbounds + k] = c->high | c->low;
            if (k + 1 < nbounds) {
                stop = decode_span(c, words, bounds[k], bounds[k + 1]);
                if (c->ended)
                    break;
            }
        }
    } else {
        stop = decode_span(c, words, *start, n);
    }
    if (saved != NULL)
        PyEval_RestoreThread(saved);
    return stop;
}

static PyObject *evt3_decode(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "evt3_decode takes 8 arguments");
        return NULL;
    }
    if (state_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "gep_ros.wire._kernels: setup_evt3() was not called");
        return NULL;
    }
    evt3_ctx c;
    int valid;
    long long width, height, limit = 0, rollover, offset_us;
    if (state_into(args[1], &c, &valid) < 0
        || arg_ll(args[2], &width) < 0 || arg_ll(args[3], &height) < 0
        || (args[4] != Py_None && arg_ll(args[4], &limit) < 0)
        || arg_ll(args[5], &rollover) < 0 || arg_ll(args[6], &offset_us) < 0)
        return NULL;
    if (width < 0 || height < 0) {
        PyErr_SetString(PyExc_ValueError, "width and height must not be negative");
        return NULL;
    }
    const int has_bounds = args[7] != Py_None;

    Py_buffer wb, eb, tb, bb, mb;
    PyObject *events = NULL, *triggers = NULL, *marks_array = NULL, *result = NULL;
    if (arg_buffer(args[0], &wb, 0, "words") < 0)
        return NULL;
    const uint16_t *words = (const uint16_t *)wb.buf;
    const Py_ssize_t n = wb.len / 2;
    Py_ssize_t nbounds = 0;
    const int64_t *bounds = NULL;
    int64_t *marks = NULL;
    if (has_bounds) {
        if (arg_buffer(args[7], &bb, 0, "bounds") < 0)
            goto release_w;
        nbounds = bb.len / 8;
        bounds = (const int64_t *)bb.buf;
        int rising = valid && args[4] == Py_None && nbounds > 0 && bounds[0] == 0
                     && bounds[nbounds - 1] == n;
        for (Py_ssize_t k = 1; rising && k < nbounds; k++)
            rising = bounds[k] >= bounds[k - 1];
        if (!rising) {
            PyErr_SetString(PyExc_ValueError, "bounds must rise from 0 to the number of words, "
                            "from a valid state without a limit");
            goto release_b;
        }
        marks_array = new_array(int64_dtype, 3 * nbounds, &mb);
        if (marks_array == NULL)
            goto release_b;
        marks = (int64_t *)mb.buf;
    }
    Py_ssize_t ev_bound, tr_bound;
    evt3_bounds(words, n, &ev_bound, &tr_bound);
    ev_bound += BLOCK;  /* room for a block to the end */
    events = new_array(event_dtype, ev_bound, &eb);
    if (events == NULL)
        goto release_m;
    triggers = new_array(trigger_dtype, tr_bound, &tb);
    if (triggers == NULL)
        goto release_e;

    c.width = width;
    c.height = height;
    c.limit = limit;
    c.offset_us = offset_us;
    c.has_limit = args[4] != Py_None;
    c.rollover = rollover != 0;
    c.ev = (event_t *)eb.buf;
    c.ev_cap = ev_bound;
    c.tr = (trigger_t *)tb.buf;
    c.tr_cap = tr_bound;
    c.ne = c.nt = 0;
    c.ended = 0;
    Py_ssize_t start;
    int64_t first_us;
    /* ended 0: stop == n; 1: stop is the TIME_LOW that reached the limit; 2: the bad word. */
    const Py_ssize_t stop = evt3_run(&c, words, n, &valid, &start, &first_us, bounds, nbounds,
                                     marks);
    if (c.ended == 3) {
        PyErr_SetString(PyExc_SystemError, "evt3_decode: more events than evt3_bounds");
        goto release_t;
    }
    if (c.ended == 2) {
        result = Py_BuildValue("(nOOOOOOO)", stop, Py_None, Py_None, Py_None, Py_None,
                               Py_None, Py_None, Py_None);
        goto release_t;
    }
    {
        PyObject *new_state = state_from(&c, valid);
        if (new_state == NULL)
            goto release_t;
        PyObject *first = Py_None;
        if (valid)
            first = PyLong_FromLongLong(first_us);
        else
            Py_INCREF(first);
        PyBuffer_Release(&tb);
        PyBuffer_Release(&eb);
        events = cut(events, c.ne, ev_bound);
        triggers = cut(triggers, c.nt, tr_bound);
        if (first == NULL || events == NULL || triggers == NULL) {
            Py_XDECREF(first);
            Py_DECREF(new_state);
            goto release_m2;
        }
        result = Py_BuildValue("(nNNNnnNO)", (Py_ssize_t)-1, events, triggers, new_state,
                               start, stop, first, has_bounds ? marks_array : Py_None);
        events = triggers = NULL;
        goto release_m2;
    }

release_t:
    PyBuffer_Release(&tb);
    Py_XDECREF(triggers);
    triggers = NULL;
release_e:
    PyBuffer_Release(&eb);
    Py_XDECREF(events);
    events = NULL;
release_m2:
    Py_XDECREF(events);
    Py_XDECREF(triggers);
release_m:
    if (has_bounds) {
        PyBuffer_Release(&mb);
        Py_DECREF(marks_array);
    }
release_b:
    if (has_bounds)
        PyBuffer_Release(&bb);
release_w:
    PyBuffer_Release(&wb);
    return result;
}

/* ---- event_camera_msgs/EventPacket ------------------------------------------------------- */

/* Where the fields of a little-endian EventPacket lie (event_packet.py's fast path). */
typedef struct {
    int32_t sec;
    uint32_t nanosec, height, width;
    uint64_t seq, time_base;
    Py_ssize_t id_start, id_len, encoding_offset, encoding_start, encoding_len;
    int is_bigendian;
    Py_ssize_t events_offset, events_len;
} packet_fields;

static inline uint64_t load_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/*
 * The std_msgs/Header that starts a little-endian message: its frame id is at byte 16,
 * *id_len bytes long (without its NUL); returns the 4-aligned position after it, or -1 for
 * another layout (big-endian CDR, an overrun, no NUL).
 */
static Py_ssize_t parse_header(const uint8_t *b, Py_ssize_t size, Py_ssize_t *id_len)
{
    if (size < 16 || b[0] != 0 || b[1] != 1)
        return -1;
    Py_ssize_t n = load_u32(b + 12);
    Py_ssize_t pos = 16 + n;
    if (n == 0 || pos > size || b[pos - 1] != 0)
        return -1;
    *id_len = n - 1;
    return pos + (4 - pos % 4) % 4;  /* alignment counts from byte 4: the same residue mod 4 */
}

/*
 * The fixed layout of a serialized EventPacket as event_packet.decode_event_packet reads it:
 * 0 when every length fits and the strings end in NUL, -1 for anything else (big-endian CDR,
 * overruns, trailing bytes), which the Python field reader then reads and names.
 */
static int parse_event_packet(const uint8_t *b, Py_ssize_t size, packet_fields *f)
{
    Py_ssize_t pos = parse_header(b, size, &f->id_len), n;
    if (pos < 0)
        return -1;
    f->sec = (int32_t)load_u32(b + 4);
    f->nanosec = load_u32(b + 8);
    f->id_start = 16;
    /* height, width, [4 bytes of padding,] seq, time_base, the encoding's length */
    Py_ssize_t pad = pos % 8 == 4 ? 0 : 4;
    f->encoding_offset = pos + 8 + pad + 16;
    if (f->encoding_offset + 4 > size)
        return -1;
    f->height = load_u32(b + pos);
    f->width = load_u32(b + pos + 4);
    f->seq = load_u64(b + pos + 8 + pad);
    f->time_base = load_u64(b + pos + 16 + pad);
    n = load_u32(b + f->encoding_offset);
    pos = f->encoding_offset + 4 + n;  /* end of the encoding, where is_bigendian is */
    if (n == 0 || pos >= size || b[pos - 1] != 0)
        return -1;
    f->encoding_start = f->encoding_offset + 4;
    f->encoding_len = n - 1;
    f->is_bigendian = b[pos] != 0;
    pos += 1;
    pos += (4 - pos % 4) % 4;
    if (pos + 4 > size)
        return -1;
    n = load_u32(b + pos);
    pos += 4;
    if (n > size - pos || size - pos - n > 3)
        return -1;
    f->events_offset = pos;
    f->events_len = n;
    return 0;
}

/* A new str of n bytes of UTF-8 in *out: 0; -1 (no exception) for bytes that are not UTF-8,
 * which the field readers name; -2 with an exception for anything else. */
static int utf8(const uint8_t *bytes, Py_ssize_t n, PyObject **out)
{
    *out = PyUnicode_DecodeUTF8((const char *)bytes, n, "strict");
    if (*out != NULL)
        return 0;
    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
        return -2;
    PyErr_Clear();
    return -1;
}

/* The two strings of a parsed packet; 0 on success, -1 (no exception) for bad UTF-8. */
static int packet_strings(const uint8_t *b, const packet_fields *f, PyObject **frame_id,
                          PyObject **encoding)
{
    int status = utf8(b + f->id_start, f->id_len, frame_id);
    if (status == 0 && (status = utf8(b + f->encoding_start, f->encoding_len, encoding)) != 0)
        Py_CLEAR(*frame_id);
    return status;
}

PyDoc_STRVAR(event_packet_fields_doc,
"event_packet_fields(data) -> None or (sec, nanosec, frame_id, height, width, seq,\n"
"    time_base, encoding, is_bigendian, encoding_offset, events_offset, events_len)\n\n"
"The fields of a serialized little-endian EventPacket (CDR header included) when its\n"
"layout is plain: every length fits, the strings end in NUL and are UTF-8, at most 3\n"
"bytes follow the payload. None otherwise: the field reader then reads it and names the\n"
"problem.");

static PyObject *event_packet_fields(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "event_packet_fields takes 1 argument");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        Py_RETURN_NONE;  /* not a contiguous buffer: the field reader says what it is */
    }
    const uint8_t *b = (const uint8_t *)view.buf;
    packet_fields f;
    PyObject *frame_id, *encoding, *result = NULL;
    int status = parse_event_packet(b, view.len, &f);
    if (status == 0)
        status = packet_strings(b, &f, &frame_id, &encoding);
    if (status == 0)
        result = Py_BuildValue("(iINIIKKNOnnn)", (int)f.sec, (unsigned int)f.nanosec,
                               frame_id, (unsigned int)f.height, (unsigned int)f.width,
                               (unsigned long long)f.seq, (unsigned long long)f.time_base,
                               encoding, f.is_bigendian ? Py_True : Py_False,
                               f.encoding_offset, f.events_offset, f.events_len);
    PyBuffer_Release(&view);
    if (status == -1)
        Py_RETURN_NONE;
    return result;
}

/*
 * Serialized evt3 packets, the streaming path: one call parses the message, decodes its
 * words from the stream's state, stores the new state and returns the DecodedPacket, built
 * here (object.__new__ and the fields set, as the dataclass's __init__ would set them).
 *
 * The event arrays are views into chunks of a pool that the decoder keeps (a list:
 * [events chunk, events used, triggers chunk, triggers used, an empty read-only triggers
 * array, spare events chunks, spare triggers chunks]); a chunk is replaced when it has too
 * little room left, by a spare that no view holds any more or else a new one, and lives
 * on while a packet's view of it does. A slice per packet instead of two numpy.empty, and
 * memory that stays mapped and warm.
 */
#define POOL_RECORDS 65536
#define POOL_SPARES 3

/*
 * One of the pool's chunks (slot 0: events, 2: triggers) as a call uses it: its buffer, held
 * across the packets of the call, and the records used, written back to pool[slot + 1]
 * whenever the chunk changes and at the end of the call (pool_done), before Python runs
 * again: two buffer requests and an int a call instead of a packet.
 */
typedef struct {
    Py_ssize_t slot;
    PyObject *dtype;
    Py_buffer view;
    int held;
    Py_ssize_t used;
} pool_cursor;

/* Write the cursor's count back to the pool and let go of its buffer; -1 with an exception
 * (the buffer is let go of all the same). */
static int pool_done(PyObject *pool, pool_cursor *cur)
{
    if (!cur->held)
        return 0;
    cur->held = 0;
    PyBuffer_Release(&cur->view);
    PyObject *count = PyLong_FromSsize_t(cur->used);
    if (count == NULL)
        return -1;
    PyList_SetItem(pool, cur->slot + 1, count);
    return 0;
}

/* Room for `need` records from cur->used on in the cursor's chunk (cur->view); a new chunk
 * when there is less. -1 with an exception. */
static int pool_room(PyObject *pool, pool_cursor *cur, Py_ssize_t need)
{
    if (cur->held && cur->view.len / (Py_ssize_t)sizeof(event_t) - cur->used >= need)
        return 0;
    if (pool_done(pool, cur) < 0)
        return -1;
    const Py_ssize_t slot = cur->slot;
    Py_buffer *view = &cur->view;
    Py_ssize_t at = PyLong_AsSsize_t(PyList_GET_ITEM(pool, slot + 1));
    if (at == -1 && PyErr_Occurred())
        return -1;
    if (PyObject_GetBuffer(PyList_GET_ITEM(pool, slot), view, PyBUF_WRITABLE) < 0)
        return -1;
    const Py_ssize_t size = view->len / (Py_ssize_t)sizeof(event_t);
    if (at < 0 || at > size) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "pool: a count outside its chunk");
        return -1;
    }
    if (size - at >= need) {
        cur->held = 1;
        cur->used = at;
        return 0;
    }
    PyBuffer_Release(view);
    /* A chunk that no packet's view holds any more (only the pool does) is written again:
     * its memory is mapped and warm. The full chunk goes to the spares, where it waits for
     * its views to go; the oldest spare leaves when there are more than POOL_SPARES. */
    PyObject *spares = PyList_GET_ITEM(pool, 5 + slot / 2);  /* 5: events, 6: triggers */
    PyObject *chunk = PyList_GET_ITEM(pool, slot);
    if (PyList_Append(spares, chunk) < 0)
        return -1;
    if (PyList_GET_SIZE(spares) > POOL_SPARES && PySequence_DelItem(spares, 0) < 0)
        return -1;
    chunk = NULL;
    for (Py_ssize_t k = PyList_GET_SIZE(spares) - 1; k >= 0; k--) {
        PyObject *spare = PyList_GET_ITEM(spares, k);
        if (Py_REFCNT(spare) != 1)
            continue;
        if (PyObject_GetBuffer(spare, view, PyBUF_WRITABLE) < 0)
            return -1;
        if (view->len / (Py_ssize_t)sizeof(event_t) >= need) {
            chunk = spare;
            Py_INCREF(chunk);
            if (PySequence_DelItem(spares, k) < 0) {
                PyBuffer_Release(view);
                Py_DECREF(chunk);
                return -1;
            }
            break;
        }
        PyBuffer_Release(view);
    }
    if (chunk == NULL) {
        /* Chunks grow from a quarter of POOL_RECORDS, so that a decoder that sees a few
         * packets allocates little. */
        Py_ssize_t grown = 4 * size < POOL_RECORDS / 4 ? POOL_RECORDS / 4
                           : 4 * size < POOL_RECORDS ? 4 * size : POOL_RECORDS;
        chunk = new_array(cur->dtype, need > grown ? need : grown, view);
        if (chunk == NULL)
            return -1;
    }
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL) {
        PyBuffer_Release(view);
        Py_DECREF(chunk);
        return -1;
    }
    PyList_SetItem(pool, slot, chunk);
    PyList_SetItem(pool, slot + 1, zero);
    cur->held = 1;
    cur->used = 0;
    return 0;
}

/* The cursor's chunk[used:used + n] (a view), the records then used; NULL with an exception. */
static PyObject *pool_take(PyObject *pool, pool_cursor *cur, Py_ssize_t n)
{
    PyObject *view = PySequence_GetSlice(PyList_GET_ITEM(pool, cur->slot), cur->used,
                                         cur->used + n);
    if (view != NULL)
        cur->used += n;
    return view;
}

/* The fields of DecodedPacket and Header in the order set below (event_packet.py checks). */
static const char *const PACKET_FIELDS[] = {
    "header", "height", "width", "seq", "time_base", "encoding", "events", "triggers",
    "first_sensor_time_ns", "consumed", "next_time_ns", "done"};
static const char *const HEADER_FIELDS[] = {"stamp_ns", "frame_id"};
#define N_PACKET_FIELDS 12
#define N_HEADER_FIELDS 2
static PyObject *packet_type, *header_type;
static PyObject *packet_names[N_PACKET_FIELDS], *header_names[N_HEADER_FIELDS];
/* Where each field's slot lies in an instance, or -1 (then it is set by name). */
static Py_ssize_t packet_offsets[N_PACKET_FIELDS], header_offsets[N_HEADER_FIELDS];

#ifndef Py_T_OBJECT_EX  /* the names before Python 3.12 */
#define Py_T_OBJECT_EX T_OBJECT_EX
#define Py_READONLY READONLY
#endif

/* The offsets of the __slots__ fields names of type; -1 for a field that is not a plain
 * writable object slot of the type's own layout. 0, or -1 with an exception. */
static int slot_offsets(PyObject *type, PyObject *const *names, Py_ssize_t *offsets,
                        int count)
{
    for (int k = 0; k < count; k++) {
        offsets[k] = -1;
        PyObject *descr = PyObject_GetAttr(type, names[k]);
        if (descr == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                return -1;
            PyErr_Clear();  /* an instance attribute: set by name */
            continue;
        }
        if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            const PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
            if (member->type == Py_T_OBJECT_EX && !(member->flags & Py_READONLY)
                && member->offset > 0
                && member->offset + (Py_ssize_t)sizeof(PyObject *)
                   <= ((PyTypeObject *)type)->tp_basicsize)
                offsets[k] = member->offset;
        }
        Py_DECREF(descr);
    }
    return 0;
}

/* An instance of type with its fields set to values (stolen, NULL allowed after a failure);
 * NULL with an exception. A field with an offset is stored into its slot, as its member
 * descriptor would store it; the instance is new, so the slot is empty. */
static PyObject *new_record(PyObject *type, PyObject *const *names, const Py_ssize_t *offsets,
                            PyObject **values, int count)
{
    PyObject *obj = NULL;
    for (int k = 0; k < count; k++)
        if (values[k] == NULL)
            goto out;
    PyObject *no_args = PyTuple_New(0);
    if (no_args == NULL)
        goto out;
    obj = ((PyTypeObject *)type)->tp_new((PyTypeObject *)type, no_args, NULL);
    Py_DECREF(no_args);
    for (int k = 0; obj != NULL && k < count; k++) {
        if (offsets[k] > 0) {
            PyObject **slot = (PyObject **)((char *)obj + offsets[k]);
            Py_XSETREF(*slot, values[k]);
            values[k] = NULL;  /* stolen by the slot */
        } else if (PyObject_GenericSetAttr(obj, names[k], values[k]) < 0)
            Py_CLEAR(obj);
    }
out:
    for (int k = 0; k < count; k++)
        Py_XDECREF(values[k]);
    return obj;
}

/* The state of the stream being decoded, kept in C between the packets of a batch and
 * stored in the states dict when the stream changes or the batch ends. */
typedef struct {
    int loaded, valid, decoded;  /* decoded: a packet moved the state since it was loaded */
    unsigned int width, height;
    evt3_ctx c;
} stream_state;

/* The key of a stream's state in the states dict: ('evt3', width, height), a new reference;
 * the last one made while the packets keep their geometry (a stream's do). */
static PyObject *last_key;

static PyObject *stream_key(unsigned int width, unsigned int height)
{
    if (last_key == NULL
        || PyLong_AsUnsignedLong(PyTuple_GET_ITEM(last_key, 1)) != width
        || PyLong_AsUnsignedLong(PyTuple_GET_ITEM(last_key, 2)) != height) {
        PyObject *key = Py_BuildValue("(OII)", evt3_name, width, height);
        if (key == NULL)
            return NULL;
        Py_XSETREF(last_key, key);
    }
    return Py_NewRef(last_key);
}

/* The last state stored and what it holds: a state found again in the states dict (the
 * same object, and tuples do not change) is taken from here instead of read again. */
static PyObject *last_state;
static evt3_ctx last_ctx;
static int last_valid;

/* Store s's state in states under its stream_key; 0, or -1 with an exception. */
static int stream_store(stream_state *s, PyObject *states)
{
    if (!s->loaded || !s->decoded)
        return 0;
    s->decoded = 0;
    PyObject *key = stream_key(s->width, s->height);
    PyObject *state = key != NULL ? state_from(&s->c, s->valid) : NULL;
    int stored = state != NULL ? PyDict_SetItem(states, key, state) : -1;
    if (stored == 0) {
        Py_INCREF(state);
        Py_XSETREF(last_state, state);
        last_ctx = s->c;
        last_valid = s->valid;
    }
    Py_XDECREF(key);
    Py_XDECREF(state);
    return stored;
}

/* Make s the state of the stream of that geometry; 0, or -1 with an exception. */
static int stream_load(stream_state *s, PyObject *states, unsigned int width,
                       unsigned int height)
{
    if (s->loaded && s->width == width && s->height == height)
        return 0;
    if (stream_store(s, states) < 0)
        return -1;
    s->loaded = 0;
    PyObject *key = stream_key(width, height);
    if (key == NULL)
        return -1;
    PyObject *state = PyDict_GetItemWithError(states, key);  /* borrowed */
    Py_DECREF(key);
    if (state == NULL && PyErr_Occurred())
        return -1;
    if (state != NULL && state == last_state) {
        s->c.y = last_ctx.y;
        s->c.pol = last_ctx.pol;
        s->c.base = last_ctx.base;
        s->c.low = last_ctx.low;
        s->c.high = last_ctx.high;
        s->valid = last_valid;
    } else if (state_into(state != NULL ? state : no_state, &s->c, &s->valid) < 0)
        return -1;
    s->loaded = 1;
    s->width = width;
    s->height = height;
    return 0;
}

/* The frame id, width and height of the last packet decoded, handed out again while the
 * next packets repeat them (a stream's do): each would otherwise be a new object a packet. */
static PyObject *last_frame_id, *last_width, *last_height;

/* The str of frame id bytes (UTF-8), the last one when they are the same; 0, -1 for bad
 * UTF-8 (no exception), -2 with an exception. */
static int frame_id_str(const uint8_t *bytes, Py_ssize_t n, PyObject **out)
{
    if (last_frame_id != NULL && PyUnicode_IS_ASCII(last_frame_id)
        && PyUnicode_GET_LENGTH(last_frame_id) == n
        && memcmp(PyUnicode_DATA(last_frame_id), bytes, (size_t)n) == 0) {
        Py_INCREF(last_frame_id);
        *out = last_frame_id;
        return 0;
    }
    int status = utf8(bytes, n, out);
    if (status == 0) {
        Py_INCREF(*out);
        Py_XSETREF(last_frame_id, *out);
    }
    return status;
}

/* A new reference to the int v, the cached one when it has that value. */
static PyObject *size_int(PyObject **cached, unsigned long v)
{
    if (*cached == NULL || PyLong_AsUnsignedLong(*cached) != v) {
        PyObject *obj = PyLong_FromUnsignedLong(v);
        if (obj == NULL)
            return NULL;
        Py_XSETREF(*cached, obj);
    }
    Py_INCREF(*cached);
    return *cached;
}

/*
 * One serialized evt3 packet (see evt3_packet) from the state in s (loaded here from states
 * when it holds another stream): a new DecodedPacket, with its state left in s; Py_None
 * when the path does not take it (nothing changed); NULL with an exception.
 */
static PyObject *decode_packet(PyObject *data, PyObject *states, PyObject *pool,
                               stream_state *s, pool_cursor *events, pool_cursor *triggers)
{
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    const uint8_t *b = (const uint8_t *)view.buf;
    packet_fields f;
    PyObject *frame_id = NULL, *result = NULL;
    if (parse_event_packet(b, view.len, &f) != 0 || f.encoding_len != 4
        || memcmp(b + f.encoding_start, "evt3", 4) != 0 || f.events_len % 2)
        goto none;
    int status = frame_id_str(b + f.id_start, f.id_len, &frame_id);
    if (status != 0) {
        if (status == -2)
            goto out;
        goto none;
    }
    if (stream_load(s, states, f.width, f.height) < 0)
        goto out;
    evt3_ctx c, c0 = s->c;
    int valid, valid0 = s->valid;
    c0.width = f.width;
    c0.height = f.height;
    c0.limit = c0.offset_us = 0;
    c0.has_limit = 0;
    c0.rollover = 1;
    const uint16_t *words = (const uint16_t *)(b + f.events_offset);
    const Py_ssize_t n = f.events_len / 2;
    /* Events: at most one per word but for vectors, which decode_words checks (then the
     * packet is decoded again into room for its bound). Triggers: one per word at most. */
    Py_ssize_t need = n + BLOCK, start;
    int64_t first_us;
    for (;;) {
        if (pool_room(pool, events, need) < 0 || pool_room(pool, triggers, n) < 0)
            goto out;
        c = c0;
        valid = valid0;
        c.ev = (event_t *)events->view.buf + events->used;
        c.ev_cap = events->view.len / (Py_ssize_t)sizeof(event_t) - events->used;
        c.tr = (trigger_t *)triggers->view.buf + triggers->used;
        c.tr_cap = triggers->view.len / (Py_ssize_t)sizeof(trigger_t) - triggers->used;
        c.ne = c.nt = 0;
        c.ended = 0;
        evt3_run(&c, words, n, &valid, &start, &first_us, NULL, 0, NULL);
        if (c.ended != 3)
            break;
        Py_ssize_t tr_bound;
        evt3_bounds(words, n, &need, &tr_bound);
        need += BLOCK;
    }
    if (c.ended == 2)
        goto none;  /* an unsupported word: the general path raises its WireError */
    s->c = c;
    s->valid = valid;
    s->decoded = 1;
    PyObject *first = Py_None;
    int64_t first_ns;
    if (!valid)
        Py_INCREF(first);
    else if (!__builtin_mul_overflow(first_us, (int64_t)NS_PER_US, &first_ns))
        first = PyLong_FromLongLong(first_ns);
    else {  /* a state from elsewhere: Python's integers do not overflow */
        PyObject *us = PyLong_FromLongLong(first_us), *ns = PyLong_FromLong(NS_PER_US);
        first = us && ns ? PyNumber_Multiply(us, ns) : NULL;
        Py_XDECREF(us);
        Py_XDECREF(ns);
    }
    PyObject *trigger_array;
    if (c.nt > 0)
        trigger_array = pool_take(pool, triggers, c.nt);
    else {
        trigger_array = PyList_GET_ITEM(pool, 4);
        Py_INCREF(trigger_array);
    }
    PyObject *header_values[N_HEADER_FIELDS] = {
        PyLong_FromLongLong((long long)f.sec * 1000000000LL + f.nanosec), frame_id};
    frame_id = NULL;  /* stolen */
    Py_INCREF(evt3_name);
    Py_INCREF(Py_None);
    Py_INCREF(Py_True);
    PyObject *packet_values[N_PACKET_FIELDS] = {
        new_record(header_type, header_names, header_offsets, header_values,
                   N_HEADER_FIELDS),
        size_int(&last_height, f.height), size_int(&last_width, f.width),
        PyLong_FromUnsignedLongLong(f.seq), PyLong_FromUnsignedLongLong(f.time_base),
        evt3_name, pool_take(pool, events, c.ne), trigger_array, first,
        PyLong_FromSsize_t(f.events_len), Py_None, Py_True};
    result = new_record(packet_type, packet_names, packet_offsets, packet_values,
                        N_PACKET_FIELDS);
    goto out;
none:
    result = Py_None;
    Py_INCREF(result);
out:
    Py_XDECREF(frame_id);
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(setup_packets_doc,
"setup_packets(packet_type, header_type)\n\n"
"Give evt3_packet the classes it builds: DecodedPacket and Header, with the fields of\n"
"PACKET_FIELDS and HEADER_FIELDS (event_packet.py calls this once at import).");

static PyObject *setup_packets(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2 || !PyType_Check(args[0]) || !PyType_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "setup_packets(packet_type, header_type)");
        return NULL;
    }
    for (int k = 0; k < N_PACKET_FIELDS; k++)
        if (packet_names[k] == NULL
            && (packet_names[k] = PyUnicode_InternFromString(PACKET_FIELDS[k])) == NULL)
            return NULL;
    for (int k = 0; k < N_HEADER_FIELDS; k++)
        if (header_names[k] == NULL
            && (header_names[k] = PyUnicode_InternFromString(HEADER_FIELDS[k])) == NULL)
            return NULL;
    Py_ssize_t packet_at[N_PACKET_FIELDS], header_at[N_HEADER_FIELDS];
    if (slot_offsets(args[0], packet_names, packet_at, N_PACKET_FIELDS) < 0
        || slot_offsets(args[1], header_names, header_at, N_HEADER_FIELDS) < 0)
        return NULL;  /* the classes and offsets in use stay as they were */
    memcpy(packet_offsets, packet_at, sizeof packet_at);
    memcpy(header_offsets, header_at, sizeof header_at);
    PyObject **const slots[2] = {&packet_type, &header_type};
    hold(slots, args, 2);
    Py_RETURN_NONE;
}

/* A tuple of the C strings of names; NULL with an exception. */
static PyObject *names_tuple(const char *const *names, int count)
{
    PyObject *tuple = PyTuple_New(count);
    for (int k = 0; tuple != NULL && k < count; k++) {
        PyObject *name = PyUnicode_FromString(names[k]);
        if (name == NULL)
            Py_CLEAR(tuple);
        else
            PyTuple_SET_ITEM(tuple, k, name);
    }
    return tuple;
}

static int packet_args(PyObject *states, PyObject *pool)
{
    if (packet_type == NULL || state_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "gep_ros.wire._kernels: setup_evt3() or "
                        "setup_packets() was not called");
        return -1;
    }
    if (!PyDict_Check(states) || !PyList_Check(pool) || PyList_GET_SIZE(pool) != 7
        || !PyList_Check(PyList_GET_ITEM(pool, 5)) || !PyList_Check(PyList_GET_ITEM(pool, 6))) {
        PyErr_SetString(PyExc_TypeError, "states must be a dict and pool a list of 7 "
                        "(events chunk, used, triggers chunk, used, empty triggers, "
                        "spare events chunks, spare triggers chunks)");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(evt3_packet_doc,
"evt3_packet(data, states, pool) -> DecodedPacket or None\n\n"
"A whole serialized evt3 EventPacket in one call: its fields as event_packet_fields reads\n"
"them, its words decoded as evt3_decode does from states[('evt3', width, height)] (the\n"
"state of a new stream when absent), the new state stored there, its events and triggers\n"
"in arrays from pool. None, with states untouched, for anything else: not a plain\n"
"little-endian layout, another encoding, an odd number of payload bytes, an unsupported\n"
"word. The Python path then decodes it, and raises what it raises.");

static PyObject *evt3_packet(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "evt3_packet(data, states, pool)");
        return NULL;
    }
    if (packet_args(args[1], args[2]) < 0)
        return NULL;
    stream_state s = {0};
    pool_cursor events = {.slot = 0, .dtype = event_dtype};
    pool_cursor triggers = {.slot = 2, .dtype = trigger_dtype};
    PyObject *packet = decode_packet(args[0], args[1], args[2], &s, &events, &triggers);
    if ((pool_done(args[2], &events) | pool_done(args[2], &triggers)) < 0
        || (packet != NULL && stream_store(&s, args[1]) < 0))
        Py_CLEAR(packet);
    return packet;
}

PyDoc_STRVAR(evt3_packets_doc,
"evt3_packets(messages, index, states, pool) -> list of DecodedPacket\n\n"
"evt3_packet on messages[index], messages[index + 1], ... (a list) until the end or the\n"
"first message that it does not take (which is then not decoded): the packets decoded.");

static PyObject *evt3_packets(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 4 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "evt3_packets(messages, index, states, pool) with a "
                        "list of messages");
        return NULL;
    }
    Py_ssize_t index = PyLong_AsSsize_t(args[1]);
    if (index == -1 && PyErr_Occurred())
        return NULL;
    if (packet_args(args[2], args[3]) < 0)
        return NULL;
    PyObject *done = PyList_New(0);
    stream_state s = {0};
    pool_cursor events = {.slot = 0, .dtype = event_dtype};
    pool_cursor triggers = {.slot = 2, .dtype = trigger_dtype};
    /* the list is read again at each step: decoding runs no Python code, but stays safe */
    for (; done != NULL && index >= 0 && index < PyList_GET_SIZE(args[0]); index++) {
        PyObject *message = PyList_GET_ITEM(args[0], index);
        Py_INCREF(message);
        PyObject *packet = decode_packet(message, args[2], args[3], &s, &events, &triggers);
        Py_DECREF(message);
        if (packet == Py_None) {
            Py_DECREF(packet);
            break;
        }
        if (packet == NULL || PyList_Append(done, packet) < 0)
            Py_CLEAR(done);
        Py_XDECREF(packet);
    }
    /* The states and pool counts of the packets decoded, also when one raised (the
     * exception is kept). */
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    if ((pool_done(args[3], &events) | pool_done(args[3], &triggers)) < 0
        || stream_store(&s, args[2]) < 0)
        Py_CLEAR(done);
    if (type != NULL)
        PyErr_Restore(type, value, traceback);
    return done;
}

/* ---- dvs_msgs/EventArray ------------------------------------------------------------------ */

#if HAVE_X86_TARGETS
/*
 * Records 1..n-1 of an EventArray with AVX2, two a step: each record (at 16 k - 2) is one
 * 128-bit lane, which byte shuffles turn into sec, nsec and x | y << 16 | p << 32; then
 * t = sec * 1e9 + nsec (a signed 32-bit multiply to 64 bits). Returns the records done (the
 * last one is left to the caller, as a 16-byte load of it would read a byte past the end).
 */
__attribute__((target("avx2"))) static long long event_array_avx2(const uint8_t *src,
                                                                  event_t *ev, long long n)
{
    const __m256i to_sec = _mm256_setr_epi8(
        6, 7, 8, 9, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        6, 7, 8, 9, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i to_nsec = _mm256_setr_epi8(
        10, 11, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        10, 11, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i to_rest = _mm256_setr_epi8(
        -1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 2, 3, 14, -1, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 2, 3, 14, -1, -1, -1);
    /* polarity != 0 as 0 or 1: the minimum with 1 in its byte */
    const __m256i one_p = _mm256_setr_epi8(
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 1, -1, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 1, -1, -1, -1);
    const __m256i ns = _mm256_set1_epi64x(1000000000LL);
    long long k = 1;
    for (; k + 2 < n; k += 2) {
        __m256i r = _mm256_loadu_si256((const __m256i *)(src + 16 * k - 2));
        __m256i t = _mm256_add_epi64(_mm256_mul_epi32(_mm256_shuffle_epi8(r, to_sec), ns),
                                     _mm256_shuffle_epi8(r, to_nsec));
        __m256i rest = _mm256_min_epu8(_mm256_shuffle_epi8(r, to_rest), one_p);
        _mm256_storeu_si256((__m256i *)(ev + k), _mm256_or_si256(t, rest));
    }
    return k;
}

static int use_avx2;  /* set at import where the CPU has it */
#endif

PyDoc_STRVAR(event_array_decode_doc,
"event_array_decode(buf, start, n, events)\n\n"
"Copy n dvs_msgs/Event records of little-endian CDR, the first at byte `start` of `buf`\n"
"(4-aligned: x, y, sec, nsec, polarity in 13 bytes), each later one 16 bytes on (2 bytes of\n"
"padding before sec), into `events` (16-byte records): t = sec * 1e9 + nsec, p = polarity\n"
"!= 0. The caller has checked that the bytes are there.");

/* Copy n records (the first at src, as event_array_decode describes) into ev, zeroing the
 * padding; the GIL is released for large n. */
static void copy_event_array(const uint8_t *src, event_t *ev, long long n)
{
    PyThreadState *saved = n > RELEASE_WORDS ? PyEval_SaveThread() : NULL;
    if (n > 0) {
        ev[0].x = load_u16(src);
        ev[0].y = load_u16(src + 2);
        ev[0].t = (int64_t)(int32_t)load_u32(src + 4) * 1000000000LL + load_u32(src + 8);
        ev[0].p = src[12] != 0;
        ev[0].pad[0] = ev[0].pad[1] = ev[0].pad[2] = 0;
    }
    /* Record k >= 1 starts at 16 k - 2: x, y, 2 bytes of padding, sec, nsec, polarity. */
    long long k = 1;
#if HAVE_X86_TARGETS
    if (use_avx2)
        k = event_array_avx2(src, ev, n);
#endif
    for (; k < n; k++) {
        const uint8_t *r = src + 16 * k - 2;
        event_t *e = &ev[k];
        e->t = (int64_t)(int32_t)load_u32(r + 6) * 1000000000LL + load_u32(r + 10);
        e->x = load_u16(r);
        e->y = load_u16(r + 2);
        e->p = r[14] != 0;
        e->pad[0] = e->pad[1] = e->pad[2] = 0;
    }
    if (saved != NULL)
        PyEval_RestoreThread(saved);
}

static PyObject *event_array_decode(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "event_array_decode takes 4 arguments");
        return NULL;
    }
    long long start, n;
    if (arg_ll(args[1], &start) < 0 || arg_ll(args[2], &n) < 0)
        return NULL;
    Py_buffer bb, eb;
    if (arg_buffer(args[0], &bb, 0, "buf") < 0)
        return NULL;
    if (arg_buffer(args[3], &eb, 1, "events") < 0) {
        PyBuffer_Release(&bb);
        return NULL;
    }
    if (n < 0 || start < 0 || (n > 0 && start + 16 * n - 3 > bb.len)
        || eb.len < n * (Py_ssize_t)sizeof(event_t)) {
        PyBuffer_Release(&eb);
        PyBuffer_Release(&bb);
        PyErr_SetString(PyExc_ValueError, "event_array_decode: buffers too small");
        return NULL;
    }
    copy_event_array((const uint8_t *)bb.buf + start, (event_t *)eb.buf, n);
    PyBuffer_Release(&eb);
    PyBuffer_Release(&bb);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(event_array_message_doc,
"event_array_message(data) -> None or (sec, nanosec, frame_id, height, width, events)\n\n"
"A whole serialized dvs_msgs/EventArray in one call when its layout is plain (little-endian\n"
"CDR, every length fits, the frame id ends in NUL and is UTF-8, at most 3 bytes after the\n"
"events): its fields and a new EVENT_DTYPE array of its events. None otherwise: the field\n"
"reader of dvs.py then reads it and names the problem.");

static PyObject *event_array_message(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "event_array_message takes 1 argument");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    const uint8_t *b = (const uint8_t *)view.buf;
    const Py_ssize_t size = view.len;
    PyObject *frame_id = NULL, *events = NULL, *result = NULL;
    Py_ssize_t id_len;
    const Py_ssize_t pos = parse_header(b, size, &id_len);
    if (pos < 0 || pos + 12 > size)  /* height, width, the events' length */
        goto none;
    const long long n = load_u32(b + pos + 8);
    const Py_ssize_t start = pos + 12, end = start + (n ? 16 * n - 3 : 0);
    if (end > size || size - end > 3)
        goto none;
    int status = utf8(b + 16, id_len, &frame_id);
    if (status != 0) {
        if (status == -2)
            goto out;
        goto none;
    }
    Py_buffer eb;
    events = new_array(event_dtype, n, &eb);
    if (events == NULL)
        goto out;
    copy_event_array(b + start, (event_t *)eb.buf, n);
    PyBuffer_Release(&eb);
    result = Py_BuildValue("(iINIIO)", (int)load_u32(b + 4), (unsigned int)load_u32(b + 8),
                           frame_id, (unsigned int)load_u32(b + pos),
                           (unsigned int)load_u32(b + pos + 4), events);
    frame_id = NULL;  /* stolen by N */
    goto out;
none:
    result = Py_None;
    Py_INCREF(result);
out:
    Py_XDECREF(frame_id);
    Py_XDECREF(events);
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(time_range_doc,
"time_range(events) -> (t_min, t_max)\n\n"
"The smallest and largest t of a non-empty C-contiguous array of 16-byte event or trigger\n"
"records (t, int64, first), in one pass.");

/*
 * The buffer of a non-empty array of 16-byte records (writable if asked) and the smallest and
 * largest t, in one pass: the number of records, or -1 with an exception (nothing held).
 */
static Py_ssize_t records_span(PyObject *obj, Py_buffer *view, int writable, const char *who,
                               int64_t *lo_out, int64_t *hi_out)
{
    if (arg_buffer(obj, view, writable, "records") < 0)
        return -1;
    const Py_ssize_t n = view->len / (Py_ssize_t)sizeof(event_t);
    if (n == 0 || view->len % (Py_ssize_t)sizeof(event_t)) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError, "%s: a non-empty array of 16-byte records", who);
        return -1;
    }
    const event_t *ev = (const event_t *)view->buf;
    int64_t lo = ev[0].t, hi = ev[0].t;
    for (Py_ssize_t k = 1; k < n; k++) {
        const int64_t t = ev[k].t;
        lo = t < lo ? t : lo;
        hi = t > hi ? t : hi;
    }
    *lo_out = lo;
    *hi_out = hi;
    return n;
}

static PyObject *time_range(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "time_range takes 1 argument");
        return NULL;
    }
    Py_buffer eb;
    int64_t lo, hi;
    if (records_span(args[0], &eb, 0, "time_range", &lo, &hi) < 0)
        return NULL;
    PyBuffer_Release(&eb);
    return Py_BuildValue("(LL)", (long long)lo, (long long)hi);
}

PyDoc_STRVAR(copy_events_doc,
"copy_events(src, dst)\n\n"
"Copy the C-contiguous 16-byte event records of src into dst (writable, as long) with their\n"
"padding bytes (13 to 15) zeroed, as gep_ros.wire.events.copy_events does in numpy.");

static PyObject *copy_events(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "copy_events(src, dst)");
        return NULL;
    }
    Py_buffer src, dst;
    if (arg_buffer(args[0], &src, 0, "src") < 0)
        return NULL;
    if (arg_buffer(args[1], &dst, 1, "dst") < 0) {
        PyBuffer_Release(&src);
        return NULL;
    }
    PyObject *result = NULL;
    if (src.len != dst.len || src.len % (Py_ssize_t)sizeof(event_t)) {
        PyErr_SetString(PyExc_ValueError, "copy_events: src and dst must be as many records");
    } else {
        /* A record's second 8 bytes, little-endian: x, y and p, then three of padding. */
        const uint64_t fields = 0x000000FFFFFFFFFFull;
        const uint64_t *in = (const uint64_t *)src.buf;
        uint64_t *out = (uint64_t *)dst.buf;
        for (Py_ssize_t k = 0; k < src.len / 8; k += 2) {
            out[k] = in[k];
            out[k + 1] = in[k + 1] & fields;
        }
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&dst);
    PyBuffer_Release(&src);
    return result;
}

PyDoc_STRVAR(shift_times_doc,
"shift_times(records, start, offset, target, slew) -> t_max or None\n\n"
"Put the times of a non-empty C-contiguous writable array of 16-byte event or trigger\n"
"records on the ROS clock, in place, as gep_ros.wire.stream does in numpy: where\n"
"abs(target - offset) <= slew * max(t_min - start, 0) every t += target; otherwise each\n"
"t += offset + int64(clip(float64(target - offset), -r, r)) with r = slew * float64(max(t -\n"
"start, 0)), in int64 arithmetic that wraps. Returns the largest t before the shift; None,\n"
"with nothing changed, where an integer is outside int64 or the fast check would not be\n"
"exact in float64 (numpy's way then decides, and raises what it raises).");

/* Records from here on take the GIL's release: long enough to let another thread run. */
#define SHIFT_NOGIL_RECORDS 65536

/* How shift_times moves records whose smallest t is lo. */
typedef struct {
    long long start, offset, target;
    double slew, delta;
    int whole; /* every t moves by target */
} shift_plan;

/* Fill in whole and delta; -1 where the kernel declines (an integer past int64, or the fast
 * check not exact in float64). The fast check in Python's exact integers: abs(delta) <= slew
 * * max(lo - start, 0), exact here while both differences fit int64 and abs(delta) is a
 * float64 integer. */
static int plan_shift(shift_plan *p, int64_t lo)
{
    const int64_t exact = (int64_t)1 << 53;
    long long delta, span;
    if (__builtin_sub_overflow(p->target, p->offset, &delta) || delta > exact || delta < -exact
        || __builtin_sub_overflow((long long)lo, p->start, &span))
        return -1;
    p->whole = (double)(delta < 0 ? -delta : delta) <= p->slew * (double)(span > 0 ? span : 0);
    p->delta = (double)delta;
    return 0;
}

/* numpy's clip of d to [-room, room]: minimum(maximum(d, -room), room). */
static inline double clipped(double d, double room)
{
    const double above = d > -room ? d : -room;
    return above < room ? above : room;
}

static void apply_shift(event_t *ev, Py_ssize_t n, const shift_plan *p)
{
    const uint64_t u_start = (uint64_t)p->start, u_offset = (uint64_t)p->offset;
    const double d = p->delta, slew = p->slew;
    if (p->whole) {
        for (Py_ssize_t k = 0; k < n; k++)
            ev[k].t = (int64_t)((uint64_t)ev[k].t + (uint64_t)p->target);
        return;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        const int64_t since = (int64_t)((uint64_t)ev[k].t - u_start);
        const double room = slew * (double)(since > 0 ? since : 0);
        ev[k].t = (int64_t)((uint64_t)ev[k].t + u_offset + (uint64_t)(int64_t)clipped(d, room));
    }
}

/* Parse integer arguments; 1 where one is past int64 (the caller declines), -1 on an error. */
static int args_ll(PyObject *const *args, const int *at, long long *out, int count)
{
    for (int k = 0; k < count; k++)
        if (arg_ll(args[at[k]], &out[k]) < 0) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError))
                return -1;
            PyErr_Clear();
            return 1;
        }
    return 0;
}

static PyObject *shift_times(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "shift_times(records, start, offset, target, slew)");
        return NULL;
    }
    static const int at[3] = {1, 2, 3};
    long long v[3];
    shift_plan plan;
    plan.slew = PyFloat_AsDouble(args[4]);
    if (plan.slew == -1.0 && PyErr_Occurred())
        return NULL;
    const int past = args_ll(args, at, v, 3);
    if (past)
        return past < 0 ? NULL : Py_NewRef(Py_None);
    plan.start = v[0], plan.offset = v[1], plan.target = v[2];
    Py_buffer rb;
    int64_t lo, hi;
    const Py_ssize_t n = records_span(args[0], &rb, 1, "shift_times", &lo, &hi);
    if (n < 0)
        return NULL;
    if (plan_shift(&plan, lo) < 0) {
        PyBuffer_Release(&rb);
        Py_RETURN_NONE;
    }
    PyThreadState *released = n >= SHIFT_NOGIL_RECORDS ? PyEval_SaveThread() : NULL;
    apply_shift((event_t *)rb.buf, n, &plan);
    if (released != NULL)
        PyEval_RestoreThread(released);
    PyBuffer_Release(&rb);
    return PyLong_FromLongLong((long long)hi);
}

PyDoc_STRVAR(to_ros_doc,
"to_ros(events, triggers, sensor, target, anchor, slew, snap) -> anchor or None\n\n"
"gep_ros.wire.stream.EventStream._to_ros of a packet's events and triggers (arrays of\n"
"16-byte records, C-contiguous and writable, or empty) in one call: the anchor (None, or\n"
"(sensor time, offset)) is taken afresh as (sensor, target) where target is more than snap\n"
"from its offset or sensor more than snap before its time; each non-empty array is moved\n"
"by shift_times from it; returns the new anchor: the largest time before the shift (at\n"
"least sensor), and the offset moved towards target by at most slew times the time since\n"
"the anchor. None, with nothing changed, wherever shift_times would decline, this\n"
"arithmetic would leave int64 or an array is strided or read-only: the Python code then\n"
"does it.");

static PyObject *to_ros(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "to_ros(events, triggers, sensor, target, anchor, slew, snap)");
        return NULL;
    }
    static const int at[3] = {2, 3, 6};
    long long v[3], anchor[2];
    const double slew = PyFloat_AsDouble(args[5]);
    if (slew == -1.0 && PyErr_Occurred())
        return NULL;
    int past = args_ll(args, at, v, 3);
    const long long sensor = v[0], target = v[1], snap = v[2];
    shift_plan plan = {sensor, target, target, slew, 0.0, 0};
    if (!past && args[4] != Py_None) {
        if (!PyTuple_Check(args[4]) || PyTuple_GET_SIZE(args[4]) != 2) {
            PyErr_SetString(PyExc_TypeError, "to_ros: anchor must be None or a pair");
            return NULL;
        }
        static const int pair[2] = {0, 1};
        PyObject *const items[2] = {PyTuple_GET_ITEM(args[4], 0), PyTuple_GET_ITEM(args[4], 1)};
        past = args_ll(items, pair, anchor, 2);
        long long apart, limit;
        if (!past && (__builtin_sub_overflow(target, anchor[1], &apart) || apart == LLONG_MIN
                      || __builtin_sub_overflow(anchor[0], snap, &limit)))
            past = 1;
        if (!past && (apart < 0 ? -apart : apart) <= snap && sensor >= limit)
            plan.start = anchor[0], plan.offset = anchor[1];
    }
    if (past)
        return past < 0 ? NULL : Py_NewRef(Py_None);
    Py_buffer views[2];
    shift_plan plans[2];  /* each array's: its `whole` follows from its own smallest time */
    Py_ssize_t n[2] = {0, 0}, total = 0;
    int held = 0, declined = 0;
    long long end = sensor;
    PyObject *result = NULL;
    for (int k = 0; k < 2 && !declined; k++) {
        const Py_ssize_t size = PyObject_Length(args[k]);
        if (size < 0)
            goto done;
        if (size == 0)
            continue;
        int64_t lo, hi;
        n[k] = records_span(args[k], &views[k], 1, "to_ros", &lo, &hi);
        if (n[k] < 0) {
            if (!PyErr_ExceptionMatches(PyExc_TypeError))
                goto done;
            PyErr_Clear(); /* strided or read-only: the Python code's */
            declined = 1;
            break;
        }
        held |= 1 << k;
        total += n[k];
        plans[k] = plan;
        declined = plan_shift(&plans[k], lo) < 0;
        end = hi > end ? hi : end;
    }
    /* The new anchor: Python's offset + int(min(max(float(target - offset), -room), room)). */
    long long since, delta, moved_offset = 0;
    if (!declined && (__builtin_sub_overflow(end, plan.start, &since)
                      || __builtin_sub_overflow(target, plan.offset, &delta)))
        declined = 1;
    if (!declined)
        declined = __builtin_add_overflow(
            plan.offset, (long long)clipped((double)delta, slew * (double)(since > 0 ? since : 0)),
            &moved_offset);
    if (declined) {
        result = Py_NewRef(Py_None);
    } else {
        PyThreadState *released = total >= SHIFT_NOGIL_RECORDS ? PyEval_SaveThread() : NULL;
        for (int k = 0; k < 2; k++)
            if (held & (1 << k))
                apply_shift((event_t *)views[k].buf, n[k], &plans[k]);
        if (released != NULL)
            PyEval_RestoreThread(released);
        result = Py_BuildValue("(LL)", end, moved_offset);
    }
done:
    for (int k = 0; k < 2; k++)
        if (held & (1 << k))
            PyBuffer_Release(&views[k]);
    return result;
}

PyDoc_STRVAR(wide_blocks_doc,
"wide_blocks(use=None) -> bool\n\n"
"Whether EVT3 blocks are decoded 32 words at a time with AVX-512, which is the default\n"
"where the CPU has it (else 63-word blocks); `use` switches it, for the tests of both\n"
"paths. ValueError for True where the CPU does not have the instructions.");

static PyObject *wide_blocks(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "wide_blocks(use=None)");
        return NULL;
    }
#if HAVE_X86_TARGETS
    int can = wide_cpu();
    if (nargs == 1 && args[0] != Py_None) {
        int want = PyObject_IsTrue(args[0]);
        if (want < 0)
            return NULL;
        if (want && !can) {
            PyErr_SetString(PyExc_ValueError, "this CPU lacks AVX-512 BW, DQ, VL, VBMI or VBMI2");
            return NULL;
        }
        use_wide = want;
    }
    return PyBool_FromLong(use_wide);
#else
    if (nargs == 1 && args[0] != Py_None && PyObject_IsTrue(args[0])) {
        PyErr_SetString(PyExc_ValueError, "this build has no AVX-512 block decoder");
        return NULL;
    }
    Py_RETURN_FALSE;
#endif
}

static PyMethodDef methods[] = {
    {"setup", (PyCFunction)(void (*)(void))setup, METH_FASTCALL, setup_doc},
    {"setup_evt3", (PyCFunction)(void (*)(void))setup_evt3, METH_FASTCALL, setup_evt3_doc},
    {"evt3_decode", (PyCFunction)(void (*)(void))evt3_decode, METH_FASTCALL, evt3_decode_doc},
    {"event_packet_fields", (PyCFunction)(void (*)(void))event_packet_fields, METH_FASTCALL,
     event_packet_fields_doc},
    {"setup_packets", (PyCFunction)(void (*)(void))setup_packets, METH_FASTCALL,
     setup_packets_doc},
    {"wide_blocks", (PyCFunction)(void (*)(void))wide_blocks, METH_FASTCALL, wide_blocks_doc},
    {"evt3_packet", (PyCFunction)(void (*)(void))evt3_packet, METH_FASTCALL, evt3_packet_doc},
    {"evt3_packets", (PyCFunction)(void (*)(void))evt3_packets, METH_FASTCALL,
     evt3_packets_doc},
    {"event_array_decode", (PyCFunction)(void (*)(void))event_array_decode, METH_FASTCALL,
     event_array_decode_doc},
    {"event_array_message", (PyCFunction)(void (*)(void))event_array_message, METH_FASTCALL,
     event_array_message_doc},
    {"time_range", (PyCFunction)(void (*)(void))time_range, METH_FASTCALL, time_range_doc},
    {"copy_events", (PyCFunction)(void (*)(void))copy_events, METH_FASTCALL, copy_events_doc},
    {"to_ros", (PyCFunction)(void (*)(void))to_ros, METH_FASTCALL, to_ros_doc},
    {"shift_times", (PyCFunction)(void (*)(void))shift_times, METH_FASTCALL, shift_times_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "gep_ros.wire._kernels",
    "Compiled decode kernels of gep_ros.wire (EVT3 words, EventArray records).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernels(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (evt3_name == NULL && (evt3_name = PyUnicode_InternFromString("evt3")) == NULL) {
        Py_DECREF(m);
        return NULL;
    }
#if HAVE_X86_TARGETS
    wide_tables();
    use_wide = wide_cpu();
    use_avx2 = __builtin_cpu_supports("avx2");
#endif
    if (PyModule_AddObject(m, "PACKET_FIELDS", names_tuple(PACKET_FIELDS, N_PACKET_FIELDS)) < 0
        || PyModule_AddObject(m, "HEADER_FIELDS", names_tuple(HEADER_FIELDS, N_HEADER_FIELDS))
               < 0
        || PyModule_AddIntConstant(m, "INTERFACE_VERSION", INTERFACE_VERSION) < 0
        || PyModule_AddIntConstant(m, "EVENT_SIZE", (long)sizeof(event_t)) < 0
        || PyModule_AddIntConstant(m, "TRIGGER_SIZE", (long)sizeof(trigger_t)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
