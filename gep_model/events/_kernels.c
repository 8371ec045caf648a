/*
 * Compiled kernels of gep_model.events for tensors in CPU memory: GEP's polarity image in
 * three passes (the counts, the histogram of the counts, the image) instead of a dozen torch
 * operations, each a pass over the events or the pixels with its own dispatch, and for the
 * pipeline's event records in two (the counts, histogrammed as they grow, then the image
 * drawn row by row into the resize); the histograms and the voxel grid of event records in
 * one pass each, in the order and arithmetic of their torch code
 * (gep_model/events/records.py); and the antialiased resize of fit_to_input in two passes
 * with torch's weights and arithmetic.
 *
 * Plain C99 against Python's C API and its buffer protocol only (no numpy or torch headers):
 * the Python side (polarity_rgb.py) passes the tensors' memory as numpy views and checks
 * shapes and types. The percentile's arithmetic from the histogram is numpy's for tensors
 * (polarity_rgb._host_thresholds, shared with torch's path on other devices) and its C port
 * here for records (count_threshold); the tests compare the two.
 * The image values are those of polarity_rgb.draw_polarity, bit for bit (the tests compare).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* x86-64 builds carry AVX2 / FMA versions of some loops, each in a function of its own
 * target, chosen at run time by what the CPU has; the package stays built for the baseline. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define X86_TARGETS 1
#include <immintrin.h>
#endif

/* Bumped whenever an argument list or a result changes; kernels.py refuses another. */
#define INTERFACE_VERSION 6

typedef struct {
    Py_buffer view;
    int held;
} buffer_arg;

static int get_buffer(PyObject *obj, buffer_arg *arg, int writable, Py_ssize_t itemsize,
                      const char *name)
{
    if (PyObject_GetBuffer(obj, &arg->view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous%s buffer", name,
                     writable ? " writable" : "");
        return -1;
    }
    arg->held = 1;
    if (arg->view.len % itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes are not whole %zd-byte items", name,
                     arg->view.len, itemsize);
        return -1;
    }
    return 0;
}

static void release(buffer_arg *args, int n)
{
    for (int k = 0; k < n; k++)
        if (args[k].held)
            PyBuffer_Release(&args[k].view);
}

PyDoc_STRVAR(polarity_counts_doc,
"polarity_counts(x, y, p, width, plane, counts, index) -> max_count\n\n"
"Count events per (polarity, pixel): x and y int64, p uint8 (0 OFF, 1 ON), all N long and\n"
"on the sensor; counts an int32 buffer of 2 * plane (plane = height * width), zeroed here.\n"
"Event i counts at p * plane + y * width + x, which is also written to `index` (int32, N;\n"
"None: not written). Returns the largest count.");

static PyObject *polarity_counts(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "polarity_counts(x, y, p, width, plane, counts, index)");
        return NULL;
    }
    buffer_arg b[5];
    memset(b, 0, sizeof b);
    PyObject *result = NULL;
    long long width = PyLong_AsLongLong(args[3]), plane = PyLong_AsLongLong(args[4]);
    if (PyErr_Occurred())
        return NULL;
    if (get_buffer(args[0], &b[0], 0, 8, "x") < 0 || get_buffer(args[1], &b[1], 0, 8, "y") < 0
        || get_buffer(args[2], &b[2], 0, 1, "p") < 0
        || get_buffer(args[5], &b[3], 1, 4, "counts") < 0
        || (args[6] != Py_None && get_buffer(args[6], &b[4], 1, 4, "index") < 0))
        goto done;
    const Py_ssize_t n = b[0].view.len / 8;
    if (b[1].view.len / 8 != n || b[2].view.len != n || (b[4].held && b[4].view.len / 4 != n)
        || b[3].view.len / 4 != 2 * plane || plane > INT32_MAX / 2 || width < 1) {
        PyErr_SetString(PyExc_ValueError, "polarity_counts: mismatched lengths");
        goto done;
    }
    const int64_t *x = (const int64_t *)b[0].view.buf, *y = (const int64_t *)b[1].view.buf;
    const uint8_t *p = (const uint8_t *)b[2].view.buf;
    int32_t *counts = (int32_t *)b[3].view.buf;
    int32_t *index = b[4].held ? (int32_t *)b[4].view.buf : NULL;
    int32_t most = 0;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    memset(counts, 0, (size_t)(2 * plane) * sizeof *counts);
    for (Py_ssize_t i = 0; i < n; i++) {
        const int64_t at = (int64_t)(p[i] != 0) * plane + y[i] * width + x[i];
        if (at < 0 || at >= 2 * plane) {
            bad = 1;
            break;
        }
        const int32_t c = ++counts[at];
        most = c > most ? c : most;
        if (index != NULL)
            index[i] = (int32_t)at;
    }
    Py_END_ALLOW_THREADS
    if (bad)
        PyErr_SetString(PyExc_ValueError, "polarity_counts: an event lies outside the counts");
    else
        result = PyLong_FromLong((long)most);
done:
    release(b, 5);
    return result;
}

/* The window, sensor and time-bin arguments the binned record kernels share. */
typedef struct {
    long long lo, hi, width, height, t0, span, bins;
} record_window;

/* Parse records, lo, hi, width, height, t0, span, bins (args[0..7]) and the output buffer
 * args[8], per_bin * bins planes of `itemsize`-byte items; -1 with an exception. Where times
 * are binned (span > 0, bins > 1), the window [lo, hi] must lie within [t0, t0 + span], so
 * that every bin computed is one of the output's. */
static int record_window_args(PyObject *const *args, const char *name, record_window *w,
                              long long per_bin, Py_ssize_t itemsize, buffer_arg *b)
{
    long long v[7];
    for (int k = 0; k < 7; k++)
        v[k] = PyLong_AsLongLong(args[1 + k]);
    if (PyErr_Occurred())
        return -1;
    *w = (record_window){v[0], v[1], v[2], v[3], v[4], v[5], v[6]};
    if (get_buffer(args[0], &b[0], 0, 16, "records") < 0
        || get_buffer(args[8], &b[1], 1, itemsize, "out") < 0)
        return -1;
    const long long plane = w->width * w->height;
    if (w->width < 1 || w->height < 1 || w->width > 0xFFFF + 1 || w->height > 0xFFFF + 1
        || w->bins < 1 || w->span < 0 || plane > INT32_MAX / (per_bin * w->bins)
        || (w->span > 0 && w->bins > 1
            && (w->span > INT64_MAX / w->bins
                || (w->lo <= w->hi && (w->lo < w->t0
                                       || (uint64_t)w->hi - (uint64_t)w->t0 > (uint64_t)w->span))))
        || b[1].view.len / itemsize != per_bin * w->bins * plane) {
        PyErr_Format(PyExc_ValueError, "%s: mismatched lengths or a window out of range", name);
        return -1;
    }
    return 0;
}

