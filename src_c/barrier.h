/* The barrier of the kernels' parallel regions: FG_BARRIER() in place of `omp barrier`.
 *
 * A step of a small layer (B = 1, H = 100: about a microsecond of work per thread) ends
 * in a barrier, so the barrier's own cost decides whether a second thread pays.  libgomp's
 * team barrier takes 0.32-0.36 us between the two cores of the machines we measure, a
 * counter and a generation on two cache lines 0.045-0.055 us (an empty loop of 200000
 * barriers, best of 3).  So each region has one fg_barrier, made by FG_PARALLEL
 * (dispatch.c) on its stack; every thread of the region finds it through a thread-local
 * pointer set when the thread enters the region (the kernels reach a barrier from many
 * nested functions, none of which needs another argument for it).
 *
 * The barrier orders memory like `omp barrier`: every write before it, by any thread,
 * is seen by every read after it (arrival is an acq_rel read-modify-write, the last
 * arrival publishes the new generation with a release store, the waiters acquire it).
 * A waiter spins on the generation with a pause, and after FG_SPIN rounds (hundreds of
 * microseconds: far longer than a step's imbalance) yields its core on every round.
 *
 * Spinning needs a core per thread: a region with more threads than the process has
 * CPUs uses `omp barrier` instead, whose waiters sleep (a d2l LSTM training step with 3
 * or 4 threads on 2 cores took 56 ms with the spinning barrier, 14-15 ms with libgomp's).
 * The choice is made per region, so every thread of a region takes the same one.
 *
 * Elsewhere (a serial build, a compiler without GCC's atomics and thread-locals, Windows)
 * FG_BARRIER() is `omp barrier` itself.  The CPU count is asked once (omp_get_num_procs at
 * the first region): a process whose affinity shrinks later keeps the first answer.
 */
#ifndef FASTGATES_BARRIER_H
#define FASTGATES_BARRIER_H

#if FASTGATES_OPENMP && defined(_OPENMP) && defined(__GNUC__) && !defined(_WIN32)
#define FG_OWN_BARRIER 1
#include <sched.h>

typedef struct {
    int arrived;                    /* threads at the barrier of this generation */
    char pad_[64 - sizeof(int)];
    unsigned gen;                   /* barriers completed (on its own cache line) */
    char pad2_[64 - sizeof(unsigned)];
} fg_barrier;

/* The barrier of the region this thread runs in, the region's thread count, and whether
 * the region uses it (own) or `omp barrier`. */
typedef struct {
    fg_barrier *bar;
    int nth, own;
} fg_team;
extern __thread fg_team fg_team_of_thread __attribute__((visibility("hidden")));

#define FG_SPIN 16384

static inline void fg_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Every thread of the region calls this on entering it; cpus: the CPUs the process may
 * run on. */
static inline void fg_team_enter(fg_barrier *bar, int nth, int cpus)
{
    fg_team_of_thread.bar = bar;
    fg_team_of_thread.nth = nth;
    fg_team_of_thread.own = bar && nth <= cpus;
}

static inline void fg_barrier_wait(void)
{
    const int nth = fg_team_of_thread.nth;
    if (nth <= 1)
        return;
    fg_barrier *b = fg_team_of_thread.bar;
    /* this thread saw gen reach its value when it left the previous barrier, and gen
     * cannot move on before this thread arrives */
    const unsigned g = __atomic_load_n(&b->gen, __ATOMIC_RELAXED);
    if (__atomic_add_fetch(&b->arrived, 1, __ATOMIC_ACQ_REL) == nth) {
        __atomic_store_n(&b->arrived, 0, __ATOMIC_RELAXED);   /* ordered by the release */
        __atomic_store_n(&b->gen, g + 1, __ATOMIC_RELEASE);
        return;
    }
    for (int spin = 0; __atomic_load_n(&b->gen, __ATOMIC_ACQUIRE) == g;) {
        if (spin < FG_SPIN)
            fg_cpu_relax(), spin++;
        else
            sched_yield();
    }
}

#define FG_BARRIER()                                                                \
    do {                                                                            \
        if (fg_team_of_thread.own)                                                  \
            fg_barrier_wait();                                                      \
        else if (fg_team_of_thread.nth > 1) {                                       \
            _Pragma("omp barrier")                                                  \
        }                                                                           \
    } while (0)
#else
#define FG_OWN_BARRIER 0
typedef int fg_barrier;
static inline void fg_team_enter(fg_barrier *bar, int nth, int cpus)
{
    (void)bar, (void)nth, (void)cpus;
}
#define FG_BARRIER() _Pragma("omp barrier")
#endif

#endif
