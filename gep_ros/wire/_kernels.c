/*
 * Compiled decode kernels of gep_ros.wire: EVT3 words and dvs_msgs/EventArray records into
 * the EVENT_DTYPE / TRIGGER_DTYPE records of gep_ros.wire.events.
 *
 * Plain C99 against Python's C API and its buffer protocol only (no numpy headers): one
 * build serves numpy 1.x and 2.x. The Python side (evt3.py, dvs.py) checks its arguments,
 * allocates the output arrays and hands them over as writable buffers; a kernel fills them
 * and reports counts and the state to carry. Nothing here allocates Python objects but
 * the small result tuples, and nothing here raises for bad data: the Python side turns the
 * reported positions into its WireErrors, so that both decoders fail alike.
 *
 * Layouts (checked against the numpy dtypes at import, in kernels.py):
 *   event   16 bytes: int64 t at 0, uint16 x at 8, uint16 y at 10, uint8 p at 12, 3 zero bytes
 *   trigger 16 bytes: int64 t at 0, uint8 p at 8, uint8 id at 9, 6 zero bytes
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gep_ros.wire._kernels writes little-endian records and needs a little-endian host"
#endif

/* Bumped whenever an argument list or a result tuple changes; kernels.py refuses another. */
#define INTERFACE_VERSION 3

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
    while (end - i >= BLOCK) {
        memcpy(rows + 1, words + i, BLOCK * sizeof *words);
        rows[0] = 0;
        block_masks m;
        classify(rows, &m);
        if ((m.known | 1u) != ~(uint64_t)0)
            break;
        /* The TIME_HIGHs in order; one that wraps leaves the block to decode_words. */
        uint64_t last = high, wrap = 0;
        for (uint64_t b = m.high & ~(uint64_t)1; b; b &= b - 1) {
            uint64_t v = rows[lowest_bit(b)] & 0xFFFu;
            wrap |= (int64_t)(last - v) > ROLLOVER_TOLERANCE;
            last = v;
        }
        if (wrap)
            break;
        memcpy(lows, rows, sizeof rows);
        memcpy(highs, rows, sizeof rows);
        rows[0] = (uint16_t)y;
        lows[0] = (uint16_t)low;
        highs[0] = (uint16_t)high;
        const uint64_t row_bits = m.y | 1u, low_bits = m.low | 1u, high_bits = m.high | 1u;
        for (uint64_t b = m.x & ~(uint64_t)1; b; b &= b - 1) {
            int k = lowest_bit(b);
            uint64_t below = ((uint64_t)2 << k) - 1;
            uint64_t row = rows[top_bit(row_bits & below)] & 0x7FFu;
            uint64_t t = ((wraps | (uint64_t)(highs[top_bit(high_bits & below)] & 0xFFFu) << 12
                           | (lows[top_bit(low_bits & below)] & 0xFFFu)) + offset) * NS_PER_US;
            uint64_t w = rows[k], x = w & 0x7FFu;
            /* Written always, counted only when inside the sensor: slot ne exists, since the
             * arrays hold one per ADDR_X and this ADDR_X has not been counted. */
            put_event(&ev[ne], (int64_t)t, x, row, (w >> 11) & 1u);
            ne += (x < width) & (row < height);
        }
        for (uint64_t b = m.trigger & ~(uint64_t)1; b; b &= b - 1) {
            int k = lowest_bit(b);
            uint64_t below = ((uint64_t)2 << k) - 1;
            uint64_t t = ((wraps | (uint64_t)(highs[top_bit(high_bits & below)] & 0xFFFu) << 12
                           | (lows[top_bit(low_bits & below)] & 0xFFFu)) + offset) * NS_PER_US;
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

/*
 * Decode words[i:end) from the state in c; return where decoding stopped (end, or the index
 * of the word named by c->ended). Blocks while they qualify, otherwise word by word up to
 * the next block; the blocks are off under a time limit (decode-until is not the streaming
 * path) and for libcaer_cmp's clock, which never wraps.
 */
static Py_ssize_t decode_span(evt3_ctx *c, const uint16_t *words, Py_ssize_t i, Py_ssize_t end)
{
    const int blocks = !c->has_limit && c->rollover;
    while (i < end) {
        if (blocks) {
            i = decode_blocks(c, words, i, end);
            if (i >= end)
                break;
        }
        i = decode_words(c, words, i, end - i > BLOCK ? i + BLOCK : end);
        if (c->ended)
            break;
    }
    return i;
}

/* Set once by setup(): numpy.empty, the record dtypes, the state class and the state of a
 * stream not seen yet; and the first element of a stream's key, 'evt3'. */
static PyObject *np_empty, *event_dtype, *trigger_dtype, *int64_dtype, *state_type, *no_state;
static PyObject *evt3_name;

PyDoc_STRVAR(setup_doc,
"setup(empty, event_dtype, trigger_dtype, int64_dtype, state_type, no_state)\n\n"
"Give the kernels numpy.empty, the dtypes of the arrays they allocate and fill, the tuple\n"
"subclass of the EVT3 state they return and the state of a new stream (evt3.py calls\n"
"this once at import).");

static PyObject *setup(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 6 || !PyType_Check(args[4])
        || !PyType_IsSubtype((PyTypeObject *)args[4], &PyTuple_Type)
        || !PyObject_TypeCheck(args[5], (PyTypeObject *)args[4])) {
        PyErr_SetString(PyExc_TypeError,
                        "setup(empty, event_dtype, trigger_dtype, int64_dtype, state_type, "
                        "no_state) with a tuple subclass as state_type");
        return NULL;
    }
    PyObject **slots[6] = {&np_empty, &event_dtype, &trigger_dtype, &int64_dtype, &state_type,
                           &no_state};
    for (int k = 0; k < 6; k++) {
        Py_INCREF(args[k]);
        Py_XSETREF(*slots[k], args[k]);
    }
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

static PyObject *evt3_decode(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "evt3_decode takes 8 arguments");
        return NULL;
    }
    PyObject *state = args[1];
    if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) != 6) {
        PyErr_SetString(PyExc_TypeError, "state must be an Evt3State");
        return NULL;
    }
    long long y_in, low_in, high_in, pol_in, base_in, width, height, limit = 0;
    long long rollover, offset_us;
    if (arg_ll(PyTuple_GET_ITEM(state, 0), &y_in) < 0
        || arg_ll(PyTuple_GET_ITEM(state, 1), &low_in) < 0
        || arg_ll(PyTuple_GET_ITEM(state, 2), &high_in) < 0
        || arg_ll(PyTuple_GET_ITEM(state, 3), &pol_in) < 0
        || arg_ll(PyTuple_GET_ITEM(state, 4), &base_in) < 0
        || arg_ll(args[2], &width) < 0 || arg_ll(args[3], &height) < 0
        || (args[4] != Py_None && arg_ll(args[4], &limit) < 0)
        || arg_ll(args[5], &rollover) < 0 || arg_ll(args[6], &offset_us) < 0)
        return NULL;
    int valid = PyObject_IsTrue(PyTuple_GET_ITEM(state, 5));
    if (valid < 0)
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
    events = new_array(event_dtype, ev_bound, &eb);
    if (events == NULL)
        goto release_m;
    triggers = new_array(trigger_dtype, tr_bound, &tb);
    if (triggers == NULL)
        goto release_e;

    evt3_ctx c;
    c.y = (unsigned)y_in & 0xFFFFu;
    c.pol = (unsigned)pol_in & 1u;
    c.base = (uint16_t)base_in;
    c.low = low_in;
    c.high = high_in;
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

    /* Before the first valid time (a TIME_HIGH, then a TIME_LOW) only the clock moves. */
    Py_ssize_t i = 0;
    if (!valid) {
        int saw_high = 0;
        while (i < n) {
            unsigned w = words[i++];
            if (w >> 12 == TIME_LOW) {
                c.low = w & 0xFFFu;
                if (saw_high) {
                    valid = 1;
                    break;
                }
            } else if (w >> 12 == TIME_HIGH) {
                c.high = next_high(c.rollover, c.high, w & 0xFFFu);
                saw_high = 1;
            }
        }
    }
    const Py_ssize_t start = valid ? i : n;
    const int64_t first_us = c.high | c.low;
    c.now = time_ns(&c, c.high, c.low);

    /* ended 0: stop == n; 1: stop is the TIME_LOW that reached the limit; 2: the bad word.
     * The buffers are held: other Python threads (inference) run meanwhile. */
    Py_ssize_t stop = n;
    Py_BEGIN_ALLOW_THREADS
    if (has_bounds) {
        for (Py_ssize_t k = 0; k < nbounds; k++) {
            marks[k] = c.ne;
            marks[nbounds + k] = c.nt;
            marks[2 * nbounds + k] = c.high | c.low;
            if (k + 1 < nbounds) {
                stop = decode_span(&c, words, bounds[k], bounds[k + 1]);
                if (c.ended)
                    break;
            }
        }
    } else {
        stop = decode_span(&c, words, start, n);
    }
    Py_END_ALLOW_THREADS
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
        PyObject *fields = Py_BuildValue("((LLLLLO))", (long long)c.y, (long long)c.low,
                                         (long long)c.high, (long long)c.pol,
                                         (long long)c.base, valid ? Py_True : Py_False);
        if (fields == NULL)
            goto release_t;
        PyObject *new_state = PyTuple_Type.tp_new((PyTypeObject *)state_type, fields, NULL);
        Py_DECREF(fields);
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
 * The fixed layout of a serialized EventPacket as event_packet.decode_event_packet reads it:
 * 0 when every length fits and the strings end in NUL, -1 for anything else (big-endian CDR,
 * overruns, trailing bytes), which the Python field reader then reads and names.
 */