/* Whether record rec lies in the window and on the sensor; its t, x, y, on then. */
static inline int record_in(const uint8_t *rec, const record_window *w, int64_t *t,
                            uint16_t *x, uint16_t *y, int *on)
{
    memcpy(t, rec, 8);
    memcpy(x, rec + 8, 2);
    memcpy(y, rec + 10, 2);
    *on = rec[12] != 0;
    return *t >= w->lo && *t <= w->hi && *x < w->width && *y < w->height;
}

/* Outputs of at least this many bytes (past a core's cache) prefetch each record's cell this
 * many records ahead: in a C harness with 300k random events at 640x480, the polarity
 * counts 1.3x to 1.45x faster (8, 12 or 24 ahead did no better), the stacked histogram (10
 * bins) 9.9 to 5.0 ms, the voxel grid (5 bins) 5.7 to 4.2, the histogram 2.1 to 1.7;
 * outputs that a cache holds (346x260 counts) only lost. */
#define PREFETCH_BYTES (1 << 20)
#define PREFETCH_AHEAD 16
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH_WRITE(p) __builtin_prefetch((p), 1, 3)
#else
#define PREFETCH_WRITE(p) ((void)(p))
#endif

/* Sub-histograms that consecutive items alternate between, so that runs of one value (empty
 * pixels, first events) do not wait on each other's increments. */
#define SUB_HISTOGRAMS 4

/* Counts up to this many events a pixel are histogrammed as they are counted: an increment
 * that brings a count to k adds one to reached[k], the pixels that counted at least k. A
 * window with a larger count takes a pass over the pixels for its histogram instead. */
#define REACHED_BINS 256

/* The count at `rank` (from 0) among the sorted nonzero counts of hist (hist[k] pixels
 * counted k, 1 <= k < bins): the smallest k whose running sum passes rank, which is
 * numpy.searchsorted(cumsum(hist[1:]), rank, 'right') + 1. */
static long long ranked_count(const int64_t *hist, long long bins, long long rank)
{
    long long seen = 0;
    for (long long k = 1; k < bins; k++) {
        seen += hist[k];
        if (seen > rank)
            return k;
    }
    return bins;  /* only past the last nonzero count, which no caller asks for */
}

/* polarity_rgb._host_thresholds of one count plane's histogram, step by step in its types:
 * numpy's linear percentile of the nonzero counts, 0 without any. */
static float count_threshold(const int64_t *hist, long long bins, double percentile)
{
    long long nonzero = 0;
    for (long long k = 1; k < bins; k++)
        nonzero += hist[k];
    if (nonzero == 0)
        return 0.0f;
    const double virtual_index = (double)(nonzero - 1) * (percentile / 100.0);
    const long long low = (long long)virtual_index;  /* floor: the index is at least 0 */
    const double gamma = virtual_index - (double)low;
    const long long high = low + 1 < nonzero - 1 ? low + 1 : nonzero - 1;
    const float a = (float)ranked_count(hist, bins, low);
    const float b = (float)ranked_count(hist, bins, high);
    const float diff = b - a;
    if (gamma >= 0.5)
        return b - diff * (float)(1.0 - gamma);
    return a + diff * (float)gamma;
}

PyDoc_STRVAR(record_polarity_doc,
"record_polarity(records, lo, hi, width, height, percentile, counts, thresholds) -> bins\n\n"
"GEP's polarity image up to the drawing, from event records (16 bytes: int64 t at 0, uint16\n"
"x at 8, uint16 y at 10, uint8 p at 12, as gep_ros.wire.events.EVENT_DTYPE) in one call. The\n"
"events on the width x height sensor with lo <= t <= hi are counted per polarity and pixel\n"
"into counts (int32, 2 * height * width: the OFF plane, then the ON plane), the others\n"
"skipped as window_events drops them; thresholds (float32, 2: OFF, ON) get each plane's\n"
"percentile of its nonzero counts, as polarity_rgb._host_thresholds computes it from their\n"
"histogram. Returns bins, one more than the largest count.");

static PyObject *record_polarity(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "record_polarity(records, lo, hi, width, height, "
                                         "percentile, counts, thresholds)");
        return NULL;
    }
    buffer_arg b[3];
    memset(b, 0, sizeof b);
    PyObject *result = NULL;
    long long lo = PyLong_AsLongLong(args[1]), hi = PyLong_AsLongLong(args[2]);
    long long width = PyLong_AsLongLong(args[3]), height = PyLong_AsLongLong(args[4]);
    double percentile = PyFloat_AsDouble(args[5]);
    if (PyErr_Occurred())
        return NULL;
    if (get_buffer(args[0], &b[0], 0, 16, "records") < 0
        || get_buffer(args[6], &b[1], 1, 4, "counts") < 0
        || get_buffer(args[7], &b[2], 1, 4, "thresholds") < 0)
        goto done;
    const Py_ssize_t n = b[0].view.len / 16;
    const long long plane = width * height;
    if (width < 1 || height < 1 || width > 0xFFFF + 1 || height > 0xFFFF + 1
        || plane > INT32_MAX / 2 || b[1].view.len / 4 != 2 * plane || b[2].view.len / 4 != 2
        || !(percentile >= 0.0 && percentile <= 100.0)) {
        PyErr_SetString(PyExc_ValueError,
                        "record_polarity: mismatched lengths or a percentile outside [0, 100]");
        goto done;
    }
    const uint8_t *rec = (const uint8_t *)b[0].view.buf;
    int32_t *counts = (int32_t *)b[1].view.buf;
    float *thresholds = (float *)b[2].view.buf;
    /* reached[j][q][k]: plane q's pixels that counted at least k, from the records i with i
     * % SUB_HISTOGRAMS == j (so that runs of first events do not wait on one another's
     * increments); at most plane each, as each pixel reaches each count once. */
    int32_t reached[SUB_HISTOGRAMS][2][REACHED_BINS + 1];
    int64_t small[2 * (REACHED_BINS + 1)];
    int64_t *hist = NULL;
    int32_t most = 0;
    long long bins = 1;
    const record_window w = {lo, hi, width, height, lo, 0, 1};
    /* Counts past a core's cache (640x480: 2.4 MB) take each increment's line in ahead:
     * the random increments otherwise wait for their lines one by one. A look at the
     * record PREFETCH_AHEAD on, rather than record_stack's queue, which measured 1.4x
     * slower here (1.77 against 1.24 ms at 640x480 with 300k events). */
    const Py_ssize_t ahead =
        2 * plane * (long long)sizeof *counts >= PREFETCH_BYTES ? n - PREFETCH_AHEAD : 0;
    Py_BEGIN_ALLOW_THREADS
    memset(reached, 0, sizeof reached);
    memset(counts, 0, (size_t)(2 * plane) * sizeof *counts);
    for (Py_ssize_t i = 0; i < n; i++, rec += 16) {
        int64_t t;
        uint16_t x, y;
        int on;
        if (i < ahead) {
            const uint8_t *next = rec + 16 * PREFETCH_AHEAD;
            memcpy(&x, next + 8, 2);
            memcpy(&y, next + 10, 2);
            if (x < width && y < height)
                PREFETCH_WRITE(&counts[(next[12] != 0) * plane + (long long)y * width + x]);
        }
        if (!record_in(rec, &w, &t, &x, &y, &on))
            continue;
        const int32_t c = ++counts[on * plane + (long long)y * width + x];
        most = c > most ? c : most;
        reached[i % SUB_HISTOGRAMS][on][c < REACHED_BINS ? c : REACHED_BINS] += 1;
    }
    bins = (long long)most + 1;
    hist = bins <= REACHED_BINS ? small : PyMem_RawCalloc((size_t)(2 * bins), sizeof *hist);
    if (hist == small) {
        /* hist[k] = reached[k] - reached[k + 1]; the pixels that never counted are not
         * needed (the percentile is of the nonzero counts). */
        for (int q = 0; q < 2; q++)
            for (long long k = 1; k < bins; k++) {
                int64_t at_least = 0, past = 0;
                for (int j = 0; j < SUB_HISTOGRAMS; j++) {
                    at_least += reached[j][q][k];
                    past += reached[j][q][k + 1];
                }
                hist[q * bins + k] = at_least - past;
            }
    } else if (hist != NULL) {
        for (int q = 0; q < 2; q++)
            for (long long k = 0; k < plane; k++)
                hist[q * bins + counts[q * plane + k]] += 1;
    }
    if (hist != NULL)
        for (int q = 0; q < 2; q++)
            thresholds[q] = count_threshold(hist + q * bins, bins, percentile);
    Py_END_ALLOW_THREADS
    if (hist == NULL)
        PyErr_NoMemory();
    else
        result = PyLong_FromLongLong(bins);
    if (hist != small)
        PyMem_RawFree(hist);
