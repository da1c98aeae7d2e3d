/* Dealing a phase's work items to the threads of a parallel region, with stealing.
 *
 * A step's threads should finish together: the barrier that ends the step makes every
 * thread wait for the slowest.  A static split of equal work is not enough on the
 * machines we measure: the same call runs one thread 5 % slower than the other for its
 * whole duration in some processes (not in others), with no cause in our code.  So the
 * items of a phase (unit blocks x row groups of a forward step, panels x row groups of
 * BPTT's dh product) are dealt out as the static ranges first -- each thread takes its
 * own range from the front, in order, so its share of the packed weights stays in its
 * cache -- and a thread that runs out takes what is left of the other ranges.
 *
 * Which thread computes an item never changes what is computed (every item's tiles and
 * sums are fixed by the item alone), so results stay bit-identical for any thread count.
 *
 * The counters: 2 parities x nth counters, 64 bytes apart.  Every thread runs the same
 * sequence of dealt phases (numbered 0, 1, ... by each thread alike) and consecutive
 * phases are separated by a barrier.  Phase p counts in parity p % 2; when a thread
 * begins phase p it resets its own counter of parity (p + 1) % 2, last used by phase p - 1
 * (finished by every thread: the barrier in between) and next used by phase p + 1 (which
 * begins after the barrier that ends phase p, so the reset is seen).  The counters only
 * hand out indices (relaxed atomics): the barriers order the data.
 */
#ifndef FASTGATES_DEAL_H
#define FASTGATES_DEAL_H
#include <stddef.h>

#define FG_DEAL_STRIDE 16       /* ints per counter: one cache line each */

/* Steps below this many multiply-adds in their product are not dealt: a thread's share
 * is a few microseconds or less, where the counters' cache-line transfers (and BPTT's
 * extra barrier) cost more than a late thread. */
#define FG_DEAL_MIN_MACS (1L << 20)

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#define FG_FETCH_ADD(p, v) _InterlockedExchangeAdd((volatile long *)(p), (v))
#define FG_STORE_ZERO(p) _InterlockedExchange((volatile long *)(p), 0)
#else
#define FG_FETCH_ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define FG_STORE_ZERO(p) __atomic_store_n((p), 0, __ATOMIC_RELAXED)
#endif

/* A region's counters (NULL: no stealing, every thread keeps its static range). */
typedef struct {
    int *ctr;                   /* [2][nth][FG_DEAL_STRIDE], zeroed before the region */
} fg_deal;

/* One thread's view of one dealt phase. */
typedef struct {
    int *ctr;                   /* this phase's parity, or NULL */
    int n, tid, nth, v, lo, hi; /* v: how many ranges (own first) are used up */
    int rev;                    /* static range: its items from the last to the first */
} fg_dealer;

/* Items [*lo, *hi) of n in thread tid's static range. */
static inline void fg_range(int n, int tid, int nth, int *lo, int *hi)
{
    *lo = (int)((long)n * tid / nth);
    *hi = (int)((long)n * (tid + 1) / nth);
}

/* The region's counters if a call's steps are to be dealt: more than one thread, counters
 * allocated, and steps of at least FG_DEAL_MIN_MACS multiply-adds; else NULL. */
static inline const fg_deal *fg_deal_use(const fg_deal *deal, long step_macs, int nth)
{
    return deal && deal->ctr && nth > 1 && step_macs >= FG_DEAL_MIN_MACS ? deal : NULL;
}

/* Begin dealing n items of phase `phase`; deal: from fg_deal_use (NULL: static ranges). */
static inline void fg_deal_begin(fg_dealer *d, const fg_deal *deal, unsigned phase, int n,
                                 int tid, int nth)
{
    d->n = n, d->tid = tid, d->nth = nth, d->v = 0, d->rev = 0;
    fg_range(n, tid, nth, &d->lo, &d->hi);
    d->ctr = NULL;
    if (deal) {
        int *base = deal->ctr;
        d->ctr = base + (size_t)(phase & 1) * nth * FG_DEAL_STRIDE;
        FG_STORE_ZERO(base + ((size_t)((phase + 1) & 1) * nth + tid) * FG_DEAL_STRIDE);
    }
}

/* Static ranges only (no counters): take this thread's items in reverse order when `on`.
 * A step that streams weights larger than L1 (a small batch) and alternates the order
 * from one step to the next starts on the blocks the previous step read last, still in
 * L1: at B = 1, H = 100 an LSTM thread's 80 KB of w_hh read 1.25x faster (a standalone
 * loop on the Zen 4 machine).  Items are independent: the order changes no result. */
static inline void fg_deal_reverse(fg_dealer *d, int on)
{
    d->rev = on && !d->ctr;
}

/* The next item for this thread, or -1 when the phase has none left. */
static inline int fg_deal_next(fg_dealer *d)
{
    if (!d->ctr)
        return d->lo < d->hi ? (d->rev ? --d->hi : d->lo++) : -1;
    while (d->v < d->nth) {
        const int owner = (d->tid + d->v) % d->nth;
        int lo, hi;
        fg_range(d->n, owner, d->nth, &lo, &hi);
        const int i = FG_FETCH_ADD(d->ctr + (size_t)owner * FG_DEAL_STRIDE, 1);
        if (lo + i < hi)
            return lo + i;
        d->v++;
    }
    return -1;
}

#endif