static int parse_event_packet(const uint8_t *b, Py_ssize_t size, packet_fields *f)
{
    if (size < 16 || b[0] != 0 || b[1] != 1)
        return -1;
    f->sec = (int32_t)load_u32(b + 4);
    f->nanosec = load_u32(b + 8);
    Py_ssize_t n = load_u32(b + 12);
    Py_ssize_t pos = 16 + n, id_end = pos;
    if (n == 0 || pos > size || b[pos - 1] != 0)
        return -1;
    f->id_start = 16;
    f->id_len = n - 1;
    pos += (4 - pos % 4) % 4;  /* alignment counts from byte 4: the same residue mod 4 */
    (void)id_end;
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

/* The two strings of a parsed packet; 0 on success, -1 (no exception) for bad UTF-8. */
static int packet_strings(const uint8_t *b, const packet_fields *f, PyObject **frame_id,
                          PyObject **encoding)
{
    *frame_id = PyUnicode_DecodeUTF8((const char *)b + f->id_start, f->id_len, "strict");
    *encoding = *frame_id == NULL ? NULL
        : PyUnicode_DecodeUTF8((const char *)b + f->encoding_start, f->encoding_len, "strict");
    if (*encoding == NULL) {
        Py_XDECREF(*frame_id);
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
            return -2;
        PyErr_Clear();
        return -1;
    }
    return 0;
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

PyDoc_STRVAR(evt3_message_doc,
"evt3_message(data, states) -> None or (sec, nanosec, frame_id, height, width, seq,\n"
"    time_base, events, triggers, first_us, events_len)\n\n"
"A whole serialized evt3 EventPacket in one call: its fields as event_packet_fields reads\n"
"them, its words decoded as evt3_decode does from states[('evt3', width, height)] (the\n"
"state of a new stream when absent), and the new state stored there. None, with states\n"
"untouched, for anything else: not a plain little-endian layout, another encoding, an odd\n"
"number of payload bytes, an unsupported word. The Python path then decodes it, and\n"
"raises what it raises.");

static PyObject *evt3_message(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2 || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "evt3_message(data, states) with a dict of states");
        return NULL;
    }
    if (no_state == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "gep_ros.wire._kernels: setup() was not called");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    const uint8_t *b = (const uint8_t *)view.buf;
    packet_fields f;
    PyObject *frame_id = NULL, *encoding = NULL, *key = NULL, *decoded = NULL, *result = NULL;
    PyObject *payload = NULL, *call_args[8];
    int status = parse_event_packet(b, view.len, &f);
    if (status == 0 && (f.encoding_len != 4 || memcmp(b + f.encoding_start, "evt3", 4) != 0
                        || f.events_len % 2))
        status = -1;
    if (status == 0)
        status = packet_strings(b, &f, &frame_id, &encoding);
    if (status == -2)
        goto fail;
    if (status != 0)
        goto done;
    key = Py_BuildValue("(OII)", evt3_name, (unsigned int)f.width, (unsigned int)f.height);
    payload = PyMemoryView_FromMemory((char *)b + f.events_offset, f.events_len, PyBUF_READ);
    if (key == NULL || payload == NULL)
        goto fail;
    PyObject *state = PyDict_GetItemWithError(args[1], key);  /* borrowed */
    if (state == NULL && PyErr_Occurred())
        goto fail;
    call_args[0] = payload;
    call_args[1] = state != NULL ? state : no_state;
    call_args[2] = PyTuple_GET_ITEM(key, 1);
    call_args[3] = PyTuple_GET_ITEM(key, 2);
    call_args[4] = Py_None;
    call_args[5] = Py_True;
    call_args[6] = NULL;  /* time_offset_us: 0, set below */
    call_args[7] = Py_None;
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL)
        goto fail;
    call_args[6] = zero;
    decoded = evt3_decode(NULL, call_args, 8);
    Py_DECREF(zero);
    if (decoded == NULL)
        goto fail;
    /* (bad, events, triggers, state, start, stop, first_us, marks) */
    if (PyLong_AsSsize_t(PyTuple_GET_ITEM(decoded, 0)) >= 0)
        goto done;  /* an unsupported word: the Python path raises its WireError */
    if (PyDict_SetItem(args[1], key, PyTuple_GET_ITEM(decoded, 3)) < 0)
        goto fail;
    result = Py_BuildValue("(iINIIKKOOOn)", (int)f.sec, (unsigned int)f.nanosec, frame_id,
                           (unsigned int)f.height, (unsigned int)f.width,
                           (unsigned long long)f.seq, (unsigned long long)f.time_base,
                           PyTuple_GET_ITEM(decoded, 1), PyTuple_GET_ITEM(decoded, 2),
                           PyTuple_GET_ITEM(decoded, 6), f.events_len);
    frame_id = NULL;  /* stolen by N */
    goto out;