done:
    release(b, 3);
    return result;
}

/* One record's cell and value in a binned output. */
typedef struct {
    long long cell;
    float share;
} record_item;

enum { STACK_TIME_MAJOR, STACK_POLARITY_MAJOR, VOXEL_LEFT, VOXEL_RIGHT };

static inline long long voxel_share(const record_window *w, int64_t t, int on, int right,
                                    double *share);

/* The cell (and for the voxel grid the share) of a record in the window; 0 for the others. */
static inline int record_item_of(const uint8_t *rec, const record_window *w, int kind,
                                 record_item *item)
{
    int64_t t;
    uint16_t x, y;
    int on;
    if (!record_in(rec, w, &t, &x, &y, &on))
        return 0;
    const long long pixel = (long long)y * w->width + x, plane = w->width * w->height;
    if (kind == VOXEL_LEFT || kind == VOXEL_RIGHT) {
        double share;
        item->cell = voxel_share(w, t, on, kind == VOXEL_RIGHT, &share) * plane + pixel;
        item->share = (float)share;
        return 1;
    }
    long long bin = 0;
    if (w->span > 0 && w->bins > 1) {
        /* t0 <= lo <= t: the elapsed time and its product with bins fit (checked). */
        bin = (long long)(t - w->t0) * w->bins / w->span;
        bin = bin < w->bins ? bin : w->bins - 1;
    }
    item->cell = (kind == STACK_POLARITY_MAJOR ? w->bins * on + bin : 2 * bin + on) * plane
                 + pixel;
    return 1;
}

/*
 * The records in the window, in order. Where the output is past a core's cache, each is found
 * PREFETCH_AHEAD records before it is taken and its cell prefetched then, so that the random
 * updates do not wait for their lines one by one, and its cell is computed once.
 */

typedef struct {
    const uint8_t *rec;
    Py_ssize_t n, next;  /* records, and the next one to look at */
    unsigned head, count;
    int prefetch;
    record_item items[PREFETCH_AHEAD];
} record_queue;

static inline int queue_next(record_queue *q, const record_window *w, float *out, int kind,
                             record_item *item)
{
    if (!q->prefetch) {  /* an output a cache holds: no queue, which would only cost */
        while (q->next < q->n)
            if (record_item_of(q->rec + 16 * q->next++, w, kind, item))
                return 1;
        return 0;
    }
    while (q->count < PREFETCH_AHEAD && q->next < q->n) {
        record_item *slot = &q->items[(q->head + q->count) % PREFETCH_AHEAD];
        if (record_item_of(q->rec + 16 * q->next++, w, kind, slot)) {
            if (q->prefetch)
                PREFETCH_WRITE(&out[slot->cell]);
            q->count++;
        }
    }
    if (q->count == 0)
        return 0;
    *item = q->items[q->head];
    q->head = (q->head + 1) % PREFETCH_AHEAD;
    q->count--;
    return 1;
}

PyDoc_STRVAR(record_stack_doc,
"record_stack(records, lo, hi, width, height, t0, span, bins, counts, polarity_major, cutoff)\n\n"
"Count event records (as record_polarity reads them; lo <= t <= hi and on the sensor) per time\n"
"bin, polarity and pixel into counts (float32, 2 * bins planes of height x width, zeroed\n"
"here), each count stopping at cutoff (at most 2^24, where float32 still counts one by one):\n"
"bin = floor((t - t0) * bins / span) within [0, bins - 1] (0 where span is 0), as\n"
"stacked_histogram.time_bins for integer times; plane 2 * bin + on, or bins * on + bin with\n"
"polarity_major. One bin is the two-plane histogram.");

static PyObject *record_stack(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "record_stack(records, lo, hi, width, height, t0, "
                        "span, bins, counts, polarity_major, cutoff)");
        return NULL;
    }
    buffer_arg b[2];
    memset(b, 0, sizeof b);
    record_window w;
    PyObject *result = NULL;
    const int polarity_major = PyObject_IsTrue(args[9]);
    const long long limit = PyLong_AsLongLong(args[10]);
    if (polarity_major < 0 || (limit == -1 && PyErr_Occurred()))
        return NULL;
    if (limit < 1 || limit > (1LL << 24)) {
        PyErr_SetString(PyExc_ValueError, "record_stack: cutoff outside [1, 2^24]");
        return NULL;
    }
    if (record_window_args(args, "record_stack", &w, 2, 4, b) < 0)
        goto done;
    const Py_ssize_t n = b[0].view.len / 16;
    const long long plane = w.width * w.height;
    const uint8_t *rec = (const uint8_t *)b[0].view.buf;
    /* Whole numbers up to 2^24 are exact in float32, and so is adding one to them. */
    float *counts = (float *)b[1].view.buf;
    const float cutoff = (float)limit;
    const size_t size = (size_t)(2 * w.bins * plane);
    Py_BEGIN_ALLOW_THREADS
    memset(counts, 0, size * sizeof *counts);
    record_queue q = {.rec = rec, .n = n, .prefetch = size * sizeof *counts >= PREFETCH_BYTES};
    record_item item;
    while (queue_next(&q, &w, counts, polarity_major ? STACK_POLARITY_MAJOR : STACK_TIME_MAJOR,
                      &item)) {
        float *count = &counts[item.cell];
        *count += *count < cutoff;
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release(b, 2);
    return result;
}

PyDoc_STRVAR(record_voxels_doc,
"record_voxels(records, lo, hi, width, height, t0, span, bins, grid)\n\n"
"voxel_grid.VoxelGrid.render of event records (as record_polarity reads them) into grid\n"
"(float32, bins planes of height x width, zeroed here), in torch's arithmetic: tau =\n"
"float64(t - t0) * (bins - 1) / span (0 where span is 0 or bins is 1), the polarity value\n"
"(+1 / -1) times 1 - frac and frac in float64, each rounded to float32, then added in\n"
"float32 in the order of torch.bincount over the left shares and then the right shares.");

/* One record's left or right bin and its share (float64, rounded to float32 by the caller). */
static inline long long voxel_share(const record_window *w, int64_t t, int on, int right,
                                    double *share)
{
    double tau = 0.0;
    if (w->span > 0 && w->bins > 1)
        tau = (double)(t - w->t0) * (double)(w->bins - 1) / (double)w->span;
    /* floor: tau is at least 0 (t0 <= t) and at most bins - 1 (t <= t0 + span). */
    double left = (double)(long long)tau;
    left = left > (double)(w->bins - 1) ? (double)(w->bins - 1) : left;
    const double right_share = tau - left, value = (double)on * 2.0 - 1.0;
    long long bin = (long long)left;
    if (right) {
        *share = value * right_share;
        bin = bin + 1 < w->bins ? bin + 1 : w->bins - 1;
    } else
        *share = value * (1.0 - right_share);
    return bin;
}

static PyObject *record_voxels(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "record_voxels(records, lo, hi, width, height, t0, "
                        "span, bins, grid)");
        return NULL;
    }
    buffer_arg b[2];
    memset(b, 0, sizeof b);
    record_window w;
    PyObject *result = NULL;
    if (record_window_args(args, "record_voxels", &w, 1, 4, b) < 0)
        goto done;
    const Py_ssize_t n = b[0].view.len / 16;
    const long long plane = w.width * w.height;
    float *grid = (float *)b[1].view.buf;
    const size_t size = (size_t)(w.bins * plane);
    Py_BEGIN_ALLOW_THREADS
    memset(grid, 0, size * sizeof *grid);
    for (int right = 0; right < 2; right++) {
        record_queue q = {.rec = (const uint8_t *)b[0].view.buf, .n = n,
                          .prefetch = size * sizeof *grid >= PREFETCH_BYTES};
        record_item item;
        while (queue_next(&q, &w, grid, right ? VOXEL_RIGHT : VOXEL_LEFT, &item))
            grid[item.cell] += item.share;
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release(b, 2);
    return result;
}

PyDoc_STRVAR(count_histogram_doc,
"count_histogram(index, p, counts, bins, seen)\n\n"
"seen (int64, 2 * bins, zeroed by the caller): for each event i, seen[p * bins + k] += 1\n"
"where k = counts[index[i]]. A pixel that counted k events is seen k times, so seen / k is\n"
"the number of pixels of each polarity that counted k (polarity_rgb.event_count_histogram).");

static PyObject *count_histogram(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "count_histogram(index, p, counts, bins, seen)");
        return NULL;
    }
    buffer_arg b[4];
    memset(b, 0, sizeof b);
    PyObject *result = NULL;
    long long bins = PyLong_AsLongLong(args[3]);
    if (PyErr_Occurred())
        return NULL;
    if (get_buffer(args[0], &b[0], 0, 4, "index") < 0 || get_buffer(args[1], &b[1], 0, 1, "p") < 0
        || get_buffer(args[2], &b[2], 0, 4, "counts") < 0
        || get_buffer(args[4], &b[3], 1, 8, "seen") < 0)
        goto done;
    const Py_ssize_t n = b[0].view.len / 4, size = b[2].view.len / 4;
    if (b[1].view.len != n || b[3].view.len / 8 != 2 * bins) {
        PyErr_SetString(PyExc_ValueError, "count_histogram: mismatched lengths");
        goto done;
    }
    const int32_t *index = (const int32_t *)b[0].view.buf, *counts = (const int32_t *)b[2].view.buf;
    const uint8_t *p = (const uint8_t *)b[1].view.buf;
    int64_t *seen = (int64_t *)b[3].view.buf;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const int32_t at = index[i];
        if (at < 0 || at >= size || counts[at] < 0 || counts[at] >= bins) {
            bad = 1;
            break;
        }
        seen[(p[i] != 0) * bins + counts[at]] += 1;
    }
    Py_END_ALLOW_THREADS
    if (bad)
        PyErr_SetString(PyExc_ValueError, "count_histogram: an index or a count out of range");
    else
        result = Py_NewRef(Py_None);
done:
    release(b, 4);
    return result;
}

PyDoc_STRVAR(pixel_histogram_doc,
"pixel_histogram(counts, bins, hist)\n\n"
"hist (int64, 2 * bins, zeroed by the caller): hist[q * bins + k] is the number of pixels of\n"
"the count plane q (the two halves of counts, int32) that counted k, for k < bins; the same\n"
"as count_histogram's seen / k for k >= 1, by a pass over the pixels instead of the events.");

static PyObject *pixel_histogram(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "pixel_histogram(counts, bins, hist)");
        return NULL;
    }
    buffer_arg b[2];
    memset(b, 0, sizeof b);
    PyObject *result = NULL;
    int64_t *sub = NULL;
    long long bins = PyLong_AsLongLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (get_buffer(args[0], &b[0], 0, 4, "counts") < 0
        || get_buffer(args[2], &b[1], 1, 8, "hist") < 0)
        goto done;
    const Py_ssize_t size = b[0].view.len / 4, plane = size / 2;
    if (bins < 1 || size % 2 || b[1].view.len / 8 != 2 * bins) {
        PyErr_SetString(PyExc_ValueError, "pixel_histogram: mismatched lengths");
        goto done;
    }
    sub = PyMem_Calloc((size_t)(SUB_HISTOGRAMS * 2 * bins), sizeof *sub);
    if (sub == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const int32_t *counts = (const int32_t *)b[0].view.buf;
    int64_t *hist = (int64_t *)b[1].view.buf;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    for (int q = 0; q < 2 && !bad; q++) {
        const int32_t *c = counts + q * plane;
        int64_t *h = sub + q * bins;  /* sub-histogram j of plane q at j * 2 * bins */
        Py_ssize_t i = 0;
        for (; i + SUB_HISTOGRAMS <= plane; i += SUB_HISTOGRAMS) {
            uint32_t any = 0;
            for (int j = 0; j < SUB_HISTOGRAMS; j++)
                any |= (uint32_t)c[i + j] >= (uint32_t)bins;
            if (any) {
                bad = 1;
                break;
            }
            for (int j = 0; j < SUB_HISTOGRAMS; j++)
                h[j * 2 * bins + c[i + j]] += 1;
        }
        for (; i < plane && !bad; i++) {
            if ((uint32_t)c[i] >= (uint32_t)bins)
                bad = 1;
            else
                h[c[i]] += 1;
        }
    }
    if (!bad)
        for (int j = 0; j < SUB_HISTOGRAMS; j++)
            for (long long k = 0; k < 2 * bins; k++)
                hist[k] += sub[j * 2 * bins + k];
    Py_END_ALLOW_THREADS
    if (bad)
        PyErr_SetString(PyExc_ValueError, "pixel_histogram: a count below 0 or at or above bins");
    else
        result = Py_NewRef(Py_None);
done:
    PyMem_Free(sub);
    release(b, 2);
    return result;
}