done:
    result = Py_None;
    Py_INCREF(result);
    goto out;
fail:
    result = NULL;
out:
    Py_XDECREF(frame_id);
    Py_XDECREF(encoding);
    Py_XDECREF(key);
    Py_XDECREF(decoded);
    Py_XDECREF(payload);  /* a view of `view`'s memory, released next */
    PyBuffer_Release(&view);
    return result;
}

/* ---- dvs_msgs/EventArray ------------------------------------------------------------------ */

PyDoc_STRVAR(event_array_decode_doc,
"event_array_decode(buf, start, n, events)\n\n"
"Copy n dvs_msgs/Event records of little-endian CDR, the first at byte `start` of `buf`\n"
"(4-aligned: x, y, sec, nsec, polarity in 13 bytes), each later one 16 bytes on (2 bytes of\n"
"padding before sec), into `events` (16-byte records): t = sec * 1e9 + nsec, p = polarity\n"
"!= 0. The caller has checked that the bytes are there.");

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
    const uint8_t *src = (const uint8_t *)bb.buf + start;
    event_t *ev = (event_t *)eb.buf;
    Py_BEGIN_ALLOW_THREADS
    if (n > 0) {
        ev[0].x = load_u16(src);
        ev[0].y = load_u16(src + 2);
        ev[0].t = (int64_t)(int32_t)load_u32(src + 4) * 1000000000LL + load_u32(src + 8);
        ev[0].p = src[12] != 0;
        ev[0].pad[0] = ev[0].pad[1] = ev[0].pad[2] = 0;
    }
    /* Record k >= 1 starts at 16 k - 2: x, y, 2 bytes of padding, sec, nsec, polarity. */
    for (long long k = 1; k < n; k++) {
        const uint8_t *r = src + 16 * k - 2;
        event_t *e = &ev[k];
        e->t = (int64_t)(int32_t)load_u32(r + 6) * 1000000000LL + load_u32(r + 10);
        e->x = load_u16(r);
        e->y = load_u16(r + 2);
        e->p = r[14] != 0;
        e->pad[0] = e->pad[1] = e->pad[2] = 0;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&eb);
    PyBuffer_Release(&bb);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", (PyCFunction)(void (*)(void))setup, METH_FASTCALL, setup_doc},
    {"evt3_decode", (PyCFunction)(void (*)(void))evt3_decode, METH_FASTCALL, evt3_decode_doc},
    {"event_packet_fields", (PyCFunction)(void (*)(void))event_packet_fields, METH_FASTCALL,
     event_packet_fields_doc},
    {"evt3_message", (PyCFunction)(void (*)(void))evt3_message, METH_FASTCALL,
     evt3_message_doc},
    {"event_array_decode", (PyCFunction)(void (*)(void))event_array_decode, METH_FASTCALL,
     event_array_decode_doc},
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
    if (PyModule_AddIntConstant(m, "INTERFACE_VERSION", INTERFACE_VERSION) < 0
        || PyModule_AddIntConstant(m, "EVENT_SIZE", (long)sizeof(event_t)) < 0
        || PyModule_AddIntConstant(m, "TRIGGER_SIZE", (long)sizeof(trigger_t)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