/*
 * The pixels of the polarity image from the two count planes through the tables of
 * normalised values (OFF's, then ON's, last + 1 each). Without branches (which polarity wins
 * is the data's coin toss): w is 1.0 where OFF wins, and 1 - ink * w, 1 - ink * (1 - w) are
 * exactly 1 - ink or 1. A count past the table (not from polarity_counts) is clamped and
 * reported (nonzero return).
 */
#define DRAW_PIXEL(k)                                                                        \
    do {                                                                                       \
        uint32_t off_c = (uint32_t)off_counts[k], on_c = (uint32_t)on_counts[k];               \
        bad |= (off_c > last) | (on_c > last);                                                 \
        off_c = off_c < last ? off_c : last;                                                   \
        on_c = on_c < last ? on_c : last;                                                      \
        const float off = off_table[off_c], on = on_table[on_c];                               \
        const float w = (float)(off > on);                                                     \
        const float ink = off > on ? off : on;                                                 \
        red[k] = 1.0f - ink * w;                                                               \
        green[k] = 1.0f - ink;                                                                 \
        blue[k] = 1.0f - ink * (1.0f - w);                                                     \
    } while (0)

#define DRAW_ARGS                                                                            \
    const int32_t *off_counts, const int32_t *on_counts, Py_ssize_t plane, const float *table, \
    uint32_t last, float *red, float *green, float *blue

static int draw_plain(DRAW_ARGS)
{
    const float *off_table = table, *on_table = table + last + 1;
    uint32_t bad = 0;
    for (Py_ssize_t k = 0; k < plane; k++)
        DRAW_PIXEL(k);
    return bad != 0;
}

#if defined(X86_TARGETS)
/* The same, eight pixels a step with AVX2: the same operations on each pixel, the same bits
 * (products by 0 and 1 and subtractions from 1 of values in [0, 1] are exact). */
__attribute__((target("avx2"))) static int draw_avx2(DRAW_ARGS)
{
    const float *off_table = table, *on_table = table + last + 1;
    const __m256i top = _mm256_set1_epi32((int)last);
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256i over = _mm256_setzero_si256();
    Py_ssize_t k = 0;
    for (; k + 8 <= plane; k += 8) {
        __m256i off_c = _mm256_loadu_si256((const __m256i *)(off_counts + k));
        __m256i on_c = _mm256_loadu_si256((const __m256i *)(on_counts + k));
        __m256i off_in = _mm256_min_epu32(off_c, top), on_in = _mm256_min_epu32(on_c, top);
        over = _mm256_or_si256(over, _mm256_or_si256(_mm256_xor_si256(off_c, off_in),
                                                     _mm256_xor_si256(on_c, on_in)));
        __m256 off = _mm256_i32gather_ps(off_table, off_in, 4);
        __m256 on = _mm256_i32gather_ps(on_table, on_in, 4);
        __m256 wins = _mm256_cmp_ps(off, on, _CMP_GT_OQ);
        __m256 w = _mm256_and_ps(wins, one);
        __m256 ink = _mm256_blendv_ps(on, off, wins);
        _mm256_storeu_ps(red + k, _mm256_sub_ps(one, _mm256_mul_ps(ink, w)));
        _mm256_storeu_ps(green + k, _mm256_sub_ps(one, ink));
        _mm256_storeu_ps(blue + k, _mm256_sub_ps(one, _mm256_mul_ps(ink, _mm256_sub_ps(one, w))));
    }
    uint32_t bad = !_mm256_testz_si256(over, over);
    for (; k < plane; k++)
        DRAW_PIXEL(k);
    return bad != 0;
}
#endif

static int draw_pixels(DRAW_ARGS)
{
#if defined(X86_TARGETS)
    if (__builtin_cpu_supports("avx2"))
        return draw_avx2(off_counts, on_counts, plane, table, last, red, green, blue);
#endif
    return draw_plain(off_counts, on_counts, plane, table, last, red, green, blue);
}

/* The normalised intensity of every count value below bins, per polarity (OFF's, then ON's):
 * min(c, s) / s in float32 as torch computes it, looked up instead of divided per pixel. A
 * threshold s of 0 (no events) divides by 1. NULL when out of memory (no exception set). */
static float *polarity_table(long long bins, double off_threshold, double on_threshold)
{
    float *table = PyMem_RawMalloc((size_t)(2 * bins) * sizeof *table);
    if (table == NULL)
        return NULL;
    const float scale[2] = {(float)off_threshold > 0.0f ? (float)off_threshold : 1.0f,
                            (float)on_threshold > 0.0f ? (float)on_threshold : 1.0f};
    for (int row = 0; row < 2; row++)
        for (long long k = 0; k < bins; k++) {
            const float c = (float)k, s = scale[row];
            table[row * bins + k] = (c < s ? c : s) / s;
        }
    return table;
}

PyDoc_STRVAR(draw_polarity_doc,
"draw_polarity(counts, plane, bins, off_threshold, on_threshold, image)\n\n"
"GEP's polarity image from the int32 counts (OFF plane, then ON; each below bins) into image\n"
"(float32, 3 * plane, rows R, G, B): each count clipped at its polarity's threshold and\n"
"divided by it (a threshold of 0, no events, divides by 1), then the dominant polarity drawn\n"
"on white as polarity_rgb.draw_polarity draws it: ON (ties too) paints (1, 1 - on, 1 - on),\n"
"OFF paints (1 - off, 1 - off, 1).");

static PyObject *draw_polarity(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "draw_polarity(counts, plane, bins, off_threshold, on_threshold, image)");
        return NULL;
    }
    buffer_arg b[2];
    memset(b, 0, sizeof b);
    PyObject *result = NULL;
    float *table = NULL;
    long long plane = PyLong_AsLongLong(args[1]), bins = PyLong_AsLongLong(args[2]);
    double off_t = PyFloat_AsDouble(args[3]), on_t = PyFloat_AsDouble(args[4]);
    if (PyErr_Occurred())
        return NULL;
    if (get_buffer(args[0], &b[0], 0, 4, "counts") < 0
        || get_buffer(args[5], &b[1], 1, 4, "image") < 0)
        goto done;
    if (b[0].view.len / 4 != 2 * plane || b[1].view.len / 4 != 3 * plane || bins < 1) {
        PyErr_SetString(PyExc_ValueError, "draw_polarity: mismatched lengths");
        goto done;
    }
    table = polarity_table(bins, off_t, on_t);
    if (table == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const int32_t *off_counts = (const int32_t *)b[0].view.buf, *on_counts = off_counts + plane;
    float *red = (float *)b[1].view.buf, *green = red + plane, *blue = green + plane;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    bad = draw_pixels(off_counts, on_counts, plane, table, (uint32_t)(bins - 1), red, green,
                      blue);
    Py_END_ALLOW_THREADS
    if (bad)
        PyErr_SetString(PyExc_ValueError, "draw_polarity: a count at or above bins");
    else
        result = Py_NewRef(Py_None);
done:
    PyMem_RawFree(table);
    release(b, 2);
    return result;
}

/* ---- antialiased bilinear resize (fit_to_input) -------------------------------------------- */

/*
 * torch's CPU kernel for F.interpolate(mode='bilinear', antialias=True) on float32: along
 * the rows, then along the columns (torch's two passes, as a ring of rows resized along the
 * rows just before the columns read them: RESIZE_LOOPS); each output is its first
 * tap's product, then the other taps added in order, by fused multiply-adds where torch's
 * build uses them (x86 with FMA, aarch64) and by a product then a sum where it does not.
 * Python (fit.py) takes the taps and weights from torch itself and checks once per process
 * which of the two variants gives torch's bits; the two are one loop nest, written once.
 *
 * The rows come from an image (resize_aa) or are drawn one at a time from the polarity
 * image's counts (draw_resize): the same values as draw_polarity's image, which is then
 * never written whole.
 */
typedef struct {
    const float *image;     /* (channels, height, width), or NULL: rows drawn from counts */
    const int32_t *counts;  /* the OFF, then the ON count plane */
    const float *table;     /* polarity_table's, with counts below last + 1 */
    uint32_t last;
    int bgr;                /* channels B, G, R instead of R, G, B */
    float *row;             /* R, G, B of the row drawn last: 3 * width */
    int bad;                /* a count above last was drawn (clamped) */
} resize_source;

/* Row y of channel c; a drawn row is drawn once, for its first channel. */
static inline const float *source_row(resize_source *s, Py_ssize_t c, Py_ssize_t y,
                                      Py_ssize_t height, Py_ssize_t width)
{
    if (s->image != NULL)
        return s->image + (c * height + y) * width;
    if (c == 0) {
        const int32_t *off = s->counts + y * width;
        s->bad |= draw_pixels(off, off + height * width, width, s->table, s->last, s->row,
                              s->row + width, s->row + 2 * width);
    }
    return s->row + (s->bgr ? 2 - c : c) * width;
}

#define RESIZE_ROW(MADD, x)                                                                  \
    do {                                                                                       \
        const float *p = line + x_start[x], *w = x_weights + (x) * x_taps;                    \
        float acc = p[0] * w[0];                                                               \
        for (int32_t j = 1; j < x_count[x]; j++)                                               \
            acc = MADD(p[j], w[j], acc);                                                       \
        out[x] = acc;                                                                          \
    } while (0)

/* Along the rows, one row: line (the source row) into out. */
#define RESIZE_LINE(MADD)                                                                    \
    for (Py_ssize_t x = 0; x < out_w; x++)                                                     \
        RESIZE_ROW(MADD, x)

/*
 * The output rows in order. Before each, the source rows its column taps reach are resized
 * along the rows (LINE, given line and out), every channel, into tmp: a ring of y_taps rows
 * a channel, since an output row's taps start no lower than the previous row's and span at
 * most y_taps rows, so that what the columns read is still in a core's cache. Then the
 * output row, channel by channel, from its taps' rows.
 */
#define RESIZE_LOOPS(MADD, LINE)                                                             \
    do {                                                                                       \
        Py_ssize_t next = 0; /* the first source row not yet resized along the rows */         \
        for (Py_ssize_t y = 0; y < out_h; y++) {                                               \
            for (; next < (Py_ssize_t)y_start[y] + y_count[y]; next++)                         \
                for (Py_ssize_t c = 0; c < channels; c++) {                                    \
                    const float *line = source_row(src, c, next, height, width);               \
                    float *out = tmp + (c * y_taps + next % y_taps) * out_w;                   \
                    LINE;                                                                      \
                }                                                                              \
            const float *w = y_weights + y * y_taps;                                           \
            for (Py_ssize_t c = 0; c < channels; c++) {                                        \
                const float *rows = tmp + c * y_taps * out_w;                                  \
                const float *line = rows + (y_start[y] % y_taps) * out_w;                      \
                float *out = dst + (c * out_h + y) * out_w;                                    \
                for (Py_ssize_t x = 0; x < out_w; x++)                                         \
                    out[x] = line[x] * w[0];                                                   \
                for (int32_t j = 1; j < y_count[y]; j++) {                                     \
                    const float wj = w[j];                                                     \
                    line = rows + ((y_start[y] + j) % y_taps) * out_w;                         \
                    for (Py_ssize_t x = 0; x < out_w; x++)                                     \
                        out[x] = MADD(line[x], wj, out[x]);                                    \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    } while (0)

#define RESIZE_ARGS                                                                          \
    resize_source *src, float *tmp, float *dst, Py_ssize_t channels, Py_ssize_t height,        \
    Py_ssize_t width, Py_ssize_t out_h, Py_ssize_t out_w, const int32_t *x_start,              \
    const int32_t *x_count, const float *x_weights, Py_ssize_t x_taps, const int32_t *y_start, \
    const int32_t *y_count, const float *y_weights, Py_ssize_t y_taps

#define MUL_ADD(a, b, c) ((c) + (a) * (b))
static void resize_separate(RESIZE_ARGS)
{
    RESIZE_LOOPS(MUL_ADD, RESIZE_LINE(MUL_ADD));
}

#if defined(X86_TARGETS)
#define FMA_AT_RUN_TIME 1
#define FUSED(a, b, c) __builtin_fmaf(a, b, c)
__attribute__((target("fma"))) static void resize_fma(RESIZE_ARGS)
{
    RESIZE_LOOPS(FUSED, RESIZE_LINE(FUSED));
}

/*
 * One row with AVX2: eight outputs that take the same number of taps are one step of
 * gathers (the other outputs one at a time, as RESIZE_LINE); the same operations on each
 * output, so the same bits. by_tap: the weights tap by tap, so that eight outputs' weights
 * of a tap are one load.
 */
__attribute__((target("avx2,fma"))) static inline void resize_line_avx2(
    const float *line, float *out, Py_ssize_t out_w, const int32_t *x_start,
    const int32_t *x_count, const float *x_weights, Py_ssize_t x_taps, const float *by_tap)
{
    Py_ssize_t x = 0;
    for (; x + 8 <= out_w; x += 8) {
        const int32_t taps = x_count[x];
        const __m256i counts = _mm256_loadu_si256((const __m256i *)(x_count + x));
        if (_mm256_movemask_epi8(_mm256_cmpeq_epi32(counts, _mm256_set1_epi32(taps))) != -1) {
            for (Py_ssize_t k = x; k < x + 8; k++)
                RESIZE_ROW(FUSED, k);
            continue;
        }
        const __m256i at = _mm256_loadu_si256((const __m256i *)(x_start + x));
        __m256 acc = _mm256_mul_ps(_mm256_i32gather_ps(line, at, 4),
                                   _mm256_loadu_ps(by_tap + x));
        for (int32_t j = 1; j < taps; j++)
            acc = _mm256_fmadd_ps(_mm256_i32gather_ps(line + j, at, 4),
                                  _mm256_loadu_ps(by_tap + j * out_w + x), acc);
        _mm256_storeu_ps(out + x, acc);
    }
    for (; x < out_w; x++)
        RESIZE_ROW(FUSED, x);
}

/* The same with AVX2 along the rows; along the columns the compiler vectorises the loops. */
__attribute__((target("avx2,fma"))) static void resize_fused_avx2(RESIZE_ARGS)
{
    float *by_tap = PyMem_RawMalloc(sizeof(float) * (size_t)(x_taps * out_w));
    if (by_tap == NULL) {
        resize_fma(src, tmp, dst, channels, height, width, out_h, out_w, x_start, x_count,
                   x_weights, x_taps, y_start, y_count, y_weights, y_taps);
        return;
    }
    for (Py_ssize_t x = 0; x < out_w; x++)
        for (Py_ssize_t j = 0; j < x_taps; j++)
            by_tap[j * out_w + x] = x_weights[x * x_taps + j];
    RESIZE_LOOPS(FUSED, resize_line_avx2(line, out, out_w, x_start, x_count, x_weights,
                                         x_taps, by_tap));
    PyMem_RawFree(by_tap);
}

/* Fused multiply-adds, with AVX2 where the CPU has it (the caller has checked FMA). */
static void resize_fused(RESIZE_ARGS)
{
    if (__builtin_cpu_supports("avx2"))
        resize_fused_avx2(src, tmp, dst, channels, height, width, out_h, out_w, x_start,
                          x_count, x_weights, x_taps, y_start, y_count, y_weights, y_taps);
    else
        resize_fma(src, tmp, dst, channels, height, width, out_h, out_w, x_start, x_count,
                   x_weights, x_taps, y_start, y_count, y_weights, y_taps);
}
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define FUSED(a, b, c) __builtin_fmaf(a, b, c)
static void resize_fused(RESIZE_ARGS)
{
    RESIZE_LOOPS(FUSED, RESIZE_LINE(FUSED));
}
#else
#define NO_FUSED 1
#endif

/* A resize's arguments after its source: tmp, dst, channels, height, width, out_h, out_w,
 * x_start, x_count, x_weights, y_start, y_count, y_weights, fused (14). */
#define RESIZE_PLAN_ARGS 14

typedef struct {
    buffer_arg b[8];  /* tmp, dst, x_start, x_count, x_weights, y_start, y_count, y_weights */
    long long channels, height, width, out_h, out_w;
    Py_ssize_t x_taps, y_taps;
    int fused;
} resize_plan;

/* Parse a resize's arguments (see RESIZE_PLAN_ARGS) and check that every tap lies within its
 * row or column, so that no read leaves the source or tmp; -1 with an exception. The
 * caller releases plan->b (8 buffers) either way. */
static int resize_plan_args(PyObject *const *args, const char *name, resize_plan *plan)
{
    memset(plan->b, 0, sizeof plan->b);
    long long dims[5];
    for (int k = 0; k < 5; k++)
        dims[k] = PyLong_AsLongLong(args[2 + k]);
    plan->fused = PyObject_IsTrue(args[13]);
    if (PyErr_Occurred() || plan->fused < 0)
        return -1;
    plan->channels = dims[0], plan->height = dims[1], plan->width = dims[2];
    plan->out_h = dims[3], plan->out_w = dims[4];
    if (dims[0] < 1 || dims[1] < 1 || dims[2] < 1 || dims[3] < 1 || dims[4] < 1) {
        PyErr_Format(PyExc_ValueError, "%s: sizes must be positive", name);
        return -1;
    }
    static const char *names[8] = {"tmp", "dst", "x_start", "x_count", "x_weights",
                                   "y_start", "y_count", "y_weights"};
    static const int slot[8] = {0, 1, 7, 8, 9, 10, 11, 12};
    for (int k = 0; k < 8; k++)
        if (get_buffer(args[slot[k]], &plan->b[k], k < 2, 4, names[k]) < 0)
            return -1;
    const long long out_h = plan->out_h, out_w = plan->out_w;
    plan->x_taps = plan->b[4].view.len / 4 / out_w;
    plan->y_taps = plan->b[7].view.len / 4 / out_h;
    if (plan->b[0].view.len / 4 != plan->channels * plan->y_taps * out_w
        || plan->b[1].view.len / 4 != plan->channels * out_h * out_w
        || plan->b[2].view.len / 4 != out_w || plan->b[3].view.len / 4 != out_w
        || plan->b[5].view.len / 4 != out_h || plan->b[6].view.len / 4 != out_h
        || plan->b[4].view.len / 4 % out_w || plan->b[7].view.len / 4 % out_h
        || plan->y_taps < 1) {
        PyErr_Format(PyExc_ValueError, "%s: mismatched lengths", name);
        return -1;
    }
    for (int axis = 0; axis < 2; axis++) {
        const int32_t *start = plan->b[axis ? 5 : 2].view.buf;
        const int32_t *count = plan->b[axis ? 6 : 3].view.buf;
        const Py_ssize_t n = axis ? out_h : out_w, taps = axis ? plan->y_taps : plan->x_taps;
        const long long size = axis ? plan->height : plan->width;
        for (Py_ssize_t k = 0; k < n; k++)
            if (start[k] < 0 || count[k] < 1 || count[k] > taps
                || (long long)start[k] + count[k] > size) {
                PyErr_Format(PyExc_ValueError, "%s: a tap outside the image", name);
                return -1;
            }
    }
#if defined(NO_FUSED)
    if (plan->fused) {
        PyErr_Format(PyExc_ValueError, "%s: this build has no fused multiply-add", name);
        return -1;
    }
#elif defined(FMA_AT_RUN_TIME)
    if (plan->fused && !__builtin_cpu_supports("fma")) {
        PyErr_Format(PyExc_ValueError, "%s: this CPU has no fused multiply-add", name);
        return -1;
    }
#endif
    return 0;
}

/* Resize src's rows as the plan says (without the GIL). */
static void resize_planned(resize_source *src, const resize_plan *plan)
{
    const buffer_arg *b = plan->b;
    Py_BEGIN_ALLOW_THREADS
#if !defined(NO_FUSED)
    if (plan->fused)
        resize_fused(src, b[0].view.buf, b[1].view.buf, plan->channels, plan->height,
                     plan->width, plan->out_h, plan->out_w, b[2].view.buf, b[3].view.buf,
                     b[4].view.buf, plan->x_taps, b[5].view.buf, b[6].view.buf, b[7].view.buf,
                     plan->y_taps);
    else
#endif
        resize_separate(src, b[0].view.buf, b[1].view.buf, plan->channels, plan->height,
                        plan->width, plan->out_h, plan->out_w, b[2].view.buf, b[3].view.buf,
                        b[4].view.buf, plan->x_taps, b[5].view.buf, b[6].view.buf,
                        b[7].view.buf, plan->y_taps);
    Py_END_ALLOW_THREADS
}

PyDoc_STRVAR(resize_aa_doc,
"resize_aa(src, tmp, dst, channels, height, width, out_h, out_w, x_start, x_count,\n"
"          x_weights, y_start, y_count, y_weights, fused)\n\n"
"Resize float32 (channels, height, width) src into dst (channels, out_h, out_w): output\n"
"column x is the sum of x_count[x] taps of its row from x_start[x] with weights\n"
"x_weights[x * x_taps:] (x_taps = len(x_weights) // out_w), then the same along the\n"
"columns (y_taps likewise). tmp (channels, y_taps, out_w) holds the rows resized along the\n"
"rows that the columns' taps reach. fused: fused multiply-adds (a ValueError where this\n"
"build or CPU has none) or a product then a sum.");

static PyObject *resize_aa(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 1 + RESIZE_PLAN_ARGS) {
        PyErr_SetString(PyExc_TypeError, "resize_aa takes 15 arguments");
        return NULL;
    }
    buffer_arg image;
    memset(&image, 0, sizeof image);
    resize_plan plan;
    PyObject *result = NULL;
    if (resize_plan_args(args + 1, "resize_aa", &plan) < 0
        || get_buffer(args[0], &image, 0, 4, "src") < 0)
        goto done;
    if (image.view.len / 4 != plan.channels * plan.height * plan.width) {
        PyErr_SetString(PyExc_ValueError, "resize_aa: mismatched lengths");
        goto done;
    }
    resize_source src = {image.view.buf, NULL, NULL, 0, 0, NULL, 0};
    resize_planned(&src, &plan);
    result = Py_NewRef(Py_None);
done:
    release(&image, 1);
    release(plan.b, 8);
    return result;
}

PyDoc_STRVAR(draw_resize_doc,
"draw_resize(counts, bins, off_threshold, on_threshold, bgr, tmp, dst, channels, height,\n"
"            width, out_h, out_w, x_start, x_count, x_weights, y_start, y_count, y_weights,\n"
"            fused)\n\n"
"resize_aa of the image that draw_polarity draws from counts (height * width planes; bgr:\n"
"its channels B, G, R as image.flip(0) gives them), drawing its rows as the resize reads\n"
"them: the same bits, without the full-size image. channels must be 3.");

static PyObject *draw_resize(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 5 + RESIZE_PLAN_ARGS) {
        PyErr_SetString(PyExc_TypeError, "draw_resize takes 19 arguments");
        return NULL;
    }
    buffer_arg counts;
    memset(&counts, 0, sizeof counts);
    resize_plan plan;
    PyObject *result = NULL;
    float *table = NULL, *row = NULL;
    long long bins = PyLong_AsLongLong(args[1]);
    double off_t = PyFloat_AsDouble(args[2]), on_t = PyFloat_AsDouble(args[3]);
    int bgr = PyObject_IsTrue(args[4]);
    if (PyErr_Occurred() || bgr < 0)
        return NULL;
    if (resize_plan_args(args + 5, "draw_resize", &plan) < 0
        || get_buffer(args[0], &counts, 0, 4, "counts") < 0)
        goto done;
    if (plan.channels != 3 || bins < 1
        || counts.view.len / 4 != 2 * plan.height * plan.width) {
        PyErr_SetString(PyExc_ValueError, "draw_resize: mismatched lengths");
        goto done;
    }
    table = polarity_table(bins, off_t, on_t);
    row = PyMem_RawMalloc((size_t)(3 * plan.width) * sizeof *row);
    if (table == NULL || row == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    resize_source src = {NULL, counts.view.buf, table, (uint32_t)(bins - 1), bgr, row, 0};
    resize_planned(&src, &plan);
    if (src.bad)
        PyErr_SetString(PyExc_ValueError, "draw_resize: a count at or above bins");
    else
        result = Py_NewRef(Py_None);
done:
    PyMem_RawFree(row);
    PyMem_RawFree(table);
    release(&counts, 1);
    release(plan.b, 8);
    return result;
}

static PyMethodDef methods[] = {
    {"polarity_counts", (PyCFunction)(void (*)(void))polarity_counts, METH_FASTCALL,
     polarity_counts_doc},
    {"record_polarity", (PyCFunction)(void (*)(void))record_polarity, METH_FASTCALL,
     record_polarity_doc},
    {"record_stack", (PyCFunction)(void (*)(void))record_stack, METH_FASTCALL,
     record_stack_doc},
    {"record_voxels", (PyCFunction)(void (*)(void))record_voxels, METH_FASTCALL,
     record_voxels_doc},
    {"count_histogram", (PyCFunction)(void (*)(void))count_histogram, METH_FASTCALL,
     count_histogram_doc},
    {"pixel_histogram", (PyCFunction)(void (*)(void))pixel_histogram, METH_FASTCALL,
     pixel_histogram_doc},
    {"draw_polarity", (PyCFunction)(void (*)(void))draw_polarity, METH_FASTCALL,
     draw_polarity_doc},
    {"resize_aa", (PyCFunction)(void (*)(void))resize_aa, METH_FASTCALL, resize_aa_doc},
    {"draw_resize", (PyCFunction)(void (*)(void))draw_resize, METH_FASTCALL, draw_resize_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "gep_model.events._kernels",
    "Compiled passes of gep_model.events on CPU memory (see _kernels.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernels(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "INTERFACE_VERSION", INTERFACE_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
